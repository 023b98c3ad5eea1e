"""A small trainable pointer model for GUI grounding: screenshot + instruction -> a distribution over
screen positions, trained supervised on the GUI env's train screens in minutes on a CPU.

It is the offline baseline of the GUI family: no vision-language model runs here, and GUI-RC needs a
policy that samples. Sampling cells from its distribution feeds :class:`agentgym.grounding.GUIRCPolicy`
(``--policy gui-rc:pointer:PATH``); its whole distribution feeds soft GUI-RC
(``--policy soft-gui-rc:pointer:PATH``); its argmax is the greedy answer (``--policy pointer:PATH``).
:class:`PointerPolicy` also has the seams the shared training loop needs, so GUI-RCPO
(``trainer: gui_rcpo``) adapts it at test time: an answer's log-probability is its cell's.

The model, top to bottom: three convolutions (4x4 patches, then 3x3) turn the screenshot (at half size)
into a feature map with one cell per 16x16 pixels; the instruction's words and word pairs, hashed into buckets, are averaged
into one vector that scales and shifts every feature channel (FiLM); with each cell's coordinates added
(so "the second item" or "top right" can be learned), a 1x1 convolution scores every cell. The loss is
cross-entropy against a target spread evenly over the cells whose centres lie in the element's box.

    agentgym train configs/pointer-gui.yaml
"""

from __future__ import annotations

import collections
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

from agentgym.grounding import GroundingPolicy
from agentgym.paths import atomic_write
from agentgym.policies import Generation, PolicyRequest
from agentgym.trainers.config import Settings, make_config
from agentgym.trainers.run import Run
from agentgym.trainers.update import cosine_schedule

_WORD = re.compile(r"[a-z0-9]+")
_INSTRUCTION = re.compile(r"Instruction: (.*?)\n")


@dataclass
class PointerConfig(Settings):
    """Settings of a pointer-model run (YAML keys or ``key=value`` overrides)."""

    env_id: str = "agentgym/GUIGrounding-v0"  # a GUI grounding env (screens with element boxes)
    train_screens: int = 800  # train screens rendered and used; each gives every uniquely described element
    targets_per_screen: int = 8  # elements sampled from a screen per step (more: slower, not much better)
    epochs: int = 6  # passes over the train screens
    screens_per_batch: int = 8  # screens per optimizer step
    lr: float = 2e-3  # peak learning rate (AdamW, cosine decay)
    weight_decay: float = 1e-4  # AdamW weight decay
    width: int = 64  # feature channels
    buckets: int = 16384  # hashed word and word-pair buckets
    eval_split: str = "dev"  # evaluated (greedy accuracy) after every epoch
    eval_screens: int = 100  # held-out screens evaluated after every epoch
    seed: int = 0  # seeds the weights and the batch order
    output_dir: str = "runs/pointer-gui"  # the run folder: model.pt, metrics, curves, report
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
        self.width, self.buckets = width, buckets
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
    """Rendered screens of a split with their targets, through the env's public API (its ``all_elements``
    option puts every element and the target's box in the reset's info): every uniquely described
    element (training), or the task's own target (evaluation)."""
    from tqdm import tqdm

    import agentgym

    env = agentgym.make(env_id, split=split, all_elements=True)
    screens = []
    try:
        for task in tqdm(env.unwrapped.tasks[:count], desc=f"screens ({split})", unit="screen"):
            observation, info = env.reset(options={"task_id": task.id})
            if every_target:
                counts = collections.Counter(element["description"] for element in info["elements"])
                targets = [(f"Click {e['description']}.", e["box"]) for e in info["elements"]
                           if counts[e["description"]] == 1 and e["box"][2] - e["box"][0] >= 2
                           and e["box"][3] - e["box"][1] >= 2]
            else:
                targets = [(info["instruction"], info["target_box"])]
            image = observation["image"]
            screens.append({"pixels": screen_tensor(image), "targets": targets, "size": image.shape[:2]})
    finally:
        env.close()
    return screens


def supervised_step(model: PointerNet, optimizer: torch.optim.Optimizer, batch: Sequence[dict[str, Any]],
                    rng: np.random.Generator, targets_per_screen: int) -> float:
    """One optimizer step of cross-entropy against the targets of ``batch`` (screens from
    :func:`load_screens`; up to ``targets_per_screen`` sampled from each); returns the loss."""
    screen_of, texts, targets = [], [], []
    for position, screen in enumerate(batch):
        picks = rng.choice(len(screen["targets"]), min(targets_per_screen, len(screen["targets"])), replace=False)
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
    return loss.item()


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
    scheduler = cosine_schedule(optimizer, config.epochs * steps_per_epoch, 0.05, 0.1)
    run, start_epoch = Run(output), 0
    run.write_config(config)
    if config.resume:
        start_epoch = run.load_checkpoint(model=model, optimizer=optimizer, scheduler=scheduler,
                                          restore_rng={"batches": lambda state: setattr(rng.bit_generator, "state", state)})["iteration"]
    else:
        run.metrics.log({"iteration": 0, "eval_accuracy": greedy_accuracy(model, eval_screens)})
    for epoch in range(start_epoch, config.epochs):
        started, losses = time.perf_counter(), []
        order = rng.permutation(len(train_screens))
        for first in tqdm(range(0, len(order), config.screens_per_batch), desc=f"epoch {epoch + 1}/{config.epochs}"):
            batch = [train_screens[i] for i in order[first : first + config.screens_per_batch]]
            losses.append(supervised_step(model, optimizer, batch, rng, config.targets_per_screen))
            scheduler.step()
        run.metrics.log({"iteration": epoch + 1, "loss": float(np.mean(losses)),
                         "eval_accuracy": greedy_accuracy(model, eval_screens), "seconds": time.perf_counter() - started})
        run.save_checkpoint(model=model, optimizer=optimizer, scheduler=scheduler, iteration=epoch + 1,
                            rng_states={"batches": rng.bit_generator.state}, state={})
    run.close()
    metrics = run.metrics
    save_pointer(model, output / "model.pt")
    curves = run.plot(["loss", "eval_accuracy"], name="curves.png")
    first, last = metrics.rows[0], metrics.rows[-1]
    report = (f"# Pointer model on {config.env_id}\n\n{len(train_screens)} train screens, {config.epochs} epochs.\n\n"
              f"Greedy accuracy on {config.eval_split} ({len(eval_screens)} screens): "
              f"{100 * first['eval_accuracy']:.1f}% untrained -> {100 * last['eval_accuracy']:.1f}% trained.\n\n"
              f"Settings: {json.dumps(asdict(config))}\n")
    (output / "report.md").write_text(report)
    return {"report": str(output / "report.md"), "model": str(output / "model.pt"), "curves": str(curves),
            "metrics": metrics.rows}


CONFIG = PointerConfig  # the settings of `trainer: pointer` (agentgym train --help-config pointer)


def run(settings: dict[str, Any], overrides: list[str] = ()) -> dict[str, Any]:
    """Entry point of ``agentgym train`` for ``trainer: pointer``."""
    return train(make_config(PointerConfig, settings, overrides))


def save_pointer(model: PointerNet, path: Path) -> Path:
    """Save a pointer model (weights and shape) where :func:`load_pointer` and ``--policy pointer:`` read it."""
    weights = {"state_dict": model.state_dict(), "width": model.width, "buckets": model.buckets}
    return atomic_write(path, lambda handle: torch.save(weights, handle))


def load_pointer(path: str | Path) -> PointerNet:
    """A saved pointer model: a run folder (its ``model.pt``) or the file itself."""
    path = Path(path)
    file = path / "model.pt" if path.is_dir() else path
    if not file.exists():
        raise FileNotFoundError(f"No pointer model at {file}: train one with `agentgym train configs/pointer-gui.yaml`.")
    weights = torch.load(file, weights_only=False)
    model = PointerNet(weights["width"], weights["buckets"])
    model.load_state_dict(weights["state_dict"])
    return model


def instruction_of(request: PolicyRequest) -> str:
    """The instruction the GUI env's prompt names (the whole last message if it names none)."""
    text = request.messages[-1]["content"] if request.messages else ""
    match = _INSTRUCTION.search(text + "\n")
    return match.group(1) if match else text


class PointerPolicy(GroundingPolicy):
    """A trained pointer model as a policy: the argmax cell's centre (``temperature=0``), or a cell
    sampled from the softmax (``temperature>0``). Answers ``(x, y)`` in pixels; an answer's only
    "token" is its cell index, with that cell's log-probability and the distribution's entropy.

    Requests that share one screenshot (GUI-RC asks for K samples of each) run the network once.

    GUI-RC and GUI-RCPO use the rest: :meth:`sample` (n answers per request at a temperature),
    :meth:`point_distribution` (every cell's centre and probability: soft GUI-RC), and the seams of the
    shared training loop (:class:`~agentgym.grounding.GroundingPolicy`): :meth:`answer_logprobs` (an
    answer's log-probability is its cell's), the weights in ``model``, a frozen copy as the reference.
    """

    answer_spacing = CELL  # pixels between the points it can answer: GUI-RC votes with ±CELL/2 boxes

    def __init__(self, path: str | Path | None = None, *, model: PointerNet | None = None,
                 temperature: float = 0.0, seed: int | None = None):
        if (path is None) == (model is None):
            raise ValueError("Give the pointer model's path or the model, not both.")
        self.model = load_pointer(path) if model is None else model
        self.model.requires_grad_(False).eval()  # a trainer switches gradients on for what it trains
        self.temperature = temperature
        self.generator = torch.Generator().manual_seed(seed or 0)
        label = Path(path).name if path is not None else "model"
        self.name = f"pointer({label})" + (f"@T={temperature:g}" if temperature else "")

    def logits(self, requests: Sequence[PolicyRequest]) -> torch.Tensor:
        """One row of cell logits per request (gradients follow torch's grad mode); a repeated request
        or screenshot (the same object) is computed once."""
        distinct = list({id(request): request for request in requests}.values())
        screens: dict[int, int] = {}
        pixels = []
        for request in distinct:
            if id(request.image) not in screens:
                screens[id(request.image)] = len(pixels)
                pixels.append(screen_tensor(request.image))
        screen_of = torch.tensor([screens[id(request.image)] for request in distinct])
        rows = self.model(torch.stack(pixels).float() / 255, screen_of, [instruction_of(r) for r in distinct])
        row_of = {id(request): index for index, request in enumerate(distinct)}
        return rows[[row_of[id(request)] for request in requests]]

    def _answers(self, request: PolicyRequest, log_p: torch.Tensor, cells: Sequence[int]) -> list[Generation]:
        grid = (-(-request.image.shape[0] // CELL), -(-request.image.shape[1] // CELL))
        entropy = float(-(log_p.exp() * log_p).sum())
        return [Generation("({:g}, {:g})".format(*cell_point(cell, grid)), token_ids=[cell],
                           logprobs=[float(log_p[cell])], entropies=[entropy]) for cell in cells]

    def act(self, requests: Sequence[PolicyRequest]) -> list[Generation]:
        if self.temperature > 0:
            return [group[0] for group in self.sample(requests, 1, temperature=self.temperature)]
        with torch.no_grad():
            logits = self.logits(requests)
        return [self._answers(request, torch.log_softmax(row, 0), [int(row.argmax())])[0]
                for request, row in zip(requests, logits)]

    def sample(self, requests: Sequence[PolicyRequest], n: int, *, temperature: float,
               top_p: float = 1.0) -> list[list[Generation]]:
        """``n`` answers to each request, cells drawn from ``softmax(logits / temperature)`` (restricted to
        the smallest set of cells holding ``top_p`` of the mass); log-probs are the full softmax's."""
        if temperature <= 0 or not 0 < top_p <= 1:
            raise ValueError(f"Sampling needs temperature > 0 and 0 < top_p <= 1, not {temperature} and {top_p}.")
        with torch.no_grad():
            log_ps = torch.log_softmax(self.logits(requests) / temperature, dim=1)
        groups = []
        for request, log_p in zip(requests, log_ps):
            probabilities, order = log_p.exp().sort(descending=True)
            if top_p < 1:  # the top cells holding top_p of the mass (always at least the first)
                probabilities = probabilities.masked_fill(probabilities.cumsum(0) - probabilities >= top_p, 0.0)
            cells = order[torch.multinomial(probabilities, n, replacement=True, generator=self.generator)]
            groups.append(self._answers(request, log_p, cells.tolist()))
        return groups

    def answer_logprobs(self, requests: Sequence[PolicyRequest], answers: Sequence[Sequence[int]], *,
                        temperature: float, grad: bool) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Each answer's log-probability (its cell's, under ``softmax(logits / temperature)``) and the
        distribution's entropy, one-element tensors; with ``grad`` they carry gradients."""
        with torch.set_grad_enabled(grad):
            log_ps = torch.log_softmax(self.logits(requests) / temperature, dim=1)
            entropies = -(log_ps.exp() * log_ps).sum(1)
            return ([log_p[list(answer)] for log_p, answer in zip(log_ps, answers)],
                    [entropy.expand(len(answer)) for entropy, answer in zip(entropies, answers)])

    def point_distribution(self, requests: Sequence[PolicyRequest], *,
                           temperature: float = 1.0) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every cell's centre in pixels and its probability under ``softmax(logits / temperature)``."""
        with torch.no_grad():
            probabilities = torch.softmax(self.logits(requests) / temperature, dim=1).double().numpy()
        result = []
        for request, row in zip(requests, probabilities):
            grid = (-(-request.image.shape[0] // CELL), -(-request.image.shape[1] // CELL))
            points = np.array([cell_point(index, grid) for index in range(len(row))])
            result.append((points, row))
        return result

    # ------------------------------------------------------------------ the sampler's state
    def rng_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_rng_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)

    def config(self) -> dict:
        return {"name": self.name, "temperature": self.temperature}


def make_pointer_policy(path: str, *, seed: int | None = None, temperature: float = 0.0) -> PointerPolicy:
    """``--policy pointer:PATH`` (a run folder or its ``model.pt``)."""
    return PointerPolicy(path, temperature=temperature, seed=seed)
