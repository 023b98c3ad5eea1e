"""The Java-backed families manage their JVMs: capped, reused across episodes, freed on close, and
restarted after a crash with the episode marked truncated."""

from __future__ import annotations

import gc
import os
import signal
import threading

import psutil
import pytest

import agentgym

JVM_IDS = ["agentgym/ScienceWorld-v0", "agentgym/TWX-CoinCollector-v0"]


def java_children() -> list[psutil.Process]:
    return [child for child in psutil.Process().children(recursive=True) if "java" in child.name()]


@pytest.mark.parametrize("env_id", JVM_IDS)
def test_a_killed_jvm_truncates_the_episode_and_the_next_reset_runs_on_a_fresh_one(env_id):
    env = agentgym.make(env_id, split="test")
    try:
        env.reset(seed=0)
        engine = env.unwrapped.engine
        old_pid = engine.pid
        options = psutil.Process(old_pid).cmdline()
        assert options.count("-Xmx512m") == 1
        # ScienceWorld's JVM has one constant identity hash, so its episodes do not depend on its history.
        assert ("-XX:hashCode=2" in options) == (env_id == JVM_IDS[0])
        os.kill(old_pid, signal.SIGKILL)
        psutil.Process(old_pid).wait(timeout=10)
        observation, reward, terminated, truncated, info = env.step("look around")
        assert truncated and not terminated and reward == 0 and info["engine_crashed"]
        assert "crashed" in observation["text"]
        observation, info = env.reset(seed=1)
        assert engine.starts == 2 and engine.pid != old_pid
        assert psutil.Process(engine.pid).cmdline()[1:] == options[1:]  # restarted with the same options
        observation, reward, terminated, truncated, info = env.step("look around")
        assert not info["invalid_action"] and not truncated
    finally:
        env.close()
    assert not java_children()


def test_a_jvm_that_dies_between_episodes_is_replaced_at_reset():
    env = agentgym.make(JVM_IDS[1], split="dev")
    try:
        env.reset(seed=0)
        os.kill(env.unwrapped.engine.pid, signal.SIGKILL)
        observation, info = env.reset(seed=0)
        assert observation["text"].startswith("You are in") and env.unwrapped.engine.starts == 2
    finally:
        env.close()


def test_jvms_start_lazily_are_reused_and_stop_on_close():
    env = agentgym.make(JVM_IDS[1], split="dev")
    assert env.unwrapped.engine.pid is None and not java_children()  # making an env starts nothing
    for seed in range(5):
        env.reset(seed=seed)
    assert env.unwrapped.engine.starts == 1 and len(java_children()) == 1
    env.close()
    assert not java_children()


@pytest.mark.parametrize(("env_id", "episodes"), [(JVM_IDS[0], 80), (JVM_IDS[1], 400)])
def test_many_episodes_keep_memory_threads_and_processes_flat(env_id, episodes):
    process = psutil.Process()
    env = agentgym.make(env_id, split="train")
    samples = []
    try:
        tasks = env.unwrapped.tasks
        for episode in range(episodes):
            # New tasks each time: ScienceWorld reloads its task on the JVM, TWX generates a new game.
            env.reset(options={"task_id": tasks[(episode * 37) % len(tasks)].id})
            for action in ("look around", "inventory", "look around"):
                env.step(action)
            if episode + 1 in (episodes // 2, episodes):
                gc.collect()
                jvm = psutil.Process(env.unwrapped.engine.pid)
                samples.append((process.memory_info().rss, jvm.memory_info().rss, threading.active_count(),
                                process.num_threads(), jvm.num_threads(), len(java_children())))
    finally:
        env.close()
    (python_early, jvm_early, *counts_early), (python_late, jvm_late, *counts_late) = samples
    assert counts_late == counts_early and counts_late[-1] == 1, (counts_early, counts_late)
    assert python_late - python_early < 10 * 2**20, "Python RSS grew"
    # The JVM grows its heap towards the cap (ScienceWorld: ~470 MB RSS at -Xmx512m, reached after 40-80
    # episodes depending on load) and never beyond it plus the JVM's own overhead.
    assert max(jvm_early, jvm_late) < (512 + 200) * 2**20, (jvm_early >> 20, jvm_late >> 20)
    assert not java_children()
