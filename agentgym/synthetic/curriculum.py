"""The curriculum of DreamGym (docs/algorithms.md §5.1–5.3): score each task by the population variance
of its group's rewards, vary the highest-scoring tasks with the experience model prompted as a task
generator, and mix generated tasks into an iteration's tasks up to a share λ.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from agentgym.contract import Task
from agentgym.synthetic import format as fmt
from agentgym.synthetic.model import ExperienceModel, Failure, Reader


def task_value(rewards: Sequence[float]) -> float:
    """V_τ = (1/G) Σ_i (r_i − r̄)²: the population variance of a group's rewards (§5.3)."""
    if not rewards:
        raise ValueError("A task's value needs at least one reward.")
    return float(np.var(np.asarray(rewards, dtype=np.float64)))


def task_values(rewards_by_task: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """V_τ of every task."""
    return {task: task_value(rewards) for task, rewards in rewards_by_task.items()}


def top_tasks(values: Mapping[str, float], count: int) -> list[str]:
    """The ``count`` tasks of highest value, best first (ties by task id); tasks of value 0 — always solved
    or never solved — are never chosen."""
    ranked = sorted((task for task, value in values.items() if value > 0), key=lambda task: (-values[task], task))
    return ranked[:count]


def generated_count(tasks: int, share: float, available: int) -> int:
    """How many of an iteration's ``tasks`` may be generated ones: at most ⌊λ·tasks⌋ (λ = ``share``), and no
    more than are ``available``."""
    if not 0 <= share <= 1:
        raise ValueError(f"The share of generated tasks λ must be in [0, 1], not {share}.")
    return min(available, math.floor(share * tasks + 1e-9))


@dataclass(frozen=True)
class Seed:
    """A task to vary: its id, its value and the instruction its episodes were given."""

    task_id: str
    value: float
    instruction: str



def generate_tasks(model: ExperienceModel, seeds: Sequence[Seed], known: Iterable[str], *, per_seed: int,
                   iteration: int, examples: int = 3) -> tuple[list[Task], list[str]]:
    """Variations of each seed's instruction written by the experience model prompted as a task generator:
    new ``train`` tasks whose payload names the seed (``generated_from``), the iteration and the seed's
    value. Also returns why a variation was dropped (a malformed or repeated reply after every attempt)."""
    known = list(known)
    tasks, dropped = [], []
    instructions = [seed.instruction for seed in seeds]
    for seed in seeds:
        others = [text for text in instructions if text != seed.instruction][: examples - 1]
        for number in range(per_seed):
            prompt = fmt.render_task_prompt(seed.instruction, [seed.instruction, *others])
            reader = Reader(lambda reply, taken=tuple(known): fmt.parse_task(reply, known=taken))
            # Each variation is its own prompt so a retry can differ; the number makes it distinct.
            prompt[-1]["content"] += f"\n\nNew task number {number + 1}:"
            (result,) = model.complete([prompt], reader)
            if isinstance(result, Failure):
                dropped.append(f"{seed.task_id}: {result.reason}")
                continue
            digest = hashlib.blake2b(result.encode(), digest_size=4).hexdigest()
            tasks.append(Task(f"generated-it{iteration}-{digest}", "train", result,
                              payload={"generated_from": seed.task_id, "iteration": iteration, "seed_value": seed.value}))
            known.append(result)
    return tasks, dropped
