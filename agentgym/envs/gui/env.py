"""GUI grounding on rendered application screens: find the element an instruction names."""

from __future__ import annotations

import io
import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from agentgym.contract import Frame, Task, TextEnv, state_key
from agentgym.envs.browser import Browser
from agentgym.envs.gui.screens import ICON_FONT, KINDS_HELD_OUT, KINDS_TRAIN, screen_html
from agentgym.grounding import Box, inside, parse_prediction
from agentgym.paths import cache_dir

WIDTH, HEIGHT = 1280, 720
SEED_RANGES = {"train": (0, 3000), "dev": (100_000, 100_100), "test": (200_000, 200_300), "test_ood": (300_000, 300_300)}
RENDER_VERSION = "v2"  # bump when screens.py or screen.css change, so cached renders are not reused

_ELEMENTS_JS = """() => Array.from(document.querySelectorAll('[data-desc]')).map(e => {
  const r = e.getBoundingClientRect();
  return {desc: e.dataset.desc, how: e.dataset.how, box: [r.left, r.top, r.right, r.bottom]};
})"""


def kind_of(split: str, seed: int) -> str:
    kinds = KINDS_HELD_OUT if split == "test_ood" else KINDS_TRAIN
    return kinds[seed % len(kinds)]


def render_screen(browser: Browser, kind: str, seed: int, root: Path | None = None) -> tuple[bytes, list[dict]]:
    """The screenshot (PNG) and every tagged element's box of one screen, cached on disk."""
    folder = (root or cache_dir()) / "gui" / RENDER_VERSION
    png_path, json_path = folder / f"{kind}-{seed}.png", folder / f"{kind}-{seed}.json"
    if png_path.exists() and json_path.exists():
        return png_path.read_bytes(), json.loads(json_path.read_text())
    with browser.page(WIDTH, HEIGHT, fresh=False) as page:
        elements, png = open_screen(page, kind, seed)
    folder.mkdir(parents=True, exist_ok=True)
    for path, data in ((png_path, png), (json_path, json.dumps(elements).encode())):
        staging = path.with_suffix(path.suffix + f".tmp{np.random.randint(1 << 30)}")
        staging.write_bytes(data)
        staging.replace(path)
    return png, elements


def open_screen(page: Any, kind: str, seed: int) -> tuple[list[dict], bytes]:
    """Load a screen into ``page``; its tagged elements and its screenshot (PNG)."""
    if not ICON_FONT.exists():
        raise FileNotFoundError(f"GUI screens draw their icons with Font Awesome ({ICON_FONT} is missing): "
                                "sudo apt-get install -y fonts-font-awesome")
    css = resources.files("agentgym.assets").joinpath("gui/screen.css").read_text(encoding="utf-8")
    page.set_content(screen_html(kind, seed, css))
    return page.evaluate(_ELEMENTS_JS), page.screenshot(type="png")


def pick_target(elements: list[dict], seed: int) -> dict:
    """A visible element whose description is unique on the screen, chosen by the seed."""
    candidates = pickable(elements)
    return candidates[int(np.random.default_rng(seed).integers(len(candidates)))]


def pickable(elements: list[dict]) -> list[dict]:
    """Visible elements whose description is unique on the screen."""
    counts: dict[str, int] = {}
    for element in elements:
        counts[element["desc"]] = counts.get(element["desc"], 0) + 1
    return [e for e in elements if counts[e["desc"]] == 1 and e["box"][2] - e["box"][0] >= 2
            and e["box"][3] - e["box"][1] >= 2 and e["box"][2] <= WIDTH and e["box"][3] <= HEIGHT]


class GUIGroundingEnv(TextEnv):
    """Point at the screen element an instruction names, on screens rendered by Chromium.

    Description:
        Each task is an application screen (mail, settings, file manager, shop, dashboard, login;
        calendar and chat held out) generated from a seed with randomised texts, order, colours and
        font size, rendered at 1280x720, with an instruction naming one element by its text, its icon's
        meaning (no text), its position ("the third file in the list") or its widget type.

    Observation:
        ``image``: the screenshot (720x1280x3 RGB); ``text``: the instruction and the answer format.
        No admissible list.

    Action:
        A point ``(x, y)`` or a box ``[x1, y1, x2, y2]`` (its centre counts), in pixels or on a 0-1000
        or 0-1 scale (``scale``). A reply without coordinates is an invalid turn.

    Rewards:
        1 if the point lies inside the target's box (edges included), else 0, for each instruction.

    Episode end:
        Terminated after one prediction (``steps`` predictions in multi-step mode); truncated after
        ``max_turns`` turns.

    Splits:
        ``train``/``dev``/``test`` are disjoint seeds over six application kinds; ``test_ood`` shows the
        two held-out kinds (calendar, chat: a mobile layout).

    Arguments:
        split: ``"train"``, ``"dev"``, ``"test"`` or ``"test_ood"``.
        scale: ``"pixels"``, ``"1000"`` or ``"unit"``: how the policy writes coordinates.
        steps: instructions per episode. With more than one, the screen is live: each click is performed
            in the page (a field takes focus, a box ticks, a menu opens) and the next instruction comes
            with a new screenshot; ``won`` when every click hit.
        max_turns: turn budget (3, or ``steps + 2``).
        cache_root: where rendered screens are kept (default ``agentgym.paths.cache_dir()``).
        all_elements: with every instruction (at reset, and at each step that asks a new one), put the
            screen's elements in ``info["elements"]`` — one ``{"description", "how", "box"}`` dict per
            tagged element, ``box`` ``[x1, y1, x2, y2]`` in pixels as the page laid it out (descriptions
            can repeat and boxes can reach past the screen; only elements with a unique description
            and a box on screen are ever targets) — and the current target's box as scored in
            ``info["target_box"]`` (``[x1, y1, x2, y2]``, integers; a point on an edge hits).
            Privileged, like a task's ``answer``: for building supervised data and for scoring, never
            for a policy's prompt.
        render_mode: ``"ansi"`` or ``"human"``.
    """

    default_max_turns = 3
    image_shape = (HEIGHT, WIDTH, 3)

    @classmethod
    def turn_budget(cls, max_turns: int | None = None, *, steps: int = 1, **kwargs: Any) -> int:
        """``max_turns``, else 3 for one prediction and ``steps + 2`` for a multi-step episode."""
        return int(max_turns or (cls.default_max_turns if steps == 1 else steps + 2))

    def __init__(self, split: str = "train", *, scale: str = "pixels", steps: int = 1, max_turns: int | None = None,
                 cache_root: str | Path | None = None, all_elements: bool = False, render_mode: str | None = None):
        if steps < 1:
            raise ValueError(f"steps must be at least 1, not {steps}.")
        super().__init__(split, max_turns=self.turn_budget(max_turns, steps=steps),
                         render_mode=render_mode)
        self.steps = steps
        self._page: Any = None
        self._targets: list[dict] = []
        self._hits: list[bool] = []
        parse_prediction("(0, 0)", WIDTH, HEIGHT, scale=scale)  # rejects an unknown scale now
        self.scale = scale
        self.cache_root = Path(cache_root) if cache_root is not None else None
        self.all_elements = all_elements
        self._elements: list[dict] = []
        self.browser = Browser()
        self.target: dict[str, Any] | None = None
        self._image: np.ndarray | None = None

    def load_tasks(self, split: str) -> list[Task]:
        start, stop = SEED_RANGES[split]
        return [Task(f"gui-{kind_of(split, seed)}-s{seed}", split, "Click the element the instruction names.",
                     payload={"kind": kind_of(split, seed), "seed": seed}) for seed in range(start, stop)]

    def _start(self, task: Task) -> Frame:
        kind, seed = task.payload["kind"], task.payload["seed"]
        if self.steps == 1:
            png, elements = render_screen(self.browser, kind, seed, self.cache_root)
            self._targets = [pick_target(elements, seed)]
        else:  # a live page: clicks change it
            with self.browser.page(WIDTH, HEIGHT, fresh=False) as page:
                self._page = page
                elements, png = open_screen(page, kind, seed)
            candidates = pickable(elements)
            order = np.random.default_rng(seed).permutation(len(candidates))[: self.steps]
            self._targets = [candidates[i] for i in order]
        self._hits = []
        self._elements = elements
        return self._ask(png, state_key(task.id))

    def _ask(self, png: bytes, key: str) -> Frame:
        """The frame that shows the screenshot and the next target's instruction."""
        from PIL import Image

        self.target = self._targets[len(self._hits)]
        self._image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        units = {"pixels": "in pixels", "1000": "on a 0-1000 scale", "unit": "as fractions of the width and height"}
        instruction = f"Click {self.target['desc']}."
        frame = Frame(text=f"Instruction: {instruction}\nThe screenshot is {WIDTH}x{HEIGHT} pixels. Reply with "
                           f"the point to click as (x, y) {units[self.scale]}.",
                      state_key=key, image=self._image,
                      info={"how": self.target["how"], "kind": self.task.payload["kind"]})
        frame.info["instruction"] = instruction
        if self.all_elements:
            frame.info["elements"] = [{"description": e["desc"], "how": e["how"], "box": list(e["box"])}
                                      for e in self._elements]
            box = self.target_box()
            frame.info["target_box"] = [box.x1, box.y1, box.x2, box.y2]
        return frame

    def target_box(self) -> Box:
        """The current target's box as scored (pixels, rounded outwards). Privileged; the public way to
        read it is ``info["target_box"]`` with ``all_elements=True``."""
        x1, y1, x2, y2 = self.target["box"]
        return Box(int(np.floor(x1)), int(np.floor(y1)), int(np.ceil(x2)), int(np.ceil(y2)))

    def _act(self, action: str) -> Frame:
        box = parse_prediction(action, WIDTH, HEIGHT, scale=self.scale, point_expand=0)
        if box is None:
            return self.invalid_frame("Invalid action: reply with a point (x, y) or a box [x1, y1, x2, y2].")
        point = box.centre
        hit = inside(point, self.target_box())
        self._hits.append(hit)
        feedback = f"You clicked ({point[0]:g}, {point[1]:g}): {'hit' if hit else 'missed'}."
        info = {"point": list(point), "how": self.target["how"], "hits": sum(self._hits)}
        if len(self._hits) < len(self._targets):
            with self.browser.guard():
                self._page.mouse.click(*point)
                self._elements = self._page.evaluate(_ELEMENTS_JS)
                png = self._page.screenshot(type="png")
            boxes = {e["desc"]: e["box"] for e in self._elements}
            for target in self._targets[len(self._hits):]:  # the click may have moved things
                target["box"] = boxes.get(target["desc"], target["box"])
            frame = self._ask(png, state_key(self.task.id, *map(str, self._hits)))
            frame.text, frame.reward = f"{feedback}\n{frame.text}", float(hit)
            frame.info.update(info)
            return frame
        return Frame(text=feedback, state_key=state_key(self.task.id, "answered", *map(str, self._hits)),
                     reward=float(hit), terminated=True, won=all(self._hits), image=self._image.copy(), info=info)

    def expert_action(self) -> str | None:
        if self.target is None or self.episode_over:
            return None
        x, y = self.target_box().centre
        factor = {"pixels": None, "1000": 1000, "unit": 1}[self.scale]
        if factor:
            x, y = round(x / WIDTH * factor, 4), round(y / HEIGHT * factor, 4)
        return f"({x:g}, {y:g})"

    def close(self) -> None:
        self.browser.close()
        super().close()


def prerender(split: str, *, limit: int | None = None, root: Path | None = None, progress: bool = True) -> int:
    """Render (and cache) the screens of a split ahead of training or evaluation; returns how many."""
    from tqdm import tqdm

    start, stop = SEED_RANGES[split]
    seeds = range(start, stop if limit is None else min(stop, start + limit))
    browser = Browser()
    try:
        for seed in tqdm(seeds, desc=f"render {split}", unit="screen", disable=not progress):
            render_screen(browser, kind_of(split, seed), seed, root)
    finally:
        browser.close()
    return len(seeds)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Pre-render a split's GUI screens into the cache.")
    parser.add_argument("--split", default="test", choices=sorted(SEED_RANGES))
    parser.add_argument("--limit", type=int, default=None)
    arguments = parser.parse_args()
    print(f"{prerender(arguments.split, limit=arguments.limit)} screens cached")
