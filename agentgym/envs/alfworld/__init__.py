"""ALFWorld household tasks on ALFWorld's real engine, with games generated from the wheel's floor plans.

Install with ``pip install 'agentgym[alfworld]'`` (fast-downward compiles from source: needs cmake, g++).
"""

from __future__ import annotations

from agentgym.doctor import Check, package_check
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



def doctor_checks() -> list[Check]:
    """The alfworld wheel and the fast-downward library it builds from source (cmake + g++); what
    ``agentgym doctor`` checks for this family (entry point ``agentgym.doctor: alfworld``)."""
    check = package_check("alfworld", "alfworld", "ALFWorld household tasks")
    if not check.ok:
        check.fix = "sudo apt-get install -y cmake g++ && pip install 'agentgym[alfworld]'   (fast-downward compiles)"
        return [check]
    try:
        import fast_downward

        fast_downward.load_lib()
    except (ImportError, OSError) as error:
        return [Check("python: fast-downward", False, f"its library does not load ({error})",
                      "sudo apt-get install -y cmake g++ && pip install --force-reinstall --no-cache-dir "
                      "fast-downward-textworld")]
    return [check]
