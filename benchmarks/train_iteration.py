"""Where a training iteration's time goes, and how much ``reuse_computation`` saves: the demo's config
(configs/demo-grpo-coin-level3.yaml: GRPO, choice mode, LoRA on the top 8 of 30 layers, 3 tasks × 4
episodes) run with it off (the old path) and on (the new one), side by side, from the same seed.

Each run's time is split by phase, every phase counted once (a phase inside another is subtracted from
it): environment steps and resets, prompt building (chat template and tokenisation), choice scoring
(the rollout's forward passes) or generation (free text), the update's forward (log-probs and loss), its
backward, the rest of the update (optimizer, bookkeeping), and the held-out evaluations before and after
training. There is no separate old-log-prob pass to time: the loop reads the log-probs recorded at sampling
time, a rollout's weights being the update's starting weights.

The two paths must sample the same episodes: the script checks that their training success and rewards
agree, and prints both.

    python benchmarks/train_iteration.py                  # 2 iterations per path, one round
    python benchmarks/train_iteration.py --rounds 2       # old, new, old, new
    python benchmarks/train_iteration.py --config configs/grpo-search.yaml   # another config's GRPO (free generation)
    python benchmarks/train_iteration.py --config configs/ppo-coin-level5.yaml   # PPO: its value passes too

Another config runs from fresh weights: a GRPO, PPO or EPO config, or a pipeline's stage of those, with
the shared settings, without the stages before it (the speed of an iteration, not its learning, is
measured). An algorithm's own passes are timed apart: its advantages (PPO's value pass over the rollout)
and the loss terms it adds to the policy loss (PPO's value loss, EPO's entropy smoothing).
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

DEMO = Path(__file__).resolve().parent.parent / "configs" / "demo-grpo-coin-level3.yaml"
PHASES = ("env steps", "prompt building", "choice scoring", "generation", "advantages", "update forward",
          "update extra terms", "update backward", "update other", "rollout other")
# the shared loop's policy-gradient trainers, timed alike: module name → its algorithm class
TRAINERS = {"grpo": "GroupRelative", "ppo": "ValueBaseline", "epo": "EntropySmoothing"}


class PhaseClock:
    """Exclusive time per phase of wrapped functions: time in a nested wrapped call goes to the inner one,
    except inside an ``absorbing`` phase (the evaluation keeps its own scoring and env steps)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._stack: list[float] = []  # time already charged to inner phases, per open call
        self._absorbed = False

    def wrap(self, owner: object, name: str, phase: str, *, absorbing: bool = False) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            if self._absorbed:
                return original(*args, **kwargs)
            self._absorbed = absorbing
            start = time.perf_counter()
            self._stack.append(0.0)
            try:
                return original(*args, **kwargs)
            finally:
                self._absorbed = False
                total, inner = time.perf_counter() - start, self._stack.pop()
                self.seconds[phase] += total - inner
                if self._stack:
                    self._stack[-1] += total

        setattr(owner, name, timed)


def trainer_settings(path: Path) -> tuple[str, dict]:
    """The trainer and settings of a config file: a GRPO, PPO or EPO config's, or a pipeline's first stage
    of those over its shared settings."""
    settings = yaml.safe_load(path.read_text())
    if settings.get("trainer") == "pipeline":
        stage = next((s for s in settings["stages"] if s.get("trainer") in TRAINERS), None)
        if stage is None:
            raise SystemExit(f"{path}: a pipeline without a stage of {', '.join(TRAINERS)}; give such a config.")
        settings = {**settings.get("shared", {}), **stage}
    trainer = settings.pop("trainer", None)
    if trainer not in TRAINERS:
        raise SystemExit(f"{path}: `trainer: {trainer}` — this benchmark times {', '.join(TRAINERS)} configs "
                         "(or a pipeline with a stage of one).")
    return trainer, settings


def run_path(config_path: Path, reuse: bool, iterations: int, eval_episodes: int) -> dict:
    """One training run of the config's trainer in this process, timed by phase."""
    import importlib

    import torch

    from agentgym.hf_policy import HFPolicy
    from agentgym.rollout import EnvPool
    from agentgym.trainers import heldout, update
    from agentgym.trainers.config import make_config

    trainer, settings = trainer_settings(config_path)
    module = importlib.import_module(f"agentgym.trainers.{trainer}")
    clock = PhaseClock()
    for owner, name, phase in ((EnvPool, "step", "env steps"), (EnvPool, "reset", "env steps"),
                               (HFPolicy, "prompt_ids", "prompt building"), (HFPolicy, "reply_ids", "prompt building"),
                               (HFPolicy, "_scored_choices", "choice scoring"),
                               (HFPolicy, "generate", "generation"), (update, "policy_loss_terms", "update forward"),
                               (torch.Tensor, "backward", "update backward"), (update, "optimise", "update other")):
        clock.wrap(owner, name, phase)
    algorithm = getattr(module, TRAINERS[trainer])  # its own methods, or those it inherits
    for name, phase in (("collect", "rollout other"), ("advantages", "advantages"), ("extra_loss", "update extra terms")):
        clock.wrap(algorithm, name, phase)
    for name in ("evaluate_before", "evaluate_policy"):  # before and after training
        clock.wrap(heldout, name, "evaluation", absorbing=True)
    with tempfile.TemporaryDirectory() as folder:
        config = make_config(module.CONFIG, settings, [f"iterations={iterations}", f"eval_episodes={eval_episodes}",
                                                       f"output_dir={folder}", f"reuse_computation={reuse}"])
        result = module.train(config, progress=True)
    rows = [r for r in result["rows"] if "seconds_rollout" in r]
    return {"reuse": reuse, "phases": dict(clock.seconds),
            "iteration_seconds": [r["seconds_rollout"] + r.get("seconds_update", 0.0) for r in rows],
            "train": [(r["train_success_rate"], r["train_mean_reward"], r["samples"]) for r in rows],
            "losses": [r.get("loss") for r in rows]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=DEMO,
                        help="a GRPO, PPO or EPO config, or a pipeline with a stage of one (default: the demo's)")
    parser.add_argument("--iterations", type=int, default=2, help="training iterations per run")
    parser.add_argument("--rounds", type=int, default=1, help="old-then-new rounds")
    parser.add_argument("--eval-episodes", type=int, default=10, help="held-out episodes of each evaluation")
    parser.add_argument("--path", choices=["old", "new"], help=argparse.SUPPRESS)  # one run, in a child process
    parser.add_argument("--out", type=Path, default=None,
                        help="results file (default: results/train_iteration.json; -NAME.json for another config)")
    args = parser.parse_args()
    suffix = "" if args.config == DEMO else f"-{args.config.stem}"
    args.out = args.out or Path(f"results/train_iteration{suffix}.json")
    if args.path:
        print(json.dumps(run_path(args.config, args.path == "new", args.iterations, args.eval_episodes)))
        return
    runs: dict[str, list[dict]] = {"old": [], "new": []}
    for _ in range(args.rounds):
        for path in ("old", "new"):  # each in a fresh process: no warm caches carried between them
            child = subprocess.run([sys.executable, __file__, "--path", path, "--config", str(args.config),
                                    "--iterations", str(args.iterations), "--eval-episodes", str(args.eval_episodes)],
                                   check=True, stdout=subprocess.PIPE, text=True)
            runs[path].append(json.loads(child.stdout.strip().splitlines()[-1]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(runs, indent=1))

    count = args.rounds * args.iterations
    print(f"\n{args.config.name}, {args.iterations} iterations × {args.rounds} round(s) per path "
          f"(seconds per iteration; evaluation: {args.eval_episodes} held-out episodes before and after, per run):\n")
    print("| phase | old path | new path (`reuse_computation`) |")
    print("|---|---|---|")
    for phase in (*PHASES, "evaluation"):
        per = 1 if phase == "evaluation" else count
        cells = [np.sum([run["phases"].get(phase, 0.0) for run in runs[p]]) / per / (args.rounds if per == 1 else 1)
                 for p in ("old", "new")]
        print(f"| {phase}{' (per run)' if per == 1 else ''} | {cells[0]:.1f} | {cells[1]:.1f} |")
    old = np.mean([s for run in runs["old"] for s in run["iteration_seconds"]])
    new = np.mean([s for run in runs["new"] for s in run["iteration_seconds"]])
    print(f"| **iteration (rollout + update)** | **{old:.1f}** | **{new:.1f}** |")
    print(f"\nNew path: {old / new:.2f}× faster per iteration.")
    for path in ("old", "new"):
        print(f"  {path}: train (success, reward, samples) per iteration {runs[path][0]['train']}, "
              f"loss {runs[path][0]['losses']}")
    same = all(np.allclose(a["train"], b["train"]) for a, b in zip(runs["old"], runs["new"]))
    print("The two paths sampled the same episodes." if same else
          "WARNING: the two paths' rollouts differ (float rounding changed a sampled choice).")


if __name__ == "__main__":
    main()
