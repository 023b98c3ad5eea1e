"""AgentFlow with Flow-GRPO against a single agent, same model, same budget, on questions that need search
and calculation (agentgym/SearchQA-FactbookMath-v0 and its planner view agentgym/AgentFlow-FactbookMath-v0).

For each system — the single agent on the plain search env (it must do the arithmetic itself) and AgentFlow
(the model is the planner; scripted executor, verifier and generator; search, calculator and python tools;
offline judge) — the embedded SmolLM2-135M is cloned once from the scripted oracle's train trajectories
(``sft``) and evaluated; then for each seed it is trained from that clone with GRPO for the same budget
(AgentFlow: Flow-GRPO, i.e. ``group_stats: trajectories``; single agent: GRPO's turn statistics) and
evaluated again. Evaluations decode greedily (the paper's test temperature) on the same ``test`` and
``test_ood`` questions for every system and seed, so the cloned rows have no spread over seeds: the seeds
vary the RL runs (sampling, minibatch order), as in benchmarks/igpo_vs_grpo.py. The scripted planner is shown
for scale.

Every finished clone, evaluation and (system, seed) run is cached as JSON under --out and read back on a
rerun, so a killed run resumes; an interrupted training stage resumes from its checkpoint. Prints mean ± std over seeds of
accuracy, tool calls per question, tool errors per question and evaluation seconds per question, writes
the table and one example trajectory (every module's input and output) to --out, and the GRPO training
curves to --out/curves.png.

    python benchmarks/agentflow.py --quick      # 1 seed, tiny budget (minutes)
    python benchmarks/agentflow.py              # 3 seeds, the full budget (hours on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from agentgym.evaluation import mean_std_cell
from agentgym.paths import cached_json
from agentgym.policies import Policy, make_policy
from agentgym.prompting import PromptTemplate
from agentgym.records import Trajectory
from agentgym.rollout import RolloutEngine
from agentgym.trainers.config import RunConfig
from agentgym.trainers.grpo import GRPOConfig
from agentgym.trainers.grpo import train as train_grpo
from agentgym.trainers.model import build_policy
from agentgym.trainers.run import training_seconds
from agentgym.trainers.sft import SFTConfig
from agentgym.trainers.sft import train as train_sft

RESULTS = Path(__file__).resolve().parent / "results"  # in git: a long run resumes on another machine

SYSTEMS = {
    # name: (env id, recent turns in the prompt: the single agent must see its searches; AgentFlow's memory
    # is in its observation, GRPO group statistics)
    "single-agent": ("agentgym/SearchQA-FactbookMath-v0", 3, "turns"),
    "agentflow": ("agentgym/AgentFlow-FactbookMath-v0", 0, "trajectories"),
}
SPLITS = ("test", "test_ood")
MODEL = dict(model="embedded", mode="generate", max_new_tokens=32, lora_rank=16, lora_layers=8, num_envs=4)
BUDGETS = {
    # seeds; oracle episodes cloned and passes over them; RL iterations × tasks × group size, learning rate and
    # samples per optimizer step (benchmarks/igpo_vs_grpo.py found lr 1e-4 with one step an iteration left a
    # clone's greedy answers unchanged); questions per held-out split. On 2 CPU cores a prompt token costs
    # ~2.5 ms forward and ~4.5 ms forward and backward, and planner prompts grow to ~1,100 tokens with the
    # memory, so the full budget is several hours: run it across sittings (it resumes).
    "quick": dict(seeds=[0], expert_episodes=24, sft_passes=1, iterations=1, tasks=2, group=2, lr=5e-4,
                  minibatch=8, eval_episodes=6),
    "full": dict(seeds=[0, 1, 2], expert_episodes=120, sft_passes=2, iterations=6, tasks=4, group=4, lr=5e-4,
                 minibatch=8, eval_episodes=40),
}


def evaluate(policy: Policy, env_id: str, split: str, episodes: int, history: int) -> tuple[dict[str, float],
                                                                                            list[Trajectory]]:
    """Accuracy, tool calls, tool errors, invalid replies and seconds per question on a fixed sample of
    ``split`` (the same questions for every system and seed)."""
    with RolloutEngine(env_id, split, num_envs=MODEL["num_envs"], template=PromptTemplate(history_window=history)) \
            as engine:
        ids = sorted(engine.tasks)
        picked = [ids[i] for i in np.random.default_rng(10_000).permutation(len(ids))[:episodes]]
        start = time.perf_counter()
        trajectories = engine.run(policy, engine.plan(task_ids=picked, seed=10_000, run_id=f"eval-{split}"))
        seconds = time.perf_counter() - start
    calls = [sum(int(t.info.get("tool_calls", "search" in t.info)) for t in traj.turns) for traj in trajectories]
    errors = [sum(int(t.info.get("tool_errors", 0)) for t in traj.turns) for traj in trajectories]
    return {"accuracy": float(np.mean([t.won for t in trajectories])), "tool_calls": float(np.mean(calls)),
            "tool_errors": float(np.mean(errors)),
            "invalid": float(np.mean([t.num_invalid / max(t.num_turns, 1) for t in trajectories])),
            "seconds": seconds / len(trajectories)}, trajectories


def trained_policy(adapters: list[str]) -> Policy:
    """The model with the run's adapters merged, answering greedily (the paper's test temperature)."""
    return build_policy(RunConfig(**{**MODEL, "lora_rank": 0}, init_adapters=adapters, temperature=0.0))


def settings(system: str, seed: int) -> dict[str, Any]:
    """The settings every stage of ``system`` shares (the stages' own evaluations are cut to 2 dev episodes
    after training: the held-out evaluations below are the measurement)."""
    env_id, history, _ = SYSTEMS[system]
    return dict(MODEL, env_id=env_id, history_window=history, seed=seed, eval_split="dev", eval_episodes=2,
                eval_every=0, eval_before=False)


def evaluate_adapters(system: str, adapters: list[Path], budget: dict[str, Any]) -> dict[str, Any]:
    """The policy with ``adapters`` merged, evaluated greedily on every held-out split (AgentFlow keeps one
    `test` trajectory, a won one if any, as the README's example)."""
    env_id, history, _ = SYSTEMS[system]
    policy, result = trained_policy([str(a) for a in adapters]), {}
    try:
        for split in SPLITS:
            result[split], trajectories = evaluate(policy, env_id, split, budget["eval_episodes"], history)
            if system == "agentflow" and split == "test":
                result["example"] = next((t for t in trajectories if t.won), trajectories[0]).to_dict()
    finally:
        policy.close()
    return result


def clone_adapter(system: str, budget: dict[str, Any], out: Path) -> Path:
    """The warm start every seed of ``system`` trains from: the oracle's train trajectories cloned with LoRA
    (trained here when its folder is missing: adapters stay out of git, only the measured units are kept)."""
    folder = out / system / "clone"
    if not (folder / "final").is_dir():
        train_sft(SFTConfig(**settings(system, budget["seeds"][0]), collect_policy="oracle",
                            collect_episodes=budget["expert_episodes"], iterations=budget["sft_passes"], lr=1e-3,
                            output_dir=str(folder), resume=(folder / "checkpoint.pt").exists()), progress=True)
    return folder / "final"


def metrics_rows(folder: Path) -> list[dict[str, Any]]:
    """A training run's own metrics rows: its training time is summed from them, so a run resumed across
    sittings counts every sitting's training."""
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def clone_unit(system: str, budget: dict[str, Any], out: Path) -> dict[str, Any]:
    """The warm start, with its training time and evaluation."""
    adapter = clone_adapter(system, budget, out)
    return {"system": system, "train_seconds": training_seconds(metrics_rows(adapter.parent)),
            **evaluate_adapters(system, [adapter], budget)}


def run_unit(system: str, seed: int, budget: dict[str, Any], out: Path) -> dict[str, Any]:
    """(Flow-)GRPO from the clone with one seed, then evaluated."""
    _, _, stats = SYSTEMS[system]
    folder = out / system / f"grpo-lr{budget['lr']:g}-seed{seed}"  # another lr never reuses a run
    clone = clone_adapter(system, budget, out)
    if not (folder / "final").is_dir():
        train_grpo(GRPOConfig(**settings(system, seed), init_adapters=[str(clone)], group_stats=stats,
                              invalid_penalty=0.0 if system == "agentflow" else 0.1, temperature=0.7,
                              iterations=budget["iterations"], tasks_per_iteration=budget["tasks"],
                              group_size=budget["group"], lr=budget["lr"], minibatch_size=budget["minibatch"],
                              output_dir=str(folder), resume=(folder / "checkpoint.pt").exists()), progress=True)
    rows = metrics_rows(folder)
    return {"system": system, "seed": seed, "train_seconds": training_seconds(rows),
            "curve": [row["train_success_rate"] for row in rows if "train_success_rate" in row],
            **evaluate_adapters(system, [clone, folder / "final"], budget)}


def scripted_unit(budget: dict[str, Any]) -> dict[str, Any]:
    env_id, history, _ = SYSTEMS["agentflow"]
    return {split: evaluate(make_policy("oracle"), env_id, split, budget["eval_episodes"], history)[0] for split in SPLITS}


def table(scripted: dict[str, Any], clones: dict[str, dict[str, Any]], units: list[dict[str, Any]], seeds: int) -> str:
    """Markdown rows: the oracle, then each system's clone (one run) and its RL runs (one per seed)."""
    rows = [("scripted planner (oracle, for scale)", [scripted])]
    for system, name, method in (("single-agent", "single agent", "GRPO"), ("agentflow", "AgentFlow", "Flow-GRPO")):
        rows.append((f"{name}, cloned" + (" planner" if system == "agentflow" else ""), [clones[system]]))
        rows.append((f"{name}, cloned + {method} ({seeds} seed{'s' if seeds > 1 else ''})",
                     [u for u in units if u["system"] == system]))
    lines = ["| system | split | accuracy | tool calls / question | tool errors / question | invalid replies | "
             "s / question (provisional) | training wall time |", "|---|---|---|---|---|---|---|---|"]
    for label, runs in rows:
        train = (mean_std_cell([run["train_seconds"] / 60 for run in runs], percent=False) + " min"
                 if "train_seconds" in runs[0] else "—")
        for split in SPLITS:
            values = [run[split] for run in runs]
            cells = [mean_std_cell([v["accuracy"] for v in values]),
                     *(mean_std_cell([v[key] for v in values], percent=False) for key in ("tool_calls", "tool_errors")),
                     mean_std_cell([v["invalid"] for v in values]), mean_std_cell([v["seconds"] for v in values], percent=False)]
            lines.append(f"| {label} | {split} | {' | '.join(cells)} | {train} |")
    return "\n".join(lines)


def example_markdown(trajectory: dict[str, Any]) -> str:
    """One AgentFlow episode: each planner turn with every module's input and output."""
    lines = [f"Question: {trajectory['task']['instruction']}  (reference: {trajectory['task']['answer']})", ""]
    for turn in trajectory["turns"]:
        modules = turn["info"].get("modules", {})
        lines.append(f"**Turn {turn['turn_index'] + 1}** — planner (trained model) wrote `{turn['response'].strip()}`")
        for name in ("executor", "tool", "verifier", "generator", "judge"):
            if name in modules:
                shown = {k: v for k, v in modules[name].items() if k not in ("prompt",)}
                lines.append(f"- {name}: `{json.dumps(shown, ensure_ascii=False)[:400]}`")
        lines.append("")
    return "\n".join(lines)


def plot(units: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for system in SYSTEMS:
        curves = [u["curve"] for u in units if u["system"] == system and u["curve"]]
        if curves:
            length = min(map(len, curves))
            mean = np.mean([c[:length] for c in curves], axis=0)
            axis.plot(range(1, length + 1), mean, marker="o", label=f"{system} (mean of {len(curves)} seeds)")
    axis.set_xlabel("GRPO iteration")
    axis.set_ylabel("train success rate")
    axis.set_ylim(0, 1)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 seed and a tiny budget (minutes)")
    parser.add_argument("--model", default=MODEL["model"],
                        help="the model cloned and trained: embedded (default), hf:PATH, or tiny — a small random "
                             "model that checks the benchmark's wiring in minutes (its numbers mean nothing)")
    parser.add_argument("--systems", nargs="+", choices=list(SYSTEMS), default=list(SYSTEMS),
                        help="run only these systems (their units are cached, so a later run of both reuses them); "
                             "the table and plot need both")
    parser.add_argument("--out", type=Path, default=None,
                        help="results folder (default benchmarks/results/agentflow[-quick][-MODEL])")
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    budget = BUDGETS[mode]
    MODEL["model"] = args.model
    named = "" if args.model == "embedded" else "-" + re.sub(r"[^A-Za-z0-9.]+", "_", args.model).strip("_")
    out = args.out or RESULTS / f"agentflow{'-quick' if args.quick else ''}{named}"
    out.mkdir(parents=True, exist_ok=True)
    scripted = cached_json(out / "scripted.json", lambda: scripted_unit(budget))
    clones = {system: cached_json(out / system / "clone.json", lambda system=system: clone_unit(system, budget, out))
              for system in args.systems}
    units = []
    for seed in budget["seeds"]:
        for system in args.systems:
            name = f"grpo-lr{budget['lr']:g}-seed{seed}.json"
            units.append(cached_json(out / system / name,
                                     lambda system=system, seed=seed: run_unit(system, seed, budget, out)))
            print(f"{system} seed {seed} done ({units[-1]['train_seconds'] / 60:.1f} min of training)", flush=True)
    if len(args.systems) < len(SYSTEMS):
        print(f"Only {', '.join(args.systems)} run: rerun without --systems for the table (cached units are reused).")
        return
    text = table(scripted, clones, units, len(budget["seeds"]))
    print(f"\nFactbookMath, {mode} budget {budget}:\n{text}")
    (out / "table.md").write_text(text + "\n", encoding="utf-8")
    examples = [u["example"] for u in units if "example" in u]
    if examples:
        (out / "example.md").write_text(example_markdown(examples[0]) + "\n", encoding="utf-8")
    plot(units, out / "curves.png")


if __name__ == "__main__":
    main()
