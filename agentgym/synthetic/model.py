"""The experience model M_exp (docs/algorithms.md §5.1): a language model that writes the next state, the
reward and the end flag of a transition, a first state for a task, or a new task.

Its backend is any policy spec that generates text — ``embedded``, ``tiny``, ``hf:PATH`` (with a LoRA
``adapter``), ``openai:MODEL@URL`` (vLLM on a GPU). Every reply is parsed strictly
(:mod:`agentgym.synthetic.format`); a malformed one is asked again, sampling at ``retry_temperature``,
up to ``max_attempts`` times in all, after which the caller gets the reason instead of an outcome —
never an exception.

Envs stepped on threads (the rollout engine's default for synthetic ids) submit their steps one at a
time; :class:`Batcher` gathers the steps that arrive together into one batch for the model, so a rollout
of N episodes costs one batched generation per turn, not N.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Generic, Sequence, TypeVar

from agentgym.policies import Policy, PolicyRequest, make_policy
from agentgym.synthetic import format as fmt

Messages = list[dict[str, str]]
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ExperienceSettings:
    """How the experience model is built and prompted."""

    backend: str = "embedded"  # policy spec: embedded | tiny | hf:PATH | openai:MODEL@URL
    adapter: str | None = None  # LoRA adapter folder on a local backend (a trained experience model)
    retrieval_k: int = 2  # real transitions retrieved into each prompt
    history_window: int = 3  # earlier steps of the episode shown (action and the headline that followed)
    state_chars: int = 1500  # the current state is cut to this many characters in the prompt
    demo_chars: int = 400  # each retrieved state and next state is cut to this many characters
    max_new_tokens: int = 200  # reply budget per attempt
    max_attempts: int = 3  # attempts per malformed reply (the first greedy, the others sampled)
    retry_temperature: float = 0.7  # sampling temperature of the retries
    rationale: bool = False  # ask for a one-sentence reasoning line before the outcome
    batch_wait: float = 0.05  # seconds a step waits for other episodes' steps to join its batch
    max_batch: int = 16  # most prompts generated together (a bigger batch is split)

    def __post_init__(self) -> None:
        if (self.max_attempts < 1 or self.retrieval_k < 0 or self.history_window < 0 or self.max_new_tokens < 1
                or self.max_batch < 1):
            raise ValueError(f"Invalid experience model settings: {self}")

    def step_prompt(self, *, instruction: str, history: Sequence[Sequence[str]], state: str, actions: Sequence[str],
                    action: str, demos: Sequence[fmt.Example]) -> Messages:
        """The prompt for one transition, shown as these settings say (history window, lengths, rationale)."""
        return fmt.render_transition_prompt(
            instruction=instruction, history=[tuple(h) for h in history][-self.history_window:] if self.history_window else [],
            state=state, actions=actions, action=action, demos=demos, state_chars=self.state_chars,
            demo_chars=self.demo_chars, with_rationale=self.rationale)

    @classmethod
    def of(cls, value: "ExperienceSettings | dict[str, Any] | None") -> "ExperienceSettings":
        if isinstance(value, ExperienceSettings):
            return value
        value = dict(value or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"Unknown experience model setting(s) {unknown}; known: {', '.join(sorted(known))}.")
        return cls(**value)


@dataclass(frozen=True)
class Reader:
    """How a kind of reply is read: its parser (raising :class:`~agentgym.synthetic.format.MalformedOutput`)
    and the strings after which a local model may stop writing (they stay in the reply)."""

    parse: Callable[[str], Any]
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Failure:
    """No usable reply after every attempt: why, and the last reply."""

    reason: str
    reply: str
    attempts: int


class Batcher(Generic[T, R]):
    """Runs ``run(items)`` on items submitted from several threads, batching those that arrive within
    ``wait`` seconds of each other. The first waiting caller leads: it waits, takes every pending item,
    runs the batch and hands each caller its result (or the batch's exception)."""

    def __init__(self, run: Callable[[list[T]], list[R]], wait: float):
        self._run, self._wait = run, wait
        self._cond = threading.Condition()
        self._pending: list[dict[str, Any]] = []
        self._leading = False

    def __call__(self, item: T) -> R:
        slot: dict[str, Any] = {"item": item}
        with self._cond:
            self._pending.append(slot)
            while "result" not in slot and "error" not in slot and self._leading:
                self._cond.wait()
            if "result" not in slot and "error" not in slot:
                self._leading = True
        if "result" not in slot and "error" not in slot:
            self._lead()
        if "error" in slot:
            raise slot["error"]
        return slot["result"]

    def _lead(self) -> None:
        time.sleep(self._wait)
        with self._cond:
            batch, self._pending = self._pending, []
        try:
            results = self._run([slot["item"] for slot in batch])
            for slot, result in zip(batch, results):
                slot["result"] = result
        except BaseException as error:  # noqa: BLE001 - every caller of the batch gets it
            for slot in batch:
                slot["error"] = error
        finally:
            with self._cond:
                self._leading = False
                self._cond.notify_all()


def _seed_of(prompts: Sequence[Messages], attempt: int) -> int:
    digest = hashlib.blake2b(repr((prompts, attempt)).encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "little") >> 1


class ExperienceModel:
    """The experience model behind one backend: :meth:`complete` asks for replies and parses them, with
    retries; :meth:`submit` is the same for one prompt from any thread, batched with concurrent ones."""

    def __init__(self, settings: ExperienceSettings | dict[str, Any] | None = None, *, seed: int = 0,
                 backend: Policy | None = None):
        self.settings = ExperienceSettings.of(settings)
        self._backend = backend or self._make(temperature=0.0, seed=seed)  # given: e.g. a model being trained
        self._retry: Policy | None = None
        self._seed = seed
        self._batcher: Batcher = Batcher(self._complete_batch, self.settings.batch_wait)
        self._lock = threading.Lock()  # one batch at a time through the backend
        self.calls = {"prompts": 0, "attempts": 0, "malformed": 0, "failed": 0}

    def _make(self, *, temperature: float, seed: int) -> Policy:
        settings = self.settings
        if settings.backend.partition(":")[0] == "openai":
            return make_policy(settings.backend, seed=seed, temperature=temperature, max_tokens=settings.max_new_tokens)
        kwargs: dict[str, Any] = dict(mode="generate", temperature=temperature, max_new_tokens=settings.max_new_tokens)
        if settings.adapter:
            kwargs["adapter"] = settings.adapter
        return make_policy(settings.backend, seed=seed, **kwargs)

    @property
    def tokenizer(self) -> Any:
        """The local backend's tokenizer (``None`` for an endpoint)."""
        return getattr(self._backend, "tokenizer", None)

    def config(self) -> dict[str, Any]:
        return asdict(self.settings)

    def _generate(self, prompts: list[Messages], attempt: int, stop: tuple[str, ...]) -> list[str]:
        """One reply per prompt, ``max_batch`` at a time."""
        size = self.settings.max_batch
        return [reply for start in range(0, len(prompts), size)
                for reply in self._generate_batch(prompts[start:start + size], attempt, stop)]

    def _generate_batch(self, prompts: list[Messages], attempt: int, stop: tuple[str, ...]) -> list[str]:
        """One reply per prompt: greedy on the first attempt, sampled (seeded by the prompts) on retries."""
        if attempt == 0:
            backend = self._backend
        else:
            if self._retry is None:
                self._retry = (self._backend if hasattr(self._backend, "generate")
                               else self._make(temperature=self.settings.retry_temperature, seed=self._seed))
            backend = self._retry
        if hasattr(backend, "generate"):  # a local model: sample the retries with their own seeded generator
            import torch

            from agentgym.hf_policy import Sampling

            temperature = 0.0 if attempt == 0 else self.settings.retry_temperature
            generator = torch.Generator()
            generator.manual_seed(_seed_of(prompts, attempt))
            sampling = Sampling(temperature=temperature, max_new_tokens=self.settings.max_new_tokens, stop=stop)
            replies = backend.generate(prompts, sampling=sampling, generator=generator)
            # The policy cuts a reply at its stop string; here the stop string belongs to the reply.
            return [backend.tokenizer.decode([t for t in reply.token_ids if t not in backend.eos_ids],
                                             skip_special_tokens=True) for reply in replies]
        return [reply.text for reply in backend.act([PolicyRequest(messages) for messages in prompts])]

    def complete(self, prompts: Sequence[Messages], reader: Reader) -> list[Any]:
        """``reader.parse(reply)`` of each prompt's reply, asking again for the malformed ones; a
        :class:`Failure` where every attempt was malformed."""
        results: list[Any] = [None] * len(prompts)
        reasons: dict[int, tuple[str, str]] = {}
        waiting = list(range(len(prompts)))
        with self._lock:
            self.calls["prompts"] += len(prompts)
            for attempt in range(self.settings.max_attempts):
                replies = self._generate([prompts[i] for i in waiting], attempt, reader.stop)
                self.calls["attempts"] += len(waiting)
                still = []
                for index, reply in zip(waiting, replies):
                    try:
                        results[index] = reader.parse(reply)
                    except fmt.MalformedOutput as error:
                        self.calls["malformed"] += 1
                        reasons[index] = (str(error), reply)
                        still.append(index)
                waiting = still
                if not waiting:
                    break
            self.calls["failed"] += len(waiting)
        for index in waiting:
            reason, reply = reasons[index]
            results[index] = Failure(reason, reply, self.settings.max_attempts)
        return results

    def _complete_batch(self, items: list[tuple[Messages, Reader]]) -> list[Any]:
        # Items of one batch may be read differently (steps and first states): one pass per reader.
        results: list[Any] = [None] * len(items)
        for reader in dict.fromkeys(reader for _, reader in items):
            indices = [i for i, (_, r) in enumerate(items) if r == reader]
            for index, result in zip(indices, self.complete([items[i][0] for i in indices], reader)):
                results[index] = result
        return results

    def submit(self, prompt: Messages, reader: Reader) -> Any:
        """:meth:`complete` for one prompt, batched with the prompts other threads submit at the same time."""
        return self._batcher((prompt, reader))

    def close(self) -> None:
        for backend in {id(b): b for b in (self._backend, self._retry) if b is not None}.values():
            backend.close()


class Shared:
    """Process-wide instances shared by key and closed when the last user releases them (a model loaded once
    for every env of a rollout; one real env per id and split)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[Any, list[Any]] = {}

    def acquire(self, key: Any, factory: Callable[[], Any]) -> Any:
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                entry = self._items[key] = [factory(), 0]
            entry[1] += 1
            return entry[0]

    def release(self, key: Any) -> None:
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            del self._items[key]
        close = getattr(entry[0], "close", None)
        if close is not None:
            close()


MODELS = Shared()


def acquire_model(settings: ExperienceSettings, seed: int = 0) -> ExperienceModel:
    """The process's experience model for ``settings`` (loaded on first use); :func:`release_model` when done."""
    return MODELS.acquire((settings, seed), lambda: ExperienceModel(settings, seed=seed))


def release_model(settings: ExperienceSettings, seed: int = 0) -> None:
    MODELS.release((settings, seed))


_OUTCOME_STOPS = ("Done: yes", "Done: no")
READERS = {
    ("outcome", True): Reader(functools.partial(fmt.parse_outcome, lists_actions=True), _OUTCOME_STOPS),
    ("outcome", False): Reader(functools.partial(fmt.parse_outcome, lists_actions=False), _OUTCOME_STOPS),
    ("initial", True): Reader(functools.partial(fmt.parse_initial, lists_actions=True)),
    ("initial", False): Reader(functools.partial(fmt.parse_initial, lists_actions=False)),
}
"""The readers of transition outcomes and first states, for envs that list admissible actions and envs that
do not: one object each, so concurrent steps of any episodes batch together."""
