"""Env ids on top of Gymnasium's registry.

Families register their ids from a function named by an ``agentgym.envs`` entry point, so the core
never imports a family: ``make`` loads the entry points once, then defers to ``gymnasium.make``.
Registering needs no engine installed; making an env whose engine is missing says which extra to
install.

An id registered at run time (a user's ``agentgym.register`` in a script or module) also works in the
rollout engine's worker processes: the pool ships each worker the pickled :class:`EnvSpec` (callables
that cannot be imported by name travel by value, with cloudpickle) and the worker registers it before
making the env (:func:`dumps_spec`, :func:`adopt_spec`).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
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
    max_turns: int | None = None
    """The id's turn budget, passed to the constructor as ``max_turns`` (an env kwarg still overrides it),
    so :func:`max_turns` can answer without making the env; ``None`` leaves it to the class."""
    module: str | None = None
    """The module whose import registers this id (by default the module that called :func:`register`);
    worker processes import it before making the env."""


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
    max_turns: int | None = None,
    module: str | None = None,
) -> None:
    """Register an env id (``"namespace/Name-vN"``) with its splits.

    ``entry_point`` is ``"module:Class"`` (imported only when the env is made) or a callable (a class
    or a factory). ``extra`` names the pip extra that installs the engine, for the error message when
    it is missing; ``concurrency`` is the measured best way to run several at once; ``max_turns`` the
    id's turn budget, given to the constructor (declare it where the class computes its budget from the
    kwargs, so nothing has to make the env to learn it); ``module`` the module whose import
    registers the id, which worker processes import first (default: the caller's module). See
    :class:`EnvSpec`.
    """
    if "train" not in splits:
        raise ValueError(f"{id}: every env id needs a 'train' split (got {splits}).")
    if concurrency not in ("thread", "process", "sequential"):
        raise ValueError(f"{id}: concurrency must be 'thread', 'process' or 'sequential', not {concurrency!r}.")
    if max_turns is not None and (kwargs or {}).get("max_turns") is not None:
        raise ValueError(f"{id}: give the turn budget once, as max_turns or as kwargs['max_turns'].")
    if module is None:
        module = sys._getframe(1).f_globals.get("__name__")
    budget = None if max_turns is None else int(max_turns)
    _register_spec(EnvSpec(id, entry_point, tuple(splits), description, extra, dict(kwargs or {}), concurrency,
                           budget, module))


def _register_spec(env_spec: EnvSpec) -> None:
    _SPECS[env_spec.id] = env_spec
    if env_spec.id in gym.registry:
        del gym.registry[env_spec.id]
    kwargs = dict(env_spec.kwargs)
    if env_spec.max_turns is not None:
        kwargs["max_turns"] = env_spec.max_turns
    gym.register(id=env_spec.id, entry_point=env_spec.entry_point, kwargs=kwargs)


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


REMOTE_PREFIX = "openenv:"
"""Ids ``openenv:http://HOST:PORT`` name a session of an OpenEnv server (:mod:`agentgym.envserver.client`)."""


def spec(env_id: str) -> EnvSpec:
    """The agentgym spec of ``env_id``; the error lists close matches."""
    _load_families()
    if env_id.startswith(REMOTE_PREFIX):
        from agentgym.envserver.client import remote_spec

        return remote_spec(env_id)
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
    ``openenv:http://HOST:PORT`` makes a session of that OpenEnv server
    (:class:`~agentgym.envserver.client.RemoteEnv`).
    """
    if env_id.startswith(REMOTE_PREFIX):
        from agentgym.envserver.client import make_remote

        return make_remote(env_id, split, **kwargs)
    env_spec = spec_with_split(env_id, split)
    try:
        return gym.make(env_id, split=split, **kwargs)
    except ModuleNotFoundError as error:
        _raise_missing_engine(env_spec, error)
        raise


def _raise_missing_engine(env_spec: EnvSpec, error: ModuleNotFoundError) -> None:
    """Raise the install hint for ``env_spec``'s missing engine, if the id names its extra."""
    if env_spec.extra is None:
        return
    raise ModuleNotFoundError(
        f"{env_spec.id} needs the package {error.name!r}, which is not installed. "
        f"Install the family with: pip install 'agentgym[{env_spec.extra}]'  (or run `agentgym doctor`)."
    ) from error


def max_turns(env_id: str, env_kwargs: dict[str, Any] | None = None) -> int:
    """The turn budget of ``env_id`` made with ``env_kwargs``, without making the env when it can.

    The spec's own ``max_turns`` (:func:`register`) when set; else, for an entry point that is a
    :class:`~agentgym.contract.TextEnv` class, its :meth:`~agentgym.contract.TextEnv.turn_budget` of the
    spec's and the given constructor arguments (the class is imported, never instantiated, so no JVM or
    browser starts); else the env is made once on ``train``, its ``max_turns`` read and the env closed.
    """
    env_spec = spec(env_id)
    arguments = {**env_spec.kwargs, **(env_kwargs or {})}
    if env_spec.max_turns is not None and arguments.get("max_turns") is None:
        return env_spec.max_turns
    cls = _entry_class(env_spec)
    if cls is not None and hasattr(cls, "turn_budget"):
        return int(cls.turn_budget(**arguments))
    env = make(env_id, split="train", **(env_kwargs or {}))
    try:
        budget = getattr(env.unwrapped, "max_turns", None)
    finally:
        env.close()
    if budget is None:
        raise ValueError(f"{env_id} has no turn budget: its env has no max_turns attribute.")
    return int(budget)


def env_class(env_id: str) -> type | None:
    """The class ``env_id``'s entry point names, imported but never instantiated (no engine starts), to
    read its class attributes (``image_shape``, :meth:`~agentgym.contract.TextEnv.turn_budget`);
    ``None`` when the entry point is a factory function."""
    return _entry_class(spec(env_id))


def _entry_class(env_spec: EnvSpec) -> type | None:
    entry_point = env_spec.entry_point
    if isinstance(entry_point, str):
        module_name, _, name = entry_point.partition(":")
        try:
            entry_point = getattr(importlib.import_module(module_name), name)
        except ModuleNotFoundError as error:
            _raise_missing_engine(env_spec, error)
            raise
    return entry_point if isinstance(entry_point, type) else None


def dumps_spec(env_spec: EnvSpec) -> bytes:
    """``env_spec`` pickled for a worker process. Entry points and kwargs that can be imported by name
    travel by reference; the others (defined in ``__main__``, in a function, lambdas) by value."""
    import cloudpickle

    return cloudpickle.dumps(env_spec)


def adopt_spec(module: str | None, payload: bytes) -> EnvSpec:
    """In a worker process: import ``module`` (the one that registered the id, when it has a name that
    imports), then register the spec in ``payload`` (from :func:`dumps_spec`) unless the same spec is
    already known, as the built-in ids are."""
    import pickle

    _load_families()
    if module and module not in ("__main__", "__mp_main__"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise
            # Not importable by name here (loaded from a file path); the shipped spec is enough.
    env_spec = pickle.loads(payload)
    if env_spec.id.startswith(REMOTE_PREFIX):  # a server session: nothing to register with Gymnasium
        return env_spec
    if _SPECS.get(env_spec.id) != env_spec:
        _register_spec(env_spec)
    return env_spec
