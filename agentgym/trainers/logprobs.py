"""The policy's current log-probs and entropies of training samples' actions, for both action modes.

The numbers come from :class:`~agentgym.hf_policy.HFPolicy`'s own scoring (``token_logprobs`` and
``sequence_logprobs``), the same code that computed them at sampling time, so a ratio of 1 means
"unchanged policy" to the last bit. The exception is samples that share a frozen trunk
(``reuse_computation``, :mod:`agentgym.frozen_trunk`): the same numbers computed in another
order, equal to float rounding (~1e-6).
"""

from __future__ import annotations

from typing import Sequence

import torch

from agentgym import frozen_trunk
from agentgym.hf_policy import HFPolicy
from agentgym.trainers.samples import TurnSample


def pad_rows(rows: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-D tensors into ``(rows, width)`` with a 0/1 mask of the real entries."""
    width = max(len(row) for row in rows)
    mask = torch.zeros(len(rows), width)
    values = torch.stack([torch.nn.functional.pad(row, (0, width - len(row))) for row in rows])
    for index, row in enumerate(rows):
        mask[index, : len(row)] = 1
    return values, mask


def sample_logprobs(policy: HFPolicy, samples: Sequence[TurnSample], *, temperature: float,
                    choice_temperature: float, grad: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Current log-probs and entropies of the samples' actions, padded ``(samples, tokens)``, with the
    loss mask.

    Text samples: each action token's log-prob and entropy at the sampling temperature. Choice samples:
    one "token", the log-probability of the chosen action under the softmax of all candidates'
    likelihoods, and that distribution's entropy — exactly what the policy sampled from. Episode
    samples: every response token's position, 0 (and masked) on observation tokens.
    """
    logps: list[torch.Tensor | None] = [None] * len(samples)
    entropies: list[torch.Tensor | None] = [None] * len(samples)
    text = [i for i, s in enumerate(samples) if s.mode == "text"]
    choice = [i for i, s in enumerate(samples) if s.mode == "choice"]
    episode = [i for i, s in enumerate(samples) if s.mode == "episode"]
    if text:
        trunk_cache = samples[text[0]].trunk_cache
        if trunk_cache is not None:  # a (prompt, reply) is a state with one candidate
            token_logps, token_entropies = frozen_trunk.choice_logprobs(
                policy, [samples[i].trunk_key for i in text], trunk_cache, grad=grad, temperature=temperature)
        else:
            token_logps, token_entropies = policy.token_logprobs(
                [samples[i].prompt_ids for i in text], [[samples[i].response_ids] for i in text],
                temperature=temperature, grad=grad)
        for i, lp, ent in zip(text, token_logps, token_entropies):
            logps[i], entropies[i] = lp[0], ent[0]
    if choice:
        trunk_cache = samples[choice[0]].trunk_cache
        if trunk_cache is not None:
            token_logps, _ = frozen_trunk.choice_logprobs(policy, [samples[i].trunk_key for i in choice], trunk_cache,
                                                          grad=grad)
        else:
            token_logps, _ = policy.token_logprobs(
                [samples[i].prompt_ids for i in choice], [samples[i].candidates for i in choice], grad=grad)
        for i, group in zip(choice, token_logps):
            scores = torch.stack([lp.sum() for lp in group])
            log_p = torch.log_softmax(scores / choice_temperature, dim=0)
            logps[i] = log_p[samples[i].chosen : samples[i].chosen + 1]
            entropies[i] = -(log_p.exp() * log_p).sum()[None]
    if episode:
        for i, lp, ent in zip(episode, *_episode_logprobs(policy, [samples[i] for i in episode], temperature, grad)):
            logps[i], entropies[i] = lp, ent
    values, mask = pad_rows(logps)
    entropy, _ = pad_rows(entropies)
    for row, sample in enumerate(samples):
        if sample.loss_mask is not None:
            mask[row, : len(sample.loss_mask)] = torch.tensor(sample.loss_mask, dtype=mask.dtype)
    return values, entropy, mask


def _episode_logprobs(policy: HFPolicy, samples: Sequence[TurnSample], temperature: float, grad: bool):
    """Per response position of each episode sample: the log-prob and entropy of its action tokens, 0 on
    observation tokens."""
    scored = [[len(s.prompt_ids) + i for i, m in enumerate(s.loss_mask) if m] for s in samples]
    action_logps, action_entropies = policy.sequence_logprobs(
        [s.prompt_ids + s.response_ids for s in samples], scored, temperature=temperature, grad=grad)
    logps, entropies = [], []
    for sample, lp, ent in zip(samples, action_logps, action_entropies):
        where = (torch.tensor([i for i, m in enumerate(sample.loss_mask) if m], dtype=torch.long),)
        logps.append(torch.zeros(len(sample.response_ids)).index_put(where, lp))
        entropies.append(torch.zeros(len(sample.response_ids)).index_put(where, ent))
    return logps, entropies
