"""The TextWorld family: real generated games, cached; oracle wins; rewards and state keys behave."""

from __future__ import annotations

import pytest

import agentgym
from agentgym.envs.textworld.env import clean_feedback
from agentgym.envs.textworld.games import family_tasks, game_file
from agentgym.policies import make_policy
from agentgym.rollout import RolloutEngine
from conftest import TEXTWORLD_IDS

BANNER_INTRO = r"""


                    ________  ________  __    __  ________
                   |        \|        \|  \  |  \|        \
                    \$$$$$$$$| $$$$$$$$| $$  | $$ \$$$$$$$$
              __       __   ______   _______   __        _______
             | $$$    \$$$ \$$    $$| $$  | $$| $$     \| $$    $$
              \$$      \$$  \$$$$$$  \$$   \$$ \$$$$$$$$ \$$$$$$$

Welcome to TextWorld! First off, venture north.

-= Cookhouse =-
You've just sauntered into a cookhouse.



>                                                  -= Cookhouse =-0/1"""


def test_clean_feedback_strips_banner_and_prompt():
    assert clean_feedback(BANNER_INTRO, intro=True) == (
        "Welcome to TextWorld! First off, venture north.\n\n-= Cookhouse =-\nYou've just sauntered into a cookhouse."
    )


@pytest.mark.parametrize("env_id", TEXTWORLD_IDS)
@pytest.mark.parametrize("split", ["test", "test_ood"])
def test_oracle_wins_every_test_task_it_is_given(env_id, split):
    with RolloutEngine(env_id, split, num_envs=2) as engine:
        task_ids = list(engine.tasks)[:: max(1, len(engine.tasks) // 3)][:3]
        trajectories = engine.run(make_policy("oracle"), engine.plan(task_ids=task_ids))
    for trajectory in trajectories:
        assert trajectory.won, f"oracle lost {trajectory.task.id}"
        assert trajectory.num_invalid == 0
        # Rewards are score deltas: they add up to the game's maximum score.
        assert trajectory.total_reward == trajectory.turns[-1].info["max_score"] > 0


def test_random_policy_is_well_below_the_oracle():
    env_id = "agentgym/TextWorld-Simple-v0"
    with RolloutEngine(env_id, "test", num_envs=2) as engine:
        plan = engine.plan(num_tasks=4, seed=0)
        random_wins = [t.won for t in engine.run(make_policy("random", seed=0), plan)]
        oracle_wins = [t.won for t in engine.run(make_policy("oracle"), plan)]
    assert all(oracle_wins)
    assert sum(random_wins) <= len(random_wins) // 2


def test_expert_recovers_after_the_agent_wanders_off():
    env = agentgym.make("agentgym/TextWorld-TreasureHunter-v0", split="test")
    try:
        observation, _ = env.reset(seed=5)
        expert = env.unwrapped.expert_action()
        detour = [a for a in observation["admissible_actions"] if a.startswith("go ") and a != expert]
        assert detour, "the test needs a second exit"
        env.step(detour[0])
        won = False
        for _ in range(env.unwrapped.max_turns - 1):
            _, _, terminated, truncated, info = env.step(env.unwrapped.expert_action())
            if terminated or truncated:
                won = info["won"]
                break
        assert won
    finally:
        env.close()


def test_state_key_ignores_history_and_tracks_state(coin_env):
    observation, _ = coin_env.reset(seed=4)
    start = observation["state_key"]
    for looking in ("look", "inventory"):
        observation, *_ = coin_env.step(looking)
        assert observation["state_key"] == start  # looking around changes no fact
    move = next(a for a in observation["admissible_actions"] if a.startswith("go "))
    observation, *_ = coin_env.step(move)
    assert observation["state_key"] != start
    back = {"north": "south", "south": "north", "east": "west", "west": "east"}[move.split()[1]]
    observation, *_ = coin_env.step(f"go {back}")
    assert observation["state_key"] == start  # same state by another path, same key


def test_games_are_generated_once_and_cached(tmp_path):
    task = family_tasks("coin_collector", "dev")[0]
    payload = task.payload
    path = game_file(payload["generator"], payload["settings"], payload["seed"], tmp_path)
    assert path.exists() and path.with_suffix(".json").exists()
    stamp = path.stat().st_mtime_ns
    assert game_file(payload["generator"], payload["settings"], payload["seed"], tmp_path) == path
    assert path.stat().st_mtime_ns == stamp
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".gen-")]  # no scratch left behind


def test_same_seed_same_game_different_seed_different_game(tmp_path):
    first, second = family_tasks("simple", "dev")[:2]
    generate = lambda task, root: game_file(task.payload["generator"], task.payload["settings"], task.payload["seed"], root)  # noqa: E731
    a = generate(first, tmp_path / "a").with_suffix(".json").read_text()
    b = generate(first, tmp_path / "b").with_suffix(".json").read_text()
    c = generate(second, tmp_path / "a").with_suffix(".json").read_text()
    assert a == b and a != c
