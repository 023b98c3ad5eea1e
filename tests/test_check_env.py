"""check_env passes on every registered id, and catches envs that break the contract."""

from __future__ import annotations

import threading

import pytest

import agentgym
from agentgym.checker import EnvCheckError
from agentgym.contract import Frame, Task, TextEnv


def _checked_ids() -> list[str]:
    """Every registered id but the synthetic ones: each of their steps is a generation of the embedded
    experience model (minutes per check on 2 cores), so tests/test_synthetic.py checks them, on the tiny
    model by default and on their registered model with the slow checks."""
    return [env_id for env_id in agentgym.list_envs() if "/Synthetic-" not in env_id]


@pytest.mark.parametrize("env_id", _checked_ids())
def test_every_registered_env_passes_check_env(env_id):
    agentgym.check_env(env_id)


class _CounterEnv(TextEnv):
    """A tiny well-behaved env: count up to 3. Subclasses below each break one rule."""

    def load_tasks(self, split):
        offset = {"train": 0, "dev": 100, "test": 200, "test_ood": 300}[split]
        return [Task(f"count-{offset + i}", split, "Say 'up' three times.") for i in range(5)]

    def _start(self, task):
        self.count = 0
        return self._describe()

    def _act(self, action):
        self.count += 1
        return self._describe(reward=1.0)

    def _describe(self, reward=0.0):
        return Frame(f"The counter shows {self.count}.", ("up",), str(self.count), reward, self.count >= 3, self.count >= 3)


class _AcceptsAnything(_CounterEnv):
    def _admit(self, action):
        return action, ""  # no admissibility check: junk reaches the engine


class _CrashesOnBadInput(_CounterEnv):
    def step(self, action):
        return super().step(action.strip())  # None makes .strip() raise


class _LeaksAThread(_CounterEnv):
    stops: list[threading.Event] = []

    def _start(self, task):
        stop = threading.Event()
        self.stops.append(stop)
        threading.Thread(target=stop.wait, daemon=True, name="leaky").start()
        return super()._start(task)


class _Nondeterministic(_CounterEnv):
    calls = 0

    def _start(self, task):
        type(self).calls += 1
        frame = super()._start(task)
        frame.text += f" (call {type(self).calls})"
        return frame


class _SharedSplits(_CounterEnv):
    def load_tasks(self, split):
        return [Task(f"count-{i}", split, "Say 'up'.") for i in range(5)]


class _Heater(_CounterEnv):
    """A pot heats by one degree a turn for 40 turns; its thermometer shows from turn 10 on. Conforms."""

    def _start(self, task):
        self.count, self.degrees = 0, 20
        return self._describe()

    def _act(self, action):
        self.count += 1
        self.degrees += 1
        return self._describe(reward=0.025)

    def _describe(self, reward=0.0):
        reading = f" The thermometer reads {self.degrees} C." if self.count >= 10 else ""
        text = f"The pot has been on the stove for {self.count} turns.{reading}"
        return Frame(text, ("wait",), text, reward, self.count >= 40, self.count >= 40)


class _KeepsHeatAcrossResets(_Heater):
    """reset() forgets to cool the pot: the second episode reads warmer, but only from turn 10 on."""

    def _start(self, task):
        self.count = 0
        self.degrees = getattr(self, "degrees", 20)
        return self._describe()


class _DependsOnWhatRanBefore(_Heater):
    """Like an engine whose iteration order depends on its process's history: every env made after the
    first rounds its reading another way, from turn 12 on."""

    made = 0

    def __init__(self, split):
        super().__init__(split)
        type(self).made += 1
        self.order = type(self).made

    def _describe(self, reward=0.0):
        frame = super()._describe(reward)
        if self.count >= 12 and self.order > 1:
            frame.text = frame.text.replace(" C.", ".0 C.")
        return frame


def test_check_env_accepts_a_conforming_custom_env():
    agentgym.check_env(lambda: _CounterEnv("test"))


@pytest.mark.parametrize(
    ("env_class", "message"),
    [
        (_AcceptsAnything, "must be flagged info\\['invalid_action'\\]"),
        (_CrashesOnBadInput, "raised AttributeError"),
        (_LeaksAThread, "left 0 child process"),
        (_Nondeterministic, "not deterministic"),
        (_SharedSplits, "share tasks"),
        (_KeepsHeatAcrossResets, "second episode of the same env differed from the first episode at step 10"),
    ],
)
def test_check_env_rejects_broken_envs(env_class, message):
    with pytest.raises(EnvCheckError, match=message):
        agentgym.check_env(lambda: env_class("test"))
    for stop in getattr(env_class, "stops", []):
        stop.set()


def test_the_determinism_check_replays_long_enough_and_in_a_fresh_env():
    agentgym.check_env(lambda: _Heater("test"))
    # A 5-step replay (the old check) misses state that reset() leaves behind; the default 30 does not.
    agentgym.check_env(lambda: _KeepsHeatAcrossResets("test"), determinism_steps=5)
    # The same env replays alike; only a fresh one shows the difference, with both observations.
    _DependsOnWhatRanBefore.made = 0
    with pytest.raises(EnvCheckError) as caught:
        agentgym.check_env(lambda: _DependsOnWhatRanBefore("test"))
    message = str(caught.value)
    assert "in a fresh env differed from the first episode at step 12 (action 'wait')" in message
    assert "The thermometer reads 32 C." in message and "The thermometer reads 32.0 C." in message
    # Given an instance, there is no fresh env to make: the check runs within the instance.
    _DependsOnWhatRanBefore.made = 0
    agentgym.check_env(_DependsOnWhatRanBefore("test"))
