"""Memory over long runs: what this process and the engines it started (JVMs, Chromium) hold.

The soak tests and ``benchmarks/soak_memory.py`` play an env for many episodes with :func:`soak`, which
reads memory after :func:`settle` so that garbage not yet collected, here or in an engine, does not read
as a leak.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psutil


def resident_bytes() -> int:
    """Bytes resident in this process and all its descendants: PSS where the kernel reports it, so pages
    that Chromium's processes share count once, else RSS."""
    total = 0
    for process in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            info = process.memory_full_info()
            total += getattr(info, "pss", info.rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return total


def settle(env: Any) -> None:
    """Collect garbage in Python and in the env's engine, if the engine can (``engine.collect_garbage()``:
    the JVM families' full collection gives back heap, so a JVM still growing towards its cap does not
    read as a leak)."""
    gc.collect()
    collect = getattr(getattr(env.unwrapped, "engine", None), "collect_garbage", None)
    if callable(collect):
        collect()
    time.sleep(0.2)


# --- soaking one env: many short episodes, memory and process counts read on the way ----------------------

def first_admissible(env: Any, observation: dict) -> str:
    """A soak action: the first admissible action."""
    return observation["admissible_actions"][0]


def expert(env: Any, observation: dict) -> str | None:
    """A soak action: the env's oracle action (None ends the episode)."""
    return env.unwrapped.expert_action()


def look_around(env: Any, observation: dict) -> str:
    """A soak action for envs that list no actions (ScienceWorld's oracle costs seconds to start)."""
    return "look around"


@dataclass
class Reading:
    """What a soak reads after settling: resident bytes (:func:`resident_bytes`) and the threads, child
    processes and open file descriptors of this process."""

    episode: int
    resident: int
    counts: tuple[int, int, int]


def soak(env: Any, tasks: Sequence[Any], act: Callable[[Any, dict], str | None], *, warmup: int, episodes: int,
         readings: int = 2) -> tuple[list[Reading], float]:
    """Play ``warmup`` episodes, then ``episodes`` more — task ``(episode * 37) % len(tasks)`` each, up to two
    steps of ``act`` — reading memory after the warm-up, at ``readings - 2`` evenly spaced points and at
    the end. Returns the readings and the seconds per measured episode (settling included)."""
    every = max(1, episodes // max(1, readings - 1))
    marks = {warmup + i * every for i in range(readings - 1)} | {warmup + episodes}
    found, began = [], 0.0
    for episode in range(warmup + episodes + 1):
        if episode in marks:
            settle(env)
            process = psutil.Process()
            found.append(Reading(episode, resident_bytes(), (threading.active_count(),
                                                             len(process.children(recursive=True)), process.num_fds())))
            began = began or time.perf_counter()
        if episode < warmup + episodes:
            observation, _ = env.reset(options={"task_id": tasks[(episode * 37) % len(tasks)].id})
            for _ in range(2):
                action = act(env, observation)
                if action is None:
                    break
                observation, _, terminated, truncated, _ = env.step(action)
                if terminated or truncated:
                    break
    return found, (time.perf_counter() - began) / max(1, episodes)
