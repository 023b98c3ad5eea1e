"""What every agentgym multi-agent game shares: the AEC bookkeeping, text observations, invalid moves
as flagged turns, forfeits, tasks and splits. A game writes only its rules (the hooks of TextGame)."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from pettingzoo import AECEnv

from agentgym.contract import SPLITS, Task, UnicodeText, normalize_action, state_key, text_observation_space


class IllegalMove(ValueError):
    """Raised by :meth:`TextGame._play` when a free-text move breaks the rules; the message is the
    feedback the agent reads."""


class TextGame(AECEnv, abc.ABC):
    """A turn-based game for language agents on PettingZoo's AEC API.

    Observation (per agent, from ``observe``):
        ``text`` — the agent's view of the game now, with feedback on its last move;
        ``admissible_actions`` — the legal moves when the game can list them (empty for free-text
        moves); ``state_key`` — a hash of the agent's view without feedback.

    Action:
        Text. A move that is not legal (or not a string) is an invalid turn: nothing changes, the same
        agent moves again, ``infos[agent]["invalid_action"]`` is set and the feedback says why. After
        ``max_invalid_moves`` invalid moves in a row the agent forfeits.

    Rewards:
        Given when the game ends, to every agent (see each game); 0 before.

    Episode end:
        Every agent is terminated when the game ends (``infos[agent]["won"]`` for winners), or
        truncated after ``max_moves`` moves in total.

    Infos (per agent):
        ``task_id``, ``split``, ``invalid_action``, ``turn`` (moves so far), ``instruction`` (the
        agent's role and the rules), ``won``.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "name": "text_game", "is_parallelizable": False}
    splits: ClassVar[tuple[str, ...]] = SPLITS
    default_max_moves: ClassVar[int] = 50

    def __init__(self, split: str = "train", *, max_invalid_moves: int = 3, max_moves: int | None = None,
                 render_mode: str | None = None):
        super().__init__()
        if split not in self.splits:
            raise ValueError(f"Unknown split {split!r}; this game has the splits {', '.join(self.splits)}.")
        self.split, self.render_mode = split, render_mode
        self.max_invalid_moves, self.max_moves = max_invalid_moves, max_moves or self.default_max_moves
        self.agents: list[str] = []
        self._spaces = (text_observation_space(), UnicodeText())
        self._tasks: dict[str, Task] | None = None
        self.task: Task | None = None
        self.np_random = np.random.default_rng()

    # ------------------------------------------------------------------ game hooks
    @abc.abstractmethod
    def load_tasks(self, split: str) -> Sequence[Task]:
        """All tasks of ``split``, disjoint from the other splits."""

    @abc.abstractmethod
    def _new_game(self, task: Task) -> str:
        """Set up ``task``'s game and return the agent who moves first."""

    @abc.abstractmethod
    def _instruction(self, agent: str) -> str:
        """The agent's role and the rules, shown with every prompt."""

    @abc.abstractmethod
    def _view(self, agent: str) -> str:
        """What ``agent`` sees of the game now."""

    @abc.abstractmethod
    def _legal_moves(self, agent: str) -> tuple[str, ...]:
        """The legal moves of ``agent`` now; empty when moves are free text (then :meth:`_play` judges)."""

    @abc.abstractmethod
    def _play(self, agent: str, move: str) -> tuple[str | None, str]:
        """Apply a move; return who moves next (``None`` when the game is over) and feedback for the
        mover. Raise :class:`IllegalMove` for a free-text move that breaks the rules."""

    @abc.abstractmethod
    def _outcome(self) -> dict[str, float]:
        """Each agent's reward once the game is over."""

    def _forfeit_outcome(self, loser: str) -> dict[str, float]:
        """Rewards when ``loser`` forfeits: -1 for it, +1 for the others (override for cooperative games)."""
        return {agent: (-1.0 if agent == loser else 1.0) for agent in self.possible_agents}

    def expert_move(self, agent: str) -> str | None:
        """A scripted player's move for ``agent`` now (``None`` where the game has none)."""
        return None

    # ------------------------------------------------------------------ tasks
    @property
    def tasks(self) -> tuple[Task, ...]:
        if self._tasks is None:
            self._tasks = {task.id: task for task in self.load_tasks(self.split)}
        return tuple(self._tasks.values())

    def get_task(self, task_id: str) -> Task:
        self.tasks  # noqa: B018 - builds the index
        if task_id not in self._tasks:
            raise ValueError(f"Task {task_id!r} is not in split {self.split!r} ({len(self._tasks)} tasks).")
        return self._tasks[task_id]

    # ------------------------------------------------------------------ PettingZoo AEC API
    def observation_space(self, agent: str):
        return self._spaces[0]

    def action_space(self, agent: str):
        return self._spaces[1]

    def reset(self, seed: int | None = None, options: dict | None = None) -> None:
        if seed is not None:
            self.np_random = np.random.default_rng(seed)
        options = options or {}
        tasks = self.tasks
        self.task = self.get_task(options["task_id"]) if options.get("task_id") else \
            tasks[int(self.np_random.integers(len(tasks)))]
        self.agents = list(self.possible_agents)
        self.rewards = dict.fromkeys(self.agents, 0.0)
        self._cumulative_rewards = dict.fromkeys(self.agents, 0.0)
        self.terminations = dict.fromkeys(self.agents, False)
        self.truncations = dict.fromkeys(self.agents, False)
        self._feedback = dict.fromkeys(self.agents, "")
        self._invalid_streak = dict.fromkeys(self.agents, 0)
        self._moves = 0
        self._won: set[str] = set()
        self.agent_selection = self._new_game(self.task)
        self.infos = {agent: self._info(agent, invalid=False) for agent in self.agents}

    def observe(self, agent: str) -> dict[str, Any]:
        view = self._view(agent)
        feedback = self._feedback.get(agent, "")
        return {
            "text": f"{feedback}\n\n{view}" if feedback else view,
            "admissible_actions": self._legal_moves(agent) if self._live(agent) else (),
            "state_key": state_key(agent, view),
        }

    def step(self, action: Any) -> None:
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            return
        self._cumulative_rewards[agent] = 0.0
        self.rewards = dict.fromkeys(self.agents, 0.0)
        move, feedback = self._admit(agent, action)
        next_agent: str | None = agent
        if move is not None:
            try:
                next_agent, feedback = self._play(agent, move)
            except IllegalMove as illegal:
                move, feedback = None, f"Invalid move: {illegal} Nothing happened; move again."
        self._feedback[agent] = feedback
        if move is None:
            self._invalid_streak[agent] += 1
            if self._invalid_streak[agent] >= self.max_invalid_moves:
                self._feedback[agent] += f" That was {self.max_invalid_moves} invalid moves in a row: you forfeit."
                self._end(self._forfeit_outcome(agent))
        else:
            self._invalid_streak[agent] = 0
            self._moves += 1
            if next_agent is None:
                self._end(self._outcome())
            elif self._moves >= self.max_moves:
                self.truncations = dict.fromkeys(self.agents, True)
            else:
                self.agent_selection = next_agent
        self.infos = {other: self._info(other, invalid=move is None and other == agent) for other in self.agents}
        self._accumulate_rewards()
        if self.render_mode == "ansi":
            print(self.render())

    def render(self) -> str | None:
        if self.render_mode is None or not self.agents:
            return None
        return "\n".join(f"[{agent}] {self._view(agent)}" for agent in self.agents)

    def close(self) -> None:
        pass

    # ------------------------------------------------------------------ internals
    def _live(self, agent: str) -> bool:
        return agent in self.agents and not (self.terminations[agent] or self.truncations[agent])

    def _admit(self, agent: str, action: Any) -> tuple[str | None, str]:
        if not isinstance(action, str) or not action.strip():
            return None, "Invalid move: the reply was empty or not text. Nothing happened; move again."
        legal = self._legal_moves(agent)
        if not legal:
            return action.strip(), ""
        wanted = normalize_action(action)
        for move in legal:
            if normalize_action(move) == wanted:
                return move, ""
        shown = action.strip() if len(action.strip()) <= 60 else action.strip()[:57] + "..."
        return None, f"Invalid move: {shown!r} is not a legal move. Nothing happened; reply with one of the legal moves."

    def _end(self, outcome: dict[str, float]) -> None:
        self.rewards = {agent: float(outcome.get(agent, 0.0)) for agent in self.agents}
        self._won = {agent for agent, reward in outcome.items() if reward > 0}
        self.terminations = dict.fromkeys(self.agents, True)

    def _info(self, agent: str, *, invalid: bool) -> dict[str, Any]:
        return {"task_id": self.task.id, "split": self.split, "invalid_action": invalid, "turn": self._moves,
                "instruction": self._instruction(agent),
                "won": self.terminations.get(agent, False) and agent in self._won}
