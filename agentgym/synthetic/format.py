"""The experience model's text interface: the prompts it reads and the outputs it must write, parsed
strictly (docs/algorithms.md §5.1).

A transition's outcome is written in the family's own text form, the state as the env shows it:

    Reasoning: one short sentence            (only when rationales are on)
    Next state:
    <the text the environment shows after the action>
    Actions: go north | inventory | look     (the admissible actions, or "(none)")
    Reward: 0
    Done: no

and an action the environment rejects as the single line ``Invalid: <feedback>``. Anything else is
malformed: :func:`parse_outcome` raises :class:`MalformedOutput` with the reason, and the caller retries.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Sequence

NO_ACTIONS = "(none)"
MAX_ACTIONS = 200  # more listed actions than any family has: the model is looping

SYSTEM = (
    "You simulate the environment of a text-based agent task. Given the task, real example transitions, the "
    "recent history, the current state and the agent's action, write what the environment shows next, exactly "
    "in this format:\n"
    "{reasoning}Next state:\n<the text the environment shows after the action>\n"
    "Actions: <the admissible actions separated by ' | ', or (none)>\n"
    "Reward: <a number from 0 to 1>\n"
    "Done: <yes or no>\n"
    "If the environment rejects the action, write only one line: Invalid: <the environment's feedback>"
)
REASONING_LINE = "Reasoning: <one short sentence on what the action does>\n"

INITIAL_SYSTEM = (
    "You simulate the environment of a text-based agent task. Given the task, write the first state the "
    "environment shows, exactly in this format:\nState:\n<the text the environment shows>\n"
    "Actions: <the admissible actions separated by ' | ', or (none)>"
)

TASK_SYSTEM = (
    "You write new tasks for a text-based agent environment. Given example tasks of the environment and one "
    "task to vary, write one new task of the same kind that differs from all of them, on one line, exactly in "
    "this format:\nTask: <the new task>"
)


class MalformedOutput(ValueError):
    """The experience model's output does not follow the format; the message says how."""


@dataclass(frozen=True)
class Outcome:
    """A parsed transition outcome. ``reward`` is clipped to [0, 1]; ``raw_reward`` is what the model wrote."""

    next_state: str
    actions: tuple[str, ...]
    reward: float
    done: bool
    invalid: bool = False
    rationale: str = ""
    raw_reward: float = 0.0


@dataclass(frozen=True)
class Example:
    """A transition as the experience model reads it in its context (a retrieved demonstration)."""

    state: str
    action: str
    outcome: Outcome


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marking the cut."""
    text = text.strip()
    return text if len(text) <= limit else text[: max(0, limit - 5)].rstrip() + " [...]"


def headline(text: str, limit: int = 80) -> str:
    """The first non-empty line of a state, cut to ``limit``: what a history entry shows of it."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return clip(first, limit)


def actions_line(actions: Sequence[str]) -> str:
    return "Actions: " + (" | ".join(actions) if actions else NO_ACTIONS)


def render_outcome(outcome: Outcome, *, with_rationale: bool = False) -> str:
    """The text the experience model writes for ``outcome`` (a training target, or a demonstration's)."""
    lines = [f"Reasoning: {' '.join(outcome.rationale.split())}"] if with_rationale and outcome.rationale else []
    if outcome.invalid:
        return "\n".join(lines + [f"Invalid: {' '.join(outcome.next_state.split())}"])
    return "\n".join(lines + ["Next state:", outcome.next_state.strip(), actions_line(outcome.actions),
                              f"Reward: {outcome.reward:g}", f"Done: {'yes' if outcome.done else 'no'}"])


def render_transition_prompt(*, instruction: str, history: Sequence[tuple[str, str]], state: str,
                             actions: Sequence[str], action: str, demos: Sequence[Example],
                             state_chars: int, demo_chars: int, with_rationale: bool = False) -> list[dict[str, str]]:
    """The chat prompt for one step: the task, ``demos`` (retrieved real transitions), the recent
    ``history`` as (action, headline of what followed) pairs, the current state and the action."""
    parts = [f"Task: {' '.join(instruction.split())}"]
    if demos:
        shown = []
        for number, demo in enumerate(demos, 1):
            shown_outcome = replace(demo.outcome, next_state=clip(demo.outcome.next_state, demo_chars))
            shown.append(f"[{number}] State:\n{clip(demo.state, demo_chars)}\nAction: {demo.action}\n"
                         f"{render_outcome(shown_outcome)}")
        parts.append("Examples of real transitions:\n" + "\n\n".join(shown))
    if history:
        parts.append("Recent history:\n" + "\n".join(f"> {a} -> {h}" for a, h in history))
    parts.append(f"Current state:\n{clip(state, state_chars)}\n{actions_line(actions)}")
    parts.append(f"Action: {action}")
    system = SYSTEM.format(reasoning=REASONING_LINE if with_rationale else "")
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(parts)}]


def render_initial_prompt(instruction: str, demos: Sequence[tuple[str, str, Sequence[str]]],
                          demo_chars: int) -> list[dict[str, str]]:
    """The chat prompt for a first state: ``demos`` are (instruction, first state, actions) of real tasks."""
    parts = [f"Example:\nTask: {' '.join(task.split())}\n{render_initial(clip(state, demo_chars), actions)}"
             for task, state, actions in demos]
    parts.append(f"Task: {' '.join(instruction.split())}")
    return [{"role": "system", "content": INITIAL_SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


def render_initial(state: str, actions: Sequence[str]) -> str:
    return f"State:\n{state.strip()}\n{actions_line(actions)}"


def render_task_prompt(seed_instruction: str, examples: Sequence[str]) -> list[dict[str, str]]:
    """The chat prompt that asks for a variation of ``seed_instruction``."""
    listed = "\n".join(f"- {' '.join(task.split())}" for task in examples)
    content = f"Example tasks:\n{listed}\n\nTask to vary:\n{' '.join(seed_instruction.split())}"
    return [{"role": "system", "content": TASK_SYSTEM}, {"role": "user", "content": content}]


_REASONING = r"(?:Reasoning:(?P<rationale>[^\n]*)\n)?"
_OUTCOME = re.compile(_REASONING + r"Next state:[ \t]*\n(?P<state>.*?)\nActions:(?P<actions>[^\n]*)\n"
                      r"Reward:[ \t]*(?P<reward>[^\n]*?)[ \t]*\nDone:[ \t]*(?P<done>yes|no)\b", re.DOTALL)
_INVALID = re.compile(_REASONING + r"Invalid:[ \t]*(?P<feedback>[^\n]*\S)")
_INITIAL = re.compile(r"State:[ \t]*\n(?P<state>.*?)\nActions:(?P<actions>[^\n]*)(?:\n|$)", re.DOTALL)
_TASK = re.compile(r"Task:[ \t]*(?P<task>[^\n]*\S)")


def _actions(text: str, lists_actions: bool) -> tuple[str, ...]:
    text = text.strip()
    if text == NO_ACTIONS or not text:
        listed: list[str] = []
    else:
        listed = list(dict.fromkeys(a.strip() for a in text.split("|") if a.strip()))
    if lists_actions and not listed:
        raise MalformedOutput("no admissible actions, but this environment lists them in every state")
    if len(listed) > MAX_ACTIONS:
        raise MalformedOutput(f"{len(listed)} admissible actions (more than {MAX_ACTIONS})")
    return tuple(listed)


def _state(text: str) -> str:
    state = text.strip()
    if not state:
        raise MalformedOutput("the next state is empty")
    return state


def parse_outcome(text: str, *, lists_actions: bool) -> Outcome:
    """The outcome in a model's reply (leading blank space and text after the ``Done`` line ignored).

    Raises :class:`MalformedOutput` for a reply that does not follow the format, an empty state, a
    reward that is not a finite number, or no admissible actions where the environment lists them. A
    reward outside [0, 1] is clipped (``raw_reward`` keeps the written one).
    """
    if not isinstance(text, str):
        raise MalformedOutput(f"expected text, got {type(text).__name__}")
    reply = text.lstrip()
    invalid = _INVALID.match(reply)
    if invalid:
        return Outcome(" ".join(invalid["feedback"].split()), (), 0.0, False, invalid=True,
                       rationale=(invalid["rationale"] or "").strip())
    match = _OUTCOME.match(reply)
    if match is None:
        raise MalformedOutput("the reply does not follow the format (Next state: / Actions: / Reward: / Done:)")
    try:
        raw = float(match["reward"])
    except ValueError:
        raise MalformedOutput(f"the reward {match['reward']!r} is not a number") from None
    if not math.isfinite(raw):
        raise MalformedOutput(f"the reward {match['reward']!r} is not finite")
    return Outcome(_state(match["state"]), _actions(match["actions"], lists_actions), min(1.0, max(0.0, raw)),
                   match["done"] == "yes", rationale=(match["rationale"] or "").strip(), raw_reward=raw)


def parse_initial(text: str, *, lists_actions: bool) -> tuple[str, tuple[str, ...]]:
    """The first state and its admissible actions in a model's reply."""
    match = _INITIAL.match(text.lstrip()) if isinstance(text, str) else None
    if match is None:
        raise MalformedOutput("the reply does not follow the format (State: / Actions:)")
    return _state(match["state"]), _actions(match["actions"], lists_actions)


def parse_task(text: str, *, known: Sequence[str], min_chars: int = 10, max_chars: int = 500) -> str:
    """The new task in a task generator's reply: one line, of a sensible length, not a known task."""
    match = _TASK.match(text.lstrip()) if isinstance(text, str) else None
    if match is None:
        raise MalformedOutput("the reply does not follow the format (Task: ...)")
    task = " ".join(match["task"].split())
    if not min_chars <= len(task) <= max_chars:
        raise MalformedOutput(f"a task of {len(task)} characters (expected {min_chars} to {max_chars})")
    if task.casefold() in {" ".join(k.split()).casefold() for k in known}:
        raise MalformedOutput("the task repeats a known one")
    return task
