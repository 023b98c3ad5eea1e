"""TextWorldExpress: eight fast procedurally generated text games on one JVM per env.

Install with ``pip install 'agentgym[scienceworld]'`` (the JVM families share an extra; needs Java 17).
"""

from __future__ import annotations

from agentgym.doctor import Check, package_check
from agentgym.registry import register


def register_envs() -> None:
    """Register one env id per game (entry point ``agentgym.envs: textworld_express``); imports no engine."""
    from agentgym.envs.textworld_express.games import load_games

    for game, spec in load_games()["games"].items():
        register(
            f"agentgym/TWX-{spec['env_name']}-v0",
            "agentgym.envs.textworld_express.env:TextWorldExpressEnv",
            splits=("train", "dev", "test", "test_ood") if spec["ood_settings"] else ("train", "dev", "test"),
            description=f"TextWorldExpress {game}: {spec['description']}",
            extra="scienceworld",
            kwargs={"game": game},
            concurrency="thread",  # a JVM over a socket
        )


def doctor_checks() -> list[Check]:
    """What ``agentgym doctor`` checks for this family (entry point ``agentgym.doctor: textworld_express``)."""
    from agentgym.envs import jvm

    return [package_check("textworld-express", "scienceworld", "TextWorldExpress family"), *jvm.doctor_checks()]
