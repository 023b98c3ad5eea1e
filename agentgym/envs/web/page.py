"""What the web families share: a page as numbered interactive elements, and the command language
agents use on it (``click[id]``, ``type[id][text]``, ``select[id][option]``, ``search[query]``,
``back``, ``scroll[up|down]``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

COMMANDS = "search[query], click[id], type[id][text], select[id][option], back or scroll[up|down]"
_COMMAND = re.compile(r"^\s*(click|type|select|search|scroll|back)\s*(?:\[(.*?)\])?\s*(?:\[(.*)\])?\s*$",
                      re.IGNORECASE | re.DOTALL)
ACTION_TIMEOUT_MS = 3_000
INTERACTIVE = "a[href], button, input:not([type=hidden]), select, textarea, .alink, [onclick]"



@dataclass(frozen=True)
class Element:
    """One numbered interactive element of a page, as the agent sees it listed."""

    id: int
    """The number commands use (``click[id]``); stamped on the element as ``data-agentgym-id``."""
    role: str
    """``link``, ``button``, ``textbox``, ``select``, ``checkbox`` or ``radio``."""
    label: str
    """Its accessible text: aria-label, the text inside it, its label, placeholder or title."""
    options: tuple[str, ...] = ()
    """A select's option values (empty for other roles)."""
    href: str = ""
    """A link's ``href`` attribute (empty for other roles)."""
    value: str = ""
    """A select's chosen option; ``"true"``/``"false"`` for a checkbox or radio button; else empty."""
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    """``(x1, y1, x2, y2)`` in viewport pixels when the page was read."""

    @property
    def checked(self) -> bool:
        """Whether a checkbox or radio button is ticked."""
        return self.value == "true"


# Numbers every interactive element inside ``root`` and returns each one's fields (those of Element, box
# in viewport pixels), plus the readable text and the title.
_SNAPSHOT_JS = """([rootSelector, interactive, textSelector]) => {
  const root = document.querySelector(rootSelector) || document.body;
  let n = 0; const elements = [];
  for (const e of root.querySelectorAll(interactive)) {
    const r = e.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    const id = ++n; e.dataset.agentgymId = id;
    const tag = e.tagName.toLowerCase(), type = (e.getAttribute('type') || '').toLowerCase();
    const role = tag === 'select' ? 'select' : tag === 'textarea' ? 'textbox'
      : tag === 'input' ? (['checkbox', 'radio'].includes(type) ? type : ['submit', 'button'].includes(type) ? 'button' : 'textbox')
      : tag === 'button' ? 'button' : 'link';
    const boxLike = ['checkbox', 'radio'].includes(type);
    const labelled = e.labels && e.labels.length ? e.labels[0].innerText : '';
    const before = e.previousElementSibling && e.previousElementSibling.tagName === 'LABEL' ? e.previousElementSibling.innerText : '';
    const label = (e.getAttribute('aria-label') || (boxLike ? labelled : '') || e.innerText
      || (tag === 'input' && !boxLike && ['submit', 'button'].includes(type) ? e.value : '') || labelled || before
      || e.placeholder || e.getAttribute('title') || '').trim();
    const options = tag === 'select' ? Array.from(e.options).map(o => o.value) : [];
    const href = tag === 'a' ? e.getAttribute('href') || '' : '';
    const value = tag === 'select' ? e.value : (['checkbox', 'radio'].includes(type) ? String(e.checked) : '');
    elements.push({id, role, label, options, href, value, box: [r.left, r.top, r.right, r.bottom]});
  }
  const text = Array.from(root.querySelectorAll(textSelector)).map(e => e.innerText.trim()).filter(Boolean);
  return {elements, text, title: document.title};
}"""


def snapshot(page: Any, *, root: str = "body", text: str = "h2, p") -> dict[str, Any]:
    """The page's numbered interactive elements (``elements``, a list of :class:`Element`), its readable
    text (``text``, one string per heading or paragraph) and its ``title``."""
    snap = page.evaluate(_SNAPSHOT_JS, [root, INTERACTIVE, text])
    snap["elements"] = [Element(**{**fields, "options": tuple(fields["options"]), "box": tuple(fields["box"])})
                        for fields in snap["elements"]]
    return snap


def add_screenshot(frame: Any, page: Any, elements: list[Element]) -> Any:
    """Give ``frame`` the page's screenshot (RGB array) and each element's box as
    ``info["element_boxes"]`` (``{id: [x1, y1, x2, y2]}``), for agents that look (shared with the GUI
    family's answer format)."""
    import io

    import numpy as np
    from PIL import Image

    frame.image = np.asarray(Image.open(io.BytesIO(page.screenshot(type="png"))).convert("RGB"))
    frame.info["element_boxes"] = {str(element.id): [round(v, 1) for v in element.box] for element in elements}
    return frame


def describe(elements: list[Element]) -> list[str]:
    """One line per element: ``[id] role 'label'`` (selects with their options, boxes with their state)."""
    lines = []
    for e in elements:
        if e.role == "select":
            lines.append(f"[{e.id}] select '{e.label}' options: {', '.join(e.options)} (now {e.value})")
        elif e.role in ("checkbox", "radio"):
            lines.append(f"[{e.id}] {e.role} '{e.label}' ({'checked' if e.checked else 'unchecked'})")
        else:
            lines.append(f"[{e.id}] {e.role} '{e.label}'")
    return lines


# Scrolls the element into view; [x, y, navigates] of its centre, or null when a click there would not
# reach it. ``navigates``: a link to another page or a form's submit button.
_CLICK_TARGET_JS = """selector => {
  const e = document.querySelector(selector);
  if (!e || e.disabled) return null;
  e.scrollIntoView({block: 'nearest', inline: 'nearest'});
  const r = e.getBoundingClientRect(), x = r.left + r.width / 2, y = r.top + r.height / 2;
  const hit = document.elementFromPoint(x, y);
  if (!hit || !(hit === e || e.contains(hit) || hit.control === e)) return null;
  const href = e.closest('a') ? e.closest('a').getAttribute('href') || '' : '';
  const submits = e.form && ['submit', 'image'].includes((e.getAttribute('type') || (e.tagName === 'BUTTON' ? 'submit' : '')).toLowerCase());
  return [x, y, Boolean(submits || (href && !href.startsWith('#') && !href.startsWith('javascript:')))];
}"""


def run_command(page: Any, elements: list[Element], action: str) -> str | None:
    """Carry out one command on the page; the reason it is invalid, or ``None`` when it ran.

    An element that cannot take the action (disabled, hidden, covered; for typing and selecting, not
    within ``ACTION_TIMEOUT_MS``) makes the turn invalid; only a failing browser raises."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        return _run(page, elements, action)
    except PlaywrightTimeout:
        return f"the page did not let {action.strip()!r} happen in time (the element may be hidden or disabled)."


def _run(page: Any, elements: list[Element], action: str) -> str | None:
    match = _COMMAND.match(action)
    if not match:
        return f"use {COMMANDS}."
    verb, first, second = match.group(1).lower(), (match.group(2) or "").strip(), match.group(3)
    if verb == "back":
        page.go_back()
    elif verb == "scroll":
        if first not in ("up", "down"):
            return "scroll takes up or down."
        page.mouse.wheel(0, 600 if first == "down" else -600)
    elif verb == "search":
        box = next((element for element in elements if element.role == "textbox"), None)
        if box is None or not first:
            return "this page has no search box (go back to the search page), or the query is empty."
        page.fill(f'[data-agentgym-id="{box.id}"]', first, timeout=ACTION_TIMEOUT_MS)
        page.press(f'[data-agentgym-id="{box.id}"]', "Enter", timeout=ACTION_TIMEOUT_MS)
    else:
        element = next((element for element in elements if str(element.id) == first), None)
        if element is None:
            return f"there is no element [{first}] on this page."
        selector = f'[data-agentgym-id="{element.id}"]'
        if verb == "click":
            # A real mouse click at the element's centre, as a user would. Playwright's own click first
            # waits for the element to be stable for two frames (~45 ms a step), so it is used only
            # where the click navigates, for its wait on the navigation it starts.
            target = page.evaluate(_CLICK_TARGET_JS, selector)
            if target is None:
                return f"[{first}] is disabled, hidden or covered by another element."
            x, y, navigates = target
            if navigates:
                page.click(selector, force=True, timeout=ACTION_TIMEOUT_MS)
            else:
                page.mouse.click(x, y)
        elif verb == "type":
            if element.role != "textbox" or second is None:
                return f"[{first}] is not a text box, or no text was given."
            page.fill(selector, second, timeout=ACTION_TIMEOUT_MS)
        else:
            if element.role != "select" or second not in element.options:
                return f"[{first}] is not a select with the option {second!r}."
            page.select_option(selector, second, timeout=ACTION_TIMEOUT_MS)
    return None
