"""Synthetic experience (DreamGym, docs/algorithms.md §5): an experience model as a drop-in environment.

``agentgym/Synthetic-<Family>-v0`` plays a real family's tasks, splits, observations and actions, with the
transitions written by a language model grounded on a replay buffer of real transitions. Any trainer,
rollout or evaluation runs on it unchanged; every reset and step says ``info["synthetic"]``.

>>> env = agentgym.synthetic.make_synthetic("agentgym/TextWorld-CoinCollector-v0", split="train")
>>> observation, info = env.reset(seed=0)          # the real env's first state
>>> observation, reward, terminated, truncated, info = env.step(observation["admissible_actions"][0])

Parts: :mod:`~agentgym.synthetic.env` (the env), :mod:`~agentgym.synthetic.model` (the experience model
and its batching), :mod:`~agentgym.synthetic.buffer` (transitions, the replay buffer, BM25 retrieval,
collection), :mod:`~agentgym.synthetic.format` (prompts and strict parsing),
:mod:`~agentgym.synthetic.curriculum` (task values and generated tasks), :mod:`~agentgym.synthetic.fidelity`
(how faithful a model is), :mod:`~agentgym.synthetic.paths` (default buffer and installed model).
"""

from __future__ import annotations

import re
from typing import Any

import gymnasium as gym

SYNTHETIC_FAMILIES = ("agentgym/TextWorld-CoinCollector-v0", "agentgym/ALFWorld-v0", "agentgym/WebShop-v0")
"""The real ids whose synthetic ids are registered for everyone; :func:`make_synthetic` makes any other."""


def synthetic_id(real_id: str) -> str:
    """``agentgym/Synthetic-<Name>-v0`` for the real id ``<namespace>/<Name>-vN``."""
    name = re.sub(r"-v\d+$", "", real_id.rpartition("/")[2])
    return f"agentgym/Synthetic-{name}-v0"


def register_synthetic(real_id: str, splits: tuple[str, ...] | None = None) -> str:
    """Register the synthetic id of ``real_id`` (with the real id's splits unless given) and return it."""
    from agentgym.registry import register, spec

    register(synthetic_id(real_id), "agentgym.synthetic.env:SyntheticEnv",
             splits=splits or spec(real_id).splits, kwargs={"real_id": real_id},
             description=f"{real_id}'s tasks with transitions written by an experience model (DreamGym).",
             # Steps of concurrent episodes batch into one generation only when the envs share a process.
             concurrency="thread", module="agentgym.synthetic")
    return synthetic_id(real_id)


def register_envs() -> None:
    """Register the synthetic ids of :data:`SYNTHETIC_FAMILIES` (entry point ``agentgym.envs: synthetic``);
    imports no engine and no model. Their splits are the contract's four."""
    from agentgym.contract import SPLITS

    for real_id in SYNTHETIC_FAMILIES:
        register_synthetic(real_id, SPLITS)


def make_synthetic(real_id: str, split: str = "train", **kwargs: Any) -> gym.Env:
    """A synthetic env of any real family (its id registered on first use); keyword arguments go to
    :class:`~agentgym.synthetic.env.SyntheticEnv` (``model``, ``buffer``, ``initial_state``, ...)."""
    from agentgym.registry import list_envs, make

    env_id = synthetic_id(real_id)
    if env_id not in list_envs():
        register_synthetic(real_id)
    return make(env_id, split=split, **kwargs)


__all__ = ["SYNTHETIC_FAMILIES", "make_synthetic", "register_envs", "register_synthetic", "synthetic_id"]
