"""Rollout engine: groups, concurrency modes that agree, shared template and parser, expert privacy."""

from __future__ import annotations

import pytest

from agentgym.policies import Generation, Policy, PolicyRequest, make_policy
from agentgym.rollout import RolloutEngine

from conftest import COIN, RAY_MODE


def _actions(trajectories):
    return [[turn.action for turn in t.turns] for t in trajectories]


@pytest.mark.parametrize("concurrency", ["auto", RAY_MODE])
def test_groups_share_a_task_and_ids_are_consistent(concurrency):
    with RolloutEngine(COIN, "train", num_envs=3, concurrency=concurrency) as engine:
        plan = engine.plan(num_tasks=2, group_size=3, seed=1)
        trajectories = engine.run(make_policy("random", seed=1), plan)
    assert len(trajectories) == 6
    groups = {}
    for trajectory in trajectories:
        groups.setdefault(trajectory.group_id, set()).add(trajectory.task.id)
        assert all(turn.episode_id == trajectory.episode_id for turn in trajectory.turns)
        assert all(turn.group_id == trajectory.group_id for turn in trajectory.turns)
        assert [turn.turn_index for turn in trajectory.turns] == list(range(trajectory.num_turns))
        # Consecutive turns chain their state keys.
        for before, after in zip(trajectory.turns, trajectory.turns[1:]):
            assert before.next_state_key == after.state_key
        assert trajectory.turns[-1].done and not any(turn.done for turn in trajectory.turns[:-1])
    assert len(groups) == 2 and all(len(tasks) == 1 for tasks in groups.values())
    assert len({t.episode_id for t in trajectories}) == 6


@pytest.mark.parametrize("concurrency", ["thread", "process", RAY_MODE])
def test_concurrency_modes_give_the_same_trajectories(concurrency):
    runs = {}
    for mode in ("sequential", concurrency):
        with RolloutEngine(COIN, "dev", num_envs=3, concurrency=mode) as engine:
            plan = engine.plan(num_tasks=4, group_size=2, seed=3, run_id="same")
            runs[mode] = engine.run(make_policy("random", seed=3), plan)
    assert _actions(runs["sequential"]) == _actions(runs[concurrency])
    assert [t.won for t in runs["sequential"]] == [t.won for t in runs[concurrency]]


class _Recorder(Policy):
    """Replies with the first admissible action and remembers what it was shown."""

    name = "recorder"

    def __init__(self):
        self.seen = []

    def act(self, requests):
        self.seen.extend(requests)
        return [Generation("Action: " + r.admissible_actions[0].upper()) for r in requests]


@pytest.mark.parametrize("concurrency", ["auto", RAY_MODE])
def test_prompts_use_the_template_and_replies_go_through_the_parser(concurrency):
    policy = _Recorder()
    with RolloutEngine(COIN, "dev", num_envs=2, concurrency=concurrency) as engine:
        trajectories = engine.run(policy, engine.plan(num_tasks=2, seed=0))
    request = policy.seen[0]
    assert request.expert_action is None  # only expert policies see the expert's action
    assert request.messages[0]["role"] == "system" and "Admissible actions:" in request.messages[1]["content"]
    turn = trajectories[0].turns[0]
    assert turn.response.startswith("Action: ") and turn.action == turn.response[len("Action: "):]
    assert not turn.invalid  # parsed, then matched case-insensitively by the env
    assert turn.prompt == request.messages


def test_oracle_on_an_env_without_expert_fails_clearly():
    with pytest.raises(RuntimeError, match="needs an expert"):
        make_policy("oracle").act([PolicyRequest([], ("look",), None)])


def test_unknown_policy_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="known policies: .*oracle.*random"):
        make_policy("gpt-17")
