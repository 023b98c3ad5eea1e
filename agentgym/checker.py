"""``check_env``: the conformance checker every agentgym env passes, shipped for users' own envs.

In the spirit of :func:`gymnasium.utils.env_checker.check_env`, plus what multi-turn agent training
relies on: text actions, invalid actions as turns (never exceptions), the standard ``info`` keys,
determinism under a seed, disjoint splits, and ``close()`` freeing every process and thread.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable

import gymnasium as gym
import psutil

from agentgym.contract import INFO_KEYS, TextEnv

INVALID_ACTIONS: tuple[Any, ...] = ("", "   ", "xyzzy plugh frobnicate 42", "\x00\ufffd", None, 17)


class EnvCheckError(AssertionError):
    """An env breaks the agentgym contract; the message says which rule and how."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise EnvCheckError(message)


def _resources() -> tuple[set[int], set[int]]:
    """Live child processes and Python threads of this process."""
    children = {child.pid for child in psutil.Process().children(recursive=True)}
    return children, {thread.ident for thread in threading.enumerate() if thread.ident is not None}


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


def _episode(env: gym.Env, seed: int, actions: int) -> list[tuple]:
    """Reset with ``seed`` and take the first admissible action (or a fixed text) ``actions`` times."""
    observation, info = env.reset(seed=seed)
    trace = [(observation["text"], observation["state_key"], info["task_id"])]
    for _ in range(actions):
        admissible = observation["admissible_actions"]
        observation, reward, terminated, truncated, info = env.step(admissible[0] if admissible else "look")
        trace.append((observation["text"], observation["state_key"], reward, terminated, truncated))
        if terminated or truncated:
            break
    return trace


def check_env(env_or_factory: gym.Env | Callable[[], gym.Env] | str, *, seed: int = 0, steps: int = 5) -> None:
    """Check that an environment follows the agentgym contract; raise :class:`EnvCheckError` if not.

    Pass an env id (``check_env("agentgym/TextWorld-Simple-v0")``) or a zero-argument factory to also
    check that ``close()`` frees everything the env started, including processes started in its
    constructor; an env instance is checked for what it starts from reset on, and is closed.
    """
    baseline = _resources()
    if isinstance(env_or_factory, str):
        from agentgym.registry import make

        env = make(env_or_factory, split="test" if "test" in _splits_of(env_or_factory) else "train")
    elif isinstance(env_or_factory, gym.Env):
        env = env_or_factory
    else:
        env = env_or_factory()
    try:
        _check(env, seed=seed, steps=steps)
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

    # Reset: types, info keys, instruction, and determinism under a seed.
    observation, info = env.reset(seed=seed)
    _check_observation(env, observation, "reset()")
    _check_info(info, "reset()")
    _require(isinstance(info.get("instruction"), str) and info["instruction"].strip() != "",
             "reset(): info['instruction'] must be the episode's goal text.")
    first = _episode(env, seed, steps)
    second = _episode(env, seed, steps)
    _require(first == second, "Two episodes with the same seed and actions differed: the env is not deterministic.")

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
