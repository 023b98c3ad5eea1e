"""Several trainers as one run: behaviour cloning → RL (GRPO, EPO, PPO) → held-out evaluation.

    trainer: pipeline
    output_dir: runs/bc-then-grpo
    shared: {env_id: agentgym/TextWorld-CoinCollector-v0, task_filter: level3-}  # every stage starts from these
    stages:
      - {trainer: sft, iterations: 2}
      - {trainer: grpo, iterations: 10}

Stage *i* runs in ``output_dir/<i>-<trainer>/`` and starts from the weights the stages before it
trained: their LoRA adapters are merged into the model, in order, before it adds its own (a stage that
trains every weight hands over its ``final/`` folder as the model instead). Each stage evaluates on the
held-out split before and after, so the report shows where every stage started and ended.
``key=value`` overrides apply to every stage; ``--resume`` skips finished stages and resumes the
interrupted one.
"""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from typing import Any

from agentgym.paths import atomic_write


def stages_of(settings: dict[str, Any]) -> tuple[Path, list[tuple[str, dict[str, Any]]]]:
    """The run folder and each stage's trainer name and settings (shared settings, then the stage's)."""
    settings = dict(settings)
    stages = settings.pop("stages", None)
    shared = dict(settings.pop("shared", {}) or {})
    output = Path(settings.pop("output_dir", "runs/pipeline"))
    if settings:
        raise ValueError(f"Unknown pipeline setting(s) {sorted(settings)}: use output_dir, shared and stages.")
    if not stages or not all(isinstance(stage, dict) and "trainer" in stage for stage in stages):
        raise ValueError("A pipeline needs `stages`: a list of mappings, each with a `trainer` (sft, grpo, epo, ppo).")
    merged = [{**shared, **stage} for stage in stages]
    return output, [(stage.pop("trainer"), stage) for stage in merged]


def run(settings: dict[str, Any], overrides: list[str] = ()) -> dict[str, Any]:
    """Entry point of ``agentgym train`` for ``trainer: pipeline``."""
    output, stages = stages_of(settings)
    trainers = {ep.name: ep for ep in importlib.metadata.entry_points(group="agentgym.trainers")}
    resume = any(item.replace(" ", "") in ("resume=true", "resume=True") for item in overrides)
    adapters: list[str] = []
    model = stages[0][1].get("model", "embedded")
    results = []
    for index, (name, stage) in enumerate(stages, 1):
        if name not in trainers or name == "pipeline":
            raise ValueError(f"Stage {index}: unknown trainer {name!r}; installed: {', '.join(sorted(trainers))}.")
        folder = output / f"{index}-{name}"
        stage.update(output_dir=str(folder), model=stage.get("model", model),
                     init_adapters=list(stage.get("init_adapters", [])) + adapters)
        finished = (folder / "report.md").exists() and (folder / "result.json").exists()
        if resume and finished:
            result = json.loads((folder / "result.json").read_text())
        else:
            stage_overrides = [o for o in overrides if not o.startswith("resume=")]
            if resume and (folder / "checkpoint.pt").exists():
                stage_overrides.append("resume=true")
            result = trainers[name].load()(stage, stage_overrides)
            _write_json(folder / "result.json", {k: result[k] for k in ("before", "after", "report")})
        results.append((index, name, result))
        if int(stage.get("lora_rank", 16)) > 0:
            adapters = stage["init_adapters"] + [str(folder / "final")]
        else:
            model, adapters = str(folder / "final"), []
    lines = ["# Pipeline", "", "| stage | trainer | held-out success before | after | report |", "|---|---|---|---|---|"]
    for index, name, result in results:
        before = result["before"].get("eval_success_rate")  # absent with eval_before: false
        if before is not None:
            cell = f"{before:.1%}"
        elif index > 1 and _evaluation_of(stages[index - 1][1]) == _evaluation_of(stages[index - 2][1]):
            # the stage starts from the weights the stage before ended with, evaluated the same way
            cell = f"{results[index - 2][2]['after']['eval_success_rate']:.1%} (stage {index - 1}'s after)"
        else:
            cell = "—"
        lines.append(f"| {index} | {name} | {cell} | "
                     f"{result['after']['eval_success_rate']:.1%} | [{index}-{name}]({index}-{name}/report.md) |")
    report = output / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"before": results[0][2]["before"], "after": results[-1][2]["after"], "report": str(report),
            "stages": [result for _, _, result in results]}


def _evaluation_of(stage: dict[str, Any]) -> tuple:
    """The settings that decide a held-out figure: two stages that share them measure alike."""
    keys = ("env_id", "env_kwargs", "task_filter", "eval_split", "eval_episodes", "eval_temperature", "seed")
    return tuple(repr(stage.get(key)) for key in keys)


def _write_json(path: Path, value: Any) -> None:
    atomic_write(path, lambda handle: handle.write(json.dumps(value, indent=1).encode()))
