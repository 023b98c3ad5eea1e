"""ALFWorld household tasks on ALFWorld's real engine (TextWorld's PDDL env + fast-downward)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import resource
import select
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from agentgym.contract import Frame, Task, TextEnv, state_key, tidy_text, walkthrough_action
from agentgym.envs.alfworld.games import (
    OFFICIAL_SPLIT_DIRS,
    folder_name,
    game_data,
    goal_text,
    mangle,
    sample_game,
    scripted_walkthrough,
    split_games,
    traj_data,
)
from agentgym.envs.alfworld.search_expert import SearchingExpert
from agentgym.paths import atomic_write, cache_dir

# TextWorld's logic parser and fast-downward's translator keep module-level state: loading and resetting
# games take this lock (stepping does not).
ENGINE_LOCK = threading.RLock()
GENERATED_SPLITS = ("train", "dev", "test", "test_ood")
# fast-downward's search has no limit of its own: off the walkthrough (after exploring actions) it can search
# for ever, and one search was seen growing to 9 GiB in 11 minutes. Its plan is computed under these limits.
PLAN_SECONDS = 30.0
PLAN_MEMORY = 2 << 30  # bytes the search may allocate
OFFICIAL_SPLITS = ("valid_seen", "valid_unseen", "valid_train")


def has_official_data(data_dir: str | os.PathLike | None = None) -> bool:
    """Whether ``data_dir`` (default ``$ALFWORLD_DATA``) holds official games. Importing alfworld sets
    ``ALFWORLD_DATA`` to an empty default folder, so the folder alone proves nothing."""
    base = Path(data_dir or os.environ.get("ALFWORLD_DATA") or "/nonexistent") / "json_2.1.1"
    return next(base.glob("valid_*/*/*/game.tw-pddl"), None) is not None


class _DownwardLibraries:
    """fast-downward's C library, one loaded copy per engine alive at once, handed from a closed engine to
    the next. TextWorld's ``PddlEnv`` loads a fresh copy of the 33 MB ``libdownward.so`` for every engine
    and never unloads it (``dlclose`` could not anyway: the library has unique C++ symbols, so it stays
    mapped), and nothing frees the planning task the copy holds: ~3.5 MiB per game loaded, for good."""

    def __init__(self) -> None:
        self._free: list[Any] = []
        self._lock = threading.Lock()
        self.loaded = 0  # copies loaded in this process (the tests check that it stays small)

    def borrow(self) -> Any:
        with self._lock:
            if self._free:
                return self._free.pop()
            self.loaded += 1
        import fast_downward

        return fast_downward.load_lib()

    def give_back(self, library: Any) -> None:
        library.cleanup()  # frees the task, its state and search structures (what ``close_lib`` does first)
        with self._lock:
            self._free.append(library)


DOWNWARD_LIBRARIES = _DownwardLibraries()


def _forget_unused_propositions() -> None:
    """Drop the propositions and signatures that TextWorld interns (``mementos``: a module-level dict that
    keeps every one ever made) and that nothing else holds any more. Each game's objects have their own
    names, so without this every new game adds its ~1 MiB of facts for good. They compare by value,
    so a dropped one is simply made again when needed."""
    from mementos import core
    from textworld.logic import Proposition, Signature

    cache = core._memento_cache
    probe: dict[int, object] = {0: object()}
    value = probe[0]
    held_only_by_the_cache = sys.getrefcount(value)  # the dict, this name and the call's argument
    del value
    for kind in (Proposition, Signature):  # propositions first: they hold their signatures
        for key in list(cache):
            value = cache.get(key)
            if type(value) is kind and sys.getrefcount(value) <= held_only_by_the_cache:
                cache.pop(key, None)
        value = None


@lru_cache(maxsize=1)
def _engine_class() -> type:
    """ALFWorld's engine (TextWorld's ``PddlEnv``) with two caches that leave its behaviour unchanged:

    * the command text of each grounded action: the engine re-derives every admissible command through
      its grammar on every step (~25 ms each; a kitchen has ~50), though in ALFRED's grammar a
      command depends only on the action and its arguments;
    * the translation of the PDDL problem, which the engine redoes twice on every reset (~2 s in a
      kitchen) though the problem never changes (the last 4 games' translations are kept);

    and with what it leaks plugged: fast-downward's library is reused from a closed engine instead of
    loaded anew (see :class:`_DownwardLibraries`), ``close`` releases it with the game's state and the
    interned facts nothing uses any more, and the game file is read in a ``with`` block (the engine's
    ``load`` leaves it open: ``ResourceWarning: unclosed file``).
    """
    import fast_downward
    import textworld
    from textworld.envs.pddl import PddlEnv

    translate = lru_cache(maxsize=8)(fast_downward.pddl2sas)

    class CachedPddlEnv(PddlEnv):
        def __init__(self, infos: Any = None) -> None:
            # PddlEnv.__init__ only loads a new library copy; take a free one instead.
            textworld.Environment.__init__(self, infos)
            self.downward_lib = DOWNWARD_LIBRARIES.borrow()

        def load(self, filename_or_data: Any) -> None:
            self._commands: dict[tuple, str] = {}
            data = filename_or_data
            if not isinstance(data, Mapping):
                with open(data) as file:
                    data = json.load(file)
            with self._cached_translation():
                super().load(data)
            if data is not filename_or_data:
                self._game_file = filename_or_data

        def close(self) -> None:
            # Also called by the engine's __del__, so it may run twice.
            library, self.downward_lib = getattr(self, "downward_lib", None), None
            if library is None:
                return
            self._pddl_state = self.state = self.prev_state = self._logic = self._entity_infos = None
            self._commands = {}
            DOWNWARD_LIBRARIES.give_back(library)
            _forget_unused_propositions()

        def reset(self) -> Any:
            with self._cached_translation():
                return super().reset()

        @staticmethod
        @contextlib.contextmanager
        def _cached_translation():
            original = fast_downward.pddl2sas
            fast_downward.pddl2sas = lambda domain, problem, verbose=False, optimize=False: translate(
                domain, problem, verbose=verbose, optimize=optimize)
            try:
                yield
            finally:
                fast_downward.pddl2sas = original

        def _gather_infos(self) -> None:
            state = self.state
            state["won"], state["lost"] = self._pddl_state.check_goal(), False
            state["_facts"] = list(self._pddl_state.facts)
            state["_valid_actions"] = actions = list(self._pddl_state.all_applicable_actions())
            commands = []
            for action in actions:
                key = (action.name, *((p.name, v.name) for p, v in action.mapping.items()))
                if key not in self._commands:
                    context = {"state": self._pddl_state, "facts": state["_facts"], "mapping": action.mapping,
                               "variables": {p.name: self._entity_infos[v.name] for p, v in action.mapping.items()},
                               "entity_infos": self._entity_infos}
                    action.command_template = self._logic.grammar.derive(action.command_template, context)
                    self._commands[key] = action.format_command({k: e.name for k, e in self._entity_infos.items()})
                commands.append(self._commands[key])
            state["_valid_commands"] = commands
            state["admissible_commands"] = sorted(set(commands))

    return CachedPddlEnv


def start_engine(path: Path) -> Any:
    """ALFWorld's engine on a ``game.tw-pddl`` file, wrapped as ALFWorld does (object names demangled)."""
    import textworld
    from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos

    engine = AlfredInfos(AlfredDemangler(_engine_class()(textworld.EnvInfos(admissible_commands=True, won=True))))
    with ENGINE_LOCK:
        engine.load(str(path))
    return engine


def game_folder(game: dict[str, Any], split: str, root: Path | None = None) -> Path:
    """The generated game's folder in the official layout, written on first use with a walkthrough that
    is replayed to a win (so every game is known to be solvable)."""
    from importlib.metadata import version

    base = (root or cache_dir()) / "alfworld" / version("alfworld") / "json_2.1.1" / OFFICIAL_SPLIT_DIRS[split]
    folder = base / folder_name(game)
    if (folder / "game.tw-pddl").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with ENGINE_LOCK, open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "game.tw-pddl").exists():
            _write_game(game, folder)
    return folder


def _write_game(game: dict[str, Any], folder: Path) -> None:
    data = game_data(game)
    data["walkthrough"] = checked_walkthrough(game, data)
    atomic_write(folder / "traj_data.json", lambda f: f.write(json.dumps(traj_data(game), indent=1).encode()))
    atomic_write(folder / "game.tw-pddl", lambda f: f.write(json.dumps(data).encode()))


def checked_walkthrough(game: dict[str, Any], data: dict[str, Any]) -> list[str]:
    """The game's scripted walkthrough, replayed on the engine (playing ``data``, the game's
    ``game.tw-pddl``) to a win, which proves the game solvable; fast-downward's plan if the script ever
    falls short."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "game.tw-pddl"
        path.write_text(json.dumps(data))
        engine = start_engine(path)
        try:
            names = {info.id: info.name for info in engine._entity_infos.values()}
            plan = scripted_walkthrough(game, {thor_id: names[mangle(thor_id).lower()] for thor_id in _ids(game)})
            if not _wins(engine, plan):
                with ENGINE_LOCK:
                    engine.reset()
                plan = engine._pddl_state.replan(engine._entity_infos)
                if not _wins(engine, plan):
                    raise RuntimeError(f"No winning walkthrough for the ALFWorld game {folder_name(game)}; it "
                                       "should not have been sampled (please report it).")
        finally:
            engine.close()
    return plan


def _ids(game: dict[str, Any]) -> list[str]:
    return [*game["receptacles"], *(thor_id for thor_id, _, _ in game["objects"])]


def _wins(engine: Any, plan: list[str]) -> bool:
    with ENGINE_LOCK:
        state = engine.reset()
    for command in plan:
        if command not in state["admissible_commands"]:
            return False
        state, _, _ = engine.step(command)
    return bool(state["won"])


def official_games(split: str, data_dir: str | os.PathLike | None) -> list[Task]:
    """Solvable games of an official split directory (``$ALFWORLD_DATA/json_2.1.1/<split>``), skipping
    the kinds ALFWorld itself skips (movable receptacles, slicing)."""
    root = data_dir or os.environ.get("ALFWORLD_DATA")
    if not root:
        raise FileNotFoundError(f"The official split {split!r} needs ALFWorld's data: set ALFWORLD_DATA (or pass "
                                "data_dir=) to the folder that holds json_2.1.1/. Generated splits need no data.")
    base = Path(root).expanduser() / "json_2.1.1" / split
    tasks = []
    for path in sorted(base.glob("*/*/game.tw-pddl")):
        if "movable" in str(path.parent) or "Sliced" in str(path.parent):
            continue
        if not json.loads(path.read_text()).get("solvable", False):
            continue
        traj = json.loads((path.parent / "traj_data.json").read_text())
        tasks.append(Task(str(path.parent.relative_to(base)), split, traj["turk_annotations"]["anns"][0]["task_desc"],
                          payload={"folder": str(path.parent), "task_type": traj["task_type"]}))
    if not tasks:
        raise FileNotFoundError(f"No ALFWorld games (traj_data.json + game.tw-pddl) under {base}: ALFWORLD_DATA "
                                "(or data_dir=) must be the folder that holds ALFWorld's json_2.1.1/.")
    return tasks


class AlfWorldEnv(TextEnv):
    """Household tasks in ALFWorld's text engine (Shridhar et al., 2021): find, transform and place objects.

    Description:
        ALFWorld's real engine — TextWorld's PDDL env with fast-downward, ALFRED's domain and text
        grammar from the ``alfworld`` wheel, ALFWorld's name demangler — on games generated from the
        wheel's 120 AI2-THOR floor plans for the six ALFWorld task types (see
        :mod:`agentgym.envs.alfworld.games`), or on the official games when ``ALFWORLD_DATA`` holds them.

    Observation:
        ``text``: the engine's feedback (``You arrive at countertop 1. On the countertop 1, you see a
        apple 1...``); ``admissible_actions``: the engine's admissible commands; ``state_key``: a hash
        of the PDDL facts.

    Action:
        An admissible command (``go to fridge 1``, ``take apple 1 from countertop 1``, ``open fridge 1``,
        ``heat apple 1 with microwave 1``, ``move apple 1 to countertop 2``, ``use desklamp 1``...),
        matched case- and space-insensitively; anything else is an invalid turn.

    Rewards:
        1 when the goal is reached, else 0 (ALFWorld's reward); ``won`` with it.

    Episode end:
        Terminated when the goal holds; truncated after ``max_turns`` (50, ALFWorld's usual budget).

    Splits:
        Generated, 10 games per task type unless noted: ``train`` (100 per type) and ``dev`` on seen
        floor plans; ``test`` seen floor plans with new object placements; ``test_ood`` the 24 floor
        plans ALFRED holds out (never in the other splits). With the official data: ``valid_seen``,
        ``valid_unseen`` and ``valid_train``.

    Arguments:
        split: ``"train"``, ``"dev"``, ``"test"``, ``"test_ood"``, or an official split.
        task_types: keep only these ALFWorld task types (e.g. ``["pick_heat_then_place_in_recep"]``).
        data_dir: the official data folder for official splits (default ``$ALFWORLD_DATA``).
        cache_root: where generated games are written (default ``agentgym.paths.cache_dir()``).
        max_turns: turn budget (50).
        render_mode: ``"ansi"`` or ``"human"``.
        expert: what :meth:`expert_action` plays. ``"walkthrough"`` (default): the game's walkthrough,
            which walks straight to where the object lies, then fast-downward's plan off it — the shortest
            win, using what a player cannot know. ``"search"``: :class:`SearchingExpert`, which searches
            the receptacles in turn as a player must — the demonstrations to clone for a policy that
            sees only its observations.
    """

    splits = (*GENERATED_SPLITS, *OFFICIAL_SPLITS)
    default_max_turns = 50

    def __init__(self, split: str = "train", *, task_types: list[str] | None = None,
                 data_dir: str | os.PathLike | None = None, cache_root: str | os.PathLike | None = None,
                 max_turns: int | None = None, render_mode: str | None = None, expert: str = "walkthrough"):
        if expert not in ("walkthrough", "search"):
            raise ValueError(f"ALFWorld's expert is 'walkthrough' or 'search', not {expert!r}.")
        self.task_types, self.data_dir, self.expert = task_types, data_dir, expert
        self._cache_root = Path(cache_root) if cache_root is not None else None
        if not has_official_data(data_dir) and split not in OFFICIAL_SPLITS:
            self.splits = GENERATED_SPLITS  # the official ones only where their data is
        super().__init__(split, max_turns=max_turns, render_mode=render_mode)
        self._engine: Any = None
        self._folder: str | None = None
        self._state: Any = None
        self._walkthrough: list[str] = []
        self._taken: list[str] = []
        self._planner_gave_up = False  # this episode's plan search outgrew its limits once
        self._searcher: SearchingExpert | None = None

    def load_tasks(self, split: str) -> list[Task]:
        if split in OFFICIAL_SPLITS:
            tasks = official_games(split, self.data_dir)
        else:
            tasks = [Task(folder_name(game).replace("/", "-"), split, goal_text(game),
                          payload={"game": {k: v for k, v in game.items() if k not in ("receptacles", "objects")},
                                   "task_type": game["task_type"]})
                     for game in split_games(split)]
        return [task for task in tasks if not self.task_types or task.payload["task_type"] in self.task_types]

    def game_folder(self, task: Task) -> Path:
        """The task's game folder (generated and cached on first use for the generated splits)."""
        if "folder" in task.payload:
            return Path(task.payload["folder"])
        spec = task.payload["game"]
        return game_folder(sample_game(spec["floor_plan"], spec["task_type"], spec["seed"]), task.split, self._cache_root)

    def _start(self, task: Task) -> Frame:
        folder = str(self.game_folder(task))
        if folder != self._folder:
            self._close_engine()
            self._engine = start_engine(Path(folder) / "game.tw-pddl")
            self._walkthrough = list(self._engine.walkthrough or [])
            self._folder = folder
        with ENGINE_LOCK:
            self._state = self._engine.reset()
        self._taken = []
        self._planner_gave_up = False
        feedback = self._state.feedback.replace("-= Welcome to TextWorld, ALFRED! =-", "")
        if self.expert == "search":
            self._searcher = searching_expert(Path(folder) / "traj_data.json")
            self._searcher.observe("", feedback)
        frame = self._describe(feedback)
        frame.info["instruction"] = feedback.rpartition("Your task is to: ")[2].strip() or task.instruction
        return frame

    def _act(self, action: str) -> Frame:
        self._state, _, _ = self._engine.step(action)
        self._taken.append(action)
        if self._searcher is not None:
            self._searcher.observe(action, self._state.feedback)
        return self._describe(self._state.feedback)

    def _describe(self, feedback: str) -> Frame:
        won = bool(self._state["won"])
        return Frame(text=tidy_text(feedback), admissible_actions=tuple(self._state["admissible_commands"]),
                     state_key=state_key(*sorted(map(str, self._state["_facts"]))),
                     reward=float(won), terminated=won, won=won)

    def expert_action(self) -> str | None:
        """With ``expert="search"``, the searching expert's next command. Otherwise the game's walkthrough
        while the episode follows it; off it, fast-downward's plan from the current state (0.1 s to minutes
        in a big kitchen), or None when the search outgrows :data:`PLAN_SECONDS` or :data:`PLAN_MEMORY` —
        and for the rest of the episode once it has.
        Never computed unless asked."""
        if self._state is None or self._state["won"]:
            return None
        if self._searcher is not None:
            return self._searcher.next_action(self._state["admissible_commands"])
        following = walkthrough_action(self._walkthrough, self._taken)
        if following is not None or self._planner_gave_up:
            return following
        with ENGINE_LOCK:
            plan = plan_within(lambda: self._engine._pddl_state.replan(self._engine._entity_infos))
        # A search that outgrew the limits once tends to again from the next state of the same kitchen.
        self._planner_gave_up = plan is None
        return plan[0] if plan else None

    def _close_engine(self) -> None:
        engine, self._engine, self._folder, self._state = self._engine, None, None, None
        if engine is not None:
            engine.close()

    def close(self) -> None:
        self._close_engine()
        super().close()


def searching_expert(traj_data_path: Path) -> SearchingExpert:
    """A fresh :class:`SearchingExpert` for the game whose ``traj_data.json`` is at ``traj_data_path``
    (the kinds its goal names: ALFRED's ``pddl_params``)."""
    data = json.loads(traj_data_path.read_text())
    params, task_type = data["pddl_params"], data["task_type"]
    light = task_type == "look_at_obj_in_light"
    return SearchingExpert(task_type, target=params["object_target"].lower(),
                           goal="" if light else params["parent_target"].lower(),
                           lamp=params["toggle_target"].lower() if light else "")


def plan_within(plan: Callable[[], list[str]], seconds: float = PLAN_SECONDS,
                memory: int = PLAN_MEMORY) -> list[str] | None:
    """``plan()`` computed in a forked copy of this process (which holds the engine's planning state), killed
    after ``seconds`` or failing once it allocates ``memory`` more bytes; None when it did not finish. The
    copy only plans and writes the JSON answer to a pipe, then exits without any cleanup."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the copy
        status = 1
        try:
            os.close(read)
            size = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
            resource.setrlimit(resource.RLIMIT_AS, (size + memory, size + memory))
            with os.fdopen(write, "wb") as answer:
                answer.write(json.dumps(plan()).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    chunks, deadline = [], time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0 and select.select([read], [], [], left)[0]:
            if not (chunk := os.read(read, 1 << 16)):
                break  # the copy closed the pipe: done
            chunks.append(chunk)
        else:
            os.kill(child, signal.SIGKILL)  # out of time
    finally:
        os.close(read)
        _, status = os.waitpid(child, 0)
    return json.loads(b"".join(chunks)) if os.waitstatus_to_exitcode(status) == 0 else None


def pregenerate(split: str, root: Path | None = None) -> int:
    """Write (and check) every game of a generated split ahead of training or evaluation."""
    from tqdm import tqdm

    games = split_games(split)
    for game in tqdm(games, desc=f"ALFWorld {split}", unit="game"):
        game_folder(game, split, root)
    return len(games)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Generate a split's ALFWorld games into the cache (each ~2 s).")
    parser.add_argument("--split", default="test", choices=sorted(OFFICIAL_SPLIT_DIRS))
    print(f"{pregenerate(parser.parse_args().split)} games ready")
