"""The fixed modules of an agentic system around the trainable planner: the executor (sub-goal → tool
command), the verifier (stop or continue) and the generator (the final answer), and the memory they share.

Each module's backend is a policy spec: ``embedded``, ``tiny``, ``hf:PATH``, ``openai:MODEL@URL`` (any
OpenAI-compatible server, ``agentgym serve-policy`` included), or ``scripted`` — fixed rules that read
only the memory and the planner's words, never the reference answer:

* scripted executor: the planner's sub-goal is the command (the query for ``search``, the expression for
  ``calculator``, the program for ``python``);
* scripted verifier: STOP after the planner proposes an answer or a computing tool (calculator, python)
  returns a value; CONTINUE otherwise;
* scripted generator: the planner's last proposed answer, else the last computed value, else no answer.

An LLM backend answers greedily (temperature 0) to the module's prompt. Every call is recorded — the
backend, what the module read and what it wrote — so a turn's record shows the whole flow.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from agentgym.policies import PolicyRequest, make_policy
from agentgym.records import Message
from agentgym.systems.tools import Tool

SCRIPTED = "scripted"
ANSWER = "answer"  # the planner's pseudo-tool for proposing the answer (not a tool call)


@dataclass
class Step:
    """One planner step in memory: the tool and sub-goal the planner chose, the executor's command, the
    tool's result (cut to the memory's size) and the verifier's conclusion."""

    number: int
    tool: str
    sub_goal: str
    command: str = ""
    result: str = ""
    error: bool = False
    computed: bool = False  # a computing tool returned a value
    conclusion: str = ""

    def render(self) -> str:
        if self.tool == ANSWER:
            lines = [f"Step {self.number} (proposed answer): {self.sub_goal}"]
        else:
            lines = [f"Step {self.number} ({self.tool}): {self.sub_goal}"]
            if self.command != self.sub_goal:
                lines.append(f"Command: {self.command}")
            lines.append(f"Result: {self.result}")
        if self.conclusion:
            lines.append(f"Verifier: {self.conclusion}")
        return "\n".join(lines)


@dataclass
class Memory:
    """The evolving memory every module reads: M^{t+1} = f(M^t, sub-goal, command, result, verdict)."""

    steps: list[Step] = field(default_factory=list)

    @property
    def tool_steps(self) -> int:
        return sum(step.tool != ANSWER for step in self.steps)

    def render(self) -> str:
        return "\n".join(step.render() for step in self.steps) if self.steps else "(empty)"


# ---------------------------------------------------------------------------------------------- LLM backends
_SHARED: dict[str, Any] = {}
_SHARED_LOCK = threading.Lock()


class LLMModule:
    """A language model behind a policy spec, answering one chat at a time, greedily. Envs in one process
    share each model (and a lock around it: a local model is not thread-safe)."""

    def __init__(self, spec: str, *, max_tokens: int = 96, **kwargs: Any):
        self.spec = spec
        if spec.startswith("openai:"):
            arguments = {"temperature": 0.0, "max_tokens": max_tokens, **kwargs}
        else:
            arguments = {"mode": "generate", "temperature": 0.0, "max_new_tokens": max_tokens, **kwargs}
        key = json.dumps([spec, arguments], sort_keys=True, default=str)
        with _SHARED_LOCK:
            if key not in _SHARED:
                _SHARED[key] = (make_policy(spec, **arguments), threading.Lock())
        self.policy, self._lock = _SHARED[key]

    def complete(self, messages: list[Message]) -> str:
        with self._lock:
            return self.policy.act([PolicyRequest(messages=messages)])[0].text.strip()


def _record(backend: str, read: Any, wrote: str) -> dict[str, Any]:
    return {"backend": backend, "input": read, "output": wrote}


def _chat(system: str, user: str) -> list[Message]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _labelled(reply: str, label: str) -> str:
    """The text after ``label:`` in a reply (its whole first line when there is no such label)."""
    found = re.search(rf"{label}\s*:\s*(.+)", reply, re.IGNORECASE)
    text = found.group(1) if found else next((line for line in reply.splitlines() if line.strip()), "")
    return text.strip().strip("`").strip()


class Module:
    """A fixed module: rules (``scripted``) or a language model behind a policy spec."""

    def __init__(self, spec: str = SCRIPTED, **module_kwargs: Any):
        self.spec = spec
        self.llm = None if spec == SCRIPTED else LLMModule(spec, **module_kwargs)


# ---------------------------------------------------------------------------------------------- executor
EXECUTOR_SYSTEM = "You are the executor of a team that answers queries with tools. You write tool commands."


class Executor(Module):
    """Turns the planner's sub-goal into a concrete command for the chosen tool."""

    def command(self, query: str, sub_goal: str, tool: Tool, memory: Memory) -> tuple[str, dict[str, Any]]:
        if self.llm is None:
            return sub_goal, _record(SCRIPTED, {"tool": tool.name, "sub_goal": sub_goal}, sub_goal)
        messages = _chat(EXECUTOR_SYSTEM, (
            f"Query: {query}\n\nMemory:\n{memory.render()}\n\nSub-goal: {sub_goal}\n"
            f"Tool: {tool.name} ({tool.description})\n\nWrite {tool.command_hint} that achieves the sub-goal. "
            "Reply with the command only, after 'Command:'."))
        reply = self.llm.complete(messages)
        if tool.name == "python":
            command = re.sub(r"^\s*command\s*:\s*", "", reply, flags=re.IGNORECASE)
        else:
            command = _labelled(reply, "command")
        return command, _record(self.spec, messages, reply)


# ---------------------------------------------------------------------------------------------- verifier
VERIFIER_SYSTEM = "You are the verifier of a team that answers queries with tools. You decide when to stop."
_CONCLUSION = re.compile(r"\b(STOP|CONTINUE)\b", re.IGNORECASE)


class Verifier(Module):
    """Decides whether the memory now answers the query (STOP) or more steps are needed (CONTINUE)."""

    def verify(self, query: str, memory: Memory) -> tuple[bool, str, dict[str, Any]]:
        last = memory.steps[-1]
        if self.llm is None:
            stop = last.tool == ANSWER or last.computed
            reason = ("the planner proposed an answer" if last.tool == ANSWER else
                      f"{last.tool} computed a value" if last.computed else "no answer or computed value yet")
            return stop, reason, _record(SCRIPTED, {"last_step": last.render()}, f"{_word(stop)}: {reason}")
        messages = _chat(VERIFIER_SYSTEM, (
            f"Query: {query}\n\nMemory:\n{memory.render()}\n\nDoes the memory hold everything needed to answer "
            "the query? Give one sentence of analysis, then 'Conclusion: STOP' if it does or "
            "'Conclusion: CONTINUE' if more steps are needed."))
        reply = self.llm.complete(messages)
        found = _CONCLUSION.findall(reply)
        stop = bool(found) and found[-1].upper() == "STOP"  # an unreadable verdict continues, as AgentFlow does
        reason = reply.split("\n")[0][:200] if found else f"no STOP/CONTINUE in the reply, so CONTINUE: {reply[:120]!r}"
        return stop, reason, _record(self.spec, messages, reply)


def _word(stop: bool) -> str:
    return "STOP" if stop else "CONTINUE"


# ---------------------------------------------------------------------------------------------- generator
GENERATOR_SYSTEM = "You are the generator of a team that answers queries with tools. You write the final answer."


class Generator(Module):
    """Writes the final answer from the memory."""

    def answer(self, query: str, memory: Memory) -> tuple[str, dict[str, Any]]:
        if self.llm is None:
            proposed = [s.sub_goal for s in memory.steps if s.tool == ANSWER]
            computed = [s.result for s in memory.steps if s.computed]
            answer = (proposed or computed or [""])[-1].strip()
            return answer, _record(SCRIPTED, {"proposed": proposed, "computed": computed}, answer)
        messages = _chat(GENERATOR_SYSTEM, (
            f"Query: {query}\n\nMemory:\n{memory.render()}\n\nUsing the memory, answer the query as briefly as "
            "possible (a name or a number). Reply 'Answer: <answer>'."))
        reply = self.llm.complete(messages)
        return _labelled(reply, "answer"), _record(self.spec, messages, reply)
