"""AgentFlow (arXiv 2510.05592) as a *planner-view env*: any env whose tasks have a query and an answer
becomes a :class:`~agentgym.contract.TextEnv` whose observation is the planner's context and whose action
is the planner's reply. Inside one step the executor turns the planner's sub-goal into a tool command,
the tool runs, the memory grows and the verifier decides; when it says STOP (or the tool steps run out)
the generator writes the final answer and the judge scores it. So every trainer, rollout, eval and record
works on the system unchanged, each planner call is one ``Turn``, and only the planner's tokens are ever
trained: the other modules' text reaches the planner as observation. Flow-GRPO is ``trainer: grpo`` with
``group_stats: trajectories`` on these envs (docs/algorithms.md §3).

The planner replies on one line, ``TOOL: SUB-GOAL`` (``search: Chad population``) or, when the memory
holds the answer, ``answer: ANSWER``; the labelled form ``Sub-goal: ...; Tool: ...`` works too. A reply
naming no known tool is an invalid turn (the memory does not change).
"""

from __future__ import annotations

import importlib
import re
from typing import Any, Callable, Mapping, Sequence

from agentgym.contract import Frame, Task, TextEnv, state_key
from agentgym.systems.judge import make_judge
from agentgym.systems.modules import ANSWER, Executor, Generator, Memory, Step, Verifier
from agentgym.systems.tools import Tool, make_tool

PlanStep = Mapping[str, Any]
COMPUTING_TOOLS = ("calculator", "python")
_LABELLED_TOOL = re.compile(r"\btool(?:\s+name)?\s*:\s*([\w-]+)", re.IGNORECASE)
_LABELLED_GOAL = re.compile(r"\bsub-?\s*goal\s*:\s*(.+?)\s*(?:[;|]\s*tool\b.*)?$", re.IGNORECASE)
_SHORT = re.compile(r"^\s*([\w-]+)\s*:\s*(.+?)\s*$", re.DOTALL)


def parse_planner_reply(reply: str, tools: Sequence[str]) -> tuple[str, str] | None:
    """``(tool, sub-goal)`` or ``("answer", text)`` from a planner reply, or ``None`` when it names no known
    tool or has no sub-goal."""
    text = reply.strip()
    tool_match, goal_match = _LABELLED_TOOL.search(text), _LABELLED_GOAL.search(text)
    if tool_match and goal_match:
        tool, goal = tool_match.group(1).lower(), goal_match.group(1)
    else:
        short = _SHORT.match(text)
        if short is None:
            return None
        tool, goal = short.group(1).lower(), short.group(2)
    goal = goal.strip().strip("`").strip()
    if tool not in (*tools, ANSWER) or not goal:
        return None
    return tool, goal


def planner_reply(tool: str, sub_goal: str) -> str:
    """The canonical one-line planner reply."""
    return f"{tool}: {sub_goal}"


def scripted_planner_reply(plan: Sequence[PlanStep], memory: Memory) -> str | None:
    """The scripted planner: the next step of a task's plan while the memory has followed it, else ``None``.

    A plan step is ``{"tool", "sub_goal", "extract"}`` or ``{"answer"}``. ``extract`` maps names to regular
    expressions read (group 1) from that step's result *as the memory shows it*; later sub-goals and answers
    use them as ``{name}`` — so the planner computes only from what the tools returned.
    """
    values: dict[str, str] = {}
    for index, step in enumerate(plan):
        tool = ANSWER if ANSWER in step else step["tool"]
        try:
            goal = (step[ANSWER] if tool == ANSWER else step["sub_goal"]).format(**values)
        except KeyError:
            return None
        if index == len(memory.steps):
            return planner_reply(tool, goal)
        taken = memory.steps[index]
        if (taken.tool, taken.sub_goal) != (tool, goal):
            return None  # off the plan: the plan says nothing about this state
        for name, pattern in step.get("extract", {}).items():
            found = re.search(pattern, taken.result)
            if found is None:
                return None
            values[name] = found.group(1)
    return None


def _resolve(spec: str) -> Callable[..., Any]:
    module, _, attribute = spec.partition(":")
    if not attribute:
        raise ValueError(f"{spec!r} must name a function as 'module:function'.")
    return getattr(importlib.import_module(module), attribute)


class AgentFlowEnv(TextEnv):
    """The planner's view of an AgentFlow system (planner, executor, verifier, generator, shared memory).

    Description:
        Each task of the ``base`` env (its instruction is the query, its ``answer`` the reference) is
        solved by the system; the policy acting on this env is the planner. A step: the planner's reply
        names a tool and a sub-goal; the executor writes the command; the tool runs; the memory records
        sub-goal, command and result; the verifier says STOP or CONTINUE. On STOP, at the last turn, or
        when the planner asks for a tool with no tool steps left (it may still propose an answer), the
        generator answers from the memory and the judge scores.

    Observation:
        ``text``: the query, the tools and the memory so far, with the tool steps left. No admissible list.

    Action:
        ``TOOL: SUB-GOAL`` or ``answer: ANSWER`` on one line (see :func:`parse_planner_reply`).

    Rewards:
        The judge's verdict on the final answer, 1 or 0, on the last turn (AgentFlow's single outcome
        reward); 0 on every other turn.

    Info:
        Every step: ``tool_calls`` (1 when a tool ran), ``tool_errors`` (1 when it failed) and ``modules``,
        each module's backend, input and output (the planner's parsed reply, the executor, the tool with
        its full output and time, the verifier, and at the end the generator and the judge); the last
        step also has ``final_answer`` and ``judge`` (verdict and reason).

    Episode end:
        Terminated when the final answer is judged; an empty reply on the last turn truncates (reward 0).

    Arguments:
        base: the env id whose tasks (query and answer) the system solves; ``base_kwargs`` its arguments.
        tools: tool specs, ``calculator``, ``python`` or ``module:attribute`` (a family's tool).
        plan: ``module:function`` giving a task's plan for the scripted planner (the oracle,
            :meth:`expert_action`); none: no oracle.
        executor, verifier, generator: module backends (``scripted``, ``embedded``, ``hf:PATH``,
            ``openai:MODEL@URL``); ``module_kwargs`` go to their policies (``max_tokens``, ``api_key``...).
        judge: ``offline`` or an LLM judge's spec; ``rel_tol`` the offline judge's numeric tolerance.
        max_tool_steps: tool calls per episode (3, as in the paper's training).
        result_chars: each tool result is cut to this many characters in the memory.
        max_turns: planner turns (default ``max_tool_steps + 2``: room to propose an answer and for one
            unreadable reply).
    """

    @classmethod
    def turn_budget(cls, max_turns: int | None = None, max_tool_steps: int = 3, **kwargs: Any) -> int:
        return int(max_turns or max_tool_steps + 2)

    def __init__(self, split: str = "train", *, base: str, base_kwargs: dict[str, Any] | None = None,
                 tools: Sequence[str] = ("calculator", "python"), plan: str | None = None,
                 executor: str = "scripted", verifier: str = "scripted", generator: str = "scripted",
                 judge: str = "offline", module_kwargs: dict[str, Any] | None = None, rel_tol: float = 0.01,
                 max_tool_steps: int = 3, result_chars: int = 600, max_turns: int | None = None,
                 render_mode: str | None = None):
        super().__init__(split, max_turns=self.turn_budget(max_turns, max_tool_steps), render_mode=render_mode)
        if max_tool_steps < 1 or result_chars < 1:
            raise ValueError("max_tool_steps and result_chars must be at least 1.")
        self.base, self.base_kwargs = base, dict(base_kwargs or {})
        self.max_tool_steps, self.result_chars = max_tool_steps, result_chars
        self.tools: dict[str, Tool] = {}
        for spec in tools:
            tool = make_tool(spec)
            if tool.name in self.tools or tool.name == ANSWER:
                raise ValueError(f"Two tools are named {tool.name!r} (or one is named {ANSWER!r}, which is taken).")
            self.tools[tool.name] = tool
        self._plan = _resolve(plan) if plan else None
        module_kwargs = dict(module_kwargs or {})
        self.executor = Executor(executor, **module_kwargs)
        self.verifier = Verifier(verifier, **module_kwargs)
        self.generator = Generator(generator, **module_kwargs)
        self.judge = make_judge(judge, rel_tol=rel_tol, module_kwargs=module_kwargs)
        self.memory = Memory()

    def load_tasks(self, split: str) -> list[Task]:
        from agentgym.registry import make

        env = make(self.base, split=split, **self.base_kwargs)
        try:
            return list(env.unwrapped.tasks)
        finally:
            env.close()

    # ------------------------------------------------------------------ the planner's view
    def _instruction(self, task: Task) -> str:
        return ("You are the planner of a team that answers a query with tools. Each turn, reply on one line with "
                "the tool to use and the next sub-goal, as `tool: sub-goal` (for example `search: Chad "
                "population`), or `answer: your answer` once the memory holds it. An executor runs the tool, a "
                "verifier decides when to stop and a generator writes the final answer. "
                f"Query: {task.instruction}")

    def _view(self) -> str:
        tools = "\n".join(f"- {tool.name}: {tool.description}" for tool in self.tools.values())
        left = self.max_tool_steps - self.memory.tool_steps
        return (f"Query: {self.task.instruction}\nTools:\n{tools}\nMemory:\n{self.memory.render()}\n"
                f"Tool steps left: {left} of {self.max_tool_steps}.")

    def _state(self) -> str:
        return state_key(self.task.id, *(f"{s.tool}\x01{s.command or s.sub_goal}" for s in self.memory.steps))

    # ------------------------------------------------------------------ episode
    def _start(self, task: Task) -> Frame:
        self.memory = Memory()
        return Frame(text=self._view(), state_key=self._state(), info={"instruction": self._instruction(task)})

    def _act(self, action: str) -> Frame:
        parsed = parse_planner_reply(action, list(self.tools))
        if parsed is None:
            feedback = (f"Your reply was not understood: {action.strip()[:80]!r}. Reply on one line as `tool: "
                        f"sub-goal` with a tool from {', '.join(self.tools)}, or `answer: your answer`.")
            if self.turn >= self.max_turns:
                return self._finish({"planner": {"reply": action, "understood": False}}, 0, 0)
            return Frame(text=f"{self._view()}\n\n{feedback}", state_key=self._state(), invalid=True,
                         info={"tool_calls": 0, "tool_errors": 0, "modules": {"planner": {"reply": action,
                                                                                            "understood": False}}})
        tool_name, sub_goal = parsed
        modules: dict[str, Any] = {"planner": {"tool": tool_name, "sub_goal": sub_goal}}
        if tool_name != ANSWER and self.memory.tool_steps >= self.max_tool_steps:
            modules["planner"]["refused"] = "no tool steps left: the generator answers from the memory"
            return self._finish(modules, 0, 0)
        query, step = self.task.instruction, Step(len(self.memory.steps) + 1, tool_name, sub_goal)
        if tool_name != ANSWER:
            tool = self.tools[tool_name]
            step.command, modules["executor"] = self.executor.command(query, sub_goal, tool, self.memory)
            result = tool.run(step.command)
            step.result, step.error = result.text()[: self.result_chars], not result.ok
            step.computed = result.ok and tool_name in COMPUTING_TOOLS
            modules["tool"] = {"name": tool_name, "command": step.command, "output": result.output,
                               "error": result.error, "seconds": round(result.seconds, 4)}
        self.memory.steps.append(step)
        stop, reason, modules["verifier"] = self.verifier.verify(query, self.memory)
        step.conclusion = f"{'STOP' if stop else 'CONTINUE'} ({reason})"
        calls, errors = int(tool_name != ANSWER), int(step.error)
        if stop or self.turn >= self.max_turns:
            return self._finish(modules, calls, errors)
        return Frame(text=self._view(), state_key=self._state(),
                     info={"tool_calls": calls, "tool_errors": errors, "modules": modules})

    def _finish(self, modules: dict[str, Any], calls: int, errors: int) -> Frame:
        """The generator answers from the memory and the judge scores it: the episode's outcome."""
        answer, modules["generator"] = self.generator.answer(self.task.instruction, self.memory)
        verdict = self.judge.judge(self.task.instruction, answer, self.task.answer)
        modules["judge"] = verdict.to_dict()
        text = (f"{self._view()}\nFinal answer: {answer or '(none)'}\n"
                f"Judged {'correct' if verdict.correct else 'incorrect'}: {verdict.reason}.")
        return Frame(text=text, state_key=state_key(self._state(), answer), reward=verdict.reward, terminated=True,
                     won=verdict.correct, info={"tool_calls": calls, "tool_errors": errors, "modules": modules,
                                                "final_answer": answer,
                                                "judge": {"correct": verdict.correct, "reason": verdict.reason}})

    def expert_action(self) -> str | None:
        """The scripted planner's next reply (the task's plan, numbers read from the memory)."""
        if self._plan is None or self.task is None or self.episode_over:
            return None
        return scripted_planner_reply(self._plan(self.task), self.memory)

    def close(self) -> None:
        for tool in self.tools.values():
            tool.close()
