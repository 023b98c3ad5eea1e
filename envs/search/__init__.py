"""Search-tool question answering over a local corpus (the CIA World Factbook) with BM25 retrieval.

Install with ``pip install 'agentgym[search]'``.
"""

from __future__ import annotations

from agentgym.registry import register


def register_envs() -> None:
    """Register the search env id (entry point ``agentgym.envs: search``); imports no engine."""
    register(
        "agentgym/SearchQA-Factbook-v0",
        "agentgym.envs.search.env:SearchQAEnv",
        description="Multi-hop questions over the CIA World Factbook with a BM25 search tool.",
        extra="search",
        concurrency="thread",
    )
