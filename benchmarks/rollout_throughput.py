"""Rollout throughput: N concurrent environments against one at a time, side by side in one run.

The same plan (tasks, groups, seeds) and the same seeded random policy run through the rollout engine
with ``num_envs=1`` (sequential), and with N envs stepped sequentially, on threads, in worker processes
and as Ray actors on a local Ray instance (when the extra ``ray`` is installed). Prompt building and
parsing are included, as in training. Games are generated, workers and actors started before timing
starts.

    python benchmarks/rollout_throughput.py [--env agentgym/TextWorld-Simple-v0] [--num-envs 4] [--tasks 8]
"""

from __future__ import annotations

import argparse
import importlib.util
import time

import agentgym
from agentgym.policies import make_policy
from agentgym.rollout import RolloutEngine


def timed_run(env_id: str, split: str, num_envs: int, concurrency: str, task_ids, group_size: int):
    with RolloutEngine(env_id, split, num_envs=num_envs, concurrency=concurrency) as engine:
        plan = engine.plan(task_ids=task_ids, group_size=group_size, seed=0, run_id="bench")
        engine.run(make_policy("random", seed=0), plan[:num_envs])  # warm-up: workers started, games loaded
        start = time.perf_counter()
        trajectories = engine.run(make_policy("random", seed=0), plan)
        seconds = time.perf_counter() - start
    turns = sum(t.num_turns for t in trajectories)
    return turns, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="agentgym/TextWorld-Simple-v0")
    parser.add_argument("--split", default="train")
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--group-size", type=int, default=4)
    args = parser.parse_args()

    env = agentgym.make(args.env, split=args.split)
    task_ids = [task.id for task in env.unwrapped.tasks[: args.tasks]]
    for task_id in task_ids:  # generate (or load) every game before timing
        env.reset(options={"task_id": task_id})
    env.close()

    modes = ("sequential", "thread", "process") + (("ray",) if importlib.util.find_spec("ray") else ())
    rows = [("1 env, sequential", 1, "sequential")] + [
        (f"{args.num_envs} envs, {mode}", args.num_envs, mode) for mode in modes
    ]
    print(f"{args.env} ({args.split}): {len(task_ids)} tasks x {args.group_size} episodes, random policy")
    baseline = None
    for label, num_envs, mode in rows:
        turns, seconds = timed_run(args.env, args.split, num_envs, mode, task_ids, args.group_size)
        rate = turns / seconds
        baseline = baseline or rate
        print(f"  {label:24s} {turns:5d} turns {seconds:6.2f} s  {rate:7.1f} turns/s  x{rate / baseline:.2f}")


if __name__ == "__main__":
    main()
