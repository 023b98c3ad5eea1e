"""DreamGym (docs/algorithms.md §5): GRPO on the shared loop whose first ``iterations − real_iterations``
iterations roll out in the synthetic env an experience model drives (trained first by
:mod:`agentgym.trainers.experience_model` when ``experience_model_training`` asks). Each iteration's tasks
are the loop's train tasks plus at most a share λ of generated ones; after the rollouts every task is
scored by the population variance of its group's rewards, the highest-scoring ones are varied by the
experience model, and the synthetic transitions join the replay buffer. The last ``real_iterations``
iterations roll out in the real env. Every evaluation is on the real env's held-out split.

    agentgym train configs/dreamgym-coin-level3.yaml      # experience model, then the policy, offline
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agentgym.evaluation import episode_metrics
from agentgym.paths import atomic_write
from agentgym.records import Trajectory
from agentgym.rollout import RolloutEngine
from agentgym.synthetic import paths, register_synthetic
from agentgym.synthetic.buffer import (
    prompt_observation,
    read_transitions,
)
from agentgym.synthetic.curriculum import Seed, generate_tasks, generated_count, task_values, top_tasks
from agentgym.synthetic.env import BUFFERS, INITIAL_STATES, acquire_buffer
from agentgym.synthetic.model import ExperienceModel, acquire_model, release_model
from agentgym.trainers import heldout, loop
from agentgym.trainers.config import PolicyLossConfig, RunConfig, Settings, make_config
from agentgym.trainers.experience_model import ExperienceModelConfig, train_experience_model
from agentgym.trainers.grpo import GroupAdvantageConfig, GroupRelative

NOT_RECORDED = "(not recorded)"  # a turn record's last next state (see agentgym.synthetic.buffer.transitions_of)


# ====================================================================== the policy: curriculum and sim-to-real


@dataclass
class SyntheticExperienceConfig(Settings):
    """Where synthetic episodes come from, DreamGym's curriculum, and the sim-to-real schedule."""

    real_iterations: int = 0  # the last iterations roll out in the real env (sim-to-real); the others in the synthetic env
    experience_model: dict[str, Any] = field(default_factory=dict)  # its settings (backend, adapter, retrieval_k...); empty: env_id's installed model, else the prompted embedded one
    experience_model_training: dict[str, Any] = field(default_factory=dict)  # settings of a trainer: experience_model run made first (in its own output_dir, default output_dir/experience-model/; reused once finished) whose adapter is then the experience model
    buffer: str = ""  # replay buffer file of real transitions (empty: the training run's, else env_id's default buffer)
    initial_state: str = "real"  # real: first states from the real env's reset | model: written by the experience model
    generated_share: float = 0.25  # λ: at most this share of an iteration's tasks are generated ones
    curriculum_seeds: int = 2  # highest-value tasks (population variance of their rewards) varied after each synthetic iteration
    variations_per_seed: int = 1  # new tasks generated from each of them

    def __post_init__(self) -> None:
        if self.initial_state not in INITIAL_STATES:
            raise ValueError(f"initial_state must be one of {INITIAL_STATES}, not {self.initial_state!r}.")
        if not 0 <= self.generated_share <= 1:
            raise ValueError(f"generated_share (λ) must be in [0, 1], not {self.generated_share}.")
        super().__post_init__()


@dataclass
class DreamGymConfig(RunConfig, PolicyLossConfig, GroupAdvantageConfig, SyntheticExperienceConfig):
    """Settings of a DreamGym run: GRPO's, and where its synthetic experience comes from."""

    output_dir: str = "runs/dreamgym"  # the run folder (also holds the generated tasks and the synthetic transitions)

    def __post_init__(self) -> None:
        if not 0 <= self.real_iterations <= self.iterations:
            raise ValueError(f"real_iterations must be between 0 and iterations ({self.iterations}).")
        if self.dynamic_sampling and self.real_iterations < self.iterations:
            raise ValueError("dynamic_sampling applies to real rollouts only; DreamGym's synthetic iterations "
                             "roll out once (set real_iterations = iterations, or dynamic_sampling = false).")
        super().__post_init__()


class DreamGym(GroupRelative):
    """GRPO whose rollouts come from the synthetic env, with the curriculum, until the real iterations."""

    config: DreamGymConfig
    curves = ("train_success_rate", "train_mean_reward", "eval_success_rate", "entropy", "generated_tasks",
              "experience_model_errors")

    def __init__(self, config: DreamGymConfig):
        super().__init__(config)
        folder = Path(config.output_dir)
        self.generated_path = folder / "generated_tasks.jsonl"
        self.synthetic_path = folder / "synthetic_transitions.jsonl"
        self.generated: list[dict[str, Any]] = []  # generated tasks (Task dicts), oldest first
        self.played: dict[str, list[float]] = {}  # V_τ of each generated task, each time it was played
        self.settings = paths.resolve_settings(config.env_id, config.experience_model)
        self.buffer_path = config.buffer or str(paths.default_buffer(config.env_id))
        self.synthetic_id = register_synthetic(config.env_id)

    def synthetic(self, iteration: int) -> bool:
        return iteration <= self.config.iterations - self.config.real_iterations

    def collect(self, rollouts: loop.Rollouts, iteration: int, row: dict[str, Any]) -> list[Trajectory]:
        if not self.synthetic(iteration):
            row["phase_real"] = 1
            return super().collect(rollouts, iteration, row)
        config = self.config
        key, buffer = acquire_buffer(self.buffer_path)
        try:
            if not buffer.counts()["synthetic"] and self.synthetic_path.is_file():  # a resumed run's
                buffer.add(read_transitions(self.synthetic_path))
                buffer.refresh()
            model = acquire_model(self.settings, config.seed)
            try:
                trajectories = self._roll_out(rollouts, iteration)
                self._vary(model, trajectories, iteration, row)
            finally:
                release_model(self.settings, config.seed)
            buffer.refresh()
            buffer.save(self.synthetic_path, synthetic_only=True)
            row.update({f"buffer_{kind}": count for kind, count in buffer.counts().items()})
        finally:
            BUFFERS.release(key)
        row.update({f"train_{k}": v for k, v in episode_metrics(trajectories).items()})
        row["phase_real"] = 0
        row["experience_model_errors"] = sum("experience_model_error" in turn.info
                                             for t in trajectories for turn in t.turns)
        return trajectories

    def _roll_out(self, rollouts: loop.Rollouts, iteration: int) -> list[Trajectory]:
        """This iteration's groups in the synthetic env: the loop's train tasks, and at most a share λ of the
        most recently generated tasks."""
        config = self.config
        order = heldout.task_order(len(rollouts.task_ids), config.seed, iteration)
        generated = generated_count(config.tasks_per_iteration, config.generated_share, len(self.generated))
        chosen = [rollouts.task_ids[i] for i in order[: config.tasks_per_iteration - generated]]
        chosen += [task["id"] for task in self.generated[len(self.generated) - generated:]] if generated else []
        env_kwargs = {"model": dataclasses.asdict(self.settings), "buffer": self.buffer_path,
                      "initial_state": config.initial_state, "seed": config.seed,
                      "real_env_kwargs": dict(config.env_kwargs)}  # a turn budget there holds in both envs
        if self.generated:
            env_kwargs["generated_tasks"] = str(self.generated_path)
        with RolloutEngine(self.synthetic_id, "train", num_envs=config.num_envs, template=rollouts.engine.template,
                           env_kwargs=env_kwargs) as engine:
            plan = engine.plan(task_ids=chosen, group_size=config.group_size, run_id=f"it{iteration}", seed=iteration)
            return rollouts.play(engine, plan, "synthetic rollout")

    def _vary(self, model: ExperienceModel, trajectories: list[Trajectory], iteration: int, row: dict[str, Any]) -> None:
        """Score the iteration's tasks, generate variations of the best, and keep them (§5.2)."""
        config = self.config
        rewards: dict[str, list[float]] = {}
        instructions: dict[str, str] = {}
        for trajectory in trajectories:
            rewards.setdefault(trajectory.task.id, []).append(trajectory.total_reward)
            if trajectory.turns:
                instructions[trajectory.task.id] = (prompt_observation(trajectory.turns[0].prompt)[0]
                                                    or trajectory.task.instruction)
        values = task_values(rewards)
        for task_id, value in values.items():
            if task_id.startswith("generated-"):
                self.played.setdefault(task_id, []).append(value)
        seeds = [Seed(task_id, values[task_id], instructions[task_id])
                 for task_id in top_tasks(values, config.curriculum_seeds) if task_id in instructions]
        known = list(instructions.values()) + [task["instruction"] for task in self.generated]
        new, dropped = generate_tasks(model, seeds, known, per_seed=config.variations_per_seed, iteration=iteration)
        self.generated += [task.to_dict() for task in new]
        _write_tasks(self.generated_path, self.generated)
        row.update(tasks_valued=len(values), tasks_with_value=sum(v > 0 for v in values.values()),
                   mean_task_value=float(np.mean(list(values.values()))), generated_tasks=len(self.generated),
                   generated_dropped=len(dropped))

    def progress(self, row: dict[str, Any]) -> str:
        phase = "real" if row.get("phase_real") else "synthetic"
        extra = f" generated {row.get('generated_tasks', 0)}" if phase == "synthetic" else ""
        return f"{phase}: {super().progress(row)}{extra}"

    def summary(self) -> str:
        config = self.config
        synthetic = config.iterations - config.real_iterations
        model = self.settings.backend + (f" + {self.settings.adapter}" if self.settings.adapter else "")
        lines = [(f"{config.tasks_per_iteration} tasks × {config.group_size} episodes ({synthetic} iterations in "
                  f"{self.synthetic_id} with experience model {model} and λ = {config.generated_share}, then "
                  f"{config.real_iterations} in the real env); {len(self.generated)} generated tasks")]
        for task in self.generated:
            played = self.played.get(task["id"])
            lines.append(f"\n- `{task['id']}` (from `{task['payload']['generated_from']}`, V = "
                         f"{task['payload']['seed_value']:.3f}; played: "
                         f"{', '.join(f'V = {v:.3f}' for v in played) if played else 'no'}): {task['instruction']}")
        return "".join(lines)

    def state(self) -> dict[str, Any]:
        return {"generated": self.generated, "played": self.played}

    def load_state(self, state: dict[str, Any]) -> None:
        self.generated, self.played = list(state["generated"]), dict(state["played"])


def _write_tasks(path: Path, tasks: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(task) + "\n" for task in tasks)
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def train(config: DreamGymConfig, *, progress: bool = True) -> dict[str, Any]:
    """Train with DreamGym, after training its experience model when ``experience_model_training`` asks:
    returns the held-out metrics (real env) before and after, the report's path and the metrics rows."""
    if config.experience_model_training:
        stage = {"env_id": config.env_id, "seed": config.seed,
                 "output_dir": str(Path(config.output_dir) / "experience-model"), **config.experience_model_training}
        folder = Path(stage["output_dir"])
        if not (folder / "final" / paths.SETTINGS_FILE).is_file():  # a finished stage is reused, as a pipeline's
            stage.setdefault("resume", (folder / "checkpoint.pt").is_file())  # an interrupted one continues
            train_experience_model(make_config(ExperienceModelConfig, stage), progress=progress)
        config = dataclasses.replace(config, buffer=config.buffer or str(folder / "buffer.jsonl"),
                                     experience_model={**paths.trained_settings(folder / "final"),
                                                       **config.experience_model})
    return loop.train(DreamGym(config), progress=progress)


CONFIG = DreamGymConfig  # the settings of `trainer: dreamgym` (agentgym train --help-config dreamgym)


def run(settings: dict[str, Any], overrides: list[str] = ()) -> dict[str, Any]:
    """Entry point of ``agentgym train`` for ``trainer: dreamgym``."""
    return train(make_config(DreamGymConfig, settings, overrides))
