"""Multi-turn question answering with a search tool over a local corpus (Search-R1 style)."""

from __future__ import annotations

import json
import re

from agentgym.contract import Frame, Task, TextEnv, state_key, walkthrough_action
from agentgym.envs.search.corpus import load_corpus
from agentgym.envs.search.questions import TOP_K, load_questions
from agentgym.envs.search.retriever import BM25Retriever
from agentgym.systems.judge import normalize_answer, token_f1

_TAGGED = re.compile(r"<(search|answer)>(.*?)</\1>", re.DOTALL | re.IGNORECASE)
def parse_tool_call(action: str) -> tuple[str, str] | None:
    """``("search", query)`` or ``("answer", text)`` from the last ``<search>``/``<answer>`` tag (free
    reasoning may come before it) or from an OpenAI-style tool call ``{"name": ..., "arguments": ...}``."""
    tags = _TAGGED.findall(action)
    if tags:
        kind, content = tags[-1]
        return kind.lower(), content.strip()
    try:
        call = json.loads(action)
    except ValueError:
        return None
    if isinstance(call, dict) and call.get("name") in ("search", "answer"):
        arguments = call.get("arguments") or {}
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                return None
        value = arguments.get("query" if call["name"] == "search" else "answer") if isinstance(arguments, dict) else None
        if isinstance(value, str):
            return call["name"], value.strip()
    return None


class SearchQAEnv(TextEnv):
    """Answer a factual question by searching a local corpus over several turns.

    Description:
        The agent reasons, issues search queries and reads the retrieved passages, then answers. The
        corpus is the CIA World Factbook (33,715 passages, one per country and field, long fields
        chunked) behind a BM25 retriever (``bm25s``; the index is built once, ~4 s, and cached). The
        questions are 1-3 hop compositions of Factbook facts (capitals, longest land borders); each was
        kept only if issuing its gold queries retrieves every supporting passage in the top ``k``.

    Observation:
        ``text``: the question at reset, then the retrieved passages in ``<information>...</information>``.
        No admissible list (actions are free text).

    Action:
        Free reasoning followed by ``<search>query</search>`` or ``<answer>text</answer>``; an
        OpenAI-style tool call ``{"name": "search", "arguments": {"query": ...}}`` (or ``"answer"``,
        ``{"answer": ...}``) works too. A reply with neither is an invalid turn with feedback.

    Rewards:
        With ``reward="em"`` (default) 1 for an answer that matches one of the answer's aliases after
        normalisation (case, punctuation, articles), else 0; with ``reward="f1"`` the best alias's token
        F1. ``info`` has both (``em``, ``f1``). The aliases are in the task (``task.answer``), never in
        the prompt, for trainers that score the policy's probability of the answer (IGPO).

    Episode end:
        Terminated by an answer (``won`` when it is correct); truncated after ``max_turns`` (6).

    Splits:
        ``train``/``dev``/``test`` hold disjoint countries with the same four templates (1 and 2 hops);
        ``test_ood`` holds the countries of held-out regions (Australia-Oceania, Central Asia) and two
        held-out compositions (2 and 3 hops starting from a capital). Ids are committed in
        ``agentgym/tasks/search/factbook_questions.jsonl``.

    Arguments:
        split: ``"train"``, ``"dev"``, ``"test"`` or ``"test_ood"``.
        top_k: passages per search (3).
        reward: ``"em"`` or ``"f1"``.
        max_turns: turn budget (6).
        corpus: ``"factbook"`` (a custom JSONL corpus works for the retriever; questions are the
            Factbook's).
        render_mode: ``"ansi"`` or ``"human"``.
    """

    default_max_turns = 6
    answer_format = "<answer>{answer}</answer>"  # how a reply answers (trainers that score an answer's probability read it)

    def __init__(self, split: str = "train", *, top_k: int = TOP_K, reward: str = "em", max_turns: int | None = None,
                 corpus: str = "factbook", render_mode: str | None = None):
        super().__init__(split, max_turns=max_turns, render_mode=render_mode)
        if reward not in ("em", "f1"):
            raise ValueError(f"reward must be 'em' (exact match) or 'f1' (token F1), not {reward!r}.")
        self.top_k, self.corpus, self.reward = top_k, corpus, reward
        self._retriever: BM25Retriever | None = None
        self._queries: list[str] = []

    @property
    def retriever(self) -> BM25Retriever:
        if self._retriever is None:  # built (or loaded from the cache) on first use, not at make()
            self._retriever = BM25Retriever(load_corpus(self.corpus))
        return self._retriever

    def load_tasks(self, split: str) -> list[Task]:
        return [Task(row["id"], split, row["question"], payload={key: row[key] for key in
                                                                 ("template", "hops", "gold_queries", "supporting")},
                     answer=row["answers"])
                for row in load_questions() if row["split"] == split]

    def _start(self, task: Task) -> Frame:
        self._queries = []
        frame = Frame(text=f"Question: {task.instruction}", state_key=state_key(task.id))
        frame.info["instruction"] = (
            f"Answer the question: {task.instruction} You may search a reference corpus: reply with "
            "<search>your query</search> to read the top passages, and finish with <answer>your answer</answer>. "
            "Think first if you like; only the last tag counts.")
        return frame

    def _act(self, action: str) -> Frame:
        call = parse_tool_call(action)
        if call is None or not call[1]:
            return self.invalid_frame("Invalid action: reply with <search>query</search> or <answer>answer</answer> "
                                      "(non-empty). Nothing happened.")
        kind, content = call
        if kind == "search":
            self._queries.append(content)
            found = self.retriever.search(content, self.top_k)
            docs = "\n".join(f"Doc {n} (Title: {p.title}) {p.text}" for n, p in enumerate(found, start=1))
            return Frame(text=f"<information>{docs or 'No passage matches the query.'}</information>",
                         state_key=state_key(self.task.id, *self._queries), info={"search": content})
        answers = self.task.answer
        correct = any(normalize_answer(content) == normalize_answer(alias) for alias in answers)
        f1 = max(token_f1(content, alias) for alias in answers)
        return Frame(text=f"Your answer: {content}", state_key=state_key(self.task.id, *self._queries, content),
                     reward=float(correct) if self.reward == "em" else f1, terminated=True, won=correct,
                     info={"em": float(correct), "f1": f1, "answer": content})

    def expert_action(self) -> str | None:
        """The gold queries in order, then the first answer alias."""
        gold = [f"<search>{query}</search>" for query in self.task.payload["gold_queries"]]
        taken = [f"<search>{query}</search>" for query in self._queries]
        step = walkthrough_action(gold, taken)
        if step is not None:
            return step
        return self.answer_format.format(answer=self.task.answer[0]) if taken == gold else None
