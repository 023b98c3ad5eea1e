"""Web environments in a real browser: a WebShop-style shop served locally, driven through Playwright
and Debian's Chromium.

Install with ``pip install 'agentgym[web]'`` and ``apt-get install chromium``.
"""

from __future__ import annotations

from agentgym.registry import register


def register_envs() -> None:
    """Register the web env ids (entry point ``agentgym.envs: web``); imports no engine."""
    register(
        "agentgym/WebShop-v0",
        "agentgym.envs.web.env:WebShopEnv",
        description="Buy the product an instruction asks for in a locally served shop (WebShop-style reward).",
        extra="web",
        concurrency="sequential",  # Playwright's sync API is bound to the thread that started it
    )
