"""Long runs keep memory, threads and processes flat: 500 make/reset/step/close cycles of one env, and
one env of every family played for many episodes, its engine processes (JVM, Chromium) included.
Peers leaked JVMs and RAM in long runs; ALFWorld grew ~3.5 MiB per game until it reused fast-downward."""

from __future__ import annotations

import gc
import os
import threading

import psutil
import pytest

import agentgym
from agentgym.memory import expert, first_admissible, look_around, soak

from conftest import COIN


def test_reset_step_close_cycles_do_not_leak():
    process = psutil.Process()
    task_ids = [task.id for task in agentgym.make(COIN, split="dev").unwrapped.tasks[:5]]
    samples = {}
    for cycle in range(500):
        env = agentgym.make(COIN, split="dev")
        observation, _ = env.reset(options={"task_id": task_ids[cycle % len(task_ids)]})
        for _ in range(3):
            observation, _, terminated, truncated, _ = env.step(observation["admissible_actions"][0])
            if terminated or truncated:
                break
        env.close()
        if cycle in (49, 499):
            gc.collect()
            samples[cycle] = (process.memory_info().rss, threading.active_count(), process.num_threads(),
                              len(process.children(recursive=True)), len(process.open_files()))
    (rss_early, *counts_early), (rss_late, *counts_late) = samples[49], samples[499]
    assert counts_late == counts_early, f"threads/children/files grew: {counts_early} -> {counts_late}"
    growth_mb = (rss_late - rss_early) / 2**20
    assert growth_mb < 10, f"RSS grew by {growth_mb:.1f} MB over 450 cycles"


# --- every family: one env, a new task each episode, memory of this process and its children ---------

# (id, split, action, tasks to cycle through (None: all, a new one each episode), warm-up, measured N).
# A leak of 1 MiB an episode would exceed the bound of N/2 MiB. Seconds are on the 2-core machine, loaded.
FAMILIES = [
    pytest.param(COIN, "dev", first_admissible, 5, 20, 80, id="textworld"),  # 5 games: each new one costs 1-4 s
    pytest.param("agentgym/TWX-CoinCollector-v0", "train", first_admissible, None, 40, 160, id="textworld_express"),
    pytest.param("agentgym/SearchQA-Factbook-v0", "train", expert, None, 40, 200, id="search"),
    pytest.param("agentgym/TicTacToe-vs-Random-v0", "train", first_admissible, None, 40, 200, id="multiagent_seat"),
    pytest.param("agentgym/ScienceWorld-v0", "train", look_around, None, 30, 60, id="scienceworld",
                 marks=pytest.mark.slow),  # ~40 s
    # Every ALFWorld episode loads another game (the case; ~1 s each); 4 games keep their
    # translations cached. Before the fix this grew ~3.5 MiB an episode.
    pytest.param("agentgym/ALFWorld-v0", "test", first_admissible, 4, 8, 40, id="alfworld"),  # ~25 s, in the default run
    pytest.param("agentgym/WebShop-v0", "train", expert, None, 10, 40, id="webshop", marks=pytest.mark.slow),  # ~90 s
    pytest.param("agentgym/MiniWoB-ClickButton-v0", "train", expert, None, 20, 100, id="miniwob",
                 marks=pytest.mark.slow),  # ~25 s
    pytest.param("agentgym/GUIGrounding-v0", "train", expert, None, 20, 100, id="gui", marks=pytest.mark.slow),  # ~30 s
]


@pytest.mark.parametrize(("env_id", "split", "act", "task_count", "warmup", "episodes"), FAMILIES)
def test_every_family_keeps_memory_and_processes_flat_over_many_episodes(env_id, split, act, task_count, warmup,
                                                                        episodes):
    env = agentgym.make(env_id, split=split)
    try:
        readings, _ = soak(env, env.unwrapped.tasks[:task_count], act, warmup=warmup, episodes=episodes, readings=5)
    finally:
        env.close()
    samples, counts = [r.resident for r in readings], [r.counts for r in readings]
    # The last two quarter marks against the first: a leak of 1 MiB an episode adds >= 0.75 N MiB there.
    growth = (min(samples[-2:]) - samples[0]) / 2**20
    trace = " ".join(f"{(s - samples[0]) / 2**20:+.1f}" for s in samples)
    assert growth < episodes / 2, f"{env_id}: memory grew by {growth:.1f} MiB over {episodes} episodes ({trace} MiB)"
    assert len(set(counts)) == 1, f"{env_id}: threads/children/fds changed: {counts}"
    if os.environ.get("AGENTGYM_SOAK_REPORT"):
        print(f"\n{env_id}: {growth:+.1f} MiB over {episodes} episodes after {warmup} ({trace} MiB)")
