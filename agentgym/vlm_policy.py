"""Vision-language policies on transformers' image-text-to-text models (LLaVA, Qwen2.5-VL, SmolVLM, ...),
run locally: the observation's screenshot goes in with the prompt, the reply comes back as text."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentgym.grounding import GroundingPolicy
from agentgym.policies import Generation, PolicyRequest


class VLMPolicy(GroundingPolicy):
    """A local vision-language model as a policy (``--policy vlm:PATH``; ``tiny-vlm`` for tests).

    The image of a request is attached to its last user message, as chat templates of VLMs expect;
    requests without an image are sent as text. Greedy with ``temperature=0``, else sampled (GUI-RC
    needs sampling). On a GPU when there is one (bf16), else fp32 on CPU. Sampling draws from torch's
    global generator.

    GUI-RCPO (``trainer: gui_rcpo``) trains it on the shared loop (:class:`~agentgym.grounding.GroundingPolicy`)
    through :meth:`sample` (n answers per request with their tokens and log-probs) and
    :meth:`answer_logprobs` (teacher-forced log-probs of the answer tokens only: the prompt and the image
    are never in the loss); with a LoRA adapter the reference is the model with the adapter off.

    Args:
        path: a local folder with the model and its processor.
        temperature: 0 for greedy decoding.
        max_new_tokens: reply budget.
        seed: seeds torch's sampling.
        model: an already loaded model for ``path``'s processor (e.g. one with a LoRA adapter a trainer updates).
    """

    def __init__(self, path: str | Path, *, temperature: float = 0.0, max_new_tokens: int = 32, seed: int | None = None,
                 model: Any = None):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.processor = AutoProcessor.from_pretrained(path)
        if model is None:
            gpu = torch.cuda.is_available()
            model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.bfloat16 if gpu else torch.float32)
            model = model.to("cuda" if gpu else "cpu").eval()
        self.model = model
        self.temperature, self.max_new_tokens = temperature, max_new_tokens
        if seed is not None:
            torch.manual_seed(seed)
        tokenizer = self.processor.tokenizer
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = (set(eos if isinstance(eos, (list, tuple)) else [eos]) | {tokenizer.eos_token_id}) - {None}
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.name = f"vlm({Path(path).name})"

    def chat(self, request: PolicyRequest) -> list[dict[str, Any]]:
        """The request's messages with its image as the first part of the last user message."""
        messages = [dict(message) for message in request.messages]
        if request.image is not None:
            last = max(i for i, message in enumerate(messages) if message["role"] == "user")
            messages[last]["content"] = [{"type": "image"}, {"type": "text", "text": messages[last]["content"]}]
        return messages

    def inputs(self, request: PolicyRequest, copies: int = 1) -> dict[str, Any]:
        """The processor's tensors for ``copies`` rows of the request's prompt (image tokens expanded)."""
        from PIL import Image

        prompt = self.processor.apply_chat_template(self.chat(request), add_generation_prompt=True)
        images = [Image.fromarray(request.image)] * copies if request.image is not None else None
        inputs = self.processor(images=images, text=[prompt] * copies, return_tensors="pt")
        return inputs.to(self.model.device, dtype=self.model.dtype)  # casts only the image's floats

    def _generate(self, request: PolicyRequest, n: int, sampling: dict[str, Any]) -> list[Generation]:
        import torch

        inputs = self.inputs(request)
        with torch.no_grad():
            output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, num_return_sequences=n,
                                         pad_token_id=self.pad_id, **sampling)
        replies = []
        for row in output[:, inputs["input_ids"].shape[1]:].tolist():
            end = next((i + 1 for i, token in enumerate(row) if token in self.eos_ids), len(row))
            tokens = row[:end]  # the answer up to and including its end token
            replies.append(Generation(self.processor.decode(tokens, skip_special_tokens=True).strip(),
                                      prompt_token_ids=inputs["input_ids"][0].tolist(), token_ids=tokens))
        return replies

    def act(self, requests: Sequence[PolicyRequest]) -> list[Generation]:
        sampling = {"do_sample": True, "temperature": self.temperature, "top_k": 0} if self.temperature > 0 \
            else {"do_sample": False}
        return [self._generate(request, 1, sampling)[0] for request in requests]

    def sample(self, requests: Sequence[PolicyRequest], n: int, *, temperature: float,
               top_p: float = 1.0) -> list[list[Generation]]:
        """``n`` sampled answers to each request (``softmax(logits / temperature)``, nucleus ``top_p``),
        each with its answer tokens and their log-probs and entropies under ``softmax(logits /
        temperature)``, recomputed teacher-forced by :meth:`answer_logprobs` — exactly what a trainer
        recomputes, so an unchanged model has a probability ratio of 1."""
        if temperature <= 0 or not 0 < top_p <= 1:
            raise ValueError(f"Sampling needs temperature > 0 and 0 < top_p <= 1, not {temperature} and {top_p}.")
        groups = []
        for request in requests:
            group = self._generate(request, n, {"do_sample": True, "temperature": temperature, "top_p": top_p,
                                                "top_k": 0})
            logps, entropies = self.answer_logprobs([request] * n, [g.token_ids for g in group],
                                                    temperature=temperature, grad=False)
            for generation, logp, entropy in zip(group, logps, entropies):
                generation.logprobs, generation.entropies = logp.tolist(), entropy.tolist()
            groups.append(group)
        return groups

    def answer_logprobs(self, requests: Sequence[PolicyRequest], answers: Sequence[Sequence[int]], *,
                        temperature: float, grad: bool) -> tuple[list["torch.Tensor"], list["torch.Tensor"]]:
        """Teacher-forced log-probs and entropies of each answer's tokens after its request's prompt and
        image, under ``softmax(logits / temperature)``, as CPU tensors; only positions that predict an
        answer token are projected onto the vocabulary. Answers to the same request (the same object) run
        as one batch."""
        import torch

        from agentgym.hf_policy import log_softmax_entropy

        if any(not answer for answer in answers):
            raise ValueError("Cannot score an empty answer.")
        logps: list[Any] = [None] * len(answers)
        entropies: list[Any] = [None] * len(answers)
        rows_of: dict[int, list[int]] = {}
        for index, request in enumerate(requests):
            rows_of.setdefault(id(request), []).append(index)
        with torch.set_grad_enabled(grad):
            for rows in rows_of.values():
                inputs = dict(self.inputs(requests[rows[0]], copies=len(rows)))
                width = max(len(answers[row]) for row in rows)
                tail = torch.tensor([list(answers[row]) + [self.pad_id] * (width - len(answers[row])) for row in rows],
                                    device=self.model.device)
                real = torch.tensor([[1] * len(answers[row]) + [0] * (width - len(answers[row])) for row in rows],
                                    device=self.model.device)
                inputs["input_ids"] = torch.cat([inputs["input_ids"], tail], dim=1)
                inputs["attention_mask"] = torch.cat([inputs["attention_mask"], real], dim=1)
                # Positions prompt-1 ... prompt+width-2 predict the answer's tokens.
                logits = self.model(**inputs, logits_to_keep=width + 1).logits[:, :-1]
                log_p, entropy = log_softmax_entropy(logits.float(), temperature)
                chosen = log_p.gather(2, tail[:, :, None])[:, :, 0]
                for position, row in enumerate(rows):  # on the CPU, where a trainer's other numbers are
                    logps[row] = chosen[position, : len(answers[row])].cpu()
                    entropies[row] = entropy[position, : len(answers[row])].cpu()
        return logps, entropies

    # ------------------------------------------------------------------ what a trainer saves and switches
    def rng_state(self) -> "torch.Tensor":
        """Sampling uses torch's global generator; its state."""
        import torch

        return torch.get_rng_state()

    def set_rng_state(self, state: "torch.Tensor") -> None:
        import torch

        torch.set_rng_state(state)

    def config(self) -> dict:
        return {"name": self.name, "temperature": self.temperature, "max_new_tokens": self.max_new_tokens}


def make_vlm_policy(path: str, *, seed: int | None = None, **kwargs: Any) -> VLMPolicy:
    """``--policy vlm:PATH``: a local image-text-to-text checkpoint."""
    return VLMPolicy(path, seed=seed, **kwargs)


def make_tiny_vlm_policy(*, seed: int | None = None, **kwargs: Any) -> VLMPolicy:
    """``--policy tiny-vlm``: a random tiny LLaVA built from configs (no weights downloaded)."""
    from agentgym.models import ensure_tiny_vlm

    return VLMPolicy(ensure_tiny_vlm(), seed=seed, **kwargs)
