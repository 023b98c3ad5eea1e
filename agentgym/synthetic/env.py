"""``SyntheticEnv``: a real family's tasks, observations and actions, with transitions written by the
experience model (docs/algorithms.md §5).

Each step retrieves the real transitions most like (state, action) from the replay buffer and asks the
experience model for the next state, its admissible actions, the reward and whether the episode is done.
A first state comes from the real env's reset (default) or from the model. Everything else is the
contract's: the same splits and tasks as the real id, invalid turns for inadmissible actions, the turn
budget, ``info["synthetic"]`` on every reset and step.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agentgym.contract import Frame, Task, TextEnv, state_key
from agentgym.synthetic import format as fmt
from agentgym.synthetic import paths
from agentgym.synthetic.buffer import HISTORY_KEPT, ReplayBuffer, Transition
from agentgym.synthetic.model import (
    READERS,
    ExperienceModel,
    ExperienceSettings,
    Failure,
    Shared,
    acquire_model,
    release_model,
)

INITIAL_STATES = ("real", "model")
WON_REWARD = 1.0 - 1e-9  # a finished episode is won when its reward reaches 1, as in the real families


class RealEnvHost:
    """One real env of an id and split, on a thread of its own: engines bound to the thread that started
    them (Playwright) and engines allowed once per process (ALFWorld) then serve every synthetic env of the
    process, whichever thread steps it."""

    def __init__(self, env_id: str, split: str, env_kwargs: dict[str, Any]):
        from agentgym.registry import make

        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agentgym-real-env")
        try:
            self.env = self._executor.submit(lambda: make(env_id, split=split, **env_kwargs)).result()
        except BaseException:
            self._executor.shutdown(wait=True)
            raise

    def call(self, function, *args: Any) -> Any:
        return self._executor.submit(function, self.env, *args).result()

    def close(self) -> None:
        try:
            self.call(lambda env: env.close())
        finally:
            self._executor.shutdown(wait=True)


HOSTS = Shared()
BUFFERS = Shared()


def _real_reset(env, task_id: str):
    return env.reset(seed=0, options={"task_id": task_id})


def _real_tasks(env, split: str) -> list[Task]:
    return list(env.unwrapped.load_tasks(split))


def acquire_buffer(path: str | Path) -> tuple[Any, ReplayBuffer]:
    """The process's replay buffer of the file ``path`` (read once while any user holds it); returns the key
    to release it with."""
    resolved = Path(path).resolve()
    stat = resolved.stat() if resolved.is_file() else None
    key = (str(resolved), stat.st_mtime_ns if stat else None, stat.st_size if stat else None)
    return key, BUFFERS.acquire(key, lambda: ReplayBuffer.load(resolved))


def read_generated_tasks(path: str | Path) -> list[Task]:
    """Generated tasks written by the curriculum (one :class:`Task` JSON a line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No generated-tasks file at {path}.")
    tasks = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                tasks.append(Task.from_dict(json.loads(line)))
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(f"{path}:{number}: not a task record ({error}).") from error
    return tasks


class SyntheticEnv(TextEnv):
    """A real family's tasks played in the experience model's world.

    Arguments:
        real_id: the real env id whose tasks, splits and text form this env copies.
        split: ``train``, ``dev``, ``test``, ``test_ood`` (the real id's splits).
        model: experience model settings (:class:`~agentgym.synthetic.model.ExperienceSettings` fields,
            e.g. ``{"backend": "embedded", "adapter": "runs/em/final"}``). Default: the experience model
            trained for ``real_id`` and installed in the cache (``trainer: experience_model``,
            ``install: true``) when there is one, else the prompted embedded model. An adapter folder's
            ``experience.json`` (written by the trainer) gives the prompt settings it was trained with.
        buffer: replay buffer file (transitions or turn records). Default: the cache's buffer of
            ``real_id``, collected on first use (``python -m agentgym.synthetic collect``).
        initial_state: ``"real"`` (the real env's reset; default) or ``"model"`` (the model writes it).
            Generated tasks always start from the model; a first state the model cannot write falls back
            to the real reset (of the task the generated one came from), with ``info["experience_model_error"]``.
        generated_tasks: a JSONL file of generated tasks, added to the ``train`` split.
        real_env_kwargs: constructor arguments of the real env.
        grow_buffer: add this env's ``train`` transitions to the buffer, marked ``synthetic`` (they become
            retrievable when the buffer is refreshed: the DreamGym trainer does it every iteration).
        seed: seeds the model's retries.
        max_turns: turn budget (default: the real id's).
    """

    def __init__(self, real_id: str, split: str = "train", *, model: dict[str, Any] | ExperienceSettings | None = None,
                 buffer: str | None = None, initial_state: str = "real", generated_tasks: str | None = None,
                 real_env_kwargs: dict[str, Any] | None = None, grow_buffer: bool = True, seed: int = 0,
                 max_turns: int | None = None, render_mode: str | None = None):
        from agentgym.registry import spec

        if initial_state not in INITIAL_STATES:
            raise ValueError(f"initial_state must be one of {INITIAL_STATES}, not {initial_state!r}.")
        self.splits = spec(real_id).splits  # the real id's splits, checked by TextEnv
        real_env_kwargs = dict(real_env_kwargs or {})
        super().__init__(split, max_turns=self.turn_budget(max_turns, real_id=real_id, real_env_kwargs=real_env_kwargs),
                         render_mode=render_mode)
        self.real_id, self.initial_state, self.grow_buffer, self._seed = real_id, initial_state, grow_buffer, seed
        self.settings = paths.resolve_settings(real_id, model)
        if buffer is not None and not Path(buffer).is_file():
            raise FileNotFoundError(f"No replay buffer file at {buffer}. Collect one with "
                                    f"`python -m agentgym.synthetic collect {real_id} --out {buffer}`.")
        self._buffer_file = buffer
        self._generated = read_generated_tasks(generated_tasks) if generated_tasks else []
        self._held: list[tuple[Shared, Any]] = []
        host_key = (real_id, split, json.dumps(real_env_kwargs, sort_keys=True))
        self._host = HOSTS.acquire(host_key, lambda: RealEnvHost(real_id, split, real_env_kwargs))
        self._held.append((HOSTS, host_key))
        self.buffer: ReplayBuffer | None = None  # the buffer and the model load when the first step needs them
        self.model: ExperienceModel | None = None
        self._lists_actions = True
        self._instruction = ""
        self._history: list[tuple[str, str]] = []

    @classmethod
    def turn_budget(cls, max_turns: int | None = None, *, real_id: str = "", real_env_kwargs: dict | None = None,
                    **kwargs: Any) -> int:
        """``max_turns``, else the real id's budget."""
        from agentgym.registry import max_turns as real_budget

        return int(max_turns or real_budget(real_id, real_env_kwargs))

    # ------------------------------------------------------------------ tasks
    def load_tasks(self, split: str) -> list[Task]:
        generated = [task for task in self._generated if split == "train"]
        return self._host.call(_real_tasks, split) + generated

    # ------------------------------------------------------------------ episodes
    def _start(self, task: Task) -> Frame:
        self._history = []
        parent = task.payload.get("generated_from")
        error = ""
        if parent is not None or self.initial_state == "model":
            frame, error = self._model_start(task.instruction)
            if frame is not None:
                return self._begin(frame, task.instruction)
        observation, info = self._host.call(_real_reset, parent or task.id)
        instruction = task.instruction if parent is not None else info.get("instruction", task.instruction)
        frame = Frame(observation["text"], tuple(observation["admissible_actions"]), observation["state_key"],
                      info={"experience_model_error": error} if error else {})
        return self._begin(frame, instruction)

    def _begin(self, frame: Frame, instruction: str) -> Frame:
        self._instruction = instruction
        frame.info.update(instruction=instruction, synthetic=True)
        return frame

    def _load(self) -> None:
        """Acquire the replay buffer (collecting the default one on first use) and the experience model."""
        if self.model is not None:
            return
        key, self.buffer = acquire_buffer(self._buffer_file or paths.default_buffer(self.real_id))
        self._held.append((BUFFERS, key))
        self.model = acquire_model(self.settings, self._seed)
        self._lists_actions = any(t.actions for t in self.buffer.transitions if not t.synthetic)

    def _model_start(self, instruction: str) -> tuple[Frame | None, str]:
        self._load()
        settings = self.settings
        demos = self.buffer.retrieve_starts(instruction, settings.retrieval_k)
        prompt = fmt.render_initial_prompt(instruction, [(d.instruction, d.state, d.actions) for d in demos],
                                           settings.demo_chars)
        result = self.model.submit(prompt, READERS["initial", self._lists_actions])
        if isinstance(result, Failure):
            return None, f"no first state after {result.attempts} attempts: {result.reason}"
        text, actions = result
        return Frame(text, actions, state_key(text, *actions)), ""

    def _act(self, action: str) -> Frame:
        self._load()
        settings, current = self.settings, self.current_frame
        demos = self.buffer.retrieve(current.text, action, settings.retrieval_k)
        prompt = settings.step_prompt(instruction=self._instruction, history=self._history, state=current.text,
                                      actions=current.admissible_actions, action=action,
                                      demos=[d.example() for d in demos])
        outcome = self.model.submit(prompt, READERS["outcome", self._lists_actions])
        if isinstance(outcome, Failure):
            return Frame(f"The experience model gave no usable reply after {outcome.attempts} attempts "
                         f"({outcome.reason}); this episode is cut short.", (), current.state_key,
                         info={"engine_crashed": True, "experience_model_error": outcome.reason, "synthetic": True})
        info: dict[str, Any] = {"synthetic": True}
        if outcome.rationale:
            info["rationale"] = outcome.rationale
        if outcome.raw_reward != outcome.reward:
            info["reward_clipped_from"] = outcome.raw_reward
        if outcome.invalid:
            frame = self.invalid_frame(outcome.next_state)
            frame.info = info
        else:
            frame = Frame(outcome.next_state, outcome.actions, state_key(outcome.next_state, *outcome.actions),
                          reward=outcome.reward, terminated=outcome.done,
                          won=outcome.done and outcome.reward >= WON_REWARD, info=info)
        self._remember(current, action, frame, outcome.rationale)
        return frame

    def _remember(self, current: Frame, action: str, frame: Frame, rationale: str) -> None:
        if self.grow_buffer and self.split == "train":
            task = self.task
            self.buffer.add([Transition(
                task_id=task.id, instruction=self._instruction, state=current.text,
                actions=list(current.admissible_actions), action=action, next_state=frame.text,
                next_actions=list(frame.admissible_actions), reward=frame.reward, done=frame.terminated,
                turn_index=self.turn - 1, history=[list(h) for h in self._history[-HISTORY_KEPT:]], invalid=frame.invalid,
                synthetic=True, rationale=rationale, split=self.split)])
        if not frame.invalid:
            self._history.append((action, fmt.headline(frame.text)))

    def close(self) -> None:
        held, self._held = getattr(self, "_held", []), []
        for shared, key in reversed(held):
            shared.release(key)
        if getattr(self, "model", None) is not None:
            release_model(self.settings, self._seed)
            self.model = None
        super().close()
