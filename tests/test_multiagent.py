"""Multi-agent games: PettingZoo's API tests, scripted players that finish every game, invalid moves
that never crash, the lockstep rollout with agent ids, and single-agent seat views."""

from __future__ import annotations

import numpy as np
import pytest

import agentgym
from agentgym.multiagent import (
    MultiAgentRollout,
    check_multiagent_env,
    list_multiagent_envs,
    make_multiagent,
    multiagent_spec,
    summarize,
)
from agentgym.policies import OraclePolicy, RandomPolicy

MULTIAGENT_IDS = list_multiagent_envs()


@pytest.mark.parametrize("env_id", MULTIAGENT_IDS)
def test_pettingzoo_api_tests_and_agentgym_rules_pass(env_id):
    check_multiagent_env(lambda: make_multiagent(env_id, "test"), turn_based=multiagent_spec(env_id).turn_based)


@pytest.mark.parametrize("env_id", MULTIAGENT_IDS)
def test_scripted_players_finish_every_game_and_nonsense_never_crashes(env_id):
    env = make_multiagent(env_id, "test")
    rng = np.random.default_rng(0)

    def sloppy(agent):  # the scripted player, with random text, None and non-strings mixed in
        roll = rng.random()
        if roll < 0.2:
            return env.action_space(agent).sample()
        if roll < 0.3:
            return None if roll < 0.25 else 17
        return env.expert_move(agent)

    for seed in range(30):
        for choose in (env.expert_move, sloppy):
            env.reset(seed=seed)
            for agent in env.agent_iter(max_iter=500):
                _, _, terminated, truncated, _ = env.last()
                env.step(None if terminated or truncated else choose(agent))
            assert not env.agents, f"{env_id} seed {seed}: the game did not end"
    env.close()


def test_tic_tac_toe_expert_beats_a_random_player_and_the_parallel_api_plays_whole_games():
    with MultiAgentRollout("agentgym/TicTacToe-v0", "test", {"player_1": RandomPolicy(seed=0),
                                                             "player_2": OraclePolicy()}, num_games=4) as rollout:
        summary = summarize(rollout.run(seeds=range(40)))
    # Over 200 games the scripted O wins 80% and loses 4.5%; a random O wins 28.5%.
    assert summary["player_2"]["win_rate"] >= 0.6 and summary["player_2"]["loss_rate"] <= 0.15
    assert summary["player_1"]["mean_return"] == pytest.approx(-summary["player_2"]["mean_return"])

    parallel = make_multiagent("agentgym/TicTacToe-v0", "test", parallel=True)
    observations, infos = parallel.reset(seed=1)
    moves = 0
    while parallel.agents:
        active = infos[parallel.agents[0]].get("active_agent", parallel.aec_env.agent_selection)
        legal = observations[active]["admissible_actions"]
        observations, rewards, terminations, truncations, infos = parallel.step(
            {agent: (legal[0] if agent == active else None) for agent in parallel.agents})
        moves += 1
    assert 3 <= moves <= 9 and sorted(rewards.values()) in ([-1, 1], [0, 0])


def test_rollout_records_agent_ids_and_credits_each_agent_the_game_result():
    with MultiAgentRollout("agentgym/Negotiation-v0", "test", {"alice": OraclePolicy(), "bob": OraclePolicy()},
                           num_games=3) as rollout:
        trajectories = rollout.run(seeds=range(6))
    assert len(trajectories) == 12
    for trajectory in trajectories:
        agent = trajectory.episode_id.rsplit("-", 1)[-1]
        assert all(turn.agent_id == agent for turn in trajectory.turns)
        if trajectory.turns:
            assert trajectory.turns[-1].done and all(turn.next_state_key for turn in trajectory.turns)
            assert all(turn.reward == 0 for turn in trajectory.turns[:-1])
            assert 0 <= trajectory.total_reward <= 1
    # Lockstep over several games gives what one game at a time gives.
    with MultiAgentRollout("agentgym/Negotiation-v0", "test", {"alice": OraclePolicy(), "bob": OraclePolicy()},
                           num_games=1) as rollout:
        alone = rollout.run(seeds=range(6))
    assert [t.total_reward for t in alone] == [t.total_reward for t in trajectories]


def test_negotiation_rules():
    env = make_multiagent("agentgym/Negotiation-v0", "test", max_rounds=3)
    env.reset(options={"task_id": "negotiation-s200000"})
    first, second = env.agent_selection, [a for a in env.possible_agents if a != env.agent_selection][0]
    env.step("accept")  # nothing to accept yet
    assert env.infos[first]["invalid_action"] and "no proposal" in env.observe(first)["text"]
    env.step("I would like everything. propose: books=99 hats=0 balls=0")
    assert env.infos[first]["invalid_action"] and "more than the pool" in env.observe(first)["text"]
    env.step("Fair split? propose: books=0 hats=0 balls=0")
    assert env.agent_selection == second and "Fair split?" in env.observe(second)["text"]
    env.step("propose: books=0 hats=0 balls=0")
    env.step("no, propose: books=0 hats=0 balls=0")  # the third move hits the deadline
    assert all(env.terminations.values()) and env.rewards == {first: 0.0, second: 0.0}


def test_referential_game_word_limit_and_held_out_attributes():
    from agentgym.envs.multiagent.referential import HELD_OUT

    env = make_multiagent("agentgym/ReferentialGame-v0", "test_ood")
    env.reset(seed=0)
    env.step("the big shiny one")
    assert env.infos["speaker"]["invalid_action"] and "limit is 2" in env.observe("speaker")["text"]
    held_out = {value for values in HELD_OUT.values() for value in values}
    target = env.observe("speaker")["text"].rsplit("The target is the ", 1)[1]
    assert held_out & set(target.rstrip(".").split())
    env.step(env.expert_move("speaker"))
    env.step(env.expert_move("listener"))
    assert env.rewards == {"speaker": 1.0, "listener": 1.0}


def test_seat_views_are_single_agent_envs_every_trainer_can_use():
    env = agentgym.make("agentgym/TicTacToe-vs-Random-v0", split="test")
    wins = 0
    for seed in range(20):
        observation, info = env.reset(seed=seed)
        assert "You play" in info["instruction"] and observation["admissible_actions"]
        while True:
            observation, reward, terminated, truncated, info = env.step(env.unwrapped.expert_action())
            if terminated or truncated:
                break
        wins += info["won"]
    assert wins >= 16
    observation, _ = env.reset(seed=0)
    board = observation["text"]
    observation, reward, terminated, _, info = env.step("z9")
    assert info["invalid_action"] and not terminated and reward == 0 and "Invalid action" in observation["text"]
    observation, *_ = env.step(observation["admissible_actions"][0])
    assert observation["text"] != board
    env.close()


def test_cli_eval_reports_win_rate_against_a_random_opponent_on_held_out_seeds(tmp_path, capsys):
    from agentgym.cli import main
    from agentgym.evaluation import read_results

    assert main(["eval", "agentgym/TicTacToe-vs-Random-v0", "--split", "test", "--policy", "random",
                 "--episodes", "6", "--seeds", "0", "1", "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("*.json")
    result = read_results(path)
    assert result["split"] == "test" and len(result["episodes"]) == 12
    assert all(episode["task"]["id"].startswith("tictactoe-s2") for episode in result["episodes"])  # test seeds
    assert "TicTacToe-vs-Random-v0 | test | random | 2 × 6" in capsys.readouterr().out
