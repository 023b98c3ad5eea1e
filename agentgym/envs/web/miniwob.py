"""MiniWoB++ tasks from the ``miniwob`` wheel's own pages, driven by agentgym's Playwright runtime (not
the package's Selenium); instructions and rewards come from each page's task code."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

from agentgym.contract import Frame, Task, TextEnv, state_key
from agentgym.envs.browser import Browser
from agentgym.envs.web.page import COMMANDS, Element, add_screenshot, describe, run_command, snapshot

TASKS = ("click-button", "click-link", "enter-text", "focus-text", "click-checkboxes", "click-option",
         "click-dialog", "login-user")
SEED_RANGES = {"train": (0, 10_000), "dev": (10_000, 10_100), "test": (20_000, 20_200)}
_QUOTED = re.compile(r'"([^"]+)"')
_SELECTION = re.compile(r"^Select (.*?) and click Submit", re.IGNORECASE)


def task_page(name: str) -> Path:
    """The task's page in the installed ``miniwob`` wheel (found without importing it: its package
    pulls in Selenium, which agentgym does not use)."""
    spec = importlib.util.find_spec("miniwob")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("MiniWoB++ pages come from the miniwob wheel: pip install 'agentgym[web]'.",
                                  name="miniwob")
    path = Path(spec.origin).parent / "html" / "miniwob" / f"{name}.html"
    if not path.exists():
        raise ValueError(f"MiniWoB++ has no task {name!r} in this wheel.")
    return path


class MiniWoBEnv(TextEnv):
    """One MiniWoB++ task (Liu et al., 2018): small web pages with one instruction each.

    Description:
        The task's HTML from the ``miniwob`` wheel runs in Chromium from a ``file://`` URL; a reset
        seeds the page's random generator (``Math.seedrandom``) and starts an episode with the page's
        own ``core.startEpisodeReal``. The page's 10-second timer is lifted: language models think
        slower than the RL agents MiniWoB was timed for.

    Observation:
        ``text``: the instruction (``core.getUtterance``) and every interactive element of the task area
        as ``[id] role 'label'``.

    Action:
        ``click[id]``, ``type[id][text]``, ``select[id][option]``, ``scroll[up|down]``; anything else
        is an invalid turn.

    Rewards:
        The page's raw reward when it ends the episode (1 success, -1 failure, partial on some tasks);
        ``info["time_reward"]`` is MiniWoB's time-discounted reward.

    Episode end:
        Terminated when the page ends the episode (``won`` for a positive reward); truncated after
        ``max_turns`` (10).

    Splits:
        Seeds: ``train`` 0-9999, ``dev`` 10000-10099, ``test`` 20000-20199.

    Arguments:
        task: a MiniWoB++ task name (``click-button``, ``enter-text``, ...).
        split: ``"train"``, ``"dev"`` or ``"test"``.
        screenshot: also observe the page as an RGB ``image`` (400x500) with every element's box in
            ``info["element_boxes"]``.
        max_turns: turn budget (10).
        render_mode: ``"ansi"`` or ``"human"``.
    """

    splits = ("train", "dev", "test")
    default_max_turns = 10

    def __init__(self, task: str = "click-button", split: str = "train", *, screenshot: bool = False,
                 max_turns: int | None = None, render_mode: str | None = None):
        self.task_name, self.url = task, task_page(task).as_uri()
        self.screenshot = screenshot
        if screenshot:
            self.image_shape = (400, 500, 3)
        super().__init__(split, max_turns=max_turns, render_mode=render_mode)
        self._browser = Browser()
        self._page: Any = None
        self._elements: list[Element] = []

    def load_tasks(self, split: str) -> list[Task]:
        start, stop = SEED_RANGES[split]
        return [Task(f"{self.task_name}-s{seed}", split, f"MiniWoB++ {self.task_name}", payload={"seed": seed})
                for seed in range(start, stop)]

    def _start(self, task: Task) -> Frame:
        # One kept page for all episodes (the browser hands out a new one after a crash).
        with self._browser.page(500, 400, fresh=False) as page:
            if page.url != self.url:
                page.goto(self.url)
            self._page = page
            page.evaluate("seed => { Math.seedrandom(seed); core.EPISODE_MAX_TIME = 1e9; core.startEpisodeReal(); }",
                          task.payload["seed"])
            page.wait_for_function("WOB_TASK_READY")
            frame = self._observe()
        frame.info["instruction"] = self._utterance
        return frame

    def _observe(self, reward: float = 0.0, done: bool = False) -> Frame:
        snap = snapshot(self._page, root="body", text="#area label")
        self._elements = snap["elements"]
        self._utterance = self._page.evaluate("core.getUtterance()")
        text = "\n".join([f"Instruction: {self._utterance}", *describe(self._elements)])
        frame = Frame(text=text, state_key=state_key(text), reward=reward, terminated=done, won=done and reward > 0)
        return add_screenshot(frame, self._page, self._elements) if self.screenshot else frame

    def _act(self, action: str) -> Frame:
        with self._browser.guard():
            problem = run_command(self._page, self._elements, action)
            if problem is not None:
                return self.invalid_frame(f"Invalid action: {problem} Nothing happened. Commands: {COMMANDS}.")
            done, raw, timed = self._page.evaluate("[WOB_DONE_GLOBAL, WOB_RAW_REWARD_GLOBAL, WOB_REWARD_GLOBAL]")
            frame = self._observe(float(raw) if done else 0.0, bool(done))
        frame.info["time_reward"] = float(timed) if done else 0.0
        return frame

    def expert_action(self) -> str | None:
        """Scripted solutions for click-button, click-link, click-dialog, focus-text, enter-text,
        login-user, click-checkboxes and click-option."""
        if self.episode_over or self._page is None:
            return None
        quoted = _QUOTED.findall(self._utterance)
        by_role = {role: [e for e in self._elements if e.role == role]
                   for role in ("button", "link", "textbox", "checkbox", "radio")}
        if self.task_name in ("click-button", "click-link") and quoted:
            role = "button" if self.task_name == "click-button" else "link"
            return next((f"click[{e.id}]" for e in by_role[role] if e.label == quoted[0]), None)
        if self.task_name in ("click-dialog", "focus-text"):
            targets = by_role["button"] if self.task_name == "click-dialog" else by_role["textbox"]
            return f"click[{targets[0].id}]" if targets else None
        if self.task_name in ("enter-text", "login-user") and quoted:
            values = self._page.evaluate("() => Array.from(document.querySelectorAll('#area input')).map(e => e.value)")
            for box, wanted, typed in zip(by_role["textbox"], quoted, values):
                if typed != wanted:
                    return f"type[{box.id}][{wanted}]"
            return f"click[{by_role['button'][0].id}]" if by_role["button"] else None
        if self.task_name in ("click-checkboxes", "click-option"):
            wanted = _SELECTION.search(self._utterance)
            names = {name.strip() for name in re.split(r",|\band\b", wanted.group(1))} if wanted else set()
            role = "checkbox" if self.task_name == "click-checkboxes" else "radio"
            for e in by_role[role]:
                if (e.label in names) != e.checked:
                    return f"click[{e.id}]"
            return f"click[{by_role['button'][0].id}]" if by_role["button"] else None
        return None

    def close(self) -> None:
        self._page = None
        self._browser.close()
        super().close()
