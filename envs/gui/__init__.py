"""GUI grounding on application screens rendered by Chromium (Playwright, Debian's /usr/bin/chromium).

Install with ``pip install 'agentgym[web]'`` and ``apt-get install chromium``.
"""

from __future__ import annotations

from agentgym.registry import register


def register_envs() -> None:
    """Register the GUI grounding env id (entry point ``agentgym.envs: gui``); imports no engine."""
    register(
        "agentgym/GUIGrounding-v0",
        "agentgym.envs.gui.env:GUIGroundingEnv",
        description="Point at the element an instruction names on rendered app screens; test_ood: unseen apps.",
        extra="web",
        # Playwright's sync API is bound to the thread that started it.
        concurrency="sequential",
    )
