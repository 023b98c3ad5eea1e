"""GRPO for multi-turn agents (with Dr.GRPO and GiGPO advantages), one sample per turn.

Reads top to bottom: roll out groups of episodes that share a task with the current policy, turn the
episode outcomes into per-turn advantages, take clipped policy-gradient steps, evaluate on the
held-out split with the same template and parser, checkpoint. ``epo.py`` adds EPO's entropy
regularisation and ``ppo.py`` a value head on top of this loop through :class:`LoopHooks`.

    agentgym train configs/grpo-coin.yaml iterations=30 lr=2e-5
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agentgym.evaluation import episode_metrics
from agentgym.hf_policy import HFPolicy
from agentgym.models import load_causal_lm
from agentgym.prompting import PromptTemplate
from agentgym.rollout import RolloutEngine
from agentgym.trainers import common
from agentgym.trainers.advantages import TurnStats, gigpo_advantages, grpo_advantages


@dataclass
class GRPOConfig:
    """Settings of a GRPO run. Every field can be set in the YAML file or as ``key=value`` on the command line."""

    # --- environment
    env_id: str = "agentgym/TextWorld-CoinCollector-v0"  # registered env id to train on (its train split)
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # env constructor arguments, e.g. max_turns
    eval_split: str = "test"  # held-out split evaluated before training, every eval_every iterations, and after
    task_filter: str = ""  # only tasks whose id contains this text, in training and evaluation (e.g. "level5")
    history_window: int = 2  # recent turns shown in each prompt (shorter prompts train faster)
    prompt_style: str = "summary"  # summary: one message with recent turns | chat: the whole episode as messages
    layout: str = "per-turn"  # per-turn: a sample per turn | episode: one concatenated sequence per episode
    # --- policy
    model: str = "embedded"  # embedded | tiny | a checkpoint folder
    lora_rank: int = 16  # LoRA rank; 0 trains every weight
    lora_alpha: int = 32
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    mode: str = "choice"  # choice: pick among admissible actions; generate: free text (see HFPolicy)
    temperature: float = 1.0  # sampling temperature of free generation
    choice_temperature: float = 1.0  # temperature of the softmax over admissible actions
    max_new_tokens: int = 24  # reply budget in generate mode
    # --- rollouts
    iterations: int = 20  # training iterations (rollout + update)
    tasks_per_iteration: int = 4  # distinct train tasks per iteration
    group_size: int = 4  # episodes per task (the GRPO group)
    num_envs: int = 4  # environments stepped together
    # --- advantages
    advantage: str = "grpo"  # grpo (outcome broadcast to every turn) | gigpo (plus state-keyed step groups); ppo.py: gae
    norm_by_std: bool = True  # divide by the group std (False: Dr.GRPO)
    gamma: float = 0.95  # GiGPO step-return discount
    step_weight: float = 1.0  # GiGPO ω, weight of the step-level advantage
    invalid_penalty: float = 0.1  # subtracted from an invalid turn's score
    dynamic_sampling: bool = False  # DAPO: train only on groups whose returns differ, sampling more tasks
    max_sampling_rounds: int = 3  # cap on rollout rounds per iteration with dynamic sampling (then train on what there is)
    # --- optimisation
    epochs: int = 1  # passes over each rollout batch
    minibatch_size: int = 32  # samples per optimizer step
    micro_batch_size: int = 8  # samples per forward/backward (gradient accumulation in between)
    lr: float = 2e-5
    warmup_ratio: float = 0.1
    min_lr_ratio: float = 0.2
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    clip_low: float = 0.2  # PPO ε_low
    clip_high: float = 0.28  # PPO ε_high (clip-higher)
    dual_clip: float | None = 3.0  # dual-clip bound c for negative advantages (None: off)
    aggregation: str = "token-mean"  # token-mean | seq-mean-token-mean | seq-mean-token-sum | seq-mean-token-sum-norm
    kl_coef: float = 0.0  # β of the KL-to-reference loss (reference = base model, LoRA disabled)
    kl_estimator: str = "k3"
    entropy_coef: float = 0.0  # entropy bonus c_H
    # --- bookkeeping
    eval_every: int = 5  # iterations between held-out evaluations (0: only before and after)
    eval_episodes: int = 20  # held-out episodes per evaluation
    seed: int = 0
    output_dir: str = "runs/grpo"
    resume: bool = False  # continue from output_dir/checkpoint.pt


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


def build_policy(config: GRPOConfig) -> HFPolicy:
    model, tokenizer = load_causal_lm(config.model)
    if config.lora_rank > 0:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha,
                                                 target_modules=list(config.lora_targets), lora_dropout=0.0))
    model.train(False)  # no dropout: the loss must see the distribution the rollouts sampled from
    return HFPolicy(config.model, model=model, tokenizer=tokenizer, mode=config.mode, temperature=config.temperature,
                    choice_temperature=config.choice_temperature, max_new_tokens=config.max_new_tokens,
                    seed=config.seed)


def matching_tasks(engine: RolloutEngine, config: GRPOConfig) -> list[str]:
    ids = [task_id for task_id in engine.tasks if config.task_filter in task_id]
    if not ids:
        raise ValueError(f"No {engine.split} task of {config.env_id} matches task_filter={config.task_filter!r}.")
    return ids


def evaluate_policy(policy: HFPolicy, engine: RolloutEngine, config: GRPOConfig) -> dict[str, float]:
    """Held-out metrics on the same tasks every time (a fixed sample of the evaluation split)."""
    ids = matching_tasks(engine, config)
    picked = np.random.default_rng(10_000).permutation(len(ids))[: config.eval_episodes]
    trajectories = engine.run(policy, engine.plan(task_ids=[ids[i] for i in picked], seed=10_000, run_id="eval"))
    return {f"eval_{key}": value for key, value in episode_metrics(trajectories).items()}


def informative_groups(trajectories: list) -> list:
    """The trajectories of groups whose returns are not all equal (DAPO dynamic sampling): a group that
    all won or all failed has zero advantage everywhere and teaches nothing."""
    returns: dict[str, set[float]] = {}
    for trajectory in trajectories:
        returns.setdefault(trajectory.group_id, set()).add(round(trajectory.total_reward, 9))
    return [t for t in trajectories if len(returns[t.group_id]) > 1]


def train(config: GRPOConfig, hooks: LoopHooks | None = None, *, progress: bool = True) -> dict[str, Any]:
    if config.layout not in ("per-turn", "episode"):
        raise ValueError(f"layout must be 'per-turn' or 'episode', not {config.layout!r}.")
    if config.layout == "episode" and (config.prompt_style != "chat" or config.mode != "generate"):
        raise ValueError("layout=episode trains one growing dialogue per episode: it needs prompt_style=chat "
                         "(prompts that extend each other) and mode=generate.")
    output = Path(config.output_dir)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    policy = build_policy(config)
    model = policy.model
    hooks = hooks or LoopHooks()
    hooks.setup(policy, config)
    groups = [{"params": [p for p in model.parameters() if p.requires_grad]}, *hooks.param_groups(config)]
    parameters = [p for group in groups for p in group["params"]]
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = common.cosine_schedule(optimizer, config.iterations * config.epochs, config.warmup_ratio,
                                       config.min_lr_ratio)
    template = PromptTemplate(history_window=config.history_window, style=config.prompt_style)
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
    engine = RolloutEngine(config.env_id, "train", num_envs=config.num_envs, template=template,
                           env_kwargs=config.env_kwargs)
    evaluator = RolloutEngine(config.env_id, config.eval_split, num_envs=config.num_envs, template=template,
                              env_kwargs=config.env_kwargs)
    train_ids = matching_tasks(engine, config)
    if before is None:
        before = evaluate_policy(policy, evaluator, config)
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
            with timer("update"):
                totals: dict[str, float] = {}
                tokens = 0
                for _ in range(config.epochs):
                    for minibatch in common.minibatches(samples, config.minibatch_size, rng):
                        optimizer.zero_grad(set_to_none=True)
                        for start_index in range(0, len(minibatch), config.micro_batch_size):
                            micro = minibatch[start_index : start_index + config.micro_batch_size]
                            terms = common.loss_terms(policy, micro, settings, reference)
                            extra, extra_logs = hooks.loss(terms, micro, iteration, config)
                            loss = terms["pg_loss"] - config.entropy_coef * terms["entropy"] + extra
                            if "kl" in terms:
                                loss = loss + config.kl_coef * terms["kl"]
                            (loss * len(micro) / len(minibatch)).backward()
                            tokens += sum(len(s.prompt_ids) + len(s.response_ids) for s in micro)
                            for key, value in {**terms, **extra_logs, "loss": loss}.items():
                                if not key.startswith("_"):
                                    totals[key] = totals.get(key, 0.0) + float(value.detach() if isinstance(
                                        value, torch.Tensor) else value) * len(micro)
                        row["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm))
                        optimizer.step()
                    scheduler.step()
                count = max(1, len(samples) * config.epochs)
                row.update({key: value / count for key, value in totals.items()})
            row["lr"] = scheduler.get_last_lr()[0]
            row["update_tokens_per_s"] = tokens / max(timer.seconds["update"], 1e-9)
            row["samples"] = len(samples)

            # 4. Held-out evaluation with the same template and parser.
            if config.eval_every and iteration % config.eval_every == 0 and iteration != config.iterations:
                with timer("eval"):
                    row.update(evaluate_policy(policy, evaluator, config))
            row.update({f"seconds_{phase}": seconds for phase, seconds in timer.seconds.items()})
            metrics.log(row)
            if progress:
                print(f"[{iteration}/{config.iterations}] success {row['train_success_rate']:.2f} "
                      f"reward {row['train_mean_reward']:.2f} loss {row['loss']:+.4f} entropy {row['entropy']:.3f} "
                      f"({sum(timer.seconds.values()):.0f} s)", flush=True)
            common.save_checkpoint(checkpoint, model=model, optimizer=optimizer, scheduler=scheduler,
                                   iteration=iteration, generator=policy._generator,
                                   extra={"before": before, "metrics": metrics.rows,
                                          "hooks": hooks.state()})
        after = evaluate_policy(policy, evaluator, config)
    finally:
        engine.close()
        evaluator.close()
    metrics.log({"iteration": config.iterations, **after})
    metrics.close()
    return finish_run(config, policy, metrics.rows, before, after)


def finish_run(config: Any, policy: HFPolicy, rows: list[dict[str, Any]], before: dict[str, float],
               after: dict[str, float]) -> dict[str, Any]:
    """Save the trained weights, plot the curves and write the report."""
    output = Path(config.output_dir)
    if hasattr(policy.model, "save_pretrained"):
        policy.model.save_pretrained(output / "final")
        policy.tokenizer.save_pretrained(output / "final")
    curves = common.plot_curves(rows, output / "learning_curves.png",
                                ["train_success_rate", "train_mean_reward", "eval_success_rate", "entropy",
                                 "clip_fraction", "train_invalid_rate"])
    table = ["| | success | mean reward | turns | invalid |", "|---|---|---|---|---|"]
    for label, values in (("before", before), ("after", after)):
        table.append(f"| {label} | {values['eval_success_rate']:.1%} | {values['eval_mean_reward']:.2f} | "
                     f"{values['eval_mean_turns']:.1f} | {values['eval_invalid_rate']:.1%} |")
    updates = [r for r in rows if "update_tokens_per_s" in r]
    speed = (f"{np.mean([r['update_tokens_per_s'] for r in updates]):.0f} tokens/s in updates, "
             f"{np.mean([sum(v for k, v in r.items() if k.startswith('seconds_')) for r in updates]):.1f} s "
             "per iteration") if updates else "no iterations run"
    report = "\n".join([
        f"# {type(config).__name__.removesuffix('Config')} on {config.env_id}",
        "",
        f"Model `{config.model}` (LoRA rank {config.lora_rank}), {config.mode} mode; {config.iterations} iterations of "
        f"{config.tasks_per_iteration} tasks × {config.group_size} episodes; seed {config.seed}.",
        f"Held-out split `{config.eval_split}`, {config.eval_episodes} episodes, before and after training:",
        "",
        *table,
        "",
        f"Training speed: {speed}.",
        "",
        "![learning curves](learning_curves.png)" if curves else "",
        "",
    ])
    (output / "report.md").write_text(report, encoding="utf-8")
    return {"before": before, "after": after, "report": str(output / "report.md"), "rows": rows}



def run(settings: dict[str, Any], overrides: list[str] = ()) -> dict[str, Any]:
    """Entry point of ``agentgym train`` for ``trainer: grpo``."""
    return train(common.make_config(GRPOConfig, settings, overrides))
