"""The environment contract every agentgym family implements.

An agentgym environment is a :class:`gymnasium.Env` whose action is text and whose observation is
text-first. :class:`TextEnv` holds everything families share — task selection, the admissibility
check that turns a bad action into an invalid turn instead of an exception, the turn budget and the
``info`` keys every trainer relies on — so a family only writes the part that talks to its engine
(:meth:`TextEnv._start` and :meth:`TextEnv._act`).
"""

from __future__ import annotations

import abc
import hashlib
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

SPLITS: tuple[str, ...] = ("train", "dev", "test", "test_ood")
"""The split names every env id uses; ``test_ood`` exists where the family can hold something out."""

MAX_TEXT_LENGTH = 1 << 20

INFO_KEYS: tuple[str, ...] = ("task_id", "split", "won", "invalid_action", "turn")
"""Keys present in the ``info`` of every reset and step."""


class EngineCrashed(RuntimeError):
    """Raised by a family's :meth:`TextEnv._start` or :meth:`TextEnv._act` when its engine process died,
    hung or failed and has been discarded; the next use of the engine starts a fresh one.

    :class:`TextEnv` turns it into a truncated episode (``info["engine_crashed"]``) instead of an
    exception, so a rollout loses one episode, not the run.
    """


class UnicodeText(spaces.Text):
    """A text space that contains any ``str`` up to ``max_length`` characters.

    Gymnasium's :class:`~gymnasium.spaces.Text` only contains strings over a fixed charset
    (alphanumerics by default); game, web and search text is arbitrary Unicode. Samples are drawn
    from printable ASCII.
    """

    def __init__(self, max_length: int = MAX_TEXT_LENGTH, *, min_length: int = 0, seed=None):
        super().__init__(max_length, min_length=min_length, charset=string.printable, seed=seed)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"UnicodeText({self.min_length}, {self.max_length})"


def text_observation_space(image_shape: tuple[int, int, int] | None = None) -> spaces.Dict:
    """The observation space of a text-first env, with an RGB ``image`` when the family renders one."""
    parts: dict[str, spaces.Space] = {
        "text": UnicodeText(),
        "admissible_actions": spaces.Sequence(UnicodeText(), stack=False),
        "state_key": UnicodeText(),
    }
    if image_shape is not None:
        parts["image"] = spaces.Box(0, 255, shape=image_shape, dtype=np.uint8)
    return spaces.Dict(parts)


def state_key(*parts: str) -> str:
    """A stable 16-hex-digit hash of a state's description (no history), for step-level grouping.

    Python's ``hash`` is salted per process; this one is the same across processes and machines.
    """
    digest = hashlib.blake2b(digest_size=8)
    for part in parts:
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()


def normalize_action(text: str) -> str:
    """Case-fold and collapse whitespace, so 'Go  North' and 'go north' are the same command."""
    return " ".join(text.split()).casefold()


@dataclass(frozen=True)
class Task:
    """One task of an env id: what a reset can start.

    ``payload`` is what the family needs to build the episode (a game spec, a page, a question).
    ``answer`` is the ground truth where the family has one; it is for scoring and experts only and
    never reaches a policy's prompt.
    """

    id: str
    split: str
    instruction: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    answer: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "split": self.split,
            "instruction": self.instruction,
            "payload": dict(self.payload),
            "answer": self.answer,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Task":
        return cls(
            id=data["id"],
            split=data["split"],
            instruction=data["instruction"],
            payload=dict(data.get("payload") or {}),
            answer=data.get("answer"),
        )


@dataclass
class Frame:
    """What a family's engine reports after a reset or a step; :class:`TextEnv` turns it into the
    Gymnasium 5-tuple.

    ``invalid`` lets an engine that has no admissible-action list reject an action itself (``text``
    is then the feedback). ``info`` holds family-specific extras such as the raw score.
    """

    text: str
    admissible_actions: tuple[str, ...] = ()
    state_key: str = ""
    reward: float = 0.0
    terminated: bool = False
    won: bool = False
    invalid: bool = False
    image: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Episode:
    """The base class's state of the current episode, kept in one private slot of :class:`TextEnv`."""

    task: Task | None = None
    frame: Frame | None = None  # the current state's frame: an invalid turn does not replace it
    turn: int = 0
    over: bool = False


RESERVED_NAMES: frozenset[str] = frozenset(
    {"tasks", "task", "turn", "current_frame", "episode_over", "get_task", "invalid_frame"})
"""Names a :class:`TextEnv` subclass may not define: the base class's read-only episode state and the
helpers it relies on. Defining one is a ``TypeError`` when the subclass is created."""


def _read_only(getter):
    """A property whose assignment fails with a message that says whose state it is."""
    name = getter.__name__

    def refuse(self, value):
        raise AttributeError(f"{type(self).__name__}.{name} is read-only: TextEnv owns the episode state. "
                             f"Keep the family's own state under another name.")

    return property(getter, refuse, doc=getter.__doc__)


class TextEnv(gym.Env[dict, str], abc.ABC):
    """Base class of agentgym environments: a Gymnasium env with text actions and text-first observations.

    Observation (a ``dict``):
        ``text`` — what the agent reads this turn; ``admissible_actions`` — the actions the engine
        accepts now (empty when the engine cannot enumerate them); ``state_key`` — a stable hash of
        the current state without history; ``image`` — an RGB array, for families that render one.

    Action:
        A string. Case and spacing do not matter when the engine lists admissible actions. An action
        that is empty, not a string, or not admissible is an *invalid turn*: the engine does not
        move, the reward is 0, ``info["invalid_action"]`` is ``True`` and the observation text says
        what went wrong. It never raises.

    Info:
        Every reset and step carries ``task_id``, ``split``, ``won``, ``invalid_action`` and ``turn``;
        reset also carries ``instruction`` (the concrete goal of this episode).

    Episode end:
        ``terminated`` when the engine ends the episode (won or lost); ``truncated`` after
        ``max_turns`` turns, invalid ones included, or when the engine crashed (then
        ``info["engine_crashed"]`` is ``True``; the next reset runs on a fresh engine).

    Tasks and splits:
        A reset picks a task of the env's split: ``options={"task_id": ...}`` names one, otherwise the
        seeded generator picks one, so ``reset(seed=s)`` is deterministic.

    Subclasses implement :meth:`load_tasks`, :meth:`_start`, :meth:`_act` and, if they hold
    processes or files, :meth:`close`; an expert where the family has one (:meth:`expert_action`).

    Episode state:
        The base class keeps the episode's task, turn count, current frame and end flag in one
        name-mangled slot that no subclass attribute can overwrite, so a family is free to name its
        own helpers ``_frame``, ``_task``, ``_done`` and the like. Families read that state through
        the read-only properties :attr:`task`, :attr:`turn`, :attr:`current_frame` and
        :attr:`episode_over`, and build the frame of an action they reject with
        :meth:`invalid_frame`. A subclass that defines one of :data:`RESERVED_NAMES` is rejected
        with a ``TypeError`` when the class is created (not at the first reset); assigning one
        (``self.task = ...``) raises ``AttributeError``.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "human"]}
    splits: ClassVar[tuple[str, ...]] = SPLITS
    default_max_turns: ClassVar[int] = 50
    admissible_is_complete: ClassVar[bool] = True
    """Whether the admissible list holds every action the engine accepts. When it does not (an engine
    that lists typical commands but parses more), an unlisted action goes to the engine, which judges
    it (:attr:`Frame.invalid`)."""
    image_shape: ClassVar[tuple[int, int, int] | None] = None

    @classmethod
    def turn_budget(cls, max_turns: int | None = None, **kwargs: Any) -> int:
        """The ``max_turns`` an env made with these constructor arguments has, without making it (no
        engine starts): ``max_turns`` when given, else :attr:`default_max_turns`. A family whose
        budget depends on other arguments (a game's own limit, a number of steps) overrides this and
        uses it in ``__init__``."""
        return int(max_turns or cls.default_max_turns)

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        clashes = sorted(name for name in vars(cls) if name in RESERVED_NAMES or name.startswith("_TextEnv__"))
        if clashes:
            raise TypeError(
                f"{cls.__qualname__} defines {', '.join(map(repr, clashes))}, which TextEnv reserves for its own "
                f"episode state and helpers ({', '.join(sorted(RESERVED_NAMES))}). Rename it; read the "
                "episode's state through those read-only properties.")

    def __init__(self, split: str = "train", *, max_turns: int | None = None, render_mode: str | None = None):
        if split not in self.splits:
            raise ValueError(f"Unknown split {split!r}; this env has the splits {', '.join(self.splits)}.")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, not {render_mode!r}")
        self.split = split
        self.max_turns = int(max_turns or self.default_max_turns)
        self.render_mode = render_mode
        self.observation_space = text_observation_space(self.image_shape)
        self.action_space = UnicodeText()
        self.__tasks: tuple[Task, ...] | None = None
        self.__task_index: dict[str, Task] | None = None
        self.__episode = _Episode()

    # ------------------------------------------------------------------ family hooks
    @abc.abstractmethod
    def load_tasks(self, split: str) -> Sequence[Task]:
        """All tasks of ``split``, in a fixed order. Must be disjoint from every other split."""

    @abc.abstractmethod
    def _start(self, task: Task) -> Frame:
        """Start ``task`` on the engine and describe the first state."""

    @abc.abstractmethod
    def _act(self, action: str) -> Frame:
        """Apply an action the engine accepts (already matched to its admissible spelling)."""

    def expert_action(self) -> str | None:
        """The expert's next action in the current state, or ``None`` where the family has no expert.

        Privileged: only expert policies (oracle, behaviour-cloning data collection) may see it.
        """
        return None

    # ------------------------------------------------------------------ tasks and episode state (read-only)
    @_read_only
    def tasks(self) -> tuple[Task, ...]:
        """The tasks of this env's split."""
        if self.__tasks is None:
            self.__tasks = tuple(self.load_tasks(self.split))
            self.__task_index = {task.id: task for task in self.__tasks}
            if len(self.__task_index) != len(self.__tasks):
                raise ValueError(f"Split {self.split!r} repeats a task id.")
        return self.__tasks

    def get_task(self, task_id: str) -> Task:
        """The task ``task_id`` of this env's split; a ``ValueError`` naming the split if it is not in it."""
        self.tasks  # noqa: B018 - builds the index
        assert self.__task_index is not None
        try:
            return self.__task_index[task_id]
        except KeyError:
            raise ValueError(
                f"Task {task_id!r} is not in split {self.split!r} of this env "
                f"({len(self.__task_index)} tasks; list them with env.unwrapped.tasks)."
            ) from None

    @_read_only
    def task(self) -> Task | None:
        """The task of the current episode (set before :meth:`_start` runs); ``None`` before the first reset."""
        return self.__episode.task

    @_read_only
    def turn(self) -> int:
        """Turns taken in the current episode, invalid ones included (0 after a reset)."""
        return self.__episode.turn

    @_read_only
    def current_frame(self) -> Frame | None:
        """The frame of the current state: the last one the engine reported that was not invalid.

        ``None`` before the first reset and while :meth:`_start` runs. Read it, do not change it.
        """
        return self.__episode.frame

    @_read_only
    def episode_over(self) -> bool:
        """Whether the current episode terminated or was truncated (``False`` before the first reset)."""
        return self.__episode.over

    def invalid_frame(self, text: str) -> Frame:
        """The frame of an action that was rejected: ``text`` as feedback, the current state's admissible
        actions and state key, a copy of its image where the family renders one, ``invalid=True``.

        For a family's :meth:`_act` when its engine refuses an action; the base class uses it too.
        """
        current = self.__episode.frame
        if current is None:
            return Frame(text=text, invalid=True)
        # A copy of the image: each step returns its own observation, as Gymnasium expects.
        return Frame(text=text, admissible_actions=current.admissible_actions, state_key=current.state_key,
                     image=None if current.image is None else current.image.copy(), invalid=True)

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        if "task_id" in options:
            task = self.get_task(options["task_id"])
        else:
            task = self.tasks[int(self.np_random.integers(len(self.tasks)))]
        episode = self.__episode = _Episode(task=task)
        try:
            frame = self._start(task)
        except EngineCrashed:  # the engine died between episodes: one retry on a fresh engine
            frame = self._start(task)
        episode.frame = frame
        info = self.__info(frame, invalid=False)
        info["instruction"] = frame.info.get("instruction", task.instruction)
        return self.__observation(frame), info

    def step(self, action: str):
        episode = self.__episode
        if episode.frame is None:
            raise gym.error.ResetNeeded("Call reset() before step().")
        if episode.over:
            raise gym.error.ResetNeeded("The episode has ended; call reset() before stepping again.")
        episode.turn += 1
        accepted, feedback = self._admit(action)
        if accepted is None:
            frame = self.invalid_frame(feedback)
        else:
            try:
                frame = self._act(accepted)
            except EngineCrashed as crash:
                frame = replace(self.invalid_frame(f"The environment's engine crashed ({crash}); this episode is "
                                                   "cut short."),
                                admissible_actions=(), invalid=False, info={"engine_crashed": True})
            if frame.invalid:
                # The engine rejected the action itself: the state did not move.
                frame.state_key = frame.state_key or episode.frame.state_key
        if not frame.invalid:
            episode.frame = frame
        terminated = bool(frame.terminated)
        truncated = not terminated and (episode.turn >= self.max_turns or frame.info.get("engine_crashed", False))
        episode.over = terminated or truncated
        observation = self.__observation(frame)
        if self.render_mode == "human":
            print(self.__render_text(observation))
        return observation, float(frame.reward), terminated, truncated, self.__info(frame, invalid=frame.invalid)

    def render(self):
        frame = self.__episode.frame
        if frame is None or self.render_mode is None:
            return None
        text = self.__render_text(self.__observation(frame))
        if self.render_mode == "human":
            print(text)
            return None
        return text

    # ------------------------------------------------------------------ internals
    def _admit(self, action: Any) -> tuple[str | None, str]:
        """Match an action to the engine's spelling, or explain why it is an invalid turn: the accepted
        spelling and ``""``, or ``None`` and the feedback. A family may override it (with care: it is
        what keeps junk from reaching the engine)."""
        if not isinstance(action, str):
            return None, f"Invalid action: expected text, got {type(action).__name__}. Nothing happened."
        if not action.strip():
            return None, "Invalid action: the action was empty. Nothing happened."
        current = self.__episode.frame
        admissible = current.admissible_actions if current else ()
        if not admissible:
            return action.strip(), ""
        if action in admissible:  # the common case, without normalising every candidate
            return action, ""
        wanted = normalize_action(action)
        for candidate in admissible:
            if normalize_action(candidate) == wanted:
                return candidate, ""
        if not self.admissible_is_complete:
            return action.strip(), ""
        shown = action.strip()
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return None, (
            f"Invalid action: {shown!r} is not one of the admissible actions. Nothing happened. "
            "Reply with exactly one of the admissible actions."
        )

    def __observation(self, frame: Frame) -> dict[str, Any]:
        observation: dict[str, Any] = {
            "text": frame.text,
            "admissible_actions": tuple(frame.admissible_actions),
            "state_key": frame.state_key,
        }
        if self.image_shape is not None:
            observation["image"] = frame.image
        return observation

    def __info(self, frame: Frame, *, invalid: bool) -> dict[str, Any]:
        episode = self.__episode
        assert episode.task is not None
        info = dict(frame.info)
        info.update(
            task_id=episode.task.id,
            split=self.split,
            won=bool(frame.won) and not invalid,
            invalid_action=bool(invalid),
            turn=episode.turn,
        )
        return info

    @staticmethod
    def __render_text(observation: Mapping[str, Any]) -> str:
        lines = [observation["text"]]
        if observation["admissible_actions"]:
            lines.append("Admissible actions: " + " | ".join(observation["admissible_actions"]))
        return "\n".join(lines)


_BLANK_RUN = re.compile(r"\n{3,}")


def tidy_text(text: str) -> str:
    """Trim trailing spaces on each line and runs of blank lines, which engines emit freely."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return _BLANK_RUN.sub("\n\n", "\n".join(lines))


def walkthrough_action(walkthrough: Sequence[str], taken: Sequence[str]) -> str | None:
    """The next action of a fixed walkthrough while the episode has followed it exactly, else ``None``
    (a gold path says nothing about states off the path)."""
    done = len(taken)
    if done >= len(walkthrough) or list(taken) != list(walkthrough[:done]):
        return None
    return walkthrough[done]
