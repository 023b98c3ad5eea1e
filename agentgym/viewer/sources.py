"""What the viewer reads: turn-record JSONL files, ``agentgym eval`` result files and run folders.

Every episode of every source gets a small summary row (what the episode list filters and sorts) and
a key; the full record is read only when someone opens the episode. JSONL records stay on disk: the
collection keeps each line's byte offset, so a large run costs one scan and the memory of its
summaries. A half-written last line is skipped with a warning; a record from an older schema is
reported with the field it lacks.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentgym.records import Trajectory, Turn

RUN_FILES = ("metrics.jsonl", "config.json", "report.md", "trajectories")
_ITERATION_FILE = re.compile(r"iteration-(\d+)\.jsonl$")


def _required(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]


REQUIRED_EPISODE_FIELDS = _required(Trajectory)
REQUIRED_TURN_FIELDS = _required(Turn)
REQUIRED_TASK_FIELDS = ["id", "split", "instruction"]
KNOWN_EPISODE_FIELDS = {f.name for f in dataclasses.fields(Trajectory)}
KNOWN_TURN_FIELDS = {f.name for f in dataclasses.fields(Turn)}


def schema_problem(record: Any) -> str | None:
    """Why ``record`` is not an episode this version can show (naming the first missing field), or ``None``."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an episode record"
    for name in REQUIRED_EPISODE_FIELDS:
        if name not in record:
            return f"the episode lacks the field {name!r}"
    if not isinstance(record["task"], dict):
        return "the field 'task' is not an object"
    for name in REQUIRED_TASK_FIELDS:
        if name not in record["task"]:
            return f"the episode's task lacks the field {name!r}"
    if not isinstance(record["turns"], list):
        return "the field 'turns' is not a list"
    for index, turn in enumerate(record["turns"]):
        if not isinstance(turn, dict):
            return f"turn {index} is not an object"
        for name in REQUIRED_TURN_FIELDS:
            if name not in turn:
                return f"turn {index} lacks the field {name!r}"
    return None


def unknown_fields(record: dict[str, Any]) -> set[str]:
    """Fields this version of agentgym does not know (a newer writer); they are shown as they are."""
    names = {name for name in record if name not in KNOWN_EPISODE_FIELDS}
    for turn in record["turns"]:
        names |= {f"turns[].{name}" for name in turn if name not in KNOWN_TURN_FIELDS}
    return names


def summarise(record: dict[str, Any]) -> dict[str, Any]:
    """The episode list's row of one valid record: what it filters and sorts by."""
    turns = record["turns"]
    return {
        "episode_id": str(record["episode_id"]),
        "group_id": str(record["group_id"]),
        "env_id": str(record["env_id"]),
        "split": str(record["split"]),
        "task_id": str(record["task"]["id"]),
        "won": bool(record.get("won", False)),
        "seed": record["seed"],
        "policy": str(record.get("policy", "")),
        "turns": len(turns),
        "return": float(sum(float(turn["reward"]) for turn in turns)),
        "invalid": int(sum(bool(turn["invalid"]) for turn in turns)),
        "length": int(sum(len(str(turn["response"])) for turn in turns)),
        "advantages": any(turn.get("advantage") is not None for turn in turns),
    }


@dataclass
class Location:
    """Where one episode's full record is: a line of a JSONL file, or a record held in memory."""

    path: Path | None = None
    offset: int = 0
    size: int = 0
    record: dict[str, Any] | None = None

    def read(self) -> dict[str, Any]:
        if self.record is not None:
            return self.record
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            return json.loads(handle.read(self.size))


@dataclass
class Source:
    """One path given to the viewer: a records file, a result file or a run folder."""

    index: int
    kind: str  # "records", "results" or "run"
    path: Path
    warnings: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # results: the file's settings; run: its folder's data
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    tokenizer_hints: list[str] = field(default_factory=list)  # model or policy names that may name a tokenizer

    @property
    def label(self) -> str:
        return self.path.name or str(self.path)

    def describe(self) -> dict[str, Any]:
        """What the overview shows of the source (a run's curves and settings are fetched with the run)."""
        described = {"index": self.index, "kind": self.kind, "path": str(self.path), "label": self.label,
                     "warnings": self.warnings, **{k: v for k, v in self.info.items() if k != "run"}}
        if "run" in self.info:
            before, after = heldout_rows(self.info["run"]["metrics"])
            described["heldout"] = {"before": (before or {}).get("eval_success_rate"),
                                    "after": (after or {}).get("eval_success_rate"),
                                    "random": (before or {}).get("random_success_rate")}
        return described


def heldout_rows(metrics: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """A run's held-out rows before and after training: the first row with ``eval_*`` metrics (iteration 0),
    and the final evaluation the trainer logs last (a row of a finished run without phase timings);
    ``None`` for what the run has not written (yet)."""
    evals = [row for row in metrics if "eval_success_rate" in row]
    before = next((row for row in evals if row.get("iteration") == 0), None)
    after = evals[-1] if evals and evals[-1].get("iteration") != 0 and not any(
        key.startswith("seconds_") for key in evals[-1]) else None
    return before, after


def scan_jsonl(path: Path, warnings: list[str]) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """``(offset, size, record)`` for every readable episode line of a JSONL file. A half-written last
    line, a line that is not JSON and a record of an older schema become warnings (the first few are
    named, then counted)."""
    problems: list[str] = []
    offset = 0
    with open(path, "rb") as handle:
        for line_number, line in enumerate(handle, 1):
            start, offset = offset, offset + len(line)
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                if not line.endswith(b"\n"):
                    warnings.append(f"{path}: the last line ({line_number}) is incomplete (a file still being "
                                    "written, or cut short); showing the complete episodes before it.")
                else:
                    problems.append(f"line {line_number} is not JSON")
                continue
            problem = schema_problem(record)
            if problem is not None:
                problems.append(f"line {line_number}: {problem}")
                continue
            yield start, len(line), record
    if problems:
        warnings.append(skipped(path, problems))


def skipped(path: Path, problems: list[str]) -> str:
    """The warning for records left out: the first few named, the rest counted."""
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return (f"{path}: skipped {'; '.join(problems[:3])}{more}. A record from an older agentgym lacks fields this "
            "version needs; write it again with the current version.")


def read_metrics(path: Path, warnings: list[str]) -> list[dict[str, Any]]:
    """The rows of a run's ``metrics.jsonl`` (a half-written last row is skipped with a warning)."""
    rows = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            warnings.append(f"{path}: line {line_number} is not JSON (cut short?); it is left out of the curves.")
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def iteration_of(path: Path) -> int | None:
    """The iteration a run's saved records belong to (``trajectories/iteration-NNNN.jsonl``)."""
    match = _ITERATION_FILE.search(path.name)
    return int(match.group(1)) if match else None


def is_run_folder(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in RUN_FILES)
