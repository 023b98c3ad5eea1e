"""GUI screen rendering throughput: screenshot plus every element's box, on one Chromium, into an empty
cache (target >= 5 screens/s on 2 cores).

    python benchmarks/gui_render.py [--screens 60]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from agentgym.envs.browser import Browser
from agentgym.envs.gui.env import SEED_RANGES, kind_of, render_screen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--screens", type=int, default=60)
    args = parser.parse_args()
    browser = Browser()
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        render_screen(browser, "mail", 0, Path(folder))  # browser start-up, not counted below
        launch = time.perf_counter() - start
        seeds = range(SEED_RANGES["train"][0] + 1, SEED_RANGES["train"][0] + 1 + args.screens)
        start = time.perf_counter()
        elements = sum(len(render_screen(browser, kind_of("train", seed), seed, Path(folder))[1]) for seed in seeds)
        seconds = time.perf_counter() - start
    browser.close()
    print(f"browser start + first screen: {launch:.1f} s")
    print(f"{args.screens} screens ({elements} element boxes) in {seconds:.1f} s: "
          f"{args.screens / seconds:.1f} screens/s   (target >= 5)")


if __name__ == "__main__":
    main()
