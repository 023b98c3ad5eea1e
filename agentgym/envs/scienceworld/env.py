"""ScienceWorld behind the agentgym contract, talking to the simulator's JVM directly."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from scienceworld.constants import JAR_PATH

from agentgym.contract import Frame, Task, TextEnv, state_key, walkthrough_action
from agentgym.envs.jvm import CONSTANT_IDENTITY_HASH, DEFAULT_HEAP_MB, JavaEngine
from agentgym.envs.scienceworld.tasks import load_variations, split_tasks

_NO_MATCH = "No known action matches that input."
_AMBIGUOUS = "Ambiguous request"
_CHOICE = re.compile(r"^(\d+):", re.MULTILINE)
_OPEN_JAVA_UTIL = ("--add-opens", "java.base/java.util=ALL-UNNAMED")  # lets _SimulatorRandom read the state
_SCRAMBLE = 0x5DEECE66D  # java.util.Random.setSeed xors its argument with this multiplier


def scienceworld_engine(heap_mb: int = DEFAULT_HEAP_MB, reproducible: bool = True) -> JavaEngine:
    """A managed JVM running ScienceWorld's Python interface; ``reproducible`` gives it one constant
    identity hash code (:data:`~agentgym.envs.jvm.CONSTANT_IDENTITY_HASH`), see :class:`ScienceWorldEnv`."""
    options = (*CONSTANT_IDENTITY_HASH, *_OPEN_JAVA_UTIL) if reproducible else _OPEN_JAVA_UTIL
    return JavaEngine(JAR_PATH, "scienceworld.runtime.pythonapi.PythonInterface", name="ScienceWorld",
                      heap_mb=heap_mb, jvm_options=options)


class _SimulatorRandom:
    """The simulator's one random generator (``scala.util.Random``, reseeded with the variation number
    at every load), whose state can be read and put back.

    Building the valid-action list draws from it (to pick among an object's names), so an episode that
    lists actions would otherwise see bees pollinate and genes combine differently from one that does
    not, and a gold-path replay would leave the episode's path.
    """

    def __init__(self, jvm):
        lang = jvm.java.lang
        module = lang.Class.forName("scala.util.Random$").getField("MODULE$").get(None)
        self._generator = lang.Class.forName("scala.util.Random").getMethod("self", None).invoke(module, None)
        self._seed = lang.Class.forName("java.util.Random").getDeclaredField("seed")
        self._seed.setAccessible(True)

    def state(self) -> int:
        return self._seed.get(self._generator)

    def restore(self, state: int) -> None:
        self._generator.setSeed(state ^ _SCRAMBLE)


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

    Reproducibility:
        The same task and actions give the same observations, rewards and outcome in any env, new or
        used, with or without ``admissible_actions``. The simulator keeps a room's contents, and the
        objects its processes (heat, electricity, growth) visit, in hash sets keyed by the JVM's identity
        hash, which HotSpot draws from a per-thread random sequence: their order (which object passes
        heat first, which of two same-named objects is listed first, who draws the simulator's random
        numbers first) then depends on everything the JVM ran before. The JVM runs with
        ``-XX:hashCode=2`` (:data:`~agentgym.envs.jvm.CONSTANT_IDENTITY_HASH`: one constant hash, so a
        set iterates in an order set by the episode's own calls); the simulator reseeds its one random
        generator with the variation number at every load; building the valid-action list draws from
        that generator, so the env puts its state back afterwards; and each reset loads the task afresh.
        Over the oracle's path of one variation of each of the 30 tasks replayed 3 times in the same env
        and 3 times in fresh envs (``benchmarks/scienceworld_replay.py``), every replay matches;
        ``reproducible=False`` (the JVM's default hashing, the old behaviour) gives replays that differ
        in REPLACE_LEGACY_SUMMARY. A reset costs about the same either way.

    Arguments:
        split: ``"train"``, ``"dev"``, ``"test"`` or ``"test_ood"``.
        tasks: task names to restrict the split to (e.g. ``["boil", "melt"]``); default all.
        admissible_actions: list the valid actions in each observation (costs ~25 ms a step; needed
            for choice-mode policies and the random baseline).
        simplifications: ScienceWorld simplifications, e.g. ``"easy"`` or ``"openDoors,teleportAction"``.
        max_turns: turn budget per episode.
        heap_mb: the JVM's heap cap (``AGENTGYM_JVM_HEAP_MB``, default 512).
        reproducible: run the JVM with one constant identity hash code, so (task, actions) gives the
            same episode in any env (see Reproducibility); ``False`` is the JVM's default hashing, whose
            episodes depend on what the JVM ran before.
        render_mode: ``"ansi"`` or ``"human"``.
    """

    default_max_turns = 100
    admissible_is_complete = False  # the simulator parses more than its valid combinations (e.g. numbers)

    def __init__(self, split: str = "train", *, tasks: Sequence[str] | None = None, admissible_actions: bool = False,
                 simplifications: str = "", max_turns: int | None = None, heap_mb: int = DEFAULT_HEAP_MB,
                 reproducible: bool = True, render_mode: str | None = None):
        super().__init__(split, max_turns=max_turns, render_mode=render_mode)
        known = load_variations()
        unknown = sorted(set(tasks or ()) - set(known))
        if unknown:
            raise ValueError(f"Unknown ScienceWorld task(s) {unknown}; the tasks are: {', '.join(sorted(known))}.")
        self.task_filter = tuple(tasks or ())
        self.list_actions = admissible_actions
        self.simplifications = simplifications
        self.reproducible = reproducible
        self.engine = scienceworld_engine(heap_mb, reproducible)
        self._random: tuple[int, _SimulatorRandom] | None = None  # (JVM start, its generator)
        self._score = 0
        self._actions_taken: list[str] = []
        self._gold: list[str] | None = None
        self._gold_paths: dict[tuple[str, int], list[str]] = {}

    def load_tasks(self, split: str) -> list[Task]:
        tasks = split_tasks(split)
        return [task for task in tasks if task.payload["task_name"] in self.task_filter] if self.task_filter else tasks

    def _load(self, name: str, variation: int, gold_path: bool) -> None:
        """Put the task on the JVM at its first state.

        One ``load`` per episode: the simulator's ``reset`` is the same reload with the last load's
        arguments, except that once a gold path was asked for it regenerates one at every later reset.
        """
        with self.engine.guard() as server:
            server.load(name, variation, self.simplifications, gold_path)

    def _simulator_random(self) -> _SimulatorRandom:
        if self._random is None or self._random[0] != self.engine.starts:
            random = _SimulatorRandom(self.engine.jvm)
            self._random = (self.engine.starts, random)
        return self._random[1]

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
            listed: tuple[str, ...] = ()
            if self.list_actions:
                random = self._simulator_random()
                state = random.state()
                # One JSON string instead of a py4j list proxy, which costs a round trip per element.
                listed = tuple(sorted(entry["action"] for entry in json.loads(
                    server.getValidActionObjectCombinationsJSON())["validActions"]))
                random.restore(state)  # listing draws random numbers; the simulation must not notice
        if feedback.strip() == _NO_MATCH:
            return Frame(text=f"{_NO_MATCH} Nothing happened. Use a command from the task's action list "
                              "(e.g. 'look around', 'open door to kitchen', 'focus on water').", invalid=True,
                         admissible_actions=self.current_frame.admissible_actions if self.current_frame else ())
        if feedback.startswith(_AMBIGUOUS):
            listed = tuple(_CHOICE.findall(feedback))
        reward = (max(score, 0) - max(self._score, 0)) / 100
        self._score = score
        return Frame(
            text=feedback.strip(), admissible_actions=listed, state_key=key, reward=reward,
            terminated=completed or score < 0, won=completed and score >= 100,
            info={"score": score, "task_name": self.task.payload["task_name"] if self.task else None},
        )

    def expert_action(self) -> str | None:
        """The next action of the simulator's gold path, while the episode has followed it (else ``None``).

        The gold path is generated only when first asked for (~4 s): the task is reloaded with it and
        the episode's actions replayed, so plain rollouts never pay for it. It is kept per task and
        variation, so later episodes of the task ask the simulator nothing.
        """
        if self.task is None or self.episode_over:
            return None
        if self._gold is None:
            name, variation = self.task.payload["task_name"], self.task.payload["variation"]
            if (name, variation) not in self._gold_paths:
                self._load(name, variation, gold_path=True)
                with self.engine.guard() as server:
                    server.step("look around")
                    for action in self._actions_taken:
                        server.step(action)
                    self._gold_paths[name, variation] = list(server.getGoldActionSequence())
            self._gold = self._gold_paths[name, variation]
        return walkthrough_action(self._gold, self._actions_taken)

    def close(self) -> None:
        self.engine.close()
        super().close()

