"""The policy a run trains: a local causal LM with its warm-start adapters merged in and a fresh LoRA
adapter (or every weight trainable), wrapped in :class:`~agentgym.hf_policy.HFPolicy`."""

from __future__ import annotations

import warnings

from agentgym.hf_policy import HFPolicy
from agentgym.models import load_causal_lm
from agentgym.trainers.config import RunConfig


def build_policy(config: RunConfig) -> HFPolicy:
    """The model with ``init_adapters`` merged in, a fresh LoRA adapter unless ``lora_rank`` is 0
    (``lora_layers`` limits it to the top layers), and no dropout: the loss must see the distribution
    the rollouts sampled from."""
    from peft import LoraConfig, PeftModel, get_peft_model

    model, tokenizer = load_causal_lm(config.model)
    with warnings.catch_warnings():  # peft calls a transformers method deprecated for v6
        warnings.simplefilter("ignore", FutureWarning)
        for adapter in config.init_adapters:
            model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
        if config.lora_rank > 0:
            depth = model.config.num_hidden_layers
            top = list(range(depth - config.lora_layers, depth)) if 0 < config.lora_layers < depth else None
            model = get_peft_model(model, LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha,
                                                     target_modules=list(config.lora_targets), lora_dropout=0.0,
                                                     layers_to_transform=top))
    if config.lora_rank == 0:
        model.requires_grad_(True)
    model.train(False)
    return HFPolicy(config.model, model=model, tokenizer=tokenizer, mode=config.mode, temperature=config.temperature,
                    choice_temperature=config.choice_temperature, max_new_tokens=config.max_new_tokens,
                    reuse_scores=config.reuse_computation, seed=config.seed)
