"""GRPO for multi-turn agents, with Dr.GRPO, GiGPO and DAPO's dynamic sampling (docs/algorithms.md §0.5, §6).

On the shared loop (``loop.py``) GRPO adds only its advantages: each turn scores its episode's
outcome, normalised within the group of episodes that share a task (Dr.GRPO: without the std
division); GiGPO adds a step-level advantage within groups of turns that share a state. DAPO's dynamic
sampling rolls out more tasks when whole groups teach nothing (all won or all failed).

    agentgym train configs/grpo-coin-level5.yaml iterations=30 lr=2e-5
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from agentgym.evaluation import episode_metrics
from agentgym.hf_policy import HFPolicy
from agentgym.records import Trajectory
from agentgym.trainers import loop
from agentgym.trainers.advantages import gigpo_advantages, grpo_advantages
from agentgym.trainers.config import PolicyLossConfig, RunConfig, Settings, make_config
from agentgym.trainers.loop import PolicyGradient, Rollouts
from agentgym.trainers.samples import turn_stats

ADVANTAGES = ("grpo", "gigpo")


@dataclass
class GroupAdvantageConfig(Settings):
    """Group-relative advantages (GRPO, Dr.GRPO, GiGPO) and which groups to train on (DAPO)."""

    advantage: str = "grpo"  # grpo (outcome broadcast to every turn) | gigpo (plus state-keyed step groups)
    norm_by_std: bool | None = None  # divide by the group std (default: grpo yes, gigpo no); grpo + false: Dr.GRPO
    gamma: float = 0.95  # GiGPO step-return discount
    step_weight: float = 1.0  # GiGPO ω, weight of the step-level advantage
    invalid_penalty: float = 0.1  # subtracted from an invalid turn's score
    group_stats: str = "turns"  # grpo's group mean/std over every turn (verl-agent) | trajectories (Flow-GRPO paper)
    dynamic_sampling: bool = False  # DAPO: train only on groups whose returns differ, sampling more tasks
    max_sampling_rounds: int = 3  # cap on rollout rounds per iteration with dynamic sampling (then train on what there is)

    def __post_init__(self) -> None:
        if self.group_stats not in ("turns", "trajectories"):
            raise ValueError(f"group_stats must be 'turns' or 'trajectories', not {self.group_stats!r}.")
        if self.advantage not in ADVANTAGES:
            raise ValueError(f"Unknown advantage estimator {self.advantage!r}: use one of {ADVANTAGES} "
                             "(value-based advantages: trainer ppo).")
        super().__post_init__()


@dataclass
class GRPOConfig(RunConfig, PolicyLossConfig, GroupAdvantageConfig):
    """Settings of a GRPO run: the run, the clipped loss and the group advantages."""

    output_dir: str = "runs/grpo"  # the run folder


def informative_groups(trajectories: list[Trajectory]) -> list[Trajectory]:
    """The trajectories of groups whose returns are not all equal (DAPO dynamic sampling): a group that
    all won or all failed has zero advantage everywhere and teaches nothing."""
    returns: dict[str, set[float]] = {}
    for trajectory in trajectories:
        returns.setdefault(trajectory.group_id, set()).add(round(trajectory.total_reward, 9))
    return [t for t in trajectories if len(returns[t.group_id]) > 1]


class GroupRelative(PolicyGradient):
    """GRPO / Dr.GRPO / GiGPO advantages, with DAPO's dynamic sampling as an option."""

    config: GroupAdvantageConfig

    def collect(self, rollouts: Rollouts, iteration: int, row: dict[str, Any]) -> list[Trajectory]:
        config = self.config
        rounds = config.max_sampling_rounds if config.dynamic_sampling else 1
        trajectories, kept = [], []
        for round_index in range(rounds):
            batch = rollouts.groups(iteration, round_index)
            if not batch:
                break
            trajectories += batch
            kept += informative_groups(batch) if config.dynamic_sampling else batch
            if len({t.group_id for t in kept}) >= config.tasks_per_iteration:
                break
            if rollouts.episodes_left is not None and len(trajectories) >= rollouts.episodes_left:
                break  # an equal-budget run: extra rounds never play past max_episodes
        row.update({f"train_{k}": v for k, v in episode_metrics(trajectories).items()})
        row["train_episodes"] = len(trajectories)  # every episode played, kept or not (max_episodes)
        row["train_groups_kept"] = len({t.group_id for t in kept})
        return kept  # empty when every group saturated even after the capped extra rounds: no update

    def advantages(self, policy: HFPolicy, trajectories: list[Trajectory]) -> np.ndarray:
        config, stats = self.config, turn_stats(trajectories)
        if config.advantage == "gigpo":
            return gigpo_advantages(stats, gamma=config.gamma, step_weight=config.step_weight,
                                    use_std=bool(config.norm_by_std), invalid_penalty=config.invalid_penalty)
        return grpo_advantages(stats, use_std=config.norm_by_std is not False, invalid_penalty=config.invalid_penalty,
                               weighting=config.group_stats)


def train(config: GRPOConfig, *, progress: bool = True) -> dict[str, Any]:
    """Train with GRPO (or GiGPO, Dr.GRPO, DAPO, as the config says): returns the held-out metrics before and after, the report's path and the
    metrics rows."""
    return loop.train(GroupRelative(config), progress=progress)


CONFIG = GRPOConfig  # the settings of `trainer: grpo` (agentgym train --help-config grpo)


def run(settings: dict[str, Any], overrides: list[str] = ()) -> dict[str, Any]:
    """Entry point of ``agentgym train`` for ``trainer: grpo``."""
    return train(make_config(GRPOConfig, settings, overrides))
