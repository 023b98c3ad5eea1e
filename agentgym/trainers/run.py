"""A run's folder and bookkeeping: metrics (``metrics.jsonl`` and TensorBoard), the atomic checkpoint that
``--resume`` continues from, phase timings, learning curves and the report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from agentgym.paths import atomic_write
from agentgym.records import Trajectory, write_jsonl

CHECKPOINT = "checkpoint.pt"


def training_seconds(rows: list[dict[str, Any]]) -> float:
    """Seconds a run spent in rollouts and updates, summed over its metrics rows (held-out evaluations left
    out). The rows are the run's whole history even when it was resumed across sittings: a resume restores
    them from the checkpoint, so no iteration is counted twice."""
    return sum(row.get("seconds_rollout", 0.0) + row.get("seconds_update", 0.0) for row in rows)


@dataclass
class MetricsLog:
    """Metrics per iteration, appended to ``metrics.jsonl`` (and TensorBoard when it is installed). A
    run that does not resume starts the file afresh, so a reused output folder holds one run's rows."""

    folder: Path
    rows: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._rewrite()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.folder / "tensorboard"))
        except ImportError:
            self._writer = None

    def restore(self, rows: list[dict[str, Any]]) -> None:
        self.rows = list(rows)
        self._rewrite()

    def log(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        with open(self.folder / "metrics.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        if self._writer is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "iteration":
                    self._writer.add_scalar(key, value, row["iteration"])
            self._writer.flush()

    def _rewrite(self) -> None:
        atomic_write(self.folder / "metrics.jsonl",
                     lambda handle: handle.write("".join(json.dumps(r) + "\n" for r in self.rows).encode()))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class Timer:
    """Seconds spent per phase (rollout, update, eval) in one iteration."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters training changes (the LoRA adapter, or every weight in full fine-tuning)."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


class Run:
    """The folder of one training run and everything written into it.

    ``save_checkpoint``/``load_checkpoint`` keep what a resumed run needs — the trained weights, the
    optimizer and scheduler, every random state (torch, numpy, Python, and the extra generators given)
    and the trainer's own ``state`` — in one file written atomically, never half a file.
    """

    def __init__(self, output_dir: str | Path):
        self.folder = Path(output_dir)
        self.metrics = MetricsLog(self.folder)

    def write_config(self, config: Any) -> Path:
        """The run's settings as ``config.json`` (a dataclass; what the report and the viewer show)."""
        text = json.dumps({"trainer_config": type(config).__name__, **dataclasses.asdict(config)}, indent=1)
        return atomic_write(self.folder / "config.json", lambda handle: handle.write(text.encode()))

    @property
    def checkpoint_path(self) -> Path:
        return self.folder / CHECKPOINT

    def save_checkpoint(self, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                        iteration: int, rng_states: dict[str, Any], state: dict[str, Any]) -> None:
        checkpoint = {
            "iteration": iteration,
            "model": trainable_state(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                    **rng_states},
            "metrics": self.metrics.rows,
            **state,
        }
        atomic_write(self.checkpoint_path, lambda handle: torch.save(checkpoint, handle))

    def load_checkpoint(self, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                        restore_rng: dict[str, Callable[[Any], None]]) -> dict[str, Any]:
        """Restore what :meth:`save_checkpoint` wrote (the metrics rows too) and return the checkpoint
        (its ``iteration`` and the trainer's state); a missing or corrupt file is a clear error.
        ``restore_rng`` maps each extra random state's name to the function that restores it."""
        path = self.checkpoint_path
        if not path.exists():
            raise FileNotFoundError(f"No checkpoint at {path}: start without --resume, or point output_dir at the run.")
        try:
            checkpoint = torch.load(path, weights_only=False)
            missing = {"iteration", "model", "optimizer", "scheduler", "rng"} - set(checkpoint)
            if missing:
                raise KeyError(f"missing {sorted(missing)}")
        except Exception as error:  # any failure to read means the same thing to the user
            raise RuntimeError(f"The checkpoint {path} is corrupt or incomplete ({error}). Delete it to start over, "
                               "or restore it from a backup.") from error
        parameters = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in checkpoint["model"].items():
                parameters[name].copy_(value)
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        torch.set_rng_state(checkpoint["rng"]["torch"])
        np.random.set_state(checkpoint["rng"]["numpy"])
        random.setstate(checkpoint["rng"]["python"])
        for name, restore in restore_rng.items():
            restore(checkpoint["rng"][name])
        self.metrics.restore(checkpoint.get("metrics", []))
        return checkpoint

    def save_trajectories(self, iteration: int, trajectories: Sequence[Trajectory], limit: int) -> Path | None:
        """Up to ``limit`` episodes of an iteration, whole groups first come first, as turn records in
        ``trajectories/iteration-NNNN.jsonl`` (what ``agentgym view`` shows of a run)."""
        if limit <= 0 or not trajectories:
            return None
        kept, groups = [], {}
        for trajectory in trajectories:
            groups.setdefault(trajectory.group_id, []).append(trajectory)
        for members in groups.values():
            if kept and len(kept) + len(members) > limit:
                break
            kept += members[:limit]
        return write_jsonl(self.folder / "trajectories" / f"iteration-{iteration:04d}.jsonl", kept)

    def plot(self, keys: Sequence[str], name: str = "learning_curves.png") -> Path | None:
        """Learning curves of the ``keys`` metrics (one panel each) as a PNG in the folder."""
        return plot_curves(self.metrics.rows, self.folder / name, keys)

    def write_report(self, text: str) -> Path:
        path = self.folder / "report.md"
        path.write_text(text, encoding="utf-8")
        return path

    def close(self) -> None:
        self.metrics.close()


def plot_curves(rows: Sequence[dict[str, Any]], path: Path, keys: Sequence[str]) -> Path | None:
    """Learning curves (one panel per metric) as a PNG; ``None`` when no row has any of the keys."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in keys if any(k in row for row in rows)]
    if not keys:
        return None
    figure, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for axis, key in zip(axes[0], keys):
        points = [(row["iteration"], row[key]) for row in rows if key in row]
        axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3)
        axis.set_title(key)
        axis.set_xlabel("iteration")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
