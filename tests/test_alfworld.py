"""ALFWorld on its real engine: generated games of all six task types are solvable (the oracle wins every
test game), generation is deterministic, ALFWorld's own loader accepts the official layout we write, and
the official-data path of the env runs on it."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
import warnings
from collections import Counter

import psutil
import pytest

import agentgym
from agentgym.envs.alfworld import env as alfworld_env
from agentgym.envs.alfworld.env import AlfWorldEnv, game_folder, plan_within
from agentgym.envs.alfworld.games import SPLIT_SIZES, TASK_TYPES, split_games, unseen_floor_plans

ALFWORLD = "agentgym/ALFWorld-v0"


def play_oracle(env, task_id):
    _, info = env.reset(options={"task_id": task_id})
    reward = 0.0
    while (action := env.unwrapped.expert_action()) is not None:
        _, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    return reward, info


def test_the_oracle_wins_every_test_game_of_every_task_type():
    env = agentgym.make(ALFWORLD, split="test")
    try:
        tasks = env.unwrapped.tasks
        assert Counter(task.payload["task_type"] for task in tasks) == {t: SPLIT_SIZES["test"] for t in TASK_TYPES}
        for task in tasks:
            reward, info = play_oracle(env, task.id)
            assert reward == 1.0 and info["won"], task.id
    finally:
        env.close()


def test_generation_is_deterministic_across_processes():
    """Two interpreters with different hash seeds write byte-identical problems for every default split."""
    script = ("import hashlib, json; from agentgym.envs.alfworld.games import game_data, split_games, traj_data; "
              "h = hashlib.sha256(); "
              "[h.update(json.dumps([game_data(g), traj_data(g)], sort_keys=True).encode()) "
              "for s in ('train', 'dev', 'test', 'test_ood') for g in split_games(s)]; print(h.hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONHASHSEED": seed},
                              capture_output=True, text=True, check=True).stdout for seed in ("1", "2")}
    assert len(digests) == 1


def test_splits_are_disjoint_and_ood_uses_only_unseen_floor_plans():
    games = {split: split_games(split) for split in SPLIT_SIZES}
    ids = {split: {(g["floor_plan"], g["task_type"], g["seed"]) for g in found} for split, found in games.items()}
    assert sum(map(len, ids.values())) == len(set().union(*ids.values()))
    unseen = unseen_floor_plans()
    assert {g["floor_plan"] for g in games["test_ood"]} <= unseen
    assert not {g["floor_plan"] for split in ("train", "dev", "test") for g in games[split]} & unseen


def test_observations_read_like_alfworld_and_bad_commands_are_invalid_turns():
    env = agentgym.make(ALFWORLD, split="dev", task_types=["pick_heat_then_place_in_recep"])
    try:
        observation, info = env.reset(seed=0)
        text = observation["text"]
        assert text.startswith("You are in the middle of a room. Looking quickly around you, you see a ")
        assert "microwave 1" in text and info["instruction"].startswith(("put a hot ", "heat some "))
        assert "inventory" in observation["admissible_actions"] and "go to microwave 1" in observation["admissible_actions"]
        observation, reward, terminated, _, info = env.step("heat the kitchen")
        assert info["invalid_action"] and reward == 0 and not terminated
        observation, *_ = env.step("go to microwave 1")
        assert observation["text"].startswith("You arrive at microwave 1. The microwave 1 is closed.")
    finally:
        env.close()


def test_the_expert_replans_after_a_detour():
    env = agentgym.make(ALFWORLD, split="test", task_types=["pick_and_place_simple"])
    try:
        observation, _ = env.reset(seed=0)
        detour = next(a for a in observation["admissible_actions"] if a.startswith("go to ") and a != env.unwrapped.expert_action())
        env.step(detour)
        while (action := env.unwrapped.expert_action()) is not None:
            observation, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        assert info["won"]
    finally:
        env.close()


def _search_for_ever() -> list[str]:
    while True:
        pass


def _search_until_memory_runs_out() -> list[str]:
    hoard = []
    while True:
        hoard.append(bytearray(64 << 20))


def test_a_runaway_plan_search_is_stopped_by_time_or_memory_and_the_expert_has_no_action():
    """fast-downward's replanning was seen growing to 9 GiB in 11 minutes off the walkthrough."""
    plan = ["go to shelf 1", "take bowl 1 from shelf 1"]
    assert plan_within(lambda: plan) == plan
    assert plan_within(lambda: []) == []
    start = time.monotonic()
    assert plan_within(_search_for_ever, seconds=1.0) is None
    assert plan_within(_search_until_memory_runs_out, seconds=60.0, memory=256 << 20) is None
    assert time.monotonic() - start < 30  # the memory limit, not the clock, stopped the second search
    assert not psutil.Process().children()  # no copy left behind


def test_the_expert_gives_up_for_the_episode_once_a_search_outgrew_its_limits(monkeypatch):
    searches = []
    monkeypatch.setattr(alfworld_env, "plan_within", lambda plan: searches.append(plan))  # every search blows up
    env = agentgym.make(ALFWORLD, split="test", task_types=["pick_and_place_simple"])
    try:
        observation, _ = env.reset(seed=0)
        on_path = env.unwrapped.expert_action()
        env.step(next(a for a in observation["admissible_actions"] if a.startswith("go to ") and a != on_path))
        assert env.unwrapped.expert_action() is None and env.unwrapped.expert_action() is None
        assert len(searches) == 1  # not one more search per turn
        env.reset(seed=0)
        assert env.unwrapped.expert_action() == on_path  # a new episode follows the walkthrough again
    finally:
        env.close()


def test_alfworlds_own_loader_reads_the_official_layout_and_the_env_plays_it(tmp_path):
    """Games written in the official layout (traj_data.json + game.tw-pddl) are found by ALFWorld's own
    AlfredTWEnv and played to a win through the env's official-data path."""
    from alfworld.agents.environment.alfred_tw_env import AlfredTWEnv

    games = [g for g in split_games("test_ood") if g["task_type"] in ("pick_clean_then_place_in_recep", "look_at_obj_in_light")][::5]
    for game in games:
        game_folder(game, "test_ood", tmp_path)
    data_dir = next(tmp_path.glob("alfworld/*"))
    config = {"env": {"goal_desc_human_anns_prob": 0, "task_types": [1, 2, 3, 4, 5, 6]},
              "dataset": {"eval_ood_data_path": str(data_dir / "json_2.1.1" / "valid_unseen"), "num_eval_games": -1}}
    assert len(AlfredTWEnv(config, train_eval="eval_out_of_distribution").game_files) == len(games)

    env = AlfWorldEnv("valid_unseen", data_dir=data_dir)
    try:
        assert len(env.tasks) == len(games)
        for task in env.tasks:
            _, info = play_oracle(env, task.id)
            assert info["won"], task.id
    finally:
        env.close()


def test_an_official_split_without_data_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.delenv("ALFWORLD_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="set ALFWORLD_DATA"):
        _ = AlfWorldEnv("valid_seen").tasks
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path))  # what importing alfworld sets: a folder with no games
    with pytest.raises(FileNotFoundError, match="must be the folder that holds ALFWorld's json_2.1.1"):
        _ = AlfWorldEnv("valid_seen").tasks


def test_the_cached_engine_says_exactly_what_alfworlds_engine_says():
    """Our caches (command texts, problem translation) change speed, not output: the same random walk
    through ALFWorld's own engine setup gives the same feedback, admissible commands and win flag."""
    import random

    import textworld
    from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos

    env = agentgym.make(ALFWORLD, split="test", task_types=["pick_cool_then_place_in_recep"])
    try:
        env.reset(seed=0)
        path = str(env.unwrapped.game_folder(env.unwrapped.task) / "game.tw-pddl")
        theirs = textworld.start(path, request_infos=textworld.EnvInfos(admissible_commands=True, won=True),
                                 wrappers=[AlfredDemangler(), AlfredInfos])
        ours, rng = env.unwrapped._engine, random.Random(0)
        for _ in range(2):  # the second reset uses the cached translation
            state, reference = ours.reset(), theirs.reset()
            for _ in range(25):
                assert state.feedback == reference.feedback and state["won"] == reference["won"]
                assert state["admissible_commands"] == reference["admissible_commands"]
                command = rng.choice(reference["admissible_commands"])
                (state, _, _), (reference, _, _) = ours.step(command), theirs.step(command)
        theirs.close()
    finally:
        env.close()


def test_reset_step_close_leave_no_file_open_and_reuse_one_planner_library():
    """Issue #19: the engine's ``load`` left each game file open (``ResourceWarning: unclosed file``).
    Issue #28: each game loaded a new copy of fast-downward's library that was never freed (~3.5 MiB a
    game), and TextWorld kept every game's facts interned for good."""
    from mementos import core

    from agentgym.envs.alfworld.env import DOWNWARD_LIBRARIES

    process = psutil.Process()
    unraisable, libraries = [], []  # a warning raised in a file's __del__ reaches only sys.unraisablehook
    hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)
            for round_ in range(2):
                if round_ == 1:
                    fds, interned = process.num_fds(), len(core._memento_cache)
                env = agentgym.make(ALFWORLD, split="test", task_types=["pick_and_place_simple"])
                for task in env.unwrapped.tasks[3 * round_: 3 * round_ + 3]:  # three games, three engines
                    observation, _ = env.reset(options={"task_id": task.id})
                    env.step(observation["admissible_actions"][0])
                env.close()
                gc.collect()
                libraries.append(DOWNWARD_LIBRARIES.loaded)
    finally:
        sys.unraisablehook = hook
    assert not unraisable, [str(item.exc_value) for item in unraisable]
    assert libraries[1] == libraries[0], "the second env's three games should reuse the library the first left"
    assert process.num_fds() == fds and not process.children()
    # Kept, three games would add ~3,000 facts; TextWorld's grammar still holds the last game's until the next.
    assert len(core._memento_cache) < interned + 500, "the closed games' interned facts should be gone"
