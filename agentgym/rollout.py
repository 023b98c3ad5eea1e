"""The rollout engine: many environments at once, groups of episodes that share a task, turn records out.

:class:`EnvPool` steps N environments of one id together — one after another, on threads, or in
worker processes (``benchmarks/rollout_throughput.py`` measures which wins for a family).
:class:`RolloutEngine` drives a pool with a policy: each turn it builds every active env's prompt
with the shared :class:`~agentgym.prompting.PromptTemplate`, asks the policy for the whole batch at
once, parses each reply with the shared :class:`~agentgym.prompting.ActionParser`, steps the envs
and records a :class:`~agentgym.records.Turn`. Training and evaluation both go through it.
"""

from __future__ import annotations

import multiprocessing as mp
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from tqdm.auto import tqdm

from agentgym.contract import Task
from agentgym.policies import Policy, PolicyRequest
from agentgym.prompting import ActionParser, HistoryItem, PromptTemplate
from agentgym.records import Trajectory, Turn
from agentgym.registry import make, spec_with_split

CONCURRENCY_MODES = ("auto", "sequential", "thread", "process")


def _call(env, method: str, args: tuple) -> Any:
    """Run one pool command on an env (shared by every concurrency mode)."""
    if method == "tasks":
        return env.unwrapped.tasks
    if method == "expert_action":
        return env.unwrapped.expert_action()
    if method == "reset":
        seed, options = args
        return env.reset(seed=seed, options=options)
    return getattr(env, method)(*args)


def _worker(connection, env_id: str, split: str, env_kwargs: dict) -> None:
    env = None
    try:
        try:
            env = make(env_id, split=split, **env_kwargs)
        except Exception:  # noqa: BLE001 - reported to the parent, which raises it
            connection.send(("error", traceback.format_exc()))
            return
        connection.send(("ok", None))
        while True:
            method, args = connection.recv()
            if method == "close":
                break
            try:
                connection.send(("ok", _call(env, method, args)))
            except Exception:  # noqa: BLE001 - the parent re-raises it with the worker's traceback
                connection.send(("error", traceback.format_exc()))
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        if env is not None:
            env.close()
        connection.close()


class EnvPool:
    """``num_envs`` environments of one id, addressed by slot index.

    ``concurrency`` is ``"sequential"``, ``"thread"`` (engines that release the GIL, such as a JVM
    or a browser over a socket), ``"process"`` (one worker process per env; engines written in
    Python, such as TextWorld's) or ``"auto"``, the family's measured choice (``EnvSpec.concurrency``).
    """

    def __init__(
        self,
        env_id: str,
        split: str = "train",
        num_envs: int = 4,
        *,
        concurrency: str = "auto",
        env_kwargs: dict[str, Any] | None = None,
    ):
        if concurrency not in CONCURRENCY_MODES:
            raise ValueError(f"concurrency must be one of {CONCURRENCY_MODES}, not {concurrency!r}")
        env_spec = spec_with_split(env_id, split)
        if concurrency == "auto":
            concurrency = env_spec.concurrency
        if num_envs < 1:
            raise ValueError("num_envs must be at least 1")
        self.env_id, self.split, self.num_envs, self.concurrency = env_id, split, num_envs, concurrency
        env_kwargs = dict(env_kwargs or {})
        self._executor = None
        self._envs: list = []
        self._connections: list = []
        self._processes: list = []
        if concurrency == "process":
            context = mp.get_context("forkserver")
            for _ in range(num_envs):
                parent, child = context.Pipe()
                process = context.Process(target=_worker, args=(child, env_id, split, env_kwargs), daemon=True)
                process.start()
                child.close()
                self._connections.append(parent)
                self._processes.append(process)
            try:
                self._receive("make", range(num_envs))
            except BaseException:
                self.close()
                raise
        else:
            self._envs = [make(env_id, split=split, **env_kwargs) for _ in range(num_envs)]
            if concurrency == "thread" and num_envs > 1:
                self._executor = ThreadPoolExecutor(max_workers=num_envs, thread_name_prefix="agentgym-env")

    def _receive(self, method: str, indices: Iterable[int]) -> list[Any]:
        results = []
        for index in indices:
            try:
                status, payload = self._connections[index].recv()
            except (EOFError, ConnectionError):
                raise RuntimeError(f"Worker process {index} of {self.env_id} died during {method}.") from None
            if status == "error":
                raise RuntimeError(f"{method} failed in worker {index} of {self.env_id}:\n{payload}")
            results.append(payload)
        return results

    def _run(self, method: str, calls: Sequence[tuple[int, tuple]]) -> list[Any]:
        if self.concurrency == "process":
            for index, args in calls:
                self._connections[index].send((method, args))
            return self._receive(method, [index for index, _ in calls])
        if self._executor is not None and len(calls) > 1:
            return list(self._executor.map(lambda call: _call(self._envs[call[0]], method, call[1]), calls))
        return [_call(self._envs[index], method, args) for index, args in calls]

    def reset(self, calls: Sequence[tuple[int, int | None, dict | None]]) -> list[tuple[dict, dict]]:
        """Reset slots: ``(index, seed, options)`` each."""
        return self._run("reset", [(index, (seed, options)) for index, seed, options in calls])

    def step(self, calls: Sequence[tuple[int, str]]) -> list[tuple]:
        """Step slots: ``(index, action)`` each."""
        return self._run("step", [(index, (action,)) for index, action in calls])

    def expert_actions(self, indices: Sequence[int]) -> list[str | None]:
        return self._run("expert_action", [(index, ()) for index in indices])

    @property
    def tasks(self) -> tuple[Task, ...]:
        return self._run("tasks", [(0, ())])[0]

    def close(self) -> None:
        for connection in self._connections:
            try:
                connection.send(("close", ()))
            except (BrokenPipeError, OSError):
                pass
        for process in self._processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
        for connection in self._connections:
            connection.close()
        for env in self._envs:
            env.close()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._envs, self._connections, self._processes, self._executor = [], [], [], None

    def __enter__(self) -> "EnvPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode to run: which task, with which reset seed, in which group."""

    episode_id: str
    group_id: str
    task_id: str
    seed: int | None = None


@dataclass
class _LiveEpisode:
    spec: EpisodeSpec
    trajectory: Trajectory
    instruction: str
    observation: dict
    history: list[HistoryItem] = field(default_factory=list)


def _json_scalars(info: dict) -> dict:
    """The part of an info dict that belongs in a JSON record (engines put objects there too)."""
    return {key: value for key, value in info.items() if isinstance(value, (str, int, float, bool, type(None)))}


class RolloutEngine:
    """Runs a policy on ``num_envs`` concurrent environments of one id and returns trajectories.

    >>> engine = RolloutEngine("agentgym/TextWorld-CoinCollector-v0", split="train", num_envs=4)
    >>> episodes = engine.plan(num_tasks=8, group_size=4, seed=0)   # 8 groups of 4 on the same task
    >>> trajectories = engine.run(make_policy("random", seed=0), episodes)
    >>> engine.close()
    """

    def __init__(
        self,
        env_id: str,
        split: str = "train",
        *,
        num_envs: int = 4,
        concurrency: str = "auto",
        template: PromptTemplate | None = None,
        parser: ActionParser | None = None,
        env_kwargs: dict[str, Any] | None = None,
    ):
        self.env_id, self.split = env_id, split
        self.template = template or PromptTemplate()
        self.parser = parser or ActionParser()
        self.pool = EnvPool(env_id, split, num_envs, concurrency=concurrency, env_kwargs=env_kwargs)
        self._tasks: dict[str, Task] | None = None
        self._slot_task: dict[int, str] = {}  # the task each env slot last started

    @property
    def tasks(self) -> dict[str, Task]:
        """The tasks of the engine's split, by id."""
        if self._tasks is None:
            self._tasks = {task.id: task for task in self.pool.tasks}
        return self._tasks

    def plan(
        self,
        *,
        task_ids: Sequence[str] | None = None,
        num_tasks: int | None = None,
        group_size: int = 1,
        seed: int = 0,
        run_id: str | None = None,
    ) -> list[EpisodeSpec]:
        """Episodes for ``task_ids`` (or ``num_tasks`` distinct tasks drawn from the split with ``seed``),
        each repeated ``group_size`` times as one group — the layout group-based trainers need."""
        if task_ids is None:
            ids = list(self.tasks)
            count = len(ids) if num_tasks is None else num_tasks
            if count > len(ids):
                raise ValueError(f"Asked for {count} tasks; split {self.split!r} has {len(ids)}.")
            picked = np.random.default_rng(seed).choice(len(ids), size=count, replace=False)
            task_ids = [ids[i] for i in picked]
        run_id = run_id or uuid.uuid4().hex[:8]
        episodes = []
        for group_index, task_id in enumerate(task_ids):
            group_id = f"{run_id}-g{group_index}"
            for member in range(group_size):
                episode_seed = seed * 1_000_003 + group_index * group_size + member
                episodes.append(EpisodeSpec(f"{group_id}-e{member}", group_id, task_id, episode_seed))
        return episodes

    def run(
        self,
        policy: Policy,
        episodes: Sequence[EpisodeSpec],
        *,
        progress: bool | str = False,
        on_turn: Callable[[Turn, dict], None] | None = None,
        on_trajectory: Callable[[Trajectory], None] | None = None,
    ) -> list[Trajectory]:
        """Run every episode to its end and return the trajectories in the order of ``episodes``.

        ``on_turn(turn, observation)`` is called after every step with the observation it led to;
        ``on_trajectory(trajectory)`` when an episode ends.
        """
        pending = list(reversed(episodes))
        live: dict[int, _LiveEpisode] = {}
        finished: dict[str, Trajectory] = {}
        bar = tqdm(total=len(episodes), desc=progress if isinstance(progress, str) else "episodes",
                   disable=not progress, unit="ep")
        try:
            while pending or live:
                self._start_episodes(live, pending, policy)
                slots = sorted(live)
                requests = self._requests(live, slots, policy)
                generations = policy.act(requests)
                if len(generations) != len(slots):
                    raise RuntimeError(f"{type(policy).__name__} returned {len(generations)} replies for "
                                       f"{len(slots)} requests.")
                actions = [self.parser.parse(g.text, r.admissible_actions) for g, r in zip(generations, requests)]
                results = self.pool.step(list(zip(slots, actions)))
                for slot, request, generation, action, result in zip(slots, requests, generations, actions, results):
                    episode = live[slot]
                    observation, reward, terminated, truncated, info = result
                    turn = Turn(
                        episode_id=episode.spec.episode_id,
                        group_id=episode.spec.group_id,
                        task_id=episode.spec.task_id,
                        turn_index=len(episode.trajectory.turns),
                        prompt=request.messages,
                        response=generation.text,
                        action=action,
                        reward=float(reward),
                        terminated=bool(terminated),
                        truncated=bool(truncated),
                        invalid=bool(info["invalid_action"]),
                        state_key=episode.observation["state_key"],
                        next_state_key=observation["state_key"],
                        admissible_actions=list(request.admissible_actions),
                        prompt_token_ids=generation.prompt_token_ids,
                        action_token_ids=generation.token_ids,
                        action_logprobs=generation.logprobs,
                        action_entropies=generation.entropies,
                        action_mode=generation.action_mode,
                        choice_logprob=generation.choice_logprob,
                        choice_entropy=generation.choice_entropy,
                        info=_json_scalars(info),
                    )
                    episode.trajectory.turns.append(turn)
                    if on_turn is not None:
                        on_turn(turn, observation)
                    episode.history.append(HistoryItem(action or generation.text, observation["text"], generation.text,
                                                       episode.observation["text"], request.admissible_actions))
                    episode.observation = observation
                    if terminated or truncated:
                        episode.trajectory.won = bool(info["won"])
                        finished[episode.spec.episode_id] = episode.trajectory
                        del live[slot]
                        bar.update(1)
                        if on_trajectory is not None:
                            on_trajectory(episode.trajectory)
        finally:
            bar.close()
        return [finished[spec.episode_id] for spec in episodes]

    def _start_episodes(self, live: dict[int, _LiveEpisode], pending: list[EpisodeSpec], policy: Policy) -> None:
        free = [slot for slot in range(self.pool.num_envs) if slot not in live]
        calls, specs = [], []
        for slot in free:
            if not pending:
                break
            spec = self._next_for(slot, pending, live)
            self._slot_task[slot] = spec.task_id
            calls.append((slot, spec.seed, {"task_id": spec.task_id}))
            specs.append(spec)
        if not calls:
            return
        for (slot, *_), spec, (observation, info) in zip(calls, specs, self.pool.reset(calls)):
            trajectory = Trajectory(
                episode_id=spec.episode_id,
                group_id=spec.group_id,
                env_id=self.env_id,
                split=self.split,
                task=self.tasks[spec.task_id],
                seed=spec.seed,
                policy=policy.name,
            )
            live[slot] = _LiveEpisode(spec, trajectory, info["instruction"], observation)

    def _next_for(self, slot: int, pending: list[EpisodeSpec], live: dict[int, _LiveEpisode]) -> EpisodeSpec:
        """The next episode for a free slot: one whose task the slot already has loaded, else one whose
        task no busy slot has, else the next in order. Loading a task (a game, a page, a JVM task) can
        cost more than playing it, so a group's episodes stay on one env when they can."""
        busy = {episode.spec.task_id for episode in live.values()}
        loaded = self._slot_task.get(slot)
        # ``pending`` is reversed: the next episode in plan order is at the end.
        for wanted in (lambda spec: spec.task_id == loaded, lambda spec: spec.task_id not in busy):
            for index in range(len(pending) - 1, -1, -1):
                if wanted(pending[index]):
                    return pending.pop(index)
        return pending.pop()

    def _requests(self, live: dict[int, _LiveEpisode], slots: list[int], policy: Policy) -> list[PolicyRequest]:
        experts = self.pool.expert_actions(slots) if policy.uses_expert else [None] * len(slots)
        requests = []
        for slot, expert in zip(slots, experts):
            episode = live[slot]
            admissible = tuple(episode.observation["admissible_actions"])
            messages = self.template.build(episode.instruction, episode.observation["text"], admissible, episode.history)
            requests.append(PolicyRequest(messages, admissible, expert, episode.observation.get("image")))
        return requests

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> "RolloutEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
