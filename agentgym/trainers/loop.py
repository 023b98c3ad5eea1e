"""The training loop every LLM trainer runs: roll out, turn records into samples, update, evaluate,
checkpoint.

    train(algorithm)
      build the policy; algorithm.setup(policy); optimizer over its weights and the algorithm's own
      resume from the checkpoint, or evaluate on the held-out split before training
      each iteration:
        1. trajectories = algorithm.collect(...)         groups of episodes that share a task
        2. samples      = algorithm.samples(...)         advantages, laid out per turn or per episode
        3. update: epochs × minibatches × micro-batches of algorithm.loss(...)
        4. held-out evaluation when due, a metrics row, the checkpoint
      evaluate after training; save the weights, curves and report

:class:`Algorithm` is the base every trainer specialises: its defaults are policy-gradient training on
group rollouts with the clipped loss, so an algorithm file (``grpo.py``, ``epo.py``, ``ppo.py``,
``sft.py``) holds only what makes it different — its advantages, its extra loss terms and parameters,
or a different data source.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from agentgym.evaluation import episode_metrics
from agentgym.hf_policy import HFPolicy
from agentgym.policies import Policy
from agentgym.records import Trajectory
from agentgym.rollout import EpisodeSpec, RolloutEngine
from agentgym.trainers import distributed, heldout, update
from agentgym.trainers.config import RunConfig
from agentgym.trainers.model import build_policy
from agentgym.trainers.run import Run, Timer
from agentgym.trainers.sampler import build_sampler
from agentgym.trainers.samples import TurnSample, all_turns, layout_samples


@dataclass
class Rollouts:
    """The train split's engine and tasks, and the policy acting on them."""

    engine: RolloutEngine
    policy: HFPolicy
    task_ids: list[str]
    config: RunConfig
    sampler: Policy | None = None  # plays the rollouts instead of ``policy`` (a vLLM engine with synced weights)
    progress: bool = False  # show a bar over each round's episodes
    episodes_left: int | None = None  # of the run's max_episodes budget (None: no budget); extra rounds stop at 0

    def groups(self, iteration: int, round_index: int = 0) -> list[Trajectory]:
        """``tasks_per_iteration`` groups of ``group_size`` episodes, each group on one train task: the
        ``round_index``-th slice of the iteration's task order (a later round draws fresh tasks)."""
        config = self.config
        order = heldout.task_order(len(self.task_ids), config.seed, iteration)
        wanted = order[round_index * config.tasks_per_iteration:][: config.tasks_per_iteration]
        if len(wanted) == 0:
            return []
        plan = self.engine.plan(task_ids=[self.task_ids[i] for i in wanted], group_size=config.group_size,
                                run_id=f"it{iteration}r{round_index}", seed=iteration)
        return self.play(self.engine, plan, "rollout")

    def play(self, engine: RolloutEngine, plan: list[EpisodeSpec], label: str) -> list[Trajectory]:
        """Play a training plan on ``engine`` (the update trains on these replies, so a language-model
        policy keeps their frozen-layer output: :meth:`HFPolicy.keeping_trunk`)."""
        keeping = getattr(self.policy, "keeping_trunk", contextlib.nullcontext)
        with keeping():
            return engine.run(self.sampler or self.policy, plan, progress=label if self.progress else False)


class Algorithm:
    """What an algorithm adds to the shared loop. The defaults: one round of group rollouts per
    iteration, and samples laid out per turn or per episode with the algorithm's advantages. An
    algorithm defines :meth:`loss` (and :meth:`advantages` unless it overrides :meth:`samples`)."""

    curves: Sequence[str] = ("train_success_rate", "train_mean_reward", "eval_success_rate", "entropy",
                             "clip_fraction", "train_invalid_rate")

    def __init__(self, config: RunConfig):
        self.config = config

    # ------------------------------------------------------------------ once
    def build_policy(self) -> HFPolicy:
        """The policy to train. The default is the config's language model with its adapter; an
        algorithm that trains another kind of policy returns one with the same training seams
        (``model``, ``weights_changed``, ``rng_state``/``set_rng_state``, ``keep_reference``/``as_reference``)."""
        return build_policy(self.config)

    def save_policy(self, policy: HFPolicy, folder: Path) -> None:
        """Save the trained policy into ``folder`` (the run's ``final/``): the adapter, or the whole model."""
        if hasattr(policy.model, "save_pretrained"):
            policy.model.save_pretrained(folder)
            policy.tokenizer.save_pretrained(folder)

    def describe_policy(self) -> str:
        """The trained policy, for the report."""
        config = self.config
        return f"Model `{config.model}` (LoRA rank {config.lora_rank}), {config.mode} mode"

    def setup(self, policy: HFPolicy) -> None:
        """Called when the policy is built, before the optimizer (create extra trainable parts here)."""

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Extra optimizer parameter groups (each may set its own ``lr``)."""
        return []

    def prepare(self, rollouts: Rollouts) -> None:
        """Called once the environments are up, before the first evaluation (load data here)."""

    # ------------------------------------------------------------------ every iteration
    def collect(self, rollouts: Rollouts, iteration: int, row: dict[str, Any]) -> list[Trajectory]:
        """The trajectories this iteration trains on; their metrics go into ``row`` as ``train_*``."""
        trajectories = rollouts.groups(iteration)
        row.update({f"train_{k}": v for k, v in episode_metrics(trajectories).items()})
        row["train_episodes"] = len(trajectories)
        return trajectories

    def advantages(self, policy: HFPolicy, trajectories: list[Trajectory]) -> np.ndarray:
        """One advantage per turn, in trajectory and turn order."""
        raise NotImplementedError(f"{type(self).__name__} must define its advantages.")

    def samples(self, policy: HFPolicy, trajectories: list[Trajectory], row: dict[str, Any]) -> list[TurnSample]:
        """The training samples of the trajectories, carrying their advantages (none: no update)."""
        if not trajectories:
            return []
        advantages = self.advantages(policy, trajectories)
        for turn, advantage in zip(all_turns(trajectories), advantages):
            turn.advantage = float(advantage)  # kept in the saved records, for the viewer
        return layout_samples(trajectories, policy, advantages, self.config.layout,
                              share_trunk=self.config.reuse_computation)

    def loss(self, policy: HFPolicy, micro: list[TurnSample], iteration: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """A micro-batch's loss (with gradients) and the values to log."""
        raise NotImplementedError(f"{type(self).__name__} must define its loss.")

    def gradient_free(self, samples: list[TurnSample]) -> bool:
        """Whether the loss of ``samples`` is known to have a zero gradient everywhere (then, with
        ``reuse_computation``, the update skips its passes: :func:`~agentgym.trainers.update.optimise`)."""
        return False

    def progress(self, row: dict[str, Any]) -> str:
        """The progress line's text for an iteration's metrics row."""
        if "loss" not in row:  # e.g. DAPO kept no group
            update = "no update (no training samples this iteration)"
        elif row.get("passes_skipped"):  # every advantage zero: the update stepped on zero gradients
            update = "loss 0 (every advantage zero: passes skipped)"
        else:
            update = f"loss {row['loss']:+.4f} entropy {row['entropy']:.3f}"
        return (f"success {row.get('train_success_rate', float('nan')):.2f} "
                f"reward {row.get('train_mean_reward', float('nan')):.2f} {update}")

    def summary(self) -> str:
        """What one iteration was, for the report."""
        return f"{self.config.tasks_per_iteration} tasks × {self.config.group_size} episodes"

    # ------------------------------------------------------------------ checkpoint
    def state(self) -> dict[str, Any]:
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        pass


class PolicyGradient(Algorithm):
    """The clipped policy-gradient loss with optional KL and entropy terms (docs/algorithms.md §0.2–0.4),
    for configs that include :class:`~agentgym.trainers.config.PolicyLossConfig`."""

    def __init__(self, config: RunConfig):
        super().__init__(config)
        self.loss_settings = update.LossSettings.of(config)

    def loss(self, policy: HFPolicy, micro: list[TurnSample], iteration: int) -> tuple[torch.Tensor, dict[str, Any]]:
        terms = update.policy_loss_terms(policy, micro, self.loss_settings)
        extra, extra_logs = self.extra_loss(terms, micro, iteration)
        return update.policy_loss(terms, self.loss_settings) + extra, {**update.loggable(terms), **extra_logs}

    def extra_loss(self, terms: dict[str, torch.Tensor], micro: list[TurnSample],
                   iteration: int) -> tuple[torch.Tensor | float, dict[str, Any]]:
        """Terms an algorithm adds to the policy loss (EPO's entropy smoothing, PPO's value loss), and
        their logs; ``terms`` are :func:`~agentgym.trainers.update.policy_loss_terms`'s."""
        return 0.0, {}

    def gradient_free(self, samples: list[TurnSample]) -> bool:
        """Every advantage is zero and the loss has no other term (no KL, no entropy bonus, no
        algorithm's own loss or extra term): a group-relative batch whose groups all won or all failed."""
        settings, own = self.loss_settings, type(self)
        plain = own.loss is PolicyGradient.loss and own.extra_loss is PolicyGradient.extra_loss
        return (plain and settings.kl_coef == 0 and settings.entropy_coef == 0
                and not any(any(sample.advantages) for sample in samples))


def train(algorithm: Algorithm, *, progress: bool = True) -> dict[str, Any]:
    """Run ``algorithm`` for ``config.iterations`` iterations (resuming when ``config.resume``) and return
    the held-out metrics before and after, the report's path and the metrics rows."""
    config = algorithm.config
    distributed.setup()  # joins the process group under `accelerate launch`; nothing in a single process
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    policy = algorithm.build_policy()
    algorithm.setup(policy)
    groups = [{"params": [p for p in policy.model.parameters() if p.requires_grad]}, *algorithm.parameter_groups()]
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    distributed.start(p for group in groups for p in group["params"])  # every rank starts from rank 0's weights
    optimizer.register_step_post_hook(lambda *_: policy.weights_changed(trainable_only=True))
    scheduler = update.cosine_schedule(optimizer, config.iterations * config.epochs, config.warmup_ratio,
                                       config.min_lr_ratio)
    if getattr(config, "kl_coef", 0) > 0:
        policy.keep_reference()  # before a checkpoint loads: the reference is always the starting model
    run = distributed.make_run(config.output_dir)  # rank 0 writes the run folder; other ranks only read it
    run.write_config(config)
    start, before, played = 0, None, 0  # played: training episodes so far (max_episodes)
    done = 0  # the last iteration trained
    if config.resume:
        checkpoint = run.load_checkpoint(model=policy.model, optimizer=optimizer, scheduler=scheduler,
                                         restore_rng={"policy": policy.set_rng_state})
        policy.weights_changed()
        start, before, played = checkpoint["iteration"], checkpoint["before"], checkpoint.get("episodes", 0)
        done = start
        algorithm.load_state(checkpoint["algorithm"])
    rng = np.random.default_rng(config.seed + start)  # minibatch order
    engine, evaluator = distributed.shard_engines(heldout.rollout_engines(config))  # each rank plays its groups
    sampler = None
    try:
        sampler = build_sampler(config, policy, start)  # a vLLM engine holding the current weights, or None
        rollouts = Rollouts(engine, policy, heldout.matching_tasks(engine, config), config, sampler, progress)
        evaluating = f"held-out {config.eval_split}" if progress else False
        algorithm.prepare(rollouts)
        if before is None:
            before = heldout.evaluate_before(policy, evaluator, config, progress=evaluating) if config.eval_before else {}
            if before:
                run.metrics.log({"iteration": 0, **before})
        for iteration in range(start + 1, config.iterations + 1):
            if budget_spent(config, played):
                print(f"Stopping after iteration {iteration - 1}: {played} training episodes played "
                      f"(max_episodes={config.max_episodes}).", flush=True)
                break
            timer, row = Timer(), {"iteration": iteration}
            rollouts.episodes_left = config.max_episodes - played if config.max_episodes else None
            distributed.seed_rank(policy, config.seed, iteration)  # ranks other than 0 sample their own streams
            # 1. The iteration's trajectories (rollouts of the current policy, or data).
            with timer("rollout"):
                trajectories = algorithm.collect(rollouts, iteration, row)
            # 2. Advantages, laid out as training samples.
            samples = algorithm.samples(policy, trajectories, row)
            played += row.get("train_episodes", len(trajectories))
            row["episodes_played"] = played
            silent = zero_advantage_share(trajectories)
            if silent is not None:
                row["zero_advantage_groups"] = silent
            run.save_trajectories(iteration, trajectories, config.save_episodes)
            # 3. Gradient steps over minibatches, accumulating micro-batches.
            if samples:
                with timer("update"):
                    loss_fn = functools.partial(algorithm.loss, policy, iteration=iteration)
                    row.update(update.optimise(samples, loss_fn, optimizer=optimizer, scheduler=scheduler,
                                               config=config, rng=rng, progress="update" if progress else "",
                                               zero_gradient=config.reuse_computation
                                               and algorithm.gradient_free(samples)))
                row["lr"] = scheduler.get_last_lr()[0]
                row["update_tokens_per_s"] = row.pop("tokens") / max(timer.seconds["update"], 1e-9)
                row["samples"] = len(samples)
                if sampler is not None:
                    with timer("sync"):
                        sampler.sync_weights(policy.model, iteration)  # the next rollouts sample these weights
            # 4. Held-out evaluation when due (same template and parser), metrics, checkpoint.
            last = iteration == config.iterations or budget_spent(config, played)
            if config.eval_every and iteration % config.eval_every == 0 and not last:  # the last one: `after`
                with timer("eval"):
                    row.update(heldout.evaluate_policy(policy, evaluator, config, progress=evaluating))
            row.update({f"seconds_{phase}": seconds for phase, seconds in timer.seconds.items()})
            run.metrics.log(row)
            if progress:
                print(f"[{iteration}/{config.iterations}] {algorithm.progress(row)} ({timer.total:.0f} s)", flush=True)
            run.save_checkpoint(model=policy.model, optimizer=optimizer, scheduler=scheduler, iteration=iteration,
                                rng_states={"policy": policy.rng_state()},
                                state={"before": before, "algorithm": algorithm.state(), "episodes": played})
            done = iteration
        after = heldout.evaluate_policy(policy, evaluator, config, progress=evaluating)
    finally:
        engine.close()
        evaluator.close()
        if sampler is not None:
            sampler.close()
    return finish(run, algorithm, policy, before, after, done)


def budget_spent(config: RunConfig, played: int) -> bool:
    """Whether the run has played its ``max_episodes`` training episodes (0: no episode budget)."""
    return bool(config.max_episodes) and played >= config.max_episodes


def zero_advantage_share(trajectories: list[Trajectory]) -> float | None:
    """The share of groups whose every turn was trained with a zero advantage: groups that teach nothing
    (for GRPO, every episode of the group got the same return). None when no turn carries an advantage
    (supervised data)."""
    groups: dict[str, bool] = {}
    for turn in all_turns(trajectories):
        if turn.advantage is not None:
            groups[turn.group_id] = groups.get(turn.group_id, True) and abs(turn.advantage) < 1e-8
    return float(np.mean(list(groups.values()))) if groups else None


def finish(run: Run, algorithm: Algorithm, policy: HFPolicy, before: dict[str, float],
           after: dict[str, float], iterations: int) -> dict[str, Any]:
    """Log the final evaluation (after ``iterations`` trained), save the trained weights, plot the curves
    and write the report."""
    config = algorithm.config
    run.metrics.log({"iteration": iterations, **after})
    run.close()
    rows = run.metrics.rows
    algorithm.save_policy(policy, run.folder / "final")
    plotted = run.plot(algorithm.curves)
    table = ["| | success | mean reward | turns | invalid |", "|---|---|---|---|---|"]
    for label, values in (("before", before), ("after", after)) if before else (("after", after),):
        table.append(f"| {label} | {values['eval_success_rate']:.1%} | {values['eval_mean_reward']:.2f} | "
                     f"{values['eval_mean_turns']:.1f} | {values['eval_invalid_rate']:.1%} |")
    updates = [r for r in rows if "update_tokens_per_s" in r]
    speed = (f"{np.mean([r['update_tokens_per_s'] for r in updates]):.0f} tokens/s in updates, "
             f"{np.mean([sum(v for k, v in r.items() if k.startswith('seconds_')) for r in updates]):.1f} s "
             "per iteration") if updates else "no iterations run"
    report = run.write_report("\n".join([
        f"# {type(config).__name__.removesuffix('Config')} on {config.env_id}",
        "",
        f"{algorithm.describe_policy()}; {iterations} iterations of {algorithm.summary()}; seed {config.seed}.",
        f"Held-out split `{config.eval_split}`, {config.eval_episodes} episodes, "
        + (f"before and after training (a random choice among admissible actions wins "
           f"{before.get('random_success_rate', float('nan')):.1%}):" if before else
           "after training (not evaluated before: `eval_before: false`):"),
        "",
        *table,
        "",
        f"Training speed: {speed}.",
        "",
        "![learning curves](learning_curves.png)" if plotted else "",
        "",
    ]))
    return {"before": before, "after": after, "report": str(report), "rows": rows}
