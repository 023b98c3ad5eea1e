"""``OpenAIPolicy``: any OpenAI-compatible chat endpoint (OpenAI, vLLM, ``agentgym serve-policy``) as a policy.

Uses the official ``openai`` client: model name, base URL and key come from the arguments or from
``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``. Requests for a batch run concurrently; the client retries
rate limits, timeouts and server errors with exponential backoff. Log-probs are recorded when the
server returns them; token ids only from a vLLM server asked with ``token_ids=True`` (vLLM's
``return_token_ids``: the prompt ids its chat template produced and the sampled ids), which a trainer
then consumes as they are.
"""

from __future__ import annotations

import base64
import io
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np
import openai

from agentgym.policies import Generation, Policy, PolicyRequest
from agentgym.records import Message


def _image_part(image: Any) -> dict[str, Any]:
    """An RGB array or PNG bytes as an ``image_url`` content part (a data URL)."""
    if isinstance(image, np.ndarray):
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(image.astype(np.uint8)).save(buffer, format="PNG")
        image = buffer.getvalue()
    if not isinstance(image, (bytes, bytearray)):
        raise TypeError(f"An observation image must be an RGB array or PNG bytes, not {type(image).__name__}.")
    encoded = base64.b64encode(bytes(image)).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{encoded}"}}


def with_image(messages: list[Message], image: Any) -> list[dict[str, Any]]:
    """The chat with ``image`` attached to its last user message (OpenAI's multi-part content)."""
    if image is None:
        return list(messages)
    out = [dict(m) for m in messages]
    last_user = max(i for i, m in enumerate(out) if m["role"] == "user")
    out[last_user]["content"] = [{"type": "text", "text": out[last_user]["content"]}, _image_part(image)]
    return out


class OpenAIPolicy(Policy):
    """A chat model behind an OpenAI-compatible endpoint.

    Arguments:
        model: the model name the server knows.
        base_url, api_key: the endpoint (default ``OPENAI_BASE_URL``, ``OPENAI_API_KEY``).
        temperature, top_p, max_tokens, stop: sampling settings.
        logprobs: ask for per-token log-probs (recorded when the server returns them).
        max_retries, timeout: retry budget (exponential backoff on 429, timeouts, 5xx) and per-call timeout.
        concurrency: requests in flight at once for a batch.
        seed: passed to the server (servers that honour it sample reproducibly).
        token_ids: ask a vLLM server for the prompt's and the reply's token ids (other servers refuse it).
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_tokens: int = 64,
        stop: Sequence[str] | None = None,
        logprobs: bool = True,
        max_retries: int = 5,
        timeout: float = 120.0,
        concurrency: int = 8,
        seed: int | None = None,
        token_ids: bool = False,
    ):
        self.token_ids = token_ids
        self.model, self.temperature, self.top_p, self.max_tokens = model, temperature, top_p, max_tokens
        self.stop, self.logprobs, self.seed = list(stop or []), logprobs, seed
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        self.name = f"openai:{model}"
        self.client = openai.OpenAI(
            base_url=self.base_url,
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "no-key",
            max_retries=max_retries,
            timeout=timeout,
        )
        self._pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="agentgym-openai")

    def act(self, requests: Sequence[PolicyRequest]) -> list[Generation]:
        return list(self._pool.map(lambda r: self.sample(with_image(r.messages, r.image))[0], requests))

    def sample(self, messages: list[dict[str, Any]], n: int = 1) -> list[Generation]:
        """``n`` replies to one chat in one request (servers that ignore ``n`` return fewer)."""
        arguments: dict[str, Any] = dict(
            model=self.model, messages=messages, n=n, temperature=self.temperature, top_p=self.top_p,
            max_tokens=self.max_tokens, logprobs=self.logprobs,
        )
        if self.stop:
            arguments["stop"] = self.stop
        if self.seed is not None:
            arguments["seed"] = self.seed
        if self.token_ids:
            arguments["extra_body"] = {"return_token_ids": True}
        try:
            response = self.client.chat.completions.create(**arguments)
        except openai.APIConnectionError as error:
            raise ConnectionError(
                f"Cannot reach the OpenAI-compatible endpoint {self.base_url} ({error}). Is the server running "
                "and the URL right? A local one: `agentgym serve-policy --model embedded --port 8000`, then "
                "--policy openai:embedded@http://127.0.0.1:8000/v1."
            ) from error
        except openai.NotFoundError as error:
            raise ValueError(
                f"The endpoint {self.base_url} does not know the model {self.model!r} ({error.message}). "
                f"Models it serves: {self._served_models()}."
            ) from error
        except openai.AuthenticationError as error:
            raise PermissionError(
                f"The endpoint {self.base_url} refused the API key ({error.message}); set OPENAI_API_KEY or "
                "pass api_key."
            ) from error
        replies = []
        for choice in response.choices:
            tokens = choice.logprobs.content if choice.logprobs and choice.logprobs.content else None
            replies.append(Generation(
                text=choice.message.content or "",
                prompt_token_ids=getattr(response, "prompt_token_ids", None),  # vLLM's, with token_ids=True
                token_ids=getattr(choice, "token_ids", None),
                logprobs=[token.logprob for token in tokens] if tokens else None,
                extra={"finish_reason": choice.finish_reason, "tokens": [t.token for t in tokens] if tokens else None},
            ))
        return replies

    def _served_models(self) -> str:
        try:
            return ", ".join(model.id for model in self.client.models.list()) or "none"
        except openai.OpenAIError:
            return "unknown (the endpoint does not list them)"

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model, "base_url": self.base_url, "temperature": self.temperature,
                "top_p": self.top_p, "max_tokens": self.max_tokens, "stop": self.stop, "seed": self.seed}

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.client.close()


def make_openai_policy(target: str, *, seed: int | None = None, **kwargs: Any) -> OpenAIPolicy:
    """The policy ``openai:MODEL[@BASE_URL]``."""
    model, _, base_url = target.partition("@")
    if not model:
        raise ValueError("Name the model: openai:MODEL or openai:MODEL@http://host:port/v1")
    return OpenAIPolicy(model, base_url=base_url or kwargs.pop("base_url", None), seed=seed, **kwargs)
