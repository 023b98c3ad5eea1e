"""Training end to end on the tiny model: learning happens, runs resume after a kill, configs are checked."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import json
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from agentgym.cli import main, read_config
from agentgym.rollout import RolloutEngine
from agentgym.trainers import loop
from agentgym.trainers.config import RunConfig, make_config
from agentgym.trainers.epo import EntropySmoothing, EPOConfig
from agentgym.trainers.grpo import GRPOConfig, train
from agentgym.trainers.model import build_policy

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Level-1 coin games with one turn: the agent wins only by picking "take coin" among four actions.
# The random tiny model prefers short actions (each token costs ~11 nats), so a high choice
# temperature lets it sample the winning action at all.
ONE_TURN_COIN = dict(
    env_id="agentgym/TextWorld-CoinCollector-v0", env_kwargs={"max_turns": 1}, task_filter="level1-",
    eval_split="dev", model="tiny", lora_rank=0, choice_temperature=8.0, tasks_per_iteration=4, group_size=4,
    num_envs=4, lr=0.02, eval_every=0, eval_episodes=10, seed=0,
)


def test_grpo_learns_on_the_tiny_model(tmp_path):
    result = train(GRPOConfig(**ONE_TURN_COIN, iterations=15, output_dir=str(tmp_path)), progress=False)
    assert result["before"]["eval_success_rate"] <= 0.2
    assert result["after"]["eval_success_rate"] >= 0.8
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "train_success_rate" in r]
    assert sum(r["train_success_rate"] for r in train_rows[-3:]) > sum(r["train_success_rate"] for r in train_rows[:3])
    for name in ("report.md", "learning_curves.png", "checkpoint.pt", "final/config.json"):
        assert (tmp_path / name).exists(), name
    report = (tmp_path / "report.md").read_text()
    assert "| before |" in report and "| after |" in report and "learning_curves.png" in report


def test_epo_runs_and_keeps_a_per_turn_entropy_history(tmp_path):
    config = EPOConfig(**{**ONE_TURN_COIN, "env_kwargs": {"max_turns": 2}}, iterations=2, output_dir=str(tmp_path))
    regulariser = EntropySmoothing(config)
    result = loop.train(regulariser, progress=False)
    assert len(regulariser.history) == 2 and len(regulariser.history[0]) == 2
    assert regulariser.turn_means()[0] > 0
    assert any("smooth_penalty" in row for row in result["rows"])


def _write_config(path, **overrides):
    settings = {"trainer": "grpo", **ONE_TURN_COIN, **overrides}
    path.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in settings.items()))
    return path


def test_killed_run_resumes_where_it_stopped(tmp_path):
    config = _write_config(tmp_path / "run.yaml", iterations=6, output_dir=str(tmp_path / "run"))
    command = [sys.executable, "-m", "agentgym.cli", "train", str(config)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if checkpoint.exists() and torch.load(checkpoint, weights_only=False)["iteration"] >= 3:
            break
        time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    stopped_at = torch.load(checkpoint, weights_only=False)["iteration"]
    assert 3 <= stopped_at < 6
    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    iterations = [r["iteration"] for r in rows if "train_success_rate" in r]
    assert iterations == [1, 2, 3, 4, 5, 6]  # the curve continues, nothing repeated or lost
    assert torch.load(checkpoint, weights_only=False)["iteration"] == 6


def test_missing_or_corrupt_checkpoint_is_a_clear_error(tmp_path, capsys):
    config = _write_config(tmp_path / "run.yaml", iterations=1, output_dir=str(tmp_path / "run"))
    assert main(["train", str(config), "--resume"]) == 2
    assert "No checkpoint at" in capsys.readouterr().err
    (tmp_path / "run").mkdir(exist_ok=True)
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert main(["train", str(config), "--resume"]) == 2
    assert "is corrupt or incomplete" in capsys.readouterr().err


def test_config_from_yaml_and_overrides():
    config = make_config(GRPOConfig, {"iterations": 3, "lr": "1e-5"}, ["lr=2e-4", "env_kwargs={max_turns: 4}",
                                                                            "dual_clip=null"])
    assert config.iterations == 3 and config.lr == pytest.approx(2e-4) and isinstance(config.lr, float)
    assert config.env_kwargs == {"max_turns": 4} and config.dual_clip is None
    with pytest.raises(ValueError, match="Unknown setting.*'learning_rate'.*known: .*lr"):
        make_config(GRPOConfig, {}, ["learning_rate=1"])


def test_a_config_key_set_twice_is_an_error(tmp_path):
    config = tmp_path / "twice.yaml"
    config.write_text("trainer: grpo\nnum_envs: 6\nlr: 1.0e-4\nnum_envs: 4\n")
    with pytest.raises(ValueError, match="line 4: the key 'num_envs' is set twice"):
        read_config(config)


@pytest.mark.parametrize("path", sorted(ROOT.glob("configs/*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    """Every config parses with its trainer's documented settings (unknown keys are an error)."""
    from agentgym.trainers.pipeline import stages_of

    trainers = {ep.name: ep for ep in importlib.metadata.entry_points(group="agentgym.trainers")}
    settings = read_config(path)  # also rejects a key set twice
    name = settings.pop("trainer")
    stages = stages_of(settings)[1] if name == "pipeline" else [(name, settings)]
    for stage, values in stages:
        config_class = importlib.import_module(trainers[stage].module).CONFIG
        config = make_config(config_class, values)
        assert (getattr(config, "iterations", 0) or config.epochs) > 0


def test_dapo_dynamic_sampling_keeps_only_informative_groups(tmp_path):
    config = GRPOConfig(**{**ONE_TURN_COIN, "dynamic_sampling": True, "max_sampling_rounds": 3, "lr": 0.0},
                        iterations=2, output_dir=str(tmp_path))
    result = train(config, progress=False)
    rows = [row for row in result["rows"] if "train_groups_kept" in row]
    assert len(rows) == 2
    for row in rows:
        # One turn per episode: only the kept groups' episodes become samples.
        assert row.get("samples", 0) == row["train_groups_kept"] * config.group_size
    assert any(row["train_groups_kept"] > 0 for row in rows)


def test_eval_temperature_zero_evaluates_greedily_then_restores_the_training_temperatures():
    # Held-out replies at eval_temperature (0: greedy) while training keeps sampling at its own. The tiny
    # model at choice temperature 8 picks almost uniformly among the four actions, so two sampled plays
    # of the same games differ; two greedy ones agree.
    config = RunConfig(**ONE_TURN_COIN)
    policy = build_policy(config)
    with RolloutEngine(config.env_id, config.eval_split, num_envs=4, env_kwargs=config.env_kwargs) as engine:
        games = sorted(engine.tasks)[:8]

        def actions() -> list[str]:
            return [t.turns[0].action for t in engine.run(policy, engine.plan(task_ids=games, seed=0))]

        with policy.at_temperature(0.0):
            greedy = [actions(), actions()]
            assert policy.choice_temperature == 0.0 and policy.sampling.temperature == 0.0
        sampled = [actions(), actions()]
    assert greedy[0] == greedy[1] and sampled[0] != sampled[1]
    assert policy.choice_temperature == 8.0 and policy.sampling.temperature == 1.0
    with pytest.raises(ValueError, match="eval_temperature"):
        RunConfig(eval_temperature=-1.0)


def test_progress_line_says_when_an_iteration_made_no_update():
    # DAPO can keep no group in an iteration: the line says there was no update, not "loss nan".
    algorithm = loop.Algorithm(GRPOConfig())
    trained = algorithm.progress({"train_success_rate": 0.5, "train_mean_reward": 0.5, "loss": -0.25, "entropy": 0.7})
    assert trained == "success 0.50 reward 0.50 loss -0.2500 entropy 0.700"
    skipped = algorithm.progress({"train_success_rate": 1.0, "train_mean_reward": 1.0})
    assert "no update" in skipped and "nan" not in skipped
    # Every advantage zero: the optimizer stepped on zero gradients without the passes, so no entropy.
    silent = algorithm.progress({"train_success_rate": 1.0, "train_mean_reward": 1.0, "loss": 0.0,
                                 "passes_skipped": 1.0})
    assert "passes skipped" in silent and "nan" not in silent


def test_max_episodes_caps_the_rollout_budget_counting_dropped_groups(tmp_path):
    # DAPO plays extra rounds when groups saturate; an equal-budget run stops once the episodes it
    # played (kept or dropped) reach max_episodes — its extra rounds stop there too — and the report says
    # how many iterations it trained.
    config = GRPOConfig(**{**ONE_TURN_COIN, "dynamic_sampling": True, "max_sampling_rounds": 3, "lr": 0.0,
                           "eval_every": 1}, iterations=3, max_episodes=16, output_dir=str(tmp_path))
    result = train(config, progress=False)
    trained = [row for row in result["rows"] if "train_episodes" in row]
    assert len(trained) == 1  # the first round played all 16 episodes: no extra round, no second iteration
    assert trained[0]["episodes_played"] == trained[0]["train_episodes"] == 16
    assert trained[0]["train_episodes"] >= trained[0]["train_groups_kept"] * config.group_size
    assert result["rows"][-1]["iteration"] == 1 and "eval_success_rate" in result["rows"][-1]
    # the budget's last iteration is evaluated once, as the run's `after`, not also as an eval_every point
    assert ["eval_success_rate" in row for row in result["rows"] if row["iteration"] == 1].count(True) == 1
    assert "; 1 iterations of" in (tmp_path / "report.md").read_text()


def test_eval_before_false_skips_the_evaluation_before_training(tmp_path):
    # Runs that share one start (a multi-algorithm comparison) evaluate it once, elsewhere: the run then
    # plays no held-out episode before training, and its report and result say so.
    config = GRPOConfig(**ONE_TURN_COIN, iterations=1, eval_before=False, output_dir=str(tmp_path))
    result = train(config, progress=False)
    assert result["before"] == {}
    assert [row["iteration"] for row in result["rows"] if "eval_success_rate" in row] == [1]
    report = (tmp_path / "report.md").read_text()
    assert "not evaluated before" in report and "| before |" not in report and "| after |" in report


def test_zero_advantage_share_counts_groups_whose_every_turn_has_zero_advantage():
    from agentgym.contract import Task
    from agentgym.records import Trajectory, Turn

    def episode(group: str, advantages: list[float | None]) -> Trajectory:
        turns = [Turn("e", group, "t", i, [], "a", "a", 0.0, False, False, False, "s", "s2", advantage=a)
                 for i, a in enumerate(advantages)]
        return Trajectory("e", group, "env", "train", Task("t", "train", "x"), 0, turns)

    batch = [episode("silent", [0.0, 0.0]), episode("silent", [0.0]), episode("mixed", [0.0, 0.5]),
             episode("mixed", [0.0]), episode("negative", [-0.2])]
    assert loop.zero_advantage_share(batch) == pytest.approx(1 / 3)
    assert loop.zero_advantage_share([episode("data", [None, None])]) is None


def test_informative_groups_drops_saturated_groups():
    from agentgym.contract import Task
    from agentgym.records import Trajectory, Turn
    from agentgym.trainers.grpo import informative_groups

    def episode(group: str, name: str, reward: float) -> Trajectory:
        turn = Turn(name, group, "t", 0, [], "a", "a", reward, True, False, False, "s", "s2")
        return Trajectory(name, group, "env", "train", Task("t", "train", "x"), 0, [turn])

    batch = [episode("mixed", "m1", 1.0), episode("mixed", "m2", 0.0), episode("won", "w1", 1.0),
             episode("won", "w2", 1.0), episode("lost", "l1", 0.0)]
    assert [t.episode_id for t in informative_groups(batch)] == ["m1", "m2"]


@pytest.mark.parametrize("trainer", ["grpo", "epo", "ppo", "sft", "pointer", "igpo", "gui_rcpo"])
def test_every_setting_is_documented_and_configs_hold_only_their_algorithms(trainer, capsys):
    import importlib

    from agentgym.trainers.config import setting_help

    config_class = importlib.import_module(f"agentgym.trainers.{trainer}").CONFIG
    helps = setting_help(config_class)
    undocumented = [f.name for f in dataclasses.fields(config_class) if not helps.get(f.name, ("", ""))[1]]
    assert not undocumented, f"{config_class.__name__}: settings without a meaning: {undocumented}"
    assert main(["train", "--help-config", trainer]) == 0
    printed = capsys.readouterr().out
    assert all(f"  {f.name} = " in printed for f in dataclasses.fields(config_class))
    # No algorithm's config carries another algorithm's settings (PPO once inherited GRPO's).
    names = {f.name for f in dataclasses.fields(config_class)}
    foreign = {"ppo": {"norm_by_std", "step_weight", "dynamic_sampling", "smooth_coef"},
               "grpo": {"vf_coef", "gae_lambda", "smooth_coef", "rejection_sampling"},
               "sft": {"clip_low", "kl_coef", "norm_by_std", "vf_coef"}}.get(trainer, set())
    assert not names & foreign, names & foreign


def test_loss_settings_are_built_by_name():
    from agentgym.trainers.update import LossSettings

    settings = LossSettings.of(GRPOConfig(clip_high=0.3, dual_clip=None, kl_coef=0.02))
    assert (settings.clip_high, settings.dual_clip, settings.kl_coef) == (0.3, None, 0.02)
    with pytest.raises(TypeError):
        LossSettings(0.2, 0.28)  # keyword-only: a reordered field can never swap two settings


@pytest.mark.parametrize("label", ["pass 1/2", ""])
def test_optimise_shows_a_progress_bar_over_optimizer_steps_when_labelled(capsys, label):
    from types import SimpleNamespace

    from agentgym.trainers import update
    from agentgym.trainers.samples import TurnSample

    weight = torch.nn.Parameter(torch.ones(1))
    optimizer = torch.optim.AdamW([weight], lr=0.1)
    samples = [TurnSample([1], [2], [0.0], "text", 0) for _ in range(5)]
    config = SimpleNamespace(epochs=1, minibatch_size=2, micro_batch_size=2, max_grad_norm=1.0)
    update.optimise(samples, lambda micro: ((weight ** 2).sum(), {}), optimizer=optimizer,
                    scheduler=update.cosine_schedule(optimizer, 1, 0.1, 0.2), config=config,
                    rng=np.random.default_rng(0), progress=label)
    shown = capsys.readouterr().err
    assert ("pass 1/2" in shown and "/3" in shown) if label else shown == ""  # 5 samples: 3 steps of 2


def test_a_run_shows_bars_over_its_rollouts_and_held_out_evaluations_only_when_asked(tmp_path, capsys):
    config = GRPOConfig(**{**ONE_TURN_COIN, "eval_episodes": 3}, iterations=1, output_dir=str(tmp_path))
    train(dataclasses.replace(config, output_dir=str(tmp_path / "quiet")), progress=False)
    assert capsys.readouterr().err == ""
    train(config, progress=True)
    shown = capsys.readouterr().err
    assert "rollout" in shown and "16/16" in shown and "turns=16" in shown  # 4 tasks × 4 one-turn episodes
    assert "held-out dev" in shown and "3/3" in shown
