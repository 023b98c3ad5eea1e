"""A managed headless Chromium behind Playwright, shared by the browser families (GUI, web).

One browser per env, started on first use from Debian's ``/usr/bin/chromium`` (never a downloaded
build); a fresh context per page; a timeout on every call; every request outside ``file:``/``data:``
URLs and the allowed local origins is blocked (and recorded). A crashed or hung browser is discarded
and surfaces as :class:`~agentgym.contract.EngineCrashed`, so the env truncates the episode and the
next use starts a fresh one.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from agentgym.contract import EngineCrashed
from agentgym.doctor import Check, package_check

CHROMIUM = os.environ.get("AGENTGYM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage")
DEFAULT_TIMEOUT_MS = 15_000


# Playwright's sync API allows one driver per thread (a second start() in the same thread fails), so the
# Browsers of one thread (several envs stepped sequentially) share it, counted, and the last one stops it.
# A Browser keeps its thread's driver record, so closing it from another thread counts it off the right one.
class _Driver:
    def __init__(self) -> None:
        self.users = 0
        self.playwright: Any = None
        self.thread = threading.get_ident()
        self.processes: list[Any] = []  # the driver's own process, to end it from another thread


_drivers = threading.local()


def _children(process: Any = None) -> dict[int, Any]:
    """The direct children of ``process`` (default: this one), by pid."""
    import psutil

    with contextlib.suppress(psutil.Error):
        return {child.pid: child for child in (process or psutil.Process()).children()}
    return {}


_STARTING = threading.Lock()  # so a new child of this process is the driver this thread started


def _end(processes: list[Any]) -> None:
    """End these process trees (used when Playwright's own calls cannot run: from another thread)."""
    import psutil

    tree = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            tree += [process, *process.children(recursive=True)]
    for process in tree:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(tree, timeout=10)


def _acquire_driver() -> _Driver:
    from playwright.sync_api import sync_playwright

    driver = getattr(_drivers, "driver", None)
    if driver is None:
        driver = _drivers.driver = _Driver()
    if driver.users == 0:
        with _STARTING:
            before = _children()
            driver.playwright = sync_playwright().start()
            driver.processes = [p for pid, p in _children().items() if pid not in before]
    driver.users += 1
    return driver


def _release_driver(driver: _Driver) -> None:
    driver.users -= 1
    if driver.users == 0:
        if threading.get_ident() == driver.thread:
            with contextlib.suppress(Exception):
                driver.playwright.stop()
        else:
            _end(driver.processes)
        driver.playwright, driver.processes = None, []


class Browser:
    """Headless Chromium for one env.

    Args:
        allowed_origins: origins pages may reach besides ``file:``/``data:`` (e.g. the env's own
            ``http://127.0.0.1:PORT``).
        timeout_ms: Playwright's default timeout for every page call.
    """

    def __init__(self, *, allowed_origins: Sequence[str] = (), timeout_ms: int = DEFAULT_TIMEOUT_MS):
        self.allowed_origins = tuple(allowed_origins)
        self.timeout_ms = timeout_ms
        self.blocked: list[str] = []
        """URLs the pages tried to reach and were refused."""
        self._driver: _Driver | None = None
        self._processes: list[Any] = []  # the browser's own process tree (Chromium's main process)
        self._playwright: Any = None
        self._browser: Any = None
        self._kept: dict[tuple[int, int], Any] = {}
        self.starts = 0

    def _start(self) -> None:
        if not os.path.exists(CHROMIUM):
            raise FileNotFoundError(f"Chromium not found at {CHROMIUM}: sudo apt-get install -y chromium "
                                    "(or set AGENTGYM_CHROMIUM). Do not run `playwright install`.")
        self._driver = _acquire_driver()
        self._playwright = self._driver.playwright
        # Chromium is a child of this thread's driver process, which no other thread launches through.
        drivers = self._driver.processes
        before = {pid for process in drivers for pid in _children(process)}
        self._browser = self._playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                         args=list(CHROMIUM_ARGS), timeout=self.timeout_ms)
        self._processes = [p for process in drivers for pid, p in _children(process).items() if pid not in before]
        self.starts += 1

    def _route(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:", "about:", "blob:")) or url.startswith(self.allowed_origins or ("\x00",)):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort("blockedbyclient")

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Wrap calls on a page this browser made: a Playwright failure (a dead browser, a call past its
        timeout) discards the browser and is raised as :class:`EngineCrashed`."""
        from playwright.sync_api import Error as PlaywrightError

        try:
            yield
        except PlaywrightError as error:
            self.close()
            raise EngineCrashed(f"Chromium failed: {str(error).strip().splitlines()[0]}") from error

    @contextlib.contextmanager
    def page(self, width: int, height: int, *, fresh: bool = True) -> Iterator[Any]:
        """A page of ``width x height`` CSS pixels, in a browser started (or restarted) as needed: in a
        fresh context closed afterwards (an episode that must not see another's cookies or storage), or
        with ``fresh=False`` a kept page of that size (one page reused across episodes or static screens,
        without paying ~0.5 s for a context each time)."""
        from playwright.sync_api import Error as PlaywrightError

        with self.guard():
            if self._browser is None or not self._browser.is_connected():
                self.close()
                self._start()
            if not fresh:
                if (width, height) not in self._kept:
                    self._kept[(width, height)] = self._new_page(width, height)
                yield self._kept[(width, height)]
                return
            page = self._new_page(width, height)
            try:
                yield page
            finally:
                with contextlib.suppress(PlaywrightError):
                    page.context.close()

    def _new_page(self, width: int, height: int) -> Any:
        context = self._browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1)
        context.set_default_timeout(self.timeout_ms)
        context.route("**/*", self._route)
        return context.new_page()

    @property
    def pids(self) -> list[int]:
        """Process ids of the running browser (for tests and leak checks)."""
        import psutil

        if self._browser is None:
            return []
        return [child.pid for child in psutil.Process().children(recursive=True) if "chrom" in child.name()]

    def close(self) -> None:
        browser, playwright = self._browser, self._playwright
        self._browser = self._playwright = None
        self._kept = {}
        if browser is not None:
            if threading.get_ident() == self._driver.thread:
                with contextlib.suppress(Exception):
                    browser.close()
            else:  # Playwright's sync API is bound to the thread that started it: end the processes
                _end(self._processes)
        if playwright is not None:
            _release_driver(self._driver)


def doctor_checks() -> list[Check]:
    """Playwright and Debian's Chromium, which every browser family runs on; those families include them
    in their own ``agentgym.doctor`` checks (the doctor reports each once)."""
    found = os.path.exists(CHROMIUM)
    chromium = Check("chromium", found, CHROMIUM if found else f"not found at {CHROMIUM}",
                     "" if found else "sudo apt-get install -y chromium   (or set AGENTGYM_CHROMIUM; "
                                      "never `playwright install`)")
    return [package_check("playwright", "web", "drives Chromium"), chromium]
