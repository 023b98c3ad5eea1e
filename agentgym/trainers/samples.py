"""Turn records → training samples, in both layouts (docs/algorithms.md §0.1).

* per-turn: one sample per turn — the prompt the policy saw and the reply it gave (generated tokens, or
  the choice it made among the admissible actions);
* episode: one concatenated sequence per episode — the first prompt, then every action (in the loss)
  and the observation tokens between actions (masked out).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from agentgym.frozen_trunk import Key, TrunkCache, choice_key
from agentgym.hf_policy import HFPolicy
from agentgym.records import Trajectory, Turn
from agentgym.trainers.advantages import TurnStats


@dataclass
class TurnSample:
    """One training sample: a prompt and the response tokens after it.

    * ``"text"`` (per-turn layout, free generation): the prompt the policy saw at one turn and the
      tokens it generated; ``old_logprobs`` their log-probs at sampling time.
    * ``"choice"`` (per-turn layout, choice among admissible actions): ``candidates`` are the
      admissible actions' reply tokens, ``chosen`` the index picked and ``old_logprobs`` the
      one-element choice log-probability.
    * ``"episode"`` (concatenated layout): the first turn's prompt, then every later action and
      observation token of the episode; ``loss_mask`` is 1 on action tokens and 0 on observation tokens.
    """

    prompt_ids: list[int]
    response_ids: list[int]
    old_logprobs: list[float]
    mode: str
    turn_index: int
    candidates: list[list[int]] | None = None
    chosen: int | None = None
    advantage: float = 0.0  # broadcast over the response tokens unless token_advantages is set
    old_entropies: list[float] = field(default_factory=list)  # at sampling time (EPO's turn history)
    loss_mask: list[int] | None = None
    token_advantages: list[float] | None = None
    old_value: float = 0.0  # value-head estimate at rollout time (PPO)
    value_target: float = 0.0  # the return the value head regresses to (PPO)
    trunk_cache: TrunkCache | None = None  # the policy's kept frozen-layer output (choice and text samples)

    @property
    def advantages(self) -> list[float]:
        """One advantage per response position (0 on masked observation tokens)."""
        if self.token_advantages is not None:
            return list(self.token_advantages)
        return [self.advantage] * len(self.old_logprobs)

    @property
    def trunk_key(self) -> Key:
        """What identifies this sample's pass through the frozen trunk: a choice state, or a text sample's
        (prompt, reply) as a state with one candidate."""
        return choice_key(self.prompt_ids, self.candidates if self.mode == "choice" else [self.response_ids])


def reserve_trunk(samples: Sequence[TurnSample]) -> None:
    """Let the kept trunk output hold every one of ``samples`` — a fixed data set passed over more than once
    (cloning, the experience model) — so each runs through the frozen layers once in the run."""
    cache = next((s.trunk_cache for s in samples if s.trunk_cache is not None), None)
    if cache is not None:
        cache.reserve([s.trunk_key for s in samples if s.trunk_cache is cache])


def all_turns(trajectories: Sequence[Trajectory]) -> list[Turn]:
    """Every turn, in trajectory and turn order: the order of every per-turn array."""
    return [turn for trajectory in trajectories for turn in trajectory.turns]


def turn_stats(trajectories: Sequence[Trajectory]) -> TurnStats:
    """The per-turn arrays advantage estimators take, in trajectory and turn order."""
    turns = all_turns(trajectories)
    return TurnStats(
        group_ids=[t.group_id for t in turns],
        episode_ids=[t.episode_id for t in turns],
        turn_indices=[t.turn_index for t in turns],
        state_keys=[t.state_key for t in turns],
        rewards=[t.reward for t in turns],
        invalid=[t.invalid for t in turns],
    )


def _trainable_turns(trajectories: Sequence[Trajectory], advantages: Sequence[float]) -> list[Turn]:
    turns = all_turns(trajectories)
    if len(turns) != len(advantages):
        raise ValueError(f"{len(advantages)} advantages for {len(turns)} turns.")
    for turn in turns:
        if turn.prompt_token_ids is None or turn.action_token_ids is None:
            raise ValueError("Training needs turn records with token ids: roll out with an LLM policy (HFPolicy).")
    return turns


def turn_samples(trajectories: Sequence[Trajectory], policy: HFPolicy, advantages: Sequence[float], *,
                 share_trunk: bool = False) -> list[TurnSample]:
    """Per-turn layout: one sample per turn with its advantage (``advantages`` in :func:`turn_stats` order).
    With ``share_trunk`` and frozen bottom layers, the samples use the policy's kept output of those layers
    (filled by the rollouts' choice scoring, or by the first pass over a sample), so updates run them at
    most once per distinct state or (prompt, reply) (:mod:`agentgym.frozen_trunk`)."""
    trunk_cache = policy.trunk_cache() if share_trunk else None
    samples = []
    for turn, advantage in zip(_trainable_turns(trajectories, advantages), advantages):
        if turn.action_mode == "choice":
            samples.append(TurnSample(
                prompt_ids=turn.prompt_token_ids,
                response_ids=turn.action_token_ids,
                old_logprobs=[turn.choice_logprob],
                mode="choice",
                turn_index=turn.turn_index,
                candidates=[policy.reply_ids(action) for action in turn.admissible_actions],
                chosen=turn.admissible_actions.index(turn.action),
                advantage=float(advantage),
                old_entropies=[turn.choice_entropy],
                trunk_cache=trunk_cache,
            ))
        else:
            samples.append(TurnSample(turn.prompt_token_ids, turn.action_token_ids, list(turn.action_logprobs),
                                      "text", turn.turn_index, advantage=float(advantage),
                                      old_entropies=list(turn.action_entropies or []), trunk_cache=trunk_cache))
    return samples


def episode_samples(trajectories: Sequence[Trajectory], advantages: Sequence[float]) -> list[TurnSample]:
    """Concatenated layout: one sample per episode — the first prompt, then each action (in the loss,
    with its turn's advantage) and the observation tokens between actions (masked out).

    Needs prompts that extend each other (``PromptTemplate(style="chat")``): a turn whose prompt does
    not start with everything before it (a windowed prompt, or a reply the chat re-tokenised
    differently) starts a new sequence, so nothing is trained on a context the policy did not see.
    """
    samples: list[TurnSample] = []
    for turn, advantage in zip(_trainable_turns(trajectories, advantages), advantages):
        if turn.action_mode == "choice":
            raise ValueError("The concatenated layout trains generated tokens: use mode=generate, or the per-turn layout.")
        current = samples[-1] if samples and turn.turn_index > 0 else None
        seen = current.prompt_ids + current.response_ids if current else []
        if current is None or turn.prompt_token_ids[: len(seen)] != seen:
            current = TurnSample(list(turn.prompt_token_ids), [], [], "episode", turn.turn_index, loss_mask=[],
                                 token_advantages=[])
            samples.append(current)
        else:
            observation = turn.prompt_token_ids[len(seen):]
            current.response_ids += observation
            current.old_logprobs += [0.0] * len(observation)
            current.loss_mask += [0] * len(observation)
            current.token_advantages += [0.0] * len(observation)
        action = list(turn.action_token_ids)
        current.response_ids += action
        current.old_logprobs += list(turn.action_logprobs)
        current.loss_mask += [1] * len(action)
        current.token_advantages += [float(advantage)] * len(action)
        current.old_entropies += list(turn.action_entropies or [])
    return samples


def layout_samples(trajectories: Sequence[Trajectory], policy: HFPolicy, advantages: Sequence[float],
                   layout: str, *, share_trunk: bool = False) -> list[TurnSample]:
    """The samples of ``layout`` (``"per-turn"`` or ``"episode"``); ``share_trunk`` as in :func:`turn_samples`."""
    if layout == "episode":
        return episode_samples(trajectories, advantages)
    return turn_samples(trajectories, policy, advantages, share_trunk=share_trunk)
