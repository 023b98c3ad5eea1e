"""Behaviour cloning, rejection sampling and pipelines on the tiny model: the loss covers exactly the
action tokens, collect → train → eval round-trips, rejection sampling keeps exactly what it should."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from agentgym.cli import main
from agentgym.hf_policy import HFPolicy
from agentgym.policies import OraclePolicy
from agentgym.prompting import PromptTemplate
from agentgym.records import Trajectory, Turn, read_jsonl
from agentgym.rollout import RolloutEngine
from agentgym.contract import Task
from agentgym.trainers.logprobs import sample_logprobs
from agentgym.trainers.losses import aggregate
from agentgym.trainers.sft import SFTConfig, rejection_filter, train, training_samples

COIN = "agentgym/TextWorld-CoinCollector-v0"
TINY_BC = dict(env_id=COIN, env_kwargs={"max_turns": 4}, task_filter="level2-", model="tiny", lora_rank=0, mode="generate", lr=1e-3,
               max_new_tokens=6, eval_split="dev", eval_episodes=4, num_envs=2, seed=0)


def _expert(style: str, episodes: int = 2) -> list[Trajectory]:
    with RolloutEngine(COIN, "train", num_envs=2, template=PromptTemplate(style=style, history_window=1)) as engine:
        ids = [task for task in engine.tasks if "level2-" in task][:episodes]
        return engine.run(OraclePolicy(), engine.plan(task_ids=ids, seed=0))


@pytest.mark.parametrize("layout", ["per-turn", "episode"])
def test_sft_loss_covers_exactly_the_action_tokens(layout):
    policy = HFPolicy("tiny", mode="generate", seed=0)
    trajectories = _expert("chat" if layout == "episode" else "summary")
    config = SFTConfig(model="tiny", mode="generate", layout=layout,
                       prompt_style="chat" if layout == "episode" else "summary")
    samples = training_samples(trajectories, policy, config)
    actions = [turn.action for t in trajectories for turn in t.turns]
    assert len(samples) == (len(trajectories) if layout == "episode" else len(actions))
    # Token by token: the tokens in the loss are the actions' reply tokens (text, then end-of-turn),
    # and nothing of the prompt or of the environment's text.
    in_loss = [token for s in samples for token, m in zip(s.response_ids, s.loss_mask or [1] * len(s.response_ids))
               if m]
    assert in_loss == [token for action in actions for token in policy.reply_ids(action)]
    # The loss equals the mean negative log-likelihood of exactly those tokens under a plain forward pass.
    logprobs, _, mask = sample_logprobs(policy, samples, temperature=1.0, choice_temperature=1.0, grad=False)
    loss = -aggregate(logprobs, mask, "token-mean")
    expected = []
    for sample in samples:
        ids = torch.tensor([sample.prompt_ids + sample.response_ids])
        with torch.no_grad():
            log_p = F.log_softmax(policy.model(input_ids=ids).logits[0].float(), dim=-1)
        for i, (token, m) in enumerate(zip(sample.response_ids, sample.loss_mask or [1] * len(sample.response_ids))):
            if m:
                expected.append(float(log_p[len(sample.prompt_ids) + i - 1, token]))
    assert float(loss) == pytest.approx(-sum(expected) / len(expected), rel=1e-4)


def test_choice_mode_clones_the_choice_distribution():
    policy = HFPolicy("tiny", mode="choice", seed=0)
    trajectories = _expert("summary")
    samples = training_samples(trajectories, policy, SFTConfig(model="tiny", mode="choice"))
    turns = [turn for t in trajectories for turn in t.turns]
    assert [s.candidates[s.chosen] for s in samples] == [policy.reply_ids(t.action) for t in turns]
    logprobs, _, mask = sample_logprobs(policy, samples, temperature=1.0, choice_temperature=1.0, grad=False)
    assert mask.sum() == len(samples) and (logprobs[:, 0] <= 0).all()


def _trajectory(reward: float, name: str) -> Trajectory:
    turn = Turn(episode_id=name, group_id="g", task_id="t", turn_index=0, prompt=[], response="", action="a",
                reward=reward, terminated=True, truncated=False, invalid=False, state_key="s", next_state_key="s")
    return Trajectory(episode_id=name, group_id="g", env_id=COIN, split="train", task=Task("t", "train", "Win."), seed=0,
                      turns=[turn])


def test_rejection_sampling_keeps_exactly_the_trajectories_at_or_above_the_threshold():
    batch = [_trajectory(r, f"e{i}") for i, r in enumerate([0.0, 0.5, 1.0, 0.99, 1.0])]
    assert [t.episode_id for t in rejection_filter(batch, 1.0)] == ["e2", "e4"]
    assert [t.episode_id for t in rejection_filter(batch, 0.5)] == ["e1", "e2", "e3", "e4"]


def test_rejection_sampling_rounds_grow_the_pool_with_the_kept_episodes(tmp_path):
    config = SFTConfig(**{**TINY_BC, "mode": "choice"}, choice_temperature=8.0, rejection_sampling=True,
                       iterations=2, tasks_per_iteration=2, group_size=2, output_dir=str(tmp_path))
    rows = train(config, progress=False)["rows"]
    rounds = [row for row in rows if "kept_trajectories" in row]
    assert len(rounds) == 2
    pool = 0
    for row in rounds:
        assert row["kept_trajectories"] == round(row["train_success_rate"] * 4)  # binary rewards: winners
        pool += row["kept_trajectories"]
        assert row["trajectories"] == pool


def test_collect_then_behaviour_cloning_then_eval(tmp_path, capsys):
    data = tmp_path / "expert.jsonl"
    assert main(["collect", COIN, "--episodes", "6", "--history-window", "2", "--won-only", "--num-envs", "2",
                 "--out", str(data)]) == 0
    trajectories = list(read_jsonl(data))
    assert len(trajectories) == 6 and all(t.won for t in trajectories)
    datasets = pytest.importorskip("datasets")
    rows = datasets.load_dataset("json", data_files=str(data), split="train")
    assert len(rows) == 6 and rows[0]["turns"][0]["action"] == trajectories[0].turns[0].action

    config = tmp_path / "bc.yaml"
    settings = {"trainer": "sft", **TINY_BC, "task_filter": "", "data": [str(data)], "iterations": 3,
                "output_dir": str(tmp_path / "run")}
    config.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in settings.items()))
    assert main(["train", str(config)]) == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in rows if "loss" in row]
    assert len(losses) == 3 and losses[-1] < losses[0]  # the expert's actions became likelier
    report = (tmp_path / "run" / "report.md").read_text()
    assert "behaviour cloning on 6 expert trajectories" in report and "| after |" in report


def test_pipeline_runs_stages_in_order_and_resumes(tmp_path):
    config = tmp_path / "pipeline.yaml"
    shared = {**TINY_BC, "mode": "choice", "choice_temperature": 8.0}
    config.write_text(json.dumps({
        "trainer": "pipeline", "output_dir": str(tmp_path / "run"), "shared": shared,
        "stages": [{"trainer": "sft", "iterations": 1, "collect_episodes": 4},
                   {"trainer": "grpo", "iterations": 1, "tasks_per_iteration": 2, "group_size": 2,
                    "eval_before": False}],
    }))
    assert main(["train", str(config)]) == 0
    report = (tmp_path / "run" / "report.md").read_text()
    first = json.loads((tmp_path / "run" / "1-sft" / "result.json").read_text())["after"]["eval_success_rate"]
    # the RL stage skipped re-evaluating its start: the report shows the clone's after, measured alike
    assert "| 1 | sft |" in report and f"| 2 | grpo | {first:.1%} (stage 1's after) |" in report
    second = json.loads((tmp_path / "run" / "2-grpo" / "result.json").read_text())
    # The RL stage started from the cloned weights: it trained a full copy saved by stage 1.
    assert (tmp_path / "run" / "1-sft" / "final" / "config.json").exists()
    stamp = (tmp_path / "run" / "2-grpo" / "metrics.jsonl").stat().st_mtime
    assert main(["train", str(config), "--resume"]) == 0  # both stages finished: nothing reruns
    assert (tmp_path / "run" / "2-grpo" / "metrics.jsonl").stat().st_mtime == stamp
    assert json.loads((tmp_path / "run" / "2-grpo" / "result.json").read_text()) == second
