"""``check_env``: the conformance checker every agentgym env passes, shipped for users' own envs.

In the spirit of :func:`gymnasium.utils.env_checker.check_env`, plus what multi-turn agent training
relies on: text actions, invalid actions as turns (never exceptions), the standard ``info`` keys,
determinism under a seed (a replayed action script gives the same episode in the same env and in a
fresh one), disjoint splits, and ``close()`` freeing every process and thread.
"""

from __future__ import annotations

import math
import random
import threading
import time
from typing import Any, Callable

import gymnasium as gym
import psutil

from agentgym.contract import INFO_KEYS, TextEnv

INVALID_ACTIONS: tuple[Any, ...] = ("", "   ", "xyzzy plugh frobnicate 42", "\x00\ufffd", None, 17)

DETERMINISM_STEPS = 30
"""Default length of the action script the determinism check replays: long enough for a simulated
process (heating, growth, pollination) to run for a few ticks, which a 5-step check never reaches."""

_SHOWN_CHARS = 1500  # of each observation in a determinism report

PROCESS_WIDE_THREADS = frozenset({"tqdm_monitor"})
"""Threads a library starts once per process and keeps (tqdm's monitor starts with the first progress
bar, even a disabled one, e.g. ``bm25s.tokenize``): not an env's to stop, so ``close()`` may leave them."""


class EnvCheckError(AssertionError):
    """An env breaks the agentgym contract; the message says which rule and how."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise EnvCheckError(message)


def _resources() -> tuple[set[int], set[int]]:
    """Live child processes and Python threads of this process (bar :data:`PROCESS_WIDE_THREADS`)."""
    children = {child.pid for child in psutil.Process().children(recursive=True)}
    return children, {thread.ident for thread in threading.enumerate()
                      if thread.ident is not None and thread.name not in PROCESS_WIDE_THREADS}


def _check_step_result(env: gym.Env, result: Any, where: str) -> None:
    _require(isinstance(result, tuple) and len(result) == 5, f"{where}: step() must return a 5-tuple.")
    observation, reward, terminated, truncated, info = result
    _check_observation(env, observation, where)
    _require(isinstance(reward, (int, float)) and math.isfinite(reward), f"{where}: reward must be a finite float.")
    _require(isinstance(terminated, bool) and isinstance(truncated, bool), f"{where}: terminated/truncated must be bool.")
    _check_info(info, where)


def _check_observation(env: gym.Env, observation: Any, where: str) -> None:
    _require(isinstance(observation, dict), f"{where}: the observation must be a dict, got {type(observation).__name__}.")
    for key in ("text", "admissible_actions", "state_key"):
        _require(key in observation, f"{where}: the observation lacks {key!r}.")
    _require(isinstance(observation["text"], str) and observation["text"].strip() != "",
             f"{where}: observation['text'] must be non-empty text.")
    _require(all(isinstance(a, str) for a in observation["admissible_actions"]),
             f"{where}: admissible_actions must be strings.")
    _require(isinstance(observation["state_key"], str) and observation["state_key"] != "",
             f"{where}: observation['state_key'] must be a non-empty string.")
    _require(env.observation_space.contains(observation),
             f"{where}: the observation is not in env.observation_space ({env.observation_space}).")


def _check_info(info: Any, where: str) -> None:
    _require(isinstance(info, dict), f"{where}: info must be a dict.")
    missing = [key for key in INFO_KEYS if key not in info]
    _require(not missing, f"{where}: info lacks {missing} (every reset and step carries {list(INFO_KEYS)}).")
    _require(isinstance(info["won"], bool) and isinstance(info["invalid_action"], bool),
             f"{where}: info['won'] and info['invalid_action'] must be bool.")


def _script_action(env: gym.Env, observation: dict, rng: random.Random) -> Any:
    """The next action of the determinism script: the expert's where it has one (it reaches the states
    where simulated processes run), else a seeded pick among the admissible actions, else ``"look"``."""
    expert = getattr(env.unwrapped, "expert_action", None)
    action = expert() if expert is not None else None
    if action is not None:
        return action
    admissible = observation["admissible_actions"]
    return admissible[rng.randrange(len(admissible))] if admissible else "look"


def _snapshot(observation: dict, info: dict, *step: Any) -> tuple:
    """What must be equal when an episode is replayed: the observation (bar images), the info keys of the
    contract, and ``step`` (the action and the step's reward and end flags)."""
    return (*step, observation["text"], tuple(observation["admissible_actions"]), observation["state_key"],
            info.get("task_id"), info.get("won"), info.get("invalid_action"), info.get("instruction"))


_FIELDS = ("action", "reward", "terminated", "truncated", "text", "admissible_actions", "state_key", "task_id",
           "won", "invalid_action", "instruction")


def _record(env: gym.Env, seed: int, steps: int) -> tuple[list[Any], list[tuple]]:
    """Play one episode from ``reset(seed=seed)`` choosing the script as it goes; return the script and
    the episode's snapshots."""
    rng = random.Random(seed)
    observation, info = env.reset(seed=seed)
    script, trace = [], [_snapshot(observation, info, None, 0.0, False, False)]
    for _ in range(steps):
        action = _script_action(env, observation, rng)
        observation, reward, terminated, truncated, info = env.step(action)
        script.append(action)
        trace.append(_snapshot(observation, info, action, reward, terminated, truncated))
        if terminated or truncated:
            break
    return script, trace


def _replay(env: gym.Env, seed: int, script: list[Any]) -> list[tuple]:
    """The snapshots of ``reset(seed=seed)`` followed by ``script``."""
    observation, info = env.reset(seed=seed)
    trace = [_snapshot(observation, info, None, 0.0, False, False)]
    for action in script:
        observation, reward, terminated, truncated, info = env.step(action)
        trace.append(_snapshot(observation, info, action, reward, terminated, truncated))
        if terminated or truncated:
            break
    return trace


def _compare(first: list[tuple], again: list[tuple], where: str, seed: int) -> None:
    """Raise an :class:`EnvCheckError` naming the first step where ``again`` differs from ``first``."""
    index = next((i for i, (one, other) in enumerate(zip(first, again)) if one != other), None)
    if index is None:
        if len(first) == len(again):
            return
        index = min(len(first), len(again))
    one = first[index] if index < len(first) else None
    other = again[index] if index < len(again) else None
    differing = [name for name, a, b in zip(_FIELDS, one or (), other or ()) if a != b and name not in ("action", "text")]

    def show(snapshot: tuple | None) -> str:
        if snapshot is None:
            return "(the episode had already ended)"
        fields = dict(zip(_FIELDS, snapshot))
        text = fields["text"] if len(fields["text"]) <= _SHOWN_CHARS else fields["text"][:_SHOWN_CHARS] + " [...]"
        extras = ", ".join(f"{name}={fields[name]!r}" for name in differing)
        return repr(text) + (f"\n    ({extras})" if extras else "")

    step = "the reset" if index == 0 else f"step {index} (action {(one or other)[0]!r})"
    raise EnvCheckError(
        f"The env is not deterministic: replaying the same {len(first) - 1} actions after reset(seed={seed}) "
        f"(task {first[0][_FIELDS.index('task_id')]!r}) in {where} differed from the first episode at {step}.\n"
        f"  first episode:\n    {show(one)}\n  {where}:\n    {show(other)}")


def _check_determinism(env: gym.Env, factory: Callable[[], gym.Env] | None, *, seed: int, steps: int) -> None:
    """Replay a seeded action script in a second episode of ``env``, after an episode of another task so
    the engine has a history, and in a fresh env from ``factory`` (when there is one)."""
    script, first = _record(env, seed, steps)
    _replay(env, seed + 1, script[: min(len(script), 5)])  # another episode in between: history
    _compare(first, _replay(env, seed, script), "a second episode of the same env", seed)
    if factory is None:
        return
    fresh = factory()
    try:
        again = _replay(fresh, seed, script)
    finally:
        fresh.close()
    _compare(first, again, "a fresh env", seed)


def check_env(env_or_factory: gym.Env | Callable[[], gym.Env] | str, *, seed: int = 0, steps: int = 5,
              determinism_steps: int = DETERMINISM_STEPS) -> None:
    """Check that an environment follows the agentgym contract; raise :class:`EnvCheckError` if not.

    Pass an env id (``check_env("agentgym/TextWorld-Simple-v0")``) or a zero-argument factory to also
    check that ``close()`` frees everything the env started, including processes started in its
    constructor, and that a fresh env replays an episode the same way; an env instance is checked for
    what it starts from reset on, its determinism only within itself, and is closed.

    Args:
        seed: the reset seed of the checks.
        steps: the length of the short episodes that check types and invalid actions.
        determinism_steps: the length of the action script (the expert's actions where the env has an
            expert, else seeded picks among the admissible ones) recorded in one episode and replayed in
            a second episode of the same env and in a fresh env; on a difference the error names the
            first step that differs and shows both observations. ``0`` skips the replays.
    """
    baseline = _resources()
    factory: Callable[[], gym.Env] | None
    if isinstance(env_or_factory, str):
        from agentgym.registry import make

        env_id = env_or_factory
        split = "test" if "test" in _splits_of(env_id) else "train"

        def factory() -> gym.Env:
            return make(env_id, split=split)
    elif isinstance(env_or_factory, gym.Env):
        factory = None
    else:
        factory = env_or_factory
    env = env_or_factory if isinstance(env_or_factory, gym.Env) else factory()
    try:
        _check(env, seed=seed, steps=steps)
        if determinism_steps > 0:
            _check_determinism(env, factory, seed=seed, steps=determinism_steps)
    finally:
        env.close()
    _check_close(baseline)


def _splits_of(env_id: str) -> tuple[str, ...]:
    from agentgym.registry import spec

    return spec(env_id).splits


def _check(env: gym.Env, *, seed: int, steps: int) -> None:
    base = env.unwrapped
    _require(isinstance(base, TextEnv), f"{type(base).__name__} must subclass agentgym.TextEnv.")
    _require(isinstance(env.observation_space, gym.spaces.Dict), "observation_space must be a gymnasium Dict.")
    _require(isinstance(env.action_space, gym.spaces.Text), "action_space must be a text space.")

    # Reset: types, info keys, instruction (determinism under a seed is checked after the rest).
    observation, info = env.reset(seed=seed)
    _check_observation(env, observation, "reset()")
    _check_info(info, "reset()")
    _require(isinstance(info.get("instruction"), str) and info["instruction"].strip() != "",
             "reset(): info['instruction'] must be the episode's goal text.")

    # Steps: types on every step of a short episode.
    observation, info = env.reset(seed=seed)
    for turn in range(steps):
        admissible = observation["admissible_actions"]
        result = env.step(admissible[0] if admissible else "look")
        _check_step_result(env, result, f"step {turn + 1}")
        observation, _, terminated, truncated, _ = result
        if terminated or truncated:
            break

    # Invalid actions are invalid turns with feedback, never exceptions, and do not move the state.
    observation, info = env.reset(seed=seed)
    for action in INVALID_ACTIONS:
        key_before = observation["state_key"]
        try:
            result = env.step(action)
        except Exception as error:  # noqa: BLE001 - the point is to report any exception
            raise EnvCheckError(f"step({action!r}) raised {type(error).__name__}: {error}") from error
        _check_step_result(env, result, f"step({action!r})")
        observation, reward, terminated, truncated, info = result
        _require(info["invalid_action"], f"step({action!r}) must be flagged info['invalid_action'].")
        _require(reward == 0 and not terminated, f"step({action!r}) must not reward or end the episode.")
        _require(observation["state_key"] == key_before, f"step({action!r}) changed the state.")
        if truncated:
            observation, info = env.reset(seed=seed)

    # Tasks: options={"task_id"} selects, seeds pick deterministically, splits are disjoint.
    tasks = base.tasks
    _require(len(tasks) > 0, f"Split {base.split!r} has no tasks.")
    for task in (tasks[0], tasks[-1]):
        _, info = env.reset(options={"task_id": task.id})
        _require(info["task_id"] == task.id, f"reset(options={{'task_id': {task.id!r}}}) started {info['task_id']!r}.")
    picks = [env.reset(seed=s)[1]["task_id"] for s in (1, 2, 1)]
    _require(picks[0] == picks[2], "reset(seed=s) must pick the same task every time.")
    ids_by_split = {split: {task.id for task in base.load_tasks(split)} for split in base.splits}
    for split, ids in ids_by_split.items():
        for other, other_ids in ids_by_split.items():
            if split < other:
                shared = ids & other_ids
                _require(not shared, f"Splits {split!r} and {other!r} share tasks, e.g. {sorted(shared)[:3]}.")


def _check_close(baseline: tuple[set[int], set[int]], timeout: float = 10.0) -> None:
    """After close(), no child process and no thread that was not there before may remain."""
    deadline = time.monotonic() + timeout
    while True:
        children, threads = _resources()
        extra_children, extra_threads = children - baseline[0], threads - baseline[1]
        if not extra_children and not extra_threads:
            return
        if time.monotonic() > deadline:
            names = [t.name for t in threading.enumerate() if t.ident in extra_threads]
            raise EnvCheckError(
                f"close() left {len(extra_children)} child process(es) {sorted(extra_children)} and "
                f"{len(extra_threads)} thread(s) {names} running."
            )
        time.sleep(0.1)
