"""The one prompt template and the one action parser that rollouts, training and evaluation share.

Peers lost a third of their evaluation rollouts because training and evaluation built prompts or
parsed actions differently; here both paths go through :class:`PromptTemplate` and
:class:`ActionParser`, and the rollout engine is the only caller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Sequence

from agentgym.records import Message


def _default_system_prompt() -> str:
    return resources.files("agentgym.assets").joinpath("prompts/text_agent.txt").read_text(encoding="utf-8").strip()


@dataclass(frozen=True)
class HistoryItem:
    """One finished turn: what the agent was shown, what it replied, and what came back."""

    action: str  # the parsed action
    observation: str  # the observation the action led to
    reply: str = ""  # the policy's raw reply (the chat style shows it as the assistant's message)
    seen: str = ""  # the observation the agent acted on
    seen_actions: tuple[str, ...] = ()  # the admissible actions listed with it


@dataclass
class PromptTemplate:
    """Builds a turn's chat messages: system instructions, the task, past turns, the current
    observation and the admissible actions.

    Two styles:

    * ``"summary"`` (default): one user message that lists a window of recent turns. ``history_window``
      bounds the prompt length (small models and a 49k vocabulary make long prompts the dominant cost).
    * ``"chat"``: the whole episode as alternating user/assistant messages, each past message exactly as
      it was shown, so every turn's prompt extends the previous one — what the concatenated-episode
      training layout needs. ``history_window`` is ignored.
    """

    system_prompt: str | None = None
    history_window: int | None = 3
    max_listed_actions: int = 60
    style: str = "summary"

    def __post_init__(self) -> None:
        if self.system_prompt is None:
            self.system_prompt = _default_system_prompt()
        if self.style not in ("summary", "chat"):
            raise ValueError(f"Prompt style must be 'summary' or 'chat', not {self.style!r}.")

    def build(
        self,
        instruction: str,
        observation: str,
        admissible_actions: Sequence[str] = (),
        history: Sequence[HistoryItem] = (),
    ) -> list[Message]:
        if self.style == "chat":
            return self._chat(instruction, observation, admissible_actions, history)
        recent = list(history) if self.history_window is None else list(history)[-self.history_window :]
        first_shown = len(history) - len(recent) + 1
        parts = [f"Task: {instruction.strip()}"]
        if recent:
            lines = [f"Recent turns (of {len(history)} so far):"]
            for number, item in enumerate(recent, first_shown):
                lines.append(f"[{number}] > {item.action}\n{item.observation.strip()}")
            parts.append("\n".join(lines))
        parts += self._observation_parts(observation, admissible_actions)
        return [
            {"role": "system", "content": self.system_prompt or ""},
            {"role": "user", "content": "\n\n".join(parts)},
        ]

    def _observation_parts(self, observation: str, admissible_actions: Sequence[str]) -> list[str]:
        parts = [f"Current observation:\n{observation.strip()}"]
        if admissible_actions:
            listed = list(admissible_actions)[: self.max_listed_actions]
            more = len(admissible_actions) - len(listed)
            block = "\n".join(f"- {action}" for action in listed)
            if more > 0:
                block += f"\n(and {more} more)"
            parts.append(f"Admissible actions:\n{block}")
        parts.append("Your action:")
        return parts

    def _chat(self, instruction: str, observation: str, admissible_actions: Sequence[str],
              history: Sequence[HistoryItem]) -> list[Message]:
        task = f"Task: {instruction.strip()}"
        shown = [(item.seen, item.seen_actions) for item in history] + [(observation, admissible_actions)]
        messages: list[Message] = [{"role": "system", "content": self.system_prompt or ""}]
        for index, (text, actions) in enumerate(shown):
            parts = ([task] if index == 0 else []) + self._observation_parts(text, actions)
            messages.append({"role": "user", "content": "\n\n".join(parts)})
            if index < len(history):
                messages.append({"role": "assistant", "content": history[index].reply or history[index].action})
        return messages


_PREFIX = re.compile(r"^\s*(?:>|action\s*:|next action\s*:|command\s*:)\s*", re.IGNORECASE)
_TOOL_CALL = re.compile(r"<(\w+)>.*?</\1>", re.DOTALL)
_TAGGED = re.compile(r"<action>(.*?)</action>", re.IGNORECASE | re.DOTALL)


@dataclass
class ActionParser:
    """Extracts the action from a policy's reply.

    Takes the text inside ``<action>…</action>`` if present, otherwise the first non-empty line;
    drops an ``Action:`` or ``>`` prefix, surrounding quotes, backticks and a final full stop. When
    admissible actions are known and the reply contains exactly one of them as a whole line, that one
    is taken. Whether the action is *valid* is for the env to decide: an unparseable reply yields an
    empty action, which the env turns into an invalid turn with feedback.
    """

    tool_tags: tuple[str, ...] = ("search", "answer")
    """Tool-call tags kept whole, the last one winning, so reasoning may come first:
    ``<search>query</search>``, ``<answer>text</answer>``. A reply that is an OpenAI-style tool call
    (a JSON object with ``name`` and ``arguments``) is kept whole as well; the env reads both."""

    def parse(self, reply: str, admissible_actions: Sequence[str] = ()) -> str:
        if not isinstance(reply, str):
            return ""
        calls = [m.group(0) for m in _TOOL_CALL.finditer(reply) if m.group(1).lower() in self.tool_tags]
        if calls:
            return calls[-1]
        stripped = reply.strip()
        if stripped.startswith("{") and '"name"' in stripped and '"arguments"' in stripped:
            return stripped
        tagged = _TAGGED.search(reply)
        text = tagged.group(1) if tagged else reply
        lines = [self._clean(line) for line in text.splitlines()]
        lines = [line for line in lines if line]
        if not lines:
            return ""
        if admissible_actions and len(lines) > 1:
            known = {" ".join(a.split()).casefold() for a in admissible_actions}
            matches = [line for line in lines if " ".join(line.split()).casefold() in known]
            if len(set(matches)) == 1:
                return matches[0]
        return lines[0]

    @staticmethod
    def _clean(line: str) -> str:
        line = _PREFIX.sub("", line.strip())
        line = line.strip().strip("`\"'*").strip()
        if line.endswith(".") and not line.endswith(".."):
            line = line[:-1].rstrip()
        return line
