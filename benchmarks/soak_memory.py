"""Memory over long runs: one env per family plays many episodes, a new task each episode and two steps
in each, and the resident memory of this process and its children (the JVM, Chromium's processes) is
read after a warm-up and at the end. Exits 1 if a family grows by more than --bound MiB.

ALFWorld's default is the issue's case at length: 300 resets, each on another game of the test split.

    python benchmarks/soak_memory.py [--families alfworld scienceworld ...] [--episodes 300] [--bound 100]
"""

from __future__ import annotations

import argparse
import sys

import agentgym
from agentgym.memory import expert, first_admissible, look_around, soak

# name: (id, split, action, tasks to cycle through (None: all))
FAMILIES = {
    "textworld": ("agentgym/TextWorld-CoinCollector-v0", "dev", first_admissible, 5),
    "textworld_express": ("agentgym/TWX-CoinCollector-v0", "train", first_admissible, None),
    "scienceworld": ("agentgym/ScienceWorld-v0", "train", look_around, None),
    "alfworld": ("agentgym/ALFWorld-v0", "test", first_admissible, None),
    "webshop": ("agentgym/WebShop-v0", "train", expert, None),
    "miniwob": ("agentgym/MiniWoB-ClickButton-v0", "train", expert, None),
    "gui": ("agentgym/GUIGrounding-v0", "train", expert, None),
    "search": ("agentgym/SearchQA-Factbook-v0", "train", expert, None),
    "multiagent_seat": ("agentgym/TicTacToe-vs-Random-v0", "train", first_admissible, None),
}


def soak_family(name: str, warmup: int, episodes: int) -> tuple[float, float]:
    """MiB gained from the end of the warm-up to the end, and seconds per episode."""
    env_id, split, act, task_count = FAMILIES[name]
    env = agentgym.make(env_id, split=split)
    try:
        (start, end), seconds = soak(env, env.unwrapped.tasks[:task_count], act, warmup=warmup, episodes=episodes)
    finally:
        env.close()
    return (end.resident - start.resident) / 2**20, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=["alfworld"], choices=sorted(FAMILIES))
    parser.add_argument("--episodes", type=int, default=300, help="measured episodes per family")
    parser.add_argument("--warmup", type=int, default=60, help="episodes before the first reading (ALFWorld's "
                        "test split has 60 games: a lap, so the largest kitchens are in before measuring)")
    parser.add_argument("--bound", type=float, default=100.0, help="MiB a family may grow over the measured episodes")
    args = parser.parse_args()

    print(f"{'family':18s} {'growth':>10s} {'per episode':>12s} {'s/episode':>10s}   "
          f"({args.episodes} episodes after {args.warmup}, this process + children, PSS)")
    failed = []
    for name in args.families:
        growth, seconds = soak_family(name, args.warmup, args.episodes)
        print(f"{name:18s} {growth:+8.1f} MiB {growth / args.episodes:+8.3f} MiB {seconds:10.3f}", flush=True)
        if growth > args.bound:
            failed.append(name)
    if failed:
        print(f"grew by more than {args.bound:g} MiB: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
