"""The update step: the clipped policy-gradient loss of a micro-batch, and the optimisation passes over an
iteration's samples (epochs × minibatches × micro-batches, gradient clipping, the learning-rate schedule).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from agentgym.hf_policy import HFPolicy
from agentgym.trainers import distributed
from agentgym.trainers.logprobs import pad_rows, sample_logprobs
from agentgym.trainers.losses import aggregate, kl_divergence, ppo_clip_loss
from agentgym.trainers.samples import TurnSample

LossFunction = Callable[[list[TurnSample]], tuple[torch.Tensor, dict[str, Any]]]


@dataclass(frozen=True, kw_only=True)
class LossSettings:
    """The clipped policy loss's settings, built by name from a config (:meth:`of`); see
    :class:`~agentgym.trainers.config.PolicyLossConfig` for their meanings."""

    clip_low: float = 0.2
    clip_high: float = 0.28
    dual_clip: float | None = 3.0
    aggregation: str = "token-mean"
    kl_coef: float = 0.0
    kl_estimator: str = "k3"
    entropy_coef: float = 0.0
    temperature: float = 1.0
    choice_temperature: float = 1.0

    @classmethod
    def of(cls, config: Any) -> LossSettings:
        """The settings of the same names in ``config``."""
        return cls(**{item.name: getattr(config, item.name) for item in dataclasses.fields(cls)})


def policy_loss_terms(policy: HFPolicy, samples: Sequence[TurnSample], settings: LossSettings, *,
                      score: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = sample_logprobs,
                      ) -> dict[str, torch.Tensor]:
    """The policy-gradient loss and its companions for one micro-batch (tensors with gradients). With
    ``kl_coef`` > 0 the policy must hold a reference (:meth:`HFPolicy.keep_reference`).

    ``score(policy, samples, temperature=, choice_temperature=, grad=)`` gives the samples' current
    log-probs, entropies and loss mask: a language model's by default; a policy of another kind brings
    its own (GUI-RCPO's grounding answers).

    Keys starting with ``_`` are per-token tensors for algorithms that add terms (EPO): the entropy
    and the loss mask.
    """
    logprobs, entropy, mask = score(policy, samples, temperature=settings.temperature,
                                    choice_temperature=settings.choice_temperature)
    old, _ = pad_rows([torch.tensor(s.old_logprobs, dtype=torch.float32) for s in samples])
    advantages, _ = pad_rows([torch.tensor(s.advantages, dtype=torch.float32) for s in samples])
    per_token, clipped = ppo_clip_loss(logprobs, old, advantages, clip_low=settings.clip_low,
                                       clip_high=settings.clip_high, dual_clip=settings.dual_clip)
    terms = {
        "pg_loss": aggregate(per_token, mask, settings.aggregation),
        "entropy": aggregate(entropy, mask, settings.aggregation),
        "clip_fraction": aggregate(clipped, mask, "token-mean").detach(),
        "approx_kl_old": aggregate(old - logprobs.detach(), mask, "token-mean"),
        "_token_entropy": entropy,
        "_mask": mask,
    }
    if settings.kl_coef > 0:
        with torch.no_grad(), policy.as_reference():
            ref_logprobs, _, _ = score(policy, samples, temperature=settings.temperature,
                                       choice_temperature=settings.choice_temperature, grad=False)
        terms["kl"] = aggregate(kl_divergence(logprobs, ref_logprobs, settings.kl_estimator), mask,
                                settings.aggregation)
    return terms


def policy_loss(terms: dict[str, torch.Tensor], settings: LossSettings) -> torch.Tensor:
    """pg_loss − c_H·entropy (+ β·KL): the loss every policy-gradient trainer starts from."""
    loss = terms["pg_loss"] - settings.entropy_coef * terms["entropy"]
    if "kl" in terms:
        loss = loss + settings.kl_coef * terms["kl"]
    return loss


def loggable(terms: dict[str, Any]) -> dict[str, Any]:
    """The scalar terms (those without a leading ``_``)."""
    return {key: value for key, value in terms.items() if not key.startswith("_")}


def minibatches(samples: Sequence[TurnSample], size: int, rng: np.random.Generator) -> Iterator[list[TurnSample]]:
    order = rng.permutation(len(samples))
    for start in range(0, len(order), size):
        yield [samples[i] for i in order[start : start + size]]


def optimise(samples: Sequence[TurnSample], loss_fn: LossFunction, *, optimizer: torch.optim.Optimizer,
             scheduler: Any, config: Any, rng: np.random.Generator, progress: str = "",
             zero_gradient: bool = False) -> dict[str, float]:
    """``config.epochs`` passes over the samples in shuffled minibatches of ``minibatch_size``; each
    minibatch is one optimizer step over micro-batches of ``micro_batch_size`` with accumulated
    gradients clipped to ``max_grad_norm``; the scheduler steps once per pass.

    ``loss_fn(micro)`` returns a micro-batch's loss and the values to log. Returns the sample-weighted
    means of those values and of the loss, the last gradient norm, and the tokens processed. A
    ``progress`` label shows a bar over the optimizer steps (for updates long enough to need one).

    ``zero_gradient`` says the loss's gradient is known to be zero everywhere (a batch whose every
    advantage is zero, with no other term): each step then skips the forward and backward passes and
    steps the optimizer on zero gradients, which moves the weights exactly as the passes would (AdamW's
    momentum and weight decay); only the loss (0) and ``passes_skipped`` (1) are logged.
    """
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    totals: dict[str, float] = {"loss": 0.0} if zero_gradient else {}
    result: dict[str, float] = {"tokens": 0, **({"passes_skipped": 1.0} if zero_gradient else {})}
    steps = config.epochs * -(-len(samples) // config.minibatch_size)
    bar = tqdm(total=steps, desc=progress, unit="step", leave=False, disable=not progress)
    for _ in range(config.epochs):
        for minibatch in minibatches(samples, config.minibatch_size, rng):
            optimizer.zero_grad(set_to_none=True)
            if zero_gradient:  # AdamW skips a parameter without a gradient: give each a zero one
                for parameter in parameters:
                    parameter.grad = torch.zeros_like(parameter)
            else:
                result["tokens"] += accumulate(distributed.shard(minibatch), len(minibatch), loss_fn, config, totals)
            distributed.sum_gradients(parameters)  # over ranks, before clipping: every rank takes the same step
            result["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm))
            optimizer.step()
            bar.update()
        scheduler.step()
    bar.close()
    totals = distributed.sum_values({**totals, "tokens": result.pop("tokens")})  # logs of every rank's share
    result["tokens"] = totals.pop("tokens")
    count = max(1, len(samples) * config.epochs)
    return {**{key: value / count for key, value in totals.items()}, **result}


def accumulate(share: Sequence[TurnSample], minibatch_size: int, loss_fn: LossFunction, config: Any,
               totals: dict[str, float]) -> int:
    """The forward and backward passes of this rank's ``share`` of a minibatch (data parallel: all of it in
    one process), in micro-batches whose gradients add up to the minibatch mean; adds the sample-weighted
    logs to ``totals`` and returns the tokens processed."""
    tokens = 0
    for start in range(0, len(share), config.micro_batch_size):
        micro = share[start : start + config.micro_batch_size]
        loss, logs = loss_fn(micro)
        (loss * len(micro) / minibatch_size).backward()
        tokens += sum(len(s.prompt_ids) + len(s.response_ids) for s in micro)
        for key, value in {**logs, "loss": loss}.items():
            value = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
            totals[key] = totals.get(key, 0.0) + value * len(micro)
    return tokens


def cosine_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float,
                    min_lr_ratio: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine decay to ``min_lr_ratio`` of the peak learning rate."""
    warmup = max(1, int(round(total_steps * warmup_ratio)))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + np.cos(np.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
