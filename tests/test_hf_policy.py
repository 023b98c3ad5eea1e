"""HFPolicy against direct computations from the model's logits: log-probs, entropies, choices, batching."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from agentgym.hf_policy import HFPolicy, Sampling
from agentgym.policies import PolicyRequest, make_policy
from agentgym.prompting import PromptTemplate

ACTIONS = ("go north", "take coin", "open the wooden chest", "look")


def chats(count: int):
    template = PromptTemplate()
    return [template.build("Find the coin.", f"Room {i}: " + "a dusty corridor. " * (i % 3 + 1), ACTIONS)
            for i in range(count)]


@pytest.fixture(scope="module")
def tiny():
    return HFPolicy("tiny", seed=0)


@pytest.fixture(scope="module")
def embedded():
    return HFPolicy("embedded", seed=0)


def direct_logits(policy: HFPolicy, ids: list[int]) -> torch.Tensor:
    """Logits at every position of one unpadded sequence, with no cache: the reference."""
    with torch.no_grad():
        return policy.model(input_ids=torch.tensor([ids])).logits[0].float()


def direct_scores(policy: HFPolicy, prompt: list[int], continuation: list[int]) -> list[float]:
    log_p = F.log_softmax(direct_logits(policy, prompt + continuation), dim=-1)
    return [float(log_p[len(prompt) - 1 + i, token]) for i, token in enumerate(continuation)]


@pytest.mark.parametrize("name", ["tiny", "embedded"])
def test_batched_and_single_logprobs_agree(name, request):
    policy = request.getfixturevalue(name)
    prompts = chats(4)  # different lengths: left padding is exercised
    replies = ["go north", "take coin", "open the wooden chest", "look around the room"]
    batched = policy.score(prompts, replies)
    single = [policy.score([p], [r])[0] for p, r in zip(prompts, replies)]
    for a, b in zip(batched, single):
        assert len(a) == len(b)
        assert max(abs(x - y) for x, y in zip(a, b)) < 1e-4


def test_scores_match_a_direct_forward_pass(embedded):
    prompts = chats(3)
    replies = ["take coin", "go north", "look"]
    for prompt, reply, scored in zip(prompts, replies, embedded.score(prompts, replies)):
        expected = direct_scores(embedded, embedded.prompt_ids(prompt), embedded.reply_ids(reply))
        assert scored == pytest.approx(expected, abs=1e-4)


def test_generated_logprobs_and_entropies_match_the_logits(tiny):
    sampling = Sampling(temperature=0.7, top_p=0.9, max_new_tokens=12)
    prompts = chats(3)
    for prompt, reply in zip(prompts, tiny.generate(prompts, sampling=sampling)):
        ids = tiny.prompt_ids(prompt)
        logits = direct_logits(tiny, ids + reply.token_ids)[len(ids) - 1 : -1] / sampling.temperature
        log_p = F.log_softmax(logits, dim=-1)
        expected_logprobs = log_p.gather(1, torch.tensor(reply.token_ids)[:, None])[:, 0]
        expected_entropy = -(log_p.exp() * log_p).sum(-1)
        assert reply.prompt_token_ids == ids
        assert reply.logprobs == pytest.approx(expected_logprobs.tolist(), abs=1e-4)
        assert reply.entropies == pytest.approx(expected_entropy.tolist(), abs=1e-4)


def test_choice_distribution_is_the_softmax_of_action_likelihoods(embedded):
    policy = HFPolicy("embedded", model=embedded.model, tokenizer=embedded.tokenizer, choice_temperature=0.5, seed=1)
    request = PolicyRequest(chats(1)[0], ACTIONS)
    scores, probs = policy.choice_distribution(request)
    prompt = policy.prompt_ids(request.messages)
    expected_scores = [sum(direct_scores(policy, prompt, policy.reply_ids(a))) for a in ACTIONS]
    assert scores == pytest.approx(expected_scores, abs=1e-3)
    expected_probs = torch.softmax(torch.tensor(expected_scores, dtype=torch.float64) / 0.5, 0).tolist()
    assert probs == pytest.approx(expected_probs, abs=1e-4)
    assert sum(probs) == pytest.approx(1.0, abs=1e-9)
    (reply,) = policy.act([request])
    pick = ACTIONS.index(reply.text)
    assert reply.action_mode == "choice"
    assert reply.choice_logprob == pytest.approx(math.log(probs[pick]), abs=1e-6)
    assert reply.choice_entropy == pytest.approx(-sum(p * math.log(p) for p in probs), abs=1e-6)
    assert reply.token_ids == policy.reply_ids(reply.text)


def test_choice_is_sampled_in_proportion_to_its_probabilities(tiny):
    request = PolicyRequest(chats(1)[0], ACTIONS)
    _, probs = tiny.choice_distribution(request)
    picks = [r.text for r in tiny.act([request] * 400)]
    for action, p in zip(ACTIONS, probs):
        assert picks.count(action) / 400 == pytest.approx(p, abs=0.08)


def test_greedy_batched_equals_one_at_a_time(embedded):
    greedy = Sampling(temperature=0.0, max_new_tokens=10)
    prompts = chats(3)
    batched = [g.text for g in embedded.generate(prompts, sampling=greedy)]
    single = [embedded.generate([p], sampling=greedy)[0].text for p in prompts]
    assert batched == single


def test_tiny_top_p_is_greedy_and_stop_strings_cut(tiny):
    prompts = chats(2)
    greedy = tiny.generate(prompts, sampling=Sampling(temperature=0.0, max_new_tokens=8))
    narrow = tiny.generate(prompts, sampling=Sampling(temperature=1.0, top_p=1e-6, max_new_tokens=8))
    assert [g.token_ids for g in greedy] == [g.token_ids for g in narrow]
    text = greedy[0].text
    assert len(text) > 2, "the tiny model should write something"
    stop = text[1:3]
    cut = tiny.generate(prompts[:1], sampling=Sampling(temperature=0.0, max_new_tokens=8, stop=(stop,)))[0]
    assert stop not in cut.text and text.startswith(cut.text) and cut.extra["finish_reason"] == "stop"


def test_kept_prefix_is_dropped_when_weights_change():
    policy = HFPolicy("tiny", seed=0)
    prompt, reply = chats(1)[0], "take coin"
    before = policy.score([prompt], [reply])[0]
    assert policy._prefix is not None  # the prompt's prefix is kept for the next call
    with torch.no_grad():
        for parameter in policy.model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    policy.weights_changed()  # what trainers call after every optimizer step
    after = policy.score([prompt], [reply])[0]
    expected = direct_scores(policy, policy.prompt_ids(prompt), policy.reply_ids(reply))
    assert after == pytest.approx(expected, abs=1e-4) and after != pytest.approx(before, abs=1e-3)


def test_policy_specs_make_llm_policies():
    policy = make_policy("tiny", seed=0, mode="generate", temperature=0)
    assert policy.name == "tiny" and policy.config()["mode"] == "generate"
    with pytest.raises(ValueError, match="syntax"):
        make_policy("huggingface:foo")


def test_lora_adapter_loads_on_top_of_the_base_model(tmp_path, tiny):
    from peft import LoraConfig, get_peft_model

    from agentgym.models import load_causal_lm

    base, _ = load_causal_lm("tiny")
    adapted = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapted.save_pretrained(tmp_path / "lora")
    policy = HFPolicy("tiny", adapter=str(tmp_path / "lora"))
    prompt, reply = chats(1)[0], "take coin"
    with_adapter = policy.score([prompt], [reply])[0]
    assert with_adapter != pytest.approx(tiny.score([prompt], [reply])[0], abs=1e-4)
    assert with_adapter == pytest.approx(direct_scores(policy, policy.prompt_ids(prompt), policy.reply_ids(reply)),
                                         abs=1e-4)


def test_gradients_are_the_same_with_and_without_a_shared_prompt_prefix():
    policy = HFPolicy("tiny", seed=0)
    prompt = policy.prompt_ids(chats(1)[0])
    candidates = [[policy.reply_ids("take coin")], [policy.reply_ids("go north")], [policy.reply_ids("look")]]

    def gradients(min_shared: int) -> list[torch.Tensor]:
        policy.MIN_SHARED_PREFIX = min_shared
        policy.model.zero_grad()
        logps, _ = policy.token_logprobs([prompt] * 3, candidates, grad=True)
        torch.stack([group[0].sum() for group in logps]).sum().backward()
        return [p.grad.clone() for p in policy.model.parameters()]

    shared, separate = gradients(16), gradients(10**9)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(shared, separate))
