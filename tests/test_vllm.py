"""vLLM as the rollout sampler (marker ``vllm``; they run where vLLM is installed: its venv at
``~/.cache/agentgym/vllm-venv``, ``$AGENTGYM_VLLM_PYTHON``, or this interpreter).

On the embedded model, fp32 on CPU: the log-probs the trainer recomputes on vLLM's own token ids match
vLLM's (free generation, and choice mode through prompt log-probs); after a weight sync vLLM samples from
the new weights; one GRPO run trains on vLLM's rollouts and records each turn's policy version.
"""

from __future__ import annotations

import json

import pytest
import torch

from agentgym.hf_policy import HFPolicy
from agentgym.policies import PolicyRequest
from agentgym.vllm_policy import VLLMPolicy, vllm_python

from test_training import ONE_TURN_COIN

try:
    vllm_python()
except ModuleNotFoundError:
    pytest.skip("vLLM is not installed (see docs/scale-out.md)", allow_module_level=True)

pytestmark = pytest.mark.vllm
TOLERANCE = 2e-3  # nats per token: two fp32 implementations (vLLM's CPU kernels and transformers')

PROMPTS = [
    [{"role": "system", "content": "You play a text game. Reply with one command."},
     {"role": "user", "content": "You are in a kitchen. There is a coin on the table. What do you do?"}],
    [{"role": "user", "content": "Name the capital of France in one word."}],
    [{"role": "user", "content": "Write one short sentence about a cat."}],
]


EAGER = "--enforce-eager"  # no compilation: the server starts in about a minute on a CPU instead of several


@pytest.fixture(scope="module")
def engines():
    sampler = VLLMPolicy("embedded", mode="generate", temperature=1.0, max_new_tokens=12, seed=0,
                         server_args=[EAGER])
    reference = HFPolicy("embedded", mode="choice")
    yield sampler, reference
    sampler.close()


def _recomputed(reference: HFPolicy, generations) -> list[list[float]]:
    logps, _ = reference.score_ids([g.prompt_token_ids for g in generations], [[g.token_ids] for g in generations])
    return [group[0] for group in logps]


def test_trainer_log_probs_on_vllm_token_ids_match_vllm(engines):
    sampler, reference = engines
    generations = sampler.act([PolicyRequest(messages) for messages in PROMPTS])
    for messages, generation in zip(PROMPTS, generations):
        assert generation.prompt_token_ids == reference.prompt_ids(messages)  # the ids vLLM was given
        assert len(generation.token_ids) == len(generation.logprobs) > 0
        assert generation.extra["policy_version"] == 0
    differences = [abs(a - b) for g, again in zip(generations, _recomputed(reference, generations))
                   for a, b in zip(g.logprobs, again)]
    print(f"max |vLLM - trainer| log-prob difference over {len(differences)} tokens: {max(differences):.2e}")
    assert max(differences) < TOLERANCE


def test_choice_mode_scores_actions_through_prompt_log_probs(engines):
    sampler, reference = engines
    sampler.mode = "choice"
    try:
        request = PolicyRequest(PROMPTS[0], ("take coin", "go north", "open the fridge", "inventory"))
        (generation,) = sampler.act([request])
    finally:
        sampler.mode = "generate"
    scores, probs = reference.choice_distribution(request)
    assert generation.action_mode == "choice" and generation.text in request.admissible_actions
    assert generation.extra["choice_scores"] == pytest.approx(scores, abs=TOLERANCE * 8)
    pick = request.admissible_actions.index(generation.text)
    assert generation.choice_logprob == pytest.approx(torch.tensor(probs[pick]).log().item(), abs=TOLERANCE * 8)
    assert generation.token_ids == reference.reply_ids(generation.text)


def test_weight_sync_makes_vllm_sample_the_new_weights(engines):
    from peft import LoraConfig, get_peft_model

    sampler, reference = engines
    adapted = get_peft_model(reference.model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                        init_lora_weights=False))  # random, non-zero deltas
    trained = HFPolicy("embedded", model=adapted, tokenizer=reference.tokenizer)
    before = sampler.act([PolicyRequest(PROMPTS[1])])
    old_gap = max(abs(a - b) for a, b in zip(before[0].logprobs, _recomputed(trained, before)[0]))
    sampler.sync_weights(adapted, version=1)
    after = sampler.act([PolicyRequest(PROMPTS[1])])
    new_gap = max(abs(a - b) for a, b in zip(after[0].logprobs, _recomputed(trained, after)[0]))
    assert after[0].extra["policy_version"] == 1
    assert old_gap > 50 * TOLERANCE and new_gap < TOLERANCE  # vLLM now scores exactly as the adapted model


def test_a_dead_vllm_server_fails_the_iteration_with_a_message(engines):
    sampler, _ = engines
    sampler.server.process.kill()  # as the kernel's out-of-memory killer would
    sampler.server.process.wait()
    with pytest.raises(RuntimeError, match=r"exited with code -9(.|\n)*--resume"):
        sampler.act([PolicyRequest(PROMPTS[1])])


@pytest.mark.slow
def test_grpo_trains_on_vllm_rollouts_and_records_policy_versions(tmp_path, monkeypatch):
    from agentgym.trainers.grpo import GRPOConfig, train

    monkeypatch.setenv("AGENTGYM_VLLM_ARGS", EAGER)
    # The embedded model (vLLM's CPU attention has no kernel for the tiny model's 16-wide heads), a small
    # LoRA adapter on its top layers, one-turn coin games.
    settings = {**ONE_TURN_COIN, "model": "embedded", "lora_rank": 4, "lora_layers": 2, "choice_temperature": 1.0,
                "lr": 1e-3, "tasks_per_iteration": 2, "group_size": 2, "num_envs": 2, "eval_episodes": 2}
    config = GRPOConfig(**settings, iterations=2, sampler="vllm", output_dir=str(tmp_path))
    result = train(config, progress=False)
    assert all("samples" in row for row in result["rows"] if "train_success_rate" in row)
    for iteration in (1, 2):
        lines = (tmp_path / "trajectories" / f"iteration-{iteration:04d}.jsonl").read_text().splitlines()
        turns = [turn for line in lines for turn in json.loads(line)["turns"]]
        assert {turn["annotations"]["policy_version"] for turn in turns} == {iteration - 1}
        assert all(turn["action_mode"] == "choice" and turn["prompt_token_ids"] for turn in turns)
