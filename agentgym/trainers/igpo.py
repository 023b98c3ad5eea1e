"""IGPO — information-gain turn rewards for multi-turn agents that search and answer (arXiv 2510.14967;
docs/algorithms.md §2).

Outcome rewards tell a search agent only whether its final answer was right. IGPO also rewards each
tool turn by how much it raised the policy's own belief in the reference answer. For every turn of
every rollout the trainer measures p_t, the policy's teacher-forced probability of the task's answer
(``Task.answer``) written in the env's answer format after the prompt of that turn (the geometric mean
of the answer tokens' probabilities, without gradient, batched over a group's prompts with their shared
prefix computed once). Then:

* a tool turn earns its information gain p_{t+1} − p_t (the next prompt holds the tool's result);
* the answer turn earns the outcome (the env's F1 for search QA);
* a blank reply, one with missing or unbalanced tags, and the last turn of a rollout that never
  answered earn the format penalty (−2).

Advantages: ``igpo_mode: paper`` (default) z-scores all turn rewards of a group together and sums them
to the end of each rollout with discount γ; ``igpo_mode: code`` is the authors' code path — returns-to-go
over the concatenated episode's tokens minus the group's mean at the same token column, no std
division (``layout: episode``).

Every turn record carries ``p_gt``, ``information_gain`` and ``igpo_reward`` in its annotations (the saved
trajectories and the viewer show them); every iteration logs the mean gain per turn index and the share
of negative gains.

    agentgym train configs/igpo-search.yaml       # clone oracle searches, then IGPO, then held-out eval
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from agentgym.contract import Task
from agentgym.hf_policy import HFPolicy
from agentgym.prompting import ActionParser
from agentgym.records import Trajectory, Turn
from agentgym.registry import env_class
from agentgym.trainers import loop
from agentgym.trainers.advantages import TurnStats, discounted_returns, group_normalise
from agentgym.trainers.config import PolicyLossConfig, RunConfig, Settings, make_config
from agentgym.trainers.heldout import matching_tasks
from agentgym.trainers.loop import PolicyGradient, Rollouts
from agentgym.trainers.samples import TurnSample, all_turns, episode_samples, turn_stats

MODES = ("paper", "code")
ALIASES = ("first", "most-probable")
ANSWER_SLOT = "{answer}"


@dataclass
class InformationGainConfig(Settings):
    """IGPO's turn rewards and advantages (docs/algorithms.md §2)."""

    igpo_mode: str = "paper"  # paper: group z-score of all turn rewards, then discounted sum to the end | code: the authors' code (token returns-to-go minus the group's column mean; layout=episode)
    gamma: float = 1.0  # discount of the sum to the end (paper mode; the authors' code is fixed at 1)
    format_penalty: float = -2.0  # reward of a blank reply, one with missing or unbalanced tags, and of the last turn of a rollout that never answered
    answer_alias: str = "first"  # which alias of a task's answer p_t scores: first (the authors) | most-probable (the one the policy finds likeliest at that turn)
    answer_format: str = ""  # the answer turn's text around {answer}, teacher-forced after each prompt ("": the env's own, e.g. <answer>{answer}</answer>)
    outcome: str = "f1"  # the answer turn's reward: this key of the env's step info (search QA: f1, em), or "reward" for the env's reward
    max_answer_tokens: int = 64  # longer answers are cut to this many tokens for p_t, with a warning

    def __post_init__(self) -> None:
        if self.igpo_mode not in MODES:
            raise ValueError(f"igpo_mode must be one of {MODES}, not {self.igpo_mode!r}.")
        if self.answer_alias not in ALIASES:
            raise ValueError(f"answer_alias must be one of {ALIASES}, not {self.answer_alias!r}.")
        if self.answer_format and self.answer_format.count(ANSWER_SLOT) != 1:
            raise ValueError(f"answer_format must hold {ANSWER_SLOT} exactly once, not {self.answer_format!r}.")
        if self.max_answer_tokens < 1:
            raise ValueError("max_answer_tokens must be at least 1.")
        if self.igpo_mode == "code":
            if getattr(self, "layout", "episode") != "episode":
                raise ValueError("igpo_mode=code baselines each token column of the concatenated episode: it needs "
                                 "layout=episode (with prompt_style=chat and mode=generate).")
            if self.gamma != 1.0:
                raise ValueError("igpo_mode=code sums rewards to the end undiscounted, as the authors' code does: "
                                 "leave gamma at 1 (the discount is a paper-mode setting).")
        super().__post_init__()


@dataclass
class IGPOConfig(RunConfig, PolicyLossConfig, InformationGainConfig):
    """Settings of an IGPO run: the run, the clipped loss and the information-gain rewards."""

    output_dir: str = "runs/igpo"  # the run folder
    mode: str = "generate"  # the policy writes its replies (tool calls and answers are free text)


# ---------------------------------------------------------------------------------------------- answers
def answer_aliases(task: Task) -> list[str]:
    """The aliases of a task's reference answer, in order (a label true/false becomes its word); a task
    without one is an error."""
    answer = task.answer
    values = list(answer) if isinstance(answer, (list, tuple)) else [answer]
    aliases = []
    for value in values:
        if isinstance(value, bool):
            value = str(value).lower()
        elif isinstance(value, (int, float)):
            value = str(value)
        if isinstance(value, str) and value.strip():
            aliases.append(value.strip())
    if not aliases:
        raise ValueError(f"Task {task.id!r} has no reference answer ({answer!r}): IGPO scores the policy's probability "
                         "of each task's answer, so it trains only on envs whose tasks carry one (Task.answer).")
    return aliases


def env_answer_format(config: InformationGainConfig, env_id: str) -> str:
    """The answer turn's text around ``{answer}``: the setting, else the env class's ``answer_format``."""
    if config.answer_format:
        return config.answer_format
    found = getattr(env_class(env_id), "answer_format", None)
    if not isinstance(found, str) or found.count(ANSWER_SLOT) != 1:
        raise ValueError(f"{env_id} declares no answer format (a class attribute answer_format holding {ANSWER_SLOT}): "
                         "set answer_format to the text its parser accepts as an answer, e.g. <answer>{answer}</answer>.")
    return found


@dataclass
class AnswerScorer:
    """p = exp(mean log π(answer tokens | prompt, the answer format's opening)): the policy's teacher-forced
    probability of a reference answer after a prompt (docs/algorithms.md §2.1), without gradient.

    Only the answer's tokens are averaged; the format's closing text never enters (a later token cannot
    change an earlier one's probability). The whole reply is tokenised at once, as the policy would
    write it, and a token that straddles the answer's edge counts as the answer's.
    """

    policy: HFPolicy
    answer_format: str
    most_probable: bool = False
    max_answer_tokens: int = 64
    batch_size: int = 8  # prompts per forward pass (sorted by length, so a batch pads little)
    temperature: float = 1.0

    def __post_init__(self) -> None:
        self._tokens: dict[str, list[tuple[list[int], int]]] = {}

    def answer_tokens(self, task: Task) -> list[tuple[list[int], int]]:
        """For each alias scored: the reply's token ids up to the answer's last token, and the index of the
        answer's first token."""
        if task.id not in self._tokens:
            aliases = answer_aliases(task)
            self._tokens[task.id] = [self._tokenise(task.id, alias)
                                     for alias in (aliases if self.most_probable else aliases[:1])]
        return self._tokens[task.id]

    def _tokenise(self, task_id: str, alias: str) -> tuple[list[int], int]:
        head, tail = self.answer_format.split(ANSWER_SLOT)
        encoded = self.policy.tokenizer(head + alias + tail, add_special_tokens=False, return_offsets_mapping=True)
        start, end = len(head), len(head) + len(alias)
        inside = [i for i, (left, right) in enumerate(encoded["offset_mapping"]) if left < end and right > start]
        first, last = inside[0], inside[-1]
        if last - first + 1 > self.max_answer_tokens:
            warnings.warn(f"The answer of task {task_id!r} is {last - first + 1} tokens long; p_t scores its first "
                          f"{self.max_answer_tokens} (max_answer_tokens).", stacklevel=2)
            last = first + self.max_answer_tokens - 1
        return list(encoded["input_ids"][: last + 1]), first

    def _fitted(self, prompt: list[int], candidate: tuple[list[int], int]) -> tuple[list[int], int]:
        """The candidate cut so that prompt and candidate fit the model's context (at least one answer token)."""
        ids, first = candidate
        room = getattr(self.policy.model.config, "max_position_embeddings", None)
        if room is None or len(prompt) + len(ids) <= room:
            return candidate
        keep = max(first + 1, room - len(prompt))
        warnings.warn(f"A prompt of {len(prompt)} tokens leaves room for {keep - first} of the answer's "
                      f"{len(ids) - first} tokens in the model's context of {room}; p_t scores those.", stacklevel=2)
        return ids[:keep], first

    def probabilities(self, prompts: Sequence[list[int]], task: Task) -> list[float]:
        """p for each prompt (the prompts of one task's rollouts: each distinct prompt is scored once, in
        batches of similar length whose shared prefix the policy computes once and keeps)."""
        candidates = self.answer_tokens(task)
        distinct = sorted({tuple(p) for p in prompts}, key=len)
        found: dict[tuple[int, ...], float] = {}
        for start in range(0, len(distinct), self.batch_size):
            chunk = [list(p) for p in distinct[start : start + self.batch_size]]
            fitted = [[self._fitted(prompt, c) for c in candidates] for prompt in chunk]
            logps, _ = self.policy.token_logprobs(chunk, [[ids for ids, _ in group] for group in fitted],
                                                  temperature=self.temperature)
            for prompt, group, group_logps in zip(chunk, fitted, logps):
                found[tuple(prompt)] = max(math.exp(float(logp[first:].mean()))
                                           for (_, first), logp in zip(group, group_logps))
        return [found[tuple(p)] for p in prompts]


# ---------------------------------------------------------------------------------------------- rewards
def unbalanced(reply: str, tags: Sequence[str]) -> bool:
    """Whether some tag opens and closes a different number of times in the reply."""
    return any(len(re.findall(f"<{tag}>", reply, re.IGNORECASE)) != len(re.findall(f"</{tag}>", reply, re.IGNORECASE))
               for tag in tags)


def malformed(turn: Turn, tags: Sequence[str]) -> bool:
    """A reply the format penalty applies to: blank, with unbalanced tags, or one the env could not read
    as a tool call or an answer (an invalid turn: the tags are missing)."""
    return turn.invalid or not turn.response.strip() or unbalanced(turn.response, tags)


def turn_rewards(p: Sequence[float], outcome: float | None, failed: Sequence[bool],
                 format_penalty: float = -2.0) -> tuple[list[float], list[float | None]]:
    """One rollout's turn rewards and information gains (docs/algorithms.md §2.1, §2.4).

    ``p[t]`` is the answer's probability after turn t's prompt; ``outcome`` the answer turn's score, or
    ``None`` when the rollout never answered; ``failed[t]`` whether turn t's reply is malformed. Turn t
    before the last gains p[t+1] − p[t] and earns it; the last turn earns the outcome (a one-turn answer:
    the outcome alone). A malformed turn, and the last turn of a rollout that never answered, earn the
    format penalty instead. The last turn has no gain (``None``).
    """
    gains: list[float | None] = [p[t + 1] - p[t] for t in range(len(p) - 1)] + [None]
    rewards = [format_penalty if bad else gain for gain, bad in zip(gains[:-1], failed[:-1])]
    rewards.append(format_penalty if failed[-1] or outcome is None else float(outcome))
    return rewards, gains


# ---------------------------------------------------------------------------------------------- advantages
def paper_advantages(stats: TurnStats, rewards: Sequence[float], gamma: float = 1.0) -> np.ndarray:
    """IGPO's paper advantage (§2.2): every turn reward z-scored over all turns of its group (unbiased std,
    + 1e-6), then summed to the end of its rollout with discount γ."""
    normalised = group_normalise(np.asarray(rewards, dtype=np.float64), stats.group_ids)
    return discounted_returns(dataclasses.replace(stats, rewards=normalised), gamma)


def column_baseline_advantages(token_rewards: Sequence[Sequence[float]], loss_masks: Sequence[Sequence[int]],
                               group_ids: Sequence[str]) -> list[np.ndarray]:
    """The authors' code path (§2.3) on concatenated episodes: each row's undiscounted returns-to-go over
    every position (observation tokens included), minus the mean over its group's rows at the same
    column, kept on action tokens only; no std division.

    A row shorter than a column counts as 0 there: the authors' batch is zero-padded and the column mean
    divides by the group's size (verl ``compute_grpo_outcome_advantage`` at IGPO commit bff163b).
    """
    returns = [np.cumsum(np.asarray(row, dtype=np.float64)[::-1])[::-1] for row in token_rewards]
    members: dict[str, list[int]] = defaultdict(list)
    for index, group in enumerate(group_ids):
        members[group].append(index)
    advantages: list[np.ndarray] = [np.zeros(0)] * len(returns)
    for indices in members.values():
        padded = np.zeros((len(indices), max(len(returns[i]) for i in indices)))
        for row, index in enumerate(indices):
            padded[row, : len(returns[index])] = returns[index]
        baseline = padded.mean(axis=0)
        for index in indices:
            width = len(returns[index])
            advantages[index] = (returns[index] - baseline[:width]) * np.asarray(loss_masks[index], dtype=np.float64)
    return advantages


# ---------------------------------------------------------------------------------------------- the trainer
class InformationGain(PolicyGradient):
    """Information-gain turn rewards from teacher-forced answer probabilities, with the paper's or the
    authors' code's advantages, on the shared loop."""

    config: IGPOConfig
    curves = ("train_mean_reward", "eval_mean_reward", "eval_success_rate", "p_gt_first", "ig_negative_share",
              "entropy")

    def prepare(self, rollouts: Rollouts) -> None:
        """Check that every train task has an answer and the env an answer format the parser reads, before
        any rollout."""
        config = self.config
        tasks = [rollouts.engine.tasks[i] for i in matching_tasks(rollouts.engine, config)]
        for task in tasks:
            answer_aliases(task)
        answer_format = env_answer_format(config, config.env_id)
        self.parser: ActionParser = rollouts.engine.parser
        example = answer_aliases(tasks[0])[0]
        if example not in self.parser.parse(answer_format.replace(ANSWER_SLOT, example)):
            raise ValueError(f"The parser does not read {answer_format!r} as an answer (it parses "
                             f"{answer_format.replace(ANSWER_SLOT, example)!r} to "
                             f"{self.parser.parse(answer_format.replace(ANSWER_SLOT, example))!r}): set answer_format.")
        self.tags = ("think", *self.parser.tool_tags)
        self.scorer = AnswerScorer(rollouts.policy, answer_format, most_probable=config.answer_alias == "most-probable",
                                   max_answer_tokens=config.max_answer_tokens, batch_size=config.micro_batch_size,
                                   temperature=config.temperature if config.temperature > 0 else 1.0)

    def outcome(self, trajectory: Trajectory) -> float | None:
        """The answer turn's score, or ``None`` when the rollout ended without answering."""
        if not trajectory.terminated:
            return None
        last = trajectory.turns[-1]
        if self.config.outcome == "reward":
            return last.reward
        if self.config.outcome not in last.info:
            raise ValueError(f"{trajectory.env_id} reports no {self.config.outcome!r} in its step info (it has "
                             f"{sorted(last.info)}): set outcome to one of them, or to 'reward'.")
        return float(last.info[self.config.outcome])

    def annotate(self, trajectories: list[Trajectory], row: dict[str, Any]) -> None:
        """p_t, the information gain and the reward of every turn, into its annotations; the iteration's
        gain statistics and the teacher-forced passes' time into ``row``."""
        started = time.perf_counter()
        groups: dict[str, list[Trajectory]] = defaultdict(list)
        for trajectory in trajectories:
            groups[trajectory.group_id].append(trajectory)
        for members in groups.values():
            turns = [turn for trajectory in members for turn in trajectory.turns]
            for turn, p in zip(turns, self.scorer.probabilities([t.prompt_token_ids for t in turns], members[0].task)):
                turn.annotations["p_gt"] = p
        row["seconds_teacher_forced"] = time.perf_counter() - started
        penalised = 0
        for trajectory in trajectories:
            outcome, failed = self.outcome(trajectory), [malformed(t, self.tags) for t in trajectory.turns]
            rewards, gains = turn_rewards([t.annotations["p_gt"] for t in trajectory.turns], outcome, failed,
                                          self.config.format_penalty)
            for turn, reward, gain in zip(trajectory.turns, rewards, gains):
                turn.annotations.update(information_gain=gain, igpo_reward=reward)
            penalised += sum(failed) + (outcome is None and not failed[-1])
        row.update(gain_metrics(trajectories))
        row["format_penalty_share"] = penalised / sum(t.num_turns for t in trajectories)

    def samples(self, policy: HFPolicy, trajectories: list[Trajectory], row: dict[str, Any]) -> list[TurnSample]:
        if not trajectories:
            return []
        self.annotate(trajectories, row)
        if self.config.igpo_mode == "code":
            return code_samples(trajectories)
        return super().samples(policy, trajectories, row)

    def advantages(self, policy: HFPolicy, trajectories: list[Trajectory]) -> np.ndarray:
        rewards = [turn.annotations["igpo_reward"] for turn in all_turns(trajectories)]
        return paper_advantages(turn_stats(trajectories), rewards, self.config.gamma)

    def progress(self, row: dict[str, Any]) -> str:
        return (f"{super().progress(row)} p_gt {row.get('p_gt_first', float('nan')):.3f} "
                f"IG<0 {row.get('ig_negative_share', float('nan')):.0%}")

    def summary(self) -> str:
        config = self.config
        return (f"{config.tasks_per_iteration} tasks × {config.group_size} episodes with information-gain turn rewards "
                f"({config.igpo_mode} advantages, γ = {config.gamma}, {config.answer_alias} alias)")


def gain_metrics(trajectories: Sequence[Trajectory]) -> dict[str, float]:
    """The mean information gain at each turn index, the share of negative gains and the mean p_t before
    the first turn."""
    turns = all_turns(trajectories)
    by_index: dict[int, list[float]] = defaultdict(list)
    for turn in turns:
        if turn.annotations["information_gain"] is not None:
            by_index[turn.turn_index].append(turn.annotations["information_gain"])
    gains = [gain for values in by_index.values() for gain in values]
    metrics = {f"ig_mean_turn{index}": float(np.mean(values)) for index, values in sorted(by_index.items())}
    if gains:
        metrics["ig_negative_share"] = float(np.mean([gain < 0 for gain in gains]))
    metrics["p_gt_first"] = float(np.mean([t.turns[0].annotations["p_gt"] for t in trajectories]))
    return metrics


def code_samples(trajectories: list[Trajectory]) -> list[TurnSample]:
    """The concatenated episodes with the authors' code-path advantages on their tokens (§2.3): each
    turn's reward on its last action token, returns-to-go over the sequence, the group's column mean
    subtracted. Each turn's record keeps the mean advantage over its tokens."""
    turns = all_turns(trajectories)
    # Laid out with each turn's number (from 1) as its "advantage", every action token names its turn.
    samples = episode_samples(trajectories, np.arange(1, len(turns) + 1))
    token_rewards, owners = [], []
    for sample in samples:
        tags = [int(tag) for tag in sample.token_advantages]
        rewards = np.zeros(len(tags))
        for position, tag in enumerate(tags):
            if tag and (position + 1 == len(tags) or tags[position + 1] != tag):
                rewards[position] = turns[tag - 1].annotations["igpo_reward"]
        token_rewards.append(rewards)
        owners.append(tags)
    advantages = column_baseline_advantages(token_rewards, [s.loss_mask for s in samples],
                                            [turns[next(t for t in tags if t) - 1].group_id for tags in owners])
    for sample, tags, values in zip(samples, owners, advantages):
        sample.token_advantages = values.tolist()
        for number in set(tags) - {0}:
            turns[number - 1].advantage = float(np.mean([v for v, tag in zip(values, tags) if tag == number]))
    return samples


def train(config: IGPOConfig, *, progress: bool = True) -> dict[str, Any]:
    """Train with IGPO: returns the held-out metrics before and after, the report's path and the metrics rows."""
    return loop.train(InformationGain(config), progress=progress)


CONFIG = IGPOConfig  # the settings of `trainer: igpo` (agentgym train --help-config igpo)


def run(settings: dict[str, Any], overrides: list[str] = ()) -> dict[str, Any]:
    """Entry point of ``agentgym train`` for ``trainer: igpo``."""
    return train(make_config(IGPOConfig, settings, overrides))
