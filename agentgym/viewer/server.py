"""``agentgym view --serve``: the same page, served from 127.0.0.1, asking for what it shows.

The page loads the episode list a page at a time (filtered and sorted here) and an episode's record
and screens only when it is opened, so a run of any size opens at once. Standard library only.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from agentgym.viewer.app import Viewer, image_id
from agentgym.viewer.page import embed_json, page_html

CACHED_IMAGES = 256
CACHED_EPISODES = 64


class _Cache:
    """A small thread-safe least-recently-used map."""

    def __init__(self, size: int):
        self.size, self._items, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, key: Any, make: Callable[[], Any] | None = None) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        if make is None:
            return None
        value = make()
        self.put(key, value)
        return value

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def make_server(viewer: Viewer, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A server for ``viewer`` (not yet serving: call ``serve_forever``); port 0 takes a free one."""
    images, episodes = _Cache(CACHED_IMAGES), _Cache(CACHED_EPISODES)
    page, policy = page_html({"mode": "serve"}, served=True)

    def image_ref(png: bytes) -> str:
        name = image_id(png)
        images.put(name, png)
        return f"/api/image/{name}.png"

    def route(path: str, params: dict[str, str]) -> tuple[str, bytes]:
        parts = [unquote(part) for part in path.strip("/").split("/")]
        if parts == [""]:
            return "text/html; charset=utf-8", page.encode("utf-8")
        if parts[0] != "api" or len(parts) < 2:
            raise KeyError(path)
        name, rest = parts[1], parts[2:]
        if name == "index" and not rest:
            return _json(viewer.index())
        if name == "episodes" and not rest:
            return _json(viewer.query(params))
        if name == "episode" and len(rest) == 1:
            key = int(rest[0])
            return _json(episodes.get(key, lambda: viewer.episode(key, image_ref)))
        if name == "group" and len(rest) == 1:
            return _json(viewer.group(rest[0]))
        if name == "run" and len(rest) == 1:
            index = int(rest[0])
            has_png = viewer.collection.curves_png(index) is not None
            return _json(viewer.run(index, f"/api/curves/{index}.png" if has_png else None))
        if name == "curves" and len(rest) == 1 and rest[0].endswith(".png"):
            png = viewer.collection.curves_png(int(rest[0].removesuffix(".png")))
            if png is None:
                raise KeyError(path)
            return "image/png", png
        if name == "image" and len(rest) == 1 and rest[0].endswith(".png"):
            png = images.get(rest[0].removesuffix(".png"))
            if png is None:
                raise KeyError(path)
            return "image/png", png
        raise KeyError(path)

    class Handler(BaseHTTPRequestHandler):
        server_version = "agentgym-viewer"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            try:
                kind, body = route(url.path, dict(parse_qsl(url.query)))
                status = 200
            except (KeyError, IndexError):
                kind, body, status = "application/json", b'{"error": "not found"}', 404
            except ValueError as error:
                kind, body, status = "application/json", json.dumps({"error": str(error)}).encode(), 400
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Security-Policy", policy)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return ThreadingHTTPServer((host, port), Handler)


def _json(value: Any) -> tuple[str, bytes]:
    return "application/json; charset=utf-8", embed_json(value).encode("utf-8")


def serve(viewer: Viewer, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve until interrupted (Ctrl-C)."""
    server = make_server(viewer, host, port)
    print(f"agentgym view: serving {viewer.collection.index()['total']} episodes at "
          f"http://{host}:{server.server_address[1]}/  (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
