"""What a transition costs: the synthetic coin-collector env (the experience model writes every step) against
the real one, one episode at a time and with 8 and 32 episodes stepped together (the synthetic env then
sends all their steps to the model as one batch).

Both run through the rollout engine with a uniform random policy on level-3 test games, so the figure is
the environment's cost per transition (the policy is free): the real env in its own worker processes, the
synthetic env on threads sharing one model. Each measurement is cached as JSON in ``--out``.

    python benchmarks/synthetic_cost.py --quick     # 1 and 8 episodes, 2 turns each
    python benchmarks/synthetic_cost.py             # 1, 8 and 32 episodes, 4 turns each
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from agentgym.paths import atomic_write
from agentgym.policies import make_policy
from agentgym.rollout import RolloutEngine
from agentgym.synthetic import synthetic_id
from agentgym.synthetic.paths import trained_settings

REAL = "agentgym/TextWorld-CoinCollector-v0"
EXPENSIVE = ("WebArena-style site (shopping / forum): about 2 minutes per full reset, by the VisualWebArena "
             "maintainers (web-arena-x/visualwebarena#60); no published per-step figure was found")


def measure(env_id: str, episodes: int, turns: int, env_kwargs: dict, concurrency: str) -> dict:
    """Seconds per transition of ``episodes`` episodes of ``turns`` turns stepped together (resets included)."""
    with RolloutEngine(env_id, "test", num_envs=episodes, concurrency=concurrency, env_kwargs=env_kwargs) as engine:
        ids = [task for task in engine.tasks if "level3-" in task]
        plan = engine.plan(task_ids=(ids * episodes)[:episodes], seed=0)
        engine.run(make_policy("random", seed=0), plan[:1])  # warm up: engines started, the model loaded
        start = time.perf_counter()
        trajectories = engine.run(make_policy("random", seed=0), plan)
        seconds = time.perf_counter() - start
    steps = sum(t.num_turns for t in trajectories)
    errors = sum("experience_model_error" in turn.info for t in trajectories for turn in t.turns)
    return {"episodes": episodes, "transitions": steps, "seconds": seconds, "seconds_per_transition": seconds / steps,
            "experience_model_errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 and 8 episodes of 2 turns")
    parser.add_argument("--experience-model", type=Path, default=Path("runs/experience-coin-level3/final"),
                        help="a trained experience model's folder (trainer: experience_model's final/)")
    parser.add_argument("--buffer", type=Path, default=Path("runs/experience-coin-level3/buffer.jsonl"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    batches, turns = ((1, 8), 2) if args.quick else ((1, 8, 32), 4)
    out = args.out or Path("results/synthetic_cost" + ("-quick" if args.quick else ""))
    synthetic_kwargs = {"model": trained_settings(args.experience_model), "buffer": str(args.buffer), "max_turns": turns}
    sides = {"real": (REAL, {"max_turns": turns}, "process"),
             "synthetic": (synthetic_id(REAL), synthetic_kwargs, "thread")}

    results: dict[tuple[str, int], dict] = {}
    for side, (env_id, kwargs, concurrency) in sides.items():
        for episodes in batches:
            cached = out / f"{side}-{episodes}.json"
            if cached.exists():
                result = json.loads(cached.read_text())
            else:
                print(f"== {side}, {episodes} episode(s) together", flush=True)
                result = measure(env_id, episodes, turns, kwargs, concurrency)
                atomic_write(cached, lambda handle, r=result: handle.write(json.dumps(r, indent=1).encode()))
            results[side, episodes] = result

    print(f"\nCost per transition, level-3 coin collector, {turns}-turn episodes of a random policy (resets included):")
    print("| episodes stepped together | real env | synthetic env | synthetic / real | experience-model errors |")
    print("|---|---|---|---|---|")
    for episodes in batches:
        real, synthetic = results["real", episodes], results["synthetic", episodes]
        print(f"| {episodes} | {real['seconds_per_transition'] * 1000:.1f} ms | "
              f"{synthetic['seconds_per_transition'] * 1000:.0f} ms | "
              f"×{synthetic['seconds_per_transition'] / real['seconds_per_transition']:.0f} | "
              f"{synthetic['experience_model_errors']} of {synthetic['transitions']} |")
    print(f"\nFor scale, an expensive real env: {EXPENSIVE}.")
    plot(results, batches, out / "synthetic_cost.png")
    print(f"figure: {out / 'synthetic_cost.png'}")


def plot(results: dict, batches: tuple[int, ...], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.2))
    for side in ("real", "synthetic"):
        axis.plot(batches, [results[side, b]["seconds_per_transition"] for b in batches], marker="o", label=side)
    axis.set_xscale("log", base=2)
    axis.set_yscale("log")
    axis.set_xlabel("episodes stepped together")
    axis.set_ylabel("seconds per transition")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


if __name__ == "__main__":
    main()
