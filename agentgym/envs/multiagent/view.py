"""One seat of a multi-agent game as an ordinary single-agent agentgym env."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from agentgym.contract import Frame, Task, TextEnv
from agentgym.envs.multiagent.base import TextGame


class SeatView(TextEnv):
    """A seat of a :class:`TextGame` whose other seats are played by fixed opponents, so every
    single-agent trainer and evaluator works on multi-agent games unchanged.

    Description:
        The learner plays ``seat`` (default: whoever moves first); after each of its moves the
        opponents move until it is the learner's turn again or the game ends.

    Observation:
        The learner's view of the game (the game's ``observe``), with its legal moves where the game
        lists them.

    Action:
        The learner's move; an illegal one is an invalid turn (the game does not move).

    Rewards:
        What the game gives the learner's seat (at the end: +1/-1/0 for board games, 0-1 for
        cooperative and negotiation games).

    Episode end:
        Terminated when the game ends (``won`` as the game reports it); truncated after ``max_turns``
        of the learner's turns.

    Splits:
        The game's own.

    Arguments:
        game: the game class, ``"module:Class"``.
        split: a split of the game.
        seat: the learner's agent id (default: the first mover).
        opponents: ``"random"`` (a uniformly random legal move, seeded by the reset seed) or
            ``"expert"`` (the game's scripted player).
        game_kwargs: passed to the game.
        max_turns: the learner's turn budget.
    """

    def __init__(self, game: str, split: str = "train", *, seat: str | None = None, opponents: str = "random",
                 game_kwargs: dict[str, Any] | None = None, max_turns: int | None = None,
                 render_mode: str | None = None):
        module_name, _, class_name = game.partition(":")
        self.game: TextGame = getattr(importlib.import_module(module_name), class_name)(split=split,
                                                                                         **(game_kwargs or {}))
        if opponents not in ("random", "expert"):
            raise ValueError(f"opponents must be 'random' or 'expert', not {opponents!r}.")
        if seat is not None and seat not in self.game.possible_agents:
            raise ValueError(f"seat {seat!r} is not an agent of this game ({self.game.possible_agents}).")
        self.splits = self.game.splits
        super().__init__(split, max_turns=max_turns, render_mode=render_mode)
        self.seat, self.opponents = seat, opponents
        self._learner: str | None = None
        self._opponent_rng = np.random.default_rng(0)

    def load_tasks(self, split: str) -> list[Task]:
        return list(self.game.load_tasks(split))

    def _start(self, task: Task) -> Frame:
        self._opponent_rng = np.random.default_rng(int(self.np_random.integers(2**32)))
        self.game.reset(options={"task_id": task.id})
        self._learner = self.seat or self.game.agent_selection
        reward = self._play_opponents()
        frame = self._learner_frame(reward)
        frame.info["instruction"] = self.game.infos[self._learner]["instruction"]
        return frame

    def _act(self, action: str) -> Frame:
        self.game.step(action)
        if self.game.infos[self._learner]["invalid_action"] and self._learner in self.game.agents \
                and not self.game.terminations[self._learner]:
            return Frame(text=self.game.observe(self._learner)["text"], invalid=True,
                         admissible_actions=self.game.observe(self._learner)["admissible_actions"])
        reward = float(self.game.rewards.get(self._learner, 0.0)) + self._play_opponents()
        return self._learner_frame(reward)

    def _play_opponents(self) -> float:
        """Let the other seats move until the learner's turn or the end; the learner's reward meanwhile."""
        reward = 0.0
        while self._game_on() and self.game.agent_selection != self._learner:
            agent = self.game.agent_selection
            if self.opponents == "expert":
                move = self.game.expert_move(agent)
            else:
                legal = self.game.observe(agent)["admissible_actions"]
                move = str(self._opponent_rng.choice(legal)) if legal else self.game.expert_move(agent)
            self.game.step(move)
            reward += float(self.game.rewards.get(self._learner, 0.0))
        return reward

    def _game_on(self) -> bool:
        return not (self.game.terminations[self._learner] or self.game.truncations[self._learner])

    def _learner_frame(self, reward: float) -> Frame:
        observation = self.game.observe(self._learner)
        over = not self._game_on()
        return Frame(text=observation["text"], admissible_actions=observation["admissible_actions"],
                     state_key=observation["state_key"], reward=reward, terminated=over,
                     won=over and bool(self.game.infos[self._learner]["won"]))

    def expert_action(self) -> str | None:
        return self.game.expert_move(self._learner) if self._learner and self._game_on() else None

    def close(self) -> None:
        self.game.close()
        super().close()
