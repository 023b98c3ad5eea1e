"""Behaviour cloning as a warm start for free generation, then RL from the cloned weights.

Zero-shot, the embedded SmolLM2-135M rarely writes an admissible command, so group-based RL has no
signal. This script collects oracle trajectories on train games once, clones them with LoRA for each
seed (held-out `test` success before and after, mean ± std over the seeds), then runs GRPO from the
first seed's cloned weights on harder games (level 5 by default, never seen in cloning) and reports where
RL took it. A seed whose cloning already finished in --out is read back, not retrained.

    python benchmarks/bc_warm_start.py [--seeds 0 1 2] [--episodes 100] [--rl-iterations 4]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from agentgym.evaluation import mean_std_cell
from agentgym.policies import OraclePolicy
from agentgym.prompting import PromptTemplate
from agentgym.records import write_jsonl
from agentgym.rollout import RolloutEngine
from agentgym.trainers.grpo import GRPOConfig
from agentgym.trainers.grpo import train as train_grpo
from agentgym.trainers.sft import SFTConfig
from agentgym.trainers.sft import train as train_sft

SHARED = dict(env_id="agentgym/TextWorld-CoinCollector-v0", env_kwargs={"max_turns": 8}, task_filter="level3-",
              eval_split="test", eval_episodes=20, history_window=1, model="embedded", mode="generate",
              max_new_tokens=10, lora_rank=16, lora_layers=8, num_envs=6, eval_every=0)


def finished_run(folder: Path) -> dict | None:
    """The before/after evaluations of a cloning run that already finished in ``folder``, else None."""
    metrics = folder / "metrics.jsonl"
    if not (folder / "final").is_dir() or not metrics.exists():
        return None
    evaluations = [row for row in map(json.loads, metrics.read_text().splitlines()) if "eval_success_rate" in row]
    return {"before": evaluations[0], "after": evaluations[-1]} if len(evaluations) >= 2 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=100, help="oracle trajectories to clone")
    parser.add_argument("--epochs", type=int, default=2, help="passes over the expert data")
    parser.add_argument("--rl-iterations", type=int, default=4, help="GRPO iterations after cloning (0: none)")
    parser.add_argument("--rl-filter", default="level5-", help="games RL trains and is evaluated on")
    parser.add_argument("--rl-max-turns", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-bc"))
    args = parser.parse_args()

    data = args.out / "expert.jsonl"
    template = PromptTemplate(history_window=SHARED["history_window"])
    with RolloutEngine(SHARED["env_id"], "train", num_envs=SHARED["num_envs"], template=template,
                       env_kwargs=SHARED["env_kwargs"]) as engine:
        ids = [task for task in engine.tasks if SHARED["task_filter"] in task][: args.episodes]
        expert = engine.run(OraclePolicy(), engine.plan(task_ids=ids, seed=0), progress="oracle")
    write_jsonl(data, expert)
    print(f"{len(expert)} oracle trajectories ({sum(t.num_turns for t in expert)} turns) in {data}")

    results = []
    for seed in args.seeds:
        if (done := finished_run(args.out / f"bc-seed{seed}")) is not None:
            results.append(done)
            print(f"seed {seed}: read back from {args.out / f'bc-seed{seed}'}")
            continue
        config = SFTConfig(**SHARED, data=[str(data)], iterations=args.epochs, lr=1e-3, seed=seed,
                           output_dir=str(args.out / f"bc-seed{seed}"))
        results.append(train_sft(config, progress=True))
        print(f"seed {seed}: {results[-1]['before']['eval_success_rate']:.1%} -> "
              f"{results[-1]['after']['eval_success_rate']:.1%}", flush=True)

    print(f"\nHeld-out test success, free generation, {len(args.seeds)} seeds (mean ± std):")
    print("| | success | invalid actions |")
    print("|---|---|---|")
    print(f"| random choice (for scale) | {mean_std_cell([r['before']['random_success_rate'] for r in results])} | — |")
    for label in ("before", "after"):
        print(f"| {label} cloning | {mean_std_cell([r[label]['eval_success_rate'] for r in results])} | "
              f"{mean_std_cell([r[label]['eval_invalid_rate'] for r in results])} |")

    if args.rl_iterations:
        harder = {**SHARED, "task_filter": args.rl_filter, "env_kwargs": {"max_turns": args.rl_max_turns}}
        config = GRPOConfig(**harder, init_adapters=[str(args.out / f"bc-seed{args.seeds[0]}" / "final")],
                            iterations=args.rl_iterations, tasks_per_iteration=3, group_size=4, lr=2e-4,
                            seed=args.seeds[0], output_dir=str(args.out / "grpo-after-bc"))
        rl = train_grpo(config)
        print(f"\nGRPO from the cloned weights on {args.rl_filter} games (seed {args.seeds[0]}, "
              f"{args.rl_iterations} iterations): "
              f"{rl['before']['eval_success_rate']:.1%} -> {rl['after']['eval_success_rate']:.1%} held-out success")


if __name__ == "__main__":
    main()
