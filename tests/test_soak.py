"""500 reset/step/close cycles: memory and threads stay flat (peers leaked JVMs and RAM in long runs)."""

from __future__ import annotations

import gc
import threading

import psutil

import agentgym
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
