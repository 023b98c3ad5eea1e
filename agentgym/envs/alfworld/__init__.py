"""ALFWorld household tasks on ALFWorld's real engine, with games generated from the wheel's floor plans.

Install with ``pip install 'agentgym[alfworld]'`` (fast-downward compiles from source: needs cmake, g++).
"""

from __future__ import annotations

from agentgym.registry import register


def register_envs() -> None:
    """Register the ALFWorld env id (entry point ``agentgym.envs: alfworld``); imports no engine."""
    from agentgym.envs.alfworld.env import GENERATED_SPLITS, OFFICIAL_SPLITS, has_official_data

    register(
        "agentgym/ALFWorld-v0",
        "agentgym.envs.alfworld.env:AlfWorldEnv",
        # The official splits exist where ALFWorld's data does (``ALFWORLD_DATA``, as ALFWorld reads it).
        splits=GENERATED_SPLITS + (OFFICIAL_SPLITS if has_official_data() else ()),
        description="ALFWorld's six household task types on its PDDL engine; test_ood on unseen floor plans.",
        extra="alfworld",
        # TextWorld's parser and fast-downward's translator are process-global: one env per process.
        concurrency="process",
    )

