"""GUI-RC, soft GUI-RC and GUI-RCPO against greedy, with the trained pointer model on
agentgym/GUIGrounding-v0 (docs/algorithms.md §4).

Per split — `test`, and `test_ood` (calendar and chat, application kinds the pointer never saw) — over
seeds, it measures:

* greedy (the argmax cell), soft GUI-RC, and GUI-RC with K = 64 samples at the temperature that is best
  on `dev` (chosen there, never on the split it reports);
* GUI-RCPO: test-time training on the split's unlabeled screens (2 passes), then greedy and GUI-RC on the
  adapted model, and the wall time of that training per 100 screens;
* an oracle for scale: supervised fine-tuning on the same screens with their labels (2 passes);
* why voting loses to greedy: accuracy over temperature, K and point expansion, and per screen the
  consensus region against the target box, and where the consensus lands when greedy is right and
  voting is wrong.

Voting is computed from the model's cell logits with the library's own functions (parse_prediction,
vote_grid, consensus_region, expected_votes): one forward pass per screen serves every setting. A check
runs the real policies (pointer:, gui-rc:, soft-gui-rc:) through the env on some screens and compares.
Every finished unit (a model's outputs on a split, a sweep, a training run) is a file in --out, read
back when the script runs again.

    python benchmarks/gui_rcpo.py --quick      # 1 seed, the first 100 screens of each split: minutes
    python benchmarks/gui_rcpo.py              # 3 seeds, all 300 screens of each split
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import agentgym
from agentgym.envs.gui.env import HEIGHT, SEED_RANGES, WIDTH
from agentgym.evaluation import mean_std_ci
from agentgym.grounding import (
    Box,
    consensus_answer,
    consensus_region,
    expected_votes,
    inside,
    parse_prediction,
    vote_grid,
)
from agentgym.policies import PolicyRequest, make_policy
from agentgym.trainers.gui_rcpo import GUIRCPOConfig
from agentgym.trainers.gui_rcpo import train as train_gui_rcpo
from agentgym.trainers.pointer import (
    CELL,
    PointerConfig,
    PointerPolicy,
    cell_point,
    load_pointer,
    load_screens,
    save_pointer,
    supervised_step,
)
from agentgym.trainers.pointer import train as train_pointer

ENV = "agentgym/GUIGrounding-v0"
GRID = (-(-HEIGHT // CELL), -(-WIDTH // CELL))
CENTRES = np.array([cell_point(index, GRID) for index in range(GRID[0] * GRID[1])])
TEMPERATURES = (0.1, 0.25, 0.5, 0.7, 1.0)
SAMPLES = (8, 16, 64, 256)
EXPANSIONS = (0, 8, 16, 25, 50)
HEADLINE_K, EVAL_EXPAND = 64, 25


# ---------------------------------------------------------------------- the model's outputs on a split
def screens(split: str, count: int):
    """The split's first ``count`` screens: task id, the request a policy sees, the target box (for
    scoring) and every element's box (for the diagnosis)."""
    env = agentgym.make(ENV, split=split, all_elements=True)
    try:
        for task in env.unwrapped.tasks[:count]:
            observation, info = env.reset(options={"task_id": task.id})
            request = PolicyRequest([{"role": "user", "content": observation["text"]}], image=observation["image"])
            yield task.id, request, info["target_box"], [e["box"] for e in info["elements"]]
    finally:
        env.close()


def outputs(model: Path, split: str, count: int, cache: Path) -> dict[str, Any]:
    """The model's cell logits on each screen, with the targets and element boxes (cached)."""
    if cache.with_suffix(".npz").exists():
        data = np.load(cache.with_suffix(".npz"))
        return {"logits": data["logits"], **json.loads(cache.with_suffix(".json").read_text())}
    policy = PointerPolicy(model)
    logits, meta = [], {"tasks": [], "targets": [], "elements": []}
    with torch.no_grad():
        for task_id, request, target, elements in screens(split, count):
            logits.append(policy.logits([request])[0].numpy())
            meta["tasks"].append(task_id)
            meta["targets"].append(target)
            meta["elements"].append(elements)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache.with_suffix(".npz"), logits=np.stack(logits))
    cache.with_suffix(".json").write_text(json.dumps(meta))
    return {"logits": np.stack(logits), **meta}


def softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    scaled = logits.astype(np.float64) / temperature
    scaled -= scaled.max()
    probabilities = np.exp(scaled)
    return probabilities / probabilities.sum()


def point_of(answer: str) -> tuple[float, float] | None:
    box = parse_prediction(answer, WIDTH, HEIGHT, point_expand=0)
    return None if box is None else box.centre


# ---------------------------------------------------------------------- the three ways to answer
def greedy_answer(logits: np.ndarray) -> dict[str, Any]:
    return {"point": tuple(CENTRES[int(np.argmax(logits))])}


def soft_answer(logits: np.ndarray, temperature: float, expand: int) -> dict[str, Any]:
    grid = expected_votes(CENTRES, softmax(logits, temperature), WIDTH, HEIGHT, point_expand=expand)
    region = consensus_region(grid)
    return {"point": point_of(consensus_answer(grid)), "area": region.area if region else 0}


def voted_answer(logits: np.ndarray, temperature: float, samples: int, expand: int,
                 rng: np.random.Generator) -> dict[str, Any]:
    cells = rng.choice(len(CENTRES), size=samples, p=softmax(logits, temperature))
    boxes = [parse_prediction("({:g}, {:g})".format(*CENTRES[cell]), WIDTH, HEIGHT, point_expand=expand)
             for cell in cells]
    grid = vote_grid(boxes, WIDTH, HEIGHT)
    region = consensus_region(grid)
    return {"point": point_of(consensus_answer(grid)), "area": region.area if region else 0,
            "peak": int(grid.max())}


def hits(answers: list[dict[str, Any]], targets: list[list[int]]) -> np.ndarray:
    return np.array([a["point"] is not None and inside(a["point"], Box(*t)) for a, t in zip(answers, targets)])


# ---------------------------------------------------------------------- units
class Units:
    """Finished units as JSON files in a folder: computed once, read back after."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def get(self, name: str, compute) -> Any:
        path = self.folder / f"{name}.json"
        if path.exists():
            return json.loads(path.read_text())
        started = time.perf_counter()
        value = compute()
        print(f"  {name}: {time.perf_counter() - started:.0f} s", flush=True)
        path.write_text(json.dumps(value))
        return value


def sweep(data: dict[str, Any], seed: int) -> dict[str, Any]:
    """GUI-RC accuracy over temperature × K (at ±25 px) and temperature × expansion (at K = 64), with
    the consensus region's size; soft GUI-RC over temperature × expansion; greedy."""
    targets = data["targets"]
    result = {"greedy": hits([greedy_answer(row) for row in data["logits"]], targets).tolist()}
    settings = {(t, k, EVAL_EXPAND) for t in TEMPERATURES for k in SAMPLES} | \
               {(t, HEADLINE_K, e) for t in TEMPERATURES for e in EXPANSIONS}
    for temperature, samples, expand in sorted(settings):
        rng = np.random.default_rng([seed, int(temperature * 1000), samples, expand])
        answers = [voted_answer(row, temperature, samples, expand, rng) for row in data["logits"]]
        result[f"vote T={temperature} K={samples} e={expand}"] = {
            "hits": hits(answers, targets).tolist(), "area": [a["area"] for a in answers],
            "peak": [a["peak"] for a in answers], "points": [a["point"] for a in answers]}
    return result


def soft_sweep(data: dict[str, Any]) -> dict[str, Any]:
    result = {}
    for temperature in TEMPERATURES:
        for expand in EXPANSIONS[1:]:
            answers = [soft_answer(row, temperature, expand) for row in data["logits"]]
            result[f"soft T={temperature} e={expand}"] = {"hits": hits(answers, data["targets"]).tolist(),
                                                          "area": [a["area"] for a in answers],
                                                          "points": [a["point"] for a in answers]}
    return result


def first_screens_filter(split: str, count: int) -> str:
    """A task_filter that keeps a split's first ``count`` screens (all, or the first 100 of them)."""
    if count >= SEED_RANGES[split][1] - SEED_RANGES[split][0]:
        return ""
    if count != 100:
        raise ValueError("--screens must be 100 or a whole split (300).")
    return f"-s{SEED_RANGES[split][0] // 100}"


def test_time_training(pointer: Path, split: str, count: int, seed: int, folder: Path, lr: float) -> dict[str, Any]:
    """A GUI-RCPO run on the split's unlabeled screens; its evaluations, rows and wall time."""
    config = GUIRCPOConfig(model=f"pointer:{pointer}", train_split=split, eval_split=split, eval_episodes=count,
                           task_filter=first_screens_filter(split, count), seed=seed, lr=lr, output_dir=str(folder),
                           save_episodes=0)
    result = train_gui_rcpo(config, progress=False)
    rows = [row for row in result["rows"] if "samples" in row]
    seconds = sum(row.get("seconds_rollout", 0) + row.get("seconds_update", 0) for row in rows)
    return {"before": result["before"]["eval_success_rate"], "after": result["after"]["eval_success_rate"],
            "seconds_per_100_screens": 100 * seconds / count, "iterations": len(rows),
            "consistency": [row["consistency_reward"] for row in rows], "kl": [row.get("kl") for row in rows]}


def supervised_oracle(pointer: Path, split: str, count: int, seed: int, target: Path) -> None:
    """Fine-tune the pointer on the same screens with their labels (2 passes, 4 screens a step)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = load_pointer(pointer)
    labelled = load_screens(ENV, split, count, every_target=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    for _ in range(2):
        order = rng.permutation(len(labelled))
        for first in range(0, len(order), 4):
            supervised_step(model, optimizer, [labelled[i] for i in order[first : first + 4]], rng, 1)
    save_pointer(model, target)


def check_against_policies(pointer: Path, data: dict[str, Any], temperature: float, count: int) -> dict[str, float]:
    """The real policies through the env on the first ``count`` screens: greedy and soft GUI-RC must
    agree with the computation from logits exactly; GUI-RC (sampled) within noise."""
    agreement = {}
    env = agentgym.make(ENV, split="test")
    policies = {"greedy": make_policy(f"pointer:{pointer}"),
                "soft": make_policy(f"soft-gui-rc:pointer:{pointer}", temperature=temperature),
                "vote": make_policy(f"gui-rc:pointer:{pointer}", temperature=temperature, seed=0)}
    try:
        for name, policy in policies.items():
            rewards = []
            for task_id in data["tasks"][:count]:
                observation, _ = env.reset(options={"task_id": task_id})
                request = PolicyRequest([{"role": "user", "content": observation["text"]}], image=observation["image"])
                rewards.append(env.step(policy.act([request])[0].text)[1])
            agreement[name] = float(np.mean(rewards))
    finally:
        env.close()
    return agreement


# ---------------------------------------------------------------------- report
def cell(values: list[float]) -> str:
    stats = mean_std_ci(values)
    return f"{100 * stats['mean']:.1f}% ± {100 * stats['std']:.1f}" if len(values) > 1 else f"{100 * values[0]:.1f}%"


def accuracy(hits_list: list) -> float:
    return float(np.mean(hits_list))


def best_temperature(sweeps: list[dict[str, Any]], key: str) -> float:
    """The temperature with the best mean accuracy over the seeds' sweeps for ``key`` (a format string)."""
    return max(TEMPERATURES, key=lambda t: np.mean([accuracy(s[key.format(t=t)]["hits"]) for s in sweeps]))


def diagnose(data: dict[str, Any], swept: dict[str, Any], key: str) -> dict[str, float]:
    """Where the consensus lands against greedy and the target, for one voting setting."""
    greedy, vote = np.array(swept["greedy"]), np.array(swept[key]["hits"])
    target_area = np.array([(t[2] - t[0]) * (t[3] - t[1]) for t in data["targets"]])
    region = np.array(swept[key]["area"])
    lost = np.flatnonzero(greedy & ~vote)
    rival = near = 0
    for index in lost:
        point = swept[key]["points"][index]
        if point is None:
            continue
        target = Box(*data["targets"][index])
        on_element = [Box(*map(int, box)) for box in data["elements"][index]
                      if inside(point, Box(*map(int, box))) and Box(*map(int, box)) != target]
        gap = max(target.x1 - point[0], point[0] - target.x2, target.y1 - point[1], point[1] - target.y2)
        near += gap <= CELL
        rival += bool(on_element) and gap > CELL
    return {"greedy": greedy.mean(), "vote": vote.mean(), "greedy right, vote wrong": len(lost) / len(greedy),
            "greedy wrong, vote right": float((~greedy & vote).mean()),
            "median region area": float(np.median(region)), "median target area": float(np.median(target_area)),
            "region larger than target": float((region > target_area).mean()),
            "lost: within one cell of the target": near / max(len(lost), 1),
            "lost: on another element": rival / max(len(lost), 1)}


def plot(path: Path, sweeps: dict[str, list[dict[str, Any]]], softs: dict[str, dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(sweeps), 2, figsize=(11, 3.6 * len(sweeps)), squeeze=False)
    for row, (split, seeds) in enumerate(sweeps.items()):
        greedy = np.mean([accuracy(s["greedy"]) for s in seeds])
        for temperature in TEMPERATURES:
            axes[row, 0].plot(SAMPLES, [np.mean([accuracy(s[f"vote T={temperature} K={k} e={EVAL_EXPAND}"]["hits"])
                                                 for s in seeds]) for k in SAMPLES], marker="o", label=f"T = {temperature}")
            axes[row, 1].plot(EXPANSIONS, [np.mean([accuracy(s[f"vote T={temperature} K={HEADLINE_K} e={e}"]["hits"])
                                                    for s in seeds]) for e in EXPANSIONS], marker="o",
                              label=f"T = {temperature}")
            axes[row, 1].plot(EXPANSIONS[1:], [accuracy(softs[split][f"soft T={temperature} e={e}"]["hits"])
                                               for e in EXPANSIONS[1:]], linestyle=":", color=axes[row, 1].lines[-1].get_color())
        for axis, label in ((axes[row, 0], "K (samples)"), (axes[row, 1], "point expansion ± px (dotted: soft)")):
            axis.axhline(greedy, color="black", linestyle="--", label="greedy")
            axis.set_xlabel(label)
            axis.set_ylabel(f"accuracy on {split}")
            axis.grid(alpha=0.3)
        axes[row, 0].set_xscale("log", base=2)
        axes[row, 0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 seed and the first 100 screens of each split")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--screens", type=int, default=300, help="screens per split: 300 (all) or 100")
    parser.add_argument("--splits", nargs="+", default=["test", "test_ood"])
    parser.add_argument("--pointer", type=Path, default=Path("runs/pointer-gui"), help="trained here when missing")
    parser.add_argument("--lr", type=float, default=GUIRCPOConfig.lr, help="GUI-RCPO's learning rate")
    parser.add_argument("--out", type=Path, default=Path("results/gui_rcpo"))
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.screens = args.seeds[:1], 100
    units = Units(args.out / f"screens{args.screens}")
    if not (args.pointer / "model.pt").exists():
        print(f"Training the pointer model into {args.pointer} (configs/pointer-gui.yaml's settings) ...")
        train_pointer(PointerConfig(output_dir=str(args.pointer)))

    dev = outputs(args.pointer, "dev", 100, args.out / "outputs" / "base-dev")
    dev_sweeps = [units.get(f"sweep-base-dev-seed{seed}", lambda: sweep(dev, seed)) for seed in args.seeds]
    dev_soft = units.get("soft-base-dev", lambda: soft_sweep(dev))
    vote_t = best_temperature(dev_sweeps, f"vote T={{t}} K={HEADLINE_K} e={EVAL_EXPAND}")
    soft_t = max(TEMPERATURES, key=lambda t: accuracy(dev_soft[f"soft T={t} e={EVAL_EXPAND}"]["hits"]))
    print(f"On dev: GUI-RC (K = {HEADLINE_K}) is best at T = {vote_t}, soft GUI-RC at T = {soft_t}.")
    vote_key, soft_key = f"vote T={vote_t} K={HEADLINE_K} e={EVAL_EXPAND}", f"soft T={soft_t} e={EVAL_EXPAND}"

    table: dict[str, dict[str, list[float]]] = {}
    sweeps, softs, diagnosis, rcpo_runs = {}, {}, {}, {}
    for split in args.splits:
        base = outputs(args.pointer, split, args.screens, args.out / "outputs" / f"base-{split}-{args.screens}")
        sweeps[split] = [units.get(f"sweep-base-{split}-seed{seed}", lambda: sweep(base, seed)) for seed in args.seeds]
        softs[split] = units.get(f"soft-base-{split}", lambda: soft_sweep(base))
        rows = table.setdefault(split, {})
        rows["greedy"] = [accuracy(s["greedy"]) for s in sweeps[split]]
        rows[f"GUI-RC, K = {HEADLINE_K}, T = {vote_t} (best on dev)"] = [accuracy(s[vote_key]["hits"]) for s in sweeps[split]]
        rows["GUI-RC, K = 64, T = 1 (README's setting)"] = [accuracy(s[f"vote T=1.0 K=64 e={EVAL_EXPAND}"]["hits"])
                                                            for s in sweeps[split]]
        rows[f"soft GUI-RC, T = {soft_t} (best on dev)"] = [accuracy(softs[split][soft_key]["hits"])]
        diagnosis[split] = {"T = 1": diagnose(base, sweeps[split][0], f"vote T=1.0 K=64 e={EVAL_EXPAND}"),
                            f"T = {vote_t}": diagnose(base, sweeps[split][0], vote_key)}
        for seed in args.seeds:
            unit = f"rcpo-lr{args.lr:g}-{split}-seed{seed}"  # the learning rate is the setting a rerun may change
            folder = args.out / f"screens{args.screens}" / unit
            run = units.get(unit,
                            lambda: test_time_training(args.pointer, split, args.screens, seed, folder, args.lr))
            rcpo_runs.setdefault(split, []).append(run)
            adapted = outputs(folder / "final", split, args.screens, args.out / "outputs" / f"{unit}-{args.screens}")
            adapted_sweep = units.get(f"after-{unit}", lambda: {
                "greedy": hits([greedy_answer(row) for row in adapted["logits"]], adapted["targets"]).tolist(),
                "vote": hits([voted_answer(row, vote_t, HEADLINE_K, EVAL_EXPAND, np.random.default_rng(seed))
                              for row in adapted["logits"]], adapted["targets"]).tolist(),
                "soft": hits([soft_answer(row, soft_t, EVAL_EXPAND) for row in adapted["logits"]], adapted["targets"]).tolist()})
            for method in ("greedy", "vote", "soft"):
                label = {"greedy": "then greedy", "vote": f"then GUI-RC (K = 64, T = {vote_t})",
                         "soft": f"then soft GUI-RC (T = {soft_t})"}[method]
                label = f"GUI-RCPO (lr {args.lr:g}), {label}"
                rows.setdefault(label, []).append(accuracy(adapted_sweep[method]))
            oracle_model = args.out / f"screens{args.screens}" / f"oracle-{split}-seed{seed}" / "model.pt"
            if not oracle_model.exists():
                supervised_oracle(args.pointer, split, args.screens, seed, oracle_model)
            oracle = outputs(oracle_model, split, args.screens, args.out / "outputs" / f"oracle-{split}-{args.screens}-seed{seed}")
            rows.setdefault("oracle: supervised fine-tuning on the same screens with labels, greedy", []).append(
                accuracy(hits([greedy_answer(row) for row in oracle["logits"]], oracle["targets"])))

    print(f"\nAccuracy on the first {args.screens} screens of each split, seeds {args.seeds} (mean ± std over seeds; "
          "greedy and soft GUI-RC of the base model are deterministic):\n")
    print("| | " + " | ".join(f"`{s}`" for s in args.splits) + " |")
    print("|---|" + "---|" * len(args.splits))
    for label in table[args.splits[0]]:
        print(f"| {label} | " + " | ".join(cell(table[s][label]) for s in args.splits) + " |")
    print("\nGUI-RCPO wall time (rollouts + updates, 2 passes over each screen; provisional on a shared machine):")
    for split, runs in rcpo_runs.items():
        print(f"  {split}: {np.mean([r['seconds_per_100_screens'] for r in runs]):.0f} s per 100 screens, "
              f"{runs[0]['iterations']} iterations; consistency reward {np.mean([r['consistency'][0] for r in runs]):.3f} "
              f"-> {np.mean([r['consistency'][-1] for r in runs]):.3f}")

    print(f"\nWhy voting loses to greedy: GUI-RC accuracy on `{args.splits[0]}`, ±{EVAL_EXPAND} px, by temperature (rows) "
          "and K (columns); greedy "
          f"{100 * np.mean(table[args.splits[0]]['greedy']):.1f}%:\n")
    first = sweeps[args.splits[0]]
    print("| T | " + " | ".join(f"K = {k}" for k in SAMPLES) + " | soft (K = ∞) |")
    print("|---|" + "---|" * (len(SAMPLES) + 1))
    for t in TEMPERATURES:
        print(f"| {t} | " + " | ".join(cell([accuracy(s[f"vote T={t} K={k} e={EVAL_EXPAND}"]["hits"]) for s in first])
                                       for k in SAMPLES)
              + f" | {cell([accuracy(softs[args.splits[0]][f'soft T={t} e={EVAL_EXPAND}']['hits'])])} |")
    print(f"\nBy point expansion (K = {HEADLINE_K}; soft in brackets):\n")
    print("| T | " + " | ".join(f"±{e} px" for e in EXPANSIONS) + " |")
    print("|---|" + "---|" * len(EXPANSIONS))
    for t in TEMPERATURES:
        print(f"| {t} | " + " | ".join(
            cell([accuracy(s[f"vote T={t} K={HEADLINE_K} e={e}"]["hits"]) for s in first])
            + (f" ({100 * accuracy(softs[args.splits[0]][f'soft T={t} e={e}']['hits']):.1f}%)" if e else "")
            for e in EXPANSIONS) + " |")
    print("\nThe consensus against greedy and the target (first seed, K = 64, ±25 px):\n")
    for split, settings in diagnosis.items():
        for setting, values in settings.items():
            print(f"  {split}, {setting}: " + ", ".join(
                f"{k} {v:.0f}" if "area" in k else f"{k} {100 * v:.1f}%" for k, v in values.items()))
    check = units.get(f"check-{args.splits[0]}", lambda: check_against_policies(
        args.pointer, outputs(args.pointer, args.splits[0], args.screens,
                              args.out / "outputs" / f"base-{args.splits[0]}-{args.screens}"), vote_t, 40))
    print(f"\nThe real policies through the env on the first 40 `{args.splits[0]}` screens: " + ", ".join(
        f"{name} {100 * value:.1f}%" for name, value in check.items()) + " (from logits: greedy "
          f"{100 * accuracy(first[0]['greedy'][:40]):.1f}%, soft {100 * accuracy(softs[args.splits[0]][soft_key]['hits'][:40]):.1f}%, "
          f"GUI-RC {100 * accuracy(first[0][vote_key]['hits'][:40]):.1f}%)")
    plot(args.out / f"voting-screens{args.screens}.png", sweeps, softs)
    print(f"\nCurves: {args.out / f'voting-screens{args.screens}.png'}")


if __name__ == "__main__":
    main()
