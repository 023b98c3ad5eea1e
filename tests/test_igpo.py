"""IGPO on the shared loop (docs/algorithms.md §2): the teacher-forced answer probability against a plain
forward pass, long answers, bad input, the records and metrics of real runs, the authors' code path on
concatenated episodes, and that no prompt ever holds the answer. The worked example is in
test_trainer_math.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from agentgym import registry
from agentgym.contract import Frame, Task, TextEnv, state_key
from agentgym.envs.search.env import SearchQAEnv
from agentgym.hf_policy import HFPolicy
from agentgym.records import read_jsonl
from agentgym.trainers import heldout
from agentgym.trainers.igpo import (
    AnswerScorer,
    IGPOConfig,
    InformationGain,
    env_answer_format,
    paper_advantages,
    train,
)
from agentgym.trainers.loop import Rollouts
from agentgym.trainers.model import build_policy
from agentgym.trainers.samples import turn_stats

FRUITS = ("apple", "pear", "plum", "fig")
SEARCH = "<search>box</search>"


class LookupEnv(TextEnv):
    """Name the fruit in a box: every box holds an apple, which a search shows; answer with a tag."""

    answer_format = "<answer>{answer}</answer>"
    default_max_turns = 2

    def load_tasks(self, split: str) -> list[Task]:
        return [Task(f"{split}-{i}", split, f"Which fruit is in box {i}?", answer=["apple", "an apple"])
                for i in range(8)]

    def _start(self, task: Task) -> Frame:
        return Frame("The box is closed.", (SEARCH, *self._answers()), state_key(task.id))

    def _act(self, action: str) -> Frame:
        if action == SEARCH:
            return Frame("<information>The box holds an apple.</information>", self._answers(),
                         state_key(self.task.id, "open"), info={"search": "box"})
        f1 = float(action == "<answer>apple</answer>")
        return Frame(f"You said {action}.", (), state_key(self.task.id, action), reward=f1, terminated=True,
                     won=bool(f1), info={"f1": f1})

    @staticmethod
    def _answers() -> tuple[str, ...]:
        return tuple(f"<answer>{fruit}</answer>" for fruit in FRUITS)


class UnansweredLookup(LookupEnv):
    """The lookup boxes without a reference answer."""

    def load_tasks(self, split: str) -> list[Task]:
        return [Task(t.id, t.split, t.instruction) for t in super().load_tasks(split)]


SENTINEL = "Quuxzanzibar"


class SentinelSearchQA(SearchQAEnv):
    """The search family's questions with every answer replaced by a word no corpus passage holds."""

    def load_tasks(self, split: str) -> list[Task]:
        return [Task(t.id, t.split, t.instruction, t.payload, answer=[SENTINEL]) for t in super().load_tasks(split)]


@pytest.fixture(scope="module", autouse=True)
def lookup_envs() -> None:
    """Registered when this module's tests run, not when it is imported: ids registered at collection
    would join the suites parametrised over every registered id (test_splits, test_check_env)."""
    registry.register("test/Lookup-v0", LookupEnv, splits=("train", "dev", "test"), concurrency="sequential")
    registry.register("test/Unanswered-v0", UnansweredLookup, splits=("train", "dev", "test"),
                      concurrency="sequential")
    registry.register("test/SearchQA-Sentinel-v0", SentinelSearchQA, concurrency="thread")

LOOKUP = dict(env_id="test/Lookup-v0", eval_split="dev", model="tiny", lora_rank=0, mode="choice",
              choice_temperature=8.0, tasks_per_iteration=4, group_size=4, num_envs=4, lr=0.02, eval_every=0,
              eval_episodes=8, seed=0)


@pytest.fixture(scope="module")
def tiny() -> HFPolicy:
    return HFPolicy("tiny", mode="generate", seed=0)


def _chat(tiny: HFPolicy, question: str) -> list[int]:
    return tiny.prompt_ids([{"role": "system", "content": "You answer questions about the world, briefly."},
                            {"role": "user", "content": question}])


def test_answer_probability_is_the_geometric_mean_of_the_answer_tokens(tiny):
    task = Task("t", "train", "q", answer=["Oranjestad", "the city of Oranjestad"])
    prompts = [_chat(tiny, "What is the capital of Aruba?"), _chat(tiny, "Aruba's capital is which city?")]

    def by_hand(prompt: list[int], alias: str) -> float:
        reply = tiny.tokenizer(f"<answer>{alias}</answer>", add_special_tokens=False).input_ids
        head = len(tiny.tokenizer("<answer>", add_special_tokens=False).input_ids)
        size = len(tiny.tokenizer(f"<answer>{alias}", add_special_tokens=False).input_ids) - head
        with torch.no_grad():
            log_p = torch.log_softmax(tiny.model(input_ids=torch.tensor([prompt + reply])).logits[0].float(), -1)
        positions = range(len(prompt) + head, len(prompt) + head + size)
        return float(np.exp(np.mean([log_p[i - 1, (prompt + reply)[i]].item() for i in positions])))

    first = AnswerScorer(tiny, "<answer>{answer}</answer>")
    ids, start = first.answer_tokens(task)[0]
    assert tiny.tokenizer.decode(ids[start:]) == "Oranjestad"
    # Batched with a repeat and in any order, the prefix shared by both prompts computed once and kept.
    found = first.probabilities([prompts[1], prompts[0], prompts[1]], task)
    expected = [by_hand(prompts[1], "Oranjestad"), by_hand(prompts[0], "Oranjestad")]
    assert found == pytest.approx([expected[0], expected[1], expected[0]], rel=1e-4)
    likeliest = AnswerScorer(tiny, "<answer>{answer}</answer>", most_probable=True).probabilities(prompts, task)
    assert likeliest == pytest.approx([max(by_hand(p, a) for a in task.answer) for p in prompts], rel=1e-4)
    assert all(0 < p <= 1 for p in likeliest)


def test_a_long_answer_is_cut_with_a_warning_never_a_crash(tiny):
    prompt = _chat(tiny, "Recite the list.")
    words = " ".join(f"item{i}" for i in range(3000))  # ~6000 tokens: past the tiny model's 4096 positions
    with pytest.warns(UserWarning, match="max_answer_tokens"):
        ids, start = AnswerScorer(tiny, "<answer>{answer}</answer>", max_answer_tokens=5).answer_tokens(
            Task("long", "train", "q", answer=words))[0]
    assert len(ids) - start == 5
    scorer = AnswerScorer(tiny, "<answer>{answer}</answer>", max_answer_tokens=10**6)
    with pytest.warns(UserWarning, match="context of 4096"):
        (p,) = scorer.probabilities([prompt], Task("long", "train", "q", answer=words))
    assert 0 < p < 1


def test_an_env_without_answers_or_an_answer_format_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="has no reference answer"):
        train(IGPOConfig(**{**LOOKUP, "env_id": "test/Unanswered-v0"}, output_dir=str(tmp_path)), progress=False)
    with pytest.raises(ValueError, match="declares no answer format"):
        env_answer_format(IGPOConfig(), "agentgym/TextWorld-CoinCollector-v0")
    assert env_answer_format(IGPOConfig(), "agentgym/SearchQA-Factbook-v0") == "<answer>{answer}</answer>"


@pytest.mark.parametrize("settings, message", [
    ({"igpo_mode": "code"}, "needs layout=episode"),
    ({"igpo_mode": "code", "layout": "episode", "prompt_style": "chat", "gamma": 0.9}, "leave gamma at 1"),
    ({"igpo_mode": "grpo"}, "igpo_mode must be one of"),
    ({"answer_alias": "last"}, "answer_alias must be one of"),
    ({"answer_format": "<answer></answer>"}, "exactly once"),
])
def test_bad_settings_are_clear_errors(settings, message):
    with pytest.raises(ValueError, match=message):
        IGPOConfig(**settings)


@pytest.mark.slow  # ~3 min on a quiet 2-core machine
def test_igpo_records_gains_and_learns_on_a_lookup_env(tmp_path):
    result = train(IGPOConfig(**LOOKUP, iterations=10, output_dir=str(tmp_path)), progress=False)
    assert result["before"]["eval_success_rate"] <= 0.5
    assert result["after"]["eval_success_rate"] >= 0.9
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    trained = [row for row in rows if "samples" in row]
    assert len(trained) == 10
    for row in trained:
        assert 0 < row["p_gt_first"] < 1 and row["seconds_teacher_forced"] > 0
    searched = [row for row in trained if "ig_mean_turn0" in row]  # an iteration with a search (a gain)
    assert searched and all(0 <= row["ig_negative_share"] <= 1 for row in searched)
    first = list(read_jsonl(tmp_path / "trajectories" / "iteration-0001.jsonl"))
    for trajectory in first:
        p = [turn.annotations["p_gt"] for turn in trajectory.turns]
        gains = [turn.annotations["information_gain"] for turn in trajectory.turns]
        assert gains[:-1] == pytest.approx(np.diff(p).tolist()) and gains[-1] is None
        last = trajectory.turns[-1]
        assert last.annotations["igpo_reward"] == (last.info["f1"] if trajectory.terminated else -2.0)
    # The advantages trained with are the paper's, from the recorded rewards.
    rewards = [turn.annotations["igpo_reward"] for t in first for turn in t.turns]
    assert [turn.advantage for t in first for turn in t.turns] == pytest.approx(
        paper_advantages(turn_stats(first), rewards).tolist())
    assert {0.0, 1.0} <= {round(r, 6) for r in rewards}  # right and wrong answers
    assert any(turn.annotations["information_gain"] for t in first for turn in t.turns[:-1])  # and searches
    assert "Held-out split" in (tmp_path / "report.md").read_text()


def test_no_prompt_contains_the_answer_and_code_mode_trains_the_concatenated_episode(tmp_path):
    config = IGPOConfig(env_id="test/SearchQA-Sentinel-v0", env_kwargs={"max_turns": 3}, model="tiny", lora_rank=0,
                        prompt_style="chat", layout="episode", igpo_mode="code", max_new_tokens=8,
                        tasks_per_iteration=2, group_size=3, num_envs=3, eval_split="dev", seed=0,
                        output_dir=str(tmp_path))
    algorithm = InformationGain(config)
    policy = build_policy(config)
    engine, evaluator = heldout.rollout_engines(config)
    evaluator.close()
    try:
        rollouts = Rollouts(engine, policy, heldout.matching_tasks(engine, config), config)
        algorithm.prepare(rollouts)
        batches = []
        for iteration in (1, 2):  # the second rollout runs after the first's teacher-forced passes
            row: dict = {}
            trajectories = algorithm.collect(rollouts, iteration, row)
            batches.append((trajectories, algorithm.samples(policy, trajectories, row)))
    finally:
        engine.close()
    sentinel = policy.tokenizer(SENTINEL, add_special_tokens=False).input_ids
    for trajectories, samples in batches:
        for turn in (turn for t in trajectories for turn in t.turns):
            assert SENTINEL not in json.dumps(turn.prompt) and SENTINEL not in policy.tokenizer.decode(turn.prompt_token_ids)
            assert not any(turn.prompt_token_ids[i:i + len(sentinel)] == sentinel
                           for i in range(len(turn.prompt_token_ids)))
            assert 0 < turn.annotations["p_gt"] < 1
        # One sequence per episode (or more where a re-tokenised reply broke the chain); advantages only on
        # action tokens, and each turn's record keeps the mean of its tokens'.
        assert len(samples) >= len(trajectories)
        for sample in samples:
            assert all(a == 0 for a, m in zip(sample.token_advantages, sample.loss_mask) if not m)
        assert any(a != 0 for s in samples for a in s.token_advantages)
        assert all(turn.advantage is not None for t in trajectories for turn in t.turns)
