"""The tools of agentgym.systems: the calculator evaluates a parsed tree and refuses everything else; the
Python sandbox turns a loop, a fork bomb, a memory blow-up, a huge print and a network import into clear
tool errors within its limits, and never takes the caller down."""

from __future__ import annotations

import os
import time

import psutil
import pytest

from agentgym.systems.tools import Calculator, PythonSandbox, ToolResult, calculate, make_tool


def test_calculator_reads_factbook_numbers_and_computes_from_the_tree():
    assert calculate("19,674,004 / 1.284 million") == pytest.approx(19_674_004 / 1_284_000)
    assert calculate("$20.626 billion / $5.1 billion") == pytest.approx(20.626 / 5.1)
    assert calculate("(2 + 3) * 4 - 2 ** 3 =") == 12
    assert calculate("sqrt(16) + max(1, 2) + round(2.6)") == 9
    assert calculate("3 × 4 ÷ 2 ^ 1") == 6
    assert Calculator().run("35,336,133 - 2,513,738") == ToolResult("32822395", None, pytest.approx(0, abs=0.1))
    assert Calculator().run("10 / 4").output == "2.5"


@pytest.mark.parametrize("expression, message", [
    ("__import__('os').system('ls')", "is not allowed"),
    ("(1).__class__", "is not allowed"),
    ("open('x')", "is not allowed"),
    ("x + 1", "is not allowed"),
    ("2 ** 1000000", "power is too large"),
    ("1 / 0", "division by zero"),
    ("1e300 * 1e300", "too large"),
    ("(3 + 4", "cannot parse"),
    ("", "empty"),
])
def test_calculator_refuses_anything_but_arithmetic_with_a_clear_error(expression, message):
    result = Calculator().run(expression)
    assert not result.ok and message in result.error and result.error.startswith("calculator: ")


@pytest.fixture(scope="module")
def sandbox():
    return PythonSandbox(cpu_seconds=1, wall_seconds=8, memory_mb=128, output_bytes=2_000)


def _timed(sandbox: PythonSandbox, code: str) -> tuple[ToolResult, float]:
    start = time.monotonic()
    result = sandbox.run(code)
    return result, time.monotonic() - start


def test_a_program_runs_in_a_fresh_temporary_folder_that_is_removed(sandbox):
    result, _ = _timed(sandbox, "import os\nopen('note.txt', 'w').write('x')\nprint(os.getcwd())\nprint(2 + 3)")
    assert result.ok, result.error
    folder, value = result.output.split()
    assert value == "5" and "agentgym-python-" in folder and folder != os.getcwd()
    assert not os.path.exists(folder)  # removed with everything the program wrote
    assert make_tool("python").run("```python\nprint('fenced')\n```").output == "fenced\n"


def test_an_exception_is_reported_as_its_last_traceback_line(sandbox):
    result, _ = _timed(sandbox, "print('partial')\n1 / 0")
    assert result.error == "python: ZeroDivisionError: division by zero" and result.output == "partial\n"


def test_an_infinite_loop_hits_the_cpu_limit(sandbox):
    result, seconds = _timed(sandbox, "while True:\n    pass")
    assert result.error == "python: CPU-time limit of 1 s exceeded (an endless loop?)"
    assert seconds < sandbox.wall_seconds  # stopped by the CPU limit, not the wall clock


def test_a_sleeping_program_hits_the_wall_time_limit():
    result, seconds = _timed(PythonSandbox(wall_seconds=1.5), "import time\ntime.sleep(60)")
    assert result.error == "python: wall-time limit of 1.5 s exceeded (the program was stopped)"
    assert seconds < 5


def test_a_fork_bomb_is_refused_and_leaves_no_process(sandbox):
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    result, seconds = _timed(sandbox, "import os\nwhile True:\n    os.fork()")
    assert "may not start processes" in result.error and "os.fork" in result.error and seconds < 5
    for code in ("import subprocess", "import os\nos.system('echo hi')", "import multiprocessing"):
        assert "may not start processes" in sandbox.run(code).error, code
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before


def test_a_memory_blow_up_hits_the_memory_limit(sandbox):
    for code in ("x = bytearray(10 ** 10)", "chunks = []\nwhile True:\n    chunks.append(b'x' * 10 ** 6)"):
        result, seconds = _timed(sandbox, code)
        assert result.error == "python: memory limit of 128 MB exceeded", code
        assert seconds < sandbox.wall_seconds


def test_a_huge_print_hits_the_output_limit(sandbox):
    result, seconds = _timed(sandbox, "while True:\n    print('y' * 1000)")
    assert result.error == "python: output limit of 2000 bytes exceeded (the program was stopped)"
    assert len(result.output) == 2_000 and seconds < sandbox.wall_seconds


@pytest.mark.parametrize("module", ["socket", "urllib.request", "http.client", "ssl", "asyncio"])
def test_a_network_import_is_refused(sandbox, module):
    result = sandbox.run(f"import {module}")
    assert result.error.startswith("python: ImportError: network access is disabled in the python tool: import of ")
    assert result.error.endswith("refused") and module.split(".")[0] in result.error


def test_bad_limits_and_unknown_tools_are_clear_errors():
    with pytest.raises(ValueError, match="python tool limits"):
        PythonSandbox(memory_mb=1)
    with pytest.raises(ValueError, match="Unknown tool 'abacus'"):
        make_tool("abacus")
    with pytest.raises(TypeError, match="not an agentgym.systems.tools.Tool"):
        make_tool("collections:OrderedDict")
