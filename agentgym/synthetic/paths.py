"""Where a real env id's synthetic-experience files live by default — its replay buffer and its installed
experience model — under ``$AGENTGYM_CACHE/synthetic/<id>/``, and how an env's experience model settings
are resolved from them."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from agentgym.paths import atomic_write, cache_dir
from agentgym.synthetic.model import ExperienceSettings

SETTINGS_FILE = "experience.json"  # in a trained experience model's folder: the settings it was trained with
DEFAULT_BUFFER_EPISODES = 120  # real episodes collected for a default buffer...
DEFAULT_EPISODES_PER_TASK = 3  # ...this many of each task (loading a task can cost more than playing it)
PROMPT_SETTINGS = ("backend", "retrieval_k", "history_window", "state_chars", "demo_chars", "rationale",
                   "max_new_tokens")  # what a trained model's prompts depend on


def home(real_id: str) -> Path:
    return cache_dir() / "synthetic" / re.sub(r"[^A-Za-z0-9]+", "-", real_id).strip("-").lower()


def installed_model(real_id: str) -> Path:
    """Where ``trainer: experience_model`` with ``install: true`` puts the trained adapter of ``real_id``."""
    return home(real_id) / "experience-model"


def default_buffer(real_id: str) -> Path:
    """The cache's replay buffer of ``real_id``, collected on first use (:data:`DEFAULT_BUFFER_EPISODES`
    episodes of the train split, the oracle mixed with random actions)."""
    from agentgym.synthetic.buffer import collect_transitions, write_transitions

    path = home(real_id) / "buffer.jsonl"
    if not path.is_file():
        print(f"Collecting a replay buffer of {real_id} ({DEFAULT_BUFFER_EPISODES} train episodes) into {path}; "
              "it is kept for later runs.", file=sys.stderr)
        write_transitions(path, collect_transitions(real_id, "train", episodes=DEFAULT_BUFFER_EPISODES,
                                                    episodes_per_task=DEFAULT_EPISODES_PER_TASK))
    return path


def write_model_settings(folder: str | Path, settings: ExperienceSettings) -> Path:
    """Record in a trained model's folder the prompt settings it was trained with."""
    values = {name: getattr(settings, name) for name in PROMPT_SETTINGS}
    return atomic_write(Path(folder) / SETTINGS_FILE, lambda handle: handle.write(json.dumps(values, indent=1).encode()))


def trained_settings(folder: str | Path) -> dict[str, Any]:
    """The settings that load a trained experience model's folder — a LoRA adapter on its base model, or a
    whole fine-tuned model — with the prompt settings it was trained with."""
    folder = Path(folder)
    recorded = json.loads((folder / SETTINGS_FILE).read_text(encoding="utf-8"))
    if (folder / "adapter_config.json").is_file():
        return {**recorded, "adapter": str(folder)}
    return {**recorded, "backend": f"hf:{folder}"}


def resolve_settings(real_id: str, model: ExperienceSettings | dict[str, Any] | None) -> ExperienceSettings:
    """The experience model settings of an env: ``model`` as given; when it names neither a backend nor an
    adapter, the installed trained model of ``real_id`` if there is one, else the prompted embedded model.
    A trained model's recorded settings (:func:`trained_settings`, also for an ``adapter`` folder the trainer
    wrote) are the defaults that ``model`` overrides."""
    if isinstance(model, ExperienceSettings):
        return model
    given = dict(model or {})
    trained = None
    if "backend" not in given and "adapter" not in given and (installed_model(real_id) / SETTINGS_FILE).is_file():
        trained = installed_model(real_id)
    elif given.get("adapter") and (Path(given["adapter"]) / SETTINGS_FILE).is_file():
        trained = Path(given.pop("adapter"))
    return ExperienceSettings.of({**(trained_settings(trained) if trained else {}), **given})
