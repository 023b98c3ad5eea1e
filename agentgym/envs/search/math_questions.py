"""Compositional Factbook questions that need search *and* calculation, generated from the Factbook's
numeric fields (population, total area, GDP at the official exchange rate, land borders):

* ``density`` — the population density of X (population / total area);
* ``population_difference`` — how many more people live in A than in B;
* ``gdp_ratio`` — how many times larger A's GDP is than B's;
* ``gdp_per_person`` (held out) — X's GDP divided by its population;
* ``combined_area`` (held out, 3 searches and a sum) — the total area of X and of its longest-border
  neighbour.

Each question carries its plan (searches whose results feed the calculator) and is kept only if the
scripted planner solves it through the real tools — the BM25 search returns the passages, the numbers are
read from the results as the memory shows them, the calculator computes, the offline judge accepts — within
``MAX_TOOL_STEPS``. Splits hold disjoint countries (``train``/``dev``/``test``, as the search questions);
``test_ood`` holds the held-out regions' countries and the held-out compositions, asked only about ``test``
and held-out-region countries (a neighbour included). Regenerate the committed file with
``python -m agentgym.envs.search.math_questions``.

:class:`FactbookMathEnv` is the plain single-agent search env on these questions (``<search>`` and
``<answer>``, numeric answers judged within a relative tolerance): the baseline without tools to compute.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

from agentgym.contract import Frame, Task, state_key
from agentgym.envs.search import SEARCH_TOOL
from agentgym.envs.search.corpus import load_corpus
from agentgym.envs.search.env import SearchQAEnv, parse_tool_call
from agentgym.envs.search.questions import country_facts, split_of
from agentgym.systems.agentflow import AgentFlowEnv
from agentgym.systems.judge import OfflineJudge
from agentgym.systems.tools import calculate, format_number

MATH_QUESTIONS_FILE = "search/factbook_math_questions.jsonl"
MAX_TOOL_STEPS = 4
"""The longest composition (``combined_area``) needs three searches and a calculation."""
HELD_OUT_COMPOSITIONS = ("gdp_per_person", "combined_area")
MATH_PLAN = "agentgym.envs.search.agentflow:math_plan"

_NUMBER = r"([\d,.]*\d(?: (?:thousand|million|billion|trillion))?)"
FIELDS = {
    # name: (passage id suffix, section, field, the search, the value's pattern in the passage)
    "population": ("People and Society/Population/0", "People and Society", "Population",
                   "{name} population total male female", r"(?:total: )?" + _NUMBER),
    "area": ("Geography/Area/0", "Geography", "Area", "{name} area total sq km", r"total ?: " + _NUMBER + " sq km"),
    "gdp": ("Economy/GDP (official exchange rate)/0", "Economy", "GDP (official exchange rate)",
            "{name} GDP official exchange rate", r"\$" + _NUMBER),
}


def _value_pattern(name: str, field: str) -> str:
    """The pattern that reads ``field`` of country ``name`` from a search result (its passage's title)."""
    _, section, title, _, value = FIELDS[field]
    return re.escape(f"(Title: {name} - {section}: {title}) ") + value


def _search(name: str, field: str, variable: str) -> dict[str, Any]:
    return {"tool": "search", "sub_goal": FIELDS[field][3].format(name=name),
            "extract": {variable: _value_pattern(name, field)}}


def numeric_facts() -> dict[str, dict[str, Any]]:
    """Per country code: name, region, longest-border neighbour's code and each numeric field's text and
    value, read from the corpus passages the search returns."""
    passages = {p.id: p.text for p in load_corpus("factbook")}
    facts = country_facts()
    by_name = {fact["name"]: code for code, fact in facts.items()}
    out = {}
    for code, fact in facts.items():
        entry = {"name": fact["name"], "region": fact["region"], "neighbour": by_name.get(fact["longest_border"] or "")}
        for field, (suffix, *_, pattern) in FIELDS.items():
            found = re.match(pattern, passages.get(f"{code}/{suffix}", ""))
            if found and calculate(found.group(1)) > 0:  # a zero (uninhabited islands) cannot be divided by
                entry[field] = (found.group(1), float(calculate(found.group(1))))
        out[code] = entry
    return out


def _candidates(facts: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[str, list[str]] = {}
    for code, fact in sorted(facts.items()):
        groups.setdefault(split_of("density", code, fact["region"]), []).append(code)
    rows = []

    def add(template, split, codes, question, plan, value):
        rows.append({"id": f"{template}-{'-'.join(codes)}", "template": template, "question": question,
                     "answers": [format_number(value)], "plan": plan,
                     "gold_queries": [step["sub_goal"] for step in plan if step["tool"] == "search"],
                     "countries": list(codes), "region": facts[codes[0]]["region"], "split": split})

    for split, codes in sorted(groups.items()):
        for code in codes:
            fact, name = facts[code], facts[code]["name"]
            if "population" in fact and "area" in fact:
                add("density", split, [code], f"What is the population density of {name} in people per sq km "
                    "(population divided by total area)?",
                    [_search(name, "population", "p"), _search(name, "area", "a"),
                     {"tool": "calculator", "sub_goal": "{p} / {a}"}], fact["population"][1] / fact["area"][1])
        for field, template, question, operation in (
                ("population", "population_difference", "How many more people live in {a} than in {b}?", "-"),
                ("gdp", "gdp_ratio", ("How many times larger is the GDP (official exchange rate) of {a} than "
                                      "that of {b}?"), "/")):
            having = [code for code in codes if field in facts[code]]
            for first, second in zip(having, having[1:]):
                big, small = sorted((first, second), key=lambda c: -facts[c][field][1])
                x, y = facts[big][field][1], facts[small][field][1]
                add(template, split, [big, small],
                    question.format(a=facts[big]["name"], b=facts[small]["name"]),
                    [_search(facts[big]["name"], field, "x"), _search(facts[small]["name"], field, "y"),
                     {"tool": "calculator", "sub_goal": "{x} " + operation + " {y}"}], x - y if operation == "-" else x / y)
    held_out = [code for split in ("test", "test_ood") for code in groups.get(split, [])]
    for code in held_out:
        fact, name = facts[code], facts[code]["name"]
        if "gdp" in fact and "population" in fact:
            add("gdp_per_person", "test_ood", [code], f"What is the GDP (official exchange rate) per person of "
                f"{name} in US dollars?", [_search(name, "gdp", "g"), _search(name, "population", "p"),
                                          {"tool": "calculator", "sub_goal": "{g} / {p}"}],
                fact["gdp"][1] / fact["population"][1])
        near = fact["neighbour"]
        if near in held_out and "area" in fact and "area" in facts[near]:  # no train or dev country either
            other = facts[near]["name"]
            border = {"tool": "search", "sub_goal": f"{name} land boundaries border countries",
                      "extract": {"n": rf"border countries:[^(]*?({re.escape(other)}) [\d,.]+ km"}}
            add("combined_area", "test_ood", [code, near], f"What is the combined total area in sq km of {name} "
                "and the country that shares the longest land border with it?",
                [border, _search(name, "area", "a"),
                 {**_search(other, "area", "b"), "sub_goal": FIELDS["area"][3].replace("{name}", "{n}")},
                 {"tool": "calculator", "sub_goal": "{a} + {b}"}], fact["area"][1] + facts[near]["area"][1])
    return rows


def _task(row: dict[str, Any]) -> Task:
    payload = {key: row[key] for key in ("template", "plan", "gold_queries", "countries")}
    return Task(row["id"], row["split"], row["question"], payload=payload, answer=row["answers"])


class _Candidates(AgentFlowEnv):
    """The AgentFlow system with scripted modules on candidate questions (before they are committed)."""

    def __init__(self, rows: list[dict[str, Any]]):
        self._rows = rows
        super().__init__("train", base="", tools=(SEARCH_TOOL, "calculator"), plan=MATH_PLAN,
                         max_tool_steps=MAX_TOOL_STEPS)

    def load_tasks(self, split: str) -> list[Task]:
        return [_task(row) for row in self._rows]


def solved_by_the_scripted_planner(rows: list[dict[str, Any]]) -> list[bool]:
    """Whether the scripted planner, through the real tools and the offline judge, answers each question."""
    env, solved = _Candidates(rows), []
    for row in rows:
        env.reset(options={"task_id": row["id"]})
        info: dict[str, Any] = {"won": False}
        while (action := env.unwrapped.expert_action()) is not None:
            *_, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        solved.append(bool(info["won"]))
    env.close()
    return solved


def generate() -> list[dict[str, Any]]:
    rows = _candidates(numeric_facts())
    return [row for row, ok in zip(rows, solved_by_the_scripted_planner(rows)) if ok]


def load_math_questions() -> list[dict[str, Any]]:
    text = resources.files("agentgym.tasks").joinpath(MATH_QUESTIONS_FILE).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class FactbookMathEnv(SearchQAEnv):
    """The single-agent search env (``<search>``/``<answer>``, see :class:`SearchQAEnv`) on the compositional
    questions of this module: the agent must do the arithmetic itself. An answer is judged by the offline
    judge (numbers within ``rel_tol``, 1%); ``info["judge"]`` has its verdict and reason. The oracle issues
    the gold searches and answers the reference value.

    Arguments: those of :class:`SearchQAEnv` (but ``reward``), and ``rel_tol``.
    """

    def __init__(self, split: str = "train", *, rel_tol: float = 0.01, **kwargs: Any):
        super().__init__(split, **kwargs)
        self.judge = OfflineJudge(rel_tol)

    def load_tasks(self, split: str) -> list[Task]:
        return [_task(row) for row in load_math_questions() if row["split"] == split]

    def _act(self, action: str) -> Frame:
        call = parse_tool_call(action)
        if call is None or call[0] != "answer" or not call[1]:
            return super()._act(action)
        verdict = self.judge.judge(self.task.instruction, call[1], self.task.answer)
        return Frame(text=f"Your answer: {call[1]}", state_key=state_key(self.task.id, *self._queries, call[1]),
                     reward=verdict.reward, terminated=True, won=verdict.correct,
                     info={"answer": call[1], "judge": {"correct": verdict.correct, "reason": verdict.reason}})


if __name__ == "__main__":
    target = Path(str(resources.files("agentgym.tasks").joinpath(MATH_QUESTIONS_FILE)))
    questions = generate()
    target.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in questions), encoding="utf-8")
    counts = Counter((question["split"], question["template"]) for question in questions)
    print(f"{len(questions)} questions written to {target}")
    for (split, template), count in sorted(counts.items()):
        print(f"  {split:9} {template:22} {count}")
