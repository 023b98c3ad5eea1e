"""Verifiable 1-3 hop questions generated from the Factbook's own fields, kept only if an oracle that
issues the gold queries retrieves every supporting passage (so every question is answerable through the
retriever). Regenerate the committed file with ``python -m agentgym.envs.search.questions``."""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

from agentgym.envs.search.corpus import clean, country_name, factbook_files, load_corpus
from agentgym.envs.search.retriever import BM25Retriever

QUESTIONS_FILE = "search/factbook_questions.jsonl"
TOP_K = 3
HELD_OUT_REGIONS = ("australia-oceania", "central-asia")
"""Countries of these Factbook regions appear only in ``test_ood``."""
HELD_OUT_TEMPLATES = ("longest_border_of_capital", "capital_of_longest_border_of_capital")
"""Compositions never trained on (the capital-to-country hop followed by others); ``test_ood`` only."""

_BORDER = re.compile(r"([^;:]+?)\s+([\d,.]+)\s*km")


def country_facts() -> dict[str, dict[str, Any]]:
    """Per country code: name, aliases, region, capital (when it is one plain name) and the neighbour
    with the longest land border."""
    facts = {}
    for path in factbook_files():
        data = json.loads(path.read_text(encoding="utf-8"))
        names = data.get("Government", {}).get("Country name", {})
        aliases = {clean(names.get(form, {}).get("text", "")) for form in names if form.endswith("form")}
        capital = clean(data.get("Government", {}).get("Capital", {}).get("name", {}).get("text", ""))
        borders = clean(data.get("Geography", {}).get("Land boundaries", {}).get("border countries", {}).get("text", ""))
        lengths = [(float(km.replace(",", "")), name.strip()) for name, km in _BORDER.findall(borders.split(" note")[0])]
        lengths.sort(reverse=True)
        facts[path.stem] = {
            "name": country_name(data, path.stem),
            "aliases": sorted(a for a in aliases if a and a.lower() != "none"),
            "region": path.parent.name,
            "capital": capital if capital and not re.search(r"[;(),]", capital) and capital.lower() != "none" else None,
            # A unique longest border only (ties would make the answer ambiguous).
            "longest_border": lengths[0][1] if lengths and (len(lengths) == 1 or lengths[0][0] > lengths[1][0]) else None,
        }
    return facts


def generate(retriever: BM25Retriever | None = None) -> list[dict[str, Any]]:
    facts = country_facts()
    by_name = {fact["name"]: code for code, fact in facts.items()}
    passages = load_corpus("factbook")
    retriever = retriever or BM25Retriever(passages)

    def capital_hop(code):
        return f"{facts[code]['name']} capital name", f"{code}/Government/Capital/0"

    def reverse_capital_hop(code):
        return f"capital name {facts[code]['capital']}", f"{code}/Government/Capital/0"

    def border_hop(code):
        return f"{facts[code]['name']} land boundaries border countries", f"{code}/Geography/Land boundaries/0"

    def neighbour(code):
        return by_name.get(facts[code]["longest_border"] or "")

    questions = []
    for code, fact in sorted(facts.items()):
        name, capital, near = fact["name"], fact["capital"], neighbour(code)
        candidates = []
        if capital:
            candidates.append(("capital_of", f"What is the capital of {name}?", [capital_hop(code)], [capital]))
            candidates.append(("country_of_capital", f"{capital} is the capital of which country?",
                               [reverse_capital_hop(code)], [name, *fact["aliases"]]))
        if near:
            candidates.append(("longest_border", f"Which country shares the longest land border with {name}?",
                               [border_hop(code)], [facts[near]["name"], *facts[near]["aliases"]]))
            if facts[near]["capital"]:
                candidates.append(("capital_of_longest_border",
                                   (f"What is the capital of the country that shares the longest land border with "
                                    f"{name}?"), [border_hop(code), capital_hop(near)], [facts[near]["capital"]]))
            if capital:
                candidates.append(("longest_border_of_capital",
                                   (f"Which country shares the longest land border with the country whose capital "
                                    f"is {capital}?"), [reverse_capital_hop(code), border_hop(code)],
                                   [facts[near]["name"], *facts[near]["aliases"]]))
                if facts[near]["capital"]:
                    candidates.append(("capital_of_longest_border_of_capital",
                                       (f"What is the capital of the country that shares the longest land border "
                                        f"with the country whose capital is {capital}?"),
                                       [reverse_capital_hop(code), border_hop(code), capital_hop(near)],
                                       [facts[near]["capital"]]))
        for template, question, hops, answers in candidates:
            if all(any(p.id == support for p in retriever.search(query, TOP_K)) for query, support in hops):
                questions.append({
                    "id": f"{template}-{code}", "template": template, "question": question,
                    "answers": sorted(set(answers), key=answers.index), "hops": len(hops),
                    "gold_queries": [query for query, _ in hops], "supporting": [support for _, support in hops],
                    "country": code, "region": fact["region"], "split": split_of(template, code, fact["region"]),
                })
    return questions


def split_of(template: str, code: str, region: str) -> str:
    if region in HELD_OUT_REGIONS or template in HELD_OUT_TEMPLATES:
        return "test_ood"
    bucket = int(hashlib.blake2b(code.encode(), digest_size=2).hexdigest(), 16) % 10
    return "train" if bucket < 7 else "dev" if bucket < 8 else "test"


def load_questions() -> list[dict[str, Any]]:
    text = resources.files("agentgym.tasks").joinpath(QUESTIONS_FILE).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


if __name__ == "__main__":
    target = Path(str(resources.files("agentgym.tasks").joinpath(QUESTIONS_FILE)))
    rows = generate()
    target.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        counts.setdefault(row["split"], {}).setdefault(row["template"], 0)
        counts[row["split"]][row["template"]] += 1
    print(f"{len(rows)} questions written to {target}")
    for split, templates in sorted(counts.items()):
        print(f"  {split}: {templates}")
