"""Where a run's episodes come from and how it is judged: rollout engines over the train split and the
held-out split (same prompt template and parser), the train tasks, and held-out evaluation on a fixed
sample of tasks."""

from __future__ import annotations

import contextlib

import numpy as np

from agentgym.evaluation import episode_metrics
from agentgym.policies import Policy, RandomPolicy
from agentgym.prompting import PromptTemplate
from agentgym.rollout import RolloutEngine
from agentgym.trainers.config import RunConfig

EVAL_SEED = 10_000  # held-out tasks and episode seeds: the same at every evaluation of every run


def rollout_engines(config: RunConfig) -> tuple[RolloutEngine, RolloutEngine]:
    """Engines over the train split (``train``, or the config's ``train_split``: test-time training
    rolls out on unlabeled test instructions) and the held-out split, with the run's prompt template."""
    template = PromptTemplate(history_window=config.history_window, style=config.prompt_style)
    train_split = getattr(config, "train_split", "train")
    return tuple(RolloutEngine(config.env_id, split, num_envs=config.num_envs, template=template,
                               env_kwargs=config.env_kwargs, concurrency=config.concurrency,
                               ray_address=config.ray_address or None, actor_options=config.env_actor_options)
                 for split in (train_split, config.eval_split))


def matching_tasks(engine: RolloutEngine, config: RunConfig) -> list[str]:
    """The ids of the engine's tasks that match ``task_filter``."""
    ids = [task_id for task_id in engine.tasks if config.task_filter in task_id]
    if not ids:
        raise ValueError(f"No {engine.split} task of {config.env_id} matches task_filter={config.task_filter!r}.")
    return ids


def task_order(count: int, seed: int, iteration: int) -> np.ndarray:
    """The order in which an iteration draws train tasks: a permutation seeded by the run's seed and the
    iteration, so a resumed run draws what an uninterrupted one would."""
    return np.random.default_rng(seed * 1_000_003 + iteration).permutation(count)


def evaluate_policy(policy: Policy, engine: RolloutEngine, config: RunConfig, *,
                    progress: bool | str = False) -> dict[str, float]:
    """Held-out metrics (``eval_*``) on the same tasks every time (a fixed sample of the evaluation split)."""
    ids = matching_tasks(engine, config)
    picked = np.random.default_rng(EVAL_SEED).permutation(len(ids))[: config.eval_episodes]
    temperature = getattr(config, "eval_temperature", None)  # None: sample as training does
    at_temperature = getattr(policy, "at_temperature", None)  # random and scripted policies have none
    with at_temperature(temperature) if temperature is not None and at_temperature else contextlib.nullcontext():
        trajectories = engine.run(policy, engine.plan(task_ids=[ids[i] for i in picked], seed=EVAL_SEED,
                                                      run_id="eval"), progress=progress)
    return {f"eval_{key}": value for key, value in episode_metrics(trajectories).items()}


def evaluate_before(policy: Policy, engine: RolloutEngine, config: RunConfig, *,
                    progress: bool | str = False) -> dict[str, float]:
    """The held-out metrics before training, with a random policy's success on the same tasks for scale."""
    before = evaluate_policy(policy, engine, config, progress=progress)
    before["random_success_rate"] = evaluate_policy(RandomPolicy(seed=config.seed), engine, config)["eval_success_rate"]
    return before
