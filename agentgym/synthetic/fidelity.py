"""How faithful an experience model is: its predictions of held-out real transitions against what the real
env did (``benchmarks/experience_fidelity.py``, the ``experience_model`` trainer's evaluation), and the
prompt a recorded transition is asked with — the same at training and at evaluation as in the env."""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import numpy as np

from agentgym.contract import normalize_action
from agentgym.records import Trajectory
from agentgym.registry import make
from agentgym.synthetic.buffer import ReplayBuffer, Transition
from agentgym.synthetic.format import Outcome
from agentgym.synthetic.model import READERS, ExperienceModel, ExperienceSettings, Messages

REWARD_TOLERANCE = 0.05  # a predicted reward this close to the real one counts as right

METRICS = ("next_state_exact", "next_state_f1", "actions_f1", "reward_accuracy", "done_accuracy", "false_end_rate",
           "missed_end_rate", "malformed_rate", "failed_rate")


def percent(value: float | None) -> str:
    """A metric as a percentage; "—" for a rate with nothing to count (``None``, e.g. no real episode ended)."""
    return "—" if value is None else f"{value:.1%}"


def transition_prompt(settings: ExperienceSettings, buffer: ReplayBuffer, transition: Transition) -> Messages:
    """The prompt for a recorded transition, with the buffer's ``retrieval_k`` most similar transitions of
    *other* tasks as demonstrations (a held-out task has none of its own in the buffer; a training example
    must not see its own answer)."""
    demos = buffer.retrieve(transition.state, transition.action, settings.retrieval_k,
                            exclude=lambda other: other.task_id == transition.task_id)
    return settings.step_prompt(instruction=transition.instruction, history=transition.history,
                                state=transition.state, actions=transition.actions, action=transition.action,
                                demos=[d.example() for d in demos])


def token_f1(predicted: str, truth: str) -> float:
    """F1 of the two texts' bags of lower-cased whitespace tokens (1 when both are empty)."""
    ours, theirs = Counter(predicted.lower().split()), Counter(truth.lower().split())
    if not ours and not theirs:
        return 1.0
    common = sum((ours & theirs).values())
    if common == 0:
        return 0.0
    precision, recall = common / sum(ours.values()), common / sum(theirs.values())
    return 2 * precision * recall / (precision + recall)


def set_f1(predicted: Sequence[str], truth: Sequence[str]) -> float:
    """F1 of two sets of actions, compared case- and space-insensitively (1 when both are empty)."""
    ours, theirs = {normalize_action(a) for a in predicted}, {normalize_action(a) for a in truth}
    if not ours and not theirs:
        return 1.0
    common = len(ours & theirs)
    return 0.0 if common == 0 else 2 * common / (len(ours) + len(theirs))


def score(outcome: Outcome | None, truth: Transition) -> dict[str, float]:
    """One prediction's scores (all 0 for no usable reply)."""
    if outcome is None:
        return dict(next_state_exact=0.0, next_state_f1=0.0, actions_f1=0.0, reward_accuracy=0.0, done_accuracy=0.0)
    if truth.invalid or outcome.invalid:
        same = float(truth.invalid == outcome.invalid)
        return dict(next_state_exact=same * float(" ".join(outcome.next_state.split()) == " ".join(truth.next_state.split())),
                    next_state_f1=same * token_f1(outcome.next_state, truth.next_state), actions_f1=same,
                    reward_accuracy=same, done_accuracy=same)
    return dict(
        next_state_exact=float(" ".join(outcome.next_state.split()) == " ".join(truth.next_state.split())),
        next_state_f1=token_f1(outcome.next_state, truth.next_state),
        actions_f1=set_f1(outcome.actions, truth.next_actions),
        reward_accuracy=float(abs(outcome.reward - truth.reward) <= REWARD_TOLERANCE),
        done_accuracy=float(outcome.done == truth.done),
    )


def evaluate(model: ExperienceModel, buffer: ReplayBuffer, transitions: Sequence[Transition]) -> dict[str, Any]:
    """Mean scores of the model's predictions of ``transitions`` (:data:`METRICS`), the share of replies that
    were malformed (every attempt counted) and of transitions with no usable reply after every attempt.

    Done accuracy alone hides which way the model errs, and the two ways train a policy differently: a
    *false end* (the model ends an episode the real env goes on with) can pay a reward the real game never
    gives, a *missed end* drags an episode out. ``false_end_rate`` is the share of the real env's non-ending
    transitions the model ended, ``missed_end_rate`` the share of its ending ones the model did not (``None``
    when there are none); a transition without a usable reply ends nothing."""
    if not transitions:
        raise ValueError("No transitions to evaluate the experience model on.")
    lists_actions = any(t.actions for t in buffer.transitions if not t.synthetic)
    before = dict(model.calls)
    outcomes = model.complete([transition_prompt(model.settings, buffer, t) for t in transitions],
                              READERS["outcome", lists_actions])
    rows = [score(o if isinstance(o, Outcome) else None, t) for o, t in zip(outcomes, transitions)]
    calls = {key: model.calls[key] - before[key] for key in before}
    result: dict[str, Any] = {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}
    ended = [isinstance(o, Outcome) and o.done for o in outcomes]
    goes_on = [e for e, t in zip(ended, transitions) if not t.done]
    real_ends = [e for e, t in zip(ended, transitions) if t.done]
    result["false_end_rate"] = float(np.mean(goes_on)) if goes_on else None
    result["missed_end_rate"] = 1 - float(np.mean(real_ends)) if real_ends else None
    result["real_ends"] = len(real_ends)
    result["malformed_rate"] = calls["malformed"] / max(1, calls["attempts"])
    result["failed_rate"] = calls["failed"] / max(1, calls["prompts"])
    result["transitions"] = len(transitions)
    return result


def replay_in_real(trajectories: Sequence[Trajectory], real_id: str, **env_kwargs: Any) -> list[bool | None]:
    """Whether each synthetic episode's actions, played again in the real env (``real_id`` made with
    ``env_kwargs``, e.g. the same ``max_turns``), win the real game. A synthetic win the real game does not
    give is a *false win*: GRPO rewarded moves that lose the real game. ``None`` for an episode of a
    generated task, which has no real game to play. Meaningful for deterministic real envs (TextWorld, the
    shop, ALFWorld's generated games): the same task and actions give the same real episode."""
    outcomes: list[bool | None] = []
    envs: dict[str, Any] = {}
    try:
        for trajectory in trajectories:
            if "generated_from" in trajectory.task.payload:
                outcomes.append(None)
                continue
            if trajectory.split not in envs:
                envs[trajectory.split] = make(real_id, trajectory.split, **env_kwargs)
            env = envs[trajectory.split]
            env.reset(options={"task_id": trajectory.task.id})
            won = False
            for turn in trajectory.turns:
                _, _, terminated, truncated, info = env.step(turn.action)
                if terminated or truncated:
                    won = bool(info["won"])
                    break
            outcomes.append(won)
    finally:
        for env in envs.values():
            env.close()
    return outcomes
