"""The rollout sampler of a run: the trained model itself (the default), or a vLLM engine (``sampler: vllm``
or ``sampler: vllm@http://HOST:PORT/v1``) that gets the trained weights after every update.

The loop trains on the token ids and log-probs the sampler recorded; with vLLM each turn also records
the ``policy_version`` (the iteration whose weights sampled it: 0 is the starting model).
"""

from __future__ import annotations

from agentgym.hf_policy import HFPolicy
from agentgym.policies import Policy
from agentgym.trainers.config import RunConfig

SAMPLERS = ("vllm",)


def build_sampler(config: RunConfig, policy: HFPolicy, version: int) -> Policy | None:
    """The run's vLLM sampler holding ``policy``'s current weights (``version``: the iteration they come
    from), or ``None`` when the trained model samples its own rollouts."""
    if not config.sampler:
        return None
    kind, _, base_url = config.sampler.partition("@")
    if kind not in SAMPLERS:
        raise ValueError(f"Unknown sampler {config.sampler!r}: use vllm or vllm@http://HOST:PORT/v1 (or leave it "
                         "empty for the trained model).")
    from agentgym.vllm_policy import VLLMPolicy

    sampler = VLLMPolicy(config.model, base_url=base_url or None, mode=config.mode, temperature=config.temperature,
                         max_new_tokens=config.max_new_tokens, choice_temperature=config.choice_temperature,
                         seed=config.seed, sync=config.sampler_sync, lora_rank=config.lora_rank)
    try:
        sampler.sync_weights(policy.model, version)  # warm-start adapters, or a resumed run's weights
    except BaseException:
        sampler.close()
        raise
    return sampler
