"""Where agentgym keeps generated data (games, indexes, converted models)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable


def cache_dir() -> Path:
    """``$AGENTGYM_CACHE``, else ``$XDG_CACHE_HOME/agentgym``, else ``~/.cache/agentgym``."""
    if os.environ.get("AGENTGYM_CACHE"):
        return Path(os.environ["AGENTGYM_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "agentgym"


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write`` on a temporary file beside ``path``, then rename it into place: a crash never
    leaves half a file, and readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as tmp:
        try:
            write(tmp)
        except BaseException:
            tmp.close()
            os.unlink(tmp.name)
            raise
    os.replace(tmp.name, path)
    return path


def cached_json(path: str | os.PathLike, compute: Callable[[], Any]) -> Any:
    """The JSON at ``path``, or ``compute()``'s result written there first (atomically): how long
    benchmarks keep each finished unit, so a rerun resumes where the last one stopped."""
    path = Path(path)
    if path.exists():
        return json.loads(path.read_text())
    value = compute()
    atomic_write(path, lambda handle: handle.write(json.dumps(value, indent=1).encode()))
    return value
