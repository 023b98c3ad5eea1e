"""``python -m agentgym.synthetic collect ENV_ID --out FILE``: a replay buffer of real transitions."""

from __future__ import annotations

import argparse
import sys

from agentgym.synthetic.buffer import collect_transitions, write_transitions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agentgym.synthetic", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    collect = commands.add_parser("collect", help="real transitions of an env, played by its oracle mixed with "
                                                  "random actions, as a replay buffer file")
    collect.add_argument("env_id")
    collect.add_argument("--out", required=True, help="the JSONL file to write")
    collect.add_argument("--split", default="train")
    collect.add_argument("--episodes", type=int, default=200, help="episodes in all")
    collect.add_argument("--episodes-per-task", type=int, default=1, help="episodes of each task drawn")
    collect.add_argument("--epsilon", type=float, default=0.3, help="share of random actions among the oracle's")
    collect.add_argument("--task-filter", default="", help="only tasks whose id contains this text")
    collect.add_argument("--seed", type=int, default=0)
    collect.add_argument("--num-envs", type=int, default=4)
    args = parser.parse_args(argv)
    transitions = collect_transitions(args.env_id, args.split, episodes=args.episodes,
                                      episodes_per_task=args.episodes_per_task, epsilon=args.epsilon,
                                      seed=args.seed, task_filter=args.task_filter, num_envs=args.num_envs,
                                      progress=True)
    path = write_transitions(args.out, transitions)
    print(f"wrote {len(transitions)} transitions to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
