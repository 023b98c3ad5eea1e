"""The env contract on a real TextWorld game: spaces, info keys, invalid turns, truncation, tasks."""

from __future__ import annotations

import gymnasium as gym
import pytest

import agentgym
from agentgym.contract import INFO_KEYS, EngineCrashed, Frame, Task, TextEnv, UnicodeText, normalize_action, state_key
from conftest import COIN


def test_unicode_text_space_contains_any_string_and_samples():
    space = UnicodeText(max_length=50)
    assert space.contains("Go north — ça va? 🙂 [12] button 'Buy'")
    assert not space.contains(b"bytes")
    assert not space.contains("x" * 51)
    assert space.contains(space.sample())


def test_state_key_is_stable_and_order_sensitive():
    # Pinned: the key must not change across processes, machines or releases (Python's hash() would).
    assert state_key("a", "b") == "ad2fbbf2e07b42c7"
    assert state_key("a", "b") != state_key("b", "a")
    assert state_key("ab") != state_key("a", "b")  # parts are separated, not concatenated


def test_normalize_action():
    assert normalize_action("  Go   NORTH ") == "go north"


def test_reset_and_step_types(coin_env):
    observation, info = coin_env.reset(seed=3)
    assert coin_env.observation_space.contains(observation)
    assert set(INFO_KEYS) <= set(info) and info["split"] == "test" and info["turn"] == 0
    assert info["instruction"].strip()
    action = observation["admissible_actions"][0]
    observation, reward, terminated, truncated, info = coin_env.step(action)
    assert isinstance(reward, float) and isinstance(terminated, bool) and isinstance(truncated, bool)
    assert info["turn"] == 1 and info["invalid_action"] is False


@pytest.mark.parametrize("action", ["", "dance wildly", None, 3.5, "take the moon"])
def test_invalid_action_is_a_turn_with_feedback(coin_env, action):
    observation, _ = coin_env.reset(seed=3)
    before = observation["state_key"]
    observation, reward, terminated, truncated, info = coin_env.step(action)
    assert info["invalid_action"] is True and reward == 0.0 and not terminated and not truncated
    assert observation["text"].startswith("Invalid action")
    assert observation["state_key"] == before
    # The admissible actions are still offered, and a valid action still works afterwards.
    assert observation["admissible_actions"]
    _, _, _, _, info = coin_env.step(observation["admissible_actions"][0])
    assert info["invalid_action"] is False and info["turn"] == 2


def test_actions_match_case_and_spacing_insensitively(coin_env):
    observation, _ = coin_env.reset(seed=3)
    shouted = "  " + observation["admissible_actions"][0].upper().replace(" ", "   ") + " "
    _, _, _, _, info = coin_env.step(shouted)
    assert info["invalid_action"] is False


def test_truncation_after_max_turns_counts_invalid_turns():
    env = agentgym.make(COIN, split="test", max_turns=3)
    try:
        env.reset(seed=0)
        results = [env.step("not a command") for _ in range(3)]
        assert [r[3] for r in results] == [False, False, True]
        with pytest.raises(gym.error.ResetNeeded):
            env.step("look")
    finally:
        env.close()


def test_task_selection_by_id_and_by_seed(coin_env):
    tasks = coin_env.unwrapped.tasks
    _, info = coin_env.reset(options={"task_id": tasks[7].id})
    assert info["task_id"] == tasks[7].id
    picks = {coin_env.reset(seed=11)[1]["task_id"] for _ in range(3)}
    assert len(picks) == 1
    assert len({coin_env.reset(seed=s)[1]["task_id"] for s in range(10)}) > 1


def test_unknown_task_id_or_split_is_a_clear_error(coin_env):
    train_id = agentgym.make(COIN, split="train").unwrapped.tasks[0].id
    with pytest.raises(ValueError, match="not in split 'test'"):
        coin_env.reset(options={"task_id": train_id})
    with pytest.raises(ValueError, match="no split 'valid'"):
        agentgym.make(COIN, split="valid")


class _FlakyEngineEnv(TextEnv):
    """Counts up; its 'engine' dies when told to (the crash hook, without a real process)."""

    admissible_is_complete = False
    crash_on_start = 0

    def load_tasks(self, split):
        return [Task(f"{split}-0", split, "Count.")]

    def _start(self, task):
        if self.crash_on_start:
            type(self).crash_on_start -= 1
            raise EngineCrashed("died between episodes")
        self.count = 0
        return Frame(f"At {self.count}.", ("up",), str(self.count))

    def _act(self, action):
        if action == "crash":
            raise EngineCrashed("test crash")
        if action not in ("up", "down"):
            return Frame(f"The engine does not know {action!r}.", invalid=True)
        self.count += 1 if action == "up" else -1
        return Frame(f"At {self.count}.", ("up",), str(self.count), reward=1.0)


def test_an_engine_crash_truncates_the_episode_without_raising():
    env = _FlakyEngineEnv("train")
    env.reset()
    env.step("up")
    observation, reward, terminated, truncated, info = env.step("crash")
    assert truncated and not terminated and reward == 0.0 and info["engine_crashed"]
    assert "crashed" in observation["text"] and observation["state_key"] == "1"
    with pytest.raises(gym.error.ResetNeeded):
        env.step("up")
    _FlakyEngineEnv.crash_on_start = 1  # a dead engine found at reset is retried once
    observation, info = env.reset()
    assert observation["text"] == "At 0."


def test_an_incomplete_admissible_list_lets_the_engine_judge_unlisted_actions():
    env = _FlakyEngineEnv("train")
    env.reset()
    observation, reward, _, _, info = env.step("down")  # not listed, but the engine accepts it
    assert not info["invalid_action"] and observation["text"] == "At -1." and reward == 1.0
    observation, reward, _, _, info = env.step("sideways")
    assert info["invalid_action"] and reward == 0.0 and observation["state_key"] == "-1"


class _OwnHelperNamesEnv(TextEnv):
    """A family that names its own helpers like the base class's old private fields did."""

    def load_tasks(self, split):
        return [Task(f"{split}-0", split, "Count.")]

    def _frame(self, count):  # the helper name that used to break reset()
        return Frame(f"At {count}.", ("up",), str(count), reward=float(count > 0), terminated=count >= 2,
                     won=count >= 2)

    def _start(self, task):
        self._task, self._turn, self._done, self.count = "mine", "mine", "mine", 0
        assert self.task is task and self.turn == 0 and self.current_frame is None
        return self._frame(self.count)

    def _act(self, action):
        self.count += 1
        return self._frame(self.count)


def test_a_family_may_name_its_helpers_frame_task_turn_done():
    env = _OwnHelperNamesEnv("train")
    observation, info = env.reset()
    assert observation["text"] == "At 0." and info["task_id"] == "train-0"
    assert env.task.id == "train-0" and env.turn == 0 and not env.episode_over
    _, _, _, _, info = env.step("dance")  # invalid: the state does not move
    assert info["invalid_action"] and env.current_frame.text == "At 0." and env.turn == 1
    env.step("up")
    _, _, terminated, _, info = env.step("up")
    assert terminated and info["won"] and env.episode_over and env.turn == 3
    assert env._task == env._turn == env._done == "mine"  # the family's own attributes, untouched


def test_a_subclass_that_shadows_the_base_state_is_rejected_at_class_definition():
    with pytest.raises(TypeError, match=r"defines 'task', 'turn'.*TextEnv reserves"):
        class _Shadowing(_OwnHelperNamesEnv):
            turn = 0

            def task(self):
                return None
    env = _OwnHelperNamesEnv("train")
    with pytest.raises(AttributeError, match="read-only: TextEnv owns the episode state"):
        env.task = Task("x", "train", "x")


def test_invalid_frame_keeps_the_state_and_copies_the_image():
    import numpy as np

    class _Pictured(_OwnHelperNamesEnv):
        image_shape = (2, 2, 3)

        def _frame(self, count):
            frame = super()._frame(count)
            frame.image = np.full((2, 2, 3), count, dtype=np.uint8)
            return frame

    env = _Pictured("train")
    assert env.invalid_frame("early").invalid  # before any reset: no state to keep, no crash
    env.reset()
    env.step("up")
    frame = env.invalid_frame("No.")
    assert frame.invalid and frame.text == "No." and frame.state_key == "1" and frame.admissible_actions == ("up",)
    assert frame.image is not env.current_frame.image and (frame.image == 1).all()
