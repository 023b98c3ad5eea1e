"""See what the agent did: ``agentgym view`` over turn records, result files and run folders.

>>> from agentgym.viewer import open_viewer, write_html
>>> viewer = open_viewer(["runs/demo"])
>>> write_html(viewer, "report.html")        # one self-contained file: no network, nothing outside it
>>> viewer.close()

``agentgym view --serve PATH`` serves the same page from 127.0.0.1 and loads episodes as they are
opened (:mod:`agentgym.viewer.server`). The page's script and style are this package's
``viewer.js`` and ``viewer.css``, written for it; nothing is fetched from anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from agentgym.viewer.app import Viewer
from agentgym.viewer.collection import Collection
from agentgym.viewer.page import write_html
from agentgym.viewer.server import make_server, serve


def open_viewer(paths: Sequence[str | os.PathLike], *, tokenizer: str | None = None, screens: bool = True,
                env_kwargs: dict[str, Any] | None = None) -> Viewer:
    """Read ``paths`` (turn-record ``.jsonl`` files, ``agentgym eval`` result files, run folders) into a
    viewer. ``tokenizer`` is a tokenizer folder for decoding reply tokens (``"none"``: never decode);
    ``screens=False`` never re-renders screenshots; ``env_kwargs`` are the envs' constructor arguments
    when a run's ``config.json`` does not give them."""
    return Viewer(Collection.load(paths, env_kwargs=env_kwargs), tokenizer=tokenizer, screens=screens)


__all__ = ["Collection", "Viewer", "make_server", "open_viewer", "serve", "write_html"]
