"""``reuse_computation`` (issue #27) saves forward passes and changes no number beyond float rounding:
a choice state scored again while the weights are unchanged is not run again, and the frozen layers below
the adapter run once per distinct state: the rollout keeps their output and the update reuses it. Each is
compared with the computation switched off, on the same inputs."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from agentgym.hf_policy import HFPolicy
from agentgym.policies import PolicyRequest
from agentgym.prompting import PromptTemplate
from agentgym import frozen_trunk
from agentgym.trainers import update
from agentgym.trainers.config import RunConfig
from agentgym.trainers.model import build_policy
from agentgym.trainers.samples import TurnSample

ACTIONS = ("go north", "take coin", "open the wooden chest", "look")


def request(room: int) -> PolicyRequest:
    return PolicyRequest(PromptTemplate().build("Find the coin.", f"Room {room}: a dusty corridor.", ACTIONS),
                         ACTIONS)


def counting_forward_rows(policy: HFPolicy, monkeypatch) -> list[int]:
    """Record how many prompts each scoring call runs."""
    calls: list[int] = []
    score = policy.score_ids

    def counted(prompts, candidates):
        calls.append(len(prompts))
        return score(prompts, candidates)

    monkeypatch.setattr(policy, "score_ids", counted)
    return calls


def test_a_repeated_choice_state_is_scored_once_until_the_weights_change(monkeypatch):
    policy, fresh = HFPolicy("tiny", mode="choice", seed=0), HFPolicy("tiny", mode="choice", seed=0,
                                                                     reuse_scores=False)
    fresh.model.load_state_dict(policy.model.state_dict())
    calls = counting_forward_rows(policy, monkeypatch)
    batch = [request(1), request(2), request(1)]
    replies = policy.act(batch)
    assert calls == [2]  # the repeated state ran once
    policy.act([request(2), request(3)])
    assert calls == [2, 1]  # room 2 was kept from the first batch
    expected = fresh.act(batch)
    for reply, reference in zip(replies, expected):
        assert reply.extra["choice_scores"] == pytest.approx(reference.extra["choice_scores"], abs=1e-5)
    policy.weights_changed()
    policy.act([request(1)])
    assert calls == [2, 1, 1]  # new weights: scored again
    with torch.no_grad():
        next(policy.model.parameters()).add_(0.5)
    policy.weights_changed()
    changed = policy.choice_distribution(request(1))[0]
    assert changed != pytest.approx(replies[0].extra["choice_scores"], abs=1e-3)


def choice_batch(policy: HFPolicy, trunk_cache: frozen_trunk.TrunkCache | None) -> list[TurnSample]:
    """Six choice samples over three states (two repeated), with mixed advantages."""
    samples = []
    for index, (room, chosen, advantage) in enumerate([(1, 0, 1.0), (2, 1, -0.5), (1, 2, 0.3), (3, 3, -1.0),
                                                       (2, 1, 0.8), (1, 0, -0.2)]):
        prompt = policy.prompt_ids(request(room).messages)
        candidates = [policy.reply_ids(a) for a in ACTIONS]
        samples.append(TurnSample(prompt, candidates[chosen], [-1.2 + 0.1 * index], "choice", index % 3,
                                  candidates=candidates, chosen=chosen, advantage=advantage,
                                  old_entropies=[1.0], trunk_cache=trunk_cache))
    return samples


def adapted_policy() -> HFPolicy:
    """The tiny model with LoRA on its top layer only, the adapter set to non-zero weights."""
    policy = build_policy(RunConfig(model="tiny", lora_rank=4, lora_layers=1, seed=0))
    with torch.no_grad():
        for name, parameter in policy.model.named_parameters():
            if parameter.requires_grad:
                parameter.normal_(0, 0.2, generator=torch.Generator().manual_seed(len(name)))
    return policy


@pytest.mark.parametrize("kl_coef", [0.0, 0.1])
def test_the_frozen_trunk_update_gives_the_full_models_loss_and_gradients(kl_coef):
    policy = adapted_policy()  # a trained adapter, so the reference differs from the policy
    assert frozen_trunk.trunk_depth(policy.model) == 1
    policy.keep_reference()
    settings = update.LossSettings(kl_coef=kl_coef)
    results = []
    for trunk_cache in (None, frozen_trunk.TrunkCache.of(policy.model)):
        policy.model.zero_grad()
        samples = choice_batch(policy, trunk_cache)
        terms = update.policy_loss_terms(policy, samples, settings)
        update.policy_loss(terms, settings).backward()
        results.append(({k: float(v.detach()) for k, v in update.loggable(terms).items()},
                        [p.grad.clone() for p in policy.model.parameters() if p.requires_grad]))
        if trunk_cache is not None:
            assert len(trunk_cache.states) == 3  # one trunk pass per distinct state, shared by the reference pass
    (full_terms, full_grads), (trunk_terms, trunk_grads) = results
    assert set(trunk_terms) == set(full_terms) and ("kl" in full_terms) == (kl_coef > 0)
    for key, value in full_terms.items():
        assert trunk_terms[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    for full, trunk in zip(full_grads, trunk_grads):
        assert torch.allclose(full, trunk, rtol=1e-3, atol=1e-6)
    assert any(g.abs().sum() > 0 for g in full_grads)


def test_rollout_scoring_keeps_the_frozen_layers_output_and_the_update_reuses_it():
    policy = adapted_policy()
    replies = policy.act([request(1), request(2), request(1)])
    cache = policy.trunk_cache()
    assert len(cache.states) == 2  # rooms 1 and 2, each through the frozen layer once
    # The packed scores are the prompt-cache path's (token_logprobs) to float rounding.
    prompts = [policy.prompt_ids(request(room).messages) for room in (1, 2)]
    candidates = [[policy.reply_ids(a) for a in ACTIONS]] * 2
    logps, entropies = policy.token_logprobs(prompts, candidates)
    for reply, group_logps in zip(replies[:2], logps):
        assert reply.extra["choice_scores"] == pytest.approx([float(t.sum()) for t in group_logps], abs=1e-4)
    chosen = ACTIONS.index(replies[0].text)
    assert replies[0].entropies == pytest.approx(entropies[0][chosen].tolist(), abs=1e-4)
    kept = dict(cache.states)
    policy.weights_changed(trainable_only=True)  # an optimizer step: the frozen layers' output stays
    update.policy_loss_terms(policy, choice_batch(policy, cache), update.LossSettings())
    assert len(cache.states) == 3  # only room 3 was new to the frozen layer
    assert all(cache.states[key] is state for key, state in kept.items())
    policy.weights_changed()  # any other change drops it
    assert not cache.states and cache.values == 0


def test_the_kept_trunk_output_stays_within_its_budget_and_keeps_what_is_in_use():
    cache = frozen_trunk.TrunkCache(depth=1, max_values=100)
    keys = [((i,), ((1,),)) for i in range(4)]
    for key in keys[:3]:
        cache.keep(key, torch.zeros(40))  # the third goes over budget: the oldest is dropped
    assert list(cache.states) == keys[1:3] and cache.values == 80
    cache.keep(keys[3], torch.zeros(40), protect=[keys[1], keys[3]])
    assert list(cache.states) == [keys[1], keys[3]]
    # A data set passed over several times reserves room for all of it (4 keys of 1 token × 8 floats),
    # within a limit; a budget already larger stays.
    sized = frozen_trunk.TrunkCache(depth=1, max_values=10, hidden_size=8)
    sized.reserve(keys)
    assert sized.max_values == 32
    sized.reserve(keys[:1])
    assert sized.max_values == 32
    limited = frozen_trunk.TrunkCache(depth=1, max_values=10, hidden_size=8)
    limited.reserve(keys, limit=20)
    assert limited.max_values == 20


def test_nothing_is_shared_when_every_layer_trains_or_the_architecture_is_not_known(monkeypatch):
    policy = build_policy(RunConfig(model="tiny", lora_rank=0, seed=0))
    assert frozen_trunk.trunk_depth(policy.model) == 0 and frozen_trunk.TrunkCache.of(policy.model) is None
    adapted = build_policy(RunConfig(model="tiny", lora_rank=4, lora_layers=1, seed=0))
    assert frozen_trunk.trunk_depth(adapted.model) == 1
    monkeypatch.setattr(adapted.model.get_base_model().config, "model_type", "gemma")  # scales its embeddings
    assert frozen_trunk.trunk_depth(adapted.model) == 0


def test_packed_candidates_see_the_prompt_and_only_their_own_tokens():
    packed = frozen_trunk.pack([((5, 6, 7), ((1, 2, 9), (3, 9)))], pad_id=0)
    # prompt 5 6 7, then candidate 1's inputs 1 2 (its last token 9 is only predicted), candidate 2's 3
    assert packed.ids.tolist() == [[5, 6, 7, 1, 2, 3]]
    assert packed.positions.tolist() == [[0, 1, 2, 3, 4, 3]]
    assert packed.queries == [[[2, 3, 4], [2, 5]]]
    sees = packed.mask[0, 0]
    assert sees[5].tolist() == [True, True, True, False, False, True]  # candidate 2 skips candidate 1
    assert sees[4].tolist() == [True, True, True, True, True, False]


def test_ppo_values_through_the_kept_trunk_give_the_full_models_value_loss_and_gradients():
    from agentgym.trainers import ppo

    policy = adapted_policy()
    critic = ppo.ValueBaseline(ppo.PPOConfig(model="tiny", value_clip=None))  # a clipped V has no gradient
    critic.setup(policy)
    with torch.no_grad():
        critic.head.weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(1))  # V is not 0 everywhere
    cache = frozen_trunk.TrunkCache.of(policy.model)
    update.policy_loss_terms(policy, choice_batch(policy, cache), update.LossSettings())  # as a rollout keeps it
    kept = dict(cache.states)
    results = []
    for trunk_cache in (None, cache):
        policy.model.zero_grad(), critic.head.zero_grad()
        samples = choice_batch(policy, trunk_cache)
        for index, sample in enumerate(samples):
            sample.old_value, sample.value_target = 0.1 * index, 1.0 - 0.3 * index
        values = critic.values(samples, grad=False)
        loss, _ = critic.extra_loss({}, samples, 0)
        loss.backward()
        results.append((values, float(loss.detach()), [p.grad.clone() for p in [*critic.head.parameters(),
                                                                      *policy.model.parameters()] if p.requires_grad]))
    (full_values, full_loss, full_grads), (trunk_values, trunk_loss, trunk_grads) = results
    assert torch.allclose(full_values, trunk_values, rtol=1e-4, atol=1e-5) and full_values.std() > 0
    assert trunk_loss == pytest.approx(full_loss, rel=1e-4)
    for full, trunk in zip(full_grads, trunk_grads, strict=True):  # float rounding, on the tensor's scale
        assert (full - trunk).abs().max() <= 1e-4 * full.abs().max()
    assert all(g.abs().sum() > 0 for g in full_grads)  # the value loss reaches the head and the adapter
    assert cache.states.keys() == kept.keys() and all(cache.states[k] is v for k, v in kept.items())  # no trunk pass


def text_batch(policy: HFPolicy, trunk_cache: frozen_trunk.TrunkCache | None) -> list[TurnSample]:
    """Four text samples: replies of different lengths after two prompts, one (prompt, reply) repeated."""
    samples = []
    for index, (room, reply, advantage) in enumerate([(1, "take coin", 1.0), (2, "go north then east", -0.5),
                                                       (1, "look", 0.3), (1, "take coin", -1.0)]):
        response = policy.reply_ids(reply)
        samples.append(TurnSample(policy.prompt_ids(request(room).messages), response, [-0.5] * len(response), "text",
                                  index, advantage=advantage, old_entropies=[1.0] * len(response),
                                  trunk_cache=trunk_cache))
    return samples


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_text_samples_through_the_kept_trunk_give_the_full_models_loss_and_gradients(temperature):
    policy = adapted_policy()
    settings = update.LossSettings(temperature=temperature)
    results = []
    cache = frozen_trunk.TrunkCache.of(policy.model)
    for trunk_cache in (None, cache, cache):  # the full model; the trunk run and kept; the kept output reused
        policy.model.zero_grad()
        terms = update.policy_loss_terms(policy, text_batch(policy, trunk_cache), settings)
        update.policy_loss(terms, settings).backward()
        results.append(({k: float(v.detach()) for k, v in update.loggable(terms).items()},
                        [p.grad.clone() for p in policy.model.parameters() if p.requires_grad]))
        if trunk_cache is not None:
            assert len(cache.states) == 3  # the repeated (prompt, reply) ran once, and nothing ran again
    full_terms, full_grads = results[0]
    for trunk_terms, trunk_grads in results[1:]:
        for key, value in full_terms.items():
            assert trunk_terms[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
        for full, trunk in zip(full_grads, trunk_grads):
            assert torch.allclose(full, trunk, rtol=1e-3, atol=1e-6)
    assert any(g.abs().sum() > 0 for g in full_grads)


def test_cloning_runs_each_sample_through_the_frozen_layers_once_over_all_passes(tmp_path, monkeypatch):
    from agentgym.trainers import sft

    kept: list[frozen_trunk.Key] = []
    keep = frozen_trunk.TrunkCache.keep
    monkeypatch.setattr(frozen_trunk.TrunkCache, "keep",
                        lambda self, key, state, **kw: (kept.append(key), keep(self, key, state, **kw))[1])
    settings = dict(env_id="agentgym/TextWorld-CoinCollector-v0", env_kwargs={"max_turns": 4}, task_filter="level2-",
                    model="tiny", lora_rank=4, lora_layers=1, mode="generate", lr=1e-2, collect_episodes=3,
                    iterations=3, minibatch_size=4, micro_batch_size=2, eval_every=0, eval_before=False,
                    eval_split="dev", eval_episodes=1, num_envs=2, seed=0)
    losses = {}
    for reuse in (True, False):
        kept.clear()
        result = sft.train(sft.SFTConfig(**settings, reuse_computation=reuse, output_dir=str(tmp_path / str(reuse))),
                           progress=False)
        rows = [row for row in result["rows"] if "loss" in row]
        losses[reuse] = [row["loss"] for row in rows]
        if reuse:
            assert len(kept) == len(set(kept)) == rows[0]["samples"]  # every sample once, in the first pass only
        else:
            assert not kept
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
    assert losses[True][-1] < losses[True][0]  # it learns: the passes differ, and the kept output served them all


def test_training_rollouts_keep_each_generated_replys_frozen_layer_output_for_the_update():
    from agentgym.hf_policy import Sampling

    policy = adapted_policy()
    cache, sampling = policy.trunk_cache(), Sampling(temperature=1.0, max_new_tokens=6)
    prompts = [request(room).messages for room in (1, 2)]
    policy.generate(prompts, sampling=sampling)  # an evaluation: nothing kept, but a prompt prefix is
    assert not cache.states and policy._prefix is not None
    with policy.keeping_trunk():
        replies = policy.generate(prompts, n=2, sampling=sampling)
        replies += policy.generate([request(3).messages], sampling=sampling)  # reuses the kept prefix
    keys = [frozen_trunk.choice_key(r.prompt_token_ids, [r.token_ids]) for r in replies]
    assert len(cache.states) == len(set(keys)) == 5 and all(key in cache.states for key in keys)
    # Each kept output is the packed pass's, and the update's log-probs from it are the sampled ones.
    fresh = frozen_trunk.TrunkCache.of(policy.model)
    logps, _ = frozen_trunk.choice_logprobs(policy, keys, fresh, grad=False)
    for key, reply, logp in zip(keys, replies, logps):
        assert cache.states[key].shape == fresh.states[key].shape
        assert torch.allclose(cache.states[key], fresh.states[key], atol=1e-5)
        assert logp[0].tolist() == pytest.approx(reply.logprobs, abs=1e-4)
    policy.generate(prompts, sampling=sampling)  # closed again: nothing more kept
    assert len(cache.states) == 5


@pytest.mark.parametrize("keep", [True, False])
def test_a_text_grpo_update_reads_the_frozen_layers_output_its_rollout_kept(tmp_path, monkeypatch, keep):
    from agentgym.trainers import grpo

    trunk_rows: list[int] = []  # rows run through the frozen layer outside generation
    run_layers = frozen_trunk._run_layers

    def counted(decoder, layers, hidden, packed):
        if layers[0] is decoder.layers[0]:
            trunk_rows.append(hidden.shape[0])
        return run_layers(decoder, layers, hidden, packed)

    monkeypatch.setattr(frozen_trunk, "_run_layers", counted)
    if not keep:  # the check's control: rollouts that keep nothing leave the update to run the trunk
        monkeypatch.setattr(HFPolicy, "keeping_trunk", lambda self: contextlib.nullcontext())
    config = grpo.GRPOConfig(env_id="agentgym/TextWorld-CoinCollector-v0", env_kwargs={"max_turns": 2},
                             task_filter="level1-", model="tiny", lora_rank=4, lora_layers=1, mode="generate",
                             max_new_tokens=6, tasks_per_iteration=2, group_size=2, num_envs=2, iterations=1,
                             invalid_penalty=0.0, entropy_coef=1e-3, eval_before=False, eval_split="dev", eval_episodes=1, eval_every=0,
                             seed=0, output_dir=str(tmp_path))
    # (The tiny model's groups all fail: the entropy bonus gives their update a gradient, so it runs its passes.)
    rows = [row for row in grpo.train(config, progress=False)["rows"] if "samples" in row]
    assert rows and rows[0]["samples"] > 0
    assert (trunk_rows == []) if keep else sum(trunk_rows) > 0


def counted_loss(policy: HFPolicy, settings: update.LossSettings, calls: list[int]):
    """The policy loss of a micro-batch, recording each micro-batch's size in ``calls``."""
    def loss_fn(micro):
        calls.append(len(micro))
        terms = update.policy_loss_terms(policy, micro, settings)
        return update.policy_loss(terms, settings), update.loggable(terms)
    return loss_fn


def test_an_update_of_all_zero_advantages_skips_its_passes_and_moves_the_weights_as_the_passes_would():
    from agentgym.trainers import epo, grpo

    config = RunConfig(model="tiny", epochs=2, minibatch_size=4, micro_batch_size=2, seed=0)
    settings = update.LossSettings()
    finals = []
    for zero_gradient in (False, True):
        policy = adapted_policy()
        parameters = [p for p in policy.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(parameters, lr=1e-2, weight_decay=0.1)
        scheduler = update.cosine_schedule(optimizer, 4, 0.0, 0.1)
        rng = np.random.default_rng(0)
        calls: list[int] = []
        loss_fn = counted_loss(policy, settings, calls)
        # A first update with signal leaves AdamW with momentum, then one whose groups are all silent.
        update.optimise(choice_batch(policy, None), loss_fn, optimizer=optimizer, scheduler=scheduler,
                        config=config, rng=rng)
        silent = choice_batch(policy, None)
        for sample in silent:
            sample.advantage = 0.0
        before, calls[:] = [p.detach().clone() for p in parameters], []
        logs = update.optimise(silent, loss_fn, optimizer=optimizer, scheduler=scheduler, config=config, rng=rng,
                               zero_gradient=zero_gradient)
        assert logs["loss"] == 0.0 and logs["grad_norm"] == 0.0
        assert logs.get("passes_skipped", 0.0) == (1.0 if zero_gradient else 0.0)
        assert calls == ([] if zero_gradient else [2] * 6)  # no pass at all, or 2 epochs × 3 micro-batches
        assert any(not torch.equal(a, b) for a, b in zip(before, parameters))  # momentum still moved them
        finals.append([p.detach().clone() for p in parameters])
    for full, skipped in zip(*finals):
        assert torch.allclose(full, skipped, atol=1e-7)

    grpo_config = grpo.GRPOConfig(model="tiny", env_id="agentgym/TextWorld-CoinCollector-v0")
    with_signal = choice_batch(HFPolicy("tiny", mode="choice", seed=0), None)
    silent = [TurnSample(s.prompt_ids, s.response_ids, s.old_logprobs, "choice", 0) for s in with_signal]
    assert grpo.GroupRelative(grpo_config).gradient_free(silent)
    assert not grpo.GroupRelative(grpo_config).gradient_free(with_signal)
    kl = grpo.GRPOConfig(model="tiny", env_id="agentgym/TextWorld-CoinCollector-v0", kl_coef=0.01)
    assert not grpo.GroupRelative(kl).gradient_free(silent)  # the KL term has a gradient of its own
    entropy_smoothing = epo.EntropySmoothing(epo.EPOConfig(model="tiny", env_id="agentgym/TextWorld-CoinCollector-v0"))
    assert not entropy_smoothing.gradient_free(silent)  # so has EPO's entropy term
