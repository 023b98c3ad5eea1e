"""BM25 over the Factbook corpus: corpus load, index build (empty cache), index load (warm cache) and
per-query latency over every committed gold query.

    python benchmarks/search_retrieval.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from agentgym.envs.search.corpus import factbook_passages
from agentgym.envs.search.questions import load_questions
from agentgym.envs.search.retriever import BM25Retriever


def main() -> None:
    start = time.perf_counter()
    passages = factbook_passages()
    loaded = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        BM25Retriever(passages, cache_root=Path(folder))
        built = time.perf_counter() - start
        start = time.perf_counter()
        retriever = BM25Retriever(passages, cache_root=Path(folder))
        reloaded = time.perf_counter() - start
    queries = [query for row in load_questions() for query in row["gold_queries"]]
    start = time.perf_counter()
    for query in queries:
        retriever.search(query, 3)
    per_query = (time.perf_counter() - start) / len(queries)
    print(f"corpus: {len(passages)} passages, {sum(len(p.text.split()) for p in passages):,} words, "
          f"read in {loaded:.1f} s")
    print(f"index build (empty cache): {built:.1f} s   (target <= 30 s)")
    print(f"index load (warm cache):   {reloaded:.2f} s")
    print(f"query, top 3:              {per_query * 1000:.1f} ms over {len(queries)} gold queries   (target <= 10 ms)")


if __name__ == "__main__":
    main()
