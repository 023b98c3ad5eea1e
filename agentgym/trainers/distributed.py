"""Data-parallel training on N processes: ``accelerate launch`` (or ``torchrun``) runs ``agentgym train``
once per rank, and the shared loop calls the hooks here (each one does nothing in a single process).

    accelerate launch --multi_gpu --num_processes 2 -m agentgym.cli train configs/demo-grpo-coin-level3.yaml

* **Rollouts are sharded** (:class:`ShardedEngine`): every rank plans the iteration's episodes as a single
  process would, plays the groups ``g`` with ``g % world == rank`` on its own envs, and the trajectories
  are gathered so that every rank holds all of them, in plan order. Advantages are then computed on the
  whole batch, identically on every rank.
* **Gradients are summed over ranks** (:func:`shard`, :func:`sum_gradients`): each rank takes a
  contiguous share of every minibatch, scales each micro-batch's loss by its share of the *whole*
  minibatch, and the gradients are all-reduced before clipping, so every rank takes the same optimizer
  step — the one a single process takes on the whole minibatch when ``micro_batch_size`` divides each
  share (DDP's averaging, written out so it works on any model, LoRA included, and on gloo).
* **One writer**: rank 0 writes metrics, trajectories, the checkpoint, the report and the final weights
  (:func:`make_run`); every rank resumes from that checkpoint, whatever the number of ranks.
* **Seeds**: the model starts identical on every rank (broadcast from rank 0); each rank other than 0
  samples with its own generator, reseeded every iteration from (seed, rank, iteration), so a resumed
  run samples as an uninterrupted one would.

A rank that dies breaks the process group: the others fail at their next collective (gloo reports
the lost connection) and the launcher stops them all; ``--resume`` continues from the last checkpoint.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from agentgym.records import Trajectory
from agentgym.rollout import EpisodeSpec, RolloutEngine
from agentgym.trainers.run import CHECKPOINT, MetricsLog, Run


def setup() -> None:
    """Join the process group the launcher describes (``WORLD_SIZE`` > 1), once: gloo on CPU, NCCL on
    GPUs, through accelerate. A single process does nothing."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        from accelerate import PartialState

        PartialState(cpu=not torch.cuda.is_available())


def world() -> int:
    return torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1


def rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def gather(values: list) -> list[list]:
    """Every rank's ``values``, by rank (``[values]`` in a single process)."""
    if world() == 1:
        return [values]
    everyone: list[Any] = [None] * world()
    torch.distributed.all_gather_object(everyone, values)
    return everyone


# ---------------------------------------------------------------------- start of a run
def start(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Give every rank rank 0's starting weights (the trained ones and any the algorithm added)."""
    if world() == 1:
        return
    with torch.no_grad():
        for parameter in parameters:
            torch.distributed.broadcast(parameter.data, src=0)


def seed_rank(policy: Any, seed: int, iteration: int) -> None:
    """Reseed the sampler of ranks other than 0 from (seed, rank, iteration): each rank samples its own
    episodes, and a resumed run as an uninterrupted one. Rank 0 keeps its generator (and a single
    process samples exactly as without this module)."""
    if rank() == 0:
        return
    generator = torch.Generator()
    generator.manual_seed(seed * 1_000_003 + rank() * 7_919 + iteration)
    policy.set_rng_state(generator.get_state())


# ---------------------------------------------------------------------- rollouts
class ShardedEngine:
    """A :class:`~agentgym.rollout.RolloutEngine` whose ``run`` plays this rank's groups and returns
    every rank's trajectories in plan order; everything else is the engine's."""

    def __init__(self, engine: RolloutEngine):
        self.engine = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def run(self, policy: Any, episodes: Sequence[EpisodeSpec], **kwargs: Any) -> list[Trajectory]:
        groups = list(dict.fromkeys(spec.group_id for spec in episodes))
        mine = {group for index, group in enumerate(groups) if index % world() == rank()}
        local = self.engine.run(policy, [spec for spec in episodes if spec.group_id in mine], **kwargs)
        played = {trajectory.episode_id: trajectory for share in gather(local) for trajectory in share}
        return [played[spec.episode_id] for spec in episodes]


def shard_engines(engines: Iterable[RolloutEngine]) -> tuple:
    """The engines, sharded over ranks when there is more than one."""
    return tuple(engines) if world() == 1 else tuple(ShardedEngine(engine) for engine in engines)


# ---------------------------------------------------------------------- updates
def shard(minibatch: Sequence) -> list:
    """This rank's contiguous share of a minibatch (all of it in a single process)."""
    size = -(-len(minibatch) // world())
    return list(minibatch[rank() * size : (rank() + 1) * size])


def sum_gradients(parameters: Sequence[torch.nn.Parameter]) -> None:
    """Sum every parameter's gradient over ranks (a rank with an empty share adds zeros). A parameter
    no rank computed a gradient for keeps ``None``, as in a single process, so the optimizer skips it."""
    if world() == 1:
        return
    present = torch.tensor([p.grad is not None for p in parameters], dtype=torch.float32)
    torch.distributed.all_reduce(present)
    wanted = [p for p, count in zip(parameters, present.tolist()) if count > 0]
    if not wanted:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in wanted])
    torch.distributed.all_reduce(flat)
    offset = 0
    for parameter in wanted:
        size = parameter.numel()
        parameter.grad = flat[offset : offset + size].view_as(parameter).clone()
        offset += size


def sum_values(values: dict[str, float]) -> dict[str, float]:
    """Per-key sums over ranks of logged totals (a rank whose shares were empty logged none)."""
    if world() == 1:
        return values
    summed: dict[str, float] = {}
    for share in gather([values]):
        for key, value in share[0].items():
            summed[key] = summed.get(key, 0.0) + value
    return summed


# ---------------------------------------------------------------------- the run folder
class _RowsOnly(MetricsLog):
    """Metrics kept in memory: ranks other than 0 write no file."""

    def __post_init__(self) -> None:
        self._writer = None

    def log(self, row: dict[str, Any]) -> None:
        self.rows.append(row)

    def _rewrite(self) -> None:
        pass


class FollowerRun(Run):
    """The run of a rank other than 0: it reads rank 0's checkpoint and writes nothing into the run
    folder (its config, report and final weights go to a scratch folder removed at exit)."""

    def __init__(self, output_dir: str | Path):
        self._shared_checkpoint = Path(output_dir) / CHECKPOINT
        self.folder = Path(tempfile.mkdtemp(prefix=f"agentgym-rank{rank()}-"))
        atexit.register(shutil.rmtree, self.folder, ignore_errors=True)
        self.metrics = _RowsOnly(self.folder)

    @property
    def checkpoint_path(self) -> Path:
        return self._shared_checkpoint

    def save_checkpoint(self, **kwargs: Any) -> None:
        pass

    def save_trajectories(self, iteration: int, trajectories: Sequence[Trajectory], limit: int) -> Path | None:
        return None

    def plot(self, keys: Sequence[str], name: str = "learning_curves.png") -> Path | None:
        return None


def make_run(output_dir: str | Path) -> Run:
    """The run folder's writer on rank 0 (or a single process); a :class:`FollowerRun` elsewhere."""
    return Run(output_dir) if rank() == 0 else FollowerRun(output_dir)
