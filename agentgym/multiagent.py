"""Multi-agent envs: the text contract on PettingZoo's AEC API, a registry, a conformance check and a
rollout that drives each agent with its own policy.

A multi-agent agentgym env is a :class:`pettingzoo.AECEnv` whose actions are text and whose
observations are the same text-first dict single-agent envs use (``text``, ``admissible_actions``,
``state_key``). Every agent's ``infos`` carry ``task_id``, ``split``, ``invalid_action``, ``turn`` and
``instruction`` (its role). The parallel API comes from PettingZoo's own conversion
(:func:`make_multiagent` with ``parallel=True``). Games with fixed opponents in the other seats become
ordinary single-agent envs (see the family's ``SeatView``), so every trainer works on them unchanged.
"""

from __future__ import annotations

import dataclasses
import importlib
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentgym.contract import SPLITS, Task
from agentgym.policies import Policy, PolicyRequest
from agentgym.prompting import ActionParser, HistoryItem, PromptTemplate
from agentgym.records import Trajectory, Turn


@dataclass(frozen=True)
class MultiAgentSpec:
    id: str
    entry_point: str
    splits: tuple[str, ...] = SPLITS
    description: str = ""
    extra: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    turn_based: bool = True
    """Turn-based games get PettingZoo's ``turn_based_aec_to_parallel`` (only the active agent's action
    counts each parallel step); simultaneous ones its ``aec_to_parallel``."""


_MULTIAGENT_SPECS: dict[str, MultiAgentSpec] = {}


def register_multiagent(id: str, entry_point: str, *, splits: tuple[str, ...] = SPLITS, description: str = "",
                        extra: str | None = None, kwargs: Mapping[str, Any] | None = None,
                        turn_based: bool = True) -> None:
    """Register a multi-agent env id; ``entry_point`` is ``"module:Class"``, imported when made."""
    _MULTIAGENT_SPECS[id] = MultiAgentSpec(id, entry_point, tuple(splits), description, extra, dict(kwargs or {}),
                                           turn_based)


def list_multiagent_envs() -> list[str]:
    """Every registered multi-agent env id, sorted."""
    from agentgym.registry import list_envs

    list_envs()  # loads the families' entry points, which register both kinds
    return sorted(_MULTIAGENT_SPECS)


def multiagent_spec(env_id: str) -> MultiAgentSpec:
    list_multiagent_envs()
    if env_id not in _MULTIAGENT_SPECS:
        raise ValueError(f"No multi-agent env {env_id!r}; registered: {', '.join(sorted(_MULTIAGENT_SPECS))}.")
    return _MULTIAGENT_SPECS[env_id]


def make_multiagent(env_id: str, split: str = "train", *, parallel: bool = False, **kwargs: Any):
    """Make a multi-agent env on ``split``: its AEC form, or with ``parallel=True`` PettingZoo's parallel
    conversion of it."""
    spec = multiagent_spec(env_id)
    if split not in spec.splits:
        raise ValueError(f"{env_id} has no split {split!r}; its splits are {', '.join(spec.splits)}.")
    module_name, _, class_name = spec.entry_point.partition(":")
    try:
        env_class = getattr(importlib.import_module(module_name), class_name)
    except ModuleNotFoundError as error:
        if spec.extra is None:
            raise
        raise ModuleNotFoundError(f"{env_id} needs {error.name!r}: pip install 'agentgym[{spec.extra}]'.") from error
    env = env_class(split=split, **{**spec.kwargs, **kwargs})
    return to_parallel(env, turn_based=spec.turn_based) if parallel else env


def to_parallel(aec_env, *, turn_based: bool = True):
    """PettingZoo's own AEC-to-parallel conversion for this kind of game."""
    from pettingzoo.utils.conversions import aec_to_parallel, turn_based_aec_to_parallel

    return turn_based_aec_to_parallel(aec_env) if turn_based else aec_to_parallel(aec_env)


def check_multiagent_env(env_factory: Callable[[], Any], *, turn_based: bool = True, seed: int = 0) -> None:
    """The multi-agent counterpart of :func:`agentgym.check_env`: PettingZoo's ``api_test`` and
    ``parallel_api_test``, then agentgym's rules — text observations in the declared spaces, invalid
    actions as flagged turns that never raise, determinism under a seed, ``info`` keys, and games that
    end when agents keep replying nonsense."""
    from pettingzoo.test import api_test, parallel_api_test

    from agentgym.checker import INVALID_ACTIONS, EnvCheckError

    api_test(env_factory(), num_cycles=20)
    parallel_api_test(to_parallel(env_factory(), turn_based=turn_based), num_cycles=20)

    def first_views(env) -> list:
        env.reset(seed=seed)
        return [env.observe(agent)["text"] for agent in env.agents]

    env, twin = env_factory(), env_factory()
    try:
        if first_views(env) != first_views(twin):
            raise EnvCheckError("reset(seed) is not deterministic: two envs showed different first observations.")
        env.reset(seed=seed)
        for step, action in enumerate(list(INVALID_ACTIONS) * 50):
            if not env.agents:
                break
            agent = env.agent_selection
            if env.terminations[agent] or env.truncations[agent]:
                env.step(None)
                continue
            env.step(action)
            info = env.infos[agent]
            for key in ("task_id", "split", "invalid_action", "turn", "instruction"):
                if key not in info:
                    raise EnvCheckError(f"infos[{agent!r}] lacks {key!r} after step {step}.")
            if not info["invalid_action"]:
                raise EnvCheckError(f"{action!r} from {agent} was not flagged infos[agent]['invalid_action'].")
            observation = env.observe(agent)
            if not env.observation_space(agent).contains(observation):
                raise EnvCheckError(f"observe({agent!r}) is outside observation_space({agent!r}).")
        if env.agents:
            raise EnvCheckError("A game where every agent only replies nonsense never ends: forfeit after a few.")
    finally:
        env.close()
        twin.close()


def game_tasks(split: str, ranges: Mapping[str, tuple[int, int]], prefix: str, instruction: str,
               **payload: Any) -> list[Task]:
    """Seeded tasks ``<prefix>-s<seed>`` for the seed range of ``split``."""
    start, stop = ranges[split]
    return [Task(f"{prefix}-s{seed}", split, instruction, {**payload, "seed": seed}) for seed in range(start, stop)]


@dataclass
class _Seat:
    trajectory: Trajectory
    history: list[HistoryItem] = field(default_factory=list)
    pending: tuple[PolicyRequest, dict, str] | None = None  # the request, observation and text of an unscored turn


class MultiAgentRollout:
    """Plays games of a multi-agent env with one policy per agent and returns one trajectory per agent
    per game, whose turns carry ``agent_id``.

    Games run in lockstep: each round, the agent to move in every live game is asked, with one batched
    ``act`` call per policy, so self-play with one LLM batches across games. A turn's reward is what the
    agent received until its next move (the opponent's reply can decide the game).

    >>> rollout = MultiAgentRollout("agentgym/TicTacToe-v0", "test", {"player_1": llm, "player_2": random})
    >>> trajectories = rollout.run(seeds=range(20))   # 20 games x 2 agents
    """

    def __init__(self, env_id: str, split: str, policies: Mapping[str, Policy], *, num_games: int = 4,
                 template: PromptTemplate | None = None, parser: ActionParser | None = None,
                 env_kwargs: Mapping[str, Any] | None = None):
        self.env_id, self.split, self.policies = env_id, split, dict(policies)
        self.template, self.parser = template or PromptTemplate(), parser or ActionParser()
        self.envs = [make_multiagent(env_id, split, **dict(env_kwargs or {})) for _ in range(num_games)]
        missing = set(self.envs[0].possible_agents) - set(self.policies)
        if missing:
            raise ValueError(f"No policy for agent(s) {sorted(missing)} of {env_id}; "
                             f"agents are {self.envs[0].possible_agents}.")

    def run(self, *, seeds: Sequence[int] | None = None, task_ids: Sequence[str] | None = None,
            run_id: str | None = None) -> list[Trajectory]:
        """One game per seed (tasks drawn by the env from its split) or per task id."""
        games = [(None, seed) for seed in seeds] if seeds is not None else [(task, None) for task in task_ids or ()]
        run_id = run_id or uuid.uuid4().hex[:8]
        results: list[list[Trajectory]] = [[] for _ in games]
        pending = list(enumerate(games))[::-1]
        live: dict[int, tuple[int, dict[str, _Seat]]] = {}
        while pending or live:
            for slot, env in enumerate(self.envs):
                if slot not in live and pending:
                    index, (task_id, seed) = pending.pop()
                    live[slot] = (index, self._start(env, index, task_id, seed, run_id))
            by_policy: dict[str, list[tuple[int, str, PolicyRequest]]] = {}
            for slot, (_, seats) in live.items():
                env = self.envs[slot]
                agent = env.agent_selection
                request = self._request(env, agent, seats[agent])
                by_policy.setdefault(agent, []).append((slot, agent, request))
            for agent, asks in by_policy.items():
                replies = self.policies[agent].act([request for _, _, request in asks])
                for (slot, _, request), generation in zip(asks, replies):
                    self._step(self.envs[slot], agent, live[slot][1], request, generation)
            for slot in [slot for slot in live if not self.envs[slot].agents]:
                index, seats = live.pop(slot)
                results[index] = [seat.trajectory for seat in seats.values()]
        return [trajectory for game in results for trajectory in game]

    def _start(self, env, index: int, task_id: str | None, seed: int | None, run_id: str) -> dict[str, _Seat]:
        env.reset(seed=seed, options={"task_id": task_id} if task_id else None)
        task_id = env.infos[env.possible_agents[0]]["task_id"]
        task = env.get_task(task_id)
        return {agent: _Seat(Trajectory(f"{run_id}-g{index}-{agent}", f"{run_id}-g{index}", self.env_id, self.split,
                                        task, seed, policy=self.policies[agent].name))
                for agent in env.possible_agents}

    def _request(self, env, agent: str, seat: _Seat) -> PolicyRequest:
        observation = env.observe(agent)
        self._close_turn(seat, observation)
        admissible = tuple(observation["admissible_actions"])
        expert = env.expert_move(agent) if self.policies[agent].uses_expert else None
        messages = self.template.build(env.infos[agent]["instruction"], observation["text"], admissible, seat.history)
        return PolicyRequest(messages, admissible, expert)

    @staticmethod
    def _close_turn(seat: _Seat, observation: dict) -> None:
        """A turn's next state is what its agent sees when it next moves, or when the game ends."""
        if seat.trajectory.turns and not seat.trajectory.turns[-1].next_state_key:
            seat.trajectory.turns[-1].next_state_key = observation["state_key"]
            seat.history[-1] = dataclasses.replace(seat.history[-1], observation=observation["text"])

    def _step(self, env, agent: str, seats: dict[str, _Seat], request: PolicyRequest, generation) -> None:
        seat = seats[agent]
        before = env.observe(agent)
        action = self.parser.parse(generation.text, request.admissible_actions)
        env.step(action)
        info = env.infos.get(agent, {})
        seat.trajectory.turns.append(Turn(
            episode_id=seat.trajectory.episode_id, group_id=seat.trajectory.group_id,
            task_id=seat.trajectory.task.id, turn_index=len(seat.trajectory.turns), prompt=request.messages,
            response=generation.text, action=action, reward=0.0, terminated=False, truncated=False,
            invalid=bool(info.get("invalid_action")), state_key=before["state_key"], next_state_key="",
            admissible_actions=list(request.admissible_actions), prompt_token_ids=generation.prompt_token_ids,
            action_token_ids=generation.token_ids, action_logprobs=generation.logprobs,
            action_entropies=generation.entropies, action_mode=generation.action_mode,
            choice_logprob=generation.choice_logprob, choice_entropy=generation.choice_entropy, agent_id=agent,
        ))
        seat.history.append(HistoryItem(action or generation.text, "", generation.text, before["text"],
                                        request.admissible_actions))
        # Any step can reward any agent (the opponent's move can end the game): credit each agent's
        # latest turn.
        for other, other_seat in seats.items():
            if other_seat.trajectory.turns:
                other_seat.trajectory.turns[-1].reward += float(env.rewards.get(other, 0.0))
        if any(not (env.terminations[a] or env.truncations[a]) for a in env.agents):
            return
        for other, other_seat in seats.items():
            self._close_turn(other_seat, env.observe(other))
            if other_seat.trajectory.turns:
                other_seat.trajectory.turns[-1].terminated = bool(env.terminations[other])
                other_seat.trajectory.turns[-1].truncated = not env.terminations[other]
            other_seat.trajectory.won = bool(env.infos[other].get("won", False))
        while env.agents:
            env.step(None)

    def close(self) -> None:
        for env in self.envs:
            env.close()

    def __enter__(self) -> "MultiAgentRollout":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def summarize(trajectories: Sequence[Trajectory]) -> dict[str, dict[str, float]]:
    """Per agent: games, mean return, win / draw / loss rates (a loss is a negative return, a draw
    neither a win nor a loss) and the rate of invalid moves."""
    by_agent: dict[str, list[Trajectory]] = {}
    for trajectory in trajectories:
        agent = trajectory.episode_id.rsplit("-", 1)[-1]
        by_agent.setdefault(agent, []).append(trajectory)
    summary = {}
    for agent, games in sorted(by_agent.items()):
        returns = [game.total_reward for game in games]
        wins = [game.won for game in games]
        losses = [r < 0 and not w for r, w in zip(returns, wins)]
        turns = sum(game.num_turns for game in games)
        summary[agent] = {
            "games": len(games),
            "mean_return": sum(returns) / len(games),
            "win_rate": sum(wins) / len(games),
            "draw_rate": sum(not w and not lost for w, lost in zip(wins, losses)) / len(games),
            "loss_rate": sum(losses) / len(games),
            "invalid_rate": sum(game.num_invalid for game in games) / max(turns, 1),
        }
    return summary
