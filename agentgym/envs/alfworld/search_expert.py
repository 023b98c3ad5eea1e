"""An ALFWorld expert that searches, as a player must: it knows only the task (the kinds of object and
receptacle the goal names) and what the episode has shown it, never where the objects lie.

The game's walkthrough walks straight to the object's receptacle, a step no policy can infer from its
observations: behaviour cloning it teaches a guess. This expert visits receptacles in the order of the
admissible ``go to`` commands — open surfaces first, then the kinds that open (a cabinet costs two turns) —
opening closed ones, until a target is in sight, takes it, cleans / heats / cools it at the named appliance,
and puts it in the goal receptacle (or, for light tasks, finds a lamp and switches it on). Every decision is
a function of the task, the admissible commands and past feedback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

# Task type → (verb, appliance) for the tasks that change the object on the way.
_CHANGES = {"pick_clean_then_place_in_recep": ("clean", "sinkbasin"),
            "pick_heat_then_place_in_recep": ("heat", "microwave"),
            "pick_cool_then_place_in_recep": ("cool", "fridge")}
_SEEN = re.compile(r"you see (.+?)\.(?:\s|$)")
_ITEM = re.compile(r"(?:^|,\s*|\band\s+)an?\s+([a-z]+ \d+)")


def seen_items(feedback: str) -> list[str]:
    """The names listed after "you see" in a feedback (``On the countertop 1, you see a apple 1, and a
    mug 2.`` → ``["apple 1", "mug 2"]``)."""
    return [name for listing in _SEEN.findall(feedback.lower()) for name in _ITEM.findall(listing)]


@cache
def openable_kinds() -> frozenset[str]:
    """ALFRED's receptacle kinds that open (a cabinet costs two turns to search), as the engine spells them."""
    from alfworld.gen import constants

    return frozenset(kind.lower() for kind in constants.OPENABLE_CLASS_SET)


@dataclass
class SearchingExpert:
    """The searching expert of one episode: :meth:`observe` each step's command and feedback, ask
    :meth:`next_action` for the next command.

    ``task_type`` is ALFWorld's (``pick_clean_then_place_in_recep``...); ``target``, ``goal`` and ``lamp``
    are the kinds the goal text names, lower-case as the engine spells them (``apple``, ``countertop``,
    ``desklamp``; ``goal`` empty for light tasks, ``lamp`` empty otherwise)."""

    task_type: str
    target: str
    goal: str = ""
    lamp: str = ""
    location: str = ""  # the receptacle the last ``go to`` reached
    held: str = ""
    changed: bool = False  # the held object has been cleaned / heated / cooled
    placed: set[str] = field(default_factory=set)
    visited: set[str] = field(default_factory=set)
    seen: dict[str, str] = field(default_factory=dict)  # object name → receptacle it was last seen in

    def observe(self, command: str, feedback: str) -> None:
        """Record an accepted command (``""`` for the first observation) and the engine's feedback."""
        verb, _, rest = command.partition(" ")
        if command.startswith("go to "):
            self.location = command.removeprefix("go to ")
            self.visited.add(self.location)
        elif verb == "take":
            self.held, self.changed = rest.split(" from ")[0], False
            self.seen.pop(self.held, None)
        elif verb in ("move", "put"):
            self.placed.add(self.held)
            self.held = ""
        elif self.held and verb in ("clean", "heat", "cool"):
            self.changed = True
        if self.location:
            for name in seen_items(feedback):
                self.seen[name] = self.location

    def next_action(self, admissible: list[str] | tuple[str, ...]) -> str:
        """The next command, always one of ``admissible``."""
        if self.held:
            change = _CHANGES.get(self.task_type)
            if change and not self.changed:
                verb, appliance = change
                return (self._first(admissible, f"{verb} {self.held} with {appliance} ")
                        or self._open_here(admissible, appliance) or self._go_to_kind(admissible, appliance))
            if self.lamp:
                return self._first(admissible, f"use {self.lamp} ") or self._search(admissible, self.lamp)
            return (self._first(admissible, f"move {self.held} to {self.goal} ")
                    or self._open_here(admissible, self.goal) or self._go_to_kind(admissible, self.goal))
        return self._search(admissible, self.target)

    def _search(self, admissible: list[str] | tuple[str, ...], kind: str) -> str:
        """Take (or, for a lamp, use) an object of ``kind`` in sight; else go where one was seen; else open
        the receptacle here; else go to the next receptacle not yet visited."""
        verb = "use" if kind == self.lamp else "take"
        here = [command for command in admissible if command.startswith(f"{verb} {kind} ")
                and command.split(" from ")[0].removeprefix(f"{verb} ") not in self.placed]
        if here:
            return here[0]
        known = [where for name, where in self.seen.items()
                 if name.rsplit(" ", 1)[0] == kind and name not in self.placed and where != self.location]
        if known and f"go to {known[0]}" in admissible:
            return f"go to {known[0]}"
        if self.location and f"open {self.location}" in admissible:
            return f"open {self.location}"
        places = sorted((command for command in admissible if command.startswith("go to ")),
                        key=lambda command: command.split()[2] in openable_kinds())  # stable: surfaces, then the rest
        unvisited = [command for command in places if command.removeprefix("go to ") not in self.visited]
        if not unvisited:  # searched everywhere (something moved or was missed): start the round again
            self.visited.clear()
            unvisited = [command for command in places if command.removeprefix("go to ") != self.location]
        return unvisited[0] if unvisited else "look"

    def _open_here(self, admissible: list[str] | tuple[str, ...], kind: str) -> str:
        here = self.location.rsplit(" ", 1)[0] == kind
        return f"open {self.location}" if here and f"open {self.location}" in admissible else ""

    def _go_to_kind(self, admissible: list[str] | tuple[str, ...], kind: str) -> str:
        places = [command for command in admissible if command.startswith(f"go to {kind} ")]
        elsewhere = [command for command in places if command.removeprefix("go to ") != self.location]
        return (elsewhere or places or ["look"])[0]

    @staticmethod
    def _first(admissible: list[str] | tuple[str, ...], prefix: str) -> str:
        return next((command for command in admissible if command.startswith(prefix)), "")
