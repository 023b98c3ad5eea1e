"""Memory over long runs: what this process and the engines it started (JVMs, Chromium) hold.

The soak tests and ``benchmarks/soak_memory.py`` read it after :func:`settle` so that garbage not yet
collected, here or in an engine, does not read as a leak.
"""

from __future__ import annotations

import gc
import time
from typing import Any

import psutil


def resident_bytes() -> int:
    """Bytes resident in this process and all its descendants: PSS where the kernel reports it, so pages
    that Chromium's processes share count once, else RSS."""
    total = 0
    for process in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            info = process.memory_full_info()
            total += getattr(info, "pss", info.rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return total


def settle(env: Any) -> None:
    """Collect garbage in Python and in the env's engine, if the engine can (``engine.collect_garbage()``:
    the JVM families' full collection gives back heap, so a JVM still growing towards its cap does not
    read as a leak)."""
    gc.collect()
    collect = getattr(getattr(env.unwrapped, "engine", None), "collect_garbage", None)
    if callable(collect):
        collect()
    time.sleep(0.2)
