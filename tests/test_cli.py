"""Command line: envs from the user's own modules (--import, module:ENV_ID, a config's imports:), and
errors as one line unless --debug or AGENTGYM_DEBUG=1 asks for the traceback."""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import os
import pathlib
import subprocess
import sys

import gymnasium as gym
import pytest
from test_user_envs import SPLIT_OFFSETS, GuessEnv

import agentgym
from agentgym import cli
from agentgym.contract import Frame

MODULE = """
import agentgym
from agentgym.contract import Frame, Task, TextEnv, state_key

SPLIT_OFFSETS = {offsets!r}


{game}

agentgym.register({env_id!r}, GuessEnv, splits=tuple(SPLIT_OFFSETS), concurrency="process")
"""


def _write_module(folder: pathlib.Path, name: str, env_id: str) -> None:
    """A module that defines the guessing game itself and registers it when imported."""
    text = MODULE.format(offsets=SPLIT_OFFSETS, game=inspect.getsource(GuessEnv), env_id=env_id)
    (folder / f"{name}.py").write_text(text)


def test_eval_and_rollout_reach_a_users_module_in_worker_processes(tmp_path):
    modules, work = tmp_path / "modules", tmp_path / "work"
    modules.mkdir(), work.mkdir()
    _write_module(modules, "guessmod", "cliuser/Guess-v0")
    # --import, with the module on PYTHONPATH, through cli.main in a fresh interpreter.
    code = "import sys; from agentgym.cli import main; sys.exit(main(sys.argv[1:]))"
    evaluated = subprocess.run(
        [sys.executable, "-c", code, "eval", "cliuser/Guess-v0", "--import", "guessmod", "--policy", "oracle",
         "--episodes", "3", "--seeds", "0", "--num-envs", "2", "--out", "results"],
        cwd=work, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONPATH": str(modules)})
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    result = json.loads((work / "results" / "cliuser_Guess-v0-test-oracle.json").read_text())
    assert result["summary"]["success_rate"]["mean"] == 1.0 and len(result["episodes"]) == 3
    # module:ENV_ID, with the module in the working folder, through the installed console script.
    script = pathlib.Path(sys.executable).with_name("agentgym")
    rolled = subprocess.run([str(script), "rollout", "guessmod:cliuser/Guess-v0", "--episodes", "2",
                             "--num-envs", "2", "--out", "out.jsonl"],
                            cwd=modules, capture_output=True, text=True, timeout=300, check=False)
    assert rolled.returncode == 0, rolled.stderr[-3000:]
    assert len(list(agentgym.read_jsonl(modules / "out.jsonl"))) == 2


def test_train_imports_the_configs_modules_and_hides_the_key_from_the_trainer(tmp_path, monkeypatch, capsys):
    _write_module(tmp_path, "guessmod_train", "cliuser/GuessTrain-v0")
    config = "trainer: fake\nimports: [guessmod_train]\nenv_id: cliuser/GuessTrain-v0\n"
    (tmp_path / "run.yaml").write_text(config)
    seen = {}

    class FakeTrainer:
        name = "fake"

        def load(self):
            def train(settings, overrides):
                seen.update(settings)
                report = tmp_path / "report.md"
                report.write_text(f"max turns {agentgym.registry.max_turns(settings['env_id'])}")
                return {"report": str(report)}

            return train

    installed = importlib.metadata.entry_points
    def entry_points(group):
        return [FakeTrainer()] if group == "agentgym.trainers" else installed(group=group)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    monkeypatch.syspath_prepend(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "run.yaml"]) == 0
    assert seen == {"env_id": "cliuser/GuessTrain-v0"}
    assert capsys.readouterr().out.strip() == "max turns 6"


def test_errors_are_one_line_with_a_hint_and_debug_gives_the_traceback(monkeypatch, capsys):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    assert cli.main(["eval", "nosuch/Env-v0"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    assert "No agentgym env 'nosuch/Env-v0'" in error and "--debug or AGENTGYM_DEBUG=1" in error
    for argv in (["--debug", "eval", "nosuch/Env-v0"], ["eval", "nosuch/Env-v0", "--debug"]):
        with pytest.raises(gym.error.NameNotFound):
            cli.main(argv)
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    with pytest.raises(ModuleNotFoundError):
        cli.main(["eval", "nosuch/Env-v0", "--import", "no_such_module_here"])


def test_agentgym_debug_prints_the_traceback_from_the_command_line():
    code = "import sys; from agentgym.cli import main; sys.exit(main(sys.argv[1:]))"
    debug = subprocess.run([sys.executable, "-c", code, "rollout", "nosuch:x/Y-v0", "--out", "x"],
                           capture_output=True, text=True, timeout=120, check=False,
                           env={**os.environ, cli.DEBUG_ENV: "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "ModuleNotFoundError" in debug.stderr


class DriftingGuessEnv(GuessEnv):
    """The guessing game whose feedback counts every guess the process ever made: replays drift."""

    guesses_made = 0

    def _act(self, action: str) -> Frame:
        DriftingGuessEnv.guesses_made += 1
        frame = super()._act(action)
        return Frame(f"{frame.text} (guess #{self.guesses_made})", frame.admissible_actions, frame.state_key,
                     reward=frame.reward, terminated=frame.terminated, won=frame.won)


def test_check_passes_a_contract_env_and_names_the_step_where_a_replay_drifts(capsys):
    agentgym.register("cliuser/GuessCheck-v0", GuessEnv, splits=tuple(SPLIT_OFFSETS))
    agentgym.register("cliuser/GuessDrift-v0", DriftingGuessEnv, splits=tuple(SPLIT_OFFSETS))
    assert cli.main(["check", "cliuser/GuessCheck-v0", "--determinism-steps", "4"]) == 0
    assert "passes check_env" in capsys.readouterr().out
    assert cli.main(["check", "cliuser/GuessDrift-v0", "--determinism-steps", "4"]) == 1
    assert "breaks the contract" in capsys.readouterr().err
