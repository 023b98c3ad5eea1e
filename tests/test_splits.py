"""Splits are disjoint by construction, for task ids and for the games behind them."""

from __future__ import annotations

import itertools
import json

import pytest

import agentgym
from conftest import TEXTWORLD_IDS


@pytest.mark.parametrize("env_id", agentgym.list_envs())
def test_splits_are_disjoint(env_id):
    env = agentgym.make(env_id, split="train")
    try:
        base = env.unwrapped
        tasks = {split: base.load_tasks(split) for split in agentgym.spec(env_id).splits}
    finally:
        env.close()
    for split, split_tasks in tasks.items():
        assert split_tasks, f"{env_id} has an empty {split} split"
        assert all(task.split == split for task in split_tasks)
    for (a, tasks_a), (b, tasks_b) in itertools.combinations(tasks.items(), 2):
        assert not {t.id for t in tasks_a} & {t.id for t in tasks_b}, f"{a} and {b} share task ids"
        content_a = {json.dumps(t.payload, sort_keys=True) for t in tasks_a}
        content_b = {json.dumps(t.payload, sort_keys=True) for t in tasks_b}
        assert not content_a & content_b, f"{a} and {b} share task payloads"


@pytest.mark.parametrize("env_id", TEXTWORLD_IDS)
def test_textworld_seed_ranges_never_overlap_and_ood_differs(env_id):
    from agentgym.envs.textworld.games import load_family

    family = load_family(agentgym.spec(env_id).kwargs["family"])
    ranges = sorted(tuple(block["seeds"]) for blocks in family["splits"].values() for block in blocks)
    for (_, stop), (start, _) in zip(ranges, ranges[1:]):
        assert stop <= start, f"overlapping seed ranges in {env_id}"
    in_distribution = {json.dumps(b["settings"], sort_keys=True) for b in family["splits"]["test"]}
    out_of_distribution = {json.dumps(b["settings"], sort_keys=True) for b in family["splits"]["test_ood"]}
    assert not in_distribution & out_of_distribution, "test_ood must use settings never seen in training"
