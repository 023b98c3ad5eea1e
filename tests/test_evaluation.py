"""Held-out evaluation: statistics against hand-computed values, result files, CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from agentgym.cli import main
from agentgym.evaluation import (evaluate, markdown_table, mean_std_cell, mean_std_ci, plot_seed_bands, read_results,
                                 write_results)
from agentgym.paths import cached_json

from conftest import COIN, RAY_MODE


def test_mean_std_ci_hand_computed():
    # values 0.5, 0.7, 0.9: mean 0.7; sample std sqrt(((.2)^2*2)/2) = 0.2; t(0.975, 2) = 4.303.
    stats = mean_std_ci([0.5, 0.7, 0.9])
    assert stats["mean"] == pytest.approx(0.7)
    assert stats["std"] == pytest.approx(0.2)
    assert stats["ci95"] == pytest.approx(4.303 * 0.2 / math.sqrt(3))
    single = mean_std_ci([0.4])
    assert single["std"] == 0.0 and math.isnan(single["ci95"])


def test_mean_std_cell_reads_as_the_readme_tables_do():
    assert mean_std_cell([0.5, 0.7, 0.9]) == "70.0% ± 20.0%"
    assert mean_std_cell([0.5, 0.7, 0.9], interval=True) == f"70.0% ± 20.0% (±{4.303 * 0.2 / math.sqrt(3):.1%})"
    assert mean_std_cell([1.0, 3.0], percent=False) == "2.00 ± 1.41"
    assert mean_std_cell([0.25]) == "25.0%"  # one seed: no spread to show


def test_cached_json_computes_a_unit_once_and_reads_it_back(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"success": 0.5}

    path = tmp_path / "unit" / "a.json"
    assert cached_json(path, compute) == {"success": 0.5} == cached_json(path, compute)
    assert len(calls) == 1 and json.loads(path.read_text()) == {"success": 0.5}


def test_plot_seed_bands_writes_a_png(tmp_path):
    path = plot_seed_bands({"GRPO": ([0, 10, 20], [[0.1, 0.4, 0.6], [0.2, 0.3, 0.7]]), "PPO": ([0, 10, 20], [[0.1, 0.2, 0.3]])},
                           tmp_path / "curves.png", xlabel="episodes", ylabel="success", title="t", ylim=(0, 1))
    assert path.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("concurrency", ["auto", RAY_MODE])
def test_evaluate_records_everything_needed_to_reproduce(tmp_path, concurrency):
    result = evaluate(COIN, "random", split="test", episodes=3, seeds=[0, 1], num_envs=2, concurrency=concurrency)
    assert result["env_id"] == COIN and result["split"] == "test" and result["seeds"] == [0, 1]
    assert result["policy"] == {"name": "random"}
    assert result["versions"]["textworld"] == "1.7.0" and result["versions"]["agentgym"]
    assert "git_revision" in result
    assert len(result["episodes"]) == 6 and {e["split"] for e in result["episodes"]} == {"test"}
    per_seed = [row["success_rate"] for row in result["per_seed"]]
    assert result["summary"]["success_rate"]["mean"] == pytest.approx(sum(per_seed) / 2)
    # Different seeds evaluate different samples of the split.
    tasks = [{e["task"]["id"] for e in result["episodes"] if e["episode_id"].startswith(f"seed{s}-")} for s in (0, 1)]
    assert tasks[0] != tasks[1]
    path = write_results(result, tmp_path / "r.json")
    assert read_results(path) == json.loads(json.dumps(result))
    table = markdown_table([result])
    assert table.splitlines()[2].startswith(f"| {COIN} | test | random | 2 × 3 |")


@pytest.mark.parametrize("concurrency", ["auto", RAY_MODE])
def test_cli_eval_and_report(tmp_path, capsys, concurrency):
    code = main(["eval", COIN, "--split", "dev", "--policy", "oracle", "--episodes", "2", "--seeds", "0", "1",
                 "--num-envs", "2", "--concurrency", concurrency, "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "| oracle |" in out and "100.0% ± 0.0" in out
    (path,) = tmp_path.glob("*.json")
    assert main(["report", str(path)]) == 0
    assert "| oracle |" in capsys.readouterr().out


def test_cli_rollout_writes_jsonl(tmp_path):
    out = tmp_path / "records.jsonl"
    assert main(["rollout", COIN, "--split", "dev", "--episodes", "2", "--group-size", "2", "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 4


def test_cli_errors_are_one_clear_line(capsys):
    assert main(["eval", "agentgym/NoSuchEnv-v0"]) == 2
    assert "error: No agentgym env" in capsys.readouterr().err
    assert main(["eval", COIN, "--split", "validation"]) == 2
    assert "no split 'validation'" in capsys.readouterr().err


def test_cli_help_teaches_with_examples():
    output = subprocess.run([sys.executable, "-m", "agentgym.cli", "--help"], capture_output=True, text=True).stdout
    assert "examples:" in output and "agentgym eval" in output and "doctor" in output


def test_cli_play_accepts_numbers_and_text():
    script = "1\ndance\n:q\n"
    result = subprocess.run([sys.executable, "-m", "agentgym.cli", "play", COIN, "--split", "dev", "--seed", "0"],
                            input=script, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Goal:" in result.stdout and "[1]" in result.stdout and "Invalid action: 'dance'" in result.stdout


@pytest.mark.parametrize(("env_id", "script", "expected"), [
    ("agentgym/ScienceWorld-v0", "look around\njuggle\n:q\n", ["Goal: Your task is", "No known action matches"]),
    ("agentgym/TWX-CoinCollector-v0", "3\ndance\n:q\n", ["Goal: Your task is", "[3] look around", "Unknown action"]),
])
def test_cli_play_runs_the_jvm_families(env_id, script, expected):
    result = subprocess.run([sys.executable, "-m", "agentgym.cli", "play", env_id, "--split", "dev", "--seed", "0"],
                            input=script, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert all(text in result.stdout for text in expected), result.stdout[-2000:]


def test_doctor_reports_a_healthy_install():
    result = subprocess.run([sys.executable, "-m", "agentgym.cli", "doctor"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout
    assert "Healthy" in result.stdout and "textworld" in result.stdout


def test_cli_eval_with_the_embedded_model_writes_results_and_valid_action_rate(tmp_path, capsys):
    code = main(["eval", COIN, "--split", "test", "--policy", "embedded", "--episodes", "2", "--seeds", "0",
                 "--num-envs", "2", "--out", str(tmp_path)])
    assert code == 0
    (path,) = tmp_path.glob("*embedded.json")
    result = read_results(path)
    assert result["policy"]["name"] == "embedded" and result["policy"]["mode"] == "auto"
    turns = [turn for episode in result["episodes"] for turn in episode["turns"]]
    # Choice mode: every action is admissible and carries its choice probability and token log-probs.
    assert result["summary"]["invalid_rate"]["mean"] == 0.0
    assert all(t["action_mode"] == "choice" and t["choice_logprob"] <= 0 and t["action_logprobs"] for t in turns)
    assert "| embedded |" in capsys.readouterr().out
