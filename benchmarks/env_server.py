"""The cost of serving an env: steps/s and p50/p99 step latency in-process, through `agentgym serve-env`
over HTTP sessions, and over WebSocket sessions (openenv-core's client), for 1 and 16 concurrent
sessions, on a TextWorld id and a web (MiniWoB) id. Printed side by side as one Markdown table.

    python benchmarks/env_server.py [--env ID ...] [--sessions 1 16] [--steps 200] [--json out.json]

Each session plays seeded random admissible actions (``click[1]`` where the env lists none) on the
split's first four tasks, resetting when an episode ends; steps/s counts the resets' time too (wall
clock), the latencies are of steps alone. "overhead p50" is the transport's p50 minus the in-process
p50 at the same concurrency: what a step costs on top of the engine on loopback. Concurrent sessions
run on threads in this process (in-process: one env per thread; remote: one session per thread).
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np

import agentgym

ENVS = ("agentgym/TextWorld-CoinCollector-v0", "agentgym/MiniWoB-ClickButton-v0")


def play(env, steps: int, seed: int, barrier: threading.Barrier | None) -> list[float]:
    """Step ``env`` ``steps`` times with seeded random admissible actions, resetting to one of the split's
    first four tasks (cached after the first episode: no game generation inside the measurement); the
    seconds of each step."""
    rng = random.Random(seed)
    tasks = [task.id for task in env.unwrapped.tasks[:4]]
    for task_id in tasks:  # warm-up: every game generated and loaded once
        env.reset(options={"task_id": task_id})
    observation, _ = env.reset(seed=seed, options={"task_id": tasks[seed % len(tasks)]})
    if barrier is not None:
        barrier.wait()
    times = []
    while len(times) < steps:
        actions = observation["admissible_actions"]
        action = actions[rng.randrange(len(actions))] if actions else "click[1]"
        start = time.perf_counter()
        observation, _, terminated, truncated, _ = env.step(action)
        times.append(time.perf_counter() - start)
        if terminated or truncated:
            observation, _ = env.reset(options={"task_id": rng.choice(tasks)})
    return times


def measure(make_env, sessions: int, steps: int) -> dict[str, float]:
    envs = [make_env() for _ in range(sessions)]
    barrier = threading.Barrier(sessions) if sessions > 1 else None

    def session(i: int) -> tuple[list[float], float]:
        try:
            return play(envs[i], steps, i, barrier), time.perf_counter()
        finally:  # on the thread that stepped it: Playwright's sync API is bound to its thread
            envs[i].close()

    with ThreadPoolExecutor(max_workers=sessions) as pool:
        started = time.perf_counter()
        per_session, finished = zip(*pool.map(session, range(sessions)))
    wall = max(finished) - started
    times = np.concatenate(per_session) * 1000
    return {"steps_per_s": len(times) / wall, "p50_ms": float(np.percentile(times, 50)),
            "p99_ms": float(np.percentile(times, 99))}


def start_server(env_id: str, sessions: int) -> tuple[str, subprocess.Popen]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "agentgym.cli", "serve-env", env_id, "--port", str(port),
                                "--max-sessions", str(max(sessions, 1))], stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return url, process
        except httpx.TransportError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"serve-env {env_id} did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", nargs="+", default=list(ENVS))
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--steps", type=int, default=200, help="timed steps per session (default: 200)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args()

    rows = []
    for env_id in args.env:
        url, process = start_server(env_id, max(args.sessions))
        try:
            for sessions in args.sessions:
                makers = {
                    "in-process": functools.partial(agentgym.make, env_id, split=args.split),
                    "HTTP": functools.partial(agentgym.make, f"openenv:{url}", split=args.split, transport="http"),
                    "WebSocket": functools.partial(agentgym.make, f"openenv:{url}", split=args.split, transport="ws"),
                }
                results = {name: measure(maker, sessions, args.steps) for name, maker in makers.items()}
                base = results["in-process"]["p50_ms"]
                for transport, result in results.items():
                    row = {"env": env_id, "sessions": sessions, "transport": transport, **result,
                           "overhead_p50_ms": result["p50_ms"] - base}
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)

    print("| env | sessions | transport | steps/s | p50 ms | p99 ms | overhead p50 ms |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['env'].split('/')[-1]} | {row['sessions']} | {row['transport']} | {row['steps_per_s']:.0f} | "
              f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['overhead_p50_ms']:+.2f} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
