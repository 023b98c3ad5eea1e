"""GUI grounding on application screens rendered by Chromium (Playwright, Debian's /usr/bin/chromium).

Install with ``pip install 'agentgym[web]'`` and ``apt-get install chromium``.
"""

from __future__ import annotations

from agentgym.doctor import Check, file_check, package_check
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


def doctor_checks() -> list[Check]:
    """What ``agentgym doctor`` checks for this family (entry point ``agentgym.doctor: gui``)."""
    from agentgym.envs import browser
    from agentgym.envs.gui.screens import ICON_FONT

    return [*browser.doctor_checks(), package_check("pillow", "web", "decodes the GUI screenshots"),
            file_check("Font Awesome", ICON_FONT, "sudo apt-get install -y fonts-font-awesome   (icons of the GUI screens)")]
