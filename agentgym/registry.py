"""Env ids on top of Gymnasium's registry.

Families register their ids from a function named by an ``agentgym.envs`` entry point, so the core
never imports a family: ``make`` loads the entry points once, then defers to ``gymnasium.make``.
Registering needs no engine installed; making an env whose engine is missing says which extra to
install.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from typing import Any, Callable

import gymnasium as gym

from agentgym.contract import SPLITS

ENTRY_POINT_GROUP = "agentgym.envs"


@dataclass(frozen=True)
class EnvSpec:
    """What agentgym knows of an env id beyond Gymnasium's spec."""

    id: str
    entry_point: str | Callable[..., gym.Env]
    splits: tuple[str, ...] = SPLITS
    description: str = ""
    extra: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    concurrency: str = "thread"
    """How the rollout engine runs several of these envs when asked for ``"auto"``: ``"thread"`` for
    engines that release the GIL (JVMs, browsers over sockets), ``"process"`` for engines in Python."""


_SPECS: dict[str, EnvSpec] = {}
_families_loaded = False


def register(
    id: str,
    entry_point: str | Callable[..., gym.Env],
    *,
    splits: tuple[str, ...] = SPLITS,
    description: str = "",
    extra: str | None = None,
    kwargs: dict[str, Any] | None = None,
    concurrency: str = "thread",
) -> None:
    """Register an env id (``"namespace/Name-vN"``) with its splits.

    ``entry_point`` is ``"module:Class"`` (imported only when the env is made) or a callable.
    ``extra`` names the pip extra that installs the engine, for the error message when it is missing;
    ``concurrency`` is the measured best way to run several at once (see :class:`EnvSpec`).
    """
    if "train" not in splits:
        raise ValueError(f"{id}: every env id needs a 'train' split (got {splits}).")
    if concurrency not in ("thread", "process", "sequential"):
        raise ValueError(f"{id}: concurrency must be 'thread', 'process' or 'sequential', not {concurrency!r}.")
    spec = EnvSpec(id, entry_point, tuple(splits), description, extra, dict(kwargs or {}), concurrency)
    _SPECS[id] = spec
    if id in gym.registry:
        del gym.registry[id]
    gym.register(id=id, entry_point=entry_point, kwargs=dict(kwargs or {}))


def _load_families() -> None:
    global _families_loaded
    if _families_loaded:
        return
    _families_loaded = True
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        entry_point.load()()


def list_envs() -> list[str]:
    """Every registered agentgym env id, sorted."""
    _load_families()
    return sorted(_SPECS)


def spec(env_id: str) -> EnvSpec:
    """The agentgym spec of ``env_id``; the error lists close matches."""
    _load_families()
    try:
        return _SPECS[env_id]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(env_id, list(_SPECS), n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(close)}?" if close else " Run `agentgym list` to see every id."
        raise gym.error.NameNotFound(f"No agentgym env {env_id!r}.{hint}") from None


def spec_with_split(env_id: str, split: str) -> EnvSpec:
    """The spec of ``env_id``, after checking that it has ``split``."""
    env_spec = spec(env_id)
    if split not in env_spec.splits:
        raise ValueError(f"{env_id} has no split {split!r}; its splits are {', '.join(env_spec.splits)}.")
    return env_spec


def make(env_id: str, split: str = "train", **kwargs: Any) -> gym.Env:
    """Make ``env_id`` on ``split`` (``train``, ``dev``, ``test``, ``test_ood``).

    Extra keyword arguments go to the env's constructor (see its class docstring, Arguments).
    """
    env_spec = spec_with_split(env_id, split)
    try:
        return gym.make(env_id, split=split, **kwargs)
    except ModuleNotFoundError as error:
        if env_spec.extra is None:
            raise
        raise ModuleNotFoundError(
            f"{env_id} needs the package {error.name!r}, which is not installed. "
            f"Install the family with: pip install 'agentgym[{env_spec.extra}]'  (or run `agentgym doctor`)."
        ) from error
