"""A two-party negotiation with private values and a deal/no-deal outcome (after Lewis et al., 2017,
"Deal or No Deal?")."""

from __future__ import annotations

import itertools
import math
import re
from typing import Any

import numpy as np

from agentgym.contract import Task
from agentgym.envs.multiagent.base import IllegalMove, TextGame
from agentgym.multiagent import game_tasks

ITEMS = ("books", "hats", "balls")
TOTAL_VALUE = 10
SEED_RANGES = {"train": (0, 5000), "dev": (100_000, 100_200), "test": (200_000, 200_400), "test_ood": (300_000, 300_400)}
COUNTS = {"in_distribution": (1, 3), "test_ood": (3, 5)}
"""Items of each kind in the pool: 1-3, and 3-5 in ``test_ood`` (bigger pools, more possible splits)."""

_DIRECTIVE = re.compile(r"(propose\s*:?\s*books?\s*=\s*(\d+)\s*,?\s*hats?\s*=\s*(\d+)\s*,?\s*balls?\s*=\s*(\d+)"
                        r"|\baccept\b|\bwalk away\b)", re.IGNORECASE)


class Negotiation(TextGame):
    """Two agents split a pool of books, hats and balls; each values the items differently and knows
    only its own values.

    Description: ``alice`` and ``bob`` alternate. A move is an optional message to the partner followed
    by one directive: ``propose: books=B hats=H balls=L`` (the items the mover keeps; the partner gets
    the rest), ``accept`` (the partner's standing proposal) or ``walk away``. Observation: the pool, the
    agent's own values, the conversation so far, the proposal on the table and the moves left. Action:
    free text with exactly that directive at the end (no list; a reply without a valid directive is
    invalid). Rewards: on a deal, each agent's value of what it gets divided by the pool's value to it
    (0-1); no deal (walk-away, deadline or forfeit) gives both 0. ``won`` means a deal worth something.
    Episode end: accept, walk away, or the deadline of ``max_rounds`` moves. Splits: seeds draw the pool
    and the values; ``test_ood`` has bigger pools. Arguments: ``split``, ``max_rounds`` (8),
    ``max_invalid_moves``.
    """

    metadata = {**TextGame.metadata, "name": "negotiation"}
    possible_agents = ["alice", "bob"]

    def __init__(self, split: str = "train", *, max_rounds: int = 8, **kwargs: Any):
        self.max_rounds = max_rounds
        super().__init__(split, **kwargs)

    def load_tasks(self, split: str) -> list[Task]:
        return game_tasks(split, SEED_RANGES, "negotiation", "Agree on how to split the items.")

    def _new_game(self, task: Task) -> str:
        rng = np.random.default_rng(task.payload["seed"])
        low, high = COUNTS["test_ood" if self.split == "test_ood" else "in_distribution"]
        while True:  # pools whose counts share a factor that 10 lacks (3, 3, 3) cannot be worth exactly 10
            self.counts = dict(zip(ITEMS, (int(n) for n in rng.integers(low, high + 1, size=len(ITEMS)))))
            if TOTAL_VALUE % math.gcd(*self.counts.values()) == 0:
                break
        self.values = {agent: self._random_values(rng) for agent in self.possible_agents}
        self.transcript: list[str] = []
        self.offer: tuple[str, dict[str, int]] | None = None  # (proposer, items the proposer keeps)
        self.deal: dict[str, dict[str, int]] | None = None
        return self.possible_agents[int(rng.integers(2))]

    def _random_values(self, rng: np.random.Generator) -> dict[str, int]:
        """Non-negative integer values per item with the pool worth exactly TOTAL_VALUE."""
        while True:
            values = {item: int(v) for item, v in zip(ITEMS, rng.integers(0, TOTAL_VALUE + 1, size=len(ITEMS)))}
            if sum(values[item] * self.counts[item] for item in ITEMS) == TOTAL_VALUE:
                return values

    def _instruction(self, agent: str) -> str:
        return ("You are negotiating how to split a pool of items with a partner; each of you values the items "
                "differently and knows only your own values. End each reply with exactly one of: "
                "'propose: books=B hats=H balls=L' (the items you keep; your partner gets the rest), 'accept' "
                "(your partner's proposal) or 'walk away'. You may write a short message to your partner first. "
                f"Without a deal within {self.max_rounds} moves, both of you get nothing.")

    def _other(self, agent: str) -> str:
        return self.possible_agents[1 - self.possible_agents.index(agent)]

    def _view(self, agent: str) -> str:
        pool = ", ".join(f"{self.counts[item]} {item}" for item in ITEMS)
        values = ", ".join(f"{item} {self.values[agent][item]} each" for item in ITEMS)
        talk = "\n".join(self.transcript) if self.transcript else "(nothing said yet)"
        if self.deal is not None:
            mine = self.deal[agent]
            status = f"Deal: you get {self._items(mine)}, worth {self._value(agent, mine)} to you."
        elif self.offer is not None:
            proposer, kept = self.offer
            rest = {item: self.counts[item] - kept[item] for item in ITEMS}
            status = (f"On the table: {proposer} keeps {self._items(kept)}; "
                      f"{self._other(proposer)} gets {self._items(rest)}.")
        else:
            status = "No proposal on the table."
        left = self.max_rounds - len(self.transcript)
        return (f"Pool: {pool}. Your values: {values} (the whole pool is worth {TOTAL_VALUE} to you).\n"
                f"Conversation:\n{talk}\n{status} Moves left: {left}.")

    @staticmethod
    def _items(counts: dict[str, int]) -> str:
        return ", ".join(f"{counts[item]} {item}" for item in ITEMS)

    def _value(self, agent: str, counts: dict[str, int]) -> int:
        return sum(self.values[agent][item] * counts[item] for item in ITEMS)

    def _legal_moves(self, agent: str) -> tuple[str, ...]:
        return ()  # free text: a message plus a directive

    def _play(self, agent: str, move: str) -> tuple[str | None, str]:
        directives = list(_DIRECTIVE.finditer(move))
        if not directives:
            raise IllegalMove("end the reply with 'propose: books=B hats=H balls=L', 'accept' or 'walk away'.")
        last = directives[-1]
        message = move[: last.start()].strip()
        word = last.group(1).lower()
        said = f"{agent}: {message} " if message else f"{agent}: "
        if word == "accept":
            if self.offer is None or self.offer[0] == agent:
                raise IllegalMove("there is no proposal from your partner to accept.")
            proposer, kept = self.offer
            self.deal = {proposer: kept, agent: {item: self.counts[item] - kept[item] for item in ITEMS}}
            self.transcript.append(said + "[accepts]")
            return None, "You accepted."
        if word.startswith("walk"):
            self.transcript.append(said + "[walks away]")
            return None, "You walked away: no deal."
        kept = dict(zip(ITEMS, (int(last.group(i)) for i in (2, 3, 4))))
        if any(kept[item] > self.counts[item] for item in ITEMS):
            raise IllegalMove(f"you cannot keep more than the pool holds ({self._items(self.counts)}).")
        self.offer = (agent, kept)
        self.transcript.append(said + f"[proposes to keep {self._items(kept)}]")
        if len(self.transcript) >= self.max_rounds:
            return None, "That was the last move: no deal."
        return self._other(agent), "Proposal made."

    def _outcome(self) -> dict[str, float]:
        if self.deal is None:
            return dict.fromkeys(self.possible_agents, 0.0)
        return {agent: self._value(agent, self.deal[agent]) / TOTAL_VALUE for agent in self.possible_agents}

    def _forfeit_outcome(self, loser: str) -> dict[str, float]:
        return dict.fromkeys(self.possible_agents, 0.0)

    def expert_move(self, agent: str) -> str | None:
        """Accept an offer worth at least half the pool to me (any positive offer on the last move);
        otherwise propose to keep what I value most, conceding a little more each round."""
        if self.offer is not None and self.offer[0] != agent:
            mine = {item: self.counts[item] - self.offer[1][item] for item in ITEMS}
            worth = self._value(agent, mine)
            if worth * 2 >= TOTAL_VALUE or (len(self.transcript) >= self.max_rounds - 1 and worth > 0):
                return "accept"
        target = TOTAL_VALUE * (0.8 - 0.1 * (len(self.transcript) // 2))
        splits = itertools.product(*(range(self.counts[item] + 1) for item in ITEMS))
        candidates = [dict(zip(ITEMS, split)) for split in splits]
        # Keep enough value, give the partner as many items as possible (they likely value them).
        fair = [kept for kept in candidates if self._value(agent, kept) >= target
                and sum(kept.values()) < sum(self.counts.values())]
        kept = max(fair or candidates, key=lambda k: (-sum(k.values()), self._value(agent, k)))
        return "propose: " + " ".join(f"{item}={kept[item]}" for item in ITEMS)
