"""The rollout engine: many environments at once, groups of episodes that share a task, turn records out.

:class:`EnvPool` steps N environments of one id together — one after another, on threads, in
worker processes, or as Ray actors on a local Ray instance or a cluster (``benchmarks/rollout_throughput.py``
measures which wins for a family).
:class:`RolloutEngine` drives a pool with a policy: each turn it builds every active env's prompt
with the shared :class:`~agentgym.prompting.PromptTemplate`, asks the policy for the whole batch at
once, parses each reply with the shared :class:`~agentgym.prompting.ActionParser`, steps the envs
and records a :class:`~agentgym.records.Turn`. Training and evaluation both go through it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import sys
import threading
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
from agentgym.registry import adopt_spec, dumps_spec, make, spec_with_split

CONCURRENCY_MODES = ("auto", "sequential", "thread", "process", "ray")


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


def _worker(connection, env_id: str, split: str, env_kwargs: dict, spec_module: str | None,
            spec_payload: bytes) -> None:
    env = None
    try:
        try:
            # The parent's spec, so ids registered at run time (not by an entry point) work here too.
            adopt_spec(spec_module, spec_payload)
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


RAY_EXTRA_HINT = "pip install 'agentgym[ray]'"
RAY_LOCAL_OBJECT_STORE = 256 * 1024**2  # env observations are small: a local instance needs little shared memory
RAY_ACTOR_START_TIMEOUT = 300.0  # seconds for an env actor to be placed and make its env


class _EnvActor:
    """One env inside a Ray actor (``ray.remote`` is applied when the pool starts, so the core imports
    without Ray). ``sys_path`` is the driver's: modules it can import (a test file, a script's folder)
    import here too when the node has the same files."""

    def __init__(self, env_id: str, split: str, env_kwargs: dict, spec_module: str | None, spec_payload: bytes,
                 sys_path: list[str]):
        sys.path.extend(entry for entry in sys_path if entry not in sys.path and os.path.isdir(entry))
        adopt_spec(spec_module, spec_payload)
        self.env = make(env_id, split=split, **env_kwargs)

    def call(self, method: str, args: tuple) -> Any:
        return _call(self.env, method, args)

    def pid(self) -> int:
        return os.getpid()

    def close(self) -> None:
        self.env.close()


def _import_ray():
    try:
        import ray
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(f"concurrency='ray' needs Ray, which is not installed: {RAY_EXTRA_HINT}") from error
    return ray


def connect_ray(address: str | None = None, *, timeout: float = 30.0):
    """Ray, initialised once per process: the cluster at ``address`` (else ``$RAY_ADDRESS``), or a local
    instance started here (bound to 127.0.0.1, small object store, no dashboard) when neither is set or
    the address is ``"local"``. An unreachable cluster is a :class:`ConnectionError` within ``timeout``
    seconds instead of Ray's long reconnect loop."""
    ray = _import_ray()
    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    if address == "local":
        ray.init(address="local", include_dashboard=False, log_to_driver=False,
                 object_store_memory=RAY_LOCAL_OBJECT_STORE, _node_ip_address="127.0.0.1")
        return ray
    if address != "auto":  # "auto" finds a cluster started on this machine, and fails fast when there is none
        host, _, port = address.removeprefix("ray://").rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=timeout).close()
        except (OSError, ValueError) as error:
            raise ConnectionError(f"Cannot reach the Ray cluster at {address!r} ({error}). Check ray_address / "
                                  "RAY_ADDRESS (host:port of the head node, or ray://host:10001) and that "
                                  "`ray start --head` runs there.") from error
    failure: list[BaseException] = []
    joiner = threading.Thread(target=lambda: _init_into(ray, address, failure), daemon=True)
    joiner.start()
    joiner.join(timeout)
    if joiner.is_alive():
        raise ConnectionError(f"The Ray cluster at {address!r} did not accept a connection within {timeout:.0f} s.")
    if failure:
        raise ConnectionError(f"Cannot join the Ray cluster at {address!r}: {failure[0]}") from failure[0]
    return ray


def _init_into(ray, address: str, failure: list[BaseException]) -> None:
    try:
        ray.init(address=address, log_to_driver=False)
    except Exception as error:  # noqa: BLE001 - reported by connect_ray
        failure.append(error)


class _RayEnvs:
    """A pool's envs as Ray actors, one per slot, with the same commands as worker processes.

    An actor that dies is replaced by a fresh one: a reset retries once on it, and a step of the
    episode it was playing comes back truncated with ``info["engine_crashed"]``, as a crashed engine
    inside an env does. ``actor_options`` go to ``ray.remote`` (``num_cpus``, ``memory``,
    ``resources={"jvm": 1}``...).
    """

    def __init__(self, pool: EnvPool, env_kwargs: dict, shipped: tuple, address: str | None,
                 actor_options: dict[str, Any]):
        self.ray = connect_ray(address)
        self.pool = pool
        self.restarts = 0  # actors replaced after they died
        self._arguments = (pool.env_id, pool.split, env_kwargs, *shipped, list(sys.path))
        self._remote = self.ray.remote(**actor_options)(_EnvActor) if actor_options else self.ray.remote(_EnvActor)
        self._last: dict[int, tuple[dict, dict]] = {}  # each slot's latest observation and info
        self._crashed: set[int] = set()  # slots whose actor died mid-episode, awaiting their truncated step
        self.actors = [self._remote.remote(*self._arguments) for _ in range(pool.num_envs)]
        try:
            self._wait_ready(range(pool.num_envs))
        except BaseException:
            self.close()
            raise

    def _wait_ready(self, indices: Iterable[int]) -> None:
        indices = list(indices)
        pending = [self.actors[i].pid.remote() for i in indices]
        try:
            self.ray.get(pending, timeout=RAY_ACTOR_START_TIMEOUT)
        except self.ray.exceptions.GetTimeoutError:
            raise TimeoutError(
                f"Env actors of {self.pool.env_id} were not ready within {RAY_ACTOR_START_TIMEOUT:.0f} s: the "
                f"cluster may lack the resources they ask for (free: {self.ray.available_resources()}).") from None
        except self.ray.exceptions.RayActorError as error:
            raise RuntimeError(f"Making {self.pool.env_id} failed in a Ray actor:\n{error}") from None

    def _restart(self, index: int) -> None:
        self.ray.kill(self.actors[index], no_restart=True)
        self.actors[index] = self._remote.remote(*self._arguments)
        self.restarts += 1
        self._wait_ready([index])

    def run(self, method: str, calls: Sequence[tuple[int, tuple]]) -> list[Any]:
        dead = self.ray.exceptions.RayActorError
        if method == "reset":  # a new episode: a slot's crash belongs to the one before
            self._crashed.difference_update(index for index, _ in calls)
        live = [(index, args) for index, args in calls if not (method == "step" and index in self._crashed)]
        futures = {index: self.actors[index].call.remote(method, args) for index, args in live}
        results = []
        for index, args in calls:
            try:
                result = self.ray.get(futures[index]) if index in futures else self._recover(index, method, args)
            except dead:
                result = self._recover(index, method, args)
            except self.ray.exceptions.RayTaskError as error:
                raise RuntimeError(f"{method} failed in the Ray actor of slot {index} of {self.pool.env_id}:\n"
                                   f"{error}") from None
            if method in ("reset", "step"):
                self._last[index] = (result[0], result[-1])
            results.append(result)
        return results

    def _recover(self, index: int, method: str, args: tuple) -> Any:
        """The answer to ``method`` on slot ``index`` after its actor died."""
        if index not in self._crashed:
            self._restart(index)
        self._crashed.discard(index)
        if method == "step":
            return self._crash_step(index)
        if method == "expert_action":  # the step that follows is the truncated one
            self._crashed.add(index)
            return ""
        return self.ray.get(self.actors[index].call.remote(method, args))  # reset or tasks, on the fresh actor

    def _crash_step(self, index: int) -> tuple:
        observation, info = self._last[index]
        frozen = {"text": "The environment's engine (its Ray actor) died; this episode is cut short.",
                  "admissible_actions": (), "state_key": observation["state_key"]}
        if "image" in observation:
            frozen["image"] = observation["image"]
        step_info = {"task_id": info["task_id"], "split": info["split"], "won": False, "invalid_action": False,
                     "turn": info["turn"] + 1, "engine_crashed": True}
        return frozen, 0.0, False, True, step_info

    def pids(self) -> list[int]:
        """The process id of each slot's actor (tests kill one to check recovery)."""
        return self.ray.get([actor.pid.remote() for actor in self.actors])

    def close(self) -> None:
        closing = [actor.close.remote() for actor in self.actors]
        try:
            self.ray.get(closing, timeout=30)
        except Exception:  # noqa: BLE001 - a dead or stuck actor is killed below either way
            pass
        for actor in self.actors:
            self.ray.kill(actor, no_restart=True)
        self.actors = []


class EnvPool:
    """``num_envs`` environments of one id, addressed by slot index.

    ``concurrency`` is ``"sequential"``, ``"thread"`` (engines that release the GIL, such as a JVM
    or a browser over a socket), ``"process"`` (one worker process per env; engines written in
    Python, such as TextWorld's), ``"ray"`` (one Ray actor per env, on a local Ray instance or the
    cluster at ``ray_address`` / ``$RAY_ADDRESS``, each placed with ``actor_options`` such as
    ``{"num_cpus": 1}``; extra ``ray``) or ``"auto"``, the family's measured choice
    (``EnvSpec.concurrency``). Each worker or actor gets the id's pickled spec and registers it, so
    ids registered at run time work in every mode.
    """

    def __init__(
        self,
        env_id: str,
        split: str = "train",
        num_envs: int = 4,
        *,
        concurrency: str = "auto",
        env_kwargs: dict[str, Any] | None = None,
        ray_address: str | None = None,
        actor_options: dict[str, Any] | None = None,
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
        self._ray: _RayEnvs | None = None
        # The id's spec travels to workers and actors, so ids registered at run time work there too.
        shipped = (env_spec.module, dumps_spec(env_spec)) if concurrency in ("process", "ray") else ()
        if concurrency == "ray":
            self._ray = _RayEnvs(self, env_kwargs, shipped, ray_address, dict(actor_options or {}))
        elif concurrency == "process":
            context = mp.get_context("forkserver")
            for _ in range(num_envs):
                parent, child = context.Pipe()
                process = context.Process(target=_worker, args=(child, env_id, split, env_kwargs, *shipped),
                                          daemon=True)
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
        if self._ray is not None:
            return self._ray.run(method, calls)
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

    @property
    def actors(self) -> _RayEnvs | None:
        """The Ray actors of ``concurrency="ray"`` (their ``pids()``, ``restarts``), else ``None``."""
        return self._ray

    def close(self) -> None:
        if self._ray is not None:
            self._ray.close()
            self._ray = None
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

    def __enter__(self) -> EnvPool:
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


def _is_json(value: Any) -> bool:
    if isinstance(value, (str, int, float, bool, type(None))):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_json(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and _is_json(item) for key, item in value.items())
    return False


def _json_info(info: dict) -> dict:
    """The part of an info dict that belongs in a JSON record: plain values, lists and mappings of them
    (a GUI point, a system's module calls); engine objects and arrays stay out."""
    return {key: value for key, value in info.items() if _is_json(value)}


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
        ray_address: str | None = None,
        actor_options: dict[str, Any] | None = None,
    ):
        self.env_id, self.split = env_id, split
        self.template = template or PromptTemplate()
        self.parser = parser or ActionParser()
        self.pool = EnvPool(env_id, split, num_envs, concurrency=concurrency, env_kwargs=env_kwargs,
                            ray_address=ray_address, actor_options=actor_options)
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

        ``progress`` shows a bar of finished episodes and turns played (a string labels it).
        ``on_turn(turn, observation)`` is called after every step with the observation it led to;
        ``on_trajectory(trajectory)`` when an episode ends.
        """
        pending = list(reversed(episodes))
        live: dict[int, _LiveEpisode] = {}
        finished: dict[str, Trajectory] = {}
        bar = tqdm(total=len(episodes), desc=progress if isinstance(progress, str) else "episodes",
                   disable=not progress, unit="ep")
        turns = 0  # shown beside the episodes: parallel episodes tend to finish together, late
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
                turns += len(slots)
                bar.set_postfix(turns=turns, refresh=False)
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
                        info=_json_info(info),
                        annotations=_json_info(generation.extra or {}),
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

    def __enter__(self) -> RolloutEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
