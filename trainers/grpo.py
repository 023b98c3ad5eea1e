"""GRPO for multi-turn agents (with Dr.GRPO and GiGPO advantages), one sample per turn.

Reads top to bottom: roll out groups of episodes that share a task with the current policy, turn the
episode outcomes into per-turn advantages, take clipped policy-gradient steps, evaluate on the
held-out split with the same template and parser, checkpoint. ``epo.py`` adds EPO's entropy
regularisation and ``ppo.py`` a value head on top of this loop through :class:`LoopHooks`.

    agentgym train configs/grpo-coin-level5.yaml iterations=30 lr=2e-5
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agentgym.evaluation import episode_metrics
from agentgym.hf_policy import HFPolicy
from agentgym.trainers import common
from agentgym.trainers.advantages import TurnStats, gigpo_advantages, grpo_advantages


@dataclass
class GRPOConfig(common.RunConfig):
    """Settings of a GRPO run: the shared run settings plus GRPO's. Every field can be set in the YAML
    file or as ``key=value`` on the command line."""

    # --- advantages
    advantage: str = "grpo"  # grpo (outcome broadcast to every turn) | gigpo (plus state-keyed step groups); ppo.py: gae
    norm_by_std: bool = True  # divide by the group std (False: Dr.GRPO)
    gamma: float = 0.95  # GiGPO step-return discount
    step_weight: float = 1.0  # GiGPO ω, weight of the step-level advantage
    invalid_penalty: float = 0.1  # subtracted from an invalid turn's score
    dynamic_sampling: bool = False  # DAPO: train only on groups whose returns differ, sampling more tasks
    max_sampling_rounds: int = 3  # cap on rollout rounds per iteration with dynamic sampling (then train on what there is)
    # --- policy loss
    clip_low: float = 0.2  # PPO ε_low
    clip_high: float = 0.28  # PPO ε_high (clip-higher)
    dual_clip: float | None = 3.0  # dual-clip bound c for negative advantages (None: off)
    aggregation: str = "token-mean"  # token-mean | seq-mean-token-mean | seq-mean-token-sum | seq-mean-token-sum-norm
    kl_coef: float = 0.0  # β of the KL-to-reference loss (reference: the starting model; see common.ReferencePolicy)
    kl_estimator: str = "k3"
    entropy_coef: float = 0.0  # entropy bonus c_H
    output_dir: str = "runs/grpo"


class LoopHooks:
    """What a trainer built on this loop changes: extra trainable parameters, the advantage estimator,
    and extra loss terms (EPO's entropy smoothing, PPO's value loss). The base is plain GRPO/GiGPO."""

    def setup(self, policy: HFPolicy, config: Any) -> None:
        """Called once the policy is built, before the optimizer is."""

    def param_groups(self, config: Any) -> list[dict[str, Any]]:
        """Extra optimizer parameter groups (each may set its own ``lr``)."""
        return []

    def advantages(self, policy: HFPolicy, trajectories: list, stats: TurnStats, config: Any) -> np.ndarray:
        if config.advantage == "gigpo":
            return gigpo_advantages(stats, gamma=config.gamma, step_weight=config.step_weight,
                                    use_std=config.norm_by_std, invalid_penalty=config.invalid_penalty)
        if config.advantage == "grpo":
            return grpo_advantages(stats, use_std=config.norm_by_std, invalid_penalty=config.invalid_penalty)
        raise ValueError(f"Unknown advantage estimator {config.advantage!r}: use grpo or gigpo (gae: trainer ppo).")

    def observe_rollout(self, policy: HFPolicy, samples: list[common.TurnSample], config: Any) -> dict[str, float]:
        return {}

    def loss(self, terms: dict[str, torch.Tensor], samples: list[common.TurnSample], iteration: int,
             config: Any) -> tuple[torch.Tensor, dict[str, float]]:
        return torch.zeros(()), {}

    def state(self) -> dict[str, Any]:
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        pass


def informative_groups(trajectories: list) -> list:
    """The trajectories of groups whose returns are not all equal (DAPO dynamic sampling): a group that
    all won or all failed has zero advantage everywhere and teaches nothing."""
    returns: dict[str, set[float]] = {}
    for trajectory in trajectories:
        returns.setdefault(trajectory.group_id, set()).add(round(trajectory.total_reward, 9))
    return [t for t in trajectories if len(returns[t.group_id]) > 1]


def train(config: GRPOConfig, hooks: LoopHooks | None = None, *, progress: bool = True) -> dict[str, Any]:
    output = Path(config.output_dir)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    policy = common.build_policy(config)
    model = policy.model
    hooks = hooks or LoopHooks()
    hooks.setup(policy, config)
    groups = [{"params": [p for p in model.parameters() if p.requires_grad]}, *hooks.param_groups(config)]
    parameters = [p for group in groups for p in group["params"]]
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = common.cosine_schedule(optimizer, config.iterations * config.epochs, config.warmup_ratio,
                                       config.min_lr_ratio)
    settings = common.LossSettings(config.clip_low, config.clip_high, config.dual_clip, config.aggregation,
                                   config.kl_coef, config.kl_estimator, config.entropy_coef, config.temperature,
                                   config.choice_temperature)
    # Built before a checkpoint loads: the reference is always the starting model.
    reference = common.ReferencePolicy(policy) if config.kl_coef > 0 else None
    metrics = common.MetricsLog(output)
    checkpoint = output / "checkpoint.pt"
    start, before = 0, None
    if config.resume:
        state = common.load_checkpoint(checkpoint, model=model, optimizer=optimizer, scheduler=scheduler,
                                       generator=policy._generator)
        start, before = state["iteration"], state["before"]
        metrics.restore(state["metrics"])
        hooks.load_state(state["hooks"])
    rng = np.random.default_rng(config.seed + start)
    engine, evaluator = common.rollout_engines(config)
    train_ids = common.matching_tasks(engine, config)
    if before is None:
        before = common.evaluate_before(policy, evaluator, config)
        metrics.log({"iteration": 0, **before})
    try:
        for iteration in range(start + 1, config.iterations + 1):
            timer, row = common.Timer(), {"iteration": iteration}
            # 1. Roll out groups of episodes that share a task, with the current policy.
            with timer("rollout"):
                task_rng = np.random.default_rng(config.seed * 1_000_003 + iteration)
                order = task_rng.permutation(len(train_ids))
                rounds = config.max_sampling_rounds if config.dynamic_sampling else 1
                trajectories, kept = [], []
                for round_index in range(rounds):
                    wanted = order[round_index * config.tasks_per_iteration:][: config.tasks_per_iteration]
                    if len(wanted) == 0:
                        break
                    plan = engine.plan(task_ids=[train_ids[i] for i in wanted], group_size=config.group_size,
                                       run_id=f"it{iteration}r{round_index}", seed=iteration)
                    batch = engine.run(policy, plan)
                    trajectories += batch
                    kept += informative_groups(batch) if config.dynamic_sampling else batch
                    if len({t.group_id for t in kept}) >= config.tasks_per_iteration:
                        break
            row.update({f"train_{k}": v for k, v in episode_metrics(trajectories).items()})
            row["train_groups_kept"] = len({t.group_id for t in kept})
            trajectories = kept
            if not trajectories:  # every group saturated even after the capped extra rounds
                metrics.log(row)
                continue

            # 2. Per-turn advantages from the outcomes, laid out as training samples.
            stats = common.turn_stats(trajectories)
            advantages = hooks.advantages(policy, trajectories, stats, config)
            if config.layout == "episode":
                samples = common.episode_samples(trajectories, advantages)
            else:
                samples = common.turn_samples(trajectories, policy, advantages)
            row.update(hooks.observe_rollout(policy, samples, config))

            # 3. Clipped policy-gradient steps over minibatches, accumulating micro-batches.
            def loss_fn(micro: list[common.TurnSample]) -> tuple[torch.Tensor, dict[str, Any]]:
                terms = common.loss_terms(policy, micro, settings, reference)
                extra, extra_logs = hooks.loss(terms, micro, iteration, config)
                loss = terms["pg_loss"] - config.entropy_coef * terms["entropy"] + extra
                if "kl" in terms:
                    loss = loss + config.kl_coef * terms["kl"]
                logs = {key: value for key, value in terms.items() if not key.startswith("_")}
                return loss, {**logs, **extra_logs}

            with timer("update"):
                row.update(common.optimise(samples, loss_fn, optimizer, scheduler, parameters, config, rng))
            row["lr"] = scheduler.get_last_lr()[0]
            row["update_tokens_per_s"] = row.pop("tokens") / max(timer.seconds["update"], 1e-9)
            row["samples"] = len(samples)

            # 4. Held-out evaluation when due (same template and parser), metrics, checkpoint.
            common.end_iteration(
                iteration, row, timer, config=config, policy=policy, evaluator=evaluator, metrics=metrics,
                optimizer=optimizer, scheduler=scheduler, state={"before": before, "hooks": hooks.state()},
                message=f"success {row['train_success_rate']:.2f} reward {row['train_mean_reward']:.2f} "
                        f"loss {row['loss']:+.4f} entropy {row['entropy']:.3f}", progress=progress)
        after = common.evaluate_policy(policy, evaluator, config)
    finally:
        engine.close()
        evaluator.close()
    return common.finish_run(config, policy, metrics, before, after,
                             summary=f"{config.tasks_per_iteration} tasks × {config.group_size} episodes",
                             curves=["train_success_rate", "train_mean_reward", "eval_success_rate", "entropy",
                                     "clip_fraction", "train_invalid_rate"])


def run(settings: dict[str, Any], overrides: list[str] = ()) -> dict[str, Any]:
    """Entry point of ``agentgym train`` for ``trainer: grpo``."""
    return train(common.make_config(GRPOConfig, settings, overrides))
