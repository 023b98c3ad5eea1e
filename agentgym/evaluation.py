"""Held-out evaluation: mean ± std over seeds, and result files that say exactly what was run.

Each seed draws its own sample of the split's tasks and seeds the policy; the summary reports the
mean and sample standard deviation over seeds with a 95% t-interval, never a best seed. The result
file records the env id, split, policy settings, seeds, package versions, git revision and every
episode, so a number can always be traced back to its run.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import math
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from agentgym.paths import atomic_write
from agentgym.policies import make_policy
from agentgym.records import Trajectory
from agentgym.rollout import RolloutEngine

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom; the normal's beyond.
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042]

METRICS = ("success_rate", "mean_reward", "mean_turns", "invalid_rate")

TRACKED_PACKAGES = ("agentgym", "gymnasium", "numpy", "textworld", "scienceworld", "playwright", "torch",
                    "transformers", "peft")


def episode_metrics(trajectories: Sequence[Trajectory]) -> dict[str, float]:
    """Success rate, mean return, mean turns and the share of invalid turns of some episodes."""
    if not trajectories:
        raise ValueError("No episodes to summarise.")
    turns = sum(t.num_turns for t in trajectories)
    return {
        "success_rate": float(np.mean([t.won for t in trajectories])),
        "mean_reward": float(np.mean([t.total_reward for t in trajectories])),
        "mean_turns": float(np.mean([t.num_turns for t in trajectories])),
        "invalid_rate": float(sum(t.num_invalid for t in trajectories) / turns) if turns else 0.0,
    }


def mean_std_ci(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample std (ddof=1) and the half-width of a 95% t-interval over seeds."""
    values = [float(v) for v in values]
    n = len(values)
    mean = float(np.mean(values))
    if n < 2:
        return {"mean": mean, "std": 0.0, "ci95": float("nan"), "n": n}
    std = float(np.std(values, ddof=1))
    t = _T95[n - 2] if n - 1 <= len(_T95) else 1.96
    return {"mean": mean, "std": std, "ci95": t * std / math.sqrt(n), "n": n}


def package_versions(names: Iterable[str] = TRACKED_PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_revision() -> str | None:
    """The git commit of the agentgym source tree (with ``-dirty`` for uncommitted changes), if any."""
    here = Path(__file__).resolve().parent
    try:
        revision = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return revision + ("-dirty" if dirty else "")


def evaluate(
    env_id: str,
    policy: str,
    *,
    split: str = "test",
    episodes: int = 20,
    seeds: Sequence[int] = (0, 1, 2),
    num_envs: int = 4,
    concurrency: str = "auto",
    policy_kwargs: dict[str, Any] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate policy ``policy`` (a name, see ``agentgym list``) on ``episodes`` tasks of ``split``
    per seed, and return the result record (see :func:`write_results`)."""
    policy_kwargs = dict(policy_kwargs or {})
    per_seed, records, policy_config = [], [], {}
    with RolloutEngine(env_id, split, num_envs=num_envs, concurrency=concurrency, env_kwargs=env_kwargs) as engine:
        count = min(episodes, len(engine.tasks))
        for seed in seeds:
            agent = make_policy(policy, seed=seed, **policy_kwargs)
            try:
                plan = engine.plan(num_tasks=count, seed=seed, run_id=f"seed{seed}")
                label = f"{policy} seed {seed}" if progress else False
                trajectories = engine.run(agent, plan, progress=label)
                policy_config = agent.config()
            finally:
                agent.close()
            per_seed.append({"seed": seed, "episodes": len(trajectories), **episode_metrics(trajectories)})
            records.extend(t.to_dict() for t in trajectories)
    policy_config.pop("seed", None)
    return {
        "env_id": env_id,
        "split": split,
        "env_kwargs": dict(env_kwargs or {}),
        "policy": policy_config or {"name": policy},
        "seeds": list(seeds),
        "episodes_per_seed": count,
        "summary": {metric: mean_std_ci([row[metric] for row in per_seed]) for metric in METRICS},
        "per_seed": per_seed,
        "versions": package_versions(),
        "git_revision": git_revision(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "episodes": records,
    }


def write_results(result: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a result record as JSON, atomically."""
    return atomic_write(path, lambda handle: handle.write(json.dumps(result, indent=1).encode("utf-8")))


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        result = json.load(handle)
    missing = {"env_id", "split", "policy", "seeds", "summary"} - set(result)
    if missing:
        raise ValueError(f"{path} is not an agentgym result file (it lacks {sorted(missing)}).")
    return result


def mean_std_cell(values: Sequence[float], percent: bool = True, interval: bool = False) -> str:
    """``values`` over seeds as "mean ± std" (percent or two decimals; with ``interval``, the 95%
    interval's half-width in brackets); a single value alone."""
    stats = mean_std_ci(values)
    if len(values) < 2:
        return f"{stats['mean']:.1%}" if percent else f"{stats['mean']:.2f}"
    text = f"{stats['mean']:.1%} ± {stats['std']:.1%}" if percent else f"{stats['mean']:.2f} ± {stats['std']:.2f}"
    if interval:
        text += f" (±{stats['ci95']:.1%})" if percent else f" (±{stats['ci95']:.2f})"
    return text


def plot_seed_bands(series: dict[str, tuple[Sequence[float], Sequence[Sequence[float]]]], path: str | os.PathLike, *,
                    xlabel: str, ylabel: str, title: str, ylim: tuple[float, float] | None = None) -> Path:
    """A PNG of curves over seeds: for each label, ``(x, values)`` with one row of ``values`` per seed,
    drawn as the mean with a ±std band (no band for one seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for label, (x, values) in series.items():
        values = np.asarray(values, dtype=float)
        mean = values.mean(axis=0)
        std = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros_like(mean)
        axis.plot(x, mean, marker="o", markersize=3, label=f"{label} ({len(values)} seed{'s' * (len(values) > 1)})")
        axis.fill_between(x, mean - std, mean + std, alpha=0.15)
    axis.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if ylim:
        axis.set_ylim(*ylim)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _cell(stats: dict[str, float], percent: bool) -> str:
    scale, unit = (100.0, "%") if percent else (1.0, "")
    text = f"{stats['mean'] * scale:.1f}{unit} ± {stats['std'] * scale:.1f}"
    if not math.isnan(stats["ci95"]):
        text += f" (±{stats['ci95'] * scale:.1f})"
    return text


def markdown_table(results: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of result records: mean ± std over seeds (95% CI half-width in brackets)."""
    header = ("| env | split | policy | seeds × episodes | success | reward | turns | invalid |\n"
              "|---|---|---|---|---|---|---|---|")
    rows = []
    for result in results:
        summary = result["summary"]
        rows.append("| {env} | {split} | {policy} | {n} × {e} | {s} | {r} | {t} | {i} |".format(
            env=result["env_id"],
            split=result["split"],
            policy=result["policy"].get("name", "?"),
            n=len(result["seeds"]),
            e=result.get("episodes_per_seed", "?"),
            s=_cell(summary["success_rate"], True),
            r=_cell(summary["mean_reward"], False),
            t=_cell(summary["mean_turns"], False),
            i=_cell(summary["invalid_rate"], True),
        ))
    return "\n".join([header, *rows])
