"""Machinery every trainer shares: turn records → training samples, the policy's log-probs with
gradients for both action modes, the clipped policy loss step, checkpoints, metrics and plots.

Algorithms (``grpo.py``, ``epo.py``) read top to bottom on top of this file.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from agentgym.evaluation import episode_metrics
from agentgym.hf_policy import HFPolicy
from agentgym.models import load_causal_lm
from agentgym.paths import atomic_write
from agentgym.policies import Policy, RandomPolicy
from agentgym.prompting import PromptTemplate
from agentgym.records import Trajectory
from agentgym.rollout import RolloutEngine
from agentgym.trainers.advantages import TurnStats
from agentgym.trainers.losses import aggregate, kl_divergence, ppo_clip_loss


# ---------------------------------------------------------------------------------------------- run settings
@dataclass
class RunConfig:
    """Settings every trainer shares (each trainer's config adds its own). Every field can be set in the
    YAML file or as ``key=value`` on the command line."""

    # --- environment
    env_id: str = "agentgym/TextWorld-CoinCollector-v0"  # registered env id to train on (its train split)
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # env constructor arguments, e.g. max_turns
    eval_split: str = "test"  # held-out split evaluated before training, every eval_every iterations, and after
    task_filter: str = ""  # only tasks whose id contains this text, in training and evaluation (e.g. "level5")
    history_window: int = 2  # recent turns shown in each prompt (shorter prompts train faster)
    prompt_style: str = "summary"  # summary: one message with recent turns | chat: the whole episode as messages
    layout: str = "per-turn"  # per-turn: a sample per turn | episode: one concatenated sequence per episode
    # --- policy
    model: str = "embedded"  # embedded | tiny | a checkpoint folder
    init_adapters: list[str] = field(default_factory=list)  # LoRA adapters merged in, in order (warm start)
    lora_rank: int = 16  # LoRA rank; 0 trains every weight
    lora_alpha: int = 32
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    lora_layers: int = 0  # adapt only the top N transformer layers (0: all); backward stops below them
    mode: str = "choice"  # choice: pick among admissible actions; generate: free text (see HFPolicy)
    temperature: float = 1.0  # sampling temperature of free generation
    choice_temperature: float = 1.0  # temperature of the softmax over admissible actions
    max_new_tokens: int = 24  # reply budget in generate mode
    # --- iterations and rollouts
    iterations: int = 20  # training iterations (each: rollouts or a pass over the data, then updates)
    tasks_per_iteration: int = 4  # distinct train tasks rolled out per iteration
    group_size: int = 4  # episodes per task
    num_envs: int = 4  # environments stepped together
    # --- optimisation
    epochs: int = 1  # passes over each iteration's samples
    minibatch_size: int = 32  # samples per optimizer step
    micro_batch_size: int = 8  # samples per forward/backward (gradient accumulation in between)
    lr: float = 2e-5
    warmup_ratio: float = 0.1
    min_lr_ratio: float = 0.2
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    # --- bookkeeping
    eval_every: int = 5  # iterations between held-out evaluations (0: only before and after)
    eval_episodes: int = 20  # held-out episodes per evaluation
    seed: int = 0
    output_dir: str = "runs/train"
    resume: bool = False  # continue from output_dir/checkpoint.pt

    def __post_init__(self) -> None:
        if self.layout not in ("per-turn", "episode"):
            raise ValueError(f"layout must be 'per-turn' or 'episode', not {self.layout!r}.")
        if self.layout == "episode" and (self.prompt_style != "chat" or self.mode != "generate"):
            raise ValueError("layout=episode trains one growing dialogue per episode: it needs prompt_style=chat "
                             "(prompts that extend each other) and mode=generate.")


def build_policy(config: RunConfig) -> HFPolicy:
    """The policy a run trains: the model with ``init_adapters`` merged in, a fresh LoRA adapter unless
    ``lora_rank`` is 0, no dropout (the loss must see the distribution the rollouts sampled from)."""
    from peft import LoraConfig, PeftModel, get_peft_model

    model, tokenizer = load_causal_lm(config.model)
    for adapter in config.init_adapters:
        with warnings.catch_warnings():  # peft calls a transformers method deprecated for v6
            warnings.simplefilter("ignore", FutureWarning)
            model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    if config.lora_rank > 0:
        depth = model.config.num_hidden_layers
        top = list(range(depth - config.lora_layers, depth)) if 0 < config.lora_layers < depth else None
        with warnings.catch_warnings():  # peft calls a transformers method deprecated for v6
            warnings.simplefilter("ignore", FutureWarning)
            model = get_peft_model(model, LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha,
                                                     target_modules=list(config.lora_targets), lora_dropout=0.0,
                                                     layers_to_transform=top))
    else:
        model.requires_grad_(True)
    model.train(False)
    return HFPolicy(config.model, model=model, tokenizer=tokenizer, mode=config.mode, temperature=config.temperature,
                    choice_temperature=config.choice_temperature, max_new_tokens=config.max_new_tokens,
                    seed=config.seed)


def rollout_engines(config: RunConfig) -> tuple[RolloutEngine, RolloutEngine]:
    """Engines over the train split and the held-out split, with the run's prompt template."""
    template = PromptTemplate(history_window=config.history_window, style=config.prompt_style)
    return tuple(RolloutEngine(config.env_id, split, num_envs=config.num_envs, template=template,
                               env_kwargs=config.env_kwargs) for split in ("train", config.eval_split))


def matching_tasks(engine: RolloutEngine, config: RunConfig) -> list[str]:
    ids = [task_id for task_id in engine.tasks if config.task_filter in task_id]
    if not ids:
        raise ValueError(f"No {engine.split} task of {config.env_id} matches task_filter={config.task_filter!r}.")
    return ids


def evaluate_policy(policy: Policy, engine: RolloutEngine, config: RunConfig) -> dict[str, float]:
    """Held-out metrics on the same tasks every time (a fixed sample of the evaluation split)."""
    ids = matching_tasks(engine, config)
    picked = np.random.default_rng(10_000).permutation(len(ids))[: config.eval_episodes]
    trajectories = engine.run(policy, engine.plan(task_ids=[ids[i] for i in picked], seed=10_000, run_id="eval"))
    return {f"eval_{key}": value for key, value in episode_metrics(trajectories).items()}


def evaluate_before(policy: HFPolicy, engine: RolloutEngine, config: RunConfig) -> dict[str, float]:
    """The held-out metrics before training, with a random policy's success on the same tasks for scale."""
    before = evaluate_policy(policy, engine, config)
    before["random_success_rate"] = evaluate_policy(RandomPolicy(seed=config.seed), engine, config)["eval_success_rate"]
    return before


# ---------------------------------------------------------------------------------------------- samples
@dataclass
class TurnSample:
    """One training sample: a prompt and the response tokens after it.

    * ``"text"`` (per-turn layout, free generation): the prompt the policy saw at one turn and the
      tokens it generated; ``old_logprobs`` their log-probs at sampling time.
    * ``"choice"`` (per-turn layout, choice among admissible actions): ``candidates`` are the
      admissible actions' reply tokens, ``chosen`` the index picked and ``old_logprobs`` the
      one-element choice log-probability.
    * ``"episode"`` (concatenated layout): the first turn's prompt, then every later action and
      observation token of the episode; ``loss_mask`` is 1 on action tokens and 0 on observation tokens.
    """

    prompt_ids: list[int]
    response_ids: list[int]
    old_logprobs: list[float]
    mode: str
    turn_index: int
    candidates: list[list[int]] | None = None
    chosen: int | None = None
    advantage: float = 0.0  # broadcast over the response tokens unless token_advantages is set
    old_entropies: list[float] = field(default_factory=list)  # at sampling time (EPO's turn history)
    loss_mask: list[int] | None = None
    token_advantages: list[float] | None = None
    old_value: float = 0.0  # value-head estimate at rollout time (PPO)
    value_target: float = 0.0  # the return the value head regresses to (PPO)


def turn_stats(trajectories: Sequence[Trajectory]) -> TurnStats:
    """The per-turn arrays advantage estimators take, in trajectory and turn order."""
    turns = [turn for trajectory in trajectories for turn in trajectory.turns]
    return TurnStats(
        group_ids=[t.group_id for t in turns],
        episode_ids=[t.episode_id for t in turns],
        turn_indices=[t.turn_index for t in turns],
        state_keys=[t.state_key for t in turns],
        rewards=[t.reward for t in turns],
        invalid=[t.invalid for t in turns],
    )


def _turns(trajectories: Sequence[Trajectory], advantages: Sequence[float]):
    turns = [turn for trajectory in trajectories for turn in trajectory.turns]
    if len(turns) != len(advantages):
        raise ValueError(f"{len(advantages)} advantages for {len(turns)} turns.")
    for turn in turns:
        if turn.prompt_token_ids is None or turn.action_token_ids is None:
            raise ValueError("Training needs turn records with token ids: roll out with an LLM policy (HFPolicy).")
    return turns


def turn_samples(trajectories: Sequence[Trajectory], policy: HFPolicy, advantages: Sequence[float]) -> list[TurnSample]:
    """Per-turn layout: one sample per turn with its advantage (``advantages`` in :func:`turn_stats` order)."""
    samples = []
    for turn, advantage in zip(_turns(trajectories, advantages), advantages):
        if turn.action_mode == "choice":
            samples.append(TurnSample(
                prompt_ids=turn.prompt_token_ids,
                response_ids=turn.action_token_ids,
                old_logprobs=[turn.choice_logprob],
                mode="choice",
                turn_index=turn.turn_index,
                candidates=[policy.reply_ids(action) for action in turn.admissible_actions],
                chosen=turn.admissible_actions.index(turn.action),
                advantage=float(advantage),
                old_entropies=[turn.choice_entropy],
            ))
        else:
            samples.append(TurnSample(turn.prompt_token_ids, turn.action_token_ids, list(turn.action_logprobs),
                                      "text", turn.turn_index, advantage=float(advantage),
                                      old_entropies=list(turn.action_entropies or [])))
    return samples


def episode_samples(trajectories: Sequence[Trajectory], advantages: Sequence[float]) -> list[TurnSample]:
    """Concatenated layout: one sample per episode — the first prompt, then each action (in the loss,
    with its turn's advantage) and the observation tokens between actions (masked out).

    Needs prompts that extend each other (``PromptTemplate(style="chat")``): a turn whose prompt does
    not start with everything before it (a windowed prompt, or a reply the chat re-tokenised
    differently) starts a new sequence, so nothing is trained on a context the policy did not see.
    """
    samples: list[TurnSample] = []
    for turn, advantage in zip(_turns(trajectories, advantages), advantages):
        if turn.action_mode == "choice":
            raise ValueError("The concatenated layout trains generated tokens: use mode=generate, or the per-turn layout.")
        current = samples[-1] if samples and turn.turn_index > 0 else None
        seen = current.prompt_ids + current.response_ids if current else []
        if current is None or turn.prompt_token_ids[: len(seen)] != seen:
            current = TurnSample(list(turn.prompt_token_ids), [], [], "episode", turn.turn_index, loss_mask=[],
                                 token_advantages=[])
            samples.append(current)
        else:
            observation = turn.prompt_token_ids[len(seen):]
            current.response_ids += observation
            current.old_logprobs += [0.0] * len(observation)
            current.loss_mask += [0] * len(observation)
            current.token_advantages += [0.0] * len(observation)
        action = list(turn.action_token_ids)
        current.response_ids += action
        current.old_logprobs += list(turn.action_logprobs)
        current.loss_mask += [1] * len(action)
        current.token_advantages += [float(advantage)] * len(action)
        current.old_entropies += list(turn.action_entropies or [])
    return samples


def _pad(rows: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(row) for row in rows)
    mask = torch.zeros(len(rows), width)
    values = torch.stack([torch.nn.functional.pad(row, (0, width - len(row))) for row in rows])
    for index, row in enumerate(rows):
        mask[index, : len(row)] = 1
    return values, mask


def policy_logprobs(policy: HFPolicy, samples: Sequence[TurnSample], *, temperature: float,
                    choice_temperature: float, grad: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Current log-probs and entropies of the samples' actions, padded ``(samples, tokens)`` with the
    loss mask.

    Text samples: each action token's log-prob and entropy at the sampling temperature. Choice samples:
    one "token", the log-probability of the chosen action under the softmax of all candidates'
    likelihoods, and that distribution's entropy — exactly what the policy sampled from. Episode
    samples: every response token's position, 0 (and masked) on observation tokens.
    """
    logps, entropies = [None] * len(samples), [None] * len(samples)
    text = [i for i, s in enumerate(samples) if s.mode == "text"]
    choice = [i for i, s in enumerate(samples) if s.mode == "choice"]
    episode = [i for i, s in enumerate(samples) if s.mode == "episode"]
    if text:
        token_logps, token_entropies = policy.token_logprobs(
            [samples[i].prompt_ids for i in text], [[samples[i].response_ids] for i in text],
            temperature=temperature, grad=grad)
        for i, lp, ent in zip(text, token_logps, token_entropies):
            logps[i], entropies[i] = lp[0], ent[0]
    if choice:
        token_logps, _ = policy.token_logprobs(
            [samples[i].prompt_ids for i in choice], [samples[i].candidates for i in choice], grad=grad)
        for i, group in zip(choice, token_logps):
            scores = torch.stack([lp.sum() for lp in group])
            log_p = torch.log_softmax(scores / choice_temperature, dim=0)
            logps[i] = log_p[samples[i].chosen : samples[i].chosen + 1]
            entropies[i] = -(log_p.exp() * log_p).sum()[None]
    if episode:
        for i, lp, ent in zip(episode, *_sequence_logprobs(policy, [samples[i] for i in episode], temperature, grad)):
            logps[i], entropies[i] = lp, ent
    values, mask = _pad(logps)
    entropy, _ = _pad(entropies)
    for row, sample in enumerate(samples):
        if sample.loss_mask is not None:
            mask[row, : len(sample.loss_mask)] = torch.tensor(sample.loss_mask, dtype=mask.dtype)
    return values, entropy, mask


def _sequence_logprobs(policy: HFPolicy, samples: Sequence[TurnSample], temperature: float, grad: bool):
    """Log-probs and entropies over whole (prompt + response) sequences, with vocabulary logits only at
    the positions that predict a loss token; other response positions get 0."""
    pad = policy.tokenizer.pad_token_id
    rows = [s.prompt_ids + s.response_ids for s in samples]
    width = max(len(row) for row in rows)
    ids = torch.tensor([row + [pad] * (width - len(row)) for row in rows])
    attention = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows])
    # Position p predicts token p + 1.
    wanted = sorted({len(s.prompt_ids) + i - 1 for s in samples for i, m in enumerate(s.loss_mask) if m})
    column = {position: index for index, position in enumerate(wanted)}
    logps, entropies = [], []
    with torch.set_grad_enabled(grad):
        logits = policy.model(input_ids=ids, attention_mask=attention, logits_to_keep=torch.tensor(wanted)).logits
        log_p = torch.log_softmax(logits.float() / temperature, dim=-1)
        entropy = -(log_p.exp() * log_p).sum(-1)
        for row, sample in enumerate(samples):
            where = [i for i, m in enumerate(sample.loss_mask) if m]
            columns = torch.tensor([column[len(sample.prompt_ids) + i - 1] for i in where])
            tokens = torch.tensor([sample.response_ids[i] for i in where])
            lp = torch.zeros(len(sample.response_ids))
            ent = torch.zeros(len(sample.response_ids))
            logps.append(lp.index_put((torch.tensor(where),), log_p[row, columns, tokens]))
            entropies.append(ent.index_put((torch.tensor(where),), entropy[row, columns]))
    return logps, entropies


# ---------------------------------------------------------------------------------------------- update
@dataclass
class LossSettings:
    """The clipped policy loss's settings (see each trainer's config for meanings and defaults)."""

    clip_low: float = 0.2
    clip_high: float = 0.28
    dual_clip: float | None = 3.0
    aggregation: str = "token-mean"
    kl_coef: float = 0.0
    kl_estimator: str = "k3"
    entropy_coef: float = 0.0
    temperature: float = 1.0
    choice_temperature: float = 1.0


def minibatches(samples: Sequence[TurnSample], size: int, rng: np.random.Generator) -> Iterator[list[TurnSample]]:
    order = rng.permutation(len(samples))
    for start in range(0, len(order), size):
        yield [samples[i] for i in order[start : start + size]]


class ReferencePolicy:
    """The KL reference policy: with LoRA the base model with the adapter switched off (no second copy
    in memory); in full fine-tuning a frozen copy of the starting weights. Create it before loading a
    checkpoint, so a resumed run keeps the original reference. ``with reference():`` makes the policy
    act as the reference."""

    def __init__(self, policy: HFPolicy):
        self.policy = policy
        self.frozen = None
        if not hasattr(policy.model, "disable_adapter"):
            self.frozen = copy.deepcopy(policy.model).requires_grad_(False)

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        policy, trained = self.policy, self.policy.model
        policy.clear_cache()  # a kept prefix was computed by the trained weights
        try:
            if self.frozen is None:
                with trained.disable_adapter():
                    yield
            else:
                policy.model = self.frozen
                yield
        finally:
            policy.model = trained
            policy.clear_cache()


def loss_terms(policy: HFPolicy, samples: Sequence[TurnSample], settings: LossSettings,
               reference: ReferencePolicy | None = None) -> dict[str, torch.Tensor]:
    """The policy-gradient loss and its companions for one micro-batch (tensors with gradients);
    ``reference`` is needed only when ``kl_coef`` > 0."""
    logprobs, entropy, mask = policy_logprobs(policy, samples, temperature=settings.temperature,
                                              choice_temperature=settings.choice_temperature)
    old, _ = _pad([torch.tensor(s.old_logprobs, dtype=torch.float32) for s in samples])
    advantages, _ = _pad([torch.tensor(s.token_advantages, dtype=torch.float32) if s.token_advantages is not None
                          else torch.full((len(s.old_logprobs),), s.advantage, dtype=torch.float32) for s in samples])
    per_token, clipped = ppo_clip_loss(logprobs, old, advantages, clip_low=settings.clip_low,
                                       clip_high=settings.clip_high, dual_clip=settings.dual_clip)
    terms = {
        "pg_loss": aggregate(per_token, mask, settings.aggregation),
        "entropy": aggregate(entropy, mask, settings.aggregation),
        "clip_fraction": aggregate(clipped, mask, "token-mean").detach(),
        "approx_kl_old": aggregate(old - logprobs.detach(), mask, "token-mean"),
        "_token_entropy": entropy,
        "_mask": mask,
    }
    if settings.kl_coef > 0:
        with torch.no_grad(), reference():
            ref_logprobs, _, _ = policy_logprobs(policy, samples, temperature=settings.temperature,
                                                 choice_temperature=settings.choice_temperature, grad=False)
        terms["kl"] = aggregate(kl_divergence(logprobs, ref_logprobs, settings.kl_estimator), mask,
                                settings.aggregation)
    return terms


def optimise(samples: Sequence[TurnSample], loss_fn: Any, optimizer: torch.optim.Optimizer, scheduler: Any,
             parameters: Sequence[torch.nn.Parameter], config: RunConfig, rng: np.random.Generator) -> dict[str, float]:
    """``config.epochs`` passes over the samples in shuffled minibatches of ``minibatch_size``; each
    minibatch is one optimizer step over micro-batches of ``micro_batch_size`` with accumulated
    gradients clipped to ``max_grad_norm``; the scheduler steps once per pass.

    ``loss_fn(micro)`` returns a micro-batch's loss and the values to log. Returns the sample-weighted
    means of those values and of the loss, the last gradient norm, and the tokens processed.
    """
    totals: dict[str, float] = {}
    result: dict[str, float] = {"tokens": 0}
    for _ in range(config.epochs):
        for minibatch in minibatches(samples, config.minibatch_size, rng):
            optimizer.zero_grad(set_to_none=True)
            for start in range(0, len(minibatch), config.micro_batch_size):
                micro = minibatch[start : start + config.micro_batch_size]
                loss, logs = loss_fn(micro)
                (loss * len(micro) / len(minibatch)).backward()
                result["tokens"] += sum(len(s.prompt_ids) + len(s.response_ids) for s in micro)
                for key, value in {**logs, "loss": loss}.items():
                    value = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
                    totals[key] = totals.get(key, 0.0) + value * len(micro)
            result["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm))
            optimizer.step()
        scheduler.step()
    count = max(1, len(samples) * config.epochs)
    return {**{key: value / count for key, value in totals.items()}, **result}


def end_iteration(iteration: int, row: dict[str, Any], timer: "Timer", *, config: RunConfig, policy: HFPolicy,
                  evaluator: RolloutEngine, metrics: "MetricsLog", optimizer: torch.optim.Optimizer,
                  scheduler: Any, state: dict[str, Any], message: str, progress: bool) -> None:
    """How every trainer's iteration ends: held-out evaluation when due, the phase timings, the metrics
    row, a progress line (``message``) and the checkpoint (with the trainer's own ``state``)."""
    if config.eval_every and iteration % config.eval_every == 0 and iteration != config.iterations:
        with timer("eval"):
            row.update(evaluate_policy(policy, evaluator, config))
    row.update({f"seconds_{phase}": seconds for phase, seconds in timer.seconds.items()})
    metrics.log(row)
    if progress:
        print(f"[{iteration}/{config.iterations}] {message} ({sum(timer.seconds.values()):.0f} s)", flush=True)
    save_checkpoint(Path(config.output_dir) / "checkpoint.pt", model=policy.model, optimizer=optimizer,
                    scheduler=scheduler, iteration=iteration, generator=policy._generator,
                    extra={"metrics": metrics.rows, **state})


def cosine_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float,
                    min_lr_ratio: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine decay to ``min_lr_ratio`` of the peak learning rate."""
    warmup = max(1, int(round(total_steps * warmup_ratio)))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + np.cos(np.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ---------------------------------------------------------------------------------------------- run folder
def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters training changes (the LoRA adapter, or every weight in full fine-tuning)."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(path: Path, *, model, optimizer, scheduler, iteration: int, generator: torch.Generator,
                    extra: dict[str, Any]) -> None:
    """Everything a resumed run needs, written to a temporary file and renamed: never half a file."""
    state = {
        "iteration": iteration,
        "model": trainable_state(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                "policy": generator.get_state()},
        **extra,
    }
    atomic_write(path, lambda handle: torch.save(state, handle))


def load_checkpoint(path: Path, *, model, optimizer, scheduler, generator: torch.Generator) -> dict[str, Any]:
    """Restore a run from :func:`save_checkpoint`; a missing or corrupt file is a clear error."""
    if not path.exists():
        raise FileNotFoundError(f"No checkpoint at {path}: start without --resume, or point output_dir at the run.")
    try:
        state = torch.load(path, weights_only=False)
        missing = {"iteration", "model", "optimizer", "scheduler", "rng"} - set(state)
        if missing:
            raise KeyError(f"missing {sorted(missing)}")
    except Exception as error:  # noqa: BLE001 - any failure to read means the same thing to the user
        raise RuntimeError(f"The checkpoint {path} is corrupt or incomplete ({error}). Delete it to start over, "
                           "or restore it from a backup.") from error
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state["model"].items():
            parameters[name].copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    np.random.set_state(state["rng"]["numpy"])
    random.setstate(state["rng"]["python"])
    generator.set_state(state["rng"]["policy"])
    return state


@dataclass
class MetricsLog:
    """Metrics per iteration, appended to ``metrics.jsonl`` (and TensorBoard when it is installed). A
    run that does not resume starts the file afresh, so a reused output folder holds one run's rows."""

    folder: Path
    rows: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._rewrite()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.folder / "tensorboard"))
        except ImportError:
            self._writer = None

    def restore(self, rows: list[dict[str, Any]]) -> None:
        self.rows = list(rows)
        self._rewrite()

    def log(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        with open(self.folder / "metrics.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        if self._writer is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "iteration":
                    self._writer.add_scalar(key, value, row["iteration"])
            self._writer.flush()

    def _rewrite(self) -> None:
        atomic_write(self.folder / "metrics.jsonl",
                      lambda handle: handle.write("".join(json.dumps(r) + "\n" for r in self.rows).encode()))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def finish_run(config: RunConfig, policy: HFPolicy, metrics: "MetricsLog", before: dict[str, float],
               after: dict[str, float], *, summary: str, curves: Sequence[str]) -> dict[str, Any]:
    """Log the final evaluation, save the trained weights, plot the ``curves`` metrics and write the
    report; ``summary`` says what one iteration was."""
    metrics.log({"iteration": config.iterations, **after})
    metrics.close()
    rows = metrics.rows
    output = Path(config.output_dir)
    if hasattr(policy.model, "save_pretrained"):
        policy.model.save_pretrained(output / "final")
        policy.tokenizer.save_pretrained(output / "final")
    plotted = plot_curves(rows, output / "learning_curves.png", curves)
    table = ["| | success | mean reward | turns | invalid |", "|---|---|---|---|---|"]
    for label, values in (("before", before), ("after", after)):
        table.append(f"| {label} | {values['eval_success_rate']:.1%} | {values['eval_mean_reward']:.2f} | "
                     f"{values['eval_mean_turns']:.1f} | {values['eval_invalid_rate']:.1%} |")
    updates = [r for r in rows if "update_tokens_per_s" in r]
    speed = (f"{np.mean([r['update_tokens_per_s'] for r in updates]):.0f} tokens/s in updates, "
             f"{np.mean([sum(v for k, v in r.items() if k.startswith('seconds_')) for r in updates]):.1f} s "
             "per iteration") if updates else "no iterations run"
    report = "\n".join([
        f"# {type(config).__name__.removesuffix('Config')} on {config.env_id}",
        "",
        f"Model `{config.model}` (LoRA rank {config.lora_rank}), {config.mode} mode; {config.iterations} iterations of "
        f"{summary}; seed {config.seed}.",
        f"Held-out split `{config.eval_split}`, {config.eval_episodes} episodes, before and after training "
        f"(a random choice among admissible actions wins {before.get('random_success_rate', float('nan')):.1%}):",
        "",
        *table,
        "",
        f"Training speed: {speed}.",
        "",
        "![learning curves](learning_curves.png)" if plotted else "",
        "",
    ])
    (output / "report.md").write_text(report, encoding="utf-8")
    return {"before": before, "after": after, "report": str(output / "report.md"), "rows": rows}


def plot_curves(rows: Sequence[dict[str, Any]], path: Path, keys: Sequence[str]) -> Path | None:
    """Learning curves (one panel per metric) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in keys if any(k in row for row in rows)]
    if not keys:
        return None
    figure, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for axis, key in zip(axes[0], keys):
        points = [(row["iteration"], row[key]) for row in rows if key in row]
        axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3)
        axis.set_title(key)
        axis.set_xlabel("iteration")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


class Timer:
    """Seconds spent per phase (rollout, update, eval) in one iteration."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start


def make_config(config_class: type, settings: dict[str, Any], overrides: Sequence[str] = ()) -> Any:
    """A trainer config from a YAML mapping plus ``key=value`` overrides, with values converted to each
    field's type; unknown keys are an error that lists the known ones."""
    import typing

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
        raise ValueError(f"Unknown setting(s) {unknown} for {config_class.__name__}; known: {', '.join(sorted(known))}.")
    for key, value in values.items():
        kind = hints[key]
        if kind in (float, int) and isinstance(value, str):
            value = kind(float(value)) if kind is int else float(value)
        elif kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        values[key] = value
    return config_class(**values)
