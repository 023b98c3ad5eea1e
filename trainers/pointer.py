"""A small trainable pointer model for GUI grounding: screenshot + instruction -> a distribution over
screen positions, trained supervised on the GUI env's train screens in minutes on a CPU.

It is the offline baseline of the GUI family: no vision-language model runs here, and GUI-RC needs a
policy that samples. Sampling cells from its distribution feeds :class:`agentgym.grounding.GUIRCPolicy`
(``--policy gui-rc:pointer:PATH``); its argmax is the greedy answer (``--policy pointer:PATH``).

The model, top to bottom: three convolutions (4x4 patches, then 3x3) turn the screenshot (at half size)
into a feature map with one cell per 16x16 pixels; the instruction's words and word pairs, hashed into buckets, are averaged
into one vector that scales and shifts every feature channel (FiLM); with each cell's coordinates added
(so "the second item" or "top right" can be learned), a 1x1 convolution scores every cell. The loss is
cross-entropy against a target spread evenly over the cells whose centres lie in the element's box.

    agentgym train configs/pointer-gui.yaml
"""

from __future__ import annotations

import io
import itertools
import json
import re
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from agentgym.policies import Generation, Policy, PolicyRequest
from agentgym.trainers import common

_WORD = re.compile(r"[a-z0-9]+")
_INSTRUCTION = re.compile(r"Instruction: (.*?)\n")


@dataclass
class PointerConfig:
    """Settings of a pointer-model run (YAML keys or ``key=value`` overrides)."""

    env_id: str = "agentgym/GUIGrounding-v0"  # a GUI grounding env (screens with element boxes)
    train_screens: int = 800  # train screens rendered and used; each gives every uniquely described element
    targets_per_screen: int = 8  # elements sampled from a screen per step (more: slower, not much better)
    epochs: int = 6  # passes over the train screens
    screens_per_batch: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    width: int = 64  # feature channels
    buckets: int = 16384  # hashed word and word-pair buckets
    eval_split: str = "dev"  # evaluated (greedy accuracy) after every epoch
    eval_screens: int = 100
    seed: int = 0
    output_dir: str = "runs/pointer-gui"
    resume: bool = False  # continue from output_dir/checkpoint.pt


CELL = 16  # screen pixels per output cell
DOWNSAMPLE = 2  # the network sees the screenshot at half size


def tokens(instruction: str, buckets: int) -> list[int]:
    """Hashed words and word pairs of an instruction (crc32: the same in every process)."""
    words = _WORD.findall(instruction.lower())
    grams = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
    return [zlib.crc32(gram.encode()) % buckets for gram in grams] or [0]


class PointerNet(nn.Module):
    """Screenshot (N, 3, H, W) in [0, 1] + hashed instruction -> a logit per 16x16-pixel screen cell."""

    def __init__(self, width: int = 64, buckets: int = 16384):
        super().__init__()
        self.buckets = buckets
        self.image = nn.Sequential(  # 4x4 patches, then one stride-2 and one plain 3x3 layer: 16-pixel cells
            nn.Conv2d(3, 32, 4, stride=4), nn.ReLU(),
            nn.Conv2d(32, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
        )
        self.words = nn.EmbeddingBag(buckets, width, mode="mean")
        self.film = nn.Linear(width, 2 * width)
        self.head = nn.Sequential(nn.Conv2d(width + 2, width, 1), nn.ReLU(), nn.Conv2d(width, 1, 1))

    def forward(self, images: torch.Tensor, screen_of: torch.Tensor, instructions: Sequence[str]) -> torch.Tensor:
        features = self.image(images)[screen_of]  # one feature map per instruction
        ids = [tokens(text, self.buckets) for text in instructions]
        offsets = torch.tensor([0] + [len(i) for i in ids[:-1]]).cumsum(0)
        gamma, beta = self.film(self.words(torch.tensor(list(itertools.chain.from_iterable(ids))), offsets)).chunk(2, dim=-1)
        features = torch.relu(features * (1 + gamma[:, :, None, None]) + beta[:, :, None, None])
        n, _, height, width = features.shape
        ys = torch.linspace(-1, 1, height).view(1, 1, height, 1).expand(n, 1, height, width)
        xs = torch.linspace(-1, 1, width).view(1, 1, 1, width).expand(n, 1, height, width)
        return self.head(torch.cat([features, xs, ys], dim=1)).flatten(1)


def screen_tensor(image: np.ndarray) -> torch.Tensor:
    """An RGB screenshot (H, W, 3) as the network's input (3, H/2, W/2), uint8 (converted per batch)."""
    from PIL import Image

    height, width = image.shape[:2]
    small = Image.fromarray(image).resize((width // DOWNSAMPLE, height // DOWNSAMPLE), Image.BILINEAR)
    return torch.from_numpy(np.asarray(small).copy()).permute(2, 0, 1)


def cell_target(box: Sequence[float], grid: tuple[int, int]) -> torch.Tensor:
    """Probability spread evenly over the cells whose centres lie in ``box`` (else the centre's cell)."""
    rows, cols = grid
    centres_x = (torch.arange(cols) + 0.5) * CELL
    centres_y = (torch.arange(rows) + 0.5) * CELL
    x1, y1, x2, y2 = box
    inside = ((centres_y[:, None] >= y1) & (centres_y[:, None] <= y2) & (centres_x[None] >= x1) & (centres_x[None] <= x2))
    if not inside.any():
        row = min(rows - 1, int((y1 + y2) / 2 // CELL))
        col = min(cols - 1, int((x1 + x2) / 2 // CELL))
        inside[row, col] = True
    target = inside.flatten().float()
    return target / target.sum()


def cell_point(index: int, grid: tuple[int, int]) -> tuple[float, float]:
    """The centre of a cell in screen pixels."""
    return (index % grid[1] + 0.5) * CELL, (index // grid[1] + 0.5) * CELL


def load_screens(env_id: str, split: str, count: int, *, every_target: bool) -> list[dict[str, Any]]:
    """Rendered screens of a split with their targets: every uniquely described element (training), or
    the task's own target (evaluation)."""
    from PIL import Image
    from tqdm import tqdm

    import agentgym

    env = agentgym.make(env_id, split=split)
    base, screens = env.unwrapped, []
    try:
        for task in tqdm(base.tasks[:count], desc=f"screens ({split})", unit="screen"):
            observation, info = env.reset(options={"task_id": task.id})
            if every_target:
                from agentgym.envs.gui.env import render_screen

                png, elements = render_screen(base.browser, task.payload["kind"], task.payload["seed"], base.cache_root)
                image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
                counts: dict[str, int] = {}
                for element in elements:
                    counts[element["desc"]] = counts.get(element["desc"], 0) + 1
                targets = [(f"Click {e['desc']}.", e["box"]) for e in elements if counts[e["desc"]] == 1
                           and e["box"][2] - e["box"][0] >= 2 and e["box"][3] - e["box"][1] >= 2]
            else:
                image = observation["image"]
                box = base.target_box()
                targets = [(info["instruction"], [box.x1, box.y1, box.x2, box.y2])]
            screens.append({"pixels": screen_tensor(image), "targets": targets, "size": image.shape[:2]})
    finally:
        env.close()
    return screens


def greedy_accuracy(model: PointerNet, screens: Sequence[dict[str, Any]]) -> float:
    hits = total = 0
    model.eval()
    with torch.no_grad():
        for screen in screens:
            logits = model(screen["pixels"][None].float() / 255, torch.zeros(len(screen["targets"]), dtype=torch.long),
                           [text for text, _ in screen["targets"]])
            grid = _grid(screen)
            for (_, (x1, y1, x2, y2)), index in zip(screen["targets"], logits.argmax(1).tolist()):
                x, y = cell_point(index, grid)
                hits += x1 <= x <= x2 and y1 <= y <= y2
                total += 1
    model.train()
    return hits / max(total, 1)


def _grid(screen: dict[str, Any]) -> tuple[int, int]:
    height, width = screen["size"]
    return -(-height // CELL), -(-width // CELL)


def train(config: PointerConfig) -> dict[str, Any]:
    """Train the pointer model; writes ``model.pt`` (weights + settings), metrics, curves and a report."""
    from tqdm import tqdm

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    output = Path(config.output_dir)
    train_screens = load_screens(config.env_id, "train", config.train_screens, every_target=True)
    eval_screens = load_screens(config.env_id, config.eval_split, config.eval_screens, every_target=False)
    model = PointerNet(config.width, config.buckets)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(train_screens) // config.screens_per_batch)
    scheduler = common.cosine_schedule(optimizer, config.epochs * steps_per_epoch, 0.05, 0.1)
    generator = torch.Generator().manual_seed(config.seed)
    metrics, start_epoch = common.MetricsLog(output), 0
    if config.resume:
        state = common.load_checkpoint(output / "checkpoint.pt", model=model, optimizer=optimizer,
                                       scheduler=scheduler, generator=generator)
        start_epoch = state["iteration"]
        metrics.restore(state["metrics"])
    else:
        metrics.log({"iteration": 0, "eval_accuracy": greedy_accuracy(model, eval_screens)})
    for epoch in range(start_epoch, config.epochs):
        started, losses = time.perf_counter(), []
        order = rng.permutation(len(train_screens))
        for first in tqdm(range(0, len(order), config.screens_per_batch), desc=f"epoch {epoch + 1}/{config.epochs}"):
            batch = [train_screens[i] for i in order[first : first + config.screens_per_batch]]
            screen_of, texts, targets = [], [], []
            for position, screen in enumerate(batch):
                picks = rng.choice(len(screen["targets"]), min(config.targets_per_screen, len(screen["targets"])),
                                   replace=False)
                for pick in picks:
                    text, box = screen["targets"][pick]
                    screen_of.append(position)
                    texts.append(text)
                    targets.append(cell_target(box, _grid(screen)))
            images = torch.stack([screen["pixels"] for screen in batch]).float() / 255
            logits = model(images, torch.tensor(screen_of), texts)
            loss = -(torch.stack(targets) * torch.log_softmax(logits, dim=1)).sum(1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        metrics.log({"iteration": epoch + 1, "loss": float(np.mean(losses)),
                     "eval_accuracy": greedy_accuracy(model, eval_screens), "seconds": time.perf_counter() - started})
        common.save_checkpoint(output / "checkpoint.pt", model=model, optimizer=optimizer, scheduler=scheduler,
                               iteration=epoch + 1, generator=generator, extra={"metrics": metrics.rows})
    metrics.close()
    weights = {"state_dict": model.state_dict(), "width": config.width, "buckets": config.buckets}
    common.atomic_write(output / "model.pt", lambda handle: torch.save(weights, handle))
    curves = common.plot_curves(metrics.rows, output / "curves.png", ["loss", "eval_accuracy"])
    first, last = metrics.rows[0], metrics.rows[-1]
    report = (f"# Pointer model on {config.env_id}\n\n{len(train_screens)} train screens, {config.epochs} epochs.\n\n"
              f"Greedy accuracy on {config.eval_split} ({len(eval_screens)} screens): "
              f"{100 * first['eval_accuracy']:.1f}% untrained -> {100 * last['eval_accuracy']:.1f}% trained.\n\n"
              f"Settings: {json.dumps(asdict(config))}\n")
    (output / "report.md").write_text(report)
    return {"report": str(output / "report.md"), "model": str(output / "model.pt"), "curves": str(curves),
            "metrics": metrics.rows}


def run(settings: dict[str, Any], overrides: list[str] = ()) -> dict[str, Any]:
    """Entry point of ``agentgym train`` for ``trainer: pointer``."""
    return train(common.make_config(PointerConfig, settings, overrides))


class PointerPolicy(Policy):
    """A trained pointer model as a policy: the argmax cell's centre (``temperature=0``), or a cell
    sampled from the softmax (``temperature>0``, for GUI-RC). Answers ``(x, y)`` in pixels.

    Requests that share one screenshot (GUI-RC asks for K samples of each) run the network once."""

    def __init__(self, path: str | Path, *, temperature: float = 0.0, seed: int | None = None):
        path = Path(path)
        weights = torch.load(path / "model.pt" if path.is_dir() else path, weights_only=False)
        self.model = PointerNet(weights["width"], weights["buckets"])
        self.model.load_state_dict(weights["state_dict"])
        self.model.eval()
        self.temperature = temperature
        self.generator = torch.Generator().manual_seed(seed or 0)
        self.name = f"pointer({path.name})" + (f"@T={temperature:g}" if temperature else "")

    def act(self, requests: Sequence[PolicyRequest]) -> list[Generation]:
        answers: list[Generation] = []
        cache: dict[int, torch.Tensor] = {}
        with torch.no_grad():
            for request in requests:
                key = id(request.image)
                if key not in cache:
                    text = request.messages[-1]["content"] if request.messages else ""
                    match = _INSTRUCTION.search(text + "\n")
                    cache[key] = self.model(screen_tensor(request.image)[None].float() / 255, torch.zeros(1, dtype=torch.long),
                                            [match.group(1) if match else text])[0]
                logits = cache[key]
                if self.temperature > 0:
                    index = int(torch.multinomial(torch.softmax(logits / self.temperature, 0), 1, generator=self.generator))
                else:
                    index = int(logits.argmax())
                grid = (-(-request.image.shape[0] // CELL), -(-request.image.shape[1] // CELL))
                x, y = cell_point(index, grid)
                answers.append(Generation(f"({x:g}, {y:g})"))
        return answers

    def config(self) -> dict:
        return {"name": self.name, "temperature": self.temperature}


def make_pointer_policy(path: str, *, seed: int | None = None, temperature: float = 0.0) -> PointerPolicy:
    """``--policy pointer:PATH`` (a run folder or its ``model.pt``)."""
    return PointerPolicy(path, temperature=temperature, seed=seed)
