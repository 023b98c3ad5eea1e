"""Search QA: every committed question is answerable through the retriever, the protocol parses both
forms, rewards match aliases, and the splits hold out what they say."""

from __future__ import annotations

import json

import pytest

import agentgym
from agentgym.envs.search.corpus import Passage, jsonl_passages
from agentgym.envs.search.env import normalize_answer, parse_tool_call, token_f1
from agentgym.envs.search.questions import HELD_OUT_REGIONS, HELD_OUT_TEMPLATES, generate, load_questions
from agentgym.envs.search.retriever import BM25Retriever

SEARCH = "agentgym/SearchQA-Factbook-v0"


@pytest.mark.parametrize("split", ["train", "dev", "test", "test_ood"])
def test_an_oracle_issuing_the_gold_queries_finds_every_answer(split):
    env = agentgym.make(SEARCH, split=split)
    for task in env.unwrapped.tasks:
        observation, info = env.reset(options={"task_id": task.id})
        seen = []
        while (action := env.unwrapped.expert_action()) is not None:
            observation, reward, terminated, truncated, info = env.step(action)
            seen.append(observation["text"])
            if terminated or truncated:
                break
        assert info["won"] and reward == 1.0 and info["turn"] == task.payload["hops"] + 1, task.id
        titles = [text for text in seen if text.startswith("<information>")]
        assert len(titles) == task.payload["hops"]
    env.close()


def test_committed_questions_are_what_the_generator_produces():
    committed = load_questions()
    assert generate() == committed
    assert len(committed) > 500 and len({row["id"] for row in committed}) == len(committed)


def test_splits_hold_out_countries_regions_and_compositions():
    rows = load_questions()
    countries = {split: {r["country"] for r in rows if r["split"] == split} for split in ("train", "dev", "test")}
    assert not (countries["train"] & countries["dev"] or countries["train"] & countries["test"]
                or countries["dev"] & countries["test"])
    for row in rows:
        held_out = row["region"] in HELD_OUT_REGIONS or row["template"] in HELD_OUT_TEMPLATES
        assert (row["split"] == "test_ood") == held_out
    assert {r["hops"] for r in rows if r["split"] == "test_ood"} == {1, 2, 3}
    assert max(r["hops"] for r in rows if r["split"] == "train") == 2


def test_protocol_parses_tags_and_tool_calls_and_rejects_the_rest():
    assert parse_tool_call("I should look it up. <search>Chad capital</search>") == ("search", "Chad capital")
    assert parse_tool_call("<search>a</search> then <answer> Paris </answer>") == ("answer", "Paris")
    assert parse_tool_call('{"name": "search", "arguments": {"query": "Chad"}}') == ("search", "Chad")
    assert parse_tool_call('{"name": "answer", "arguments": "{\\"answer\\": \\"Paris\\"}"}') == ("answer", "Paris")
    assert parse_tool_call("The answer is Paris.") is None
    assert parse_tool_call('{"name": "delete", "arguments": {}}') is None

    env = agentgym.make(SEARCH, split="test")
    task = env.unwrapped.tasks[0]
    env.reset(options={"task_id": task.id})
    observation, reward, terminated, _, info = env.step("Paris, I think.")
    assert info["invalid_action"] and not terminated and "<search>" in observation["text"]
    observation, _, _, _, info = env.step(f"<search>{task.payload['gold_queries'][0]}</search>")
    assert observation["text"].startswith("<information>Doc 1 (Title: ") and not info["invalid_action"]
    observation, reward, terminated, _, info = env.step("<answer>Atlantis</answer>")
    assert terminated and reward == 0.0 and not info["won"] and info["f1"] == 0.0
    env.close()


def test_answers_match_after_normalisation():
    assert normalize_answer("The  Gambia!") == normalize_answer("gambia")
    assert token_f1("Republic of the Congo", "Democratic Republic of the Congo") == pytest.approx(2 * 1 * 0.75 / 1.75)
    env = agentgym.make(SEARCH, split="train")
    task = next(t for t in env.unwrapped.tasks if len(t.answer) > 1)  # a country with long-form aliases
    env.reset(options={"task_id": task.id})
    *_, info = env.step(f"<answer>{task.answer[-1].upper()}</answer>")
    assert info["won"]
    env.close()


def test_f1_reward_gives_partial_credit():
    env = agentgym.make(SEARCH, split="train", reward="f1")
    task = next(t for t in env.unwrapped.tasks if len(t.answer[0].split()) >= 2)
    env.reset(options={"task_id": task.id})
    _, reward, _, _, info = env.step(f"<answer>{task.answer[0].split()[0]}</answer>")
    assert 0 < reward < 1 and reward == info["f1"] and info["em"] == 0.0
    env.close()
    with pytest.raises(ValueError, match="reward must be"):
        agentgym.make(SEARCH, split="train", reward="bleu")


def test_a_person_can_play_it_in_the_terminal():
    import subprocess
    import sys

    script = "I will look it up.\n<search>Chad capital name</search>\n"
    result = subprocess.run([sys.executable, "-m", "agentgym.cli", "play", SEARCH, "--split", "dev", "--seed", "0"],
                            input=script, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Question:" in result.stdout and "Invalid action" in result.stdout
    assert "<information>Doc 1 (Title: Chad - Government: Capital)" in result.stdout


def test_a_users_jsonl_corpus_is_indexed_and_searched(tmp_path):
    path = tmp_path / "corpus.jsonl"
    rows = [{"id": "1", "title": "Owls", "text": "Owls hunt at night."},
            {"id": "2", "title": "Bees", "text": "Bees make honey in hives."}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    retriever = BM25Retriever(jsonl_passages(path), cache_root=tmp_path)
    assert retriever.search("who makes honey", k=1) == [Passage("2", "Bees", "Bees make honey in hives.")]
    assert BM25Retriever(jsonl_passages(path), cache_root=tmp_path).search("night", k=1)[0].id == "1"  # cached
    path.write_text('{"title": "no id"}\n')
    with pytest.raises(ValueError, match="corpus.jsonl:1"):
        jsonl_passages(path)
