"""Any agentgym env id in TRL's ``GRPOTrainer``, through its ``environment_factory``.

TRL (1.x) plays a multi-turn environment as tool calls: for every rollout it takes an instance from
the factory, calls ``reset(**row)`` with the dataset row and appends the returned text to the last
user message, exposes the instance's public methods as tools the model may call, and scores the
rollout with the instance's ``get_reward()``. Here the one tool is :meth:`AgentgymToolEnv.act`,
which steps the env; the reward is the env's own (the sum of the episode's rewards).

The prompt and every tool reply hold the instruction, the observation text and the admissible
actions; a task's ground truth (:attr:`agentgym.contract.Task.answer`) and its payload never reach them.

::

    from trl import GRPOConfig, GRPOTrainer
    from agentgym.integrations.trl import environment_factory, make_dataset

    factory = environment_factory("agentgym/TextWorld-CoinCollector-v0")   # or "openenv:http://HOST:PORT"
    trainer = GRPOTrainer(model, args=GRPOConfig(...), train_dataset=make_dataset(factory.env_id),
                          environment_factory=factory, processing_class=tokenizer)
    trainer.train()
    factory.close()   # frees every env the trainer made

The model's chat template must render tools and TRL must know how to parse its tool calls
(``trl.chat_template_utils.add_response_schema``); ``examples/trl_grpo.py`` shows the tiny model with
TRL's Qwen2.5 template, which the SmolLM2 tokenizer's ChatML tokens fit.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from typing import Any

from agentgym.registry import make, spec_with_split

DEFAULT_SYSTEM_PROMPT = (
    "You are an agent in a text environment. Each turn, call the tool `act` with exactly one of the admissible "
    "actions. Keep acting until the episode is over.")


def describe(observation: dict[str, Any], *, instruction: str | None = None, reward: float | None = None,
             over: bool = False, max_listed_actions: int = 60) -> str:
    """What the model reads: the task (on reset), the observation text, the admissible actions, and
    after a step its reward and whether the episode is over."""
    parts = [f"Task: {instruction}"] if instruction else []
    parts.append(observation["text"])
    actions = list(observation["admissible_actions"])
    if actions and not over:
        shown = actions[:max_listed_actions] + (["..."] if len(actions) > max_listed_actions else [])
        parts.append("Admissible actions: " + " | ".join(shown))
    if reward is not None:
        parts.append(f"Reward: {reward:g}." + (" The episode is over." if over else ""))
    return "\n\n".join(parts)


class AgentgymToolEnv:
    """One agentgym env as TRL wants it: ``reset`` from a dataset row, the tool ``act``, ``get_reward``.

    Public methods other than ``reset`` and ``get_reward`` become tools, so everything else here is
    private or an attribute. ``turns`` and ``rewards`` record the current episode, ``total_turns`` every
    action this instance took.
    """

    def __init__(self, env_id: str, split: str = "train", env_kwargs: dict[str, Any] | None = None):
        self.env_id, self.split = env_id, split
        self.env = make(env_id, split=split, **(env_kwargs or {}))
        self.turns = self.total_turns = 0
        self.rewards: list[float] = []
        self.won = False
        self.episode_over = True

    def reset(self, task_id: str | None = None, seed: int | None = None, **row: Any) -> str:
        """Start the row's task (``task_id``; else the one ``seed`` picks) and return what the model reads."""
        observation, info = self.env.reset(seed=seed, options=None if task_id is None else {"task_id": task_id})
        self.turns, self.rewards, self.won, self.episode_over = 0, [], False, False
        return describe(observation, instruction=info.get("instruction"))

    def act(self, action: str) -> str:
        """Take one action in the environment and read what happens next.

        Args:
            action: The command to perform, exactly one of the admissible actions listed in the last observation.

        Returns:
            The new observation with its admissible actions, the step's reward and whether the episode is over.
        """
        if self.episode_over:
            return "The episode is over; no more actions are taken."
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.turns += 1
        self.total_turns += 1
        self.rewards.append(float(reward))
        self.won = bool(info["won"])
        self.episode_over = terminated or truncated
        return describe(observation, reward=float(reward), over=self.episode_over)

    def get_reward(self) -> float:
        """The episode's return: the sum of the env's rewards so far."""
        return float(sum(self.rewards))

    def _close(self) -> None:
        self.env.close()


class EnvironmentFactory:
    """A zero-argument callable for ``GRPOTrainer(environment_factory=...)`` that makes
    :class:`AgentgymToolEnv` instances of one id and split, and remembers them so :meth:`close` frees
    every one (TRL keeps its instances for the whole run and never closes them)."""

    def __init__(self, env_id: str, split: str = "train", env_kwargs: dict[str, Any] | None = None):
        spec_with_split(env_id, split)  # an unknown id or split fails here, not inside the trainer
        self.env_id, self.split, self.env_kwargs = env_id, split, dict(env_kwargs or {})
        self.instances: list[AgentgymToolEnv] = []
        self._lock = threading.Lock()

    def __call__(self) -> AgentgymToolEnv:
        instance = AgentgymToolEnv(self.env_id, self.split, self.env_kwargs)
        with self._lock:
            self.instances.append(instance)
        return instance

    @property
    def steps(self) -> int:
        """Actions taken through the ``act`` of every instance so far."""
        return sum(instance.total_turns for instance in self.instances)

    def close(self) -> None:
        with self._lock:
            instances, self.instances = self.instances, []
        for instance in instances:
            instance._close()


def environment_factory(env_id: str, split: str = "train", **env_kwargs: Any) -> EnvironmentFactory:
    """TRL's ``environment_factory`` for ``env_id`` on ``split`` (any registered id, or ``openenv:URL``)."""
    return EnvironmentFactory(env_id, split, env_kwargs)


def make_dataset(env_id: str, split: str = "train", *, num_tasks: int | None = None, seed: int = 0,
                 task_filter: str | None = None, system_prompt: str = DEFAULT_SYSTEM_PROMPT,
                 user_prompt: str = "Here is the environment.", env_kwargs: dict[str, Any] | None = None):
    """A ``datasets.Dataset`` of prompts for TRL, one row per task of ``split`` (those whose id contains
    ``task_filter``; ``num_tasks`` of them, shuffled with ``seed``). Columns: ``prompt`` (system and user
    messages; ``reset`` appends the observation), ``task_id`` and ``seed``, which ``reset`` receives.
    GRPO repeats each row ``num_generations`` times, so a group plays one task."""
    from datasets import Dataset

    env = make(env_id, split=split, **(env_kwargs or {}))
    try:
        tasks = [task.id for task in env.unwrapped.tasks if task_filter is None or task_filter in task.id]
    finally:
        env.close()
    if not tasks:
        raise ValueError(f"No {split} task of {env_id} matches task_filter={task_filter!r}.")
    random.Random(seed).shuffle(tasks)
    tasks = tasks[:num_tasks] if num_tasks else tasks
    prompt = [{"role": "system", "content": system_prompt}, {"role": "user", "content": user_prompt + "\n\n"}]
    return Dataset.from_dict({"prompt": [prompt] * len(tasks), "task_id": tasks,
                              "seed": [seed + index for index in range(len(tasks))]})


def tool_call_conversations(env_id: str, split: str = "train", *, task_ids: Sequence[str],
                            system_prompt: str = DEFAULT_SYSTEM_PROMPT, user_prompt: str = "Here is the environment.",
                            env_kwargs: dict[str, Any] | None = None) -> list[list[dict[str, Any]]]:
    """The expert's episodes on ``task_ids`` as tool-calling chats (system, user with the observation,
    then assistant tool calls of ``act`` and tool replies), in the form TRL's environment loop produces:
    data for a behaviour-cloning warm start of a model that has never called a tool."""
    tool_env = AgentgymToolEnv(env_id, split, env_kwargs)
    chats = []
    try:
        for task_id in task_ids:
            chat = [{"role": "system", "content": system_prompt},
                    {"role": "user", "content": user_prompt + "\n\n" + tool_env.reset(task_id=task_id)}]
            while not tool_env.episode_over:
                action = tool_env.env.unwrapped.expert_action()
                if action is None:
                    break
                call = {"type": "function", "function": {"name": "act", "arguments": {"action": action}}}
                chat.append({"role": "assistant", "content": "", "tool_calls": [call]})
                chat.append({"role": "tool", "name": "act", "content": tool_env.act(action)})
            chats.append(chat)
    finally:
        tool_env._close()
    return chats
