"""PPO with a value head and GAE for multi-turn agents — the baseline EPO and GiGPO compare against.

GRPO's loop with a learned baseline instead of group statistics: a linear value head reads the
policy's last hidden state at the end of each turn's prompt, V(s_t); advantages are GAE over the
episode's turns; the loss adds the clipped value loss. Actor and critic share the backbone (and the
LoRA adapter), so there is no second model in memory (verl-agent runs a separate critic initialised
from the same weights).

verl-agent's "PPO" runs GAE inside each turn's response tokens with γ = λ = 1 and the episode reward
at the last token, which makes every turn's advantage R − V at its first token. Here GAE runs over
turns (``ALGORITHMS.md`` §0.6): with the defaults γ = λ = 1 and outcome rewards this is the same
A_t = R − V(s_t), broadcast over the turn's tokens, and γ, λ < 1 give turn-level credit assignment.

    agentgym train configs/ppo-coin-level5.yaml
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from agentgym.trainers import common
from agentgym.trainers.advantages import gae_advantages
from agentgym.trainers.grpo import GRPOConfig, LoopHooks, train
from agentgym.trainers.losses import aggregate, clipped_value_loss


@dataclass
class PPOConfig(GRPOConfig):
    """GRPO's settings plus the value head's. Groups are not needed: ``group_size`` 1 is plain PPO."""

    output_dir: str = "runs/ppo"
    advantage: str = "gae"
    gamma: float = 1.0  # GAE discount over turns (verl-agent: 1)
    gae_lambda: float = 1.0  # GAE λ (verl-agent: 1)
    vf_coef: float = 0.5  # weight of the value loss (its gradient also reaches the shared backbone)
    value_lr: float = 1e-3  # learning rate of the value head (the backbone keeps lr)
    value_clip: float | None = 0.5  # clip of the value prediction around its rollout-time value (None: off)
    whiten_advantages: bool = True  # normalise advantages over the batch (verl's masked_whiten)


class ValueBaseline(LoopHooks):
    """A value head on the policy's backbone, GAE advantages and the value loss."""

    def setup(self, policy, config: PPOConfig) -> None:
        if config.layout != "per-turn":
            raise ValueError("The value head scores each turn's prompt: use layout=per-turn with PPO.")
        self.policy = policy
        self.head = torch.nn.Linear(policy.model.config.hidden_size, 1)
        torch.nn.init.zeros_(self.head.weight)  # V starts at 0: early advantages are the raw returns
        torch.nn.init.zeros_(self.head.bias)

    def param_groups(self, config: PPOConfig) -> list[dict[str, Any]]:
        return [{"params": list(self.head.parameters()), "lr": config.value_lr}]

    def values(self, prompts: list[list[int]], *, grad: bool) -> torch.Tensor:
        """V(s) for each prompt: the head on the last layer's (normed) hidden state at its last token."""
        pad = self.policy.tokenizer.pad_token_id
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])  # left-padded: last token at -1
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        with torch.set_grad_enabled(grad):
            out = self.policy.model(input_ids=ids, attention_mask=attention, position_ids=positions,
                                    output_hidden_states=True, logits_to_keep=1)
            return self.head(out.hidden_states[-1][:, -1]).squeeze(-1)

    def advantages(self, policy, trajectories, stats, config: PPOConfig) -> np.ndarray:
        if config.advantage != "gae":
            raise ValueError(f"PPO's advantages come from its value head (advantage=gae), not {config.advantage!r}; "
                             "use trainer grpo for group-normalised advantages.")
        prompts = [turn.prompt_token_ids for trajectory in trajectories for turn in trajectory.turns]
        values = torch.cat([self.values(prompts[i : i + config.micro_batch_size], grad=False)
                            for i in range(0, len(prompts), config.micro_batch_size)]).numpy()
        advantages, self.returns = gae_advantages(stats, values, gamma=config.gamma, lam=config.gae_lambda,
                                                  invalid_penalty=config.invalid_penalty)
        self.old_values = values
        if config.whiten_advantages and len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        return advantages

    def observe_rollout(self, policy, samples, config: PPOConfig) -> dict[str, float]:
        for sample, value, target in zip(samples, self.old_values, self.returns):
            sample.old_value, sample.value_target = float(value), float(target)
        residual = self.returns - self.old_values
        explained = 1 - residual.var() / self.returns.var() if self.returns.var() > 0 else 0.0
        return {"value_mean": float(self.old_values.mean()), "explained_variance": float(explained)}

    def loss(self, terms, samples, iteration: int, config: PPOConfig) -> tuple[torch.Tensor, dict[str, float]]:
        values = self.values([s.prompt_ids for s in samples], grad=True)
        old = torch.tensor([s.old_value for s in samples])
        targets = torch.tensor([s.value_target for s in samples])
        per_sample = clipped_value_loss(values, old, targets, config.value_clip)
        value_loss = aggregate(per_sample[:, None], torch.ones(len(samples), 1), "token-mean")
        return config.vf_coef * value_loss, {"value_loss": float(value_loss.detach())}

    def state(self) -> dict[str, Any]:
        return {"head": self.head.state_dict()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.head.load_state_dict(state["head"])


def run(settings: dict[str, Any], overrides: list[str] = ()) -> dict[str, Any]:
    """Entry point of ``agentgym train`` for ``trainer: ppo``."""
    return train(common.make_config(PPOConfig, settings, overrides), ValueBaseline())
