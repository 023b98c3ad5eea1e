"""Everything the viewer was given, as one collection of episodes: summaries to list, filter and sort,
full records on demand, groups, and the runs' curves, held-out results and settings."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentgym.viewer.sources import (
    Location,
    Source,
    is_run_folder,
    iteration_of,
    read_metrics,
    scan_jsonl,
    schema_problem,
    skipped,
    summarise,
    unknown_fields,
)

SORT_KEYS = ("return", "turns", "length", "invalid")
FACETS = ("source", "env_id", "split", "policy", "iteration")


def group_key(summary: dict[str, Any]) -> str:
    """Groups are the episodes of one source and iteration that share a group id."""
    iteration = "" if summary["iteration"] is None else summary["iteration"]
    return f"{summary['source']}:{iteration}:{summary['group_id']}"


class Collection:
    """The episodes of every source, by key (their position in :attr:`summaries`)."""

    def __init__(self) -> None:
        self.sources: list[Source] = []
        self.summaries: list[dict[str, Any]] = []
        self._locations: list[Location] = []
        self.warnings: list[str] = []

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, paths: Sequence[str | os.PathLike], *, env_kwargs: dict[str, Any] | None = None) -> Collection:
        """Read every path: a ``.jsonl`` of turn records, a ``.json`` result file, a run folder, or a folder
        of run folders. ``env_kwargs`` (constructor arguments of the envs, for re-rendering screens) apply
        where a run's ``config.json`` does not say."""
        collection = cls()
        for raw in paths:
            path = Path(raw)
            if not path.exists():
                raise FileNotFoundError(f"{path} does not exist.")
            if path.is_dir() and not is_run_folder(path):
                runs = sorted(child for child in path.iterdir() if is_run_folder(child))
                if not runs:
                    raise ValueError(f"{path} is not a run folder (no metrics.jsonl, config.json or trajectories/) "
                                     "and holds none.")
                for run in runs:
                    collection._add_run(run, env_kwargs)
            elif path.is_dir():
                collection._add_run(path, env_kwargs)
            elif path.suffix == ".jsonl":
                source = collection._new_source("records", path, env_kwargs)
                collection._add_jsonl(source, path, iteration_of(path))
                collection._require_episodes(source)
            elif path.suffix == ".json":
                collection._add_results(path, env_kwargs)
            else:
                raise ValueError(f"{path}: give a turn-record .jsonl, an `agentgym eval` result .json or a run folder.")
        for source in collection.sources:
            collection.warnings.extend(source.warnings)
        return collection

    def _new_source(self, kind: str, path: Path, env_kwargs: dict[str, Any] | None) -> Source:
        source = Source(len(self.sources), kind, path, env_kwargs=dict(env_kwargs or {}))
        self.sources.append(source)
        return source

    def _require_episodes(self, source: Source) -> None:
        if not any(s["source"] == source.index for s in self.summaries):
            reasons = " ".join(source.warnings) or "it holds no episode."
            raise ValueError(f"{source.path}: nothing to show: {reasons}")

    def _add_episode(self, source: Source, record: dict[str, Any], location: Location, *, iteration: int | None,
                     seed: Any = None) -> None:
        summary = summarise(record)
        summary.update(key=len(self.summaries), source=source.index, iteration=iteration)
        if seed is not None:
            summary["seed"] = seed
        summary["group"] = group_key(summary)
        self.summaries.append(summary)
        self._locations.append(location)
        unknown = unknown_fields(record)
        if unknown and not source.info.get("unknown_fields"):
            source.info["unknown_fields"] = sorted(unknown)
            source.warnings.append(f"{source.path}: fields this version of agentgym does not know "
                                   f"({', '.join(sorted(unknown))}); they are shown as they are.")

    def _add_jsonl(self, source: Source, path: Path, iteration: int | None) -> None:
        for offset, size, record in scan_jsonl(path, source.warnings):
            self._add_episode(source, record, Location(path, offset, size), iteration=iteration)
            policy = str(record.get("policy") or "")
            if policy and policy not in source.tokenizer_hints:
                source.tokenizer_hints.append(policy)

    def _add_results(self, path: Path, env_kwargs: dict[str, Any] | None) -> None:
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not JSON ({error}); a result file is written whole by `agentgym eval`.") from None
        fields = result if isinstance(result, dict) else {}
        missing = [name for name in ("env_id", "split", "policy", "seeds", "summary") if name not in fields]
        if missing:
            raise ValueError(f"{path} is not an agentgym result file: it lacks the field {missing[0]!r}.")
        source = self._new_source("results", path, {**(env_kwargs or {}), **(result.get("env_kwargs") or {})})
        source.info["results"] = {key: result.get(key) for key in
                                  ("env_id", "split", "policy", "seeds", "episodes_per_seed", "summary", "per_seed",
                                   "created", "git_revision")}
        policy = result.get("policy") or {}
        source.tokenizer_hints += [str(v) for v in (policy.get("name"), policy.get("model"), policy.get("path")) if v]
        episodes = result.get("episodes")
        if episodes is None:
            source.warnings.append(f"{path}: the file holds no episodes (written before result files kept them); "
                                   "only its summary is shown.")
            return
        seeds = _seeds_in_order(result.get("per_seed") or [], len(episodes))
        problems = []
        for index, record in enumerate(episodes):
            problem = schema_problem(record)
            if problem is None:
                self._add_episode(source, record, Location(record=record), iteration=None,
                                  seed=seeds[index] if seeds else None)
            else:
                problems.append(f"episode {index}: {problem}")
        if problems:
            source.warnings.append(skipped(path, problems))
        if episodes and len(problems) == len(episodes):
            raise ValueError(f"{path}: no episode can be shown: {source.warnings[-1]}")

    def _add_run(self, folder: Path, env_kwargs: dict[str, Any] | None) -> None:
        source = self._new_source("run", folder, env_kwargs)
        warnings = source.warnings
        config_path = folder / "config.json"
        config = None
        if config_path.exists():
            try:
                config = json.loads(config_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as error:
                warnings.append(f"{config_path} is not JSON ({error}).")
        if isinstance(config, dict):
            source.env_kwargs = {**source.env_kwargs, **(config.get("env_kwargs") or {})}
            source.tokenizer_hints += [str(config[k]) for k in ("model",) if config.get(k)]
        metrics, report = folder / "metrics.jsonl", folder / "report.md"
        source.info["run"] = {
            "config": config if isinstance(config, dict) else None,
            "metrics": read_metrics(metrics, warnings) if metrics.exists() else [],
            "report": report.read_text(encoding="utf-8") if report.exists() else None,
            "iterations": [],
        }
        files = sorted((folder / "trajectories").glob("iteration-*.jsonl"))
        for path in files:
            iteration = iteration_of(path)
            before = len(self.summaries)
            self._add_jsonl(source, path, iteration)
            source.info["run"]["iterations"].append({"iteration": iteration, "episodes": len(self.summaries) - before})
        final = folder / "final"
        if (final / "tokenizer.json").exists():
            source.tokenizer_hints.insert(0, str(final))

    def curves_png(self, source_index: int) -> bytes | None:
        source = self.sources[source_index]
        path = source.path / "learning_curves.png"
        return path.read_bytes() if source.kind == "run" and path.exists() else None

    def curves_data_uri(self, source_index: int) -> str | None:
        png = self.curves_png(source_index)
        return None if png is None else "data:image/png;base64," + base64.b64encode(png).decode()

    # ------------------------------------------------------------------ reading
    def record(self, key: int) -> dict[str, Any]:
        """The full episode record of ``key``."""
        if not 0 <= key < len(self.summaries):
            raise KeyError(key)
        return self._locations[key].read()

    def group_members(self, group: str) -> list[dict[str, Any]]:
        return [summary for summary in self.summaries if summary["group"] == group]

    def index(self) -> dict[str, Any]:
        """What the page needs before it lists anything: sources, filter values, totals, warnings."""
        facets = {}
        for name in FACETS:
            values = {summary[name] for summary in self.summaries if summary[name] not in (None, "")}
            facets[name] = sorted(values, key=lambda v: (isinstance(v, str), v))
        return {"sources": [self._describe(source) for source in self.sources], "facets": facets,
                "total": len(self.summaries), "warnings": list(self.warnings)}

    def _describe(self, source: Source) -> dict[str, Any]:
        rows = [s for s in self.summaries if s["source"] == source.index]
        described = source.describe()
        if rows:
            turns = sum(r["turns"] for r in rows)
            described["stats"] = {
                "episodes": len(rows),
                "success_rate": sum(r["won"] for r in rows) / len(rows),
                "mean_return": sum(r["return"] for r in rows) / len(rows),
                "mean_turns": turns / len(rows),
                "invalid_rate": sum(r["invalid"] for r in rows) / turns if turns else 0.0,
                "env_ids": sorted({r["env_id"] for r in rows}),
                "splits": sorted({r["split"] for r in rows}),
                "policies": sorted({r["policy"] for r in rows}),
            }
        return described

    # ------------------------------------------------------------------ queries
    def query(self, params: dict[str, Any]) -> dict[str, Any]:
        """The page of summaries matching ``params`` (the page's filter form; see :func:`matches`),
        sorted by ``sort`` (``return``, ``turns``, ``length``, ``invalid``; ``order`` asc or desc)."""
        rows = [summary for summary in self.summaries if matches(summary, params)]
        sort = params.get("sort") or ""
        if sort in SORT_KEYS:
            rows.sort(key=lambda row: (row[sort], row["key"]), reverse=params.get("order") == "desc")
        offset = max(int(params.get("offset") or 0), 0)
        limit = min(max(int(params.get("limit") or 100), 1), 1000)
        return {"total": len(rows), "won": sum(row["won"] for row in rows), "offset": offset,
                "rows": rows[offset: offset + limit]}


def matches(summary: dict[str, Any], params: dict[str, Any]) -> bool:
    """The episode list's filters; the page's own copy (viewer.js, ``matches``) does the same."""
    for name in ("source", "env_id", "split", "policy", "iteration", "seed"):
        wanted = params.get(name)
        if wanted not in (None, "") and str(summary[name]) != str(wanted):
            return False
    task = str(params.get("task") or "").strip().lower()
    if task and task not in summary["task_id"].lower():
        return False
    outcome = params.get("outcome") or ""
    if (outcome == "won" and not summary["won"]) or (outcome == "lost" and summary["won"]):
        return False
    for name, keep in (("invalid_min", lambda n, bound: n >= bound), ("invalid_max", lambda n, bound: n <= bound)):
        bound = params.get(name)
        if bound not in (None, "") and not keep(summary["invalid"], int(bound)):
            return False
    return True


def _seeds_in_order(per_seed: list[dict[str, Any]], count: int) -> list[Any] | None:
    """The evaluation seed of each episode of a result file (episodes are stored seed after seed)."""
    seeds = []
    for row in per_seed:
        seeds += [row.get("seed")] * int(row.get("episodes") or 0)
    return seeds if len(seeds) == count else None
