"""Screens of image-observing episodes (GUI grounding, web pages with ``screenshot=True``).

Records hold no image. The viewer makes the env through the registry, resets it to the recorded task
and seed and replays the recorded actions, taking each turn's screenshot before its action: GUI screens
are rendered deterministically and cached, so this shows exactly what the agent saw. A turn whose
state key differs from the record's stops the replay (the env was made with other settings) and the
page says so. With ``all_elements=True`` the GUI env also reports each instruction's target box.

All env calls run on one thread of their own: browser engines are bound to the thread that started them.
"""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from agentgym.grounding import Box, consensus_region, parse_prediction, vote_grid
from agentgym.registry import env_class, make

VOTE_CELL = 8  # pixels per vote-map cell on the page (the votes are counted per pixel)
GUI_RC_KEYS = ("gui_rc_samples",)  # where a turn's annotations (or info) keep GUI-RC's sampled answers


def renders_images(env_id: str, env_kwargs: dict[str, Any]) -> bool:
    """Whether ``env_id`` made with ``env_kwargs`` observes images (its class is imported, not made)."""
    if env_kwargs.get("screenshot"):
        return True
    try:
        cls = env_class(env_id)
    except Exception:  # noqa: BLE001 - an id this install cannot make has no screens to show
        return False
    return getattr(cls, "image_shape", None) is not None


def _box(box: Box | None) -> list[int] | None:
    return None if box is None else [box.x1, box.y1, box.x2, box.y2]


def vote_map(samples: list[str], width: int, height: int, *, scale: str, point_expand: int) -> dict[str, Any]:
    """GUI-RC's votes over sampled answers, as cells of :data:`VOTE_CELL` pixels (the most votes any pixel
    of the cell got), and the consensus region GUI-RC answers the centre of."""
    boxes = [parse_prediction(str(text), width, height, scale=scale, point_expand=point_expand) for text in samples]
    grid = vote_grid(boxes, width, height)
    rows, cols = height // VOTE_CELL, width // VOTE_CELL
    pooled = grid[: rows * VOTE_CELL, : cols * VOTE_CELL].reshape(rows, VOTE_CELL, cols, VOTE_CELL).max(axis=(1, 3))
    cells = []
    for row in range(rows):  # runs of equal counts along a row, as [x, y, w, h, votes] in pixels
        col = 0
        while col < cols:
            votes = int(pooled[row, col])
            end = col + 1
            while end < cols and pooled[row, end] == votes:
                end += 1
            if votes:
                cells.append([col * VOTE_CELL, row * VOTE_CELL, (end - col) * VOTE_CELL, VOTE_CELL, votes])
            col = end
    return {"cells": cells, "peak": int(grid.max()) if grid.size else 0, "samples": len(samples),
            "parsed": sum(box is not None for box in boxes), "consensus": _box(consensus_region(grid))}


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


class ScreenRenderer:
    """Replays image-observing episodes to show their screens; envs are kept open per settings."""

    def __init__(self) -> None:
        self._envs: dict[str, Any] = {}
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agentgym-viewer-screens")

    def screens(self, record: dict[str, Any], env_kwargs: dict[str, Any]) -> tuple[list[dict[str, Any] | None], str | None]:
        """One screen per turn (``None`` past a divergence) and a note for the page, or ``([], None)``
        for episodes of envs without images."""
        if not renders_images(record["env_id"], env_kwargs):
            return [], None
        try:
            return self._thread.submit(self._replay, record, env_kwargs).result()
        except Exception as error:  # noqa: BLE001 - no screens is a note on the page, not a failed viewer
            return [], f"The screens could not be re-rendered ({type(error).__name__}: {error})."

    def _env(self, env_id: str, split: str, env_kwargs: dict[str, Any]) -> Any:
        key = json.dumps([env_id, split, env_kwargs], sort_keys=True, default=str)
        if key not in self._envs:
            try:
                self._envs[key] = make(env_id, split=split, **{**env_kwargs, "all_elements": True})
            except TypeError:  # an env without target boxes to report
                self._envs[key] = make(env_id, split=split, **env_kwargs)
        return self._envs[key]

    def _replay(self, record: dict[str, Any], env_kwargs: dict[str, Any]) -> tuple[list[dict[str, Any] | None], str | None]:
        env = self._env(record["env_id"], record["split"], env_kwargs)
        observation, info = env.reset(seed=record["seed"], options={"task_id": record["task"]["id"]})
        scale = getattr(env.unwrapped, "scale", "pixels")
        screens: list[dict[str, Any] | None] = []
        note = None
        for index, turn in enumerate(record["turns"]):
            if observation.get("state_key") != turn["state_key"] or observation.get("image") is None:
                note = (f"The replay left the record at turn {index + 1} (another state than recorded: was the env "
                        "made with other settings? give them with --env-kwargs); later screens are not shown.")
                screens += [None] * (len(record["turns"]) - index)
                break
            image = observation["image"]
            height, width = image.shape[:2]
            screen = {"png": png_bytes(image), "width": width, "height": height,
                      "target_box": info.get("target_box"), "point": None, "pred_box": None, "votes": None}
            action = str(turn["action"])
            predicted = parse_prediction(action, width, height, scale=scale, point_expand=0) if action else None
            if predicted is not None and predicted.area > 0:  # a box; a point has no area here
                screen["pred_box"] = _box(predicted)
            samples = next((source[key] for source in (turn.get("annotations") or {}, turn.get("info") or {})
                            for key in GUI_RC_KEYS if isinstance(source.get(key), list)), None)
            if samples:
                expand = int((turn.get("annotations") or {}).get("gui_rc_point_expand", 25))
                screen["votes"] = vote_map(samples, width, height, scale=scale, point_expand=expand)
            observation, _, terminated, truncated, info = env.step(action)
            point = info.get("point")
            if point is None and predicted is not None and not turn["invalid"]:
                point = list(predicted.centre)
            screen["point"] = point
            screens.append(screen)
            if terminated or truncated:
                break
        return screens, note

    def close(self) -> None:
        def close_all() -> None:
            for env in self._envs.values():
                env.close()
            self._envs.clear()

        self._thread.submit(close_all).result()
        self._thread.shutdown()
