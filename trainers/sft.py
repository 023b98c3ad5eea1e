"""Behaviour cloning and rejection-sampling fine-tuning (RFT): supervised warm starts from turn records.

Behaviour cloning fine-tunes the policy on trajectories — an expert's, written by ``agentgym collect``
or collected by the run itself — with the loss on the action tokens only (never the prompt or the
environment's text), through the same prompt template, sample layouts and action modes as RL:

* per-turn layout, generate mode: −log p(action tokens, end-of-turn | that turn's prompt);
* per-turn layout, choice mode: −log of the action's probability in the choice distribution;
* episode layout: one dialogue per episode, observation tokens masked out.

Rejection sampling (``rejection_sampling=true``) makes each iteration a round: roll out the current
policy on train tasks, keep the trajectories whose return reaches ``keep_threshold``, add them to the
pool (and the expert data, if any) and fine-tune on the pool — the simplest self-improvement loop, and
a baseline RL must beat.

    agentgym collect agentgym/TextWorld-CoinCollector-v0 --episodes 300 --out data/coin.jsonl
    agentgym train configs/bc-then-grpo-coin.yaml     # behaviour cloning, then GRPO, then held-out eval
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from agentgym.evaluation import episode_metrics
from agentgym.hf_policy import HFPolicy
from agentgym.policies import make_policy
from agentgym.records import Trajectory, read_jsonl
from agentgym.trainers import common
from agentgym.trainers.losses import aggregate


@dataclass
class SFTConfig(common.RunConfig):
    """The shared run settings plus behaviour cloning's and rejection sampling's."""

    output_dir: str = "runs/sft"
    iterations: int = 3  # passes over the data (behaviour cloning) or rounds (rejection sampling)
    lr: float = 2e-4
    minibatch_size: int = 16
    eval_every: int = 1
    aggregation: str = "token-mean"  # how token losses are averaged (see GRPOConfig)
    # --- data
    data: list[str] = field(default_factory=list)  # JSONL trajectory files (agentgym collect / rollout)
    collect_policy: str = "oracle"  # without data and without rejection sampling: collect with this policy...
    collect_episodes: int = 200  # ...this many train episodes, using the run's own prompt template
    won_only: bool = True  # train only on trajectories that won
    # --- rejection sampling
    rejection_sampling: bool = False  # each iteration rolls out the policy and keeps the good trajectories
    keep_threshold: float = 1.0  # a rolled-out trajectory joins the pool when its return reaches this


def tokenized(trajectory: Trajectory, policy: HFPolicy, mode: str) -> Trajectory:
    """The trajectory with token ids for its prompts and actions (expert records carry only text), so
    the RL sample builders lay it out. Choice mode needs each action among its turn's admissible ones."""
    turns = []
    for turn in trajectory.turns:
        prompt = turn.prompt_token_ids or policy.prompt_ids(turn.prompt)
        action = policy.reply_ids(turn.action)
        if mode == "choice" and turn.action not in turn.admissible_actions:
            raise ValueError(f"Turn {turn.turn_index} of {trajectory.episode_id}: action {turn.action!r} is not "
                             "admissible, so choice mode cannot train on it; use mode=generate.")
        turns.append(dataclasses.replace(
            turn, prompt_token_ids=prompt, action_token_ids=action, action_logprobs=[0.0] * len(action),
            action_entropies=[], action_mode="choice" if mode == "choice" else "text", choice_logprob=0.0,
            choice_entropy=0.0))
    return dataclasses.replace(trajectory, turns=turns)


def training_samples(trajectories: Sequence[Trajectory], policy: HFPolicy, config: SFTConfig) -> list:
    ready = [tokenized(t, policy, config.mode) for t in trajectories]
    weights = [1.0] * sum(len(t.turns) for t in ready)
    if config.layout == "episode":
        return common.episode_samples(ready, weights)
    return common.turn_samples(ready, policy, weights)


def rejection_filter(trajectories: Sequence[Trajectory], threshold: float) -> list[Trajectory]:
    """The trajectories whose return reaches ``threshold`` (rejection sampling keeps these)."""
    return [t for t in trajectories if t.total_reward >= threshold]


def load_expert(config: SFTConfig, engine) -> list[Trajectory]:
    """The expert trajectories: the data files, or (with none and no rejection sampling) a fresh
    collection with ``collect_policy``; only winners when ``won_only``."""
    if config.data:
        trajectories = [t for path in config.data for t in read_jsonl(path)]
        trajectories = [t for t in trajectories if config.task_filter in t.task.id]
    elif config.rejection_sampling:
        return []
    else:
        expert = make_policy(config.collect_policy, seed=config.seed)
        ids = common.matching_tasks(engine, config)
        picked = np.random.default_rng(config.seed).permutation(len(ids))[: config.collect_episodes]
        trajectories = engine.run(expert, engine.plan(task_ids=[ids[i] for i in picked], seed=config.seed,
                                                      run_id="expert"), progress="collecting expert data")
    kept = [t for t in trajectories if t.won or not config.won_only]
    if not kept:
        raise ValueError("No expert trajectory to train on (none matched task_filter, or none won with won_only).")
    return kept


def train(config: SFTConfig, *, progress: bool = True) -> dict[str, Any]:
    output = Path(config.output_dir)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    policy = common.build_policy(config)
    model = policy.model
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = common.cosine_schedule(optimizer, config.iterations * config.epochs, config.warmup_ratio,
                                       config.min_lr_ratio)
    metrics = common.MetricsLog(output)
    checkpoint = output / "checkpoint.pt"
    start, before, pool = 0, None, []
    if config.resume:
        state = common.load_checkpoint(checkpoint, model=model, optimizer=optimizer, scheduler=scheduler,
                                       generator=policy._generator)
        start, before = state["iteration"], state["before"]
        pool = [Trajectory.from_dict(t) for t in state["pool"]]
        metrics.restore(state["metrics"])
    rng = np.random.default_rng(config.seed + start)
    engine, evaluator = common.rollout_engines(config)
    try:
        expert = load_expert(config, engine)
        expert_samples = training_samples(expert, policy, config)  # tokenised once: the data does not change
        if before is None:
            before = common.evaluate_before(policy, evaluator, config)
            metrics.log({"iteration": 0, **before})
        for iteration in range(start + 1, config.iterations + 1):
            timer, row = common.Timer(), {"iteration": iteration}
            # 1. Rejection sampling: roll out the current policy, keep what reached the threshold.
            if config.rejection_sampling:
                with timer("rollout"):
                    ids = common.matching_tasks(engine, config)
                    picked = np.random.default_rng(config.seed * 1_000_003 + iteration).permutation(len(ids))
                    plan = engine.plan(task_ids=[ids[i] for i in picked[: config.tasks_per_iteration]],
                                       group_size=config.group_size, run_id=f"it{iteration}", seed=iteration)
                    batch = engine.run(policy, plan)
                kept = rejection_filter(batch, config.keep_threshold)
                pool += kept
                row.update({f"train_{k}": v for k, v in episode_metrics(batch).items()})
                row["kept_trajectories"] = len(kept)
            row["trajectories"] = len(expert) + len(pool)

            # 2. Supervised steps on the action tokens.
            samples = expert_samples + training_samples(pool, policy, config)
            if samples:

                def loss_fn(micro):
                    logprobs, entropy, mask = common.policy_logprobs(
                        policy, micro, temperature=config.temperature, choice_temperature=config.choice_temperature)
                    return -aggregate(logprobs, mask, config.aggregation), {"entropy": aggregate(entropy, mask)}

                with timer("update"):
                    row.update(common.optimise(samples, loss_fn, optimizer, scheduler, parameters, config, rng))
                row["update_tokens_per_s"] = row.pop("tokens") / max(timer.seconds["update"], 1e-9)
                row["samples"], row["lr"] = len(samples), scheduler.get_last_lr()[0]

            # 3. Held-out evaluation when due (same template and parser), metrics, checkpoint.
            common.end_iteration(
                iteration, row, timer, config=config, policy=policy, evaluator=evaluator, metrics=metrics,
                optimizer=optimizer, scheduler=scheduler,
                state={"before": before, "pool": [t.to_dict() for t in pool]},
                message=f"nll {row.get('loss', float('nan')):.4f} on {row.get('samples', 0)} samples", progress=progress)
        after = common.evaluate_policy(policy, evaluator, config)
    finally:
        engine.close()
        evaluator.close()
    if config.rejection_sampling:
        summary = (f"rejection sampling ({config.tasks_per_iteration} tasks × {config.group_size} episodes, "
                   f"keeping returns ≥ {config.keep_threshold}) on top of {len(expert)} expert trajectories")
    else:
        summary = f"behaviour cloning on {len(expert)} expert trajectories"
    return common.finish_run(config, policy, metrics, before, after, summary=summary,
                             curves=["loss", "eval_success_rate", "train_success_rate", "kept_trajectories"])


def run(settings: dict[str, Any], overrides: list[str] = ()) -> dict[str, Any]:
    """Entry point of ``agentgym train`` for ``trainer: sft``."""
    return train(common.make_config(SFTConfig, settings, overrides))
