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
from typing import Any, Sequence

import numpy as np
import torch

from agentgym.evaluation import episode_metrics
from agentgym.hf_policy import HFPolicy
from agentgym.policies import make_policy
from agentgym.records import Trajectory, read_jsonl
from agentgym.rollout import RolloutEngine
from agentgym.trainers import loop
from agentgym.trainers.config import RunConfig, make_config
from agentgym.trainers.heldout import matching_tasks
from agentgym.trainers.logprobs import sample_logprobs
from agentgym.trainers.loop import Algorithm, Rollouts
from agentgym.trainers.losses import aggregate
from agentgym.trainers.samples import TurnSample, layout_samples, reserve_trunk


@dataclass
class SFTConfig(RunConfig):
    """The run settings plus behaviour cloning's and rejection sampling's."""

    output_dir: str = "runs/sft"  # the run folder
    iterations: int = 3  # passes over the data (behaviour cloning) or rounds (rejection sampling)
    lr: float = 2e-4  # peak learning rate (AdamW)
    minibatch_size: int = 16  # samples per optimizer step
    eval_every: int = 1  # iterations between held-out evaluations (0: only before and after)
    aggregation: str = "token-mean"  # how token losses are averaged (see PolicyLossConfig)
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


def training_samples(trajectories: Sequence[Trajectory], policy: HFPolicy, config: SFTConfig) -> list[TurnSample]:
    """Every turn of the trajectories as a sample with weight 1, in the run's layout (sharing the frozen
    layers' output across passes with ``reuse_computation``)."""
    ready = [tokenized(t, policy, config.mode) for t in trajectories]
    return layout_samples(ready, policy, [1.0] * sum(len(t.turns) for t in ready), config.layout,
                          share_trunk=config.reuse_computation)


def rejection_filter(trajectories: Sequence[Trajectory], threshold: float) -> list[Trajectory]:
    """The trajectories whose return reaches ``threshold`` (rejection sampling keeps these)."""
    return [t for t in trajectories if t.total_reward >= threshold]


def load_expert(config: SFTConfig, engine: RolloutEngine) -> list[Trajectory]:
    """The expert trajectories: the data files, or (with none and no rejection sampling) a fresh
    collection with ``collect_policy``; only winners when ``won_only``."""
    if config.data:
        trajectories = [t for path in config.data for t in read_jsonl(path)]
        trajectories = [t for t in trajectories if config.task_filter in t.task.id]
    elif config.rejection_sampling:
        return []
    else:
        expert = make_policy(config.collect_policy, seed=config.seed)
        ids = matching_tasks(engine, config)
        picked = np.random.default_rng(config.seed).permutation(len(ids))[: config.collect_episodes]
        trajectories = engine.run(expert, engine.plan(task_ids=[ids[i] for i in picked], seed=config.seed,
                                                      run_id="expert"), progress="collecting expert data")
    kept = [t for t in trajectories if t.won or not config.won_only]
    if not kept:
        raise ValueError("No expert trajectory to train on (none matched task_filter, or none won with won_only).")
    return kept


class BehaviourCloning(Algorithm):
    """Supervised steps on action tokens over the expert data and, with rejection sampling, the pool of
    the policy's own good trajectories."""

    config: SFTConfig
    curves = ("loss", "eval_success_rate", "train_success_rate", "kept_trajectories")

    def __init__(self, config: SFTConfig):
        super().__init__(config)
        self.expert: list[Trajectory] = []
        self.expert_samples: list[TurnSample] = []
        self.pool: list[Trajectory] = []

    def prepare(self, rollouts: Rollouts) -> None:
        self.expert = load_expert(self.config, rollouts.engine)
        self.expert_samples = training_samples(self.expert, rollouts.policy, self.config)  # the data does not change
        reserve_trunk(self.expert_samples)

    def collect(self, rollouts: Rollouts, iteration: int, row: dict[str, Any]) -> list[Trajectory]:
        kept = []
        if self.config.rejection_sampling:
            batch = rollouts.groups(iteration)
            kept = rejection_filter(batch, self.config.keep_threshold)
            self.pool += kept
            row.update({f"train_{k}": v for k, v in episode_metrics(batch).items()})
            row["kept_trajectories"] = len(kept)
        row["trajectories"] = len(self.expert) + len(self.pool)
        return kept

    def samples(self, policy: HFPolicy, trajectories: list[Trajectory], row: dict[str, Any]) -> list[TurnSample]:
        return self.expert_samples + training_samples(self.pool, policy, self.config)

    def loss(self, policy: HFPolicy, micro: list[TurnSample], iteration: int) -> tuple[torch.Tensor, dict[str, Any]]:
        logprobs, entropy, mask = sample_logprobs(policy, micro, temperature=self.config.temperature,
                                                  choice_temperature=self.config.choice_temperature)
        return -aggregate(logprobs, mask, self.config.aggregation), {"entropy": aggregate(entropy, mask)}

    def progress(self, row: dict[str, Any]) -> str:
        return f"nll {row.get('loss', float('nan')):.4f} on {row.get('samples', 0)} samples"

    def summary(self) -> str:
        if self.config.rejection_sampling:
            return (f"rejection sampling ({self.config.tasks_per_iteration} tasks × {self.config.group_size} "
                    f"episodes, keeping returns ≥ {self.config.keep_threshold}) on top of {len(self.expert)} "
                    "expert trajectories")
        return f"behaviour cloning on {len(self.expert)} expert trajectories"

    def state(self) -> dict[str, Any]:
        return {"pool": [t.to_dict() for t in self.pool]}

    def load_state(self, state: dict[str, Any]) -> None:
        self.pool = [Trajectory.from_dict(t) for t in state["pool"]]


def train(config: SFTConfig, *, progress: bool = True) -> dict[str, Any]:
    """Train with behaviour cloning or rejection sampling: returns the held-out metrics before and after, the report's path and the
    metrics rows."""
    return loop.train(BehaviourCloning(config), progress=progress)


CONFIG = SFTConfig  # the settings of `trainer: sft` (agentgym train --help-config sft)


def run(settings: dict[str, Any], overrides: list[str] = ()) -> dict[str, Any]:
    """Entry point of ``agentgym train`` for ``trainer: sft``."""
    return train(make_config(SFTConfig, settings, overrides))
