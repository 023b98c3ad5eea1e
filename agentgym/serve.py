"""``agentgym serve-policy``: a local OpenAI-compatible server over :class:`~agentgym.hf_policy.HFPolicy`.

Serves ``GET /v1/models`` and ``POST /v1/chat/completions`` (``n``, ``temperature``, ``top_p``,
``max_tokens``, ``stop``, ``seed``, ``logprobs``) so any OpenAI-compatible client can use a local or
trained checkpoint. Binds to 127.0.0.1 unless told otherwise; with an API key, requests without
``Authorization: Bearer <key>`` are refused. Requests are served one at a time: the model already
uses every core for one batch.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from agentgym.hf_policy import HFPolicy, Sampling


class ChatRequest(BaseModel):
    model: str
    messages: list[dict[str, Any]]
    n: int = Field(1, ge=1, le=64)
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    logprobs: bool = False


def _error(status: int, message: str, kind: str, code: str | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind, "code": code}})


def _text_only(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Chat messages with multi-part content reduced to its text parts (the served model reads text)."""
    out = []
    for message in messages:
        content = message.get("content") or ""
        if isinstance(content, list):
            content = "\n".join(part.get("text", "") for part in content if part.get("type") == "text")
        out.append({"role": message.get("role", "user"), "content": content})
    return out


def create_app(policy: HFPolicy, model_id: str, api_key: str | None = None) -> FastAPI:
    """The FastAPI app serving ``policy`` under the name ``model_id``."""
    app = FastAPI(title="agentgym policy server")
    lock = threading.Lock()

    @app.middleware("http")
    async def check_key(request: Request, call_next):
        if api_key is not None and request.headers.get("authorization") != f"Bearer {api_key}":
            return _error(401, "Missing or wrong API key (send Authorization: Bearer <key>).",
                          "invalid_request_error", "invalid_api_key")
        return await call_next(request)

    @app.get("/v1/models")
    def list_models():
        return {"object": "list", "data": [{"id": model_id, "object": "model", "created": 0, "owned_by": "agentgym"}]}

    @app.post("/v1/chat/completions")
    def chat_completions(body: ChatRequest):
        if body.model != model_id:
            return _error(404, f"The model {body.model!r} does not exist; this server serves {model_id!r}.",
                          "invalid_request_error", "model_not_found")
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        sampling = Sampling(body.temperature, body.top_p, body.max_completion_tokens or body.max_tokens or 256,
                            tuple(stop))
        generator = torch.Generator().manual_seed(body.seed) if body.seed is not None else None
        with lock:
            replies = policy.generate([_text_only(body.messages)], n=body.n, sampling=sampling, generator=generator)
        choices = []
        for index, reply in enumerate(replies):
            choice: dict[str, Any] = {
                "index": index,
                "message": {"role": "assistant", "content": reply.text},
                "finish_reason": reply.extra["finish_reason"],
                "logprobs": None,
            }
            if body.logprobs:
                pieces = [policy.tokenizer.decode([token]) for token in reply.token_ids]
                choice["logprobs"] = {"content": [
                    {"token": piece, "logprob": logprob, "bytes": list(piece.encode()), "top_logprobs": []}
                    for piece, logprob in zip(pieces, reply.logprobs)
                ]}
            choices.append(choice)
        prompt_tokens = len(replies[0].prompt_token_ids)
        completion_tokens = sum(len(r.token_ids) for r in replies)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model_id,
            "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    return app


def serve(model: str = "embedded", *, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          model_id: str | None = None, adapter: str | None = None, threads: int | None = None) -> None:
    """Load ``model`` and serve it until interrupted."""
    if threads:
        torch.set_num_threads(threads)
    policy = HFPolicy(model, adapter=adapter, mode="generate", seed=0)
    app = create_app(policy, model_id or model, api_key)
    print(f"Serving {model!r} as {model_id or model!r} on http://{host}:{port}/v1", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
