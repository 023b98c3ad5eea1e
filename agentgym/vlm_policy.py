"""Vision-language policies on transformers' image-text-to-text models (LLaVA, Qwen2.5-VL, SmolVLM, ...),
run locally: the observation's screenshot goes in with the prompt, the reply comes back as text."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentgym.policies import Generation, Policy, PolicyRequest


class VLMPolicy(Policy):
    """A local vision-language model as a policy (``--policy vlm:PATH``; ``tiny-vlm`` for tests).

    The image of a request is attached to its last user message, as chat templates of VLMs expect;
    requests without an image are sent as text. Greedy with ``temperature=0``, else sampled (GUI-RC
    needs sampling). fp32 on CPU.

    Args:
        path: a local folder with the model and its processor.
        temperature: 0 for greedy decoding.
        max_new_tokens: reply budget.
        seed: seeds torch's sampling.
    """

    def __init__(self, path: str | Path, *, temperature: float = 0.0, max_new_tokens: int = 32, seed: int | None = None):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.processor = AutoProcessor.from_pretrained(path)
        self.model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).eval()
        self.temperature, self.max_new_tokens = temperature, max_new_tokens
        if seed is not None:
            torch.manual_seed(seed)
        self.name = f"vlm({Path(path).name})"

    def chat(self, request: PolicyRequest) -> list[dict[str, Any]]:
        """The request's messages with its image as the first part of the last user message."""
        messages = [dict(message) for message in request.messages]
        if request.image is not None:
            last = max(i for i, message in enumerate(messages) if message["role"] == "user")
            messages[last]["content"] = [{"type": "image"}, {"type": "text", "text": messages[last]["content"]}]
        return messages

    def act(self, requests: Sequence[PolicyRequest]) -> list[Generation]:
        import torch
        from PIL import Image

        replies = []
        for request in requests:
            prompt = self.processor.apply_chat_template(self.chat(request), add_generation_prompt=True)
            images = [Image.fromarray(request.image)] if request.image is not None else None
            inputs = self.processor(images=images, text=[prompt], return_tensors="pt")
            sampling = {"do_sample": True, "temperature": self.temperature} if self.temperature > 0 else {"do_sample": False}
            with torch.no_grad():
                output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, **sampling)
            new = output[0, inputs["input_ids"].shape[1]:]
            replies.append(Generation(self.processor.decode(new, skip_special_tokens=True).strip(),
                                      token_ids=new.tolist()))
        return replies

    def config(self) -> dict:
        return {"name": self.name, "temperature": self.temperature, "max_new_tokens": self.max_new_tokens}


def make_vlm_policy(path: str, *, seed: int | None = None, **kwargs: Any) -> VLMPolicy:
    """``--policy vlm:PATH``: a local image-text-to-text checkpoint."""
    return VLMPolicy(path, seed=seed, **kwargs)


def make_tiny_vlm_policy(*, seed: int | None = None, **kwargs: Any) -> VLMPolicy:
    """``--policy tiny-vlm``: a random tiny LLaVA built from configs (no weights downloaded)."""
    from agentgym.models import ensure_tiny_vlm

    return VLMPolicy(ensure_tiny_vlm(), seed=seed, **kwargs)
