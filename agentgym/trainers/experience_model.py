"""The experience model of DreamGym (docs/algorithms.md §5), ``trainer: experience_model``.

It fine-tunes a language model (LoRA) to write a transition's outcome — next state, admissible actions,
reward, done, and a rationale when a teacher gives one — from the prompt the synthetic env asks it with
(task, history, state, action and the retrieved real transitions of *other* tasks). The loss covers the
reply only. It reports the model's fidelity on held-out real transitions before and after, and with
``install: true`` becomes the default model of the real id's synthetic env.

    agentgym train configs/dreamgym-experience-coin.yaml
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agentgym.hf_policy import HFPolicy
from agentgym.policies import PolicyRequest, make_policy
from agentgym.synthetic import format as fmt
from agentgym.synthetic import paths
from agentgym.synthetic.buffer import (
    ReplayBuffer,
    Transition,
    collect_transitions,
    read_transitions,
    write_transitions,
)
from agentgym.synthetic.fidelity import METRICS, evaluate, percent, transition_prompt
from agentgym.synthetic.model import ExperienceModel, ExperienceSettings
from agentgym.trainers import update
from agentgym.trainers.config import RunConfig, Settings, make_config
from agentgym.trainers.logprobs import sample_logprobs
from agentgym.trainers.losses import aggregate
from agentgym.trainers.model import build_policy
from agentgym.trainers.run import Run, Timer
from agentgym.trainers.samples import TurnSample, reserve_trunk

NOT_RECORDED = "(not recorded)"  # a turn record's last next state (see agentgym.synthetic.buffer.transitions_of)



@dataclass
class ExperienceModelConfig(Settings):
    """Settings of `trainer: experience_model`: the data, the model and its prompts, the optimisation. The
    trained model (a LoRA adapter, or the whole model with ``lora_rank: 0``) lands in ``output_dir/final/``."""

    env_id: str = "agentgym/TextWorld-CoinCollector-v0"  # the real env whose transitions the model learns
    task_filter: str = ""  # only tasks whose id contains this text (training, held-out evaluation, collection)
    data: list[str] = field(default_factory=list)  # replay buffer files of train transitions (transitions or turn records)
    collect_episodes: int = 300  # without data: real train episodes collected (oracle mixed with random actions)
    collect_episodes_per_task: int = 3  # ...this many of each task drawn (loading a game can cost more than playing it)
    collect_epsilon: float = 0.3  # share of random actions among the oracle's when collecting
    eval_data: list[str] = field(default_factory=list)  # held-out transition files (empty: collected from eval_split)
    eval_split: str = "dev"  # the split held-out transitions come from when they are collected
    eval_transitions: int = 40  # held-out transitions the fidelity is measured on after training (0: none)
    eval_before: bool = True  # also measure it before training (slow for a model that rarely follows the format)
    max_examples: int = 0  # at most this many training transitions, a seeded sample (0: all)
    # --- the model and its prompts (recorded with the adapter, so the synthetic env prompts it the same way)
    model: str = "embedded"  # embedded | tiny | a checkpoint folder
    lora_rank: int = 16  # LoRA rank; 0 trains every weight
    lora_alpha: int = 32  # LoRA scaling numerator
    lora_layers: int = 0  # adapt only the top N transformer layers (0: all)
    retrieval_k: int = 2  # real transitions of other tasks retrieved into each prompt
    history_window: int = 3  # earlier steps of the episode shown
    state_chars: int = 1500  # the current state is cut to this many characters
    demo_chars: int = 400  # each retrieved state and next state is cut to this many characters
    max_new_tokens: int = 200  # reply budget when the model is evaluated or used
    teacher: str = ""  # policy spec (e.g. openai:MODEL@URL) that writes each example's rationale (empty: none)
    # --- optimisation
    epochs: int = 2  # passes over the training examples
    minibatch_size: int = 16  # examples per optimizer step
    micro_batch_size: int = 4  # examples per forward/backward
    lr: float = 2e-4  # peak learning rate (AdamW)
    warmup_ratio: float = 0.1  # share of the passes spent warming the learning rate up
    min_lr_ratio: float = 0.2  # the cosine decay ends at this share of the peak
    weight_decay: float = 0.0  # AdamW weight decay
    max_grad_norm: float = 1.0  # gradient clipping norm
    # --- bookkeeping
    seed: int = 0  # seeds the LoRA weights, the example sample and order, collection
    output_dir: str = "runs/experience-model"  # the run folder: buffer, metrics, report, the adapter in final/
    install: bool = False  # copy the trained model to where the synthetic env of env_id loads it by default
    resume: bool = False  # continue from output_dir/checkpoint.pt

    def experience_settings(self, adapter: str | None = None) -> ExperienceSettings:
        return ExperienceSettings(backend=self.model, adapter=adapter, retrieval_k=self.retrieval_k,
                                  history_window=self.history_window, state_chars=self.state_chars,
                                  demo_chars=self.demo_chars, max_new_tokens=self.max_new_tokens,
                                  rationale=bool(self.teacher))


def _usable(transitions: list[Transition], task_filter: str) -> list[Transition]:
    return [t for t in transitions if not t.synthetic and t.next_state != NOT_RECORDED and task_filter in t.task_id]


def _transitions(files: list[str], config: ExperienceModelConfig, split: str, episodes: int, save: Path) -> list[Transition]:
    """The files' usable transitions, or ``episodes`` freshly collected ones of ``split``; either way kept in
    the run folder as ``save`` (a resumed run reads them back)."""
    if not files and save.is_file():
        return read_transitions(save)
    if files:
        found = [t for path in files for t in read_transitions(path)]
    else:
        found = collect_transitions(config.env_id, split, episodes=episodes, epsilon=config.collect_epsilon,
                                    episodes_per_task=config.collect_episodes_per_task, seed=config.seed,
                                    task_filter=config.task_filter, progress=True)
    found = _usable(found, config.task_filter)
    if not found:
        raise ValueError(f"No usable real {split} transition (from {files or 'collection'}, "
                         f"task_filter={config.task_filter!r}).")
    write_transitions(save, found)
    return found


def add_rationales(teacher: str, transitions: list[Transition]) -> None:
    """Ask ``teacher`` for a one-sentence rationale of each transition (it sees the real outcome)."""
    policy = make_policy(teacher, mode="generate", temperature=0.0, max_new_tokens=48) \
        if teacher.partition(":")[0] != "openai" else make_policy(teacher, temperature=0.0, max_tokens=48)
    try:
        requests = [PolicyRequest([
            {"role": "system", "content": "Explain in one short sentence why the action leads to the outcome."},
            {"role": "user", "content": f"Task: {t.instruction}\nState:\n{fmt.clip(t.state, 600)}\nAction: {t.action}\n"
                                        f"Outcome:\n{fmt.render_outcome(t.outcome())}"}]) for t in transitions]
        for transition, reply in zip(transitions, policy.act(requests)):
            transition.rationale = " ".join(reply.text.split())[:300]
    finally:
        policy.close()


def example_samples(policy: HFPolicy, settings: ExperienceSettings, buffer: ReplayBuffer,
                    transitions: list[Transition]) -> list[TurnSample]:
    """One sample per transition — its step prompt and the reply the model should write — and one per
    episode start for first states written by the model; every pass after the first runs only the layers
    above the frozen ones on them (the policy's kept trunk output, sized to hold them all)."""
    samples = []
    for transition in transitions:
        prompt = transition_prompt(settings, buffer, transition)
        samples.append(_sample(policy, prompt, fmt.render_outcome(transition.outcome(), with_rationale=settings.rationale)))
        if transition.turn_index == 0 and not transition.invalid:
            demos = [d for d in buffer.retrieve_starts(transition.instruction, settings.retrieval_k + 4)
                     if d.task_id != transition.task_id][: settings.retrieval_k]
            start = fmt.render_initial_prompt(transition.instruction, [(d.instruction, d.state, d.actions) for d in demos],
                                              settings.demo_chars)
            samples.append(_sample(policy, start, fmt.render_initial(transition.state, transition.actions)))
    reserve_trunk(samples)
    return samples


def _sample(policy: HFPolicy, messages: list[dict[str, str]], reply: str) -> TurnSample:
    response = policy.reply_ids(reply)
    return TurnSample(policy.prompt_ids(messages), response, [0.0] * len(response), "text", 0, advantage=1.0,
                      trunk_cache=policy.trunk_cache())


def reply_loss(policy: HFPolicy, micro: list[TurnSample]) -> tuple[torch.Tensor, dict[str, Any]]:
    """The mean negative log-likelihood of the reply tokens (nothing of the prompt is in the loss)."""
    logprobs, _, mask = sample_logprobs(policy, micro, temperature=1.0, choice_temperature=1.0)
    return -aggregate(logprobs, mask, "token-mean"), {}


def _fidelity(policy: HFPolicy, settings: ExperienceSettings, buffer: ReplayBuffer,
              held_out: list[Transition]) -> dict[str, Any]:
    """The model's fidelity on the held-out transitions as it is now, through the experience model code the
    synthetic env uses (greedy, with retries)."""
    return evaluate(ExperienceModel(settings, backend=policy), buffer, held_out)


def train_experience_model(config: ExperienceModelConfig, *, progress: bool = True) -> dict[str, Any]:
    """Fine-tune the experience model; returns the fidelity before and after, the report's path and the rows."""
    torch.manual_seed(config.seed)
    run = Run(config.output_dir)
    run.write_config(config)
    rng = np.random.default_rng(config.seed)
    folder = Path(config.output_dir)
    train = _transitions(config.data, config, "train", config.collect_episodes, folder / "buffer.jsonl")
    held_out = []
    if config.eval_transitions:
        held_out = _transitions(config.eval_data, config, config.eval_split, max(2, config.eval_transitions // 4),
                                folder / f"held-out-{config.eval_split}.jsonl")
        held_out = [held_out[i] for i in sorted(rng.permutation(len(held_out))[: config.eval_transitions])]
    buffer = ReplayBuffer(train)
    examples = train if not config.max_examples else \
        [train[i] for i in sorted(rng.permutation(len(train))[: config.max_examples])]
    settings = config.experience_settings()
    if config.teacher:
        add_rationales(config.teacher, examples)
    policy = build_policy(RunConfig(model=config.model, lora_rank=config.lora_rank, lora_alpha=config.lora_alpha,
                                    lora_layers=config.lora_layers, mode="generate", temperature=0.0,
                                    max_new_tokens=config.max_new_tokens, seed=config.seed))
    samples = example_samples(policy, settings, buffer, examples)
    parameters = [p for p in policy.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    optimizer.register_step_post_hook(lambda *_: policy.weights_changed(trainable_only=True))
    scheduler = update.cosine_schedule(optimizer, config.epochs, config.warmup_ratio, config.min_lr_ratio)
    start, before = 0, None
    if config.resume:
        checkpoint = run.load_checkpoint(model=policy.model, optimizer=optimizer, scheduler=scheduler, restore_rng={})
        policy.weights_changed()
        start, before = checkpoint["iteration"], checkpoint["before"]
    if before is None:
        before = _fidelity(policy, settings, buffer, held_out) if held_out and config.eval_before else {}
        run.metrics.log({"iteration": 0, **{f"eval_{k}": v for k, v in before.items()}})
    one_pass = dataclasses.replace(config, epochs=1)
    for epoch in range(start + 1, config.epochs + 1):
        timer = Timer()
        with timer("update"):
            row = update.optimise(samples, lambda micro: reply_loss(policy, micro), optimizer=optimizer,
                                  scheduler=scheduler, config=one_pass, rng=np.random.default_rng(config.seed + epoch),
                                  progress=f"pass {epoch}/{config.epochs}" if progress else "")
        row.update(iteration=epoch, lr=scheduler.get_last_lr()[0], samples=len(samples),
                   update_tokens_per_s=row.pop("tokens") / max(timer.seconds["update"], 1e-9),
                   seconds_update=timer.seconds["update"])
        run.metrics.log(row)
        if progress:
            print(f"[{epoch}/{config.epochs}] reply nll {row['loss']:.4f} on {len(samples)} examples "
                  f"({timer.total:.0f} s)", flush=True)
        run.save_checkpoint(model=policy.model, optimizer=optimizer, scheduler=scheduler, iteration=epoch,
                            rng_states={}, state={"before": before})
    after = _fidelity(policy, settings, buffer, held_out) if held_out else {}
    run.metrics.log({"iteration": config.epochs, **{f"eval_{k}": v for k, v in after.items()}})
    run.close()
    final = folder / "final"
    policy.model.save_pretrained(final)
    policy.tokenizer.save_pretrained(final)
    paths.write_model_settings(final, settings)
    if config.install:
        target = paths.installed_model(config.env_id)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(final, target)
    run.plot(["loss", "eval_next_state_f1", "eval_actions_f1", "eval_reward_accuracy"])
    report = run.write_report(experience_report(config, len(train), len(samples), held_out, before, after))
    return {"before": before, "after": after, "report": str(report), "rows": run.metrics.rows}


def fidelity_table(rows: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """A Markdown table of fidelity results (one row per label)."""
    lines = ["| | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for label, values in rows:
        lines.append(f"| {label} | " + " | ".join(percent(values[m]) for m in METRICS) + " |")
    return lines


def experience_report(config: ExperienceModelConfig, transitions: int, samples: int, held_out: list[Transition],
                      before: dict[str, Any], after: dict[str, Any]) -> str:
    lines = [f"# Experience model of {config.env_id}", "",
             (f"Model `{config.model}` (LoRA rank {config.lora_rank}), {config.epochs} passes over {samples} examples "
              f"from {transitions} real train transitions; {config.retrieval_k} retrieved transitions of other tasks "
              f"in each prompt; rationales {'from ' + config.teacher if config.teacher else 'none'}."), ""]
    if held_out:
        rows = [(label, values) for label, values in (("before", before), ("after", after)) if values]
        lines += [f"Fidelity on {len(held_out)} held-out real transitions (`{config.eval_split}`):", "",
                  *fidelity_table(rows), ""]
    lines += [f"Adapter: `{Path(config.output_dir) / 'final'}`"
              + (f", installed as the default model of {config.env_id}'s synthetic env." if config.install else "."),
              "", "![curves](learning_curves.png)", ""]
    return "\n".join(lines)


def run(settings: dict[str, Any], overrides: list[str] = ()) -> dict[str, Any]:
    """Entry point of ``agentgym train`` for ``trainer: experience_model``."""
    return train_experience_model(make_config(ExperienceModelConfig, settings, overrides))


CONFIG = ExperienceModelConfig  # the settings of `trainer: experience_model` (agentgym train --help-config experience_model)
