"""ScienceWorld behind the agentgym contract, talking to the simulator's JVM directly."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from scienceworld.constants import JAR_PATH

from agentgym.contract import Frame, Task, TextEnv, state_key, walkthrough_action
from agentgym.envs.jvm import DEFAULT_HEAP_MB, JavaEngine
from agentgym.envs.scienceworld.tasks import load_variations, split_tasks

_NO_MATCH = "No known action matches that input."
_AMBIGUOUS = "Ambiguous request"
_CHOICE = re.compile(r"^(\d+):", re.MULTILINE)


def scienceworld_engine(heap_mb: int = DEFAULT_HEAP_MB) -> JavaEngine:
    """A managed JVM running ScienceWorld's Python interface."""
    return JavaEngine(JAR_PATH, "scienceworld.runtime.pythonapi.PythonInterface", name="ScienceWorld",
                      heap_mb=heap_mb)


class ScienceWorldEnv(TextEnv):
    """The 30 ScienceWorld tasks (boiling, circuits, genetics, ...) on the real simulator.

    Description:
        An agent in a house with a kitchen, workshop, greenhouse and more runs elementary-school
        science experiments by text commands. One env id covers all tasks; a task id is
        ``<task name>-v<variation>``. Unlike ``scienceworld.ScienceWorldEnv.step``, which rebuilds the
        ~300-string valid-action list, look, inventory and task description on every call, this env
        asks the JVM only for the feedback, the score and a state hash, and builds the valid-action list
        only when ``admissible_actions=True``.

    Observation:
        ``text`` is the simulator's reply to the action (the reset shows ``look around``);
        ``admissible_actions`` the valid action-object combinations when ``admissible_actions=True``
        (after an ambiguous command, the numbers that resolve it), else empty; ``state_key`` a hash of
        what the agent sees and holds.

    Action:
        A ScienceWorld command (``"open door to kitchen"``, ``"focus on water"``, ``"wait"``); the
        action templates are listed by ``task`` in the instruction. The simulator parses free text: a
        command it cannot match is an invalid turn. An ambiguous command asks for a number, which the
        next action answers (``"0"``).

    Rewards:
        The change in the task score, scaled from ScienceWorld's 0-100 to 0-1 (partial progress earns
        reward; losing progress costs it); a failed task counts as score 0. ``info["score"]`` is the raw
        score (-100 on failure).

    Episode end:
        Terminated when the task is completed (``won`` at score 100) or failed; truncated after
        ``max_turns`` (default 100, the simulator's usual step limit) or when the JVM crashes (it is
        restarted for the next episode).

    Splits:
        ``train``/``dev``/``test`` are the simulator's own variation splits of 22 tasks; ``test_ood``
        is the test variations of 8 held-out tasks (``HELD_OUT_TASKS``: unknown-substance, composed
        and generalised versions of trained tasks).

    Arguments:
        split: ``"train"``, ``"dev"``, ``"test"`` or ``"test_ood"``.
        tasks: task names to restrict the split to (e.g. ``["boil", "melt"]``); default all.
        admissible_actions: list the valid actions in each observation (costs ~25 ms a step; needed
            for choice-mode policies and the random baseline).
        simplifications: ScienceWorld simplifications, e.g. ``"easy"`` or ``"openDoors,teleportAction"``.
        max_turns: turn budget per episode.
        heap_mb: the JVM's heap cap (``AGENTGYM_JVM_HEAP_MB``, default 512).
        render_mode: ``"ansi"`` or ``"human"``.
    """

    default_max_turns = 100
    admissible_is_complete = False  # the simulator parses more than its valid combinations (e.g. numbers)

    def __init__(self, split: str = "train", *, tasks: Sequence[str] | None = None, admissible_actions: bool = False,
                 simplifications: str = "", max_turns: int | None = None, heap_mb: int = DEFAULT_HEAP_MB,
                 render_mode: str | None = None):
        super().__init__(split, max_turns=max_turns, render_mode=render_mode)
        known = load_variations()
        unknown = sorted(set(tasks or ()) - set(known))
        if unknown:
            raise ValueError(f"Unknown ScienceWorld task(s) {unknown}; the tasks are: {', '.join(sorted(known))}.")
        self.task_filter = tuple(tasks or ())
        self.list_actions = admissible_actions
        self.simplifications = simplifications
        self.engine = scienceworld_engine(heap_mb)
        self._loaded: tuple[tuple[int, str, int], bool] | None = None  # ((JVM start, task, variation), gold path)
        self._score = 0
        self._actions_taken: list[str] = []
        self._gold: list[str] | None = None

    def load_tasks(self, split: str) -> list[Task]:
        tasks = split_tasks(split)
        return [task for task in tasks if task.payload["task_name"] in self.task_filter] if self.task_filter else tasks

    def _load(self, name: str, variation: int, gold_path: bool) -> None:
        """Put the task on the JVM at its first state, loading it only if this JVM does not hold it yet."""
        with self.engine.guard() as server:
            current = (self.engine.starts, name, variation)
            if self._loaded is None or self._loaded[0] != current or (gold_path and not self._loaded[1]):
                server.load(name, variation, self.simplifications, gold_path)
                self._loaded = (current, gold_path)
            server.reset()

    def _start(self, task: Task) -> Frame:
        self._load(task.payload["task_name"], task.payload["variation"], gold_path=False)
        self._score, self._actions_taken, self._gold = 0, [], None
        frame = self._command("look around")
        with self.engine.guard() as server:
            commands = ", ".join(server.getPossibleActions())
            frame.info["instruction"] = f"{server.getTaskDescription()}\nCommands (OBJ is an object): {commands}."
        return frame

    def _act(self, action: str) -> Frame:
        frame = self._command(action)
        self._actions_taken.append(action)  # rejected ones too, so a gold-path replay retraces the episode
        return frame

    def _command(self, action: str) -> Frame:
        with self.engine.guard() as server:
            feedback = server.step(action)
            score = round(100 * server.getScore())
            completed = bool(server.getCompleted())
            key = state_key(server.freeActionLook(), server.freeActionInventory())
            # One JSON string instead of a py4j list proxy, which costs a round trip per element.
            listed = tuple(sorted(entry["action"] for entry in json.loads(
                server.getValidActionObjectCombinationsJSON())["validActions"])) if self.list_actions else ()
        if feedback.strip() == _NO_MATCH:
            return Frame(text=f"{_NO_MATCH} Nothing happened. Use a command from the task's action list "
                              "(e.g. 'look around', 'open door to kitchen', 'focus on water').", invalid=True,
                         admissible_actions=self._frame.admissible_actions if self._frame else ())
        if feedback.startswith(_AMBIGUOUS):
            listed = tuple(_CHOICE.findall(feedback))
        reward = (max(score, 0) - max(self._score, 0)) / 100
        self._score = score
        return Frame(
            text=feedback.strip(), admissible_actions=listed, state_key=key, reward=reward,
            terminated=completed or score < 0, won=completed and score >= 100,
            info={"score": score, "task_name": self._task.payload["task_name"] if self._task else None},
        )

    def expert_action(self) -> str | None:
        """The next action of the simulator's gold path, while the episode has followed it (else ``None``).

        The gold path is generated only when first asked for in an episode (~4 s): the task is reloaded
        with it and the episode's actions replayed, so plain rollouts never pay for it.
        """
        if self._task is None or self._done:
            return None
        if self._gold is None:
            name, variation = self._task.payload["task_name"], self._task.payload["variation"]
            self._load(name, variation, gold_path=True)
            with self.engine.guard() as server:
                server.step("look around")
                for action in self._actions_taken:
                    server.step(action)
                self._gold = list(server.getGoldActionSequence())
        return walkthrough_action(self._gold, self._actions_taken)

    def close(self) -> None:
        self.engine.close()
        self._loaded = None
        super().close()

