"""EPO — entropy-regularised policy optimisation for multi-turn agents (arXiv 2509.22576), on GRPO's
advantages (docs/algorithms.md §1).

Adds to GRPO: an entropy bonus over every turn's action tokens, and an entropy-smoothing penalty that
keeps each token's entropy inside a band around the historical mean entropy *of its turn index*,
weighted by an adaptive phase weight. Defaults follow the paper's intent; the authors' code differs in
three ways, each available as an option:

* its penalty is built from constants and has no gradient (``faithful_to_code=True``); ours pulls
  entropy back into the band;
* its per-turn history is left-padded when an iteration ends early, so index t stops meaning turn t;
  ours keeps turns aligned and averages only the iterations that reached each turn;
* its phase schedule assumes 150 epochs (``phase_epochs=150``); ours spans the run's iterations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from agentgym.hf_policy import HFPolicy
from agentgym.records import Trajectory
from agentgym.registry import max_turns
from agentgym.trainers import loop
from agentgym.trainers.config import PolicyLossConfig, RunConfig, Settings, make_config
from agentgym.trainers.grpo import GroupAdvantageConfig, GroupRelative
from agentgym.trainers.losses import aggregate, epo_phase_weight, epo_smoothing_penalty
from agentgym.trainers.samples import TurnSample


@dataclass
class EntropySmoothingConfig(Settings):
    """EPO's entropy regularisation."""

    smooth_coef: float = 1.0  # c_s, weight of the smoothing penalty inside the entropy term
    smooth_low: float = 0.0  # κ_l: band floor as a fraction of the turn's historical entropy
    smooth_high: float = 2.0  # κ_r: band ceiling
    smooth_penalty: float = 0.1  # α
    phase_weights: bool = True  # adaptive phase weight w(e) on the penalty
    phase_epochs: int = 0  # E of w(e); 0 = the run's iterations (the authors' code: 150)
    late_turn_gate: bool = True  # apply the penalty only to micro-batches holding a turn ≥ max_turns // 2
    faithful_to_code: bool = False  # the authors' constant (gradient-free) penalty


@dataclass
class EPOConfig(RunConfig, PolicyLossConfig, GroupAdvantageConfig, EntropySmoothingConfig):
    """GRPO's loss and advantages plus EPO's entropy regularisation."""

    output_dir: str = "runs/epo"  # the run folder
    entropy_coef: float = 0.001  # c_H, weight of the multi-turn entropy term (EPO's default)

    def __post_init__(self) -> None:
        if self.layout != "per-turn":
            raise ValueError("EPO's entropy history is kept per turn index: use layout=per-turn.")
        super().__post_init__()


class EntropySmoothing(GroupRelative):
    """EPO's per-turn entropy history and smoothing penalty on top of group-relative advantages."""

    config: EPOConfig

    def __init__(self, config: EPOConfig):
        super().__init__(config)
        self.history: list[list[float]] = []  # one row per iteration: mean entropy at each turn (NaN: absent)
        self.max_turns = max_turns(config.env_id, config.env_kwargs)

    def samples(self, policy: HFPolicy, trajectories: list[Trajectory], row: dict[str, Any]) -> list[TurnSample]:
        samples = super().samples(policy, trajectories, row)
        if samples:
            self.observe(samples, row)
        return samples

    def observe(self, samples: list[TurnSample], row: dict[str, Any]) -> None:
        """Append this rollout's mean sampling entropy at each turn index to the history."""
        sums, counts = np.zeros(self.max_turns), np.zeros(self.max_turns)
        for sample in samples:
            if sample.turn_index < self.max_turns and sample.old_entropies:
                sums[sample.turn_index] += sum(sample.old_entropies)
                counts[sample.turn_index] += len(sample.old_entropies)
        means = np.divide(sums, counts, out=np.full(self.max_turns, np.nan), where=counts > 0)
        self.history.append(means.tolist())
        row["turn0_mean_entropy"] = float(self.turn_means()[0])

    def turn_means(self) -> np.ndarray:
        """H̄[t]: the mean over past iterations of the batch entropy at turn t (iterations that reached t)."""
        history = np.array(self.history, dtype=float)
        reached = ~np.isnan(history)
        totals = np.where(reached, history, 0.0).sum(axis=0)
        counts = reached.sum(axis=0)
        return np.divide(totals, counts, out=np.zeros_like(totals), where=counts > 0)

    def extra_loss(self, terms, micro, iteration: int) -> tuple[torch.Tensor | float, dict[str, float]]:
        config = self.config
        turns = [s.turn_index for s in micro]
        if config.late_turn_gate and not any(t >= self.max_turns // 2 for t in turns):
            return 0.0, {"smooth_penalty": 0.0}
        means = torch.tensor(self.turn_means(), dtype=torch.float32)[torch.tensor(turns).clamp(max=self.max_turns - 1)]
        penalty = epo_smoothing_penalty(terms["_token_entropy"], means, low_ratio=config.smooth_low,
                                        high_ratio=config.smooth_high, penalty=config.smooth_penalty,
                                        faithful_to_code=config.faithful_to_code)
        weight = epo_phase_weight(iteration, config.phase_epochs or config.iterations) if config.phase_weights else 1.0
        smoothing = aggregate(penalty, terms["_mask"], config.aggregation)
        # loss = pg − c_H·(entropy − c_s·w·penalty): the shared loss has −c_H·entropy; this is the rest.
        extra = config.entropy_coef * config.smooth_coef * weight * smoothing
        return extra, {"smooth_penalty": float(smoothing.detach()), "phase_weight": weight}

    def state(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state(self, state: dict[str, Any]) -> None:
        self.history = list(state.get("history", []))


def train(config: EPOConfig, *, progress: bool = True) -> dict[str, Any]:
    """Train with EPO: returns the held-out metrics before and after, the report's path and the
    metrics rows."""
    return loop.train(EntropySmoothing(config), progress=progress)


CONFIG = EPOConfig  # the settings of `trainer: epo` (agentgym train --help-config epo)


def run(settings: dict[str, Any], overrides: list[str] = ()) -> dict[str, Any]:
    """Entry point of ``agentgym train`` for ``trainer: epo``."""
    return train(make_config(EPOConfig, settings, overrides))
