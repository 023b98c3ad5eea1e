"""Where agentgym keeps generated data (games, indexes, converted models)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$AGENTGYM_CACHE``, else ``$XDG_CACHE_HOME/agentgym``, else ``~/.cache/agentgym``."""
    if os.environ.get("AGENTGYM_CACHE"):
        return Path(os.environ["AGENTGYM_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "agentgym"
