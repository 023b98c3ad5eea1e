"""What the page asks for — the index, pages of the episode list, an episode, a group, a run — answered
from a :class:`~agentgym.viewer.collection.Collection`. The static file embeds these answers; the
server answers them on request."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from typing import Any

from agentgym.viewer.collection import Collection
from agentgym.viewer.screens import ScreenRenderer
from agentgym.viewer.tokens import TokenDecoder, tokenizer_candidates

_OBSERVATION = re.compile(r"Current observation:\n(.*?)(?:\n\nAdmissible actions:\n|\n\nYour action:|\Z)", re.DOTALL)

ImageRef = Callable[[bytes], str]
"""Turns a PNG into what an ``<img src>`` can load: a data URI in the static file, a URL when served."""


def observation_of(prompt: list[dict[str, Any]]) -> str:
    """The observation a turn acted on, as its prompt showed it (the last user message's "Current
    observation", or that whole message when the prompt was built another way)."""
    users = [_text(message.get("content", "")) for message in prompt if message.get("role") == "user"]
    if not users:
        return ""
    match = _OBSERVATION.search(users[-1])
    return match.group(1) if match else users[-1]


def _text(content: Any) -> str:
    """A message's text; multimodal content is a list of parts, of which the text ones count."""
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict) and "text" in part)
    return str(content)


def image_id(png: bytes) -> str:
    return hashlib.sha1(png).hexdigest()[:16]


def finite(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None``: JSON has neither, and the page's parser rejects them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


class Viewer:
    """A collection with the means to show it: token decoders per source and a screen renderer."""

    def __init__(self, collection: Collection, *, tokenizer: str | None = None, screens: bool = True):
        self.collection = collection
        self.renderer = ScreenRenderer() if screens else None
        self._decoders = []
        for source in collection.sources:
            hints = ([tokenizer] if tokenizer else []) + list(dict.fromkeys(source.tokenizer_hints))
            self._decoders.append(TokenDecoder(tokenizer_candidates(hints) if tokenizer != "none" else []))

    def index(self) -> dict[str, Any]:
        return finite(self.collection.index())

    def query(self, params: dict[str, Any]) -> dict[str, Any]:
        return finite(self.collection.query(params))

    def episode(self, key: int, image_ref: ImageRef | None = None) -> dict[str, Any]:
        """An episode as the page shows it: the record, each turn's observation and token pieces, and its
        screens when ``image_ref`` is given and the env renders images."""
        summary = self.collection.summaries[key]
        record = dict(self.collection.record(key))
        source = self.collection.sources[summary["source"]]
        decoder = self._decoders[summary["source"]]
        turns, decoded = [], 0
        for raw in record["turns"]:
            turn = dict(raw)
            prompt_ids = turn.pop("prompt_token_ids", None)
            turn["prompt_tokens"] = len(prompt_ids) if prompt_ids else None
            turn["observation"] = observation_of(turn.get("prompt") or [])
            turn["tokens"] = decoder.pieces(turn.get("action_token_ids"), str(turn.get("response", "")))
            decoded += turn["tokens"] is not None
            turns.append(turn)
        record["turns"] = turns
        with_ids = sum(bool(turn.get("action_token_ids")) for turn in turns)
        if not with_ids:
            record["token_note"] = None
        elif decoded == with_ids:
            record["token_note"] = f"Tokens decoded with {decoder.path}."
        else:
            reason = (f"{decoder.path} does not spell the replies back" if decoder.path is not None
                      else "no tokenizer is on disk for this policy (give one with --tokenizer)")
            record["token_note"] = (f"Token ids are not decoded ({reason}): each cell is one token of the reply, in "
                                    "order, shaded by its value; the reply's text is shown above.")
        record["screen_note"] = None
        if image_ref is not None and self.renderer is not None:
            screens, record["screen_note"] = self.renderer.screens(record, source.env_kwargs)
            for turn, screen in zip(turns, screens):
                if screen is not None:
                    screen = dict(screen)
                    screen["src"] = image_ref(screen.pop("png"))
                turn["screen"] = screen
        record["key"], record["summary"] = key, summary
        return finite(record)

    def group(self, group: str) -> dict[str, Any]:
        members = self.collection.group_members(group)
        if not members:
            raise KeyError(group)
        return {"group": group, "episodes": [self.episode(member["key"]) for member in members]}

    def run(self, source_index: int, curves_src: str | None) -> dict[str, Any]:
        source = self.collection.sources[source_index]
        if source.kind != "run":
            raise KeyError(source_index)
        return finite({"source": source_index, "label": source.label, "path": str(source.path),
                       **source.info["run"], "curves_src": curves_src})

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.close()
