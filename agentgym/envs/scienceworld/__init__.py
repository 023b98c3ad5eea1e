"""ScienceWorld (30 science-experiment tasks) on its real JVM simulator.

Install with ``pip install 'agentgym[scienceworld]'`` (needs Java 17).
"""

from __future__ import annotations

from agentgym.doctor import Check, package_check
from agentgym.registry import register


def register_envs() -> None:
    """Register the ScienceWorld env id (entry point ``agentgym.envs: scienceworld``); imports no engine."""
    register(
        "agentgym/ScienceWorld-v0",
        "agentgym.envs.scienceworld.env:ScienceWorldEnv",
        description="ScienceWorld's 30 elementary-science tasks; test_ood holds out 8 tasks.",
        extra="scienceworld",
        # The engine is a JVM reached over a socket: threads overlap its calls without the GIL.
        concurrency="thread",
    )


def doctor_checks() -> list[Check]:
    """What ``agentgym doctor`` checks for this family (entry point ``agentgym.doctor: scienceworld``)."""
    from agentgym.envs import jvm

    return [package_check("scienceworld", "scienceworld", "ScienceWorld family"), *jvm.doctor_checks()]
