"""GUI grounding predictions and GUI-RC region-consistency voting (arXiv 2508.05615; spec in
ALGORITHMS.md section 4).

A grounding model answers an instruction with a point ``(x, y)`` or a box ``[x1, y1, x2, y2]`` on the
screenshot. GUI-RC samples K answers, lets each box (a point is widened to a square) vote for the pixels
it covers, and answers the centre of the largest connected region with the most votes. GUI-RCPO turns
the same votes into a reward for each sample of a GRPO group: the mean vote density of its region
relative to the peak, so test-time RL needs no labels.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agentgym.policies import Generation, Policy, PolicyRequest

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
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
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, not {scale!r}.")
    numbers = [float(n) for n in _NUMBER.findall(text)]
    if len(numbers) >= 4:
        values = numbers[:4]
    elif len(numbers) >= 2:
        x, y = numbers[:2]
        values = None  # widened after scaling, so the margin is in pixels
    else:
        return None
    factor = SCALES[scale]
    to_x = (lambda v: v * width / factor) if factor else (lambda v: v)
    to_y = (lambda v: v * height / factor) if factor else (lambda v: v)
    if values is None:
        cx, cy = to_x(x), to_y(y)
        values_px = [cx - point_expand, cy - point_expand, cx + point_expand, cy + point_expand]
    else:
        values_px = [to_x(values[0]), to_y(values[1]), to_x(values[2]), to_y(values[3])]
    x1, x2 = sorted(int(np.clip(v, 0, width)) for v in (values_px[0], values_px[2]))
    y1, y2 = sorted(int(np.clip(v, 0, height)) for v in (values_px[1], values_px[3]))
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


def consensus_region(grid: np.ndarray) -> Box | None:
    """The bounding box of the largest 4-connected region at the maximum vote (ties: the first in label
    order); ``None`` when nothing was voted for."""
    from scipy import ndimage

    peak = int(grid.max()) if grid.size else 0
    if peak == 0:
        return None
    top = grid == peak
    rows, cols = np.flatnonzero(top.any(axis=1)), np.flatnonzero(top.any(axis=0))
    y0, x0 = int(rows[0]), int(cols[0])  # label only the window holding the peak pixels
    labels, count = ndimage.label(top[y0 : rows[-1] + 1, x0 : cols[-1] + 1])
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    best = int(np.argmax(areas))  # argmax keeps the first of equal areas
    found_rows, found_cols = ndimage.find_objects(labels)[best]
    return Box(x0 + found_cols.start, y0 + found_rows.start, x0 + found_cols.stop, y0 + found_rows.stop)


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


class GUIRCPolicy(Policy):
    """GUI-RC as a policy wrapper: ask ``policy`` (which must sample) for ``samples`` answers to each
    request, vote, and answer the consensus point as ``(x, y)`` in pixels. A request's
    ``screen_size`` comes from its image; an item with no consensus answers ``no consensus``."""

    def __init__(self, policy: Policy, *, samples: int = 64, scale: str = "pixels", point_expand: int = 25):
        self.policy, self.samples, self.scale, self.point_expand = policy, samples, scale, point_expand
        self.name = f"gui-rc({policy.name})"

    def act(self, requests: Sequence[PolicyRequest]) -> list[Generation]:
        replies = self.policy.act([request for request in requests for _ in range(self.samples)])
        answers = []
        for index, request in enumerate(requests):
            height, width = request.image.shape[:2]
            texts = [reply.text for reply in replies[index * self.samples : (index + 1) * self.samples]]
            boxes = [parse_prediction(text, width, height, scale=self.scale, point_expand=self.point_expand)
                     for text in texts]
            region = consensus_region(vote_grid(boxes, width, height))
            if region is None:
                answers.append(Generation("no consensus"))
            else:
                x, y = region.centre
                answers.append(Generation(f"({x:g}, {y:g})"))
        return answers

    def config(self) -> dict:
        return {"name": self.name, "policy": self.policy.config(), "samples": self.samples, "scale": self.scale,
                "point_expand": self.point_expand}


def make_gui_rc_policy(inner: str, *, seed: int | None = None, samples: int = 64, scale: str = "pixels",
                       point_expand: int = 25, **inner_kwargs: Any) -> GUIRCPolicy:
    """``--policy gui-rc:INNER`` (e.g. ``gui-rc:pointer:runs/pointer-gui``): GUI-RC over ``samples``
    answers of the policy ``INNER``; other keyword arguments go to it (``temperature`` defaults to 1,
    since GUI-RC needs a policy that samples)."""
    from agentgym.policies import make_policy

    inner_kwargs.setdefault("temperature", 1.0)
    return GUIRCPolicy(make_policy(inner, seed=seed, **inner_kwargs), samples=samples, scale=scale,
                       point_expand=point_expand)
