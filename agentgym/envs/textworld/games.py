"""TextWorld games generated in-process from (generator, settings, seed) and cached on disk.

Task files (``agentgym/tasks/textworld/<family>.json``) define each split as blocks of generator
settings over seed ranges; the ranges never overlap, so splits are disjoint by construction.
Generation takes 1-4 s a game, once: games are compiled into the cache folder and reused by every
env and process afterwards.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
import threading
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from agentgym.contract import Task
from agentgym.paths import cache_dir

FAMILIES = ("coin_collector", "treasure_hunter", "simple", "cooking")

# TextWorld's generators and its logic parser (used whenever a game is loaded) share module-level
# state and are not thread-safe: generation and loading take this lock. Stepping does not need it.
TEXTWORLD_LOCK = threading.RLock()


@lru_cache(maxsize=None)
def load_family(family: str) -> dict[str, Any]:
    """The task spec of a family, read from the package's task files."""
    if family not in FAMILIES:
        raise ValueError(f"Unknown TextWorld family {family!r}; choose one of {', '.join(FAMILIES)}.")
    text = resources.files("agentgym.tasks").joinpath(f"textworld/{family}.json").read_text(encoding="utf-8")
    return json.loads(text)


def settings_slug(settings: Mapping[str, Any]) -> str:
    """A short, readable, unique name for a block of generator settings ('level5', 'recipe2-go6-test')."""
    parts = []
    for key, value in sorted(settings.items()):
        if value is True:
            parts.append(key)
        elif value is False:
            continue
        else:
            parts.append(f"{key}{value}")
    return "-".join(parts)


def family_tasks(family: str, split: str) -> list[Task]:
    """Every task of a family's split: one per seed of each block."""
    spec = load_family(family)
    if split not in spec["splits"]:
        raise ValueError(f"TextWorld family {family!r} has no split {split!r}.")
    tasks = []
    for block in spec["splits"][split]:
        slug = settings_slug(block["settings"])
        for seed in range(*block["seeds"]):
            tasks.append(Task(
                id=f"{family}-{slug}-s{seed}",
                split=split,
                instruction=spec["instruction"],
                payload={"generator": spec["generator"], "settings": dict(block["settings"]), "seed": seed},
            ))
    return tasks


def game_file(generator: str, settings: Mapping[str, Any], seed: int, root: Path | None = None) -> Path:
    """The compiled game (``.z8``, with its ``.json`` beside it), generated on first use.

    Safe across threads and processes: a file lock serialises generation, and the finished files are
    moved into place atomically, the ``.z8`` last, so an existing ``.z8`` is always complete.
    """
    import textworld

    folder = (root or cache_dir()) / "textworld" / textworld.__version__ / generator
    path = folder / f"{settings_slug(settings) or 'default'}-s{seed}.z8"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    with TEXTWORLD_LOCK, open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            _generate(generator, dict(settings), seed, path)
    return path


def _generate(generator: str, settings: dict[str, Any], seed: int, path: Path) -> None:
    import textworld.challenges
    import textworld.generator

    if generator not in textworld.challenges.CHALLENGES:
        raise ValueError(f"TextWorld has no generator {generator!r}; it has {sorted(textworld.challenges.CHALLENGES)}.")
    make_game = textworld.challenges.CHALLENGES[generator][1]
    scratch = Path(tempfile.mkdtemp(prefix=".gen-", dir=path.parent))
    try:
        options = textworld.GameOptions()
        options.seeds = seed
        options.path = str(scratch / "game.z8")
        options.force_recompile = True
        game = make_game(settings, options)
        compiled = Path(textworld.generator.compile_game(game, options))
        os.replace(compiled.with_suffix(".json"), path.with_suffix(".json"))
        os.replace(compiled, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
