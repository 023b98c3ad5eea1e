"""TextWorldExpress's games, settings and seed splits (``agentgym/tasks/textworld_express/games.json``)."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from agentgym.contract import Task


@lru_cache(maxsize=1)
def load_games() -> dict[str, Any]:
    return json.loads(resources.files("agentgym.tasks").joinpath("textworld_express/games.json").read_text("utf-8"))


def game_tasks(game: str, split: str) -> list[Task]:
    """One task per seed of the split's fold; ``test_ood`` plays the test seeds with the harder settings."""
    data = load_games()
    spec = data["games"][game]
    fold = "test" if split == "test_ood" else split
    settings = spec["ood_settings"] if split == "test_ood" else spec["settings"]
    prefix = f"{game}-ood" if split == "test_ood" else game
    start, stop = data["folds"][fold]
    return [
        Task(id=f"{prefix}-s{seed}", split=split, instruction=spec["description"],
             payload={"game": game, "settings": settings, "fold": fold, "seed": seed})
        for seed in range(start, stop)
    ]
