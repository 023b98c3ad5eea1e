"""IGPO against GRPO on multi-turn search QA, from the same behaviour-cloned warm start.

The embedded SmolLM2-135M cannot search zero-shot, so the oracle's trajectories on the train split's
questions (gold queries, then the answer) are cloned once with the `sft` trainer. From that adapter,
GRPO (the answer's F1 broadcast to every turn) and IGPO (information-gain rewards on search turns, F1
on the answer turn) train with the same budget — iterations × tasks × group size — for each seed. Every
run is then evaluated greedily on `test` (unseen countries) and `test_ood` (held-out regions and
compositions) — the first 40 questions of each in the full budget — next to the cloned start and the
oracle for scale:

* EM and F1 of the final answer (0 when the episode ends without one), searches per question, and the
  share of invalid replies (neither a search nor an answer), mean ± std over the seeds;
* held-out F1 against training episodes (the loop's sampled evaluations on part of `test`), as a PNG;
* time per iteration, and the share of it IGPO spends in its teacher-forced passes.

Each finished unit — the clone, each (method, seed) run, each evaluation — is cached under --out, so a
rerun resumes where it stopped (an interrupted run continues from its checkpoint).

    python benchmarks/igpo_vs_grpo.py --quick        # 1 seed, a tiny budget: minutes on a quiet machine
    python benchmarks/igpo_vs_grpo.py                # 3 seeds, the full budget: ~1 hour on 2 cores, resumable
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from agentgym.evaluation import mean_std_cell, plot_seed_bands
from agentgym.paths import cached_json
from agentgym.policies import OraclePolicy, Policy
from agentgym.prompting import PromptTemplate
from agentgym.records import Trajectory
from agentgym.rollout import RolloutEngine
from agentgym.trainers.config import RunConfig
from agentgym.trainers.grpo import GRPOConfig
from agentgym.trainers.grpo import train as train_grpo
from agentgym.trainers.igpo import IGPOConfig
from agentgym.trainers.igpo import train as train_igpo
from agentgym.trainers.model import build_policy
from agentgym.trainers.sft import SFTConfig
from agentgym.trainers.sft import train as train_sft

RESULTS = Path(__file__).resolve().parent / "results"  # in git: a long run resumes on another machine

ENV = "agentgym/SearchQA-Factbook-v0"
SHARED = dict(env_id=ENV, env_kwargs={"reward": "f1", "max_turns": 5}, prompt_style="chat", model="embedded",
              mode="generate", max_new_tokens=32, lora_rank=16, lora_layers=8, num_envs=8)
METHODS: dict[str, tuple[type, Callable]] = {"GRPO": (GRPOConfig, train_grpo), "IGPO": (IGPOConfig, train_igpo)}
BUDGETS = {
    # seeds; oracle episodes cloned and passes over them; RL iterations × tasks × group size, learning
    # rate and samples per optimizer step; held-out evaluation every N iterations on the first Q test
    # questions (the curve); questions per final split.
    "quick": dict(seeds=[0], clone_episodes=40, clone_passes=1, iterations=2, tasks=2, group=4, lr=5e-4, minibatch=8,
                  eval_every=1, curve_questions=10, questions=20),
    # An iteration's ~32 turn samples make 4 optimizer steps (32 in a run): with lr 1e-4 and one step an
    # iteration, 8 steps left every greedy answer of the cloned start unchanged (runs/bench-igpo, *-seed0).
    # The first 40 questions of each split keep the 8 policies' evaluations under half an hour.
    "full": dict(seeds=[0, 1, 2], clone_episodes=200, clone_passes=3, iterations=8, tasks=4, group=4, lr=5e-4,
                 minibatch=8, eval_every=4, curve_questions=20, questions=40),
}
SPLITS = ("test", "test_ood")
PHASES = ("rollout", "teacher_forced", "update")  # an iteration's training time (evaluations apart)


def search_metrics(trajectories: list[Trajectory]) -> dict[str, float]:
    """EM and F1 of the final answers (0 without one), searches per question, invalid replies per reply."""
    def answer_score(trajectory: Trajectory, key: str) -> float:
        return float(trajectory.turns[-1].info.get(key, 0.0)) if trajectory.terminated else 0.0

    turns = [turn for t in trajectories for turn in t.turns]
    return {"em": float(np.mean([answer_score(t, "em") for t in trajectories])),
            "f1": float(np.mean([answer_score(t, "f1") for t in trajectories])),
            "searches": float(np.mean([sum("search" in turn.info for turn in t.turns) for t in trajectories])),
            "invalid": float(np.mean([turn.invalid for turn in turns])),
            "answered": float(np.mean([t.terminated for t in trajectories]))}


def evaluate(policy: Policy, split: str, questions: int | None) -> dict[str, float]:
    """``policy`` on the first ``questions`` questions of ``split`` (all of them with None), one episode each."""
    template = PromptTemplate(style=SHARED["prompt_style"])
    with RolloutEngine(ENV, split, num_envs=SHARED["num_envs"], template=template,
                       env_kwargs=SHARED["env_kwargs"]) as engine:
        ids = list(engine.tasks)[:questions]
        trajectories = engine.run(policy, engine.plan(task_ids=ids, seed=0), progress=f"{policy.name} on {split}")
    return {**search_metrics(trajectories), "questions": len(ids)}


def greedy(adapters: list[str]) -> Policy:
    """The embedded model with the adapters merged in, decoding greedily."""
    return build_policy(RunConfig(**{**SHARED, "init_adapters": adapters, "lora_rank": 0, "temperature": 0.0}))


def evaluations_of(name: str, make_policy: Callable[[], Policy], out: Path,
                   questions: int | None) -> dict[str, dict[str, float]]:
    """``name``'s cached evaluation on each split; the policy is built only if one is missing."""
    policy = None

    def run(split: str) -> dict[str, float]:
        nonlocal policy
        policy = policy or make_policy()
        return evaluate(policy, split, questions)

    return {split: cached_json(out / "eval" / f"{name}-{split}.json", lambda split=split: run(split)) for split in SPLITS}


def clone(out: Path, budget: dict[str, Any]) -> str:
    """The warm start: the oracle's train trajectories cloned with LoRA; returns the adapter folder."""
    folder = out / "clone"
    if not (folder / "final").is_dir():
        train_sft(SFTConfig(**SHARED, collect_policy="oracle", collect_episodes=budget["clone_episodes"],
                            iterations=budget["clone_passes"], lr=1e-3, eval_every=0, eval_split="dev",
                            eval_episodes=4, output_dir=str(folder),  # the clone is evaluated below, greedily
                            resume=(folder / "checkpoint.pt").exists()))
    return str(folder / "final")


def unit_name(method: str, seed: int, budget: dict[str, Any]) -> str:
    """A run's folder and cache name: another learning rate never reuses its results."""
    return f"{method.lower()}-lr{budget['lr']:g}-seed{seed}"


def rl_run(method: str, seed: int, start: str, out: Path, budget: dict[str, Any]) -> dict[str, Any]:
    """One RL run from the warm start (resumed from its checkpoint if it was interrupted): its metrics rows
    and its training time (rollouts, teacher-forced passes and updates; evaluations left out)."""
    folder = out / unit_name(method, seed, budget)
    config_class, train = METHODS[method]
    config = config_class(**SHARED, init_adapters=[start], iterations=budget["iterations"],
                          tasks_per_iteration=budget["tasks"], group_size=budget["group"], lr=budget["lr"],
                          minibatch_size=budget["minibatch"], seed=seed,
                          eval_split="test", eval_every=budget["eval_every"], eval_episodes=budget["curve_questions"],
                          save_episodes=budget["tasks"] * budget["group"], output_dir=str(folder),
                          resume=(folder / "checkpoint.pt").exists())
    rows = train(config)["rows"]
    trained = [row for row in rows if "samples" in row]
    return {"rows": rows, "wall_seconds": sum(sum(row.get(f"seconds_{phase}", 0.0) for phase in PHASES) for row in trained),
            "final": str(folder / "final"), "episodes_per_iteration": budget["tasks"] * budget["group"]}


def print_tables(evaluations: dict[str, list[dict[str, dict[str, float]]]], runs: dict[str, list[dict[str, Any]]],
                 seeds: list[int]) -> None:
    for split in SPLITS:
        count = evaluations["oracle"][0][split]["questions"]
        print(f"\nHeld-out `{split}` ({count} questions, greedy decoding), mean ± std over seeds {seeds}:\n")
        print("| policy | EM | F1 | searches / question | invalid replies | answered | training wall time |")
        print("|---|---|---|---|---|---|---|")
        for label, results in evaluations.items():
            rows = [r[split] for r in results]
            wall = mean_std_cell([r["wall_seconds"] / 60 for r in runs[label]], percent=False) + " min" if label in runs else "—"
            print(f"| {label} | {mean_std_cell([r['em'] for r in rows])} | {mean_std_cell([r['f1'] for r in rows])} | "
                  f"{mean_std_cell([r['searches'] for r in rows], percent=False)} | {mean_std_cell([r['invalid'] for r in rows])} | "
                  f"{mean_std_cell([r['answered'] for r in rows])} | {wall} |")


def phase_seconds(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Mean seconds per training iteration in each phase (held-out evaluations left out)."""
    trained = [row for row in rows if "samples" in row]
    return {phase: float(np.mean([row.get(f"seconds_{phase}", 0.0) for row in trained])) for phase in PHASES}


def print_timing(runs: dict[str, list[dict[str, Any]]]) -> None:
    print("\nSeconds per iteration (mean over iterations and seeds; held-out evaluations excluded; provisional "
          "on a shared machine):\n")
    print("| method | rollout | teacher-forced passes | update | total | teacher-forced share |")
    print("|---|---|---|---|---|---|")
    for method, results in runs.items():
        seconds = [phase_seconds(r["rows"]) for r in results]
        mean = {phase: float(np.mean([s[phase] for s in seconds])) for phase in seconds[0]}
        total = sum(mean.values())
        print(f"| {method} | {mean['rollout']:.0f} | {mean['teacher_forced']:.0f} | {mean['update']:.0f} | "
              f"{total:.0f} | {mean['teacher_forced'] / total:.1%} |")


def print_gains(results: list[dict[str, Any]]) -> None:
    """IGPO's own diagnostics: the mean information gain per turn index and the share of negative gains."""
    rows = [row for r in results for row in r["rows"] if "ig_negative_share" in row]
    turns = sorted({int(key.removeprefix("ig_mean_turn")) for row in rows for key in row if key.startswith("ig_mean_turn")})
    gains = ", ".join(f"turn {t}: {np.mean([row[f'ig_mean_turn{t}'] for row in rows if f'ig_mean_turn{t}' in row]):+.3f}"
                      for t in turns)
    print(f"\nIGPO's information gain per turn index (mean over iterations and seeds): {gains}; negative gains: "
          f"{np.mean([row['ig_negative_share'] for row in rows]):.1%} of gains; p(answer) before the first search "
          f"{np.mean([row['p_gt_first'] for row in rows]):.3f}; format penalties on "
          f"{np.mean([row['format_penalty_share'] for row in rows]):.1%} of turns.")


def saturated_groups(out: Path, runs: dict[str, list[dict[str, Any]]]) -> None:
    """How many GRPO groups teach nothing (every episode the same F1): where IGPO's turn rewards can add signal."""
    for method, results in runs.items():
        same, total = 0, 0
        for result in results:
            folder = Path(result["final"]).parent / "trajectories"
            for path in sorted(folder.glob("iteration-*.jsonl")):
                groups: dict[str, set[float]] = {}
                for line in path.read_text().splitlines():
                    trajectory = Trajectory.from_dict(json.loads(line))
                    groups.setdefault(trajectory.group_id, set()).add(round(trajectory.total_reward, 6))
                same += sum(len(returns) == 1 for returns in groups.values())
                total += len(groups)
        print(f"{method}: {same} of {total} training groups ({same / max(total, 1):.0%}) had the same F1 in every "
              "episode (no GRPO signal).")


def plot_curves(runs: dict[str, list[dict[str, Any]]], path: Path) -> None:
    series = {}
    for method, results in runs.items():
        curves = [sorted({row["iteration"]: row["eval_mean_reward"] for row in result["rows"]
                          if "eval_mean_reward" in row}.items()) for result in results]
        episodes = [iteration * results[0]["episodes_per_iteration"] for iteration, _ in curves[0]]
        series[method] = (episodes, [[value for _, value in curve] for curve in curves])
    plot_seed_bands(series, path, xlabel="training episodes", ylabel="held-out F1 (sampled, part of test)",
                    title="IGPO vs GRPO from the same cloned start")
    print(f"\nHeld-out F1 against training episodes: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 seed and a tiny budget (minutes)")
    parser.add_argument("--seeds", type=int, nargs="+", help="override the budget's seeds")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results/igpo[-quick])")
    parser.add_argument("--figure", type=Path, help="the curve's PNG (default OUT/held_out_f1.png)")
    args = parser.parse_args()
    budget = dict(BUDGETS["quick" if args.quick else "full"])
    seeds = args.seeds or budget["seeds"]
    out = args.out or RESULTS / ("igpo-quick" if args.quick else "igpo")
    print(f"Budget: {budget}; seeds {seeds}; results in {out}", flush=True)

    start = clone(out, budget)
    questions = budget["questions"]
    evaluations = {"oracle": [evaluations_of("oracle", OraclePolicy, out, questions)],
                   "cloned start": [evaluations_of("clone", lambda: greedy([start]), out, questions)]}
    runs: dict[str, list[dict[str, Any]]] = {method: [] for method in METHODS}
    for seed in seeds:
        for method in METHODS:
            name = unit_name(method, seed, budget)
            run = cached_json(out / "runs" / f"{name}.json",
                              lambda method=method, seed=seed: rl_run(method, seed, start, out, budget))
            runs[method].append(run)
            results = evaluations_of(name, lambda run=run: greedy([start, run["final"]]), out, questions)
            evaluations.setdefault(method, []).append(results)
            print(f"{method} seed {seed}: test F1 {results['test']['f1']:.3f}, test_ood F1 {results['test_ood']['f1']:.3f}",
                  flush=True)

    print_tables(evaluations, runs, seeds)
    print_timing(runs)
    print_gains(runs["IGPO"])
    saturated_groups(out, runs)
    plot_curves(runs, args.figure or out / "held_out_f1.png")


if __name__ == "__main__":
    main()
