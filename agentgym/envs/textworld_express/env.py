"""TextWorldExpress games behind the agentgym contract, one managed JVM per env."""

from __future__ import annotations

import json
from typing import Any

from textworld_express.constants import JAR_PATH

from agentgym.contract import Frame, Task, TextEnv, state_key, tidy_text, walkthrough_action
from agentgym.envs.jvm import DEFAULT_HEAP_MB, JavaEngine
from agentgym.envs.textworld_express.games import game_tasks, load_games

_UNKNOWN = "Unknown action"


class TextWorldExpressEnv(TextEnv):
    """One of TextWorldExpress's eight procedurally generated games, at ~1,000 steps/s.

    Description:
        TextWorldExpress (Jansen & Côté, 2022) reimplements TextWorld-style games in Scala: coin
        collector, map reader, cooking world, TextWorld Commonsense (``twc``), Simon says, arithmetic,
        sorting and pecking order. Each game is generated from a seed by the engine's JVM; the env asks
        it for one JSON reply per step (the package's own wrapper makes a second call every step).

    Observation:
        ``text`` is the game's reply; ``admissible_actions`` the valid commands (sorted); ``state_key``
        a hash of the room description and inventory.

    Action:
        A command (``"open door to north"``, ``"take coin"``). The valid-command list is not complete
        (the gold path uses commands it omits), so the engine judges unlisted commands: one it cannot
        parse is an invalid turn.

    Rewards:
        The change in the game's normalised score (0-1; partial credit for subgoals).

    Episode end:
        Terminated on task success (``won``) or failure; truncated after ``max_turns`` (a per-game
        default) or when the JVM crashes (restarted for the next episode).

    Splits:
        ``train``/``dev``/``test`` are the engine's own seed folds (0-999, 10000-10999, 20000-20999) with
        the game's in-distribution settings; ``test_ood`` (games with size settings) plays the test
        seeds with harder settings (more rooms, ingredients, items or steps). See
        ``agentgym/tasks/textworld_express/games.json``.

    Arguments:
        game: ``"coin"``, ``"mapreader"``, ``"cookingworld"``, ``"twc"``, ``"simonsays"``,
            ``"arithmetic"``, ``"sorting"`` or ``"peckingorder"``.
        split: ``"train"``, ``"dev"``, ``"test"`` or (where it exists) ``"test_ood"``.
        max_turns: turn budget per episode.
        heap_mb: the JVM's heap cap (``AGENTGYM_JVM_HEAP_MB``, default 512).
        render_mode: ``"ansi"`` or ``"human"``.
    """

    admissible_is_complete = False

    @classmethod
    def turn_budget(cls, max_turns: int | None = None, *, game: str = "coin", **kwargs: Any) -> int:
        """``max_turns``, else the game's own budget (``games.json``)."""
        return int(max_turns or load_games()["games"][game]["max_turns"])

    def __init__(self, game: str = "coin", split: str = "train", *, max_turns: int | None = None,
                 heap_mb: int = DEFAULT_HEAP_MB, render_mode: str | None = None):
        games = load_games()["games"]
        if game not in games:
            raise ValueError(f"Unknown TextWorldExpress game {game!r}; the games are {', '.join(games)}.")
        self.game = game
        self.splits = ("train", "dev", "test", "test_ood") if games[game]["ood_settings"] else ("train", "dev", "test")
        super().__init__(split, max_turns=self.turn_budget(max_turns, game=game), render_mode=render_mode)
        self.engine = JavaEngine(JAR_PATH, "textworldexpress.runtime.PythonInterface", name="TextWorldExpress",
                                 heap_mb=heap_mb)
        self._loaded: tuple[int, str] | None = None  # (JVM start, settings) the engine has loaded
        self._score = 0.0
        self._gold: list[str] | None = None
        self._actions_taken: list[str] = []

    def load_tasks(self, split: str) -> list[Task]:
        return game_tasks(self.game, split)

    def _start(self, task: Task) -> Frame:
        payload = task.payload
        with self.engine.guard() as server:
            if self._loaded != (self.engine.starts, payload["settings"]):
                message = server.load(self.game, payload["settings"])
                if message:
                    raise ValueError(f"TextWorldExpress rejected the settings {payload['settings']!r}: {message}")
                self._loaded = (self.engine.starts, payload["settings"])
            # Generating the gold path costs nothing measurable (~7 ms a game either way); reading it back
            # costs a round trip per action, so that waits until the expert is asked.
            reply = json.loads(server.generateNewGameJSON(payload["seed"], payload["fold"], True))
            instruction = server.getTaskDescription()
        self._score, self._actions_taken, self._gold = 0.0, [], None
        frame = self._frame_of(reply)
        frame.info["instruction"] = instruction
        return frame

    def _act(self, action: str) -> Frame:
        with self.engine.guard() as server:
            reply = json.loads(server.stepJSON(action))
        self._actions_taken.append(action)  # rejected ones too: the gold path itself has some (cooking)
        if reply["observation"].startswith(_UNKNOWN):
            return self.invalid_frame(f"{reply['observation'].strip()} Nothing happened. Reply with one of the "
                                      "valid commands.")
        return self._frame_of(reply)

    def _frame_of(self, reply: dict) -> Frame:
        reward, self._score = reply["score"] - self._score, reply["score"]
        return Frame(
            text=tidy_text(reply["observation"]),
            admissible_actions=tuple(sorted(reply["validActions"])),
            state_key=state_key(reply["look"], reply["inventory"]),
            reward=float(reward),
            terminated=bool(reply["tasksuccess"] or reply["taskfailure"]),
            won=bool(reply["tasksuccess"]),
            info={"score": float(reply["score"])},
        )

    def expert_action(self) -> str | None:
        """The next action of the engine's gold path while the episode has followed it (else ``None``)."""
        if self.episode_over or self.task is None:
            return None
        if self._gold is None:
            with self.engine.guard() as server:
                self._gold = list(server.getGoldActionSequence())
        return walkthrough_action(self._gold, self._actions_taken)

    def close(self) -> None:
        self.engine.close()
        self._loaded = None
        super().close()
