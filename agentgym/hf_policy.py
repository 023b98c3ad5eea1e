"""``HFPolicy``: any local causal LM as a policy, with the token-level records trainers need.

Two ways to act:

* **generate** — the model writes its reply; the shared parser extracts the action. Every sampled token
  comes with its log-probability and the entropy of the distribution it was sampled from.
* **choice** — for small models, whenever the env lists admissible actions: each admissible action is
  scored by the model's log-likelihood of replying exactly that (its tokens, then the end-of-turn
  token) after the prompt, and one is sampled from the softmax of those scores (Carta et al., 2023,
  "Grounding LLMs in interactive environments"). The prompt is run once per state and its key/value
  cache shared by all candidates; a state scored before with the same weights (the episodes of a group
  often revisit the same states) is not run again, and with LoRA on the top layers only, the frozen
  layers below run once per state for the whole run (:mod:`agentgym.frozen_trunk`). The record carries the chosen action's log-probability under that
  choice distribution and the distribution's entropy, so a trainer can optimise it exactly.

Log-probabilities and entropies are those of ``softmax(logits / temperature)``, the distribution a
trainer recomputes from logits; top-p only narrows which tokens may be sampled. Greedy decoding
(``temperature=0``) reports them at temperature 1.

The sampling loop is written out rather than calling ``generate``: it computes the vocabulary
projection only for the last prompt position, drops finished rows from the batch and its cache, and
collects log-probs and entropies on the way, all of which ``generate`` does not.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.utils import logging as hf_logging

from agentgym.models import load_causal_lm
from agentgym.policies import Generation, Policy, PolicyRequest
from agentgym.records import Message

hf_logging.disable_progress_bar()
hf_logging.set_verbosity_error()

MODES = ("auto", "generate", "choice")


@dataclass(frozen=True)
class Sampling:
    """Sampling settings of free generation (``temperature=0`` is greedy)."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 48
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.max_new_tokens < 1:
            raise ValueError(f"Invalid sampling settings: {self}")


def log_softmax_entropy(logits: torch.Tensor, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of ``softmax(logits / temperature)`` over the last axis, and that distribution's
    entropy: the one place where every sampled, scored and trained token's numbers come from."""
    log_p = F.log_softmax(logits / temperature, dim=-1)
    return log_p, -(log_p.exp() * log_p).sum(-1)


def _select_rows(cache: DynamicCache, index: torch.Tensor, length: int | None = None) -> DynamicCache:
    """A new cache holding the given batch rows (rows may repeat) of every layer, optionally only
    its first ``length`` positions."""
    selected = DynamicCache()
    for layer_index, layer in enumerate(cache.layers):
        keys, values = layer.keys.index_select(0, index), layer.values.index_select(0, index)
        if length is not None:
            keys, values = keys[:, :, :length].contiguous(), values[:, :, :length].contiguous()
        selected.update(keys, values, layer_index)
    return selected


class HFPolicy(Policy):
    """A local transformers causal LM behind the policy interface.

    Arguments:
        model_name_or_path: ``"embedded"`` (SmolLM2-135M-Instruct, offline), ``"tiny"`` (random 2-layer
            test model) or a local checkpoint folder.
        adapter: a LoRA/PEFT adapter folder applied on top.
        mode: ``"choice"``, ``"generate"``, or ``"auto"`` (choice when the env lists admissible actions).
        temperature, top_p, max_new_tokens, stop: sampling settings for generation; ``temperature=0``
            is greedy.
        choice_temperature: temperature of the softmax over admissible actions' log-likelihoods
            (0 picks the most likely action).
        batch_size: most requests run through the model at once.
        reuse_scores: in choice mode, keep the scores of up to ``SCORE_MEMORY`` (prompt, candidates)
            pairs while the weights are unchanged, and score a repeated one (in the same batch or a
            later one) only once; when the bottom layers are frozen (LoRA on the top ones), score in
            the packed layout and keep their output (:meth:`trunk_cache`). The scores are the same
            either way, to float rounding; it only saves forward passes.
        seed: seeds the sampler; equal seeds give equal samples.
        model, tokenizer: an already loaded model and tokenizer (e.g. the one a trainer updates).
    """

    def __init__(
        self,
        model_name_or_path: str = "embedded",
        *,
        adapter: str | None = None,
        mode: str = "auto",
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 48,
        stop: Sequence[str] | None = None,
        choice_temperature: float = 1.0,
        batch_size: int = 16,
        reuse_scores: bool = True,
        seed: int | None = None,
        model: Any = None,
        tokenizer: Any = None,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if (model is None) != (tokenizer is None):
            raise ValueError("Pass both model and tokenizer, or neither.")
        self.model_name_or_path, self.adapter, self.mode = model_name_or_path, adapter, mode
        builtin = model_name_or_path in ("embedded", "tiny") and model is None
        self.name = model_name_or_path if builtin else f"hf:{model_name_or_path}"
        self.sampling = Sampling(float(temperature), float(top_p), int(max_new_tokens), tuple(stop or ()))
        self.choice_temperature = float(choice_temperature)
        self.batch_size, self.seed = int(batch_size), seed
        if model is None:
            model, tokenizer = load_causal_lm(model_name_or_path, adapter=adapter)
        self.model, self.tokenizer = model, tokenizer
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        eos = self.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
        self.eos_ids = eos | {self.tokenizer.eos_token_id}
        self.end_of_turn_id = self.tokenizer.eos_token_id
        self._generator = torch.Generator()
        self._generator.manual_seed(seed if seed is not None else torch.seed())
        self._prefix_tokens: tuple[int, ...] = ()
        self._prefix: DynamicCache | None = None
        self._prefix_trunk: torch.Tensor | None = None  # the kept prefix's trunk output, when it was recorded
        self._tap: Any = None  # a frozen_trunk.TrunkTap while keeping_trunk() is open
        self._reference: Any = None  # see keep_reference()
        self.reuse_scores = reuse_scores
        self._scores: OrderedDict[tuple, tuple[list[list[float]], list[list[float]]]] = OrderedDict()
        self._trunk: Any = None  # the TrunkCache, made at the first choice scoring (see trunk_cache)

    # ------------------------------------------------------------------ policy interface
    def act(self, requests: Sequence[PolicyRequest]) -> list[Generation]:
        replies: list[Generation | None] = [None] * len(requests)
        choose = [i for i, r in enumerate(requests) if self._uses_choice(r)]
        write = [i for i in range(len(requests)) if i not in set(choose)]
        for indices, method in ((choose, self._choose), (write, self._generate_for)):
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                for index, reply in zip(chunk, method([requests[i] for i in chunk])):
                    replies[index] = reply
        return replies  # type: ignore[return-value]

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name, "model": self.model_name_or_path, "adapter": self.adapter, "mode": self.mode,
            **asdict(self.sampling), "choice_temperature": self.choice_temperature, "seed": self.seed,
        }

    def _uses_choice(self, request: PolicyRequest) -> bool:
        if self.mode == "choice" and not request.admissible_actions:
            raise ValueError("Choice mode needs admissible actions, and this env listed none; use mode='generate'.")
        return self.mode == "choice" or (self.mode == "auto" and bool(request.admissible_actions))

    # ------------------------------------------------------------------ tokens
    def prompt_ids(self, messages: list[Message]) -> list[int]:
        """Token ids of a chat prompt, ending with the assistant turn's opening."""
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def reply_ids(self, text: str) -> list[int]:
        """Token ids of a complete assistant reply: its text, then the end-of-turn token."""
        return self.tokenizer(text, add_special_tokens=False).input_ids + [self.end_of_turn_id]

    def _run_prompts(self, prompts: Sequence[list[int]], *, keep_prefix: bool = True):
        """Forward pass over a batch of prompts; returns the cache, last-position logits, the attention
        mask and each row's next position.

        Prompts share long prefixes — the system text across every call, a group's whole prompt at its
        first turn — so a shared prefix is computed once, kept while the weights are unchanged, and
        copied to every row. Each row's own tokens are left-padded after it, with positions that skip
        the padding.
        """
        batch = len(prompts)
        shared, prefix = self._shared_prefix(prompts, keep=keep_prefix)
        cache = _select_rows(prefix, torch.zeros(batch, dtype=torch.long)) if shared else None
        rests = [p[shared:] for p in prompts]
        width = max(len(r) for r in rests)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(r)) + list(r) for r in rests])
        own = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rests])
        mask = torch.cat([torch.ones(batch, shared, dtype=own.dtype), own], dim=1)
        positions = shared + (own.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache,
                         use_cache=True, logits_to_keep=1)
        return out.cache, out.logits[:, -1, :].float(), mask, mask.sum(-1)

    MIN_SHARED_PREFIX = 16

    def weights_changed(self, *, trainable_only: bool = False) -> None:
        """Say that the model's weights changed in place (an optimizer step, weights loaded from a
        checkpoint): the kept prompt prefix and the kept choice scores, computed with the old weights, are
        dropped, and the frozen layers' kept output too unless ``trainable_only`` (an optimizer step
        changes only the trainable weights). Trainers call it after every optimizer step; call it yourself
        if you change ``model``'s weights another way."""
        self._prefix_tokens, self._prefix, self._prefix_trunk = (), None, None
        self._scores.clear()
        if not trainable_only and self._trunk:
            self._trunk.clear()

    def trunk_cache(self) -> Any:
        """The frozen layers' kept output per choice state (:class:`agentgym.frozen_trunk.TrunkCache`),
        shared by the rollouts that fill it and the updates that read it; None without ``reuse_scores``
        or without frozen bottom layers. Made at its first use, once the trainer has set which weights
        train."""
        from agentgym import frozen_trunk  # frozen_trunk builds on this module

        if self._trunk is None:
            self._trunk = (frozen_trunk.TrunkCache.of(self.model) if self.reuse_scores else None) or False
        return self._trunk or None

    @contextlib.contextmanager
    def at_temperature(self, temperature: float) -> Iterator[None]:
        """While open, replies and choices are sampled at ``temperature`` (0: greedy, the likeliest
        choice); the training temperatures come back when it closes. Held-out evaluation opens it."""
        saved = self.sampling, self.choice_temperature
        self.sampling = replace(self.sampling, temperature=float(temperature))
        self.choice_temperature = float(temperature)
        try:
            yield
        finally:
            self.sampling, self.choice_temperature = saved

    @contextlib.contextmanager
    def keeping_trunk(self) -> Iterator[None]:
        """While open, free generation keeps each (prompt, reply)'s frozen-layer output in
        :meth:`trunk_cache`, as choice scoring always does: the update on those replies then runs only the
        adapted top layers. Training rollouts open it; evaluations do not (their replies are never trained
        on). Without a trunk cache it does nothing."""
        from agentgym import frozen_trunk

        cache = self.trunk_cache()
        if cache is None or self._tap is not None:
            yield
            return
        if self._prefix is not None and self._prefix_trunk is None:  # kept before: its trunk output is unknown
            self._prefix_tokens, self._prefix = (), None
        self._tap = frozen_trunk.TrunkTap(self.model, cache.depth)
        try:
            yield
        finally:
            self._tap.close()
            self._tap = None

    def _shared_prefix(self, prompts: Sequence[list[int]], *, keep: bool = True) -> tuple[int, DynamicCache | None]:
        """How many leading tokens every prompt shares with the kept prefix, and that prefix's cache.

        The kept prefix is reused (cut to the part these prompts share) when it covers at least
        ``MIN_SHARED_PREFIX`` tokens; a batch sharing more than that extends it first. Every prompt
        keeps at least one token of its own, whose logits start generation. With ``keep=False``
        (gradients wanted) the batch's shared prefix is computed afresh, once, and not kept.
        """
        first = prompts[0]
        common = min(len(p) for p in prompts) - 1
        common = next((i for i in range(common) if any(p[i] != first[i] for p in prompts)), common)
        if not keep:
            if len(prompts) < 2 or common < self.MIN_SHARED_PREFIX:
                return 0, None
            out = self.model(input_ids=torch.tensor([first[:common]]), use_cache=True, logits_to_keep=1)
            return common, out.cache
        kept = self._prefix_tokens
        reuse = next((i for i in range(min(len(kept), common)) if kept[i] != first[i]), min(len(kept), common))
        target = common if len(prompts) > 1 or reuse < self.MIN_SHARED_PREFIX else reuse
        if target < self.MIN_SHARED_PREFIX:
            return 0, None
        start = reuse if reuse >= self.MIN_SHARED_PREFIX else 0
        if start == target == len(kept):
            return target, self._prefix
        base = None
        trunk = self._prefix_trunk[:start] if self._prefix_trunk is not None else None
        if start:
            base = _select_rows(self._prefix, torch.zeros(1, dtype=torch.long), length=start)
        if target > start:
            out = self.model(input_ids=torch.tensor([first[start:target]]), cache=base,
                             position_ids=torch.arange(start, target)[None], use_cache=True, logits_to_keep=1)
            base = out.cache
            added = self._tap.take()[0] if self._tap is not None else None
            if added is None or (start and trunk is None):
                trunk = None  # not recorded: generation keeps nothing that needs this prefix
            else:
                trunk = torch.cat([trunk, added]) if start else added
        self._prefix_tokens, self._prefix, self._prefix_trunk = tuple(first[:target]), base, trunk
        return target, base

    # ------------------------------------------------------------------ free generation
    def _generate_for(self, requests: Sequence[PolicyRequest]) -> list[Generation]:
        return self.generate([r.messages for r in requests])

    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[list[Message]],
        *,
        n: int = 1,
        sampling: Sampling | None = None,
        generator: torch.Generator | None = None,
    ) -> list[Generation]:
        """Sample ``n`` replies per chat prompt (in order: all of the first prompt's, then the next), with
        the policy's sampling settings and generator unless others are given."""
        sampling = sampling or self.sampling
        generator = generator or self._generator
        prompt_ids = [self.prompt_ids(m) for m in prompts for _ in range(n)]
        cache, logits, mask, positions = self._run_prompts(prompt_ids)
        rows = list(range(len(prompt_ids)))  # batch row -> reply index, shrinking as replies finish
        tap = self._tap  # keeping_trunk(): each reply's trunk output, the prompt's then its fed tokens'
        prompt_trunk = tap.take() if tap is not None else None
        shared = mask.shape[1] - prompt_trunk.shape[1] if prompt_trunk is not None else 0
        fed: list[list[torch.Tensor]] = [[] for _ in rows]
        tokens: list[list[int]] = [[] for _ in rows]
        logprobs: list[list[float]] = [[] for _ in rows]
        entropies: list[list[float]] = [[] for _ in rows]
        finish = ["length"] * len(rows)
        for _ in range(sampling.max_new_tokens):
            log_p, entropy = log_softmax_entropy(logits, sampling.temperature if sampling.temperature > 0 else 1.0)
            chosen = self._sample(log_p, sampling, generator)
            chosen_log_p = log_p.gather(1, chosen[:, None])[:, 0]
            keep = []
            for row, reply in enumerate(rows):
                token = int(chosen[row])
                tokens[reply].append(token)
                logprobs[reply].append(float(chosen_log_p[row]))
                entropies[reply].append(float(entropy[row]))
                if token in self.eos_ids:
                    finish[reply] = "stop"
                elif sampling.stop and any(s in self.tokenizer.decode(tokens[reply]) for s in sampling.stop):
                    finish[reply] = "stop"
                else:
                    keep.append(row)
            if not keep:
                break
            if len(keep) < len(rows):
                index = torch.tensor(keep)
                cache, mask, positions, chosen = (_select_rows(cache, index), mask[index], positions[index],
                                                  chosen[index])
                rows = [rows[row] for row in keep]
            mask = torch.cat([mask, torch.ones(len(rows), 1, dtype=mask.dtype)], dim=1)
            out = self.model(input_ids=chosen[:, None], attention_mask=mask, position_ids=positions[:, None],
                             cache=cache, use_cache=True)
            cache, logits, positions = out.cache, out.logits[:, -1, :].float(), positions + 1
            if tap is not None:
                for row, state in zip(rows, tap.take()[:, 0]):
                    fed[row].append(state)
        if prompt_trunk is not None:
            self._keep_generated_trunk(prompt_ids, tokens, prompt_trunk, shared, fed)
        return [
            Generation(
                text=self._text(tokens[i], sampling.stop),
                prompt_token_ids=prompt_ids[i],
                token_ids=tokens[i],
                logprobs=logprobs[i],
                entropies=entropies[i],
                extra={"finish_reason": finish[i]},
            )
            for i in range(len(prompt_ids))
        ]

    def _keep_generated_trunk(self, prompts: list[list[int]], replies: list[list[int]], prompt_trunk: torch.Tensor,
                              shared: int, fed: list[list[torch.Tensor]]) -> None:
        """Keep each (prompt, reply)'s trunk output in the packed layout of :mod:`agentgym.frozen_trunk`: the
        shared prefix's, the prompt's own tokens' (left-padded in ``prompt_trunk``), then those of the reply
        tokens fed back (all but the last, which was only predicted)."""
        from agentgym.frozen_trunk import choice_key

        prefix = self._prefix_trunk
        if shared and (prefix is None or len(prefix) < shared):
            return  # the prefix came from a pass that was not recorded: the update runs the trunk itself
        cache, width = self.trunk_cache(), prompt_trunk.shape[1]
        for index, (prompt, reply) in enumerate(zip(prompts, replies)):
            pieces = [prompt_trunk[index, width - (len(prompt) - shared):], *(t[None] for t in fed[index][: len(reply) - 1])]
            if shared:
                pieces.insert(0, prefix[:shared])
            cache.keep(choice_key(prompt, [reply]), torch.cat(pieces))

    @staticmethod
    def _sample(log_p: torch.Tensor, sampling: Sampling, generator: torch.Generator) -> torch.Tensor:
        if sampling.temperature <= 0:
            return log_p.argmax(-1)
        probs = log_p.exp()
        if sampling.top_p < 1:
            sorted_probs, order = probs.sort(-1, descending=True)
            # Keep the smallest prefix whose mass reaches top_p (always at least the top token).
            outside = sorted_probs.cumsum(-1) - sorted_probs >= sampling.top_p
            sorted_probs = sorted_probs.masked_fill(outside, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        return torch.multinomial(probs, 1, generator=generator)[:, 0]

    def _text(self, tokens: list[int], stops: Sequence[str]) -> str:
        text = self.tokenizer.decode([t for t in tokens if t not in self.eos_ids], skip_special_tokens=True)
        for stop in stops:
            text = text.split(stop, 1)[0]
        return text

    # ------------------------------------------------------------------ scoring and choice
    def token_logprobs(
        self,
        prompts: Sequence[list[int]],
        candidates: Sequence[Sequence[list[int]]],
        *,
        temperature: float = 1.0,
        grad: bool = False,
    ) -> tuple[list[list[torch.Tensor]], list[list[torch.Tensor]]]:
        """Teacher-forced per-token log-probs and entropies of each candidate after its prompt, under
        ``softmax(logits / temperature)``, as tensors nested ``[prompt][candidate]``.

        ``candidates[i]`` are token-id continuations of ``prompts[i]``. Each prompt runs once and its
        cache is shared by all of its candidates; logits are computed only for candidate tokens. With
        ``grad=True`` the results carry gradients (trainers), and no kept prefix is reused.
        """
        flat = [list(c) for group in candidates for c in group]
        if any(not c for c in flat):
            raise ValueError("Cannot score an empty continuation.")
        owner = [i for i, group in enumerate(candidates) for _ in group]
        logps: list[torch.Tensor] = []
        entropies: list[torch.Tensor] = []
        with torch.set_grad_enabled(grad):
            cache, last_logits, mask, positions = self._run_prompts(prompts, keep_prefix=not grad)
            first, first_entropy = log_softmax_entropy(last_logits, temperature)
            rows_per_pass = max(1, self.batch_size * 4)
            for start in range(0, len(flat), rows_per_pass):
                part, part_owner = flat[start : start + rows_per_pass], owner[start : start + rows_per_pass]
                index = torch.tensor(part_owner)
                width = max(len(c) for c in part)
                ids = torch.tensor([c + [self.tokenizer.pad_token_id] * (width - len(c)) for c in part])
                own_mask = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in part])
                head_logp = first[index].gather(1, ids[:, :1])  # the first candidate token
                head_entropy = first_entropy[index][:, None]
                if width > 1:
                    # Candidates are right-padded after the prompt: padding never precedes a real token.
                    out = self.model(
                        input_ids=ids[:, :-1],
                        attention_mask=torch.cat([mask[index], own_mask[:, :-1]], dim=1),
                        position_ids=positions[index][:, None] + torch.arange(width - 1),
                        cache=_select_rows(cache, index),
                        use_cache=False,
                    )
                    log_p, entropy = log_softmax_entropy(out.logits.float(), temperature)  # predicts tokens 1..
                    head_logp = torch.cat([head_logp, log_p.gather(2, ids[:, 1:, None])[:, :, 0]], dim=1)
                    head_entropy = torch.cat([head_entropy, entropy], dim=1)
                for row, candidate in enumerate(part):
                    logps.append(head_logp[row, : len(candidate)])
                    entropies.append(head_entropy[row, : len(candidate)])
        nested_logps, nested_entropies, cursor = [], [], 0
        for group in candidates:
            nested_logps.append(logps[cursor : cursor + len(group)])
            nested_entropies.append(entropies[cursor : cursor + len(group)])
            cursor += len(group)
        return nested_logps, nested_entropies

    def score_ids(self, prompts: Sequence[list[int]], candidates: Sequence[Sequence[list[int]]]):
        """:meth:`token_logprobs` without gradients, as nested lists of floats ``(logprobs, entropies)``."""
        logps, entropies = self.token_logprobs(prompts, candidates)
        return ([[t.tolist() for t in group] for group in logps], [[t.tolist() for t in group] for group in entropies])

    def score(self, prompts: Sequence[list[Message]], continuations: Sequence[str]) -> list[list[float]]:
        """Per-token log-probs of each reply text (then end-of-turn) after its chat prompt."""
        logps, _ = self.score_ids([self.prompt_ids(m) for m in prompts], [[self.reply_ids(c)] for c in continuations])
        return [group[0] for group in logps]

    def sequence_logprobs(
        self,
        sequences: Sequence[list[int]],
        scored: Sequence[Sequence[int]],
        *,
        temperature: float = 1.0,
        grad: bool = False,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Teacher-forced log-probs and entropies of chosen tokens inside whole sequences, in one pass.

        ``scored[i]`` lists positions ``p ≥ 1`` of ``sequences[i]`` whose token is scored given the
        tokens before it (a dialogue's assistant tokens, say). The vocabulary projection runs only at
        the positions that predict a scored token. Returns one tensor per sequence, aligned with
        ``scored[i]``; with ``grad=True`` they carry gradients.
        """
        if any(p < 1 or p >= len(seq) for seq, where in zip(sequences, scored) for p in where):
            raise ValueError("Scored positions must lie inside their sequence, after its first token.")
        pad = self.tokenizer.pad_token_id
        width = max(len(seq) for seq in sequences)
        ids = torch.tensor([list(seq) + [pad] * (width - len(seq)) for seq in sequences])
        attention = torch.tensor([[1] * len(seq) + [0] * (width - len(seq)) for seq in sequences])
        predicting = sorted({p - 1 for where in scored for p in where})  # position p - 1 predicts token p
        column = {position: index for index, position in enumerate(predicting)}
        logps, entropies = [], []
        with torch.set_grad_enabled(grad):
            logits = self.model(input_ids=ids, attention_mask=attention,
                                logits_to_keep=torch.tensor(predicting)).logits
            log_p, entropy = log_softmax_entropy(logits.float(), temperature)
            for row, where in enumerate(scored):
                columns = torch.tensor([column[p - 1] for p in where], dtype=torch.long)
                tokens = ids[row, torch.tensor(list(where), dtype=torch.long)]
                logps.append(log_p[row, columns, tokens])
                entropies.append(entropy[row, columns])
        return logps, entropies

    def prompt_states(self, prompts: Sequence[list[int]], *, grad: bool = False) -> torch.Tensor:
        """The last layer's (normed) hidden state at each prompt's last token, ``(prompts, hidden)``:
        what a value head reads."""
        pad = self.tokenizer.pad_token_id
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts])  # left-padded: last token at -1
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        with torch.set_grad_enabled(grad):
            out = self.model(input_ids=ids, attention_mask=attention, position_ids=positions,
                             output_hidden_states=True, logits_to_keep=1)
            return out.hidden_states[-1][:, -1]

    # ------------------------------------------------------------------ what a trainer saves and switches
    def rng_state(self) -> torch.Tensor:
        """The sampler's random state; a trainer checkpoints it, so a resumed run samples as an
        uninterrupted one would."""
        return self._generator.get_state()

    def set_rng_state(self, state: torch.Tensor) -> None:
        self._generator.set_state(state)

    def keep_reference(self) -> None:
        """Keep the current weights as the reference policy (e.g. of a KL penalty). With a PEFT adapter
        the reference is the base model with the adapter switched off, so nothing is copied; otherwise
        it is a frozen copy of the weights as they are now."""
        self._reference = "adapter-off" if hasattr(self.model, "disable_adapter") else \
            copy.deepcopy(self.model).requires_grad_(False)

    @contextlib.contextmanager
    def as_reference(self) -> Iterator[None]:
        """Inside ``with policy.as_reference():`` the policy scores as the reference policy kept by
        :meth:`keep_reference`."""
        if self._reference is None:
            raise RuntimeError("No reference policy: call keep_reference() first (before training starts).")
        trained = self.model
        self.weights_changed(trainable_only=True)  # a kept prefix belongs to the trained weights
        try:
            if self._reference == "adapter-off":
                with trained.disable_adapter():
                    yield
            else:
                self.model = self._reference
                yield
        finally:
            self.model = trained
            self.weights_changed(trainable_only=True)

    def choice_distribution(self, request: PolicyRequest) -> tuple[list[float], list[float]]:
        """Log-likelihood of each admissible action and the choice probabilities (softmax at
        ``choice_temperature``) for one request; for analysis and tests."""
        scores, probs, *_ = self._choice_scores([request])[0]
        return scores, probs

    SCORE_MEMORY = 4096  # (prompt, candidates) pairs whose choice scores are kept (see reuse_scores)

    def _scored_choices(self, prompts: list[list[int]], candidates: list[list[list[int]]]):
        """:meth:`score_ids` of each (prompt, candidates) pair, running each distinct pair not kept from
        an earlier batch once (``reuse_scores``)."""
        if not self.reuse_scores:
            return self.score_ids(prompts, candidates)
        from agentgym import frozen_trunk  # frozen_trunk builds on this module

        keys = [frozen_trunk.choice_key(p, c) for p, c in zip(prompts, candidates)]
        missing = list(dict.fromkeys(k for k in keys if k not in self._scores))
        trunk = self.trunk_cache()
        for start in range(0, len(missing), self.batch_size):
            part = missing[start: start + self.batch_size]
            if trunk is not None:
                logps, entropies = frozen_trunk.choice_logprobs(self, part, trunk, grad=False)
                logps = [[t.tolist() for t in group] for group in logps]
                entropies = [[t.tolist() for t in group] for group in entropies]
            else:
                logps, entropies = self.score_ids([list(k[0]) for k in part], [[list(c) for c in k[1]] for k in part])
            for key, group_logps, group_entropies in zip(part, logps, entropies):
                self._scores[key] = (group_logps, group_entropies)
        found = [self._scores[k] for k in keys]
        for key in keys:
            self._scores.move_to_end(key)
        while len(self._scores) > self.SCORE_MEMORY:
            self._scores.popitem(last=False)
        return [logps for logps, _ in found], [entropies for _, entropies in found]

    def _choice_scores(self, requests: Sequence[PolicyRequest]):
        prompts = [self.prompt_ids(r.messages) for r in requests]
        candidates = [[self.reply_ids(a) for a in r.admissible_actions] for r in requests]
        logps, entropies = self._scored_choices(prompts, candidates)
        results = []
        for prompt, group, group_logps, group_entropies in zip(prompts, candidates, logps, entropies):
            scores = torch.tensor([sum(values) for values in group_logps], dtype=torch.float64)
            if self.choice_temperature > 0:
                probs = torch.softmax(scores / self.choice_temperature, dim=0)
            else:
                probs = F.one_hot(scores.argmax(), len(scores)).double()
            results.append((scores.tolist(), probs.tolist(), prompt, group, group_logps, group_entropies))
        return results

    def _choose(self, requests: Sequence[PolicyRequest]) -> list[Generation]:
        replies = []
        for request, (scores, probs, prompt, group, group_logps, group_entropies) in zip(
                requests, self._choice_scores(requests)):
            if self.choice_temperature > 0:
                pick = int(torch.multinomial(torch.tensor(probs), 1, generator=self._generator))
            else:
                pick = max(range(len(scores)), key=scores.__getitem__)
            entropy = -sum(p * math.log(p) for p in probs if p > 0)
            replies.append(Generation(
                text=request.admissible_actions[pick],
                prompt_token_ids=prompt,
                token_ids=group[pick],
                logprobs=group_logps[pick],
                entropies=group_entropies[pick],
                action_mode="choice",
                choice_logprob=math.log(probs[pick]) if probs[pick] > 0 else -math.inf,
                choice_entropy=entropy,
                extra={"choice_scores": scores},
            ))
        return replies


def make_hf_policy(model_name_or_path: str, *, seed: int | None = None, **kwargs: Any) -> HFPolicy:
    """The policy ``hf:PATH``: a local checkpoint folder."""
    return HFPolicy(model_name_or_path, seed=seed, **kwargs)


def make_embedded_policy(*, seed: int | None = None, **kwargs: Any) -> HFPolicy:
    """The policy ``embedded``: SmolLM2-135M-Instruct, offline."""
    return HFPolicy("embedded", seed=seed, **kwargs)


def make_tiny_policy(*, seed: int | None = None, **kwargs: Any) -> HFPolicy:
    """The policy ``tiny``: a random 2-layer Llama for fast code-path tests."""
    return HFPolicy("tiny", seed=seed, **kwargs)
