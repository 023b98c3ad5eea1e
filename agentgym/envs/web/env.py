"""A WebShop-style shop in a real browser: search, open products, choose options, buy."""

from __future__ import annotations

import uuid
from typing import Any

from agentgym.contract import Frame, Task, TextEnv, state_key
from agentgym.envs.browser import Browser
from agentgym.envs.web.catalog import catalog, goals, purchase_reward
from agentgym.envs.web.page import COMMANDS, Element, add_screenshot, describe, run_command, snapshot
from agentgym.envs.web.server import ShopServer


class WebShopEnv(TextEnv):
    """Buy the product an instruction asks for, in a shop served locally and driven through Chromium.

    Description:
        A WebShop-style task (Yao et al., 2022). The env starts the shop's web server on 127.0.0.1 and a
        headless Chromium; each episode opens a fresh browser context on the search page. The catalog
        (3,000 products in 12 categories) is generated from attribute grammars; instructions name a
        category, attributes, one value per option and a price bound.

    Observation:
        ``text``: the page title and URL, its headings and paragraphs, then every interactive element as
        ``[id] role 'label'`` (selects list their options and current value). No admissible list.

    Action:
        ``search[query]``, ``click[id]``, ``type[id][text]``, ``select[id][option]``, ``back``,
        ``scroll[up|down]``. An unknown id, a malformed command or an option a select lacks is an
        invalid turn with feedback.

    Rewards:
        On purchase, WebShop's reward: the share of requested attributes, options and price bound the
        bought item meets, times 1 if it is the requested category (else 0). ``won`` when it is 1.

    Episode end:
        Terminated by Buy Now; truncated after ``max_turns`` (15) or when the browser crashes.

    Splits:
        Disjoint instruction sets: ``train`` 2,000, ``dev`` 200, ``test`` 300; ``test_ood`` (300) asks for
        products of three held-out categories (green tea, bath towels, water bottles).

    Arguments:
        split: ``"train"``, ``"dev"``, ``"test"`` or ``"test_ood"``.
        screenshot: also observe the page as an RGB ``image`` (768x1024) with every element's box in
            ``info["element_boxes"]`` (~60 ms a step more).
        max_turns: turn budget (15).
        render_mode: ``"ansi"`` or ``"human"``.
    """

    default_max_turns = 15

    def __init__(self, split: str = "train", *, screenshot: bool = False, max_turns: int | None = None,
                 render_mode: str | None = None):
        self.screenshot = screenshot
        if screenshot:
            self.image_shape = (768, 1024, 3)
        super().__init__(split, max_turns=max_turns, render_mode=render_mode)
        self._server: ShopServer | None = None
        self._browser: Browser | None = None
        self._page_cm: Any = None
        self._page: Any = None
        self._elements: list[Element] = []
        self._session = ""

    def load_tasks(self, split: str) -> list[Task]:
        return [Task(goal.id, split, goal.text, payload={"goal": goal.id}, answer=goal.product_id)
                for goal in goals(split)]

    def _ensure_running(self) -> None:
        if self._server is None:
            self._server = ShopServer()
            self._browser = Browser(allowed_origins=(self._server.origin,))

    def _close_page(self) -> None:
        if self._page_cm is not None:
            self._page_cm.__exit__(None, None, None)
        self._page_cm = self._page = None

    def _start(self, task: Task) -> Frame:
        self._ensure_running()
        self._close_page()
        self._goal = next(goal for goal in goals(self.split) if goal.id == task.id)
        self._session = uuid.uuid4().hex[:12]
        self._server.goals[self._session] = self._goal
        self._page_cm = self._browser.page(1024, 768)
        self._page = self._page_cm.__enter__()
        with self._browser.guard():
            self._page.goto(f"{self._server.origin}/?session={self._session}")
            frame = self._snapshot()
        frame.info["instruction"] = self._goal.text
        return frame

    def _snapshot(self, reward: float = 0.0, terminated: bool = False, won: bool = False) -> Frame:
        snap = snapshot(self._page)
        self._elements = snap["elements"]
        path = self._page.url.split("?")[0].replace(self._server.origin, "") or "/"
        text = "\n".join([f"Page: {snap['title']} ({path})", *snap["text"], *describe(self._elements)])
        frame = Frame(text=text, state_key=state_key(text), reward=reward, terminated=terminated, won=won)
        return add_screenshot(frame, self._page, self._elements) if self.screenshot else frame

    def _act(self, action: str) -> Frame:
        with self._browser.guard():
            return self._act_on_page(action)

    def _act_on_page(self, action: str) -> Frame:
        problem = run_command(self._page, self._elements, action)
        if problem is not None:
            return self.invalid_frame(f"Invalid action: {problem} Nothing happened. Commands: {COMMANDS}.")
        self._page.wait_for_load_state()
        purchase = self._server.purchases.pop(self._session, None)
        if purchase is not None:
            product, chosen = purchase
            reward = purchase_reward(self._goal, product, chosen)
            frame = self._snapshot(reward=reward, terminated=True, won=reward == 1.0)
            frame.info.update(bought=product.id, options=";".join(f"{k}={v}" for k, v in chosen.items()))
            return frame
        return self._snapshot()

    def expert_action(self) -> str | None:
        """Search the target's name, open it (paging on if needed), choose the requested options, buy."""
        if self._page is None or self.episode_over:
            return None
        target = self._goal.product_id
        path = self._page.url.split("?")[0].replace(self._server.origin, "")
        if path.startswith("/item/") and path[6:] == target:
            for e in self._elements:
                if e.role == "select" and e.value != self._goal.options.get(e.label, e.value):
                    return f"select[{e.id}][{self._goal.options[e.label]}]"
            return next(f"click[{e.id}]" for e in self._elements if e.label == "Buy Now")
        if path == "/results":
            for e in self._elements:
                if e.role == "link" and e.href.startswith(f"/item/{target}"):
                    return f"click[{e.id}]"
            following = next((e.id for e in self._elements if e.label == "Next >"), None)
            if following is not None:
                return f"click[{following}]"
        if path.startswith("/item/"):
            return "back"
        product = next(p for p in catalog() if p.id == target)
        return f"search[{product.name}]"

    def close(self) -> None:
        self._close_page()
        if self._browser is not None:
            self._browser.close()
        if self._server is not None:
            self._server.close()
        self._server = self._browser = None
        super().close()

