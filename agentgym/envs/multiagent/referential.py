"""A cooperative referential game: a speaker names one of several objects in a few words, a listener
picks it out."""

from __future__ import annotations

import itertools
import re
from typing import Any

import numpy as np

from agentgym.contract import Task
from agentgym.envs.multiagent.base import IllegalMove, TextGame
from agentgym.multiagent import game_tasks

ATTRIBUTES = {
    "size": ("small", "large"),
    "color": ("red", "blue", "green", "yellow", "purple", "orange"),
    "pattern": ("plain", "striped", "dotted"),
    "shape": ("circle", "square", "triangle", "star", "heart"),
}
HELD_OUT = {"color": ("teal", "maroon"), "shape": ("hexagon", "crescent")}
"""Colours and shapes that only ``test_ood`` uses: the target always has one of them."""

_WORD = re.compile(r"[^\W\d_][\w'-]*")
SEED_RANGES = {"train": (0, 5000), "dev": (100_000, 100_200), "test": (200_000, 200_400), "test_ood": (300_000, 300_400)}


def describe(item: dict[str, str]) -> str:
    return " ".join(item[attribute] for attribute in ATTRIBUTES)


def shortest_description(target: dict[str, str], others: list[dict[str, str]], max_words: int) -> str | None:
    """The fewest attribute words of ``target`` that no other object matches (``None`` if it takes more
    than ``max_words``)."""
    for size in range(1, max_words + 1):
        for names in itertools.combinations(ATTRIBUTES, size):
            if all(any(other[name] != target[name] for name in names) for other in others):
                return " ".join(target[name] for name in names)
    return None


class ReferentialGame(TextGame):
    """Speaker and listener see the same objects; only the speaker knows which one is the target.

    Description: a cooperative two-agent game. The ``speaker`` sees the candidates and the target and
    sends one message of at most ``max_words`` words; the ``listener`` sees the candidates in its own
    order and the message, and picks a number. Observation: the candidates (numbered for the listener),
    the target (speaker only), the message (listener). Action: speaker — free text within the word
    limit (longer messages are invalid); listener — a candidate number (listed). Rewards: 1 to both if
    the listener picks the target, else 0 (also on a forfeit). Episode end: after the listener's pick.
    Splits: seeds draw the candidates; ``test_ood`` targets have held-out colours or shapes.
    Arguments: ``split``, ``candidates`` (4), ``max_words`` (2), ``max_invalid_moves``.
    """

    metadata = {**TextGame.metadata, "name": "referential_game"}
    possible_agents = ["speaker", "listener"]

    def __init__(self, split: str = "train", *, candidates: int = 4, max_words: int = 2, **kwargs: Any):
        self.num_candidates, self.max_words = candidates, max_words
        super().__init__(split, **kwargs)

    def load_tasks(self, split: str) -> list[Task]:
        return game_tasks(split, SEED_RANGES, "referential", "Name the target object in a few words.")

    def _new_game(self, task: Task) -> str:
        rng = np.random.default_rng(task.payload["seed"])
        values = {name: list(options) for name, options in ATTRIBUTES.items()}
        if self.split == "test_ood":
            held = str(rng.choice(sorted(HELD_OUT)))
            values[held] = list(HELD_OUT[held])
        target = {name: str(rng.choice(options)) for name, options in values.items()}
        others: list[dict[str, str]] = []
        while len(others) < self.num_candidates - 1:
            # Distractors share attributes with the target so that one word rarely suffices, but the
            # target stays nameable within the word limit.
            item = {name: (target[name] if rng.random() < 0.5 else str(rng.choice(ATTRIBUTES[name])))
                    for name in ATTRIBUTES}
            if item != target and item not in others and shortest_description(target, [*others, item],
                                                                               self.max_words):
                others.append(item)
        self.items = [target, *others]
        self.speaker_order = list(rng.permutation(len(self.items)))
        self.listener_order = list(rng.permutation(len(self.items)))
        self.message: str | None = None
        self.pick: int | None = None
        return "speaker"

    def _instruction(self, agent: str) -> str:
        if agent == "speaker":
            return (f"You are the speaker in a cooperative game. Describe the target object in at most "
                    f"{self.max_words} words so that your partner, who sees the same objects in another order, "
                    "can pick it. Both of you score only if they pick the target.")
        return ("You are the listener in a cooperative game. Your partner described one of the objects; reply "
                "with the number of the object they mean.")

    def _view(self, agent: str) -> str:
        if agent == "speaker":
            listing = "\n".join(f"- {describe(self.items[i])}" for i in self.speaker_order)
            said = f"\nYou said: {self.message!r}" if self.message is not None else ""
            return f"Objects:\n{listing}\nThe target is the {describe(self.items[0])}.{said}"
        listing = "\n".join(f"{n}. {describe(self.items[i])}" for n, i in enumerate(self.listener_order, start=1))
        said = f"Your partner says: {self.message!r}" if self.message is not None else "Your partner is thinking."
        return f"Objects:\n{listing}\n{said}"

    def _legal_moves(self, agent: str) -> tuple[str, ...]:
        if agent == "listener" and self.message is not None and self.pick is None:
            return tuple(str(n) for n in range(1, len(self.items) + 1))
        return ()

    def _play(self, agent: str, move: str) -> tuple[str | None, str]:
        if agent == "speaker":
            words = move.split()
            if len(words) > self.max_words:
                raise IllegalMove(f"the message has {len(words)} words; the limit is {self.max_words}.")
            if not all(_WORD.fullmatch(word) for word in words):
                raise IllegalMove("the message must be words made of letters.")
            self.message = " ".join(words)
            return "listener", "Message sent."
        self.pick = self.listener_order[int(move) - 1]
        return None, f"You picked {describe(self.items[self.pick])}."

    def _outcome(self) -> dict[str, float]:
        score = float(self.pick == 0)
        return dict.fromkeys(self.possible_agents, score)

    def _forfeit_outcome(self, loser: str) -> dict[str, float]:
        return dict.fromkeys(self.possible_agents, 0.0)

    def expert_move(self, agent: str) -> str | None:
        """Speaker: the fewest attribute words no distractor matches. Listener: the first object whose
        description contains every word of the message."""
        if agent == "speaker" and self.message is None:
            return shortest_description(self.items[0], self.items[1:], self.max_words)
        if agent == "listener" and self.message is not None:
            words = set(self.message.lower().split())
            for number, index in enumerate(self.listener_order, start=1):
                if words <= set(describe(self.items[index]).split()):
                    return str(number)
            return "1"
        return None
