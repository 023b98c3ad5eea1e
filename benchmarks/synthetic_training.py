"""Does training in the synthetic env pay off in the real one? Held-out REAL test success of the same policy,
trainer and budget trained three ways (docs/algorithms.md §5, DreamGym):

* real-only: GRPO in the real env for ``iterations`` iterations;
* synthetic-only: DreamGym (GRPO + curriculum) in the synthetic env for ``iterations`` iterations, no real step;
* sim-to-real: DreamGym for ¾ of the iterations in the synthetic env, then ¼ in the real env (a quarter of
  real-only's real interactions).

The policy is the demo's (embedded SmolLM2-135M, choice mode, LoRA rank 16 on the top 8 layers, lr 1e-3,
level-3 coin-collector games with 8 turns, history window 1); every run evaluates on all 20 level-3 test
games of the real env before and after. The experience model is a trained one (``trainer:
experience_model``, e.g. configs/dreamgym-experience-coin.yaml) grounded on the replay buffer it was trained
with. Each finished (condition, seed) is cached as JSON in ``--out`` and read back on a rerun; an
interrupted one resumes from its last iteration's checkpoint (its minutes then count only the resumed part).

    python benchmarks/synthetic_training.py --quick            # 1 seed, 2 tasks × 2 episodes, 10 test games
    python benchmarks/synthetic_training.py                    # 3 seeds, 4 tasks × 4 episodes, 4 iterations

Goals (issue #23): synthetic-only reaches ≥ 80% of real-only's held-out gain; sim-to-real ≥ real-only.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from agentgym.evaluation import mean_std_cell, mean_std_ci
from agentgym.paths import atomic_write
from agentgym.synthetic.paths import trained_settings

RESULTS = Path(__file__).resolve().parent / "results"  # in git: a long run resumes on another machine

CONDITIONS = ("real-only", "synthetic-only", "sim-to-real")
POLICY = dict(env_id="agentgym/TextWorld-CoinCollector-v0", env_kwargs={"max_turns": 8}, task_filter="level3-",
              eval_split="test", history_window=1, model="embedded", mode="choice", lora_rank=16, lora_layers=8,
              lr=1e-3, eval_every=0)


def run_condition(condition: str, seed: int, args: argparse.Namespace, folder: Path) -> dict:
    """Train one condition with one seed; the held-out results and how many real and synthetic steps it took."""
    from agentgym.trainers import dreamgym, grpo

    budget = dict(iterations=args.iterations, tasks_per_iteration=args.tasks, group_size=args.group_size,
                  num_envs=args.tasks * args.group_size, eval_episodes=args.eval_episodes, seed=seed,
                  output_dir=str(folder), resume=(folder / "checkpoint.pt").exists())  # a killed run goes on
    start = time.perf_counter()
    if condition == "real-only":
        result = grpo.train(grpo.GRPOConfig(**POLICY, **budget), progress=True)
    else:
        real = 0 if condition == "synthetic-only" else max(1, args.iterations // 4)
        result = dreamgym.train(dreamgym.DreamGymConfig(
            **POLICY, **budget, real_iterations=real, experience_model=trained_settings(args.experience_model),
            buffer=str(args.buffer), generated_share=0.25, curriculum_seeds=2), progress=True)
    episodes = args.tasks * args.group_size
    steps = {"real": 0.0, "synthetic": 0.0}
    for row in result["rows"]:
        if "train_mean_turns" in row:
            steps["synthetic" if row.get("phase_real") == 0 else "real"] += row["train_mean_turns"] * episodes
    return {"condition": condition, "seed": seed, "before": result["before"], "after": result["after"],
            "real_steps": steps["real"], "synthetic_steps": steps["synthetic"],
            "generated_tasks": max([row.get("generated_tasks", 0) for row in result["rows"]] or [0]),
            "seconds": time.perf_counter() - start}


def replayed_wins(folder: Path) -> dict[str, int]:
    """The run's synthetic training episodes of real tasks replayed in the real env: how many the synthetic
    env scored as won, how many of those the real game also gives, and how many real wins it did not score."""
    from agentgym.records import read_jsonl
    from agentgym.synthetic.fidelity import replay_in_real

    counts = {"episodes": 0, "synthetic_wins": 0, "confirmed": 0, "missed": 0}
    for path in sorted((folder / "trajectories").glob("*.jsonl")):
        trajectories = [t for t in read_jsonl(path) if t.env_id.startswith("agentgym/Synthetic-")]
        real = replay_in_real(trajectories, POLICY["env_id"], **POLICY["env_kwargs"])
        for trajectory, won in zip(trajectories, real):
            if won is not None:
                counts["episodes"] += 1
                counts["synthetic_wins"] += trajectory.won
                counts["confirmed"] += trajectory.won and won
                counts["missed"] += won and not trajectory.won
    return counts


def plot(results: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axis = plt.subplots(figsize=(6, 3.5))
    names = [c for c in CONDITIONS if results.get(c)]
    for offset, (label, key) in enumerate((("before", "before"), ("after", "after"))):
        means = [np.mean([r[key]["eval_success_rate"] for r in results[c]]) for c in names]
        stds = [np.std([r[key]["eval_success_rate"] for r in results[c]], ddof=1) if len(results[c]) > 1 else 0
                for c in names]
        axis.bar(np.arange(len(names)) + 0.38 * offset, means, 0.38, yerr=stds, label=label, capsize=3)
    axis.set_xticks(np.arange(len(names)) + 0.19, names)
    axis.set_ylabel("held-out real test success")
    axis.set_ylim(0, 1)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 tasks × 2 episodes, 10 test games")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    parser.add_argument("--experience-model", type=Path, default=Path("runs/experience-coin-level3/final"),
                        help="a trained experience model's folder (trainer: experience_model's final/)")
    parser.add_argument("--buffer", type=Path, default=Path("runs/experience-coin-level3/buffer.jsonl"),
                        help="the replay buffer of real transitions the experience model retrieves from")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    args.tasks, args.group_size, args.eval_episodes = (2, 2, 10) if args.quick else (4, 4, 20)
    args.out = args.out or RESULTS / ("synthetic_training" + ("-quick" if args.quick else ""))

    results: dict[str, list[dict]] = {}
    for seed in args.seeds:
        for condition in args.conditions:
            cached = args.out / f"{condition}-seed{seed}.json"
            if cached.exists():
                record = json.loads(cached.read_text())
            else:
                print(f"== {condition}, seed {seed}", flush=True)
                record = run_condition(condition, seed, args, args.out / "runs" / f"{condition}-seed{seed}")
                atomic_write(cached, lambda handle, r=record: handle.write(json.dumps(r, indent=1).encode()))
            results.setdefault(condition, []).append(record)

    print(f"\nHeld-out REAL test success, level-3 coin collector, {len(args.seeds)} seed(s) "
          f"({args.eval_episodes} games; {args.iterations} iterations of {args.tasks} tasks × {args.group_size} episodes):")
    print("| condition | real env steps in training | synthetic steps | before | after | gain | minutes per run |")
    print("|---|---|---|---|---|---|---|")
    gains = {}
    for condition in CONDITIONS:
        runs = results.get(condition)
        if not runs:
            continue
        gains[condition] = [r["after"]["eval_success_rate"] - r["before"]["eval_success_rate"] for r in runs]
        print(f"| {condition} | {mean_std_ci([r['real_steps'] for r in runs])['mean']:.0f} | "
              f"{mean_std_ci([r['synthetic_steps'] for r in runs])['mean']:.0f} | "
              f"{mean_std_cell([r['before']['eval_success_rate'] for r in runs])} | "
              f"{mean_std_cell([r['after']['eval_success_rate'] for r in runs])} | {mean_std_cell(gains[condition])} | "
              f"{mean_std_ci([r['seconds'] / 60 for r in runs])['mean']:.0f} |")
    if {"real-only", "synthetic-only"} <= set(gains):
        real, synthetic = (mean_std_ci(gains[c])["mean"] for c in ("real-only", "synthetic-only"))
        share = synthetic / real if real > 0 else float("nan")
        print(f"\nsynthetic-only gain / real-only gain: {share:.0%} (goal ≥ 80%)")
    if {"real-only", "sim-to-real"} <= set(results):
        after = {c: mean_std_ci([r["after"]["eval_success_rate"] for r in results[c]])["mean"]
                 for c in ("real-only", "sim-to-real")}
        print(f"sim-to-real after − real-only after: {after['sim-to-real'] - after['real-only']:+.1%} (goal ≥ 0)")
    synthetic = [(c, s) for c in CONDITIONS[1:] if c in results for s in args.seeds]
    if synthetic:
        print("\nThe synthetic training episodes of real tasks, their actions replayed in the real env:")
        print("| condition | seed | episodes | synthetic wins | of them, real wins | real wins the synthetic env missed |")
        print("|---|---|---|---|---|---|")
        for condition, seed in synthetic:
            n = replayed_wins(args.out / "runs" / f"{condition}-seed{seed}")
            print(f"| {condition} | {seed} | {n['episodes']} | {n['synthetic_wins']} | {n['confirmed']} "
                  f"({n['confirmed'] / max(1, n['synthetic_wins']):.0%}) | {n['missed']} |")
    plot(results, args.out / "synthetic_training.png")
    print(f"curves: {args.out / 'synthetic_training.png'}")


if __name__ == "__main__":
    main()
