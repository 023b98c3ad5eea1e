"""check_env passes on every registered id, and catches envs that break the contract."""

from __future__ import annotations

import threading

import pytest

import agentgym
from agentgym.checker import EnvCheckError
from agentgym.contract import Frame, Task, TextEnv


@pytest.mark.parametrize("env_id", agentgym.list_envs())
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
    ],
)
def test_check_env_rejects_broken_envs(env_class, message):
    with pytest.raises(EnvCheckError, match=message):
        agentgym.check_env(lambda: env_class("test"))
    for stop in getattr(env_class, "stops", []):
        stop.set()
