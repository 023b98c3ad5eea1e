"""TextWorld families: coin collector, treasure hunter, simple and cooking games, generated offline.

Install with ``pip install 'agentgym[textworld]'``.
"""

from __future__ import annotations

from agentgym.doctor import Check, package_check
from agentgym.registry import register


def register_envs() -> None:
    """Register one env id per family (entry point ``agentgym.envs: textworld``); imports no engine."""
    from agentgym.envs.textworld.games import FAMILIES, load_family

    for family in FAMILIES:
        spec = load_family(family)
        register(
            spec["env_id"],
            "agentgym.envs.textworld.env:TextWorldEnv",
            splits=tuple(spec["splits"]),
            description=spec["description"],
            extra="textworld",
            kwargs={"family": family},
            # TextWorld's engine is mostly Python (GIL-bound): worker processes step fastest
            # (benchmarks/rollout_throughput.py).
            concurrency="process",
        )


def doctor_checks() -> list[Check]:
    """What ``agentgym doctor`` checks for this family (entry point ``agentgym.doctor: textworld``)."""
    return [package_check("textworld", "textworld", "TextWorld families")]
