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
    """What a policy sees for one environment this turn (``image``: the observation's RGB array, for
    families that render one)."""

    messages: list[Message]
    admissible_actions: tuple[str, ...] = ()
    expert_action: str | None = None
    image: Any = None


@dataclass
class Generation:
    """One policy reply, with the token-level data trainers use when the policy has it.

    ``action_mode`` is ``"text"`` for free generation and ``"choice"`` when the policy picked one of the
    admissible actions from a distribution over them; ``choice_logprob`` and ``choice_entropy`` are then
    the picked action's log-probability under that distribution and the distribution's entropy.
    """

    text: str
    prompt_token_ids: list[int] | None = None
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    entropies: list[float] | None = None
    action_mode: str = "text"
    choice_logprob: float | None = None
    choice_entropy: float | None = None
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
# Factories given as "module:attribute" are imported only when used, so importing the core never
# imports torch or an HTTP client.
_POLICIES: dict[str, PolicyFactory | str] = {
    "random": RandomPolicy,
    "oracle": OraclePolicy,
    "embedded": "agentgym.hf_policy:make_embedded_policy",
    "tiny": "agentgym.hf_policy:make_tiny_policy",
    "hf": "agentgym.hf_policy:make_hf_policy",
    "openai": "agentgym.openai_policy:make_openai_policy",
    "vllm": "agentgym.vllm_policy:make_vllm_policy",
    "gui-rc": "agentgym.grounding:make_gui_rc_policy",
    "soft-gui-rc": "agentgym.grounding:make_soft_gui_rc_policy",
    "vlm": "agentgym.vlm_policy:make_vlm_policy",
    "tiny-vlm": "agentgym.vlm_policy:make_tiny_vlm_policy",
}
POLICY_SYNTAX = (
    "random | oracle | embedded | tiny | hf:PATH (a local checkpoint) | openai:MODEL[@BASE_URL] | "
    "vllm:MODEL[@BASE_URL] (vLLM with token ids and log-probs) | "
    "vlm:PATH (a local vision-language model) | tiny-vlm | gui-rc:POLICY (GUI-RC voting over samples of POLICY) | "
    "soft-gui-rc:POLICY (GUI-RC on POLICY's whole point distribution, e.g. the pointer model's)"
)
_entry_points_loaded = False


def register_policy(name: str, factory: PolicyFactory | str) -> None:
    """Make ``factory(seed=..., **kwargs)`` (or ``factory(arg, seed=..., **kwargs)`` for ``name:arg``)
    available as ``make_policy(name)`` and in the CLI; ``factory`` may be a ``"module:attribute"`` string."""
    _POLICIES[name] = factory


def _load_entry_points() -> None:
    global _entry_points_loaded
    if not _entry_points_loaded:
        _entry_points_loaded = True
        for entry_point in importlib.metadata.entry_points(group="agentgym.policies"):
            register_policy(entry_point.name, entry_point.value)


def list_policies() -> list[str]:
    _load_entry_points()
    return sorted(_POLICIES)


def _factory(name: str) -> PolicyFactory:
    factory = _POLICIES[name]
    if isinstance(factory, str):
        module, _, attribute = factory.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attribute)
        except ModuleNotFoundError as error:
            raise ModuleNotFoundError(
                f"Policy {name!r} needs the package {error.name!r}. Install it with: pip install 'agentgym[llm]'"
            ) from error
    return factory


def make_policy(spec: str, *, seed: int | None = None, **kwargs: Any) -> Policy:
    """Make a policy from its spec: ``random``, ``oracle``, ``embedded``, ``tiny``, ``hf:PATH`` or
    ``openai:MODEL[@BASE_URL]`` (``agentgym list`` shows every name). Keyword arguments go to the policy."""
    _load_entry_points()
    name, _, argument = spec.partition(":")
    if name not in _POLICIES:
        raise ValueError(f"Unknown policy {spec!r}; known policies: {', '.join(sorted(_POLICIES))} "
                         f"(syntax: {POLICY_SYNTAX}).")
    factory = _factory(name)
    return factory(argument, seed=seed, **kwargs) if argument else factory(seed=seed, **kwargs)
