"""A user's own env, registered at run time, works everywhere the built-in ids do: process-mode and
Ray-mode rollouts and evaluation (the spec travels to the worker processes and actors), check_env, and
max_turns without making it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import agentgym
from agentgym import registry
from agentgym.contract import Frame, Task, TextEnv, state_key
from agentgym.evaluation import evaluate
from agentgym.policies import make_policy
from agentgym.rollout import RolloutEngine

from conftest import RAY_MODE

SPLIT_OFFSETS = {"train": 0, "dev": 1000, "test": 2000}


class GuessEnv(TextEnv):
    """Guess a secret number from 1 to ``size``; each wrong guess is answered "higher" or "lower"."""

    splits = tuple(SPLIT_OFFSETS)
    default_max_turns = 6

    def __init__(self, split: str = "train", *, size: int = 8, max_turns: int | None = None,
                 render_mode: str | None = None):
        super().__init__(split, max_turns=max_turns, render_mode=render_mode)
        self.size = size
        self._secret = 0

    def load_tasks(self, split: str) -> list[Task]:
        offset = SPLIT_OFFSETS[split]
        return [Task(f"guess-{offset + i}", split, f"Find the number between 1 and {self.size}.",
                     {"secret": 1 + (offset + 7 * i) % self.size}) for i in range(12)]

    def _frame(self, text: str, guess: int = 0) -> Frame:
        won = guess == self._secret
        actions = () if won else tuple(f"guess {k}" for k in range(1, self.size + 1))
        key = state_key(self.task.id, str(guess))
        return Frame(text, actions, key, reward=float(won), terminated=won, won=won)

    def _start(self, task: Task) -> Frame:
        self._secret = task.payload["secret"]
        return self._frame(f"I am thinking of a number from 1 to {self.size}.")

    def _act(self, action: str) -> Frame:
        guess = int(action.split()[1])
        if guess == self._secret:
            return self._frame("Right!", guess)
        return self._frame("Higher." if guess < self._secret else "Lower.", guess)

    def expert_action(self) -> str | None:
        return f"guess {self._secret}"


def small_guess(**kwargs) -> GuessEnv:
    """A factory entry point: the game on 1..5."""
    return GuessEnv(size=5, **kwargs)


def _register(kind: str) -> str:
    """Register the game at run time with an entry point of ``kind``; return its id."""
    if kind == "local class":  # not importable by name: travels to the workers by value
        class LocalGuess(GuessEnv):
            default_max_turns = 4

        entry_point = LocalGuess
    else:
        entry_point = {"class": GuessEnv, "factory": small_guess, "string": f"{__name__}:GuessEnv"}[kind]
    env_id = f"usertest/Guess-{kind.replace(' ', '')}-v0"
    agentgym.register(env_id, entry_point, splits=tuple(SPLIT_OFFSETS), concurrency="process")
    return env_id


def _rollout(env_id: str, concurrency: str) -> list:
    with RolloutEngine(env_id, "dev", num_envs=2, concurrency=concurrency) as engine:
        plan = engine.plan(num_tasks=3, group_size=2, seed=5, run_id="same")
        return engine.run(make_policy("random", seed=5), plan)


WORKER_MODES = ["auto", RAY_MODE]  # "auto" is process mode for these registrations


@pytest.mark.parametrize("mode", WORKER_MODES)
@pytest.mark.parametrize("kind", ["class", "factory", "string", "local class"])
def test_worker_rollouts_of_a_run_time_registration_equal_thread_rollouts(kind, mode):
    env_id = _register(kind)
    assert agentgym.spec(env_id).concurrency == "process"
    in_workers, on_threads = _rollout(env_id, mode), _rollout(env_id, "thread")
    assert in_workers == on_threads
    assert sum(trajectory.num_turns for trajectory in in_workers) > len(in_workers)  # real episodes


@pytest.mark.parametrize("mode", ["process", RAY_MODE])
def test_evaluate_in_worker_mode_equals_thread_mode(mode):
    env_id = _register("class")
    results = {concurrency: evaluate(env_id, "random", split="test", episodes=4, seeds=(0, 1), num_envs=2,
                                     concurrency=concurrency) for concurrency in (mode, "thread")}
    assert results[mode]["episodes"] == results["thread"]["episodes"]
    assert results[mode]["summary"] == results["thread"]["summary"]
    oracle = evaluate(env_id, "oracle", split="test", episodes=4, seeds=(0,), num_envs=2, concurrency=mode)
    assert oracle["summary"]["success_rate"]["mean"] == 1.0


@pytest.mark.parametrize("kind", ["class", "factory", "string"])
def test_check_env_passes_on_the_user_env(kind):
    agentgym.check_env(_register(kind))


def test_max_turns_of_a_user_env():
    class_id, factory_id = _register("class"), _register("factory")
    assert registry.max_turns(class_id) == 6  # the class attribute
    assert registry.max_turns(_register("string")) == 6  # imported from "module:Class", not instantiated
    assert registry.max_turns(_register("local class")) == 4
    assert registry.max_turns(factory_id) == 6  # a factory: made once
    assert registry.max_turns(class_id, {"max_turns": 3}) == 3
    agentgym.register("usertest/Guess-kwargs-v0", GuessEnv, kwargs={"max_turns": 9},
                      splits=tuple(SPLIT_OFFSETS))
    assert registry.max_turns("usertest/Guess-kwargs-v0") == 9
    agentgym.register("usertest/Guess-spec-v0", small_guess, max_turns=7, splits=tuple(SPLIT_OFFSETS))
    assert registry.max_turns("usertest/Guess-spec-v0") == 7
    env = agentgym.make("usertest/Guess-spec-v0")
    assert env.unwrapped.max_turns == 7  # the env runs with the budget its spec declares
    env.close()
    assert registry.max_turns("usertest/Guess-spec-v0", {"max_turns": 2}) == 2

    class Longer(GuessEnv):  # a budget that depends on a constructor argument: says so in turn_budget
        @classmethod
        def turn_budget(cls, max_turns=None, *, rounds: int = 1, **kwargs) -> int:
            return int(max_turns or 5 + rounds)

        def __init__(self, split: str = "train", *, rounds: int = 1, max_turns=None):
            super().__init__(split, max_turns=self.turn_budget(max_turns, rounds=rounds))

    agentgym.register("usertest/Guess-longer-v0", Longer, kwargs={"rounds": 6}, splits=tuple(SPLIT_OFFSETS))
    assert registry.max_turns("usertest/Guess-longer-v0") == 11
    assert registry.max_turns("usertest/Guess-longer-v0", {"rounds": 2}) == 7
    env = agentgym.make("usertest/Guess-longer-v0", rounds=2)
    assert env.unwrapped.max_turns == 7
    env.close()


SCRIPT = """
import agentgym
from agentgym.contract import Frame, Task, TextEnv
from agentgym.policies import make_policy
from agentgym.rollout import RolloutEngine

class Countdown(TextEnv):  # defined in __main__, which a worker process cannot import
    splits = ("train", "test")

    def load_tasks(self, split):
        return [Task(f"{split}-{n}", split, "Count down to zero.", {"n": n + (10 if split == "test" else 0)})
                for n in range(1, 4)]

    def _state(self):
        done = self._n == 0
        return Frame(str(self._n), () if done else ("down", "wait"), str(self._n), float(done), done, done)

    def _start(self, task):
        self._n = task.payload["n"] % 4 + 1
        return self._state()

    def _act(self, action):
        self._n -= action == "down"
        return self._state()

agentgym.register("script/Countdown-v0", Countdown, splits=("train", "test"), concurrency="process")
runs = []
for mode in ("{mode}", "thread"):
    with RolloutEngine("script/Countdown-v0", "train", num_envs=2, concurrency=mode) as engine:
        plan = engine.plan(num_tasks=3, group_size=2, seed=1, run_id="same")
        trajectories = engine.run(make_policy("random", seed=1), plan)
        runs.append([[turn.action for turn in t.turns] for t in trajectories])
assert runs[0] == runs[1] and any(runs[0]), runs
print("ok")
"""


@pytest.mark.parametrize("mode", WORKER_MODES)
def test_a_class_defined_in_a_users_main_script_runs_in_workers(mode):
    script = textwrap.dedent(SCRIPT).replace("{mode}", mode)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
