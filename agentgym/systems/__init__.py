"""Agentic systems built around a trainable policy, as envs: AgentFlow's planner, executor, verifier and
generator with tools and a shared memory (:mod:`agentgym.systems.agentflow`), its tools
(:mod:`agentgym.systems.tools`), module backends (:mod:`agentgym.systems.modules`) and judges
(:mod:`agentgym.systems.judge`). Part of the core: no family is imported here; a family's tools are named
by ``module:attribute``."""

from agentgym.systems.agentflow import AgentFlowEnv, parse_planner_reply, scripted_planner_reply
from agentgym.systems.judge import LLMJudge, OfflineJudge, Verdict, make_judge
from agentgym.systems.tools import Calculator, PythonSandbox, Tool, ToolResult, calculate, make_tool

__all__ = ["AgentFlowEnv", "Calculator", "LLMJudge", "OfflineJudge", "PythonSandbox", "Tool", "ToolResult", "Verdict",
           "calculate", "make_judge", "make_tool", "parse_planner_reply", "scripted_planner_reply"]
