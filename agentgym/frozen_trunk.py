"""Scoring with the frozen layers' output kept: each token sequence runs through them once per run.

With LoRA on only the top layers (``lora_layers``), every layer below them — the *trunk* — is frozen:
its output for a token sequence never changes during a run, and the adapter switched off (the KL
reference) leaves it as it is. So a state's (prompt, candidates) runs through the trunk once, without
gradients, and its output is kept: the rollout that scores the candidates keeps it
(:meth:`HFPolicy.trunk_cache`), and the update's forward passes, every epoch and the reference pass, then
run only the adapted top layers on it (``reuse_computation``, issue #27); so does a value head reading the
state's prompt (:func:`prompt_states`, PPO). A text sample (prompt, reply)
is the one-candidate case: free generation inside :meth:`HFPolicy.keeping_trunk` (a training rollout)
keeps it for each reply it samples (:class:`TrunkTap`), and cloning keeps it at its first pass, so the update
runs only the top layers. The numbers are those of :meth:`HFPolicy.token_logprobs` up to float rounding.

A state's prompt and its candidates run as one packed sequence, ``prompt + c1[:-1] + c2[:-1] + …``: each
candidate token attends to the prompt and to its own earlier tokens, at the positions it would have after
the prompt alone, so the candidates share the prompt without copying its key/value cache per candidate.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from agentgym.hf_policy import log_softmax_entropy

if TYPE_CHECKING:
    from agentgym.hf_policy import HFPolicy

Key = tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]
RESERVE_LIMIT = 2**30  # floats (4 GiB) a data set may reserve for its trunk output


def choice_key(prompt_ids: Sequence[int], candidates: Sequence[Sequence[int]]) -> Key:
    """What identifies a choice sample's forward pass: its prompt and candidates' token ids."""
    return tuple(prompt_ids), tuple(tuple(c) for c in candidates)


# Architectures whose forward is exactly embed → layers → norm → head, as run here. Others (Gemma scales
# its embeddings, for one) keep the full model's path.
ARCHITECTURES = ("llama",)


def _parts(model: Any) -> tuple[Any, Any] | None:
    """The decoder stack and the language-model head of a Llama model (PEFT-wrapped or not)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = getattr(base, "model", None)
    if getattr(getattr(base, "config", None), "model_type", None) not in ARCHITECTURES or not hasattr(base, "lm_head") \
            or not all(hasattr(decoder, name) for name in ("embed_tokens", "layers", "norm", "rotary_emb")):
        return None
    return decoder, base.lm_head


def trunk_depth(model: Any) -> int:
    """How many bottom decoder layers are frozen below the lowest trainable one, with frozen embeddings
    (0: nothing to share — every layer trains, or the architecture is not in :data:`ARCHITECTURES`)."""
    parts = _parts(model)
    if parts is None or any(p.requires_grad for p in parts[0].embed_tokens.parameters()):
        return 0
    for index, layer in enumerate(parts[0].layers):
        if any(p.requires_grad for p in layer.parameters()):
            return index
    return 0


@dataclass
class TrunkCache:
    """The trunk's output of each (prompt, candidates) run so far, the least recently used dropped past
    ``max_values`` floats (256 MiB by default). ``depth`` is fixed when it is made: inside the KL
    reference pass PEFT freezes the adapter too, and the trunk must stay the layers below it."""

    depth: int
    max_values: int = 64 * 2**20
    states: OrderedDict[Key, torch.Tensor] = field(default_factory=OrderedDict)
    values: int = 0  # floats held
    hidden_size: int = 0  # floats per token of a kept output

    @classmethod
    def of(cls, model: Any) -> TrunkCache | None:
        """A cache for ``model``, or None when it has no frozen trunk to share."""
        depth = trunk_depth(model)
        return cls(depth, hidden_size=_parts(model)[0].config.hidden_size) if depth else None

    def reserve(self, keys: Sequence[Key], *, limit: int = RESERVE_LIMIT) -> None:
        """Raise the budget so every one of ``keys`` fits (up to ``limit`` floats): a fixed data set passed
        over several times (cloning) then runs through the trunk once, not evicted between passes."""
        needed = sum(packed_length(key) for key in keys) * self.hidden_size
        self.max_values = max(self.max_values, min(needed, limit))

    def keep(self, key: Key, state: torch.Tensor, *, protect: Sequence[Key] = ()) -> None:
        """Keep ``key``'s trunk output, dropping the least recently used states (never those in
        ``protect``, which the caller is about to use) while over budget."""
        self.states[key] = state
        self.values += state.numel()
        if self.values <= self.max_values:
            return
        for old in [k for k in self.states if k not in protect]:
            if self.values <= self.max_values:
                break
            self.values -= self.states.pop(old).numel()

    def clear(self) -> None:
        self.states.clear()
        self.values = 0


class TrunkTap:
    """Holds the trunk's output (the last frozen layer's hidden states) of the model's latest forward pass
    until it is taken: free generation reads it after its prompt pass and after every decoding step, so the
    (prompt, reply) it samples keeps its trunk output for the update (:meth:`HFPolicy.keeping_trunk`)."""

    def __init__(self, model: Any, depth: int):
        self.latest: torch.Tensor | None = None
        self._handle = _parts(model)[0].layers[depth - 1].register_forward_hook(self._record)

    def _record(self, module: Any, inputs: Any, output: Any) -> None:
        self.latest = (output[0] if isinstance(output, tuple) else output).detach()

    def take(self) -> torch.Tensor:
        """The latest pass's trunk output, ``(rows, tokens, hidden)``; it is not held after this."""
        latest, self.latest = self.latest, None
        if latest is None:
            raise RuntimeError("No forward pass ran since the trunk output was last taken.")
        return latest

    def close(self) -> None:
        self._handle.remove()
        self.latest = None


@dataclass
class Packed:
    """A batch of packed (prompt, candidates) sequences, right-padded."""

    ids: torch.Tensor  # (rows, width)
    positions: torch.Tensor  # (rows, width): each candidate token's position after the prompt alone
    mask: torch.Tensor  # (rows, 1, width, width) bool: who attends to whom
    queries: list[list[list[int]]]  # [row][candidate]: the positions whose logits predict its tokens


def pack(keys: Sequence[Key], pad_id: int) -> Packed:
    """Pack each (prompt, candidates) into one sequence with its attention mask (see the module doc)."""
    rows, positions, segments, queries = [], [], [], []
    for prompt, candidates in keys:
        ids, where, segment, row_queries = list(prompt), list(range(len(prompt))), [0] * len(prompt), []
        for number, candidate in enumerate(candidates, start=1):
            start = len(ids)
            ids += candidate[:-1]  # the last token is only predicted
            where += range(len(prompt), len(prompt) + len(candidate) - 1)
            segment += [number] * (len(candidate) - 1)
            row_queries.append([len(prompt) - 1, *range(start, start + len(candidate) - 1)])
        rows.append(ids), positions.append(where), segments.append(segment), queries.append(row_queries)
    width = max(len(r) for r in rows)
    segment = torch.tensor([s + [-1] * (width - len(s)) for s in segments])
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    # Query i sees key j when j is not after it and is a prompt token or of i's own candidate; padding
    # (segment -1) is seen by no real token.
    shared = (segment[:, None, :] == 0) | (segment[:, None, :] == segment[:, :, None])
    return Packed(torch.tensor([r + [pad_id] * (width - len(r)) for r in rows]),
                  torch.tensor([p + [0] * (width - len(p)) for p in positions]),
                  (causal & shared)[:, None], queries)


def _run_layers(decoder: Any, layers: Sequence[Any], hidden: torch.Tensor, packed: Packed) -> torch.Tensor:
    embeddings = decoder.rotary_emb(hidden, position_ids=packed.positions)
    for layer in layers:
        hidden = layer(hidden, attention_mask=packed.mask, position_ids=packed.positions,
                       position_embeddings=embeddings)
    return hidden


def _run_adapted(decoder: Any, depth: int, trunk: torch.Tensor, packed: Packed) -> torch.Tensor:
    """The last layer's normed hidden states: the layers above the trunk run on its output."""
    return decoder.norm(_run_layers(decoder, decoder.layers[depth: decoder.config.num_hidden_layers], trunk, packed))


def choice_logprobs(policy: HFPolicy, keys: Sequence[Key], cache: TrunkCache, *, grad: bool = True,
                    temperature: float = 1.0) -> tuple[list[list[torch.Tensor]], list[list[torch.Tensor]]]:
    """Per-token log-probs and entropies (under ``softmax(logits / temperature)``) of each key's candidates
    after its prompt, nested ``[key][candidate]`` like :meth:`HFPolicy.token_logprobs`; each distinct key
    runs once.

    ``cache`` holds the trunk's output of keys already run; the keys missing from it are run through the
    trunk here, without gradients, and kept.
    """
    decoder, head = _parts(policy.model)
    depth, states = cache.depth, cache.states
    distinct = list(dict.fromkeys(keys))
    packed = pack(distinct, policy.tokenizer.pad_token_id)
    _keep_trunk(policy, distinct, cache, packed)
    width = packed.ids.shape[1]
    hidden = torch.stack([torch.nn.functional.pad(states[key], (0, 0, 0, width - len(states[key])))
                          for key in distinct])
    results: dict[Key, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
    with torch.set_grad_enabled(grad):
        hidden = _run_adapted(decoder, depth, hidden, packed)
        rows = torch.tensor([row for row, q in enumerate(packed.queries) for c in q for _ in c])
        columns = torch.tensor([p for q in packed.queries for c in q for p in c])
        log_p, entropy = log_softmax_entropy(head(hidden[rows, columns]).float(), temperature)
        tokens = torch.tensor([t for _, candidates in distinct for c in candidates for t in c])
        picked = log_p.gather(1, tokens[:, None])[:, 0]
        cursor = 0
        for key in distinct:
            results[key] = ([], [])
            for candidate in key[1]:
                results[key][0].append(picked[cursor: cursor + len(candidate)])
                results[key][1].append(entropy[cursor: cursor + len(candidate)])
                cursor += len(candidate)
    return [results[key][0] for key in keys], [results[key][1] for key in keys]


def prompt_states(policy: HFPolicy, keys: Sequence[Key], cache: TrunkCache, *, grad: bool = True) -> torch.Tensor:
    """The last layer's (normed) hidden state at each key's last prompt token, ``(keys, hidden)`` — what a
    value head reads, as :meth:`HFPolicy.prompt_states` gives it up to float rounding — running only the
    adapted layers. A prompt's tokens see no candidate, so the prompt's part of a key's kept trunk output
    is the prompt's own: the state the rollout scored runs through the frozen layers no second time."""
    decoder, _ = _parts(policy.model)
    distinct = list(dict.fromkeys(keys))
    _keep_trunk(policy, distinct, cache)
    prompts = pack([(key[0], ()) for key in distinct], policy.tokenizer.pad_token_id)
    width = prompts.ids.shape[1]
    hidden = torch.stack([torch.nn.functional.pad(cache.states[key][: len(key[0])], (0, 0, 0, width - len(key[0])))
                          for key in distinct])
    with torch.set_grad_enabled(grad):
        hidden = _run_adapted(decoder, cache.depth, hidden, prompts)
        last = hidden[torch.arange(len(distinct)), torch.tensor([len(key[0]) - 1 for key in distinct])]
    row = {key: index for index, key in enumerate(distinct)}
    return last[[row[key] for key in keys]]


def _keep_trunk(policy: HFPolicy, distinct: Sequence[Key], cache: TrunkCache, packed: Packed | None = None) -> None:
    """Run the keys whose trunk output the cache lacks through the frozen layers (no gradients) and keep
    it; mark every key as just used. ``packed`` is ``distinct`` packed, when the caller has it."""
    missing = [row for row, key in enumerate(distinct) if key not in cache.states]
    if missing:
        decoder, _ = _parts(policy.model)
        packed = packed or pack(distinct, policy.tokenizer.pad_token_id)
        part = Packed(packed.ids[missing], packed.positions[missing], packed.mask[missing], [])
        with torch.no_grad():
            trunk = _run_layers(decoder, decoder.layers[: cache.depth], decoder.embed_tokens(part.ids), part)
        for row, state in zip(missing, trunk):
            cache.keep(distinct[row], state[: packed_length(distinct[row])].clone(), protect=distinct)
    for key in distinct:
        cache.states.move_to_end(key)


def packed_length(key: Key) -> int:
    """Tokens in a key's packed sequence."""
    prompt, candidates = key
    return len(prompt) + sum(len(c) - 1 for c in candidates)
