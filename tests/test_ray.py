"""Ray rollouts: an env actor killed mid-episode truncates that episode and the rollout goes on, actors
take per-actor resources, and the errors for a missing Ray or an unreachable cluster are clear.

The mode's agreement with process mode (same plan and seed, same trajectories) is tested where process
mode is: tests/test_rollout.py, test_evaluation.py and test_user_envs.py run with ``concurrency="ray"``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from agentgym.policies import make_policy
from agentgym.rollout import RolloutEngine

from conftest import COIN
from test_training import ONE_TURN_COIN

pytest.importorskip("ray", reason="Ray is not installed (extra ray)")


def test_an_actor_killed_mid_episode_truncates_that_episode_and_the_rollout_continues():
    killed = []

    def kill_slot_0(turn, observation):
        # Slot 0 starts the plan's first episode (g0-e0); kill its actor after that episode's first turn.
        if not killed and turn.episode_id.endswith("g0-e0") and not turn.done:
            killed.append(engine.pool.actors.pids()[0])
            os.kill(killed[0], signal.SIGKILL)

    with RolloutEngine(COIN, "train", num_envs=2, concurrency="ray", env_kwargs={"max_turns": 6}) as engine:
        before = engine.pool.actors.pids()
        plan = engine.plan(num_tasks=2, group_size=2, seed=0, run_id="kill")
        trajectories = engine.run(make_policy("random", seed=0), plan, on_turn=kill_slot_0)
        after = engine.pool.actors.pids()
        assert engine.pool.actors.restarts == 1

    assert killed and killed[0] == before[0] and after[0] != before[0] and after[1] == before[1]
    crashed = trajectories[0]
    assert [t.episode_id for t in trajectories][0].endswith("g0-e0")
    # The killed actor's episode ends at its next step, truncated, as a lost turn that changes nothing.
    crash = crashed.turns[-1]
    assert len(crashed.turns) == 2 and crash.info["engine_crashed"] and crash.truncated and not crash.terminated
    assert crash.reward == 0.0 and not crashed.won and crash.state_key == crash.next_state_key
    # Every other episode ran to its end, the later ones on the fresh actor.
    others = trajectories[1:]
    assert all(t.turns[-1].done and not any(turn.info.get("engine_crashed") for turn in t.turns) for t in others)


def test_actor_options_place_each_env_with_its_resources():
    import ray

    with RolloutEngine(COIN, "dev", num_envs=2, concurrency="ray", actor_options={"num_cpus": 0.5}) as engine:
        assert len(set(engine.pool.actors.pids())) == 2
        used = ray.cluster_resources()["CPU"] - ray.available_resources().get("CPU", 0)
        assert used == pytest.approx(1.0)  # two actors holding half a CPU each
        trajectories = engine.run(make_policy("random", seed=0), engine.plan(num_tasks=2, seed=0))
    assert all(t.turns[-1].done for t in trajectories)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


UNREACHABLE = """
import time
from agentgym.rollout import EnvPool
start = time.perf_counter()
try:
    EnvPool("agentgym/TextWorld-CoinCollector-v0", "dev", 1, concurrency="ray", ray_address="127.0.0.1:{port}")
except ConnectionError as error:
    print("ConnectionError", round(time.perf_counter() - start), error)
"""


def test_an_unreachable_cluster_is_a_clear_error_within_the_timeout():
    # In a fresh interpreter: this one may already hold a local Ray instance.
    script = UNREACHABLE.replace("{port}", str(_free_port()))
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.startswith("ConnectionError"), result.stderr[-2000:]
    assert "Cannot reach the Ray cluster" in result.stdout and "RAY_ADDRESS" in result.stdout
    assert time.perf_counter() - start < 60


MISSING = """
import sys
sys.modules["ray"] = None  # as if the extra were not installed
from agentgym.rollout import EnvPool
try:
    EnvPool("agentgym/TextWorld-CoinCollector-v0", "dev", 1, concurrency="ray")
except ModuleNotFoundError as error:
    print(error)
"""


def test_without_ray_the_error_names_the_extra():
    result = subprocess.run([sys.executable, "-c", MISSING], capture_output=True, text=True, timeout=120)
    assert "pip install 'agentgym[ray]'" in result.stdout, result.stderr[-2000:]


def test_one_grpo_iteration_with_ray_env_actors_and_the_hf_sampler(tmp_path):
    from agentgym.trainers.grpo import GRPOConfig, train

    config = GRPOConfig(**{**ONE_TURN_COIN, "num_envs": 2, "eval_episodes": 4}, iterations=1, concurrency="ray",
                        output_dir=str(tmp_path))
    result = train(config, progress=False)
    (row,) = [row for row in result["rows"] if "train_success_rate" in row]
    assert row["samples"] == 16 and "loss" in row  # 4 groups of 4 one-turn episodes, trained on
    assert (tmp_path / "checkpoint.pt").exists() and "eval_success_rate" in result["after"]
