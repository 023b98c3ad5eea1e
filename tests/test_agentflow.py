"""AgentFlow as a planner-view env: the judge, the planner's protocol, the scripted planner solving every
question through the real tools, module calls in the turn records, the compositional questions and their
splits, Flow-GRPO's advantages on planner turns (only planner tokens are trained), and modules served by a
real `agentgym serve-policy` through the OpenAI client."""

from __future__ import annotations

import numpy as np
import pytest
from test_openai_policy import API_KEY, server  # noqa: F401 - the served-tiny-model fixture

import agentgym
from agentgym.envs.search import SEARCH_TOOL
from agentgym.envs.search.math_questions import HELD_OUT_COMPOSITIONS, generate, load_math_questions
from agentgym.envs.search.questions import HELD_OUT_REGIONS
from agentgym.hf_policy import HFPolicy
from agentgym.policies import OraclePolicy
from agentgym.prompting import PromptTemplate
from agentgym.records import read_jsonl, write_jsonl
from agentgym.rollout import RolloutEngine
from agentgym.systems import AgentFlowEnv, OfflineJudge, parse_planner_reply
from agentgym.systems.judge import parse_number

QA, MATH = "agentgym/AgentFlow-FactbookQA-v0", "agentgym/AgentFlow-FactbookMath-v0"
MATH_PLAN = "agentgym.envs.search.agentflow:math_plan"


def test_offline_judge_exact_bag_of_words_and_numeric_matches():
    judge = OfflineJudge(rel_tol=0.01)
    assert judge.judge("q", "The  Gambia!", ["Gambia"]).correct
    assert judge.judge("q", "Congo Republic of the", ["Republic of the Congo"]).reason.startswith("the same words")
    near = judge.judge("q", "Republic of the Congo", ["Democratic Republic of the Congo"])
    assert not near.correct and near.f1 == pytest.approx(2 * 1 * 0.75 / 1.75)
    assert judge.judge("q", "about 15.3 people per sq km", ["15.32243302"]).correct  # 0.15% off, units stripped
    assert judge.judge("q", "$32,822,395", ["32822395"]).correct
    assert judge.judge("q", "1.284 million sq km", ["1284000"]).correct
    wrong = judge.judge("q", "15.7", ["15.32243302"])
    assert not wrong.correct and "relative error 0.025 > 0.01" in wrong.reason
    assert judge.judge("q", "", ["Chad"]).reason == "no answer was given"
    assert parse_number("19,674,004 (2025 est.)") is None  # two numbers: not one value
    with pytest.raises(ValueError, match="rel_tol"):
        OfflineJudge(rel_tol=2)


def test_planner_replies_in_both_forms_and_the_rest_are_unreadable():
    tools = ["search", "calculator", "python"]
    assert parse_planner_reply("search: Chad population total", tools) == ("search", "Chad population total")
    assert parse_planner_reply("Sub-goal: 3 + 4; Tool: calculator", tools) == ("calculator", "3 + 4")
    assert parse_planner_reply("Tool Name: search | Sub-goal: Chad area", tools) == ("search", "Chad area")
    assert parse_planner_reply("Answer: N'Djamena", tools) == ("answer", "N'Djamena")
    for reply in ("browse: Chad", "search:", "I think we should look it up", ""):
        assert parse_planner_reply(reply, tools) is None, reply


@pytest.mark.parametrize("env_id", [QA, MATH])
def test_the_scripted_planner_solves_every_held_out_question_through_the_tools(env_id):
    for split in ("test", "test_ood"):
        with RolloutEngine(env_id, split, num_envs=4) as engine:
            trajectories = engine.run(OraclePolicy(), engine.plan(seed=0))
        assert len(trajectories) > 50 and all(t.won for t in trajectories), split
        for trajectory in trajectories:
            last = trajectory.turns[-1]
            assert last.terminated and last.reward == 1.0 and last.info["judge"]["correct"]
            calls = sum(turn.info["tool_calls"] for turn in trajectory.turns)
            assert 1 <= calls <= (3 if env_id == QA else 4) and not any(t.info["tool_errors"] for t in trajectory.turns)


def test_every_module_call_is_in_the_turn_record_and_survives_jsonl(tmp_path):
    with RolloutEngine(MATH, "test", num_envs=1, template=PromptTemplate(history_window=0)) as engine:
        (trajectory,) = engine.run(OraclePolicy(), engine.plan(task_ids=["density-cd"], run_id="r"))
    write_jsonl(tmp_path / "flow.jsonl", [trajectory])
    (loaded,) = read_jsonl(tmp_path / "flow.jsonl")
    assert loaded.to_dict() == trajectory.to_dict()
    search, _, calculator = loaded.turns
    assert search.action == "search: Chad population total male female"
    assert search.info["modules"]["tool"]["output"].count("Doc ") == 3
    assert search.info["modules"]["verifier"]["output"] == "CONTINUE: no answer or computed value yet"
    # The planner computes from what the tools returned, as its memory shows it.
    assert "19,674,004" in calculator.prompt[-1]["content"] and calculator.action == \
        "calculator: 19,674,004 / 1.284 million"
    final = calculator.info["modules"]
    assert final["tool"] == {"name": "calculator", "command": "19,674,004 / 1.284 million", "output": "15.32243302",
                             "error": None, "seconds": final["tool"]["seconds"]}
    assert final["verifier"]["output"] == "STOP: calculator computed a value"
    assert final["generator"]["output"] == "15.32243302" == calculator.info["final_answer"]
    assert final["judge"]["correct"] and final["judge"]["reason"].startswith("exact match")


def test_unreadable_replies_tool_errors_the_step_cap_and_a_wrong_answer():
    env = AgentFlowEnv("test", base="agentgym/SearchQA-FactbookMath-v0", tools=[SEARCH_TOOL, "calculator"],
                       plan=MATH_PLAN, max_tool_steps=2)
    assert env.max_turns == 4
    observation, info = env.reset(options={"task_id": "density-cd"})
    assert "Memory:\n(empty)" in observation["text"] and "Query: What is the population density of Chad" in info[
        "instruction"]
    observation, reward, terminated, _, info = env.step("browse: Chad")
    assert info["invalid_action"] and not terminated and "not understood" in observation["text"]
    assert env.memory.steps == [] and env.expert_action() == "search: Chad population total male female"
    *_, info = env.step("calculator: Chad population / area")
    assert info["tool_errors"] == 1 and info["modules"]["tool"]["error"].startswith("calculator: ")
    *_, info = env.step("search: Chad area total sq km")
    assert info["tool_calls"] == 1 and env.memory.tool_steps == 2 and env.expert_action() is None  # off the plan
    _, reward, terminated, _, info = env.step("search: Chad population")  # no tool steps left: no tool runs
    assert terminated and reward == 0.0 and info["tool_calls"] == 0 and "no tool steps left" in str(info["modules"])
    assert info["judge"] == {"correct": False, "reason": "no answer was given"}
    env.reset(options={"task_id": "density-cd"})
    _, reward, terminated, _, info = env.step("answer: 12")
    assert terminated and reward == 0.0 and info["final_answer"] == "12" and "numeric mismatch" in info["judge"]["reason"]
    env.close()


def test_compositional_questions_are_generated_verified_and_split_by_country():
    committed = load_math_questions()
    assert generate() == committed  # regenerating (and re-verifying through the tools) gives the committed file
    assert len(committed) > 500 and len({row["id"] for row in committed}) == len(committed)
    countries = {split: {c for r in committed if r["split"] == split for c in r["countries"]}
                 for split in ("train", "dev", "test")}
    assert not (countries["train"] & countries["dev"] or countries["train"] & countries["test"]
                or countries["dev"] & countries["test"])
    for row in committed:
        held_out = row["region"] in HELD_OUT_REGIONS or row["template"] in HELD_OUT_COMPOSITIONS
        assert (row["split"] == "test_ood") == held_out, row["id"]
        if row["template"] in HELD_OUT_COMPOSITIONS:
            assert not set(row["countries"]) & (countries["train"] | countries["dev"])
    templates = {split: {r["template"] for r in committed if r["split"] == split} for split in ("train", "test_ood")}
    assert templates["train"] == {"density", "population_difference", "gdp_ratio"}
    assert set(HELD_OUT_COMPOSITIONS) <= templates["test_ood"]
    single = agentgym.make("agentgym/SearchQA-FactbookMath-v0", split="test")
    single.reset(options={"task_id": "density-cd"})
    *_, info = single.step("<answer>15.3</answer>")  # the single agent's arithmetic, judged within 1%
    assert info["won"] and info["judge"]["reason"].startswith("numeric match")
    single.close()


def test_flow_grpo_broadcasts_the_judged_outcome_and_trains_only_planner_tokens():
    from agentgym.trainers.grpo import GroupRelative, GRPOConfig
    from agentgym.trainers.samples import layout_samples
    from agentgym.trainers.sft import tokenized

    class Guess(OraclePolicy):
        """Follows the scripted planner but proposes a wrong answer instead of computing."""

        def act(self, requests):
            return [agentgym.Generation(r.expert_action if "calculator" not in r.expert_action else "answer: 7")
                    for r in requests]

    template = PromptTemplate(history_window=0)
    with RolloutEngine(MATH, "test", num_envs=2, template=template) as engine:
        right = engine.run(OraclePolicy(), engine.plan(task_ids=["density-cd"], group_size=2, run_id="g"))
        wrong = engine.run(Guess(), engine.plan(task_ids=["density-cd"], group_size=2, run_id="w"))
    for trajectory in wrong:  # one group of four episodes on the same question
        trajectory.group_id, trajectory.episode_id = "g-g0", trajectory.episode_id + "-guess"
        for turn in trajectory.turns:
            turn.group_id, turn.episode_id = trajectory.group_id, trajectory.episode_id
    group = [right[0], wrong[0], wrong[1], right[1]]
    assert [t.total_reward for t in group] == [1, 0, 0, 1] and [t.num_turns for t in group] == [3, 3, 3, 3]
    wrong[1].turns.pop(1)  # trajectory lengths 3, 3, 2, 3: the two statistics now differ
    flow = GroupRelative(GRPOConfig(group_stats="trajectories", invalid_penalty=0.0))
    advantages = flow.advantages(None, group)
    expected = [0.8660] * 3 + [-0.8660] * 3 + [-0.8660] * 2 + [0.8660] * 3
    assert advantages == pytest.approx(expected, abs=1e-4)
    turn_weighted = GroupRelative(GRPOConfig(group_stats="turns", invalid_penalty=0.0)).advantages(None, group)
    assert turn_weighted[0] != pytest.approx(advantages[0], abs=1e-3)
    # Per-turn samples: the prompt is the planner's context (the executor's, tool's and verifier's text is
    # observation), the trained tokens are exactly the planner's reply.
    policy = HFPolicy("tiny", mode="generate")
    ready = [tokenized(t, policy, "generate") for t in group]
    samples = layout_samples(ready, policy, list(advantages), "per-turn")
    for sample, turn in zip(samples, [turn for t in group for turn in t.turns]):
        assert policy.tokenizer.decode(sample.response_ids, skip_special_tokens=True) == turn.action
        assert turn.turn_index == 0 or "Verifier: CONTINUE" in policy.tokenizer.decode(sample.prompt_ids)
    assert np.isclose(samples[0].advantage, 0.8660, atol=1e-4)


def test_executor_and_judge_served_by_agentgym_serve_policy(server):  # noqa: F811 - the fixture
    served = f"openai:tiny@{server}"
    env = AgentFlowEnv("test", base="agentgym/SearchQA-FactbookMath-v0", tools=[SEARCH_TOOL, "calculator"],
                       plan=MATH_PLAN, executor=served, judge=served,
                       module_kwargs={"api_key": API_KEY, "max_tokens": 12})
    env.reset(options={"task_id": "density-cd"})
    *_, info = env.step(env.expert_action())
    executor = info["modules"]["executor"]
    assert executor["backend"] == served and executor["input"][-1]["content"].count("Sub-goal: Chad population") == 1
    (local,) = HFPolicy("tiny", mode="generate", temperature=0, max_new_tokens=12).generate([executor["input"]])
    assert executor["output"] == local.text.strip()  # the served model's greedy reply, through the OpenAI client
    assert info["modules"]["tool"]["name"] == "search"  # whatever the executor wrote ran (or failed clearly)
    _, reward, terminated, _, info = env.step("answer: 15.3")
    judge = info["modules"]["judge"]
    assert terminated and judge["judge"] == served and "Reference answer: 15.32243302" in judge["prompt"][-1]["content"]
    assert isinstance(judge["reply"], str) and judge["reason"] and reward == float(judge["correct"])
    env.close()
