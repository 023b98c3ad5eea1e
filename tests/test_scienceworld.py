"""ScienceWorld: splits, gold paths that win, the same observations and rewards as the package's own
wrapper, ambiguity, valid-action lists on request."""

from __future__ import annotations

import pytest

import agentgym
from agentgym.envs.scienceworld.env import scienceworld_engine
from agentgym.envs.scienceworld.tasks import HELD_OUT_TASKS, load_variations, split_tasks

SCIENCEWORLD = "agentgym/ScienceWorld-v0"


def play_gold(env, task_id):
    observation, info = env.reset(options={"task_id": task_id})
    rewards = []
    while (action := env.unwrapped.expert_action()) is not None:
        observation, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
        if terminated or truncated:
            break
    return info, rewards


def test_splits_are_the_simulators_variations_and_ood_holds_out_whole_tasks():
    splits = {split: split_tasks(split) for split in ("train", "dev", "test", "test_ood")}
    ids = {split: {task.id for task in tasks} for split, tasks in splits.items()}
    assert all(not ids[a] & ids[b] for a in ids for b in ids if a < b)
    ood_names = {task.payload["task_name"] for task in splits["test_ood"]}
    assert ood_names == set(HELD_OUT_TASKS)
    for split in ("train", "dev", "test"):
        assert not ood_names & {task.payload["task_name"] for task in splits[split]}
    assert len(load_variations()) == 30 and len(splits["train"]) > len(splits["test"]) > 1000


def test_committed_variations_match_the_simulator():
    engine = scienceworld_engine()
    try:
        with engine.guard() as server:
            for name in ("boil", "mendelian-genetics-unknown-plant"):
                server.load(name, 0, "", False)
                committed = load_variations()[name]
                assert committed["train"] == sorted(server.getVariationsTrain())
                assert committed["test"] == sorted(server.getVariationsTest())
    finally:
        engine.close()


@pytest.mark.parametrize(("split", "index"), [("train", 0), ("dev", 500), ("test", 900), ("test_ood", 100),
                                              ("test_ood", 400)])
def test_gold_path_wins(split, index):
    env = agentgym.make(SCIENCEWORLD, split=split)
    try:
        task_id = env.unwrapped.tasks[index].id
        info, rewards = play_gold(env, task_id)
        assert info["won"] and info["score"] == 100, (task_id, info)
        assert sum(rewards) == pytest.approx(1.0) and min(rewards) >= 0
    finally:
        env.close()


def same_lines(ours: str, theirs: str) -> bool:
    """Equal up to the order of lines: the simulator lists a room's objects in an order that depends on
    what the JVM loaded before (the package's own wrapper shows it too), not on the state."""
    return sorted(ours.strip().splitlines()) == sorted(theirs.strip().splitlines())


def test_same_observations_and_rewards_as_the_packages_wrapper():
    from scienceworld import ScienceWorldEnv as PackageEnv

    package = PackageEnv("", envStepLimit=1000)
    env = agentgym.make(SCIENCEWORLD, split="test", max_turns=1000)
    try:
        task = env.unwrapped.get_task("find-plant-v287")
        package.load("find-plant", 287, "", generateGoldPath=True)
        expected_first, _ = package.reset()
        observation, _ = env.reset(options={"task_id": task.id})
        assert same_lines(observation["text"], expected_first)
        for action in package.get_gold_action_sequence():
            expected, reward, done, info = package.step(action)
            observation, ours, terminated, truncated, our_info = env.step(action)
            assert same_lines(observation["text"], expected), action
            assert ours == pytest.approx(reward / 100) and our_info["score"] == info["score"]
            assert terminated == done
        assert our_info["won"]
    finally:
        package.close()
        env.close()


def test_ambiguous_commands_ask_for_a_number_and_listing_is_opt_in():
    env = agentgym.make(SCIENCEWORLD, split="train", admissible_actions=True)
    try:
        observation, _ = env.reset(options={"task_id": "boil-v0"})  # starts in the hallway, six doors
        assert len(observation["admissible_actions"]) > 20 and "look around" in observation["admissible_actions"]
        observation, _, _, _, info = env.step("open door")
        assert observation["text"].startswith("Ambiguous request") and not info["invalid_action"]
        assert observation["admissible_actions"][:2] == ("0", "1")
        observation, _, _, _, info = env.step("0")
        assert "door" in observation["text"] and not info["invalid_action"]
        observation, _, _, _, info = env.step("juggle the moon")
        assert info["invalid_action"] and "No known action" in observation["text"]
    finally:
        env.close()
    plain = agentgym.make(SCIENCEWORLD, split="test")
    try:
        observation, info = plain.reset(options={"task_id": "boil-v21"})
        assert observation["admissible_actions"] == () and "Commands (OBJ is an object)" in info["instruction"]
    finally:
        plain.close()
