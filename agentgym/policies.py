"""Policies behind one interface: a batch of prompts in, a batch of generations out.

A policy gets one :class:`PolicyRequest` per active environment — the chat prompt built by the shared
template and the admissible actions (a policy that chooses among them needs them) — and returns one
:class:`Generation` each. Policies that have tokens (LLMs) fill the token ids, log-probs and
entropies that trainers need. Expert policies declare ``uses_expert`` and are then also handed the
env's expert action; no other policy ever sees it.

Policies are made by name (:func:`make_policy`); packages add names through the
``agentgym.policies`` entry-point group.
"""

from __future__ import annotations

import abc
import importlib.metadata
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from agentgym.records import Message


@dataclass
class PolicyRequest:
    """What a policy sees for one environment this turn."""

    messages: list[Message]
    admissible_actions: tuple[str, ...] = ()
    expert_action: str | None = None


@dataclass
class Generation:
    """One policy reply, with the token-level data trainers use when the policy has it."""

    text: str
    prompt_token_ids: list[int] | None = None
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    entropies: list[float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Policy(abc.ABC):
    """Base class of policies. Subclasses implement :meth:`act`."""

    name: ClassVar[str] = "policy"
    uses_expert: ClassVar[bool] = False

    @abc.abstractmethod
    def act(self, requests: Sequence[PolicyRequest]) -> list[Generation]:
        """One generation per request, in order."""

    def config(self) -> dict[str, Any]:
        """Settings recorded in result files, enough to rebuild the policy."""
        return {"name": self.name}

    def close(self) -> None:
        """Free models, servers or processes the policy holds."""


class RandomPolicy(Policy):
    """Picks uniformly among the admissible actions (an empty reply when there are none)."""

    name = "random"

    def __init__(self, seed: int | None = None):
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def act(self, requests: Sequence[PolicyRequest]) -> list[Generation]:
        replies = []
        for request in requests:
            actions = request.admissible_actions
            replies.append(Generation(actions[int(self._rng.integers(len(actions)))] if actions else ""))
        return replies

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed}


class OraclePolicy(Policy):
    """Replies with the engine's expert action (its walkthrough or planner), where the family has one."""

    name = "oracle"
    uses_expert = True

    def __init__(self, seed: int | None = None):
        self.seed = seed  # unused: the oracle is deterministic; accepted so every policy takes a seed

    def act(self, requests: Sequence[PolicyRequest]) -> list[Generation]:
        missing = [i for i, request in enumerate(requests) if request.expert_action is None]
        if missing:
            raise RuntimeError(
                "The oracle policy needs an expert, and this environment has none in the current state "
                "(its expert_action() returned None). Use another policy for this env."
            )
        return [Generation(request.expert_action or "") for request in requests]


PolicyFactory = Callable[..., Policy]
_POLICIES: dict[str, PolicyFactory] = {"random": RandomPolicy, "oracle": OraclePolicy}
_entry_points_loaded = False


def register_policy(name: str, factory: PolicyFactory) -> None:
    """Make ``factory(seed=..., **kwargs)`` available as ``make_policy(name)`` and in the CLI."""
    _POLICIES[name] = factory


def _load_entry_points() -> None:
    global _entry_points_loaded
    if not _entry_points_loaded:
        _entry_points_loaded = True
        for entry_point in importlib.metadata.entry_points(group="agentgym.policies"):
            register_policy(entry_point.name, entry_point.load())


def list_policies() -> list[str]:
    _load_entry_points()
    return sorted(_POLICIES)


def make_policy(name: str, *, seed: int | None = None, **kwargs: Any) -> Policy:
    """Make a policy by name (``agentgym list`` shows the names)."""
    _load_entry_points()
    if name not in _POLICIES:
        raise ValueError(f"Unknown policy {name!r}; known policies: {', '.join(sorted(_POLICIES))}.")
    return _POLICIES[name](seed=seed, **kwargs)
