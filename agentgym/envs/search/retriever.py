"""BM25 retrieval over a corpus with ``bm25s``, the index built once and cached on disk."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Sequence
from pathlib import Path

import bm25s
import numpy as np

from agentgym.envs.search.corpus import Passage
from agentgym.paths import cache_dir


class BM25Retriever:
    """Top-k passages for a query (title and text are indexed together).

    The index is keyed by a hash of the passages and kept under ``$AGENTGYM_CACHE/search``; a changed
    corpus gets a new index.
    """

    def __init__(self, passages: Sequence[Passage], *, cache_root: Path | None = None):
        self.passages = list(passages)
        digest = hashlib.blake2b(digest_size=8)
        for passage in self.passages:
            digest.update(f"{passage.id}\x00{passage.title}\x00{passage.text}\x01".encode())
        folder = (cache_root or cache_dir()) / "search" / f"bm25-{digest.hexdigest()}"
        if (folder / "params.index.json").exists():
            self.index = bm25s.BM25.load(str(folder))
        else:
            self.index = bm25s.BM25()
            self.index.index(bm25s.tokenize([self._document(p) for p in self.passages], stopwords="en",
                                            show_progress=False), show_progress=False)
            folder.parent.mkdir(parents=True, exist_ok=True)
            staging = folder.with_name(folder.name + f".tmp{np.random.randint(1 << 30)}")
            self.index.save(str(staging))
            try:
                staging.replace(folder)
            except OSError:  # another process built it first; theirs is the same index
                shutil.rmtree(staging, ignore_errors=True)

    @staticmethod
    def _document(passage: Passage) -> str:
        return f"{passage.title}. {passage.text}"

    def search(self, query: str, k: int = 3) -> list[Passage]:
        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False)
        if not tokens.ids or not tokens.ids[0]:
            return []
        indices, scores = self.index.retrieve(tokens, k=min(k, len(self.passages)), show_progress=False)
        return [self.passages[int(i)] for i, score in zip(indices[0], scores[0]) if score > 0]
