"""GUI-RCPO: test-time reinforcement learning for GUI grounding from region-consistency rewards on
unlabeled screens (arXiv 2508.05615; docs/algorithms.md §4.2, §4.4).

On the shared loop (``loop.py``) an iteration takes the next ``tasks_per_iteration`` instructions of
the chosen split (``train_split``: ``test`` or ``test_ood``, transductive as in the paper) and, for each
instruction — each click of a multi-step episode — samples a group of G answers. The same G answers
vote on the screenshot (a point is widened by ±``point_expand`` pixels); each answer's reward is the
mean vote density of its box relative to the peak; advantages are GRPO's within the group, (r − mean) /
(std + ε); the clipped loss with a KL to the starting policy does the rest. The episode clicks the
consensus point, so a multi-step screen moves on without a label.

No label reaches training: the env's reward and target box are never read (a run refuses
``all_elements``, which would put the target in every turn's info), and the train metrics are
label-free. The held-out evaluation before and after training is where labels are used.

It trains any grounding policy with the training seams (``sample``, ``answer_logprobs``, ``model``,
``weights_changed``, ``rng_state``, ``keep_reference``/``as_reference``): the pointer model
(``model: pointer:PATH``; an answer's log-probability is its cell's; every weight trained) and any
transformers vision-language model (``model: vlm:PATH``, ``tiny-vlm``; log-probabilities of the answer
tokens; LoRA on the language model as for text models, or every weight with ``lora_rank: 0``).

    agentgym train configs/gui-rcpo-pointer.yaml
"""

from __future__ import annotations

import collections
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agentgym.grounding import GUIRCPolicy, region_consistency_rewards
from agentgym.policies import Generation, Policy, PolicyRequest
from agentgym.records import Trajectory, Turn
from agentgym.trainers import loop, update
from agentgym.trainers.advantages import group_normalise
from agentgym.trainers.config import PolicyLossConfig, RunConfig, Settings, make_config
from agentgym.trainers.heldout import task_order
from agentgym.trainers.logprobs import pad_rows
from agentgym.trainers.loop import PolicyGradient, Rollouts
from agentgym.trainers.samples import TurnSample

POLICY_KINDS = ("pointer", "vlm", "tiny-vlm")


@dataclass
class RegionConsistencyConfig(Settings):
    """Test-time training on unlabeled instructions with region-consistency rewards (§4.2, §4.4)."""

    train_split: str = "test"  # split whose unlabeled instructions are trained on (transductive: test or test_ood)
    passes: float = 2.0  # passes over the split's instructions (the paper's 2 epochs); decides iterations when it is 0
    top_p: float = 0.95  # nucleus of answer sampling, with temperature (the paper's 0.95)
    point_expand: int = 50  # ±pixels a point answer covers when the group votes (the paper's training value; GUI-RC evaluates with ±25)
    advantage_eps: float = 1e-4  # ε of GRPO's (r − mean) / (std + ε) (TRL's)

    def __post_init__(self) -> None:
        if self.passes <= 0 or not 0 < self.top_p <= 1 or self.point_expand < 0 or self.advantage_eps <= 0:
            raise ValueError(f"Need passes > 0, 0 < top_p <= 1, point_expand >= 0 and advantage_eps > 0; got "
                             f"{self.passes}, {self.top_p}, {self.point_expand}, {self.advantage_eps}.")
        super().__post_init__()


@dataclass
class GUIRCPOConfig(RunConfig, PolicyLossConfig, RegionConsistencyConfig):
    """Settings of a GUI-RCPO run: the run (the LoRA settings apply to vision-language models), the
    clipped loss with its KL, and the region-consistency settings. Defaults are the paper's (G = 16,
    temperature 0.7, top-p 0.95, ±50 px, β = 0.04, 2 passes) except the learning rate, set for the
    pointer model."""

    env_id: str = "agentgym/GUIGrounding-v0"  # a GUI grounding env (its scale kwarg says how answers write coordinates)
    model: str = "pointer:runs/pointer-gui"  # the grounding policy to adapt: pointer:PATH | vlm:PATH | tiny-vlm
    eval_split: str = "test"  # split evaluated (greedy, with labels) before training, every eval_every iterations, and after
    iterations: int = 0  # GRPO steps; 0: as many as `passes` over the split take
    tasks_per_iteration: int = 4  # instructions per GRPO step (4 × 16 answers: the paper's batch of 64)
    group_size: int = 16  # G: answers sampled per instruction (per click of a multi-step episode)
    temperature: float = 0.7  # sampling temperature of the answers (the paper's code)
    max_new_tokens: int = 128  # answer budget of a vision-language model (the paper's completion length)
    minibatch_size: int = 64  # answers per optimizer step (one step per iteration by default)
    micro_batch_size: int = 16  # answers per forward/backward
    lr: float = 1e-5  # peak learning rate (AdamW), the least harmful for the pointer on dev (1e-4 drifted: 42% -> 25%); the paper's 1e-6 is for full fine-tuning of a 3B VLM
    kl_coef: float = 0.04  # β of the k3 KL to the starting policy (the paper's)
    eval_every: int = 0  # iterations between held-out evaluations (0: only before and after)
    eval_episodes: int = 300  # held-out episodes per evaluation (300: a whole GUI split)
    output_dir: str = "runs/gui-rcpo"  # the run folder: metrics, checkpoint, curves, report, final/ (the adapted policy)

    def __post_init__(self) -> None:
        kind = self.model.partition(":")[0]
        if kind not in POLICY_KINDS or (kind != "tiny-vlm" and ":" not in self.model):
            raise ValueError(f"model must be pointer:PATH, vlm:PATH or tiny-vlm, not {self.model!r}.")
        if self.layout != "per-turn":
            raise ValueError("GUI-RCPO trains each sampled answer as its own sample: layout must be per-turn.")
        if self.group_size < 2 or self.temperature <= 0:
            raise ValueError(f"GUI-RCPO compares G >= 2 sampled answers (temperature > 0); got group_size="
                             f"{self.group_size}, temperature={self.temperature}.")
        if self.env_kwargs.get("all_elements"):
            raise ValueError("all_elements puts every target box in the turns' info: GUI-RCPO trains without labels.")
        if getattr(self, "sampler", ""):
            raise ValueError("GUI-RCPO samples its groups with the grounding policy itself: leave sampler empty.")
        super().__post_init__()


def language_lora(model: Any, config: GUIRCPOConfig) -> Any:
    """A vision-language model with its ``init_adapters`` merged in and a fresh LoRA adapter on the
    ``lora_targets`` of its language model's layers (the top ``lora_layers``; 0: all) — the vision tower
    stays frozen, as LoRA on a text model adapts only its transformer; ``lora_rank: 0`` trains every weight."""
    from peft import LoraConfig, PeftModel, get_peft_model

    with warnings.catch_warnings():  # peft calls a transformers method deprecated for v6
        warnings.simplefilter("ignore", FutureWarning)
        for adapter in config.init_adapters:
            model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
        if config.lora_rank == 0:
            return model.requires_grad_(True)
        decoder = model.get_decoder()
        prefix = next(name for name, module in model.named_modules() if module is decoder)
        layers = decoder.layers
        top = range(len(layers) - config.lora_layers if 0 < config.lora_layers < len(layers) else 0, len(layers))
        targets = [f"{prefix}.layers.{index}.{name}" for index in top for name, _ in layers[index].named_modules()
                   if name.rsplit(".", 1)[-1] in config.lora_targets]
        if not targets:
            raise ValueError(f"No module named {config.lora_targets} in the language model's layers.")
        return get_peft_model(model, LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=0.0,
                                                target_modules=targets))


def build_grounding_policy(config: GUIRCPOConfig) -> Policy:
    """The policy to adapt, greedy when it acts (evaluation) and sampling through ``sample`` (training)."""
    kind, _, path = config.model.partition(":")
    if kind == "pointer":
        from agentgym.trainers.pointer import PointerPolicy

        policy = PointerPolicy(path, seed=config.seed)
        policy.model.requires_grad_(True)
        return policy
    from agentgym.models import ensure_tiny_vlm
    from agentgym.vlm_policy import VLMPolicy

    policy = VLMPolicy(ensure_tiny_vlm() if kind == "tiny-vlm" else path, max_new_tokens=config.max_new_tokens,
                       seed=config.seed)
    policy.model = language_lora(policy.model, config)
    return policy


@dataclass
class AnswerSample(TurnSample):
    """One sampled answer as a training sample: ``response_ids`` are its tokens (the pointer model's: its
    cell), ``old_logprobs`` their log-probs when sampled, ``request`` the screenshot and prompt it answered."""

    request: PolicyRequest | None = None


def answer_logprobs(policy: Any, samples: list[AnswerSample], *, temperature: float, grad: bool = True,
                    **_: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The answers' current log-probs and entropies, padded ``(samples, tokens)``, and the loss mask:
    the ``score`` of :func:`~agentgym.trainers.update.policy_loss_terms` for grounding answers."""
    logps, entropies = policy.answer_logprobs([s.request for s in samples], [s.response_ids for s in samples],
                                              temperature=temperature, grad=grad)
    values, mask = pad_rows(logps)
    entropy, _ = pad_rows(entropies)
    return values, entropy, mask


class GroupSampler(GUIRCPolicy):
    """What the rollout runs in training: G answers to each request from the policy's ``sample``, voted
    with the training expansion; the episode clicks the consensus point. Each reply's ``extra`` holds the
    answers, the expansion and their region-consistency rewards (kept in the turn's annotations), and
    the sampled groups wait in :attr:`drawn`, in request order, for the trainer."""

    def __init__(self, policy: Any, config: GUIRCPOConfig):
        super().__init__(policy, samples=config.group_size, scale=config.env_kwargs.get("scale", "pixels"),
                         point_expand=config.point_expand)
        self.temperature, self.top_p = config.temperature, config.top_p
        self.drawn: collections.deque[tuple[PolicyRequest, list[Generation]]] = collections.deque()

    def sample(self, requests: list[PolicyRequest]) -> list[list[Generation]]:
        groups = self.policy.sample(requests, self.samples, temperature=self.temperature, top_p=self.top_p)
        self.drawn.extend(zip(requests, groups))
        return groups

    def act(self, requests: list[PolicyRequest]) -> list[Generation]:
        replies = super().act(requests)
        for request, reply in zip(requests, replies):
            height, width = request.image.shape[:2]
            boxes = self.boxes(request, reply.extra["gui_rc_samples"])
            reply.extra["gui_rcpo_rewards"] = region_consistency_rewards(boxes, width, height)
        return replies


class RegionConsistency(PolicyGradient):
    """GRPO on region-consistency rewards of sampled answers to unlabeled instructions."""

    config: GUIRCPOConfig
    curves = ("consistency_reward", "eval_success_rate", "kl", "entropy", "no_box_rate", "tied_groups")

    def __init__(self, config: GUIRCPOConfig):
        super().__init__(config)
        self.answered: list[tuple[Turn, PolicyRequest, list[Generation]]] = []

    def build_policy(self) -> Any:
        return build_grounding_policy(self.config)

    def save_policy(self, policy: Any, folder: Path) -> None:
        """The pointer model as ``model.pt`` (``--policy pointer:RUN/final``); a VLM's adapter (or whole
        model) with its processor."""
        if self.config.model.startswith("pointer:"):
            from agentgym.trainers.pointer import save_pointer

            save_pointer(policy.model, folder / "model.pt")
        else:
            policy.model.save_pretrained(folder)
            policy.processor.save_pretrained(folder)

    def describe_policy(self) -> str:
        config = self.config
        return (f"Grounding policy `{config.model}` trained on the unlabeled instructions of `{config.train_split}` "
                f"(G = {config.group_size}, temperature {config.temperature:g}, votes ±{config.point_expand} px, "
                f"β = {config.kl_coef:g}); success = greedy click accuracy")

    def setup(self, policy: Any) -> None:
        """Without a set number of iterations, as many as ``passes`` over the split's instructions take."""
        config = self.config
        if config.iterations == 0:
            import agentgym

            env = agentgym.make(config.env_id, split=config.train_split, **config.env_kwargs)
            try:
                count = sum(config.task_filter in task.id for task in env.unwrapped.tasks)
            finally:
                env.close()
            config.iterations = max(1, math.ceil(config.passes * count / config.tasks_per_iteration))

    def instructions(self, task_ids: list[str], iteration: int) -> list[str]:
        """The iteration's instructions: the next ``tasks_per_iteration`` of a pass over the split, each
        pass in its own seeded order."""
        count, size = len(task_ids), self.config.tasks_per_iteration
        picked = []
        for position in range((iteration - 1) * size, iteration * size):
            order = task_order(count, self.config.seed, position // count)
            picked.append(task_ids[order[position % count]])
        return picked

    def collect(self, rollouts: Rollouts, iteration: int, row: dict[str, Any]) -> list[Trajectory]:
        engine, sampler = rollouts.engine, GroupSampler(rollouts.policy, self.config)
        self.answered = []
        plan = engine.plan(task_ids=self.instructions(rollouts.task_ids, iteration), seed=iteration,
                           run_id=f"it{iteration}")
        trajectories = engine.run(sampler, plan, progress="rollout" if rollouts.progress else False,
                                  on_turn=lambda turn, _: self.answered.append((turn, *sampler.drawn.popleft())))
        return trajectories

    def samples(self, policy: Any, trajectories: list[Trajectory], row: dict[str, Any]) -> list[TurnSample]:
        """Every sampled answer with its group-normalised region-consistency reward (a group per click)."""
        rewards = np.array([r for turn, _, _ in self.answered for r in turn.annotations["gui_rcpo_rewards"]])
        groups = [f"{turn.episode_id}/{turn.turn_index}" for turn, _, group in self.answered for _ in group]
        advantages = group_normalise(rewards, groups, eps=self.config.advantage_eps)
        samples, cursor = [], 0
        for turn, request, group in self.answered:
            turn.annotations["gui_rcpo_advantages"] = advantages[cursor : cursor + len(group)].tolist()
            for answer, advantage in zip(group, advantages[cursor : cursor + len(group)]):
                samples.append(AnswerSample(prompt_ids=list(answer.prompt_token_ids or []),
                                            response_ids=list(answer.token_ids), old_logprobs=list(answer.logprobs),
                                            mode="answer", turn_index=turn.turn_index, advantage=float(advantage),
                                            old_entropies=list(answer.entropies or []), request=request))
            cursor += len(group)
        size = self.config.group_size
        row["consistency_reward"] = float(rewards.mean()) if len(rewards) else float("nan")
        row["no_box_rate"] = float((rewards == 0).mean()) if len(rewards) else float("nan")
        row["tied_groups"] = float(np.mean([np.all(advantages[i : i + size] == 0)
                                            for i in range(0, len(advantages), size)])) if len(advantages) else 0.0
        return samples

    def loss(self, policy: Any, micro: list[TurnSample], iteration: int) -> tuple[torch.Tensor, dict[str, Any]]:
        terms = update.policy_loss_terms(policy, micro, self.loss_settings, score=answer_logprobs)
        return update.policy_loss(terms, self.loss_settings), update.loggable(terms)

    def progress(self, row: dict[str, Any]) -> str:
        return (f"consistency {row.get('consistency_reward', float('nan')):.3f} "
                f"tied groups {row.get('tied_groups', float('nan')):.2f} loss {row.get('loss', float('nan')):+.4f} "
                f"kl {row.get('kl', float('nan')):.4f}")

    def summary(self) -> str:
        config = self.config
        return (f"{config.tasks_per_iteration} unlabeled `{config.train_split}` instructions × {config.group_size} "
                "sampled answers with region-consistency rewards")


def train(config: GUIRCPOConfig, *, progress: bool = True) -> dict[str, Any]:
    """Adapt a grounding policy with GUI-RCPO: returns the held-out metrics before and after (labels are
    used only there), the report's path and the metrics rows."""
    return loop.train(RegionConsistency(config), progress=progress)


CONFIG = GUIRCPOConfig  # the settings of `trainer: gui_rcpo` (agentgym train --help-config gui_rcpo)


def run(settings: dict[str, Any], overrides: list[str] = ()) -> dict[str, Any]:
    """Entry point of ``agentgym train`` for ``trainer: gui_rcpo``."""
    return train(make_config(GUIRCPOConfig, settings, overrides))
