"""A managed JVM behind py4j, shared by the Java-backed families (ScienceWorld, TextWorldExpress).

The engines' own Python wrappers start an uncapped JVM plus a callback server per instance and never
restart it. :class:`JavaEngine` starts the JVM on first use with a capped heap, keeps it across
episodes, stops it (and reaps it) on :meth:`close`, and turns a dead, hung or failing JVM into
:class:`~agentgym.contract.EngineCrashed` after discarding it, so the env truncates the episode and the
next call starts a fresh JVM.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from agentgym.contract import EngineCrashed
from agentgym.doctor import Check

if TYPE_CHECKING:  # py4j comes with the engines' wheels; importing this module must not need it (doctor)
    from py4j.java_gateway import JavaGateway

JAVA_FIX = "sudo apt-get install -y default-jre-headless   (Java 17+)"

DEFAULT_HEAP_MB = int(os.environ.get("AGENTGYM_JVM_HEAP_MB", "512"))
"""Heap cap per JVM. ScienceWorld's JVM takes 0.75-1.2 GB uncapped; 512 MB keeps ~20 envs in 24 GiB."""

DEFAULT_CALL_TIMEOUT_S = 120.0

CONSTANT_IDENTITY_HASH = ("-XX:+UnlockExperimentalVMOptions", "-XX:hashCode=2")
"""HotSpot options giving every object the same identity hash code. By default an identity hash comes
from a per-thread random sequence, so hash sets and maps keyed by objects that define no ``hashCode``
iterate in an order that depends on everything the JVM did before; with one constant hash they iterate
in an order set by the engine's own calls alone."""


class JavaEngine:
    """One JVM running ``interface`` (a py4j entry class) from ``jar``.

    Args:
        jar: the engine's jar file.
        interface: the fully qualified Java class whose instance is the engine (``server``).
        name: the engine's name, for messages.
        heap_mb: ``-Xmx`` of the JVM.
        call_timeout_s: a call that takes longer counts as a hung engine.
        jvm_options: more JVM options, after the heap cap and GC settings (e.g.
            :data:`CONSTANT_IDENTITY_HASH`).
    """

    def __init__(self, jar: str, interface: str, *, name: str, heap_mb: int = DEFAULT_HEAP_MB,
                 call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S, jvm_options: Sequence[str] = ()):
        if heap_mb < 64:
            raise ValueError(f"heap_mb={heap_mb} is too small for {name}'s JVM; use at least 64 (default 512).")
        self.jar, self.interface, self.name = jar, interface, name
        self.heap_mb, self.call_timeout_s = heap_mb, call_timeout_s
        self.jvm_options = tuple(jvm_options)
        self._gateway: JavaGateway | None = None
        self._process: subprocess.Popen | None = None
        self._server: Any = None
        self.starts = 0
        """How many JVMs this engine has started (1 + restarts after crashes)."""

    @property
    def server(self) -> Any:
        """The engine object in the JVM, starting the JVM if none is running."""
        if self._server is None:
            self._start()
        return self._server

    @property
    def jvm(self) -> Any:
        """py4j's view of the running JVM's classes (``engine.jvm.java.lang.Class``), starting it if needed."""
        self.server  # noqa: B018 - starts the JVM
        assert self._gateway is not None
        return self._gateway.jvm

    @property
    def pid(self) -> int | None:
        """The running JVM's process id, or ``None``."""
        return self._process.pid if self._process is not None else None

    def _start(self) -> None:
        from py4j.java_gateway import GatewayParameters, JavaGateway, launch_gateway

        port, self._process = launch_gateway(
            classpath=self.jar, die_on_exit=True, return_proc=True, cwd=os.path.dirname(self.jar),
            # Serial GC: a single-threaded collector is plenty for one engine and keeps thread count and
            # memory small when several envs run side by side.
            javaopts=[f"-Xmx{self.heap_mb}m", "-XX:+UseSerialGC", "-Xss8m", *self.jvm_options])
        self._gateway = JavaGateway(
            gateway_parameters=GatewayParameters(port=port, auto_field=True, read_timeout=self.call_timeout_s),
            java_process=self._process)
        self._server = getattr(self._gateway.jvm, self.interface)()
        self.starts += 1

    @contextlib.contextmanager
    def guard(self) -> Iterator[Any]:
        """Yield the engine; if the JVM dies, hangs or throws inside the block, stop it and raise
        :class:`EngineCrashed` (the next use starts a fresh JVM)."""
        from py4j.protocol import Py4JError

        try:
            yield self.server
        except Py4JError as error:  # network errors (dead or hung JVM) and Java exceptions alike
            self.close()
            raise EngineCrashed(f"{self.name}'s JVM failed: {str(error).strip().splitlines()[0]}") from error

    def collect_garbage(self) -> None:
        """A full collection in the JVM, if it runs (the serial collector then gives back free heap)."""
        if self.pid is not None:
            self.jvm.java.lang.System.gc()

    def close(self) -> None:
        """Stop the JVM and wait for it to exit; the next use starts a new one."""
        gateway, process = self._gateway, self._process
        self._gateway = self._process = self._server = None
        if gateway is not None:
            with contextlib.suppress(Exception):
                gateway.close()
        if process is not None and process.poll() is None:
            process.kill()
        if process is not None:
            process.wait()
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    stream.close()


def doctor_checks() -> list[Check]:
    """Java 17+ on the PATH, which every JVM family runs on; those families include it in their own
    ``agentgym.doctor`` checks (the doctor reports it once)."""
    java = shutil.which("java")
    if java is None:
        return [Check("java", False, "not found", JAVA_FIX)]
    try:
        output = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=20, check=False).stderr
    except (OSError, subprocess.SubprocessError) as error:
        return [Check("java", False, f"{java} does not run ({error})", JAVA_FIX)]
    match = re.search(r'version "(\d+)', output)
    major = int(match.group(1)) if match else 0
    if major < 17:
        return [Check("java", False, f"{java} is Java {major or '?'}; 17+ is needed", JAVA_FIX)]
    return [Check("java", True, f"Java {major} at {java}")]
