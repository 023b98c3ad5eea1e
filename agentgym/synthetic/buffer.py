"""The replay buffer of transitions the experience model is grounded on (docs/algorithms.md §5.1).

It is seeded with real transitions — collected by :func:`collect_transitions` (the real env's oracle
mixed with random actions), or read from any turn-record JSONL (``agentgym collect`` or a rollout) —
and grows with the synthetic env's transitions, marked ``synthetic``. It retrieves the transitions
most similar to a (state, action) pair with BM25 (``bm25s``); additions become retrievable at the next
:meth:`ReplayBuffer.refresh`, so what a step retrieves does not change while an iteration's episodes run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from agentgym.paths import atomic_write
from agentgym.policies import Generation, Policy, PolicyRequest
from agentgym.records import Trajectory
from agentgym.synthetic.format import Example, Outcome, headline

HISTORY_KEPT = 4  # earlier steps a transition keeps (the model's context shows a window of them)
ACTION_WEIGHT = 3  # the action is repeated in a retrieval document so it weighs like a sentence of state


@dataclass
class Transition:
    """One step of one episode: the state the agent acted in, its action and what followed.

    ``history`` holds the episode's earlier steps as (action, headline of the state it led to) pairs,
    the most recent last; ``invalid`` marks an action the env rejected (``next_state`` is then its
    feedback); ``synthetic`` a transition the experience model wrote.
    """

    task_id: str
    instruction: str
    state: str
    actions: list[str]
    action: str
    next_state: str
    next_actions: list[str]
    reward: float
    done: bool
    turn_index: int = 0
    history: list[list[str]] = field(default_factory=list)
    invalid: bool = False
    synthetic: bool = False
    rationale: str = ""
    episode_id: str = ""
    split: str = "train"

    def outcome(self) -> Outcome:
        """What followed the action, as the experience model writes it."""
        return Outcome(self.next_state, tuple(self.next_actions), self.reward, self.done, self.invalid, self.rationale,
                       raw_reward=self.reward)

    def example(self) -> Example:
        """The transition as a demonstration in the experience model's context."""
        return Example(self.state, self.action, self.outcome())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Transition":
        return cls(**data)


_MARKER = "Current observation:\n"
_ENDS = ("\n\nAdmissible actions:\n", "\n\nYour action:")


def prompt_observation(messages: Sequence[dict[str, str]]) -> tuple[str, str]:
    """The instruction and the current observation in a prompt built by the shared
    :class:`~agentgym.prompting.PromptTemplate` (either style)."""
    user = [m["content"] for m in messages if m.get("role") == "user"]
    if not user or _MARKER not in user[-1]:
        raise ValueError("the prompt was not built by agentgym's PromptTemplate (no 'Current observation:' part)")
    first = user[0]
    instruction = first.partition("\n\n")[0].removeprefix("Task: ").strip() if first.startswith("Task: ") else ""
    body = user[-1].rpartition(_MARKER)[2]
    for end in _ENDS:
        if end in body:
            body = body.rpartition(end)[0]
            break
    return instruction, body.strip()


def transitions_of(trajectory: Trajectory, next_observations: Sequence[dict] | None = None) -> list[Transition]:
    """The transitions of one episode's turn records.

    A turn record holds the prompt (whose observation is the state) but not the observation its action
    led to: that is the next turn's state, and for the last turn the ``next_observations`` the rollout
    saw (:func:`collect_transitions` passes them). Without them the last turn's next state is not
    known and is written as ``"(not recorded)"``.
    """
    transitions: list[Transition] = []
    history: list[list[str]] = []
    turns = trajectory.turns
    states = [prompt_observation(turn.prompt) for turn in turns]
    for index, turn in enumerate(turns):
        instruction, state = states[index]
        if next_observations is not None:
            following = next_observations[index]
            next_state, next_actions = following["text"], list(following["admissible_actions"])
        elif index + 1 < len(turns):
            next_state, next_actions = states[index + 1][1], list(turns[index + 1].admissible_actions)
        else:
            next_state, next_actions = "(not recorded)", []
        transitions.append(Transition(
            task_id=trajectory.task.id, instruction=instruction or trajectory.task.instruction, state=state,
            actions=list(turn.admissible_actions), action=turn.action, next_state=next_state, next_actions=next_actions,
            reward=float(turn.reward), done=bool(turn.terminated), turn_index=turn.turn_index,
            history=[list(h) for h in history[-HISTORY_KEPT:]], invalid=bool(turn.invalid),
            synthetic=bool(turn.info.get("synthetic", False)), episode_id=trajectory.episode_id, split=trajectory.split))
        if not turn.invalid:
            history.append([turn.action, headline(next_state)])
    return transitions


class ExplorationPolicy(Policy):
    """The expert's action, or with probability ``epsilon`` (and whenever there is no expert action) a
    uniform pick among the admissible actions: data that shows the world off the expert's path too."""

    name = "explore"
    uses_expert = True

    def __init__(self, epsilon: float = 0.3, seed: int | None = None):
        if not 0 <= epsilon <= 1:
            raise ValueError(f"epsilon must be in [0, 1], not {epsilon}.")
        self.epsilon, self.seed = epsilon, seed
        self._rng = np.random.default_rng(seed)

    def act(self, requests: Sequence[PolicyRequest]) -> list[Generation]:
        replies = []
        for request in requests:
            actions = request.admissible_actions
            explore = actions and (request.expert_action is None or self._rng.random() < self.epsilon)
            replies.append(Generation(actions[int(self._rng.integers(len(actions)))] if explore
                                      else request.expert_action or ""))
        return replies

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "epsilon": self.epsilon, "seed": self.seed}


def collect_transitions(env_id: str, split: str = "train", *, episodes: int = 200, episodes_per_task: int = 1,
                        epsilon: float = 0.3, seed: int = 0, task_filter: str = "", num_envs: int = 4,
                        env_kwargs: dict[str, Any] | None = None, progress: bool = False) -> list[Transition]:
    """Real transitions of ``episodes`` episodes of ``env_id`` on ``split``, ``episodes_per_task`` of each task
    (tasks drawn with ``seed`` among those whose id contains ``task_filter``; loading a task can cost more
    than playing it), played by :class:`ExplorationPolicy`."""
    from agentgym.rollout import RolloutEngine

    with RolloutEngine(env_id, split, num_envs=num_envs, env_kwargs=env_kwargs) as engine:
        ids = [task_id for task_id in engine.tasks if task_filter in task_id]
        if not ids:
            raise ValueError(f"No {split} task of {env_id} matches task_filter={task_filter!r}.")
        count = min(len(ids), -(-episodes // episodes_per_task))
        picked = np.random.default_rng(seed).choice(len(ids), size=count, replace=False)
        seen: dict[str, list[dict]] = {}

        def keep(turn, observation) -> None:
            seen.setdefault(turn.episode_id, []).append(
                {"text": observation["text"], "admissible_actions": list(observation["admissible_actions"])})

        plan = engine.plan(task_ids=[ids[i] for i in picked], group_size=episodes_per_task, seed=seed,
                           run_id="collect")[:episodes]
        trajectories = engine.run(ExplorationPolicy(epsilon, seed), plan, on_turn=keep,
                                  progress="collecting transitions" if progress else False)
    return [t for trajectory in trajectories for t in transitions_of(trajectory, seen[trajectory.episode_id])]


def read_transitions(path: str | os.PathLike) -> list[Transition]:
    """Transitions from a JSONL file of transitions (:meth:`ReplayBuffer.save`) or of turn records
    (``agentgym collect``, a rollout); a missing, empty or corrupt file is a ``ValueError`` /
    ``FileNotFoundError`` that names it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No replay buffer file at {path}. Collect one with "
                                "`python -m agentgym.synthetic collect ENV_ID --out FILE` or `agentgym collect`.")
    transitions: list[Transition] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if "turns" in data:
                    transitions += transitions_of(Trajectory.from_dict(data))
                else:
                    transitions.append(Transition.from_dict(data))
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                raise ValueError(f"{path}:{number}: not a transition or a trajectory record ({error}). "
                                 "The replay buffer file is corrupt.") from error
    if not transitions:
        raise ValueError(f"The replay buffer file {path} holds no transitions.")
    return transitions


def write_transitions(path: str | os.PathLike, transitions: Iterable[Transition]) -> Path:
    """Transitions as JSONL, written atomically."""
    text = "".join(json.dumps(t.to_dict(), ensure_ascii=False) + "\n" for t in transitions)
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


class BM25Index:
    """BM25 over documents with ``bm25s`` (English stop words removed)."""

    def __init__(self, documents: Sequence[str]):
        try:
            import bm25s
        except ModuleNotFoundError as error:
            raise ModuleNotFoundError("The replay buffer's retriever needs the package 'bm25s': "
                                      "pip install 'agentgym[synthetic]'.") from error
        self._bm25s = bm25s
        self.size = len(documents)
        self._index = bm25s.BM25()
        if documents:
            self._index.index(bm25s.tokenize(list(documents), stopwords="en", show_progress=False),
                              show_progress=False)

    def search(self, query: str, count: int) -> list[int]:
        """Indices of up to ``count`` documents, best first (only documents sharing a term with the query)."""
        count = min(count, self.size)
        if count == 0:
            return []
        tokens = self._bm25s.tokenize([query], stopwords="en", show_progress=False)
        if not tokens.ids or not tokens.ids[0]:
            return []
        indices, scores = self._index.retrieve(tokens, k=count, show_progress=False, n_threads=1)
        return [int(i) for i, s in zip(indices[0], scores[0]) if s > 0]


def _document(state: str, action: str) -> str:
    return "\n".join([state] + [action] * ACTION_WEIGHT)


class ReplayBuffer:
    """Real and synthetic transitions, with top-k retrieval by (state, action) and, for first states, by
    instruction. Safe to share between the threads of a rollout."""

    def __init__(self, transitions: Iterable[Transition] = ()):
        self.transitions: list[Transition] = list(transitions)
        self._lock = threading.Lock()
        self._indexed = 0
        self._steps: BM25Index | None = None
        self._starts: BM25Index | None = None
        self._start_ids: list[int] = []
        self.refresh()

    @classmethod
    def load(cls, *paths: str | os.PathLike) -> "ReplayBuffer":
        return cls(t for path in paths for t in read_transitions(path))

    def save(self, path: str | os.PathLike, *, synthetic_only: bool = False) -> Path:
        with self._lock:
            kept = [t for t in self.transitions if t.synthetic or not synthetic_only]
        return write_transitions(path, kept)

    def add(self, transitions: Iterable[Transition]) -> None:
        """Append transitions; they become retrievable at the next :meth:`refresh`."""
        with self._lock:
            self.transitions.extend(transitions)

    def refresh(self) -> None:
        """Index every transition added so far (a few seconds for tens of thousands)."""
        with self._lock:
            if self._steps is not None and self._indexed == len(self.transitions):
                return
            indexed = list(self.transitions)
        steps = BM25Index([_document(t.state, t.action) for t in indexed])
        start_ids = [i for i, t in enumerate(indexed) if t.turn_index == 0 and not t.invalid]
        starts = BM25Index([indexed[i].instruction for i in start_ids])
        with self._lock:
            self._steps, self._starts, self._start_ids, self._indexed = steps, starts, start_ids, len(indexed)

    def __len__(self) -> int:
        return len(self.transitions)

    def counts(self) -> dict[str, int]:
        with self._lock:
            synthetic = sum(t.synthetic for t in self.transitions)
            return {"real": len(self.transitions) - synthetic, "synthetic": synthetic}

    def retrieve(self, state: str, action: str, k: int, *,
                 exclude: Callable[[Transition], bool] | None = None) -> list[Transition]:
        """The ``k`` indexed transitions most similar to (``state``, ``action``), skipping those ``exclude``
        rejects (e.g. the task a training example comes from)."""
        return self._top(self._steps, list(range(self._indexed)), _document(state, action), k, exclude)

    def retrieve_starts(self, instruction: str, k: int) -> list[Transition]:
        """First transitions of the ``k`` indexed episodes whose instructions are most like ``instruction``."""
        return self._top(self._starts, self._start_ids, instruction, k, None)

    def _top(self, index: BM25Index | None, ids: list[int], query: str, k: int,
             exclude: Callable[[Transition], bool] | None) -> list[Transition]:
        if k <= 0 or index is None:
            return []
        found: list[Transition] = []
        for position in index.search(query, k if exclude is None else k * 4 + 8):
            transition = self.transitions[ids[position]]
            if exclude is None or not exclude(transition):
                found.append(transition)
            if len(found) == k:
                break
        return found
