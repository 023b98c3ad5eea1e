"""Web environments in a real browser: a WebShop-style shop served locally and MiniWoB++ tasks, driven
through Playwright and Debian's Chromium.

Install with ``pip install 'agentgym[web]'`` and ``apt-get install chromium``.
"""

from __future__ import annotations

from agentgym.doctor import Check, binary_check, package_check
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
    from agentgym.envs.web.miniwob import SEED_RANGES, TASKS

    for task in TASKS:
        name = "".join(part.capitalize() for part in task.split("-"))
        register(f"agentgym/MiniWoB-{name}-v0", "agentgym.envs.web.miniwob:MiniWoBEnv", splits=tuple(SEED_RANGES),
                 description=f"MiniWoB++ {task}, from the miniwob wheel's page, in Chromium.", extra="web",
                 kwargs={"task": task}, concurrency="sequential")


def doctor_checks() -> list[Check]:
    """What ``agentgym doctor`` checks for this family (entry point ``agentgym.doctor: web``)."""
    from agentgym.envs import browser

    return [*browser.doctor_checks(), package_check("miniwob", "web", "MiniWoB++ task pages"),
            binary_check("chromedriver", "/usr/bin/chromedriver", "sudo apt-get install -y chromium-driver   "
                         "(only for benchmarks/web_step.py, which times MiniWoB's own Selenium env)")]
