"""Tools an agentic system's executor calls: a safe calculator, a sandboxed Python, and any tool a family
provides (the search family's Factbook search is ``agentgym.envs.search.tools:FactbookSearch``).

A tool takes the executor's command (text) and returns a :class:`ToolResult`; a failure is a result with
an ``error`` that says what went wrong, never an exception, so a bad command costs a step, not the run.
"""

from __future__ import annotations

import abc
import ast
import importlib
import math
import operator
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar


@dataclass(frozen=True)
class ToolResult:
    """What a tool call returned: its output, or an error that says what went wrong."""

    output: str
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    def text(self) -> str:
        """The result as the memory shows it."""
        return self.output if self.ok else f"Error: {self.error}" + (f"\n{self.output}" if self.output else "")


class Tool(abc.ABC):
    """A tool: a name, a one-line description for the planner, and :meth:`run`."""

    name: ClassVar[str]
    description: ClassVar[str]
    command_hint: ClassVar[str] = "the tool's input"  # what the executor must write, for LLM executors

    @abc.abstractmethod
    def run(self, command: str) -> ToolResult:
        """Run one command; failures come back as ``ToolResult(error=...)``."""

    def close(self) -> None:
        """Free what the tool holds."""


# ---------------------------------------------------------------------------------------------- calculator
class CalculatorError(ValueError):
    pass


_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "abs": abs, "round": round, "min": min, "max": max, "log": math.log, "log10": math.log10,
    "exp": math.exp,
}
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_SCALE_WORDS = {"thousand": "1e3", "million": "1e6", "billion": "1e9", "trillion": "1e12"}
_SCALED_NUMBER = re.compile(r"(\d+(?:\.\d+)?)\s*(" + "|".join(_SCALE_WORDS) + r")\b", re.IGNORECASE)
MAX_MAGNITUDE = 1e100


def _calculate(node: ast.AST) -> float | int:
    if isinstance(node, ast.Expression):
        return _calculate(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_calculate(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _calculate(node.left), _calculate(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > 100 or abs(left) > 1e6):
            raise CalculatorError("the power is too large (exponent at most 100, base at most 1e6)")
        try:
            value = _BINARY[type(node.op)](left, right)
        except ZeroDivisionError:
            raise CalculatorError("division by zero") from None
        if isinstance(value, complex):
            raise CalculatorError("the result is not a real number")
        return value
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS \
            and not node.keywords:
        try:
            return _FUNCTIONS[node.func.id](*[_calculate(arg) for arg in node.args])
        except (TypeError, ValueError) as error:
            raise CalculatorError(f"{node.func.id}(): {error}") from None
    shown = ast.unparse(node) if not isinstance(node, ast.Expression) else ""
    raise CalculatorError(f"{shown!r} is not allowed: use numbers, + - * / // % ** ( ) and "
                          f"{', '.join(sorted(_FUNCTIONS))}")


def calculate(expression: str) -> float | int:
    """The value of an arithmetic expression, computed from its parsed tree (never ``eval``).

    Thousands separators (``19,674,004``), currency signs and scale words (``1.284 million``) are read
    as numbers; ``×``, ``÷`` and ``^`` as ``*``, ``/`` and ``**``. Anything but numbers, arithmetic,
    parentheses and a few functions is a :class:`CalculatorError` that says why.
    """
    text = expression.strip().rstrip("=").strip()
    text = _THOUSANDS.sub("", text.replace("$", "").replace("€", "").replace("£", ""))
    text = _SCALED_NUMBER.sub(lambda m: f"({m.group(1)}*{_SCALE_WORDS[m.group(2).lower()]})", text)
    text = text.replace("×", "*").replace("÷", "/").replace("^", "**")
    if not text:
        raise CalculatorError("the expression is empty")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise CalculatorError(f"cannot parse {expression.strip()!r} as arithmetic") from None
    try:
        value = _calculate(tree)
    except (OverflowError, RecursionError):
        raise CalculatorError("the result is too large") from None
    if isinstance(value, float) and not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
        raise CalculatorError("the result is too large")
    return value


def format_number(value: float | int) -> str:
    """A calculator result as text: integers whole, other values to 10 significant digits."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.10g}"


class Calculator(Tool):
    """Safe arithmetic over a parsed expression tree."""

    name = "calculator"
    description = "evaluate an arithmetic expression, e.g. 19,674,004 / 1.284 million"
    command_hint = "one arithmetic expression with the numbers written out"

    def run(self, command: str) -> ToolResult:
        start = time.perf_counter()
        try:
            return ToolResult(format_number(calculate(command)), seconds=time.perf_counter() - start)
        except CalculatorError as error:
            return ToolResult("", f"calculator: {error}", time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------- python
NETWORK_MODULES = ("socket", "_socket", "ssl", "_ssl", "http", "urllib.request", "ftplib", "smtplib", "poplib",
                   "imaplib", "telnetlib", "nntplib", "xmlrpc", "socketserver", "asyncio", "selectors",
                   "requests", "httpx", "aiohttp", "urllib3", "webbrowser")
PROCESS_MODULES = ("subprocess", "_posixsubprocess", "multiprocessing", "concurrent", "ctypes", "_ctypes", "pty")
PROCESS_EVENTS = ("os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.kill",
                  "os.killpg", "subprocess.Popen", "socket.connect", "socket.bind", "socket.__new__")

# Runs in the child before the code: lower the limits, leave the network namespace where the system
# allows it (root), then refuse network modules and process creation through an audit hook (PEP 578:
# a hook cannot be removed). A guard against runaway model-written code, not a hardened jail.
_BOOTSTRAP = r"""
import resource, sys
cpu, memory, file_bytes = {cpu}, {memory}, {file_bytes}
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
try:
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
except (ValueError, OSError):
    pass
try:
    import ctypes
    ctypes.CDLL(None, use_errno=True).unshare(0x40000000)  # CLONE_NEWNET: no interfaces but a down loopback
except Exception:
    pass
for name in [m for m in sys.modules if m.split(".")[0] in ("ctypes", "_ctypes")]:
    del sys.modules[name]
NETWORK, PROCESS, EVENTS = {network!r}, {process!r}, {events!r}
def _within(name, roots):
    return any(name == root or name.startswith(root + ".") for root in roots)
def _guard(event, args):
    if event == "import":
        if _within(args[0], NETWORK):
            raise ImportError(f"network access is disabled in the python tool: import of {{args[0]!r}} refused")
        if _within(args[0], PROCESS):
            raise ImportError(f"the python tool may not start processes: import of {{args[0]!r}} refused")
    elif event in EVENTS:
        raise PermissionError(f"the python tool may not start processes or open sockets ({{event}} refused)")
sys.addaudithook(_guard)
del _guard
source = open("main.py", encoding="utf-8").read()
exec(compile(source, "main.py", "exec"), {{"__name__": "__main__"}})
"""


class PythonSandbox(Tool):
    """Python code run in a separate process: CPU-time, memory, output and wall-time limits, no network,
    no child processes, and a fresh temporary working folder removed afterwards.

    An infinite loop (CPU limit), a fork bomb (process creation refused), a memory blow-up (address-space
    limit), a huge print (output-file limit) and a network import (refused at import) each come back as
    a :class:`ToolResult` with a clear ``error``.
    """

    name = "python"
    description = "run a short Python program and read what it prints"
    command_hint = "a complete Python program that prints the result"

    def __init__(self, *, cpu_seconds: int = 2, wall_seconds: float = 10.0, memory_mb: int = 256,
                 output_bytes: int = 10_000):
        if cpu_seconds < 1 or wall_seconds <= 0 or memory_mb < 32 or output_bytes < 1:
            raise ValueError("python tool limits: cpu_seconds >= 1, wall_seconds > 0, memory_mb >= 32, "
                             "output_bytes >= 1.")
        self.cpu_seconds, self.wall_seconds = cpu_seconds, wall_seconds
        self.memory_mb, self.output_bytes = memory_mb, output_bytes

    def run(self, command: str) -> ToolResult:
        code = _strip_fence(command)
        start = time.perf_counter()
        bootstrap = _BOOTSTRAP.format(cpu=self.cpu_seconds, memory=self.memory_mb << 20,
                                      file_bytes=self.output_bytes + 1, network=NETWORK_MODULES,
                                      process=PROCESS_MODULES, events=PROCESS_EVENTS)
        with tempfile.TemporaryDirectory(prefix="agentgym-python-") as folder:
            work = Path(folder, "work")
            work.mkdir()
            (work / "main.py").write_text(code, encoding="utf-8")
            with open(Path(folder, "stdout"), "wb") as out, open(Path(folder, "stderr"), "wb") as err:
                process = subprocess.Popen([sys.executable, "-I", "-S", "-c", bootstrap], cwd=work, stdout=out,
                                           stderr=err, stdin=subprocess.DEVNULL, start_new_session=True,
                                           env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
                timed_out = False
                try:
                    process.wait(timeout=self.wall_seconds)
                except subprocess.TimeoutExpired:
                    timed_out = True
                finally:
                    _kill_group(process)
            stdout = Path(folder, "stdout").read_bytes()
            stderr = Path(folder, "stderr").read_bytes().decode("utf-8", "replace")
        seconds = time.perf_counter() - start
        output = stdout[: self.output_bytes].decode("utf-8", "replace")
        error = self._error(process.returncode, stderr, timed_out, len(stdout))
        return ToolResult(output, error, seconds)

    def _error(self, returncode: int, stderr: str, timed_out: bool, output_size: int) -> str | None:
        if timed_out:
            return f"python: wall-time limit of {self.wall_seconds:g} s exceeded (the program was stopped)"
        if returncode == -signal.SIGXCPU or returncode == -signal.SIGKILL and "MemoryError" not in stderr:
            return f"python: CPU-time limit of {self.cpu_seconds} s exceeded (an endless loop?)"
        if returncode == -signal.SIGXFSZ or output_size > self.output_bytes:
            return f"python: output limit of {self.output_bytes} bytes exceeded (the program was stopped)"
        if "MemoryError" in stderr:
            return f"python: memory limit of {self.memory_mb} MB exceeded"
        if returncode != 0:
            lines = [line for line in stderr.strip().splitlines() if line.strip()]
            return "python: " + (lines[-1] if lines else f"the program exited with status {returncode}")
        return None


def _strip_fence(code: str) -> str:
    """The code inside a Markdown fence, if the command has one."""
    fenced = re.search(r"```(?:python|py)?\s*\n(.*?)```", code, re.DOTALL)
    return fenced.group(1) if fenced else code


def _kill_group(process: subprocess.Popen) -> None:
    """Stop the child and anything it started (its own session)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


# ---------------------------------------------------------------------------------------------- by name
BUILTIN_TOOLS: dict[str, type[Tool]] = {"calculator": Calculator, "python": PythonSandbox}


def make_tool(spec: str) -> Tool:
    """``calculator``, ``python``, or ``module:attribute`` naming a :class:`Tool` class or factory (a
    family's tool, e.g. ``agentgym.envs.search.tools:FactbookSearch``)."""
    if spec in BUILTIN_TOOLS:
        return BUILTIN_TOOLS[spec]()
    module, _, attribute = spec.partition(":")
    if not attribute:
        raise ValueError(f"Unknown tool {spec!r}: use {', '.join(BUILTIN_TOOLS)} or 'module:attribute'.")
    tool = getattr(importlib.import_module(module), attribute)()
    if not isinstance(tool, Tool):
        raise TypeError(f"{spec} made a {type(tool).__name__}, not an agentgym.systems.tools.Tool.")
    return tool
