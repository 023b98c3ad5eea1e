"""ScienceWorld's tasks and splits.

A task id is ``<task name>-v<variation>``. ``train``/``dev``/``test`` are the simulator's own variation
splits of the in-distribution tasks; ``test_ood`` is the ``test`` variations of :data:`HELD_OUT_TASKS`,
tasks never seen in training. The variation lists are read from the simulator once and committed
(``agentgym/tasks/scienceworld/variations.json``; regenerate with
``python -m agentgym.envs.scienceworld.tasks``), so making an env needs no JVM.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from agentgym.contract import Task

HELD_OUT_TASKS: tuple[str, ...] = (
    "change-the-state-of-matter-of",
    "measure-melting-point-unknown-substance",
    "test-conductivity-of-unknown-substances",
    "find-animal",
    "chemistry-mix-paint-tertiary-color",
    "lifespan-longest-lived-then-shortest-lived",
    "inclined-plane-friction-unnamed-surfaces",
    "mendelian-genetics-unknown-plant",
)
"""Held out for ``test_ood``: in each topic, the variant that composes or generalises tasks trained on
(any change of state after boil/melt/freeze, unknown substances after known ones, ...)."""

VARIATIONS_FILE = "scienceworld/variations.json"
SIMULATOR_SPLITS = ("train", "dev", "test")


@lru_cache(maxsize=1)
def load_variations() -> dict[str, Any]:
    """``{task name: {"topic", "title", "train", "dev", "test"}}`` as committed."""
    return json.loads(resources.files("agentgym.tasks").joinpath(VARIATIONS_FILE).read_text(encoding="utf-8"))


def task_names(split: str) -> list[str]:
    """The ScienceWorld tasks a split draws from."""
    names = sorted(load_variations())
    if split == "test_ood":
        return [name for name in names if name in HELD_OUT_TASKS]
    return [name for name in names if name not in HELD_OUT_TASKS]


def split_tasks(split: str) -> list[Task]:
    """Every (task, variation) of ``split`` as a :class:`Task`."""
    variations = load_variations()
    source = "test" if split == "test_ood" else split
    return [
        Task(id=f"{name}-v{variation}", split=split, instruction=variations[name]["title"],
             payload={"task_name": name, "variation": variation})
        for name in task_names(split)
        for variation in variations[name][source]
    ]


def one_task_per_line(scanned: dict[str, Any]) -> str:
    """JSON with one task per line: compact, yet diffs show which task changed."""
    return "{\n" + ",\n".join(f"{json.dumps(name)}: {json.dumps(entry)}" for name, entry in scanned.items()) + "\n}\n"


def scan_variations(path: Path) -> dict[str, Any]:
    """Read every task's variation splits from the simulator and write them to ``path``."""
    from scienceworld.constants import TASKS

    from agentgym.envs.scienceworld.env import scienceworld_engine

    engine = scienceworld_engine()
    scanned = {}
    try:
        with engine.guard() as server:
            for entry in TASKS:
                name = entry["task_name"]
                server.load(name, 0, "", False)
                scanned[name] = {
                    "topic": entry["topic"], "title": entry["task"],
                    "train": sorted(server.getVariationsTrain()), "dev": sorted(server.getVariationsDev()),
                    "test": sorted(server.getVariationsTest()),
                }
    finally:
        engine.close()
    path.write_text(one_task_per_line(scanned), encoding="utf-8")
    return scanned


if __name__ == "__main__":
    target = Path(str(resources.files("agentgym.tasks").joinpath(VARIATIONS_FILE)))
    counts = scan_variations(target)
    print(f"{len(counts)} tasks written to {target}")
