"""Advantage estimators over per-turn samples (``docs/algorithms.md`` §0.5–0.6, §6, §7).

Every estimator takes the same per-sample arrays — the group (task) id, the episode id, the turn's
state key, its env reward, its invalid flag — and returns one advantage per sample, which the loss
broadcasts over that turn's action tokens. Pure numpy: easy to check against the spec's examples.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

ESTIMATORS = ("grpo", "gigpo", "gae")


@dataclass
class TurnStats:
    """What advantage estimators need of each per-turn sample (one entry per turn, in episode order)."""

    group_ids: Sequence[str]
    episode_ids: Sequence[str]
    turn_indices: Sequence[int]
    state_keys: Sequence[str]
    rewards: Sequence[float]  # the env's per-turn reward
    invalid: Sequence[bool]


def group_normalise(scores: np.ndarray, groups: Sequence[str], *, use_std: bool = True, eps: float = 1e-6) -> np.ndarray:
    """(score − group mean) / (group std + eps), unbiased std; groups of one: mean 0, std 1 (verl).

    A group whose scores are all equal gets 0 (its samples stay in the batch). ``use_std=False`` is
    Dr.GRPO: no division.
    """
    scores = np.asarray(scores, dtype=np.float64)
    out = np.zeros_like(scores)
    members: dict[str, list[int]] = defaultdict(list)
    for index, group in enumerate(groups):
        members[group].append(index)
    for indices in members.values():
        values = scores[indices]
        if len(values) == 1:
            mean, std = 0.0, 1.0
        else:
            mean, std = values.mean(), values.std(ddof=1)
        out[indices] = (values - mean) / (std + eps) if use_std else values - mean
    return out


def episode_returns(stats: TurnStats) -> dict[str, float]:
    """Each episode's return: the sum of its turns' env rewards."""
    totals: dict[str, float] = defaultdict(float)
    for episode, reward in zip(stats.episode_ids, stats.rewards):
        totals[episode] += float(reward)
    return dict(totals)


def discounted_returns(stats: TurnStats, gamma: float) -> np.ndarray:
    """R_t = r_t + γ·R_{t+1} within each episode (samples must be in turn order per episode)."""
    returns = np.zeros(len(stats.rewards))
    following: dict[str, float] = {}
    for index in range(len(stats.rewards) - 1, -1, -1):
        episode = stats.episode_ids[index]
        returns[index] = stats.rewards[index] + gamma * following.get(episode, 0.0)
        following[episode] = returns[index]
    return returns


def grpo_advantages(stats: TurnStats, *, use_std: bool = True, invalid_penalty: float = 0.0, eps: float = 1e-6,
                    weighting: str = "turns") -> np.ndarray:
    """GRPO with the outcome broadcast to every turn: each turn sample scores its episode's return minus
    its own invalid-action penalty, normalised within its group.

    ``weighting`` says over what the group's mean and std are taken: ``"turns"`` pools every turn of
    every episode of the group, so a long episode counts once per turn (verl-agent's "cross-all-data",
    and AgentFlow's code); ``"trajectories"`` takes them over the group's episode returns, one value per
    episode (the GRPO and Flow-GRPO papers) — docs/algorithms.md §0.5, §3.
    """
    returns = episode_returns(stats)
    penalties = invalid_penalty * np.asarray(stats.invalid, float)
    scores = np.array([returns[e] for e in stats.episode_ids]) - penalties
    if weighting == "turns":
        return group_normalise(scores, stats.group_ids, use_std=use_std, eps=eps)
    if weighting != "trajectories":
        raise ValueError(f"weighting must be 'turns' or 'trajectories', not {weighting!r}.")
    episodes = list(returns)  # one score per episode, normalised within its group
    group_of = dict(zip(stats.episode_ids, stats.group_ids))
    episode_advantage = dict(zip(episodes, group_normalise(np.array([returns[e] for e in episodes]),
                                                           [group_of[e] for e in episodes], use_std=use_std, eps=eps)))
    # The penalty keeps its place: subtracted from the turn's score before the group's scale is applied.
    scale = {}
    for group in set(stats.group_ids):
        values = np.array([returns[e] for e in episodes if group_of[e] == group])
        scale[group] = values.std(ddof=1) + eps if use_std and len(values) > 1 else 1.0
    return np.array([episode_advantage[e] - penalty / scale[g]
                     for e, g, penalty in zip(stats.episode_ids, stats.group_ids, penalties)])


def gigpo_advantages(stats: TurnStats, *, gamma: float = 0.95, step_weight: float = 1.0, use_std: bool = False,
                     invalid_penalty: float = 0.0, eps: float = 1e-6) -> np.ndarray:
    """GiGPO: episode-level group advantage plus ω × step-level advantage within groups of turns that
    share a state key (same task group). ``use_std=False`` is the scripts' ``mean_norm``.

    The invalid penalty is subtracted from the step reward after discounting, so it does not reach
    earlier steps (as in verl-agent).
    """
    penalty = invalid_penalty * np.asarray(stats.invalid, float)
    returns = episode_returns(stats)
    episode_scores = np.array([returns[e] for e in stats.episode_ids]) - penalty
    episode_level = group_normalise(episode_scores, stats.group_ids, use_std=use_std, eps=eps)
    step_scores = discounted_returns(stats, gamma) - penalty
    clusters = [f"{group}\x00{key}" for group, key in zip(stats.group_ids, stats.state_keys)]
    # Singletons get 0 in both modes: (x − x) / (1 + eps).
    step_level = np.zeros(len(step_scores))
    members: dict[str, list[int]] = defaultdict(list)
    for index, cluster in enumerate(clusters):
        members[cluster].append(index)
    for indices in members.values():
        if len(indices) > 1:
            values = step_scores[indices]
            centred = values - values.mean()
            step_level[indices] = centred / (values.std(ddof=1) + eps) if use_std else centred
    return episode_level + step_weight * step_level


def gae_advantages(stats: TurnStats, values: Sequence[float], *, gamma: float = 1.0, lam: float = 1.0,
                   invalid_penalty: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimation over each episode's turns, with V(s_t) from a value head.

    δ_t = r_t + γ·V(s_{t+1}) − V(s_t) and A_t = δ_t + γλ·A_{t+1}, with V = 0 after an episode's last
    turn (a time-limit truncation is not bootstrapped, as in verl-agent). The invalid penalty is
    subtracted from that turn's reward. Returns ``(advantages, returns)`` with returns = A + V, the value
    head's regression targets. With γ = λ = 1 and the outcome at the end, A_t = R − V(s_t): verl-agent's
    "PPO" advantage at each response's first token.
    """
    rewards = np.asarray(stats.rewards, dtype=np.float64) - invalid_penalty * np.asarray(stats.invalid, float)
    values = np.asarray(values, dtype=np.float64)
    advantages = np.zeros(len(rewards))
    following: dict[str, tuple[float, float]] = {}  # episode → (V(s_{t+1}), A_{t+1})
    for index in range(len(rewards) - 1, -1, -1):
        episode = stats.episode_ids[index]
        next_value, next_advantage = following.get(episode, (0.0, 0.0))
        delta = rewards[index] + gamma * next_value - values[index]
        advantages[index] = delta + gamma * lam * next_advantage
        following[episode] = (values[index], advantages[index])
    return advantages, advantages + values
