"""TRL's GRPOTrainer on agentgym envs (agentgym.integrations.trl, examples/trl_grpo.py)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from agentgym.integrations.trl import (
    AgentgymToolEnv,
    environment_factory,
    make_dataset,
    tool_call_conversations,
)

from conftest import COIN

ROOT = pathlib.Path(__file__).resolve().parents[1]
SEARCH = "agentgym/SearchQA-Factbook-v0"


def test_the_tool_env_steps_the_env_and_owns_the_reward():
    factory = environment_factory(COIN, "train", max_turns=3)
    env = factory()
    try:
        task = next(t for t in env.env.unwrapped.tasks if t.id.startswith("coin_collector-level1-"))
        text = env.reset(task_id=task.id, seed=0, prompt=[{"role": "user", "content": ""}])  # TRL passes the row
        assert text.startswith("Task: ") and "Admissible actions: " in text and "take coin" in text
        reply = env.act("dance wildly")
        assert "Invalid action" in reply and "Reward: 0." in reply and env.get_reward() == 0.0
        reply = env.act("take coin")
        assert "Reward: 1. The episode is over." in reply and env.get_reward() == 1.0 and env.won
        assert env.act("take coin") == "The episode is over; no more actions are taken."
        assert factory.steps == 2
        # TRL makes every public method but reset and get_reward a tool: only `act` is one.
        import inspect

        public = {name for name, _ in inspect.getmembers(AgentgymToolEnv, inspect.isfunction) if not name.startswith("_")}
        assert public == {"reset", "act", "get_reward"}
        from transformers.utils import get_json_schema

        schema = get_json_schema(env.act)["function"]
        assert schema["name"] == "act" and schema["parameters"]["required"] == ["action"]
    finally:
        factory.close()
    assert factory.instances == []


def test_the_ground_truth_never_reaches_the_prompt():
    dataset = make_dataset(SEARCH, "train", num_tasks=5, seed=1)
    factory = environment_factory(SEARCH, "train")
    env = factory()
    try:
        tasks = {task.id: task for task in env.env.unwrapped.tasks}
        for row in dataset:
            answers = [str(a) for a in (tasks[row["task_id"]].answer or [])]
            assert answers
            # What the model reads before it acts: the dataset's prompt and reset's text (later tool replies are
            # the env's own observations, e.g. retrieved passages, which may well hold the answer).
            shown = json.dumps(row["prompt"]) + json.dumps(row) + env.reset(**row)
            assert not any(answer in shown for answer in answers), row["task_id"]
        chats = tool_call_conversations(SEARCH, "train", task_ids=dataset["task_id"][:2])
        assert chats and all(chat[1]["role"] == "user" for chat in chats)
    finally:
        factory.close()


def test_make_dataset_rows_feed_reset_and_groups_share_a_task():
    dataset = make_dataset(COIN, "train", num_tasks=4, seed=0, task_filter="level1-")
    assert dataset.column_names == ["prompt", "task_id", "seed"] and len(dataset) == 4
    assert all("level1-" in task_id for task_id in dataset["task_id"])
    with pytest.raises(ValueError, match="No train task"):
        make_dataset(COIN, "train", task_filter="no-such-level")


@pytest.mark.slow  # ~3-7 min on 2 cores (20 min when the machine was loaded 10x over)
def test_the_example_trains_the_tiny_model_with_grpo_and_the_env_reward_reaches_the_logs(tmp_path):
    pytest.importorskip("trl")
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "trl_grpo.py"), "--steps", "2", "--output-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=1500, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["env_steps"] > 0  # the model called `act`, which stepped the env
    assert len(summary["rewards"]) == 2 and all(r is not None for r in summary["env_rewards"])
    assert max(summary["env_rewards"]) > 0  # the env's reward, logged under the env class's name
