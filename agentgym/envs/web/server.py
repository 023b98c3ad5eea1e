"""The shop as a real web application on 127.0.0.1: search, paginated results, product pages with
options, and checkout. Standard-library HTTP server in a background thread, started and stopped by the
env; purchases are recorded per session for the env to score."""

from __future__ import annotations

import html
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlparse

from agentgym.envs.web.catalog import Goal, Product, catalog

PAGE_SIZE = 10
_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class ShopServer:
    """Serves the catalog; ``goals`` maps a session to its instruction (shown on every page)."""

    def __init__(self):
        self.products = {product.id: product for product in catalog()}
        self._index = [(product, Counter(_words(f"{product.name} {product.category}"))) for product in self.products.values()]
        self.goals: dict[str, Goal] = {}
        self.purchases: dict[str, tuple[Product, dict[str, str]]] = {}
        shop = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # the stdlib's method names
                shop.handle(self, parse_qs(urlparse(self.path).query))

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                shop.handle(self, parse_qs(self.rfile.read(length).decode()))

            def log_message(self, *args):  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="agentgym-shop", daemon=True)
        self._thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def search(self, query: str) -> list[Product]:
        wanted = _words(query)
        scored = [(sum(min(counts[w], 1) for w in wanted), product.id, product) for product, counts in self._index]
        return [product for score, _, product in sorted(scored, key=lambda s: (-s[0], s[1])) if score > 0]

    def handle(self, request: BaseHTTPRequestHandler, params: dict[str, list[str]]) -> None:
        path = urlparse(request.path).path
        session = params.get("session", [""])[0]
        goal = self.goals.get(session)

        def value(key: str, default: str = "") -> str:
            return params.get(key, [default])[0]

        if path in ("/", "/search"):
            body = (f'<form action="/results" method="get"><input type="hidden" name="session" value="{_e(session)}">'
                    '<input type="text" name="q" aria-label="Search" placeholder="Search products">'
                    '<button type="submit">Search</button></form>')
            title = "Shop - search"
        elif path == "/results":
            query, page = value("q"), max(int(value("page", "1") or 1), 1)
            found = self.search(query)
            shown = found[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
            back = f'/results?session={quote(session)}&q={quote(query)}&page={page}'
            items = "".join(f'<li><a href="/item/{p.id}?session={quote(session)}&back={quote(back)}">{_e(p.name)}</a> '
                            f'${p.price:.2f}</li>' for p in shown)
            nav = [f'<a href="/?session={quote(session)}">Back to Search</a>']
            if page > 1:
                nav.append(f'<a href="/results?session={quote(session)}&q={quote(query)}&page={page - 1}">&lt; Prev</a>')
            if page * PAGE_SIZE < len(found):
                nav.append(f'<a href="/results?session={quote(session)}&q={quote(query)}&page={page + 1}">Next &gt;</a>')
            body = f'<p>Page {page} ({len(found)} results for "{_e(query)}")</p>{" ".join(nav)}<ul>{items}</ul>'
            title = "Shop - results"
        elif path.startswith("/item/") and path[6:] in self.products:
            product = self.products[path[6:]]
            options = "".join(
                f'<label>{_e(name)} <select name="opt_{_e(name)}" aria-label="{_e(name)}">'
                + "".join(f'<option value="{_e(v)}">{_e(v)}</option>' for v in values) + "</select></label> "
                for name, values in product.options.items())
            body = (f'<a href="{_e(value("back", "/?session=" + session))}">&lt; Prev</a><h2>{_e(product.name)}</h2>'
                    f'<p>Price: ${product.price:.2f}</p><p>Features: {_e(", ".join(product.attrs))}</p>'
                    f'<form action="/buy" method="post"><input type="hidden" name="session" value="{_e(session)}">'
                    f'<input type="hidden" name="item" value="{product.id}">{options}'
                    '<button type="submit">Buy Now</button></form>')
            title = f"Shop - {product.name}"
        elif path == "/buy" and value("item") in self.products:
            product = self.products[value("item")]
            chosen = {key[4:]: vals[0] for key, vals in params.items() if key.startswith("opt_")}
            self.purchases[session] = (product, chosen)
            body, title = f"<h2>Thank you for your order</h2><p>You bought {_e(product.name)}.</p>", "Shop - done"
        else:
            request.send_error(404)
            return
        banner = f'<p id="instruction">Instruction: {_e(goal.text)}</p>' if goal else ""
        page_html = f"<!doctype html><html><head><title>{_e(title)}</title></head><body>{banner}{body}</body></html>"
        data = page_html.encode()
        request.send_response(200)
        request.send_header("Content-Type", "text/html; charset=utf-8")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)
