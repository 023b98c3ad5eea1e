"""The page: one HTML file with its own CSS and JavaScript inline and, for ``--out``, the data too.

Text from envs and models reaches the page only as JSON in a ``<script type="application/json">`` block
(with ``<``, ``>`` and ``&`` escaped, so no text can close the block) and the script puts it into the
page as text nodes, never as markup. A Content-Security-Policy allows only the page's own script and
style (by hash) and no network at all in the static file, so even a slip could neither run injected
code nor send anything anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

from agentgym.paths import atomic_write
from agentgym.viewer.app import Viewer, finite, image_id

MAX_EPISODES = 1000
MAX_BYTES = 40_000_000
MAX_SCREENS = 60
_SLOT = re.compile(r"/\*@(\w+)@\*/")


def _asset(name: str) -> str:
    return resources.files("agentgym.viewer").joinpath(name).read_text(encoding="utf-8")


def embed_json(value: Any) -> str:
    """JSON that is safe inside a ``<script>`` block: nothing in it can end the block or open a comment."""
    text = json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def page_html(data: dict[str, Any], *, served: bool) -> tuple[str, str]:
    """The page and its Content-Security-Policy; ``data`` is the embedded answers (static) or the mode."""
    css, script = _asset("viewer.css"), _asset("viewer.js")
    images = "'self' data:" if served else "data:"
    connect = "'self'" if served else "'none'"
    policy = (f"default-src 'none'; script-src {_hash(script)}; style-src {_hash(css)}; img-src {images}; "
              f"connect-src {connect}; base-uri 'none'; form-action 'none'")
    slots = {"POLICY": policy, "STYLE": css, "SCRIPT": script, "DATA": embed_json(data)}
    # One pass, so nothing substituted (the data above all) is ever scanned for slots again.
    return _SLOT.sub(lambda match: slots[match.group(1)], _asset("viewer.html")), policy


def static_data(viewer: Viewer, *, max_episodes: int = MAX_EPISODES, max_bytes: int = MAX_BYTES,
                max_screens: int = MAX_SCREENS) -> dict[str, Any]:
    """Everything the static page shows: the index, every summary, and the episodes, screens and runs
    that fit the caps (with a note on what was left out and how to see it)."""
    collection = viewer.collection
    images: dict[str, str] = {}

    def image_ref(png: bytes) -> str | None:
        name = image_id(png)
        if name not in images:
            if len(images) >= max_screens:
                return None
            images[name] = "data:image/png;base64," + base64.b64encode(png).decode()
        return "img:" + name

    episodes: dict[str, Any] = {}
    size = 0
    for summary in collection.summaries:
        if len(episodes) >= max_episodes:
            break
        detail = viewer.episode(summary["key"], image_ref)
        cost = len(json.dumps(detail, allow_nan=False))
        if size + cost > max_bytes:
            break
        size += cost
        episodes[str(summary["key"])] = detail
    index = viewer.index()
    notes = []
    if len(episodes) < len(collection.summaries):
        notes.append(f"This file embeds the full records of {len(episodes)} of {len(collection.summaries)} episodes "
                     f"(the first ones; caps: {max_episodes} episodes, {max_bytes / 1e6:g} MB). The list shows them "
                     "all; to open any of them, run `agentgym view --serve` on the same paths.")
    if len(images) >= max_screens:
        notes.append(f"Screens are embedded for the first {max_screens} distinct screenshots only; "
                     "`agentgym view --serve` renders any.")
    index["notes"] = notes
    runs = {str(source.index): viewer.run(source.index, collection.curves_data_uri(source.index))
            for source in collection.sources if source.kind == "run"}
    return {"mode": "static", "index": index, "summaries": finite(collection.summaries), "episodes": episodes,
            "images": images, "runs": runs}


def write_html(viewer: Viewer, out: str | Path, **caps: Any) -> Path:
    """Write the self-contained page (no network, nothing outside the file) to ``out``."""
    html, _ = page_html(static_data(viewer, **caps), served=False)
    return atomic_write(out, lambda handle: handle.write(html.encode("utf-8")))
