"""Every worked example of docs/algorithms.md (§0.2–0.6, §1.5, §6.3, §7.4) for the trainer core: PPO clip, aggregation, KL, GRPO, Dr.GRPO,
GiGPO and EPO, with their edge cases; and hand-computed examples for PPO's GAE and value loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agentgym.trainers.advantages import (
    TurnStats,
    gae_advantages,
    gigpo_advantages,
    group_normalise,
    grpo_advantages,
)
from agentgym.trainers.losses import (
    aggregate,
    clipped_value_loss,
    epo_phase_weight,
    epo_smoothing_penalty,
    kl_divergence,
    ppo_clip_loss,
)


def test_ppo_clip_and_dual_clip_table():
    advantages = torch.tensor([1.0, -1.0, -1.0])
    ratio = torch.tensor([1.5, 0.5, 5.0])
    loss, clipped = ppo_clip_loss(ratio.log(), torch.zeros(3), advantages, clip_low=0.2, clip_high=0.28, dual_clip=3.0)
    assert loss.tolist() == pytest.approx([-1.28, 0.8, 3.0])
    assert clipped.tolist() == [1.0, 1.0, 0.0]
    no_dual, _ = ppo_clip_loss(ratio.log(), torch.zeros(3), advantages, clip_low=0.2, clip_high=0.28, dual_clip=None)
    assert no_dual.tolist() == pytest.approx([-1.28, 0.8, 5.0])


def test_aggregation_modes():
    values = torch.tensor([[0.4, -0.2, 0.0, 0.0], [0.1, 0.3, -0.1, 0.5]])
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    assert aggregate(values, mask, "token-mean").item() == pytest.approx(0.1667, abs=1e-4)
    assert aggregate(values, mask, "seq-mean-token-mean").item() == pytest.approx(0.15)
    assert aggregate(values, mask, "seq-mean-token-sum").item() == pytest.approx(0.5)
    assert aggregate(values, mask, "seq-mean-token-sum-norm").item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="Unknown aggregation"):
        aggregate(values, mask, "mean")


def test_kl_estimators():
    logprobs, ref = torch.tensor([-1.0]), torch.tensor([-1.5])
    assert kl_divergence(logprobs, ref, "k3").item() == pytest.approx(0.1065, abs=1e-4)
    assert kl_divergence(logprobs, ref, "k1").item() == pytest.approx(0.5)
    assert kl_divergence(logprobs, ref, "k2").item() == pytest.approx(0.125)
    assert kl_divergence(torch.tensor([-30.0]), torch.tensor([0.0]), "k3").item() == 10.0  # clamped


def _stats(groups, episodes, turns, keys, rewards, invalid=None):
    return TurnStats(groups, episodes, turns, keys, rewards, invalid or [False] * len(rewards))


def test_grpo_group_zscore_singletons_and_zero_variance():
    scores = np.array([1.0, 0.0, 0.0, 1.0, 5.0, 2.0, 2.0])
    groups = ["a", "a", "a", "a", "solo", "same", "same"]
    advantages = group_normalise(scores, groups)
    std = np.std([1, 0, 0, 1], ddof=1)
    assert advantages[:4] == pytest.approx((np.array([1, 0, 0, 1]) - 0.5) / (std + 1e-6))
    assert advantages[4] == pytest.approx(5.0 / (1 + 1e-6))  # group of one: mean 0, std 1
    assert advantages[5:].tolist() == [0.0, 0.0]  # all equal: zero, but kept
    dr_grpo = group_normalise(scores, groups, use_std=False)
    assert dr_grpo[:4].tolist() == [0.5, -0.5, -0.5, 0.5] and dr_grpo[4] == 5.0


def test_grpo_broadcasts_the_outcome_to_every_turn_with_invalid_penalty():
    stats = _stats(["g"] * 5, ["e1", "e1", "e1", "e2", "e2"], [0, 1, 2, 0, 1], ["s"] * 5,
                   [0.0, 0.0, 1.0, 0.0, 0.0], [False, True, False, False, False])
    advantages = grpo_advantages(stats, use_std=False, invalid_penalty=0.1)
    scores = np.array([1.0, 0.9, 1.0, 0.0, 0.0])
    assert advantages == pytest.approx(scores - scores.mean())


def _flow_stats(rewards_per_episode: list[float], turns_per_episode: list[int]):
    groups, episodes, turns, keys, rewards = [], [], [], [], []
    for episode, (reward, count) in enumerate(zip(rewards_per_episode, turns_per_episode)):
        for turn in range(count):
            groups.append("query")
            episodes.append(f"T{episode}")
            turns.append(turn)
            keys.append(f"s{episode}{turn}")
            rewards.append(reward if turn == count - 1 else 0.0)  # the judged outcome at the end
    return _stats(groups, episodes, turns, keys, rewards)


def test_flow_grpo_worked_example_trajectory_and_turn_weighted():
    """docs/algorithms.md §3.4: T = [3, 2, 3, 1] turns, R = [1, 0, 0, 1]."""
    stats = _flow_stats([1.0, 0.0, 0.0, 1.0], [3, 2, 3, 1])
    by_trajectory = grpo_advantages(stats, weighting="trajectories")
    assert by_trajectory == pytest.approx([0.8660] * 3 + [-0.8660] * 2 + [-0.8660] * 3 + [0.8660], abs=1e-4)
    by_turn = grpo_advantages(stats, weighting="turns")
    assert by_turn == pytest.approx([1.0541] * 3 + [-0.8433] * 2 + [-0.8433] * 3 + [1.0541], abs=1e-4)
    for weighting in ("trajectories", "turns"):  # a group that all won teaches nothing
        assert grpo_advantages(_flow_stats([1.0] * 4, [3, 2, 3, 1]), weighting=weighting) == pytest.approx([0.0] * 9)


GIGPO_STATES = [["s0", "s1", "s2"], ["s0", "s1", "s3"], ["s0", "s4", "s2"], ["s0", "s4", "s5"]]
GIGPO_WINS = [True, False, True, False]


def _gigpo_stats():
    groups, episodes, turns, keys, rewards = [], [], [], [], []
    for episode, (states, won) in enumerate(zip(GIGPO_STATES, GIGPO_WINS)):
        for turn, state in enumerate(states):
            groups.append("task")
            episodes.append(f"T{episode}")
            turns.append(turn)
            keys.append(state)
            rewards.append(10.0 if won and turn == 2 else 0.0)
    return _stats(groups, episodes, turns, keys, rewards)


def test_gigpo_worked_example_mean_norm():
    stats = _gigpo_stats()
    episode_only = gigpo_advantages(stats, gamma=0.95, step_weight=0.0)
    assert episode_only.reshape(4, 3).tolist() == [[5.0] * 3, [-5.0] * 3, [5.0] * 3, [-5.0] * 3]
    step_only = (gigpo_advantages(stats, gamma=0.95, step_weight=1.0) - episode_only).reshape(4, 3)
    assert step_only[:, 0] == pytest.approx([4.5125, -4.5125, 4.5125, -4.5125])  # s0: all four
    assert step_only[:, 1] == pytest.approx([4.75, -4.75, 4.75, -4.75])  # s1 and s4 clusters
    assert step_only[:, 2] == pytest.approx([0.0, 0.0, 0.0, 0.0])  # s2 equal; s3, s5 singletons
    total = gigpo_advantages(stats, gamma=0.95, step_weight=1.0).reshape(4, 3)
    assert total[0, 1] == pytest.approx(9.75)


def test_gigpo_worked_example_mean_std_norm():
    stats = _gigpo_stats()
    episode_only = gigpo_advantages(stats, gamma=0.95, step_weight=0.0, use_std=True).reshape(4, 3)
    assert episode_only[:, 0] == pytest.approx([0.9574, -0.9574, 0.9574, -0.9574], abs=1e-4)
    step_only = gigpo_advantages(stats, gamma=0.95, use_std=True).reshape(4, 3) - episode_only
    assert step_only[:, 0] == pytest.approx([0.866, -0.866, 0.866, -0.866], abs=1e-3)
    assert step_only[:, 1] == pytest.approx([0.7071, -0.7071, 0.7071, -0.7071], abs=1e-4)
    assert step_only[:, 2] == pytest.approx([0.0] * 4)


# ---------------------------------------------------------------------------------------------- EPO
EPO_ENTROPY = [[0.9, 1.4, 0.2, 0.0], [0.5, 0.6, 2.0, 0.7]]
EPO_MASK = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
EPO_HBAR = torch.tensor([1.0, 0.8, 0.6, 0.5])
EPO_TURNS = torch.tensor([1, 3])


def test_epo_penalty_mask_and_entropy_term():
    entropy = torch.tensor(EPO_ENTROPY)
    penalty = epo_smoothing_penalty(entropy, EPO_HBAR[EPO_TURNS], low_ratio=0.0, high_ratio=2.0, penalty=0.05,
                                    faithful_to_code=True)
    assert torch.allclose(penalty, torch.tensor([[0, 0, 0, 0.05], [0, 0, 0.05, 0]]))
    mean_entropy = aggregate(entropy, EPO_MASK).item()
    mean_penalty = aggregate(penalty, EPO_MASK).item()
    assert mean_entropy == pytest.approx(0.9) and mean_penalty == pytest.approx(0.05 / 7)
    assert mean_entropy - mean_penalty * epo_phase_weight(0) == pytest.approx(0.8929, abs=1e-4)
    assert mean_entropy - mean_penalty * epo_phase_weight(100) == pytest.approx(0.8979, abs=1e-4)


def test_epo_phase_weights():
    expected = {0: 1.0, 30: 0.8899, 75: 0.8271, 76: 0.7686, 100: 0.2943, 150: 0.0398}
    for epoch, weight in expected.items():
        assert epo_phase_weight(epoch) == pytest.approx(weight, abs=1e-4)


def test_epo_code_faithful_penalty_has_no_gradient_and_default_one_does():
    entropy = torch.tensor(EPO_ENTROPY, requires_grad=True)
    faithful = epo_smoothing_penalty(entropy, EPO_HBAR[EPO_TURNS], low_ratio=0.0, high_ratio=2.0, penalty=0.05,
                                     faithful_to_code=True)
    term = aggregate(entropy, EPO_MASK) - aggregate(faithful, EPO_MASK)
    (gradient,) = torch.autograd.grad(term, entropy)
    assert torch.allclose(gradient, EPO_MASK / 7)  # plain entropy gradient, 1/7 for each token
    differentiable = epo_smoothing_penalty(entropy, EPO_HBAR[EPO_TURNS], low_ratio=0.0, high_ratio=2.0, penalty=0.05)
    (gradient,) = torch.autograd.grad(aggregate(differentiable, EPO_MASK), entropy)
    # Only the out-of-band, unmasked token (2.0 > 1.0) is pushed: d/dH of 0.05·relu(H − 1.0) / 7.
    assert gradient[1, 2].item() == pytest.approx(0.05 / 7)
    assert gradient.abs().sum().item() == pytest.approx(0.05 / 7)
    assert differentiable[1, 2].item() == pytest.approx(0.05 * (2.0 - 1.0))


def test_gae_over_turns_hand_computed():
    # One episode of three turns, outcome reward at the end; γ = 0.9, λ = 0.8.
    # δ2 = 1 − 0.8 = 0.2;            A2 = 0.2
    # δ1 = 0.9·0.8 − 0.6 = 0.12;     A1 = 0.12 + 0.72·0.2 = 0.264
    # δ0 = 0.9·0.6 − 0.5 = 0.04;     A0 = 0.04 + 0.72·0.264 = 0.23008
    stats = _stats(["g"] * 4, ["e1", "e1", "e1", "e2"], [0, 1, 2, 0], ["s"] * 4, rewards=[0, 0, 1, 0],
                   invalid=[False, False, False, True])
    advantages, returns = gae_advantages(stats, [0.5, 0.6, 0.8, 0.3], gamma=0.9, lam=0.8, invalid_penalty=0.1)
    assert advantages[:3] == pytest.approx([0.23008, 0.264, 0.2])
    assert returns[:3] == pytest.approx([0.73008, 0.864, 1.0])
    # A one-turn episode with an invalid action: A = (0 − 0.1) − 0.3, not bootstrapped past its end.
    assert advantages[3] == pytest.approx(-0.4) and returns[3] == pytest.approx(-0.1)


def test_gae_with_unit_gamma_and_lambda_is_return_minus_value():
    stats = _stats(["g"] * 3, ["e"] * 3, [0, 1, 2], ["s"] * 3, rewards=[0, 0, 1])
    advantages, returns = gae_advantages(stats, [0.2, 0.5, 0.9])
    assert advantages == pytest.approx([0.8, 0.5, 0.1]) and returns == pytest.approx([1, 1, 1])


def test_clipped_value_loss():
    values = torch.tensor([1.2, 0.2, 0.7])
    old = torch.tensor([0.5, 0.8, 0.6])
    returns = torch.tensor([1.0, 0.0, 1.0])
    # clip 0.5, first: V clipped to 1.0 → max(0.04, 0) / 2.
    assert clipped_value_loss(values, old, returns, clip=0.5)[0] == pytest.approx(0.02)
    # clip 0.2: 0.7 → max(0.04, 0.09) / 2; 0.6 → max(0.04, 0.36) / 2; 0.7 is inside → 0.09 / 2.
    assert clipped_value_loss(values, old, returns, clip=0.2).tolist() == pytest.approx([0.045, 0.18, 0.045])
    assert clipped_value_loss(values, old, returns, clip=None).tolist() == pytest.approx([0.02, 0.02, 0.045])


# --- IGPO (docs/algorithms.md §2.5): the p sequences, F1 outcomes and advantages of the worked example.
IGPO_P = [[0.10, 0.30, 0.60], [0.10, 0.05, 0.05], [0.10, 0.40], [0.10, 0.10, 0.20]]
IGPO_F1 = [1.0, 0.0, 0.5, 0.0]


def _igpo_worked_example():
    from agentgym.trainers.igpo import turn_rewards

    rewards, episodes, turns = [], [], []
    for index, (p, f1) in enumerate(zip(IGPO_P, IGPO_F1)):
        rollout_rewards, _ = turn_rewards(p, f1, [False] * len(p))
        rewards += rollout_rewards
        episodes += [f"r{index}"] * len(p)
        turns += list(range(len(p)))
    return rewards, _stats(["g"] * len(rewards), episodes, turns, ["s"] * len(rewards), rewards=[0.0] * len(rewards))


def test_igpo_worked_example_paper_mode():
    from agentgym.trainers.igpo import paper_advantages

    rewards, stats = _igpo_worked_example()
    assert rewards == pytest.approx([0.2, 0.3, 1.0, -0.05, 0.0, 0.0, 0.3, 0.5, 0.0, 0.1, 0.0])
    assert np.mean(rewards) == pytest.approx(0.2136, abs=1e-4)
    assert np.std(rewards, ddof=1) == pytest.approx(0.3131, abs=1e-4)
    assert np.std(rewards) == pytest.approx(0.2986, abs=1e-4)  # population std: not the one used
    advantages = paper_advantages(stats, rewards, gamma=1.0)
    assert advantages == pytest.approx([2.7436, 2.7872, 2.5114, -2.2065, -1.3646, -0.6823, 1.1904, 0.9145,
                                        -1.7275, -1.0452, -0.6823], abs=1e-4)
    # γ = 0.9 discounts the same z-scores: rollout 2 gets 0.2758 + 0.9 × 0.9145.
    assert paper_advantages(stats, rewards, gamma=0.9)[6:8] == pytest.approx([1.0989, 0.9145], abs=1e-4)


def test_igpo_worked_example_code_mode():
    from agentgym.trainers.igpo import column_baseline_advantages

    rewards, _ = _igpo_worked_example()
    # One token per turn and no observation tokens: each row holds its rollout's turn rewards.
    rows = [rewards[0:3], rewards[3:6], rewards[6:8], rewards[8:11]]
    advantages = column_baseline_advantages(rows, [[1] * len(row) for row in rows], ["g"] * 4)
    # Returns-to-go [1.5, 1.3, 1.0], [−0.05, 0, 0], [0.8, 0.5], [0.1, 0.1, 0.0]; column means over all four
    # rows, the short rollout counting 0 at column 2 (the authors' zero-padded batch): 0.5875, 0.475, 0.25.
    assert advantages[0] == pytest.approx([0.9125, 0.825, 0.75])
    assert advantages[1] == pytest.approx([-0.6375, -0.475, -0.25])
    assert advantages[2] == pytest.approx([0.2125, 0.025])
    assert advantages[3] == pytest.approx([-0.4875, -0.375, -0.25])


def test_igpo_code_mode_runs_through_observation_tokens_and_compares_columns():
    from agentgym.trainers.igpo import column_baseline_advantages

    # Rollout A: a 2-token search (IG 0.2 on its last token), 2 observation tokens, a 1-token answer (F1 1).
    # Rollout B: a 3-token answer right away (F1 0.5). Returns-to-go: A [1.2, 1.2, 1, 1, 1], B [0.5, 0.5, 0.5].
    # Column means 0.85, 0.85, 0.75, 0.5, 0.5: column 2 sets A's observation against B's answer token.
    a, b = column_baseline_advantages([[0, 0.2, 0, 0, 1.0], [0, 0, 0.5]], [[1, 1, 0, 0, 1], [1, 1, 1]], ["g", "g"])
    assert a == pytest.approx([0.35, 0.35, 0.0, 0.0, 0.5])
    assert b == pytest.approx([-0.35, -0.35, -0.25])


def test_igpo_format_penalty_and_edge_cases():
    from agentgym.records import Turn
    from agentgym.trainers.igpo import malformed, turn_rewards

    def turn(response: str, invalid: bool = False) -> Turn:
        return Turn("e", "g", "t", 0, [], response, response, 0.0, False, False, invalid, "s", "s")

    tags = ("think", "search", "answer")
    assert [malformed(turn(text), tags) for text in ("", "  \n", "<search>x", "<search>x</search></answer>",
                                                     "<SEARCH>x</search>", "<think>a</think><answer>b</answer>")] \
        == [True, True, True, True, False, False]
    assert malformed(turn("go north", invalid=True), tags)  # no tags: the env could not read it
    # A rollout that never answers: its last turn earns the penalty; a malformed middle turn too; gains stay.
    rewards, gains = turn_rewards([0.1, 0.3, 0.2], None, [False, True, False])
    assert rewards == pytest.approx([0.2, -2.0, -2.0]) and gains[:2] == pytest.approx([0.2, -0.1])
    assert gains[2] is None
    # A one-turn answer: the F1 alone, no gain. A malformed answer turn: the (configurable) penalty.
    assert turn_rewards([0.4], 0.5, [False]) == ([0.5], [None])
    assert turn_rewards([0.1, 0.2], 1.0, [False, True], format_penalty=-1.0)[0] == pytest.approx([0.1, -1.0])


def test_igpo_gives_a_group_with_no_correct_answer_an_advantage_where_gains_differ():
    from agentgym.trainers.igpo import paper_advantages, turn_rewards

    # Every F1 is 0, so GRPO's outcome advantages are all 0; the information gains still rank the searches.
    rewards = turn_rewards([0.1, 0.5], 0.0, [False, False])[0] + turn_rewards([0.1, 0.05], 0.0, [False, False])[0]
    stats = _stats(["g"] * 4, ["a", "a", "b", "b"], [0, 1, 0, 1], ["s"] * 4, rewards=[0.0] * 4)
    assert grpo_advantages(stats) == pytest.approx([0, 0, 0, 0])  # the env's rewards: every answer wrong
    advantages = paper_advantages(stats, rewards)
    assert advantages[0] > 0 > advantages[2]
