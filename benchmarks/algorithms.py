"""Which algorithm learns best? GRPO, Dr.GRPO, GiGPO, DAPO, EPO and PPO on equal budgets, over seeds.

Every algorithm starts from the same weights (per seed: the same fresh LoRA on the embedded
SmolLM2-135M-Instruct, choice mode, top 8 layers adapted, over the family's warm start if it has one)
and gets the same budget: training episodes (``max_episodes``, so DAPO's extra sampling rounds count
against it) and at most the same number of updates. Each keeps its recommended settings
(docs/algorithms.md); the shared ones (learning rate, batch, KL 0, clip-higher) are the same for all, and
nothing was tuned per algorithm.

Families:

* ``coin`` — TextWorld coin collector level 5 (15 turns): train on level-5 `train` games, held-out
  success on 20 level-5 `test` games (sampled, as in training; the same games and seeds each time);
* ``alfworld`` — ALFWorld pick & place and clean & place (the real engine, generated games): train on
  `train`; held-out `test` (seen rooms) and `test_ood` (unseen rooms), 10 of the 20 games each. An ALFWorld
  turn costs over twice a coin turn here, so its runs get 32 training episodes and one mid-run evaluation
  (coin: 48 and two) — the same cut for every algorithm.

The same warm-start rule holds for both, and is the one thing tuned (on `dev`, for every algorithm alike):
a group-relative advantage is zero in a group whose episodes all fail or all win, so a start whose `dev`
success p leaves more than half of all groups so (p^G + (1 - p)^G > 1/2 for groups of G) is moved by
cloning the expert's won train episodes (``sft``) — the cheapest clone on a ladder (one pass over 5, 10,
20, 40 episodes, then three passes over 40) that brings that share to half or less, or the rung closest to
it. A full clone would overshoot: 40 level-5 coin episodes take the model from 0% to 90% on `dev`, where
most groups are all wins. ALFWorld's expert is its searching one (``expert="search"``): the walkthrough
walks straight to where the game hid the object, and clones of it stayed at 0–15% on `dev` and left every
training group silent (results/algorithms/alfworld-walkthrough-clone). The start is
evaluated once per seed (every algorithm starts from the same weights, so their runs skip it:
``eval_before: false``).

Per family it prints held-out success mean ± std with the 95% interval, the training episodes each
algorithm needed to first reach the family's threshold on the held-out curve (sample efficiency), the
share of trained groups whose every advantage was zero, and the training wall time (rollouts and updates;
the evaluations are the same for all), then writes that table (``algorithms-FAMILY.md``) and a PNG of the
held-out curves with a band over seeds (``algorithms-FAMILY.png``) beside the units.

Each finished (family, algorithm, seed) unit is cached as JSON under --out and an interrupted run
resumes from its checkpoint, so the campaign can run across sittings; run it on a quiet machine.

    python benchmarks/algorithms.py --quick                 # 1 seed, tiny budget: a smoke check
    python benchmarks/algorithms.py --families coin         # 3 seeds on coin collector only
    python benchmarks/algorithms.py                         # the whole campaign (hours on 2 cores)
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np

from agentgym.evaluation import mean_std_cell, plot_seed_bands
from agentgym.paths import cached_json
from agentgym.prompting import PromptTemplate
from agentgym.rollout import RolloutEngine
from agentgym.trainers import epo, grpo, heldout, ppo
from agentgym.trainers.config import RunConfig
from agentgym.trainers.model import build_policy
from agentgym.trainers.run import training_seconds
from agentgym.trainers.sft import SFTConfig
from agentgym.trainers.sft import train as train_sft

RESULTS = Path(__file__).resolve().parent / "results"  # in git: a long run resumes on another machine

# name: (config class, train function, its own settings: each algorithm's documented recommendation)
ALGORITHMS: dict[str, tuple[type, Callable, dict[str, Any]]] = {
    "GRPO": (grpo.GRPOConfig, grpo.train, {}),
    "Dr.GRPO": (grpo.GRPOConfig, grpo.train, {"norm_by_std": False}),
    "GiGPO": (grpo.GRPOConfig, grpo.train, {"advantage": "gigpo"}),  # γ 0.95, ω 1, no std division
    "DAPO": (grpo.GRPOConfig, grpo.train, {"dynamic_sampling": True}),  # up to 3 sampling rounds
    "EPO": (epo.EPOConfig, epo.train, {}),  # entropy bonus 0.001, smoothing band [0, 2] × history, α 0.1
    "PPO": (ppo.PPOConfig, ppo.train, {}),  # value head, GAE γ = λ = 1, value lr 1e-3, whitened advantages
}
SHARED = dict(model="embedded", mode="choice", lora_rank=16, lora_layers=8, history_window=1, lr=1e-3,
              choice_temperature=1.0, save_episodes=0)
FAMILIES: dict[str, dict[str, Any]] = {
    "coin": dict(title="TextWorld coin collector, level 5 (15 turns)", splits=("test",), threshold=0.6,
                 run=dict(env_id="agentgym/TextWorld-CoinCollector-v0", env_kwargs={"max_turns": 15},
                          task_filter="level5-", num_envs=6)),
    "alfworld": dict(title="ALFWorld, pick & place and clean & place (30 turns)", splits=("test", "test_ood"),
                     threshold=0.3,
                     # The expert the warm start clones searches as a player must (it never knows where the
                     # object lies), so its episodes show what a policy seeing only observations can do.
                     run=dict(env_id="agentgym/ALFWorld-v0", num_envs=4,
                              env_kwargs={"task_types": ["pick_and_place_simple", "pick_clean_then_place_in_recep"],
                                          "max_turns": 30, "expert": "search"}),
                     # An ALFWorld turn costs ~1.2 s here (4 games batched; coin's ~0.5 s): the full budget would
                     # take ~100 min a run. So 32 training episodes, one mid-run evaluation, and 10 games a
                     # held-out split (of 20) — alike for every algorithm; the warm start keeps 20 dev games.
                     budget=dict(iterations=4, eval_every=2, eval_episodes=10)),
}
BUDGETS = {
    # seeds; iterations × tasks × group size (the episode budget is their product); held-out evaluation
    # every N iterations on E episodes; the ladder of clones a warm start may take: (expert episodes, passes).
    "quick": dict(seeds=[0], iterations=2, tasks=1, group=2, eval_every=1, eval_episodes=2, dev_episodes=2,
                  clone_ladder=[(4, 1)]),
    # A level-5 coin training episode of up to 15 turns costs ~10 s here (rollout and update), a held-out
    # one ~7 s: ~13 minutes a run with its two evaluations, 18 runs a family; resume across sittings.
    "full": dict(seeds=[0, 1, 2], iterations=6, tasks=2, group=4, eval_every=3, eval_episodes=20, dev_episodes=20,
                 clone_ladder=[(5, 1), (10, 1), (20, 1), (40, 1), (40, 3)]),
}


def budget_of(family: str, quick: bool) -> dict[str, Any]:
    """The budget of ``family``'s runs: the full one with the family's own cuts, or the quick smoke check."""
    return dict(BUDGETS["quick"]) if quick else {**BUDGETS["full"], **FAMILIES[family].get("budget", {})}


def config_of(family: str, algorithm: str, seed: int, budget: dict[str, Any], adapters: list[str],
              folder: Path) -> RunConfig:
    """One run's settings: the family's env, the shared settings, the algorithm's own, the budget."""
    config_class, _, own = ALGORITHMS[algorithm]
    return config_class(**SHARED, **FAMILIES[family]["run"], **own, init_adapters=adapters, seed=seed,
                        iterations=budget["iterations"], tasks_per_iteration=budget["tasks"],
                        group_size=budget["group"], max_episodes=budget["iterations"] * budget["tasks"] * budget["group"],
                        eval_split="test", eval_every=budget["eval_every"], eval_episodes=budget["eval_episodes"],
                        eval_before=False, output_dir=str(folder), resume=(folder / "checkpoint.pt").exists())


def held_out(config: RunConfig, adapters: list[str], split: str, *, with_random: bool = False) -> dict[str, float]:
    """The policy's held-out metrics on ``split`` by the loop's own protocol (same tasks and seeds), and with
    ``with_random`` a random choice's success on the same tasks, as the loop's evaluation before training."""
    shared = {field.name: getattr(config, field.name) for field in dataclasses.fields(RunConfig)}
    policy = build_policy(RunConfig(**{**shared, "init_adapters": adapters, "lora_rank": 0}))
    template = PromptTemplate(history_window=config.history_window, style=config.prompt_style)
    evaluate = heldout.evaluate_before if with_random else heldout.evaluate_policy
    with RolloutEngine(config.env_id, split, num_envs=config.num_envs, template=template,
                       env_kwargs=config.env_kwargs) as engine:
        return evaluate(policy, engine, config)


def silent_share(success: float, group: int) -> float:
    """The share of groups of ``group`` binary-reward episodes, each won with probability ``success``, whose
    episodes all fail or all win: every group-relative advantage in them is zero."""
    return success ** group + (1 - success) ** group


def warm_start(family: str, budget: dict[str, Any], out: Path) -> list[str]:
    """The adapters every run of ``family`` starts from: none when the zero-shot model already gives most
    groups a signal (measured on `dev`), else the expert's won train episodes cloned — the cheapest clone
    on the budget's ladder (episodes, passes over them) that does, or the one closest to it."""
    run = {**SHARED, **FAMILIES[family]["run"]}
    probe = RunConfig(**run, eval_episodes=budget["dev_episodes"])
    zero_shot = cached_json(out / family / "zero-shot-dev.json", lambda: held_out(probe, [], "dev"))
    silent = {(0, 0): silent_share(zero_shot["eval_success_rate"], budget["group"])}
    print(f"{family}: zero-shot dev success {zero_shot['eval_success_rate']:.0%}, so {silent[(0, 0)]:.0%} of groups of "
          f"{budget['group']} would carry no signal", flush=True)

    def folder_of(episodes: int, passes: int) -> Path:
        return out / family / ("clone-" + clone_tag(episodes, passes))

    def clone(episodes: int, passes: int) -> dict[str, float]:
        folder = folder_of(episodes, passes)
        result = train_sft(SFTConfig(**run, collect_policy="oracle", collect_episodes=episodes, iterations=passes,
                                     eval_split="dev", eval_every=0, eval_before=False,
                                     eval_episodes=budget["dev_episodes"], output_dir=str(folder),
                                     resume=(folder / "checkpoint.pt").exists()))
        return result["after"]

    for rung in budget["clone_ladder"]:
        if min(silent.values()) <= 0.5:
            break
        dev = cached_json(out / family / f"clone-{clone_tag(*rung)}-dev.json", lambda r=rung: clone(*r))
        silent[rung] = silent_share(dev["eval_success_rate"], budget["group"])
        print(f"{family}: {clone_name(*rung)} cloned: dev success {dev['eval_success_rate']:.0%}, "
              f"{silent[rung]:.0%} of groups without signal", flush=True)
    chosen = min(silent, key=silent.get)
    if chosen == (0, 0):
        return []
    if not (folder_of(*chosen) / "final").is_dir():  # its JSON came from another machine: train it again
        clone(*chosen)
    print(f"{family}: every run starts from the clone of {clone_name(*chosen)}", flush=True)
    return [str(folder_of(*chosen) / "final")]


def clone_tag(episodes: int, passes: int) -> str:
    """A clone's file name part: ``40`` for one pass over 40 expert episodes, ``40x3`` for three."""
    return f"{episodes}x{passes}" if passes > 1 else str(episodes)


def clone_name(episodes: int, passes: int) -> str:
    return f"{episodes} expert episodes" + (f" ({passes} passes)" if passes > 1 else "")


def start_of(family: str, seed: int, budget: dict[str, Any], adapters: list[str], out: Path) -> dict[str, float]:
    """The start's metrics on each held-out split for ``seed`` (the same weights and sampling seed for every
    algorithm, so evaluated once), with a random choice's success on the same games for scale."""
    config = config_of(family, "GRPO", seed, budget, adapters, out / family / "start")
    return cached_json(out / family / f"start-seed{seed}.json",
                       lambda: {split: held_out(config, adapters, split, with_random=True)
                                for split in FAMILIES[family]["splits"]})


def run_unit(family: str, algorithm: str, seed: int, budget: dict[str, Any], adapters: list[str],
             out: Path) -> dict[str, Any]:
    """Train one (family, algorithm, seed) and evaluate it on every held-out split of the family."""
    folder = out / family / f"{algorithm.lower().replace('.', '')}-seed{seed}"
    _, train, _ = ALGORITHMS[algorithm]
    config = config_of(family, algorithm, seed, budget, adapters, folder)
    before = start_of(family, seed, budget, adapters, out)
    result = train(config)
    rows = result["rows"]
    after = {"test": result["after"]}
    for split in FAMILIES[family]["splits"][1:]:
        after[split] = held_out(config, [*adapters, str(folder / "final")], split)
    trained = [row for row in rows if "episodes_played" in row]
    return {
        "before": before, "after": after,
        # the held-out curve: (training episodes, success) at every evaluation, the final one included
        "curve": [(0, before["test"]["eval_success_rate"])]
                 + [(row["episodes_played"], row["eval_success_rate"]) for row in trained if "eval_success_rate" in row]
                 + [(trained[-1]["episodes_played"], result["after"]["eval_success_rate"])],
        # over the iterations that trained (DAPO trains only its kept groups; an iteration that kept none has no share)
        "zero_advantage_groups": [row["zero_advantage_groups"] for row in trained if "zero_advantage_groups" in row],
        "episodes": trained[-1]["episodes_played"], "iterations": len(trained),
        "train_seconds": training_seconds(trained),
    }


def first_reaching(curve: list[list[float]], threshold: float) -> float | None:
    """The training episodes at the first held-out evaluation at or above ``threshold`` (None: never)."""
    return next((episodes for episodes, success in curve if success >= threshold), None)


def table_of(family: str, units: dict[str, list[dict[str, Any]]], seeds: list[int]) -> str:
    """The family's Markdown table: the start, then each algorithm after training, over ``seeds``."""
    spec = FAMILIES[family]
    splits = spec["splits"]
    starts = [r["before"] for r in next(iter(units.values()))]  # every algorithm's start, per seed
    random = ", ".join(f"`{split}` {np.mean([s[split]['random_success_rate'] for s in starts]):.0%}" for split in splits)
    lines = [f"### {spec['title']}", "",
             f"Held-out success (sampled), mean ± std (95% interval) over seeds {seeds}; budget "
             f"{next(iter(units.values()))[0]['episodes']} training episodes; a random choice among the admissible "
             f"actions wins {random} of the same games:", ""]
    header = " | ".join(f"`{split}` success" for split in splits)
    lines.append(f"| algorithm | {header} | episodes to reach {spec['threshold']:.0%} on `test` | groups with zero "
                 "advantage | training wall time |")
    lines.append("|---|" + "---|" * (len(splits) + 3))
    cells = " | ".join(mean_std_cell([start[split]["eval_success_rate"] for start in starts], interval=True)
                       for split in splits)
    lines.append(f"| start (before training) | {cells} | — | — | — |")
    for algorithm, results in units.items():
        cells = " | ".join(mean_std_cell([r["after"][split]["eval_success_rate"] for r in results], interval=True)
                           for split in splits)
        reached = [first_reaching(r["curve"], spec["threshold"]) for r in results]
        hits = [value for value in reached if value is not None]
        reach = (f"{np.mean(hits):.0f} ({len(hits)}/{len(results)} seeds)" if hits else f"never (0/{len(results)})")
        silent = [float(np.mean(r["zero_advantage_groups"])) for r in results if r["zero_advantage_groups"]]
        lines.append(f"| {algorithm} | {cells} | {reach} | {mean_std_cell(silent) if silent else '— (no update)'} | "
                     f"{mean_std_cell([r['train_seconds'] / 60 for r in results], percent=False)} min |")
    return "\n".join(lines)


def plot_family(family: str, units: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """Held-out success against training episodes, one curve per algorithm with a ±std band over seeds
    (each seed's curve linearly interpolated onto a shared grid of episode counts: DAPO's evaluations
    fall at other counts)."""
    budget = max(r["episodes"] for results in units.values() for r in results)
    grid = np.linspace(0, budget, 9)
    series = {algorithm: (grid, [np.interp(grid, *np.array(r["curve"], dtype=float).T) for r in results])
              for algorithm, results in units.items()}
    plot_seed_bands(series, path, xlabel="training episodes", ylabel="held-out success (`test`)",
                    title=FAMILIES[family]["title"], ylim=(0, 1))
    print(f"\nCurves: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 seed and a tiny budget (a smoke check)")
    parser.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--algorithms", nargs="+", choices=list(ALGORITHMS), default=list(ALGORITHMS))
    parser.add_argument("--seeds", type=int, nargs="+", help="override the budget's seeds")
    parser.add_argument("--model", default=SHARED["model"],
                        help="the policy model: embedded (default), hf:PATH, or tiny — a small random model that "
                             "checks the campaign's wiring in minutes (its numbers mean nothing)")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results/algorithms[-quick][-MODEL])")
    parser.add_argument("--figures", type=Path, help="where the PNGs go (default: --out)")
    args = parser.parse_args()
    seeds = args.seeds or BUDGETS["quick" if args.quick else "full"]["seeds"]
    SHARED["model"] = args.model
    named = "" if args.model == "embedded" else "-" + re.sub(r"[^A-Za-z0-9.]+", "_", args.model).strip("_")
    out = args.out or RESULTS / ("algorithms" + ("-quick" if args.quick else "") + named)
    print(f"Seeds {seeds}; shared settings {SHARED}; results in {out}", flush=True)
    for family in args.families:
        budget = budget_of(family, args.quick)
        print(f"{family}: budget {budget}", flush=True)
        adapters = warm_start(family, budget, out)
        units: dict[str, list[dict[str, Any]]] = {}
        for seed in seeds:
            for algorithm in args.algorithms:
                unit = cached_json(out / family / f"{algorithm.lower().replace('.', '')}-seed{seed}.json",
                                   lambda a=algorithm, s=seed: run_unit(family, a, s, budget, adapters, out))
                units.setdefault(algorithm, []).append(unit)
                print(f"{family} {algorithm} seed {seed}: test success {unit['after']['test']['eval_success_rate']:.0%} "
                      f"after {unit['episodes']} episodes", flush=True)
        text = table_of(family, units, seeds)
        print(f"\n{text}")
        figures = args.figures or out
        figures.mkdir(parents=True, exist_ok=True)
        (figures / f"algorithms-{family}.md").write_text(text + "\n", encoding="utf-8")
        plot_family(family, units, figures / f"algorithms-{family}.png")


if __name__ == "__main__":
    main()
