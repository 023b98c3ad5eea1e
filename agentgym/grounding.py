"""GUI grounding predictions and GUI-RC region-consistency voting (arXiv 2508.05615; spec in
``docs/algorithms.md`` §4).

A grounding model answers an instruction with a point ``(x, y)`` or a box ``[x1, y1, x2, y2]`` on the
screenshot. GUI-RC samples K answers, lets each box (a point is widened to a square) vote for the pixels
it covers, and answers the centre of the largest connected region with the most votes. GUI-RCPO turns
the same votes into a reward for each sample of a GRPO group: the mean vote density of its region
relative to the peak, so test-time RL needs no labels.
"""

from __future__ import annotations

import abc
import contextlib
import copy
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agentgym.policies import Generation, Policy, PolicyRequest

_NUMBER = re.compile(r"-?(?:\d+(?:\.\d+)?|\bnan\b|\binf(?:inity)?\b)", re.IGNORECASE)
SCALES = {"pixels": None, "1000": 1000.0, "unit": 1.0}
"""How models write coordinates: absolute pixels (Qwen2.5-VL, UI-TARS), 0-1000 (OS-Atlas, UGround) or 0-1."""


@dataclass(frozen=True)
class Box:
    """A pixel box, ends exclusive like array slices: x1 <= x < x2, y1 <= y < y2."""

    x1: int
    y1: int
    x2: int
    y2: int

    @property
    def area(self) -> int:
        return max(self.x2 - self.x1, 0) * max(self.y2 - self.y1, 0)

    @property
    def centre(self) -> tuple[float, float]:
        return (self.x1 + self.x2) / 2, (self.y1 + self.y2) / 2


def parse_prediction(text: str, width: int, height: int, *, scale: str = "pixels", point_expand: int = 25) -> Box | None:
    """The box a model's answer names, in pixels and clipped to the screen; ``None`` if it names none.

    Four numbers are a box, two a point widened by ``point_expand`` pixels on each side (25 at
    evaluation, 50 in GUI-RCPO training, as in the paper's code). The first four (or two) numbers count.
    An answer names nothing (no vote, GUI-RCPO reward 0) when it has fewer than two numbers, when a
    number it uses is NaN or infinite, when its point lies off the screen, or when its box has no area
    on the screen (a box partly off the screen is clipped).
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, not {scale!r}.")
    numbers = [float(n) for n in _NUMBER.findall(text)]
    values = numbers[:4] if len(numbers) >= 4 else numbers[:2]
    if len(values) < 2 or not np.all(np.isfinite(values)):
        return None
    factor = SCALES[scale]
    xs = [v * width / factor if factor else v for v in values[0::2]]
    ys = [v * height / factor if factor else v for v in values[1::2]]
    if len(values) == 2:
        x, y = xs[0], ys[0]
        return point_box(x, y, width, height, point_expand) if 0 <= x <= width and 0 <= y <= height else None
    x1, x2 = sorted(int(np.clip(v, 0, width)) for v in xs)
    y1, y2 = sorted(int(np.clip(v, 0, height)) for v in ys)
    box = Box(x1, y1, x2, y2)
    return box if box.area else None


def point_box(x: float, y: float, width: int, height: int, point_expand: int) -> Box:
    """A point on the screen widened by ``point_expand`` pixels on each side (after scaling, so the margin
    is in pixels), clipped to the screen; with no margin, a box of no area at the point (a click)."""
    x1, x2 = (int(np.clip(v, 0, width)) for v in (x - point_expand, x + point_expand))
    y1, y2 = (int(np.clip(v, 0, height)) for v in (y - point_expand, y + point_expand))
    return Box(x1, y1, x2, y2)


def vote_grid(boxes: Sequence[Box | None], width: int, height: int) -> np.ndarray:
    """Votes per pixel (``height x width``): each box adds 1 to the pixels it covers.

    Small boxes are added slice by slice (cost: their total area); when they cover more than the screen
    twice over, a 2-D difference array does it in one pass over the screen instead."""
    boxes = [box for box in boxes if box is not None and box.area > 0]
    if sum(box.area for box in boxes) <= 2 * width * height:
        grid = np.zeros((height, width), dtype=np.int32)
        for box in boxes:
            grid[box.y1 : box.y2, box.x1 : box.x2] += 1
        return grid
    diff = np.zeros((height + 1, width + 1), dtype=np.int32)
    for box in boxes:
        diff[box.y1, box.x1] += 1
        diff[box.y1, box.x2] -= 1
        diff[box.y2, box.x1] -= 1
        diff[box.y2, box.x2] += 1
    return diff.cumsum(axis=0, dtype=np.int32).cumsum(axis=1, dtype=np.int32)[:height, :width]


PEAK_TOLERANCE = 1e-9
"""On a float grid (expected votes), pixels within this share of the peak count as the peak: sums of the
same weights in another order differ in the last bits."""


def consensus_region(grid: np.ndarray) -> Box | None:
    """The bounding box of the largest 4-connected region at the maximum vote (ties: the first in label
    order); ``None`` when nothing was voted for."""
    from scipy import ndimage

    peak = grid.max() if grid.size else 0
    if peak <= 0:
        return None
    top = grid >= peak * (1 - PEAK_TOLERANCE) if np.issubdtype(grid.dtype, np.floating) else grid == peak
    rows, cols = np.flatnonzero(top.any(axis=1)), np.flatnonzero(top.any(axis=0))
    y0, x0 = int(rows[0]), int(cols[0])  # label only the window holding the peak pixels
    labels, count = ndimage.label(top[y0 : rows[-1] + 1, x0 : cols[-1] + 1])
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    best = int(np.argmax(areas))  # argmax keeps the first of equal areas
    found_rows, found_cols = ndimage.find_objects(labels)[best]
    return Box(x0 + found_cols.start, y0 + found_rows.start, x0 + found_cols.stop, y0 + found_rows.stop)


def expected_votes(points: np.ndarray, probabilities: np.ndarray, width: int, height: int, *,
                   point_expand: int = 25) -> np.ndarray:
    """Soft GUI-RC: the vote grid that K sampled points give on average, divided by K — each point's
    box (:func:`point_box`) weighted by the probability of sampling it. It is the probability map
    convolved with the box kernel, the limit of K-sample voting as K grows, computed without sampling
    (one weighted difference array, however many points)."""
    points, probabilities = np.asarray(points, dtype=np.float64), np.asarray(probabilities, dtype=np.float64)
    if points.shape != (len(probabilities), 2):
        raise ValueError(f"points must be (n, 2) with one probability each, not {points.shape} and "
                         f"{probabilities.shape}.")
    x, y = points[:, 0], points[:, 1]
    keep = (x >= 0) & (x <= width) & (y >= 0) & (y <= height)  # an off-screen point casts no vote
    # point_box's corners, vectorised (values are clipped to >= 0 first, so truncation is the floor).
    x1, x2 = (np.clip(v, 0, width).astype(np.int64) for v in (x - point_expand, x + point_expand))
    y1, y2 = (np.clip(v, 0, height).astype(np.int64) for v in (y - point_expand, y + point_expand))
    keep &= (x2 > x1) & (y2 > y1)
    x1, x2, y1, y2, weight = x1[keep], x2[keep], y1[keep], y2[keep], probabilities[keep]
    diff = np.zeros((height + 1, width + 1))
    for rows, cols, sign in ((y1, x1, 1), (y1, x2, -1), (y2, x1, -1), (y2, x2, 1)):
        np.add.at(diff, (rows, cols), sign * weight)
    return diff.cumsum(axis=0).cumsum(axis=1)[:height, :width]


def region_consistency_rewards(boxes: Sequence[Box | None], width: int, height: int) -> list[float]:
    """GUI-RCPO: each sample's mean vote density over its box, relative to the peak (0 for no box)."""
    grid = vote_grid(boxes, width, height)
    peak = int(grid.max())
    return [float(grid[box.y1 : box.y2, box.x1 : box.x2].sum()) / (peak * box.area)
            if peak and box is not None and box.area else 0.0 for box in boxes]


def inside(point: tuple[float, float], target: Box) -> bool:
    """Whether a point lies in a ground-truth box (edges included, as the paper's evaluation)."""
    x, y = point
    return target.x1 <= x <= target.x2 and target.y1 <= y <= target.y2


def consensus_answer(grid: np.ndarray) -> str:
    """The reply GUI-RC gives for a vote grid: the consensus region's centre as ``(x, y)``, or ``no
    consensus`` (scored as wrong) when nothing was voted for."""
    region = consensus_region(grid)
    if region is None:
        return "no consensus"
    x, y = region.centre
    return f"({x:g}, {y:g})"


class GroundingPolicy(Policy):
    """A grounding model that GUI-RCPO can train (the pointer model, vision-language models): beyond
    ``act`` it samples groups of answers with their tokens and log-probs (:meth:`sample`), scores given
    answers (:meth:`answer_logprobs`), and has the shared training loop's seams — ``model``,
    :meth:`weights_changed`, :meth:`rng_state`/:meth:`set_rng_state`, :meth:`keep_reference`/:meth:`as_reference`."""

    model: Any
    _reference: Any = None

    @abc.abstractmethod
    def sample(self, requests: Sequence[PolicyRequest], n: int, *, temperature: float,
               top_p: float = 1.0) -> list[list[Generation]]:
        """``n`` sampled answers to each request, each with its tokens (``token_ids``) and their log-probs
        and entropies under ``softmax(logits / temperature)``."""

    @abc.abstractmethod
    def answer_logprobs(self, requests: Sequence[PolicyRequest], answers: Sequence[Sequence[int]], *,
                        temperature: float, grad: bool) -> tuple[list[Any], list[Any]]:
        """Each answer's per-token log-probs and entropies (CPU tensors; with ``grad``, differentiable)."""

    @abc.abstractmethod
    def rng_state(self) -> Any:
        """The sampler's random state (a trainer checkpoints it)."""

    @abc.abstractmethod
    def set_rng_state(self, state: Any) -> None:
        """Restore :meth:`rng_state`."""

    def weights_changed(self, *, trainable_only: bool = False) -> None:
        """Nothing is kept between calls that changed weights could make stale."""

    def keep_reference(self) -> None:
        """Keep the current weights as the reference policy (of a KL penalty): with a PEFT adapter, the
        model with the adapter switched off; otherwise a frozen copy of the weights as they are now."""
        self._reference = "adapter-off" if hasattr(self.model, "disable_adapter") else \
            copy.deepcopy(self.model).requires_grad_(False)

    @contextlib.contextmanager
    def as_reference(self) -> Iterator[None]:
        """Inside ``with policy.as_reference():`` the policy scores as the kept reference policy."""
        if self._reference is None:
            raise RuntimeError("No reference policy: call keep_reference() first (before training starts).")
        if self._reference == "adapter-off":
            with self.model.disable_adapter():
                yield
            return
        trained, self.model = self.model, self._reference
        try:
            yield
        finally:
            self.model = trained


class GUIRCPolicy(Policy):
    """GUI-RC as a policy wrapper: ask ``policy`` (which must sample) for ``samples`` answers to each
    request, vote, and answer the consensus point as ``(x, y)`` in pixels. A request's screen size comes
    from its image; an item with no consensus answers ``no consensus``. Each reply records the sampled
    answers and the point expansion they voted with (``extra``: ``gui_rc_samples``,
    ``gui_rc_point_expand``), which the rollout keeps in the turn's annotations and the viewer draws."""

    def __init__(self, policy: Policy, *, samples: int = 64, scale: str = "pixels", point_expand: int = 25):
        if samples < 1:
            raise ValueError(f"GUI-RC needs at least one sample, not {samples}.")
        self.policy, self.samples, self.scale, self.point_expand = policy, samples, scale, point_expand
        self.name = f"gui-rc({policy.name})"

    def sample(self, requests: Sequence[PolicyRequest]) -> list[list[Generation]]:
        """``samples`` answers to each request, from the wrapped policy."""
        replies = self.policy.act([request for request in requests for _ in range(self.samples)])
        return [replies[index * self.samples : (index + 1) * self.samples] for index in range(len(requests))]

    def boxes(self, request: PolicyRequest, texts: Sequence[str]) -> list[Box | None]:
        """The boxes the answers to ``request`` name on its screenshot (``None``: no vote)."""
        height, width = request.image.shape[:2]
        return [parse_prediction(text, width, height, scale=self.scale, point_expand=self.point_expand)
                for text in texts]

    def act(self, requests: Sequence[PolicyRequest]) -> list[Generation]:
        answers = []
        for request, group in zip(requests, self.sample(requests)):
            texts = [reply.text for reply in group]
            height, width = request.image.shape[:2]
            answers.append(Generation(consensus_answer(vote_grid(self.boxes(request, texts), width, height)),
                                      extra={"gui_rc_samples": texts, "gui_rc_point_expand": self.point_expand}))
        return answers

    def config(self) -> dict:
        return {"name": self.name, "policy": self.policy.config(), "samples": self.samples, "scale": self.scale,
                "point_expand": self.point_expand}


class SoftGUIRCPolicy(Policy):
    """Soft GUI-RC (ours): for a policy that exposes its whole distribution over points
    (``point_distribution(requests, temperature=...)``, as the pointer model does), vote with the
    expected grid of infinitely many samples (:func:`expected_votes`) and answer its consensus point.
    No sampling: deterministic, and as cheap as one forward pass and one convolution."""

    def __init__(self, policy: Policy, *, temperature: float = 1.0, point_expand: int = 25):
        if not callable(getattr(policy, "point_distribution", None)):
            raise ValueError(f"Soft GUI-RC needs a policy that exposes its whole point distribution "
                             f"(point_distribution), as the pointer model does; {policy.name} does not. "
                             "Use gui-rc: (K samples) for it.")
        if temperature <= 0:
            raise ValueError(f"Soft GUI-RC's temperature must be positive, not {temperature}.")
        self.policy, self.temperature, self.point_expand = policy, temperature, point_expand
        self.name = f"soft-gui-rc({policy.name})"

    def act(self, requests: Sequence[PolicyRequest]) -> list[Generation]:
        answers = []
        for request, (points, probabilities) in zip(
                requests, self.policy.point_distribution(requests, temperature=self.temperature)):
            height, width = request.image.shape[:2]
            grid = expected_votes(points, probabilities, width, height, point_expand=self.point_expand)
            answers.append(Generation(consensus_answer(grid)))
        return answers

    def config(self) -> dict:
        return {"name": self.name, "policy": self.policy.config(), "temperature": self.temperature,
                "point_expand": self.point_expand}


PAPER_POINT_EXPAND = 25  # ±pixels of a point answer when GUI-RC evaluates (the paper's, for VLMs)


def voting_point_expand(policy: Policy) -> int:
    """The default widening of ``policy``'s point answers when they vote: half the spacing of the points
    it can answer (``answer_spacing``, e.g. the pointer model's 16-px cells), else the paper's ±25 px.
    Wider boxes than that merge neighbouring answers, and the peak where most overlap lands between
    them, off small targets (README, "why voting loses to greedy")."""
    spacing = getattr(policy, "answer_spacing", None)
    return spacing // 2 if spacing else PAPER_POINT_EXPAND


def make_gui_rc_policy(inner: str, *, seed: int | None = None, samples: int = 64, scale: str = "pixels",
                       point_expand: int | None = None, **inner_kwargs: Any) -> GUIRCPolicy:
    """``--policy gui-rc:INNER`` (e.g. ``gui-rc:pointer:runs/pointer-gui``): GUI-RC over ``samples``
    answers of the policy ``INNER``; other keyword arguments go to it (``temperature`` defaults to 1,
    since GUI-RC needs a policy that samples). ``point_expand`` defaults to :func:`voting_point_expand`."""
    from agentgym.policies import make_policy

    inner_kwargs.setdefault("temperature", 1.0)
    policy = make_policy(inner, seed=seed, **inner_kwargs)
    return GUIRCPolicy(policy, samples=samples, scale=scale,
                       point_expand=voting_point_expand(policy) if point_expand is None else point_expand)


def make_soft_gui_rc_policy(inner: str, *, seed: int | None = None, temperature: float = 1.0,
                            point_expand: int | None = None, **inner_kwargs: Any) -> SoftGUIRCPolicy:
    """``--policy soft-gui-rc:INNER`` (e.g. ``soft-gui-rc:pointer:runs/pointer-gui``): soft GUI-RC over
    the point distribution of ``INNER`` at ``temperature``; other keyword arguments go to it.
    ``point_expand`` defaults to :func:`voting_point_expand`."""
    from agentgym.policies import make_policy

    policy = make_policy(inner, seed=seed, **inner_kwargs)
    return SoftGUIRCPolicy(policy, temperature=temperature,
                           point_expand=voting_point_expand(policy) if point_expand is None else point_expand)
