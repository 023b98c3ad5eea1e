"""Turn-level records: what a rollout produces and a trainer consumes.

One :class:`Turn` per step, with everything a multi-turn RL loss needs (the prompt the policy saw,
the action text and its tokens and log-probs, the per-turn reward, the state key for step-level
grouping, episode and group ids). A :class:`Trajectory` is one episode. Both round-trip through
JSONL losslessly.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from agentgym.contract import Task
from agentgym.paths import atomic_write

Message = dict[str, str]


@dataclass
class Turn:
    """One step of one episode, as a trainer sees it.

    ``prompt`` is the chat the policy was given; ``response`` the text it generated; ``action`` what
    the shared parser sent to the env. Token-level fields are filled by policies that have tokens
    (``None`` for random or oracle policies): ``prompt_token_ids``, ``action_token_ids``,
    ``action_logprobs`` (log-prob of each sampled token) and ``action_entropies`` (entropy of the
    sampling distribution at each token). A trainer fills ``advantage`` (the advantage this turn was
    trained with) and ``annotations`` (values it computed for the turn, e.g. IGPO's ``p_gt`` and
    ``information_gain``, or the policy ``version`` that sampled it) in the records it saves.
    """

    episode_id: str
    group_id: str
    task_id: str
    turn_index: int
    prompt: list[Message]
    response: str
    action: str
    reward: float
    terminated: bool
    truncated: bool
    invalid: bool
    state_key: str
    next_state_key: str
    admissible_actions: list[str] = field(default_factory=list)
    prompt_token_ids: list[int] | None = None
    action_token_ids: list[int] | None = None
    action_logprobs: list[float] | None = None
    action_entropies: list[float] | None = None
    action_mode: str = "text"
    choice_logprob: float | None = None
    choice_entropy: float | None = None
    agent_id: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    advantage: float | None = None
    annotations: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated


@dataclass
class Trajectory:
    """One episode: its task, its turns and its outcome."""

    episode_id: str
    group_id: str
    env_id: str
    split: str
    task: Task
    seed: int | None
    turns: list[Turn] = field(default_factory=list)
    won: bool = False
    policy: str = ""

    @property
    def total_reward(self) -> float:
        return float(sum(turn.reward for turn in self.turns))

    @property
    def num_turns(self) -> int:
        return len(self.turns)

    @property
    def num_invalid(self) -> int:
        return sum(turn.invalid for turn in self.turns)

    @property
    def terminated(self) -> bool:
        return bool(self.turns) and self.turns[-1].terminated

    @property
    def truncated(self) -> bool:
        return bool(self.turns) and self.turns[-1].truncated

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("task", "turns")}
        data["task"] = self.task.to_dict()
        data["turns"] = [dataclasses.asdict(turn) for turn in self.turns]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Trajectory":
        fields = {f.name for f in dataclasses.fields(cls)} - {"task", "turns"}
        return cls(
            task=Task.from_dict(data["task"]),
            turns=[Turn(**turn) for turn in data["turns"]],
            **{key: data[key] for key in fields},
        )


def write_jsonl(path: str | os.PathLike, trajectories: Iterable[Trajectory]) -> Path:
    """Write trajectories, one JSON object per line, atomically (a crash never leaves half a file)."""
    lines = "".join(json.dumps(t.to_dict(), ensure_ascii=False) + "\n" for t in trajectories)
    return atomic_write(path, lambda handle: handle.write(lines.encode("utf-8")))


def read_jsonl(path: str | os.PathLike) -> Iterator[Trajectory]:
    """Read trajectories written by :func:`write_jsonl`."""
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    yield Trajectory.from_dict(json.loads(line))
                except (KeyError, TypeError, json.JSONDecodeError) as error:
                    raise ValueError(f"{path}:{line_number}: not a trajectory record ({error}).") from error
