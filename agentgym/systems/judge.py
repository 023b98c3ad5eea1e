"""Judging a system's final answer against the reference: offline by default, or an LLM judge.

The offline judge accepts an answer when, against any of the reference's aliases, it is

* a normalised exact match (case, punctuation, articles and spacing ignored; SQuAD's normalisation), or
* a bag-of-words match (token F1 of 1.0; the best F1 is always reported), or
* a numeric match: both read as one number — thousands separators, currency signs, units and scale words
  (``1.284 million sq km`` is 1,284,000) handled — within a relative tolerance (1% by default).

``openai:MODEL@URL`` makes an LLM judge (any OpenAI-compatible endpoint, ``agentgym serve-policy``
included): it reads the question, the reference and the answer and replies with its analysis and a
True/False verdict, as AgentFlow's training reward does with GPT-4o. Every verdict carries a reason.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from dataclasses import dataclass
from typing import Any

from agentgym.records import Message

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)
SCALES = {"thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12}
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+")
_SCALED = re.compile(r"\s*(" + "|".join(SCALES) + r")\b", re.IGNORECASE)


def normalize_answer(text: str) -> str:
    """SQuAD-style: lowercase, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, truth: str) -> float:
    """Token-overlap F1 of two answers after :func:`normalize_answer`."""
    predicted, true = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = sum((Counter(predicted) & Counter(true)).values())
    if not common:
        return 0.0
    precision, recall = common / len(predicted), common / len(true)
    return 2 * precision * recall / (precision + recall)


def parse_number(text: str) -> float | None:
    """The one number a short answer states (``"$20.6 billion"``, ``"15.3 people per sq km"``,
    ``"19,674,004"``), or ``None`` when it states none or several."""
    found = list(_NUMBER.finditer(text))
    if len(found) != 1:
        return None
    match = found[0]
    value = float(match.group(0).replace(",", ""))
    scale = _SCALED.match(text, match.end())
    return value * SCALES[scale.group(1).lower()] if scale else value


@dataclass(frozen=True)
class Verdict:
    """A judge's decision on one final answer."""

    correct: bool
    reason: str
    f1: float = 0.0
    judge: str = "offline"
    prompt: list[Message] | None = None  # what an LLM judge was asked
    reply: str | None = None  # what it answered

    @property
    def reward(self) -> float:
        return float(self.correct)

    def to_dict(self) -> dict[str, Any]:
        return {"judge": self.judge, "correct": self.correct, "reason": self.reason, "f1": self.f1,
                "prompt": self.prompt, "reply": self.reply}


def aliases(truth: Any) -> list[str]:
    """A task's reference answer as a list of accepted strings."""
    if isinstance(truth, (list, tuple)):
        return [str(t) for t in truth]
    return [str(truth)]


class OfflineJudge:
    """Exact match, bag-of-words match or numeric match within ``rel_tol`` (see the module docstring)."""

    name = "offline"

    def __init__(self, rel_tol: float = 0.01):
        if not 0 <= rel_tol < 1:
            raise ValueError(f"rel_tol must be in [0, 1), not {rel_tol}.")
        self.rel_tol = rel_tol

    def judge(self, question: str, answer: str, truth: Any) -> Verdict:
        references = aliases(truth)
        best_f1, best_alias = max((token_f1(answer, alias), alias) for alias in references)
        if not answer.strip():
            return Verdict(False, "no answer was given", 0.0)
        for alias in references:
            if normalize_answer(answer) == normalize_answer(alias):
                return Verdict(True, f"exact match with {alias!r} after normalisation", best_f1)
        if best_f1 == 1.0:
            return Verdict(True, f"the same words as {best_alias!r} (token F1 1.0)", best_f1)
        value = parse_number(answer)
        for alias in references:
            target = parse_number(alias)
            if value is not None and target is not None:
                error = abs(value - target) / max(abs(target), 1e-12)
                if math.isclose(value, target, rel_tol=self.rel_tol):
                    return Verdict(True, f"numeric match: {value:g} vs {target:g} (relative error {error:.2g} "
                                         f"≤ {self.rel_tol:g})", best_f1)
                return Verdict(False, f"numeric mismatch: {value:g} vs {target:g} (relative error {error:.2g} "
                                      f"> {self.rel_tol:g})", best_f1)
        return Verdict(False, f"no match; best token F1 {best_f1:.2f} with {best_alias!r}", best_f1)


JUDGE_SYSTEM = "You grade answers to questions. You compare meaning, not wording."
JUDGE_TEMPLATE = """Question: {question}
Reference answer: {truth}
Answer to grade: {answer}

First extract the final answer from the answer to grade. Then decide whether it means the same as the
reference: the same entity under another name counts, and numbers count when they agree to the
reference's precision once units and formatting are set aside. Missing, hedged or several different
answers do not count.
Reply in two lines:
Analysis: <one or two sentences>
Verdict: True or False"""
_VERDICT = re.compile(r"verdict\s*[:\-]?\s*\**\s*(true|false)", re.IGNORECASE)


class LLMJudge:
    """An LLM behind a policy (``openai:MODEL@URL``, ``embedded``, ``hf:PATH``) as the judge; a reply
    without a readable verdict counts as incorrect, with the reply kept in the reason."""

    def __init__(self, module: Any):
        self.module = module  # an agentgym.systems.modules.LLMModule
        self.name = module.spec

    def judge(self, question: str, answer: str, truth: Any) -> Verdict:
        references = aliases(truth)
        best_f1 = max(token_f1(answer, alias) for alias in references)
        messages = [{"role": "system", "content": JUDGE_SYSTEM},
                    {"role": "user", "content": JUDGE_TEMPLATE.format(question=question, truth=" | ".join(references),
                                                                     answer=answer or "(none)")}]
        reply = self.module.complete(messages)
        verdicts = _VERDICT.findall(reply)
        analysis = re.search(r"analysis\s*:\s*(.+)", reply, re.IGNORECASE)
        if not verdicts:
            return Verdict(False, f"the judge's reply has no True/False verdict: {reply[:200]!r}", best_f1,
                           self.name, messages, reply)
        reason = analysis.group(1).strip() if analysis else reply.strip()[:300]
        return Verdict(verdicts[-1].lower() == "true", reason, best_f1, self.name, messages, reply)


def make_judge(spec: str, *, rel_tol: float = 0.01, module_kwargs: dict[str, Any] | None = None):
    """``offline`` (the default) or a module spec for an LLM judge (``openai:MODEL@URL`` ...)."""
    if spec == "offline":
        return OfflineJudge(rel_tol)
    from agentgym.systems.modules import LLMModule

    return LLMJudge(LLMModule(spec, **(module_kwargs or {})))

