"""GUI-RC voting speed: K = 64 sampled boxes on a 1280x720 screen, the difference-array vote grid and
summed-area rewards against painting each box into the grid, side by side.

    python benchmarks/gui_rc_voting.py [--samples 64] [--repeats 200]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from agentgym.grounding import Box, consensus_region, region_consistency_rewards, vote_grid


def painted_grid(boxes, width, height):
    grid = np.zeros((height, width), dtype=np.int32)
    for box in boxes:
        grid[box.y1 : box.y2, box.x1 : box.x2] += 1
    return grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    width, height = 1280, 720
    rng = np.random.default_rng(0)
    centre = np.array([640, 360])
    boxes = []
    for _ in range(args.samples):  # predictions scattered around one target, some far off
        x, y = (centre + rng.normal(0, 40 if rng.random() < 0.8 else 300, size=2)).astype(int)
        w, h = rng.integers(30, 160, size=2)
        boxes.append(Box(max(int(x - w // 2), 0), max(int(y - h // 2), 0), min(int(x + w // 2), width),
                         min(int(y + h // 2), height)))
    timings = {"painted grid": 0.0, "difference-array grid": 0.0, "consensus region": 0.0, "GUI-RCPO rewards": 0.0}
    for _ in range(args.repeats):
        for name, work in (("painted grid", lambda: painted_grid(boxes, width, height)),
                           ("difference-array grid", lambda: vote_grid(boxes, width, height))):
            start = time.perf_counter()
            grid = work()
            timings[name] += time.perf_counter() - start
        start = time.perf_counter()
        consensus_region(grid)
        timings["consensus region"] += time.perf_counter() - start
        start = time.perf_counter()
        region_consistency_rewards(boxes, width, height)
        timings["GUI-RCPO rewards"] += time.perf_counter() - start
    print(f"K = {args.samples} boxes on {width}x{height}, mean of {args.repeats} runs:")
    for name, seconds in timings.items():
        print(f"  {name:<24} {seconds / args.repeats * 1000:7.2f} ms")
    print(f"  vote + consensus total   {(timings['difference-array grid'] + timings['consensus region']) / args.repeats * 1000:7.2f} ms")


if __name__ == "__main__":
    main()
