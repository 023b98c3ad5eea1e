"""The concatenated-episode layout, the KL reference policy and PPO's value head, on the tiny model."""

from __future__ import annotations

import pytest
import torch

from agentgym.hf_policy import HFPolicy
from agentgym.prompting import HistoryItem, PromptTemplate
from agentgym.rollout import RolloutEngine
from agentgym.trainers.grpo import GRPOConfig, train
from agentgym.trainers.logprobs import pad_rows, sample_logprobs
from agentgym.trainers.model import build_policy
from agentgym.trainers.ppo import PPOConfig
from agentgym.trainers.ppo import train as train_ppo
from agentgym.trainers.samples import episode_samples

from test_training import ONE_TURN_COIN

COIN = "agentgym/TextWorld-CoinCollector-v0"


def _chat_rollout(policy, group_size=2, max_turns=4):
    with RolloutEngine(COIN, "train", num_envs=2, template=PromptTemplate(style="chat"),
                       env_kwargs={"max_turns": max_turns}) as engine:
        ids = [task for task in engine.tasks if "level2-" in task][:2]
        return engine.run(policy, engine.plan(task_ids=ids, group_size=group_size, seed=0))


def test_chat_prompts_extend_each_other():
    template = PromptTemplate(style="chat")
    first = template.build("Find the coin.", "A room.", ["go east", "look"])
    history = [HistoryItem("go east", "A kitchen.", reply="go east", seen="A room.", seen_actions=("go east", "look"))]
    second = template.build("Find the coin.", "A kitchen.", ["take coin"], history)
    assert second[: len(first)] == first
    assert second[len(first)] == {"role": "assistant", "content": "go east"}
    assert "take coin" in second[-1]["content"] and "Task:" not in second[-1]["content"]


def test_episode_layout_rebuilds_each_dialogue_with_the_rollout_logprobs():
    policy = HFPolicy("tiny", mode="generate", max_new_tokens=8, seed=0)
    trajectories = _chat_rollout(policy)
    turns = [turn for trajectory in trajectories for turn in trajectory.turns]
    samples = episode_samples(trajectories, list(range(len(turns))))
    assert len(samples) < len(turns)  # whole dialogues, not one sample per turn
    assert sum(sum(s.loss_mask) for s in samples) == sum(len(t.action_token_ids) for t in turns)
    # Every action keeps its own turn's advantage; observation tokens get none.
    masked_advantages = [a for s in samples for a, m in zip(s.token_advantages, s.loss_mask) if m]
    assert masked_advantages == [float(i) for i, t in enumerate(turns) for _ in t.action_token_ids]
    assert all(a == 0 for s in samples for a, m in zip(s.token_advantages, s.loss_mask) if not m)
    # The policy's log-probs over the concatenated sequence are those it sampled with: each turn's
    # context is exactly the dialogue before it.
    logprobs, _, mask = sample_logprobs(policy, samples, temperature=1.0, choice_temperature=1.0, grad=False)
    old, _ = pad_rows([torch.tensor(s.old_logprobs) for s in samples])
    assert mask.sum() == sum(len(t.action_token_ids) for t in turns)
    assert torch.allclose(logprobs * mask, old * mask, atol=1e-4)


def test_windowed_prompts_fall_back_to_one_sequence_per_turn():
    policy = HFPolicy("tiny", mode="generate", max_new_tokens=4, seed=0)
    with RolloutEngine(COIN, "train", num_envs=1, template=PromptTemplate(history_window=0),
                       env_kwargs={"max_turns": 3}) as engine:
        trajectories = engine.run(policy, engine.plan(task_ids=[next(iter(engine.tasks))], seed=0))
    turns = trajectories[0].turns
    assert len(episode_samples(trajectories, [0.0] * len(turns))) == len(turns)


@pytest.mark.parametrize("lora_rank", [0, 4])
def test_reference_policy_is_the_starting_model(lora_rank):
    config = GRPOConfig(model="tiny", lora_rank=lora_rank, mode="generate")
    policy = build_policy(config)
    policy.keep_reference()
    copies = sum(isinstance(value, torch.nn.Module) for value in vars(policy).values())
    assert copies == (1 if lora_rank > 0 else 2)  # LoRA needs no second copy of the model
    prompts, replies = [[1, 2, 3, 4, 5]], [[[6, 7, 8]]]
    before = policy.token_logprobs(prompts, replies)[0][0][0]
    with torch.no_grad():
        for parameter in policy.model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.05 * torch.randn_like(parameter))
    policy.weights_changed()
    after = policy.token_logprobs(prompts, replies)[0][0][0]
    with policy.as_reference():
        as_reference = policy.token_logprobs(prompts, replies)[0][0][0]
    assert not torch.allclose(before, after, atol=1e-4)
    assert torch.allclose(before, as_reference, atol=1e-6)
    assert torch.allclose(policy.token_logprobs(prompts, replies)[0][0][0], after, atol=1e-6)


def test_full_fine_tuning_with_kl_to_the_reference(tmp_path):
    config = GRPOConfig(**ONE_TURN_COIN, iterations=2, epochs=2, minibatch_size=8, kl_coef=0.1,
                        output_dir=str(tmp_path))
    rows = train(config, progress=False)["rows"]
    kls = [row["kl"] for row in rows if "kl" in row]
    assert len(kls) == 2 and kls[0] >= 0 and kls[-1] > 0  # the policy moves away from the reference


def test_episode_layout_trains(tmp_path):
    config = GRPOConfig(**{**ONE_TURN_COIN, "env_kwargs": {"max_turns": 3}}, mode="generate", max_new_tokens=6,
                        prompt_style="chat", layout="episode", iterations=2, output_dir=str(tmp_path))
    rows = train(config, progress=False)["rows"]
    updates = [row for row in rows if "samples" in row]
    assert len(updates) == 2 and all(row["samples"] < 16 * 3 for row in updates)
    with pytest.raises(ValueError, match="prompt_style=chat"):
        train(GRPOConfig(**ONE_TURN_COIN, layout="episode", output_dir=str(tmp_path / "bad")), progress=False)


def test_ppo_with_a_value_head_learns(tmp_path):
    config = PPOConfig(**ONE_TURN_COIN, iterations=15, value_lr=0.01, output_dir=str(tmp_path))
    result = train_ppo(config, progress=False)
    assert result["before"]["eval_success_rate"] <= 0.2
    assert result["after"]["eval_success_rate"] >= 0.8
    # The value head tracks the expected return (here: the success rate) as the policy improves.
    rows = [row for row in result["rows"] if "value_mean" in row]
    assert rows[0]["value_mean"] == 0.0
    assert all(abs(row["value_mean"] - row["train_success_rate"]) < 0.3 for row in rows[-3:])
    assert "head" in torch.load(tmp_path / "checkpoint.pt", weights_only=False)["algorithm"]
