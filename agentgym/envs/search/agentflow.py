"""What the search family gives AgentFlow systems (:mod:`agentgym.systems.agentflow`): the Factbook search
tool and the scripted planner's plans for the Factbook questions."""

from __future__ import annotations

from typing import Any

from agentgym.contract import Task
from agentgym.envs.search.corpus import load_corpus
from agentgym.envs.search.questions import TOP_K
from agentgym.envs.search.retriever import BM25Retriever
from agentgym.systems.tools import Tool, ToolResult


class FactbookSearch(Tool):
    """BM25 search over the CIA World Factbook passages (the search family's retriever): the top ``top_k``
    passages with their titles, each cut to ``passage_chars`` characters."""

    name = "search"
    description = "find passages of the CIA World Factbook (the sub-goal is the search query)"
    command_hint = "a short search query naming the country and the field"

    def __init__(self, top_k: int = TOP_K, passage_chars: int = 240, corpus: str = "factbook"):
        self.top_k, self.passage_chars, self.corpus = top_k, passage_chars, corpus
        self._retriever: BM25Retriever | None = None

    def run(self, command: str) -> ToolResult:
        query = command.strip()
        if not query:
            return ToolResult("", "search: the query is empty")
        if self._retriever is None:  # built (or loaded from the cache) on first use
            self._retriever = BM25Retriever(load_corpus(self.corpus))
        found = self._retriever.search(query, self.top_k)
        docs = [f"Doc {n} (Title: {p.title}) {p.text[: self.passage_chars]}" for n, p in enumerate(found, 1)]
        return ToolResult("\n".join(docs) or "No passage matches the query.")


def qa_plan(task: Task) -> list[dict[str, Any]]:
    """A Factbook question's plan: its gold searches, then the answer (as the search env's oracle does)."""
    return [{"tool": "search", "sub_goal": query} for query in task.payload["gold_queries"]] + [
        {"answer": task.answer[0]}]


def math_plan(task: Task) -> list[dict[str, Any]]:
    """A compositional question's plan, stored with it (searches whose numbers feed the calculator)."""
    return list(task.payload["plan"])
