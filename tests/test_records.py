"""Turn records round-trip through JSONL losslessly."""

from __future__ import annotations

import json

from agentgym.policies import make_policy
from agentgym.records import Trajectory, read_jsonl, write_jsonl
from agentgym.rollout import RolloutEngine
from conftest import COIN


def test_real_trajectories_round_trip(tmp_path):
    with RolloutEngine(COIN, "dev", num_envs=2) as engine:
        trajectories = engine.run(make_policy("random", seed=0), engine.plan(num_tasks=3, group_size=2, seed=0))
    # Token-level fields as an LLM policy fills them, including awkward floats and text.
    turn = trajectories[0].turns[0]
    turn.prompt_token_ids, turn.action_token_ids = [1, 2, 3], [4, 5]
    turn.action_logprobs, turn.action_entropies = [-0.1234567890123, -1e-300], [2.5, 0.0]
    turn.response = "émoji 🙂\nand a \"quote\""
    path = write_jsonl(tmp_path / "runs" / "records.jsonl", trajectories)
    loaded = list(read_jsonl(path))
    assert [t.to_dict() for t in loaded] == [t.to_dict() for t in trajectories]
    assert loaded[0].turns[0].action_logprobs == [-0.1234567890123, -1e-300]
    assert loaded[0].task == trajectories[0].task
    assert len(path.read_text().splitlines()) == 6
    assert not list(path.parent.glob("*.tmp"))


def test_reading_a_broken_line_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"episode_id": "x"}) + "\n")
    try:
        list(read_jsonl(path))
    except ValueError as error:
        assert "bad.jsonl:1" in str(error)
    else:
        raise AssertionError("a broken record must raise")


def test_outcome_properties():
    with RolloutEngine(COIN, "dev", num_envs=1) as engine:
        (trajectory,) = engine.run(make_policy("oracle"), engine.plan(num_tasks=1, seed=2))
    assert isinstance(trajectory, Trajectory)
    assert trajectory.won and trajectory.terminated and not trajectory.truncated
    assert trajectory.total_reward == 1.0 and trajectory.num_invalid == 0
