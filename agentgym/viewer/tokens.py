"""Token pieces of a reply, for shading by log-prob or entropy.

Records hold token ids, not text. Ids are decoded only with a tokenizer already on disk (a run's
``final/`` folder, a ``--tokenizer`` given, or the cached tokenizer of the model a record names) and
only when the pieces spell the reply back; otherwise the page shades the reply's tokens by position
and says so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentgym.models import EMBEDDED_MODEL, embedded_model_dir, models_dir


def tokenizer_candidates(hints: Sequence[str]) -> list[Path]:
    """``tokenizer.json`` files that the hints (folders, ``hf:PATH`` policies, model names) point at and
    that exist; nothing is downloaded or converted."""
    found = []
    for hint in hints:
        name = hint.removeprefix("hf:").split("@")[0]
        folders = [Path(name).expanduser()]
        if any(word in name.lower() for word in ("embedded", "tiny", "smollm2")):
            folders += [embedded_model_dir(), models_dir() / f"{EMBEDDED_MODEL}-tokenizer"]
        for folder in folders:
            path = folder if folder.name == "tokenizer.json" else folder / "tokenizer.json"
            try:
                if path.is_file() and path not in found:
                    found.append(path)
            except OSError:
                continue
    return found


class TokenDecoder:
    """Decodes token ids with the first candidate tokenizer that loads (``tokenizers``, no model)."""

    def __init__(self, candidates: Sequence[Path]):
        self.candidates = list(candidates)
        self._tokenizer: Any = None
        self.path: Path | None = None
        self._tried = False

    def _load(self) -> Any:
        if not self._tried:
            self._tried = True
            try:
                from tokenizers import Tokenizer
            except ImportError:
                return None
            for path in self.candidates:
                with contextlib.suppress(Exception):  # an unreadable tokenizer only means no decoding
                    self._tokenizer, self.path = Tokenizer.from_file(str(path)), path
                if self._tokenizer is not None:
                    break
        return self._tokenizer

    def pieces(self, token_ids: Sequence[int] | None, reply: str) -> list[str] | None:
        """Each token's text, or ``None`` without a tokenizer or when the pieces do not spell ``reply``."""
        if not token_ids:
            return None
        tokenizer = self._load()
        if tokenizer is None:
            return None
        try:
            pieces = [tokenizer.decode([int(i)], skip_special_tokens=False) for i in token_ids]
            plain = tokenizer.decode([int(i) for i in token_ids], skip_special_tokens=True)
        except Exception:  # noqa: BLE001 - ids outside the vocabulary: not this tokenizer
            return None
        return pieces if _spells(plain, reply) else None


def _squash(text: str) -> str:
    return "".join(text.split()).casefold()


def _spells(decoded: str, reply: str) -> bool:
    """Whether decoded tokens and the reply are the same text, spacing aside (a reply cut at a stop
    string may be the shorter; by no more than half)."""
    a, b = _squash(decoded), _squash(reply)
    short, long = sorted((a, b), key=len)
    return bool(short) and long.startswith(short) and len(short) * 2 >= len(long)
