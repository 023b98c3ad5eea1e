"""Data-parallel training on 2 CPU processes (gloo) launched by ``accelerate launch``: one update's gradient
equals single-process training on the union of the ranks' batches, a killed 2-process run resumes from
its checkpoint, and a rank that dies stops the others instead of leaving them hanging."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import psutil
import pytest
import torch

from test_training import ONE_TURN_COIN

ACCELERATE = pathlib.Path(sys.executable).parent / "accelerate"
pytestmark = pytest.mark.skipif(not ACCELERATE.exists(), reason="accelerate is not installed (extra llm)")

GRADIENT = """
import functools, sys
import numpy as np, torch
from agentgym.trainers import distributed, update
from agentgym.trainers.grpo import GroupRelative, GRPOConfig
from agentgym.trainers.samples import TurnSample

distributed.setup()
config = GRPOConfig(model="tiny", lora_rank=0, minibatch_size=8, micro_batch_size=2, max_grad_norm=1e9, seed=0)
algorithm = GroupRelative(config)
torch.manual_seed(0)
policy = algorithm.build_policy()
rng = np.random.default_rng(0)
samples = []
for index in range(8):  # per-turn text samples of different lengths and advantages of both signs
    response = rng.integers(100, 5000, size=int(rng.integers(2, 6))).tolist()
    samples.append(TurnSample(rng.integers(100, 5000, size=int(rng.integers(8, 16))).tolist(), response,
                              (-rng.random(len(response)) * 3).tolist(), "text", 0, advantage=float(rng.normal())))
samples = samples[: int(sys.argv[2])]
config.minibatch_size = len(samples)  # one optimizer step
parameters = [p for p in policy.model.parameters() if p.requires_grad]
before = [p.detach().clone() for p in parameters]
optimizer = torch.optim.SGD(parameters, lr=1.0)  # the step is minus the gradient
scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
result = update.optimise(samples, functools.partial(algorithm.loss, policy, iteration=1), optimizer=optimizer,
                         scheduler=scheduler, config=config, rng=np.random.default_rng(0))
gradient = torch.cat([(old - new.detach()).reshape(-1) for old, new in zip(before, parameters)])
everyone = distributed.gather([gradient])
if distributed.rank() == 0:
    torch.save({"gradients": [g[0] for g in everyone], "result": result, "world": distributed.world()}, sys.argv[1])
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(arguments: list[str], processes: int = 2, **kwargs) -> subprocess.Popen:
    command = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
               *arguments]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, env=environment, start_new_session=True, text=True, **kwargs)


def test_two_process_gradient_equals_single_process_gradient_on_the_union(tmp_path):
    script = tmp_path / "gradient.py"
    script.write_text(GRADIENT)
    launched = _launch([str(script), str(tmp_path / "two.pt"), "8"], stderr=subprocess.PIPE)
    _, errors = launched.communicate(timeout=600)
    assert launched.returncode == 0, errors[-3000:]
    for name, count in (("one.pt", "8"), ("half.pt", "4")):
        single = subprocess.run([sys.executable, str(script), str(tmp_path / name), count], capture_output=True,
                                text=True, timeout=600)
        assert single.returncode == 0, single.stderr[-3000:]
    two, one, half = (torch.load(tmp_path / name) for name in ("two.pt", "one.pt", "half.pt"))
    assert two["world"] == 2 and one["world"] == 1
    rank0, rank1 = two["gradients"]
    assert torch.equal(rank0, rank1)  # both ranks took the same step
    # The tiny random model's gradients are small (~1e-5), so the tolerance is relative to their size.
    scale = one["gradients"][0].abs().max()
    assert scale > 0 and (rank0 - one["gradients"][0]).abs().max() <= 1e-5 * scale
    assert two["result"]["tokens"] == one["result"]["tokens"]  # each sample was processed once, by one rank
    assert two["result"]["grad_norm"] == pytest.approx(one["result"]["grad_norm"], rel=1e-5)
    assert two["result"]["loss"] == pytest.approx(one["result"]["loss"], rel=1e-5, abs=1e-7)
    # Rank 0's share alone gives another gradient: the equality above needs both ranks' samples.
    assert (half["gradients"][0] - one["gradients"][0]).abs().max() > 0.1 * scale


def _write_config(path: pathlib.Path, **overrides) -> pathlib.Path:
    settings = {"trainer": "grpo", **ONE_TURN_COIN, "num_envs": 2, "eval_episodes": 4, **overrides}
    path.write_text("\n".join(f"{key}: {json.dumps(value)}" for key, value in settings.items()))
    return path


def _wait_for_checkpoint(folder: pathlib.Path, process: subprocess.Popen, iteration: int) -> None:
    checkpoint, deadline = folder / "checkpoint.pt", time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        if checkpoint.exists() and torch.load(checkpoint, weights_only=False)["iteration"] >= iteration:
            return
        time.sleep(0.1)
    raise AssertionError(f"no checkpoint of iteration {iteration} (launcher exit code {process.poll()})")


def _kill_run(launcher: subprocess.Popen) -> None:
    """SIGKILL the launcher and every rank, as a crashed machine would. torch's elastic agent starts each rank
    in its own session, so killing the launcher's process group alone leaves the ranks training on, racing a
    resumed run for the same folder."""
    parent = psutil.Process(launcher.pid)
    processes = [parent, *parent.children(recursive=True)]  # listed before any is killed
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    launcher.wait()
    psutil.wait_procs(processes, timeout=60)


def _rows(folder: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_a_killed_two_process_run_resumes_on_two_processes(tmp_path):
    folder, iterations = tmp_path / "run", 12
    config = _write_config(tmp_path / "run.yaml", iterations=iterations, output_dir=str(folder))
    train = ["-m", "agentgym.cli", "train", str(config)]
    first = _launch(train, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_checkpoint(folder, first, 2)
    _kill_run(first)  # the launcher and both ranks, mid-run
    stopped_at = torch.load(folder / "checkpoint.pt", weights_only=False)["iteration"]
    # An iteration of this tiny run can take well under a second on a fast machine (CI once saw the run reach
    # iteration 4 of 4 before the kill landed): the iterations left after 2 are the margin.
    assert 2 <= stopped_at < iterations
    resumed = _launch([*train, "--resume"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, errors = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, errors[-3000:]
    rows = _rows(folder)
    expected = list(range(1, iterations + 1))
    assert [row["iteration"] for row in rows if "train_success_rate" in row] == expected  # written once each
    assert torch.load(folder / "checkpoint.pt", weights_only=False)["iteration"] == iterations
    assert (folder / "final" / "config.json").exists() and (folder / "report.md").exists()
    # Every iteration trained on all 4 groups, 2 played on each rank.
    assert all(row["samples"] == 16 for row in rows if "samples" in row)


def test_a_rank_that_dies_stops_the_other_ranks_without_a_hang(tmp_path):
    folder = tmp_path / "run"
    config = _write_config(tmp_path / "run.yaml", iterations=50, output_dir=str(folder))
    launcher = _launch(["-m", "agentgym.cli", "train", str(config)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    try:
        _wait_for_checkpoint(folder, launcher, 1)
        ranks = [p for p in psutil.Process(launcher.pid).children(recursive=True) if "agentgym.cli" in p.cmdline()]
        rank1 = next(p for p in ranks if p.environ().get("RANK") == "1")
        rank1.kill()
        start = time.monotonic()
        assert launcher.wait(timeout=180) != 0
        assert time.monotonic() - start < 180
        survivors = [p for p in ranks if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not survivors, survivors
    finally:
        if launcher.poll() is None:
            _kill_run(launcher)
