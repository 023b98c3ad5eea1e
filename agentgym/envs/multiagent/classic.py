"""PettingZoo's classic board games (tic-tac-toe, connect four) rendered as text for language agents.

The rules, move legality and results are PettingZoo's own engines; this module only names the moves,
draws the board and plays a scripted opponent.
"""

from __future__ import annotations

import abc
import importlib
from typing import Any, ClassVar

import numpy as np

from agentgym.contract import Task
from agentgym.envs.multiagent.base import TextGame
from agentgym.multiagent import game_tasks

SEED_RANGES = {"train": (0, 2000), "dev": (100_000, 100_100), "test": (200_000, 200_200)}


class ClassicBoardGame(TextGame):
    """Base of the grid games: a PettingZoo classic env inside, its board drawn from the mover's planes.

    Tasks are seeds: a seed picks the opening (``opening_moves`` random legal moves already played), so
    train, dev and test positions differ.
    """

    splits = ("train", "dev", "test")
    engine_module: ClassVar[str]
    opening_moves: ClassVar[int] = 1
    marks: ClassVar[tuple[str, str]] = ("X", "O")

    def __init__(self, split: str = "train", **kwargs: Any):
        self.engine = importlib.import_module(self.engine_module).env()
        self.possible_agents = list(self.engine.possible_agents)
        super().__init__(split, **kwargs)

    def load_tasks(self, split: str) -> list[Task]:
        return game_tasks(split, SEED_RANGES, self.metadata["name"], self.rules)

    def _new_game(self, task: Task) -> str:
        self.engine.reset(seed=task.payload["seed"])
        self._history: list[str] = []
        opening = np.random.default_rng(task.payload["seed"])
        for _ in range(self.opening_moves):
            legal = self._legal_indices()
            self._engine_step(int(opening.choice(legal)))
        return self.engine.agent_selection

    def _engine_step(self, index: int) -> None:
        mover = self.engine.agent_selection
        self._history.append(f"{self._mark(mover)} played {self.move_name(index)}")
        self.engine.step(index)

    def _legal_indices(self) -> list[int]:
        mask = self.engine.observe(self.engine.agent_selection)["action_mask"]
        return [int(i) for i in np.flatnonzero(mask)]

    def _mark(self, agent: str) -> str:
        return self.marks[self.possible_agents.index(agent)]

    def _instruction(self, agent: str) -> str:
        return f"{self.rules} You play {self._mark(agent)}; your opponent plays {self._mark(self._other(agent))}."

    def _other(self, agent: str) -> str:
        return self.possible_agents[1 - self.possible_agents.index(agent)]

    def _view(self, agent: str) -> str:
        planes = self.engine.observe(agent)["observation"]
        mine, theirs = self._mark(agent), self._mark(self._other(agent))
        grid = np.where(planes[:, :, 0] == 1, mine, np.where(planes[:, :, 1] == 1, theirs, "."))
        last = f"Last move: {self._history[-1]}.\n" if self._history else ""
        if all(self.engine.terminations.values()):
            result = self.engine.rewards.get(agent, 0)
            turn = "Game over: " + ("you won." if result > 0 else "you lost." if result < 0 else "a draw.")
        else:
            turn = "It is your move." if self.engine.agent_selection == agent else "Waiting for your opponent."
        return f"{last}{self.draw(grid)}\n{turn}"

    def _legal_moves(self, agent: str) -> tuple[str, ...]:
        if self.engine.agent_selection != agent or not self.engine.agents:
            return ()
        return tuple(self.move_name(index) for index in self._legal_indices())

    def _play(self, agent: str, move: str) -> tuple[str | None, str]:
        self._engine_step(self.move_index(move))
        if all(self.engine.terminations.values()) or all(self.engine.truncations.values()):
            return None, f"You played {move}."
        return self.engine.agent_selection, f"You played {move}."

    def _outcome(self) -> dict[str, float]:
        return {agent: float(self.engine.rewards.get(agent, 0.0)) for agent in self.possible_agents}

    def expert_move(self, agent: str) -> str | None:
        """Win now if possible, else block the opponent's immediate win, else the most central move."""
        legal = self._legal_moves(agent)
        if not legal:
            return None
        for player in (agent, self._other(agent)):
            for move in legal:
                if self.wins_after(player, self.move_index(move)):
                    return move
        return min(legal, key=lambda move: (self.centrality(self.move_index(move)), move))

    def close(self) -> None:
        self.engine.close()

    # Per game: how moves are named, how the board is drawn, what the scripted player looks for.
    rules: ClassVar[str]

    @abc.abstractmethod
    def move_name(self, index: int) -> str: ...

    @abc.abstractmethod
    def move_index(self, move: str) -> int: ...

    @abc.abstractmethod
    def draw(self, grid: np.ndarray) -> str: ...

    @abc.abstractmethod
    def wins_after(self, player: str, index: int) -> bool:
        """Whether ``player`` would have a line after playing ``index``."""

    @abc.abstractmethod
    def centrality(self, index: int) -> float:
        """Distance from the centre (the scripted player prefers central moves)."""


def has_line(cells: np.ndarray, length: int) -> bool:
    """Whether a boolean grid has ``length`` in a row horizontally, vertically or diagonally."""
    rows, cols = cells.shape
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        for r in range(rows):
            for c in range(cols):
                end_r, end_c = r + dr * (length - 1), c + dc * (length - 1)
                if 0 <= end_r < rows and 0 <= end_c < cols and all(
                        cells[r + dr * k, c + dc * k] for k in range(length)):
                    return True
    return False


class TicTacToe(ClassicBoardGame):
    """Tic-tac-toe on PettingZoo's ``tictactoe_v3``, moves named by cell (``b2`` is the centre).

    Description: two agents take turns placing their mark; three in a row wins. Observation: the
    board with column letters a-c and row numbers 1-3, the last move and whose turn it is. Action: a
    free cell such as ``a1`` (listed). Rewards: +1 win, -1 loss, 0 draw. Episode end: a line, a full
    board or a forfeit after 3 invalid moves. Splits: seeds (train/dev/test) choose a random first
    move already on the board. Arguments: ``split``, ``max_invalid_moves``.
    """

    metadata = {**TextGame.metadata, "name": "tictactoe"}
    engine_module = "pettingzoo.classic.tictactoe_v3"
    rules = ("Tic-tac-toe: players take turns marking a free cell of a 3x3 grid; three marks in a row, "
             "column or diagonal win. Reply with a free cell, e.g. b2.")

    def move_name(self, index: int) -> str:
        return f"{'abc'[index % 3]}{index // 3 + 1}"

    def move_index(self, move: str) -> int:
        return (int(move[1]) - 1) * 3 + "abc".index(move[0])

    def draw(self, grid: np.ndarray) -> str:
        return "\n".join(["   a b c"] + [f"{row + 1}  " + " ".join(grid[row]) for row in range(3)])

    def wins_after(self, player: str, index: int) -> bool:
        cells = self.engine.observe(player)["observation"][:, :, 0].astype(bool).copy()
        cells[index // 3, index % 3] = True
        return has_line(cells, 3)

    def centrality(self, index: int) -> float:
        return abs(index // 3 - 1) + abs(index % 3 - 1)


class ConnectFour(ClassicBoardGame):
    """Connect four on PettingZoo's ``connect_four_v3``, moves named by column (``column 4``).

    Description: agents drop discs into a 6x7 grid; four in a row wins. Observation: the grid (top row
    first), the last move and whose turn it is. Action: a column that is not full, ``column 1`` to
    ``column 7`` (listed). Rewards: +1 win, -1 loss, 0 draw. Episode end: four in a row, a full grid or
    a forfeit. Splits: seeds choose two random opening discs. Arguments: ``split``, ``max_invalid_moves``.
    """

    metadata = {**TextGame.metadata, "name": "connect_four"}
    engine_module = "pettingzoo.classic.connect_four_v3"
    opening_moves = 2
    rules = ("Connect four: players take turns dropping a disc into one of 7 columns of a 6-row grid; it "
             "falls to the lowest free cell. Four discs in a row, column or diagonal win. Reply with a "
             "column, e.g. column 4.")

    def move_name(self, index: int) -> str:
        return f"column {index + 1}"

    def move_index(self, move: str) -> int:
        return int(move.split()[-1]) - 1

    def draw(self, grid: np.ndarray) -> str:
        return "\n".join([" ".join(str(c + 1) for c in range(7))] + [" ".join(row) for row in grid])

    def wins_after(self, player: str, index: int) -> bool:
        planes = self.engine.observe(player)["observation"]
        cells = planes[:, :, 0].astype(bool).copy()
        free = np.flatnonzero((planes[:, index, 0] + planes[:, index, 1]) == 0)
        if not len(free):
            return False
        cells[free[-1], index] = True
        return has_line(cells, 4)

    def centrality(self, index: int) -> float:
        return abs(index - 3)
