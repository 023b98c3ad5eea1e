"""Token-level policy losses shared by every trainer (verl conventions; ``docs/algorithms.md`` §0.2–0.4, §1, §7).

Tensors are ``(samples, tokens)`` with a 0/1 ``mask`` marking the tokens in the loss.
"""

from __future__ import annotations

import math

import torch

AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")
KL_ESTIMATORS = ("k1", "k2", "k3")


def ppo_clip_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = 3.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token PPO-clip loss with asymmetric clipping and dual clip (for negative advantages).

    Returns ``(loss, clipped)``: the per-token loss and a 0/1 tensor of tokens where clipping bound.
    """
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped_loss = -advantages * torch.clamp(ratio, 1 - clip_low, 1 + clip_high)
    loss = torch.maximum(unclipped, clipped_loss)
    clipped = (clipped_loss > unclipped).float()
    if dual_clip is not None:
        loss = torch.where(advantages < 0, torch.minimum(loss, -advantages * dual_clip), loss)
    return loss, clipped


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                       clip: float | None = 0.5) -> torch.Tensor:
    """Per-element PPO value loss ½·max((V − R)², (clip(V, V_old ± c) − R)²) (verl ``compute_value_loss``);
    ``clip=None`` is the plain squared error ½·(V − R)²."""
    loss = (values - returns) ** 2
    if clip is not None:
        clipped = old_values + torch.clamp(values - old_values, -clip, clip)
        loss = torch.maximum(loss, (clipped - returns) ** 2)
    return 0.5 * loss


def aggregate(values: torch.Tensor, mask: torch.Tensor, mode: str = "token-mean") -> torch.Tensor:
    """Reduce per-token values to a scalar (verl ``agg_loss``)."""
    mask = mask.to(values.dtype)
    if mode == "token-mean":
        return (values * mask).sum() / mask.sum().clamp(min=1)
    if mode == "seq-mean-token-mean":
        per_sequence = (values * mask).sum(-1) / mask.sum(-1).clamp(min=1)
        return per_sequence.mean()
    if mode == "seq-mean-token-sum":
        return (values * mask).sum(-1).mean()
    if mode == "seq-mean-token-sum-norm":
        # Dr.GRPO's constant normaliser: the padded response length of the batch.
        return (values * mask).sum() / values.shape[-1]
    raise ValueError(f"Unknown aggregation {mode!r}; choose one of {AGGREGATIONS}.")


def kl_divergence(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k3") -> torch.Tensor:
    """Per-token KL(π_θ ‖ π_ref) estimate: k1 = log-ratio, k2 = ½ log-ratio², k3 = low-variance (clamped)."""
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio.pow(2)
    if estimator == "k3":
        difference = ref_logprobs - logprobs
        return torch.clamp(torch.exp(difference) - difference - 1, min=-10, max=10)
    raise ValueError(f"Unknown KL estimator {estimator!r}; choose one of {KL_ESTIMATORS}.")


# ---------------------------------------------------------------------------------------------- EPO
def epo_phase_weight(epoch: int, total_epochs: int = 150) -> float:
    """EPO's adaptive phase weight w(e) on the smoothing penalty (authors' code, E = 150 hard-coded)."""
    half = total_epochs // 2
    if epoch <= half:
        return 1 - 0.2 * (1 - math.exp(-2 * epoch / half))
    return 0.8 * math.exp(-3 * (epoch - half) / (total_epochs - half))


def epo_smoothing_penalty(
    entropy: torch.Tensor,
    turn_mean_entropy: torch.Tensor,
    *,
    low_ratio: float,
    high_ratio: float,
    penalty: float,
    faithful_to_code: bool = False,
) -> torch.Tensor:
    """Per-token entropy-smoothing penalty around each sample's historical per-turn mean entropy H̄.

    ``turn_mean_entropy`` is H̄ at each sample's turn, shape ``(samples,)``. The band is
    ``(low_ratio·H̄, high_ratio·H̄)``, strict. With ``faithful_to_code`` the penalty is the authors'
    constant α outside the band (no gradient); by default it is differentiable:
    ``α·[relu(H − high·H̄) + relu(low·H̄ − H)]``, which pulls entropy back into the band.
    """
    low = (low_ratio * turn_mean_entropy)[:, None]
    high = (high_ratio * turn_mean_entropy)[:, None]
    if faithful_to_code:
        inside = (entropy > low) & (entropy < high)
        return torch.where(inside, torch.zeros_like(entropy), torch.full_like(entropy, penalty)).detach()
    return penalty * (torch.relu(entropy - high) + torch.relu(low - entropy))
