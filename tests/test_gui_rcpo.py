"""GUI-RCPO (docs/algorithms.md §4.2, §4.4): the spec's worked example through the trainer's own sampler
and advantages, tied and bad groups, label-blindness on real rendered screens whose target boxes are
swapped for garbage, multi-step episodes trained per click, the vision-language path on tiny-vlm, and
the settings."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import agentgym
from agentgym.policies import Generation, PolicyRequest
from agentgym.records import Turn
from agentgym.trainers import loop, update
from agentgym.trainers.gui_rcpo import (
    GroupSampler,
    GUIRCPOConfig,
    RegionConsistency,
    answer_logprobs,
    build_grounding_policy,
)
from agentgym.trainers.pointer import PointerNet, save_pointer

GUI = "agentgym/GUIGrounding-v0"
SCREEN = np.zeros((8, 10, 3), dtype=np.uint8)  # the worked example's 10 x 8 screen


class _Scripted:
    """A grounding policy whose sampled answers are fixed texts (each "token" a character), so a group
    hits the boxes a test needs; everything else a trainer asks goes to ``scored`` when given."""

    name = "scripted"

    def __init__(self, texts, scored=None):
        self.texts, self.scored = texts, scored

    def sample(self, requests, n, *, temperature, top_p):
        assert n == len(self.texts)
        return [[Generation(text, token_ids=[ord(c) for c in text], logprobs=[-1.0] * len(text)) for text in self.texts]
                for _ in requests]

    def __getattr__(self, name):
        return getattr(self.scored, name)


def _answered(config, texts, request, episode="e0"):
    """The trainer's view of one click: the sampler's reply as a recorded turn, and its sampled group."""
    sampler = GroupSampler(_Scripted(texts), config)
    (reply,) = sampler.act([request])
    turn = Turn(episode, episode, "task", 0, request.messages, reply.text, reply.text, 0.0, True, False, False, "s", "s2",
                annotations=reply.extra)
    return (turn, *sampler.drawn.popleft())


def test_worked_example_rewards_and_advantages_through_the_trainer():
    config = GUIRCPOConfig(group_size=4)
    algorithm = RegionConsistency(config)
    texts = ["[2, 2, 6, 5]", "[3, 2, 7, 6]", "[3, 3, 6, 5]", "[0, 0, 2, 2]"]  # §4.3's B1..B4
    algorithm.answered = [_answered(config, texts, PolicyRequest([], image=SCREEN))]
    turn = algorithm.answered[0][0]
    assert turn.response == "(4.5, 4)"  # the click: the consensus centre
    assert turn.annotations["gui_rc_samples"] == texts and turn.annotations["gui_rc_point_expand"] == 50
    assert turn.annotations["gui_rcpo_rewards"] == pytest.approx([0.75, 0.6458, 1.0, 0.3333], abs=1e-4)
    row = {}
    samples = algorithm.samples(None, [], row)
    assert [s.advantage for s in samples] == pytest.approx([0.2452, -0.1320, 1.1505, -1.2636], abs=1e-4)
    assert turn.annotations["gui_rcpo_advantages"] == pytest.approx([0.2452, -0.1320, 1.1505, -1.2636], abs=1e-4)
    assert [s.response_ids for s in samples][0] == [ord(c) for c in texts[0]] and samples[0].request.image is SCREEN
    assert row["consistency_reward"] == pytest.approx(0.6823, abs=1e-4) and row["tied_groups"] == 0.0


def test_an_identical_or_unparseable_group_gets_zero_advantages_and_bad_answers_zero_reward():
    config = GUIRCPOConfig(group_size=4)
    algorithm = RegionConsistency(config)
    request = PolicyRequest([], image=np.zeros((720, 1280, 3), dtype=np.uint8))
    same = _answered(config, ["(100, 50)"] * 4, request, "same")
    garbage = _answered(config, ["no idea", "(NaN, 3)", "(-5, 40)", "[10, 10, 10, 90]"], request, "garbage")
    mixed = _answered(config, ["(640, 360)", "(1400, 10)", "[1300, 5, 1400, 50]", "click"], request, "mixed")
    algorithm.answered = [same, garbage, mixed]
    row = {}
    samples = algorithm.samples(None, [], row)
    assert same[0].annotations["gui_rcpo_rewards"] == [1.0] * 4
    assert garbage[0].annotations["gui_rcpo_rewards"] == [0.0] * 4 and garbage[0].response == "no consensus"
    assert mixed[0].annotations["gui_rcpo_rewards"] == [1.0, 0.0, 0.0, 0.0]
    assert [s.advantage for s in samples[:8]] == [0.0] * 8  # exactly zero: nothing to learn from a tie
    assert samples[8].advantage > 0 > samples[9].advantage
    assert row["tied_groups"] == pytest.approx(2 / 3) and row["no_box_rate"] == pytest.approx(7 / 12)


def test_settings_default_to_the_paper_and_reject_bad_values():
    config = GUIRCPOConfig()
    assert (config.group_size, config.temperature, config.top_p, config.point_expand, config.kl_coef, config.passes,
            config.advantage_eps, config.kl_estimator) == (16, 0.7, 0.95, 50, 0.04, 2.0, 1e-4, "k3")
    for bad, message in (({"model": "embedded"}, "pointer:PATH, vlm:PATH or tiny-vlm"),
                         ({"model": "vlm"}, "pointer:PATH, vlm:PATH or tiny-vlm"),
                         ({"group_size": 1}, "G >= 2"),
                         ({"env_kwargs": {"all_elements": True}}, "without labels"),
                         ({"passes": 0}, "passes > 0"),
                         ({"layout": "episode", "prompt_style": "chat", "mode": "generate"}, "per-turn")):
        with pytest.raises(ValueError, match=message):
            GUIRCPOConfig(**bad)


def test_iterations_cover_the_split_in_passes():
    config = GUIRCPOConfig(tasks_per_iteration=4, seed=3)
    algorithm = RegionConsistency(config)
    algorithm.setup(None)  # 300 test instructions, 2 passes, 4 per step
    assert config.iterations == 150
    ids = [f"t{i}" for i in range(10)]
    first_pass = [i for iteration in range(1, 4) for i in algorithm.instructions(ids, iteration)][:10]
    assert sorted(first_pass) == ids  # every instruction once per pass, in a seeded order
    assert algorithm.instructions(ids, 1) == RegionConsistency(GUIRCPOConfig(seed=3)).instructions(ids, 1)


def _screens(tmp_path, count=10):
    """The test split's first screens rendered into a cache folder, and a copy whose every element box is
    garbage (mirrored across the screen's centre), so every target box differs but the instructions,
    screenshots and which element is the target do not."""
    real, garbage = tmp_path / "real", tmp_path / "garbage"
    env = agentgym.make(GUI, split="test", cache_root=real)
    try:
        for task in env.unwrapped.tasks[:count]:
            env.reset(options={"task_id": task.id})
    finally:
        env.close()
    shutil.copytree(real, garbage)
    for path in garbage.rglob("*.json"):
        elements = json.loads(path.read_text())
        for element in elements:
            x1, y1, x2, y2 = element["box"]
            if x1 >= 0 and y1 >= 0 and x2 <= 1280 and y2 <= 720:  # keeps which elements can be targets
                element["box"] = [1280 - x2, 720 - y2, 1280 - x1, 720 - y1]
        path.write_text(json.dumps(elements))
    return real, garbage


def _targets(cache, count=10):
    env = agentgym.make(GUI, split="test", cache_root=cache, all_elements=True)
    try:
        return [(info["instruction"], info["target_box"]) for info in
                (env.reset(options={"task_id": task.id})[1] for task in env.unwrapped.tasks[:count])]
    finally:
        env.close()


def test_labels_never_reach_training(tmp_path):
    real, garbage = _screens(tmp_path)
    real_targets, garbage_targets = _targets(real), _targets(garbage)
    assert [t[0] for t in real_targets] == [t[0] for t in garbage_targets]  # the same instructions...
    assert all(a[1] != b[1] for a, b in zip(real_targets, garbage_targets))  # ...every label different
    torch.manual_seed(0)
    save_pointer(PointerNet(width=16, buckets=1024), tmp_path / "pointer" / "model.pt")
    runs = {}
    for name, cache in (("real", real), ("garbage", garbage)):
        config = GUIRCPOConfig(model=f"pointer:{tmp_path / 'pointer'}", env_kwargs={"cache_root": str(cache)},
                               task_filter="-s20000", iterations=2, tasks_per_iteration=2, group_size=4, num_envs=2,
                               eval_episodes=2, lr=1e-2, output_dir=str(tmp_path / name))
        algorithm = RegionConsistency(config)
        result = train_with(algorithm)
        runs[name] = (result, algorithm, torch.load(tmp_path / name / "final" / "model.pt", weights_only=False))
    (real_result, real_run, real_weights), (garbage_result, garbage_run, garbage_weights) = runs["real"], runs["garbage"]
    for key, value in real_weights["state_dict"].items():
        assert torch.equal(value, garbage_weights["state_dict"][key]), key  # bit for bit the same training
    start = torch.load(tmp_path / "pointer" / "model.pt", weights_only=False)["state_dict"]
    assert any(not torch.equal(value, start[key]) for key, value in real_weights["state_dict"].items())  # it trained
    train_keys = ("consistency_reward", "loss", "kl", "grad_norm", "tied_groups")
    for real_row, garbage_row in zip(real_result["rows"], garbage_result["rows"]):
        assert {k: real_row.get(k) for k in train_keys} == {k: garbage_row.get(k) for k in train_keys}
    real_turns = [turn.annotations for turn, _, _ in real_run.answered]
    assert real_turns == [turn.annotations for turn, _, _ in garbage_run.answered]


def train_with(algorithm):
    return loop.train(algorithm, progress=False)


def test_multi_step_screens_train_each_click_as_a_group(tmp_path):
    torch.manual_seed(0)
    save_pointer(PointerNet(width=16, buckets=1024), tmp_path / "pointer" / "model.pt")
    config = GUIRCPOConfig(model=f"pointer:{tmp_path / 'pointer'}", env_kwargs={"steps": 2}, train_split="dev",
                           eval_split="dev", iterations=1, tasks_per_iteration=2, group_size=4, num_envs=2,
                           eval_episodes=1, output_dir=str(tmp_path / "run"))
    algorithm = RegionConsistency(config)
    result = train_with(algorithm)
    clicks = [turn for turn, _, _ in algorithm.answered]
    assert len(clicks) == 4 and sorted(turn.turn_index for turn in clicks) == [0, 0, 1, 1]  # 2 screens × 2 clicks
    assert [row["samples"] for row in result["rows"] if "samples" in row] == [4 * 4]
    for turn in clicks:  # each click is its own group of G answers, normalised within itself
        assert len(turn.annotations["gui_rc_samples"]) == 4
        assert sum(turn.annotations["gui_rcpo_advantages"]) == pytest.approx(0.0, abs=1e-9)
    saved = (tmp_path / "run" / "trajectories" / "iteration-0001.jsonl").read_text()
    assert "gui_rcpo_rewards" in saved and "gui_rc_samples" in saved  # the viewer draws these votes


def test_the_vlm_path_trains_lora_on_the_language_model_and_follows_the_votes():
    config = GUIRCPOConfig(model="tiny-vlm", lora_rank=4, group_size=4, max_new_tokens=4, kl_coef=0.04)
    policy = build_grounding_policy(config)
    trainable = [name for name, p in policy.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name and "language_model" in name for name in trainable)
    tokenizer = policy.processor.tokenizer
    texts = ["(100, 50)", "(104, 52)", "(98, 49)", "(900, 600)"]  # three agree, one is alone

    class Scripted(_Scripted):
        def sample(self, requests, n, *, temperature, top_p):
            answers = [tokenizer(text, add_special_tokens=False).input_ids + [tokenizer.eos_token_id] for text in texts]
            logps, _ = policy.answer_logprobs(list(requests) * n, answers, temperature=temperature, grad=False)
            return [[Generation(text, token_ids=ids, logprobs=lp.tolist()) for text, ids, lp in zip(texts, answers, logps)]]

    request = PolicyRequest([{"role": "user", "content": "Instruction: Click Send.\nReply (x, y)."}],
                            image=(np.random.default_rng(0).random((720, 1280, 3)) * 255).astype(np.uint8))
    sampler = GroupSampler(Scripted(texts, policy), config)
    (reply,) = sampler.act([request])
    rewards = reply.extra["gui_rcpo_rewards"]
    assert min(rewards[:3]) > rewards[3] == pytest.approx(1 / 3)  # the lone answer's votes are a third of the peak
    algorithm = RegionConsistency(config)
    algorithm.answered = [(Turn("e", "g", "t", 0, [], reply.text, reply.text, 0.0, True, False, False, "s", "s2",
                                annotations=reply.extra), *sampler.drawn.popleft())]
    samples = algorithm.samples(policy, [], {})
    assert all(s.advantage > 0 for s in samples[:3]) and samples[3].advantage < 0

    def logps():
        values, _, mask = answer_logprobs(policy, samples, temperature=config.temperature, grad=False)
        return (values * mask).sum(1)

    before = logps()
    policy.keep_reference()
    optimizer = torch.optim.SGD([p for p in policy.model.parameters() if p.requires_grad], lr=0.5)
    terms = update.policy_loss_terms(policy, samples, update.LossSettings.of(config), score=answer_logprobs)
    update.policy_loss(terms, update.LossSettings.of(config)).backward()
    optimizer.step()
    after = logps()
    assert (after - before)[3] < 0 < (after - before)[:3].sum()  # probability moves towards the consensus
    with policy.as_reference():  # the reference is the model without its adapter: the starting policy
        assert torch.allclose(logps(), before, atol=1e-5)


@pytest.mark.slow
def test_a_short_tiny_vlm_run_end_to_end(tmp_path):
    algorithm = RegionConsistency(GUIRCPOConfig(
        model="tiny-vlm", lora_rank=4, train_split="dev", eval_split="dev", iterations=1, tasks_per_iteration=1,
        group_size=2, max_new_tokens=3, num_envs=1, eval_episodes=1, output_dir=str(tmp_path)))
    result = train_with(algorithm)
    # A random model writes no coordinates: no consensus, an invalid click, the instruction asked again.
    clicks = len(algorithm.answered)
    assert clicks >= 1 and [row["samples"] for row in result["rows"] if "samples" in row] == [2 * clicks]
    assert (tmp_path / "final" / "adapter_config.json").exists() and (tmp_path / "report.md").exists()
