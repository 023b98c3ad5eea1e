"""Trainer settings: documented dataclasses composed per trainer, built from YAML plus ``key=value``.

A trainer's config class lists the settings groups it uses and nothing else, e.g.
``class GRPOConfig(RunConfig, PolicyLossConfig, GroupAdvantageConfig)``. Every field carries its
meaning as a trailing comment; :func:`describe_config` prints them (``agentgym train --help-config``).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Sequence


@dataclass
class Settings:
    """Base of every settings group; each group's ``__post_init__`` checks its own fields, then calls
    ``super().__post_init__()`` so composed configs check every group."""

    def __post_init__(self) -> None:
        pass

    @classmethod
    def describe(cls) -> str:
        """Every setting with its default and meaning (``agentgym train --help-config``)."""
        return describe_config(cls)


@dataclass
class LoopConfig(Settings):
    """What every trainer on the shared loop has: the environment and its prompts, iterations and
    rollouts, optimisation and bookkeeping."""

    # --- environment
    env_id: str = "agentgym/TextWorld-CoinCollector-v0"  # registered env id to train on (its train split)
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # env constructor arguments, e.g. max_turns
    eval_split: str = "test"  # held-out split evaluated before training, every eval_every iterations, and after
    task_filter: str = ""  # only tasks whose id contains this text, in training and evaluation (e.g. "level5")
    history_window: int = 2  # recent turns shown in each prompt (shorter prompts train faster)
    prompt_style: str = "summary"  # summary: one message with recent turns | chat: the whole episode as messages
    # --- iterations and rollouts
    iterations: int = 20  # training iterations (each: rollouts or a pass over the data, then updates)
    tasks_per_iteration: int = 4  # distinct train tasks rolled out per iteration
    group_size: int = 4  # episodes per task
    max_episodes: int = 0  # stop once this many training episodes were played (0: run every iteration); equal rollout budgets when dynamic sampling plays extra rounds
    num_envs: int = 4  # environments stepped together
    concurrency: str = "auto"  # how the envs run: auto (the family's best) | sequential | thread | process | ray
    ray_address: str = ""  # Ray cluster of concurrency=ray: host:port or ray://host:10001 ("": $RAY_ADDRESS, else a local instance)
    env_actor_options: dict[str, Any] = field(default_factory=dict)  # ray.remote options per env actor, e.g. {"num_cpus": 1}
    # --- optimisation
    epochs: int = 1  # passes over each iteration's samples
    minibatch_size: int = 32  # samples per optimizer step
    micro_batch_size: int = 8  # samples per forward/backward (gradient accumulation in between)
    lr: float = 2e-5  # peak learning rate (AdamW)
    warmup_ratio: float = 0.1  # share of the run's update passes spent warming the learning rate up
    min_lr_ratio: float = 0.2  # the cosine decay ends at this share of the peak learning rate
    weight_decay: float = 0.0  # AdamW weight decay
    max_grad_norm: float = 1.0  # gradients are clipped to this global norm before each step
    # --- bookkeeping
    eval_every: int = 5  # iterations between held-out evaluations (0: only before and after)
    eval_before: bool = True  # evaluate before training too (off: runs sharing one start evaluate it once, elsewhere)
    eval_episodes: int = 20  # held-out episodes per evaluation
    seed: int = 0  # seeds the model's new weights, the sampler, task order and minibatches
    output_dir: str = "runs/train"  # the run folder: metrics, checkpoint, curves, report, final adapter
    resume: bool = False  # continue from output_dir/checkpoint.pt
    save_episodes: int = 16  # episodes (whole groups) of each iteration saved to output_dir/trajectories/ (0: none)


@dataclass
class LLMConfig(Settings):
    """The language-model policy a run trains: the model and its adapter, how it acts, and how its
    turns become samples."""

    model: str = "embedded"  # embedded | tiny | a checkpoint folder
    init_adapters: list[str] = field(default_factory=list)  # LoRA adapters merged in, in order (warm start)
    lora_rank: int = 16  # LoRA rank; 0 trains every weight
    lora_alpha: int = 32  # LoRA scaling numerator (the adapter's update is scaled by alpha / rank)
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])  # adapted modules
    lora_layers: int = 0  # adapt only the top N transformer layers (0: all); backward stops below them
    mode: str = "choice"  # choice: pick among admissible actions | generate: free text (see HFPolicy)
    temperature: float = 1.0  # sampling temperature of free generation
    choice_temperature: float = 1.0  # temperature of the softmax over admissible actions
    eval_temperature: float | None = None  # held-out evaluation's temperature, for replies and choices alike (None: as in training; 0: greedy)
    max_new_tokens: int = 24  # reply budget in generate mode
    layout: str = "per-turn"  # per-turn: a sample per turn | episode: one concatenated sequence per episode
    reuse_computation: bool = True  # same maths, less compute: rollouts score a repeated choice state once while the weights are unchanged; updates run the frozen layers below lora_layers once per distinct choice state or (prompt, reply); an update whose loss has a zero gradient (every advantage zero, nothing else in the loss) steps the optimizer without the passes
    sampler: str = ""  # who samples rollouts: "" the trained model | vllm (a vLLM server started here) | vllm@URL/v1
    sampler_sync: str = "weights"  # vllm weight sync after each update: weights (merged, reloaded) | lora (new adapter version)

    def __post_init__(self) -> None:
        if self.eval_temperature is not None and self.eval_temperature < 0:
            raise ValueError(f"eval_temperature must be 0 (greedy) or more, or unset; got {self.eval_temperature}.")
        if self.layout not in ("per-turn", "episode"):
            raise ValueError(f"layout must be 'per-turn' or 'episode', not {self.layout!r}.")
        if self.layout == "episode" and (getattr(self, "prompt_style", "chat") != "chat" or self.mode != "generate"):
            raise ValueError("layout=episode trains one growing dialogue per episode: it needs prompt_style=chat "
                             "(prompts that extend each other) and mode=generate.")
        super().__post_init__()


@dataclass
class RunConfig(LoopConfig, LLMConfig):
    """The loop's settings and the language-model policy's: what every LLM trainer shares."""


@dataclass
class PolicyLossConfig(Settings):
    """The clipped policy-gradient loss (docs/algorithms.md §0.2–0.4)."""

    clip_low: float = 0.2  # PPO ε_low
    clip_high: float = 0.28  # PPO ε_high (clip-higher)
    dual_clip: float | None = 3.0  # dual-clip bound c for negative advantages (None: off)
    aggregation: str = "token-mean"  # token-mean | seq-mean-token-mean | seq-mean-token-sum | seq-mean-token-sum-norm
    kl_coef: float = 0.0  # β of the KL-to-reference loss (reference: the starting model)
    kl_estimator: str = "k3"  # k1 | k2 | k3 (low-variance)
    entropy_coef: float = 0.0  # entropy bonus c_H


def make_config(config_class: type, settings: dict[str, Any], overrides: Sequence[str] = ()) -> Any:
    """A trainer config from a YAML mapping plus ``key=value`` overrides, with values converted to each
    field's type; unknown keys are an error that lists the known ones."""
    import yaml

    hints = typing.get_type_hints(config_class)
    known = {f.name for f in dataclasses.fields(config_class)}
    values = dict(settings)
    for override in overrides:
        key, separator, text = override.partition("=")
        if not separator:
            raise ValueError(f"Override {override!r} is not key=value.")
        values[key.strip()] = yaml.safe_load(text)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"Unknown setting(s) {unknown} for {config_class.__name__}; known: {', '.join(sorted(known))}. "
                         f"`agentgym train --help-config TRAINER` explains each.")
    for key, value in values.items():
        kind = hints[key]
        if kind in (float, int) and isinstance(value, str):
            value = kind(float(value)) if kind is int else float(value)
        elif kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        values[key] = value
    return config_class(**values)


_FIELD_LINE = re.compile(r"^\s+(\w+)\s*:[^=]*=.*?#\s*(.*)$")


def setting_help(config_class: type) -> dict[str, tuple[str, str]]:
    """Each field's (settings group, meaning), read from the trailing comments of the dataclasses."""
    found: dict[str, tuple[str, str]] = {}
    for klass in reversed(config_class.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is Settings:
            continue
        try:
            lines = inspect.getsource(klass).splitlines()
        except (OSError, TypeError):
            continue
        own = set(klass.__dict__.get("__annotations__", {}))
        for line in lines:
            match = _FIELD_LINE.match(line)
            if match and match.group(1) in own:
                found[match.group(1)] = (klass.__name__, match.group(2).strip())
    return found


def describe_config(config_class: type) -> str:
    """Every setting of a trainer config with its default and meaning, grouped as the classes compose."""
    helps = setting_help(config_class)
    defaults = config_class()
    groups: dict[str, list[str]] = {}
    for item in dataclasses.fields(config_class):
        group, meaning = helps.get(item.name, (config_class.__name__, ""))
        value = getattr(defaults, item.name)
        groups.setdefault(group, []).append(f"  {item.name} = {value!r}\n      {meaning}")
    # The shared groups in the order the class lists them, then the trainer's own settings.
    order = [klass.__name__ for klass in config_class.__mro__]
    ranked = sorted(groups, key=lambda name: (name == config_class.__name__, order.index(name) if name in order else 0))
    return "\n".join(f"{group}:\n" + "\n".join(groups[group]) for group in ranked)
