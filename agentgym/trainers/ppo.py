"""PPO with a value head and GAE over turns for multi-turn agents — the baseline EPO and GiGPO compare
against (docs/algorithms.md §7).

A learned baseline instead of group statistics: a linear value head reads the policy's last hidden state
at the end of each turn's prompt, V(s_t); advantages are GAE over the episode's turns; the loss adds the
clipped value loss. Actor and critic share the backbone (and the LoRA adapter), so there is no second
model in memory (verl-agent runs a separate critic initialised from the same weights).

verl-agent's "PPO" runs GAE inside each turn's response tokens with γ = λ = 1 and the episode reward
at the last token, which makes every turn's advantage R − V at its first token. Here GAE runs over
turns: with the defaults γ = λ = 1 and outcome rewards this is the same A_t = R − V(s_t), broadcast
over the turn's tokens, and γ, λ < 1 give turn-level credit assignment.

    agentgym train configs/ppo-coin-level5.yaml
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from agentgym import frozen_trunk
from agentgym.hf_policy import HFPolicy
from agentgym.records import Trajectory
from agentgym.trainers import loop
from agentgym.trainers.advantages import gae_advantages
from agentgym.trainers.config import PolicyLossConfig, RunConfig, Settings, make_config
from agentgym.trainers.loop import PolicyGradient
from agentgym.trainers.losses import aggregate, clipped_value_loss
from agentgym.trainers.samples import TurnSample, all_turns, turn_samples, turn_stats


@dataclass
class ValueConfig(Settings):
    """The value head, GAE over turns and the value loss. Groups are not needed: ``group_size`` 1 is
    plain PPO."""

    gamma: float = 1.0  # GAE discount over turns (verl-agent: 1)
    gae_lambda: float = 1.0  # GAE λ (verl-agent: 1)
    invalid_penalty: float = 0.1  # subtracted from an invalid turn's reward
    vf_coef: float = 0.5  # weight of the value loss (its gradient also reaches the shared backbone)
    value_lr: float = 1e-3  # learning rate of the value head (the backbone keeps lr)
    value_clip: float | None = 0.5  # clip of the value prediction around its rollout-time value (None: off)
    whiten_advantages: bool = True  # normalise advantages over the batch (verl's masked_whiten)


@dataclass
class PPOConfig(RunConfig, PolicyLossConfig, ValueConfig):
    """Settings of a PPO run: the run, the clipped loss and the value baseline."""

    output_dir: str = "runs/ppo"  # the run folder

    def __post_init__(self) -> None:
        if self.layout != "per-turn":
            raise ValueError("The value head scores each turn's prompt: use layout=per-turn with PPO.")
        super().__post_init__()


class ValueBaseline(PolicyGradient):
    """A value head on the policy's backbone, GAE advantages and the value loss."""

    config: PPOConfig

    def setup(self, policy: HFPolicy) -> None:
        self.policy = policy
        self.head = torch.nn.Linear(policy.model.config.hidden_size, 1)
        torch.nn.init.zeros_(self.head.weight)  # V starts at 0: early advantages are the raw returns
        torch.nn.init.zeros_(self.head.bias)

    def parameter_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.head.parameters()), "lr": self.config.value_lr}]

    def values(self, samples: list[TurnSample], *, grad: bool) -> torch.Tensor:
        """V(s) for each sample's prompt: the head on the last layer's hidden state at its last token. When
        the samples share the frozen layers' kept output (``reuse_computation``), only the adapted layers
        run: the rollout already ran the prompt through the others."""
        cache = samples[0].trunk_cache
        with torch.set_grad_enabled(grad):
            if cache is not None:
                states = frozen_trunk.prompt_states(self.policy, [s.trunk_key for s in samples], cache, grad=grad)
            else:
                states = self.policy.prompt_states([s.prompt_ids for s in samples], grad=grad)
            return self.head(states).squeeze(-1)

    def advantages(self, policy: HFPolicy, trajectories: list[Trajectory]) -> np.ndarray:
        config = self.config
        states = turn_samples(trajectories, policy, np.zeros(len(all_turns(trajectories))),
                              share_trunk=config.reuse_computation)  # what V reads; the advantages come next
        values = torch.cat([self.values(states[i : i + config.micro_batch_size], grad=False)
                            for i in range(0, len(states), config.micro_batch_size)]).numpy()
        advantages, self.returns = gae_advantages(turn_stats(trajectories), values, gamma=config.gamma,
                                                  lam=config.gae_lambda, invalid_penalty=config.invalid_penalty)
        self.old_values = values
        if config.whiten_advantages and len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        return advantages

    def samples(self, policy: HFPolicy, trajectories: list[Trajectory], row: dict[str, Any]) -> list[TurnSample]:
        samples = super().samples(policy, trajectories, row)
        if not samples:
            return samples
        for sample, value, target in zip(samples, self.old_values, self.returns):
            sample.old_value, sample.value_target = float(value), float(target)
        residual = self.returns - self.old_values
        explained = 1 - residual.var() / self.returns.var() if self.returns.var() > 0 else 0.0
        row.update(value_mean=float(self.old_values.mean()), explained_variance=float(explained))
        return samples

    def extra_loss(self, terms, micro, iteration: int) -> tuple[torch.Tensor, dict[str, float]]:
        values = self.values(micro, grad=True)
        old = torch.tensor([s.old_value for s in micro])
        targets = torch.tensor([s.value_target for s in micro])
        per_sample = clipped_value_loss(values, old, targets, self.config.value_clip)
        value_loss = aggregate(per_sample[:, None], torch.ones(len(micro), 1), "token-mean")
        return self.config.vf_coef * value_loss, {"value_loss": float(value_loss.detach())}

    def state(self) -> dict[str, Any]:
        return {"head": self.head.state_dict()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.head.load_state_dict(state["head"])


def train(config: PPOConfig, *, progress: bool = True) -> dict[str, Any]:
    """Train with PPO: returns the held-out metrics before and after, the report's path and the
    metrics rows."""
    return loop.train(ValueBaseline(config), progress=progress)


CONFIG = PPOConfig  # the settings of `trainer: ppo` (agentgym train --help-config ppo)


def run(settings: dict[str, Any], overrides: list[str] = ()) -> dict[str, Any]:
    """Entry point of ``agentgym train`` for ``trainer: ppo``."""
    return train(make_config(PPOConfig, settings, overrides))
