"""``agentgym serve-policy``: a local OpenAI-compatible server over :class:`~agentgym.hf_policy.HFPolicy`.

Serves ``GET /v1/models`` and ``POST /v1/chat/completions`` (``n``, ``temperature``, ``top_p``,
``max_tokens``, ``stop``, ``seed``, ``logprobs``, ``stream``) so any OpenAI-compatible client can use a
local or trained checkpoint. With ``stream: true`` the reply comes as server-sent events in OpenAI's
``chat.completion.chunk`` form, one chunk per generated token (with its log-prob when asked), a chunk
with the finish reason, the usage when ``stream_options.include_usage`` asks, then ``data: [DONE]``.
The chunks are sent once the batch is generated (the sampler has no per-token hook), so a streamed
reply is exactly the non-streamed one under the same seed. Binds to 127.0.0.1 unless told otherwise;
with an API key, requests without ``Authorization: Bearer <key>`` are refused. Requests are served one at a time: the model already
uses every core for one batch.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
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
    stream: bool = False
    stream_options: dict[str, Any] | None = None


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
        prompt_tokens = len(replies[0].prompt_token_ids)
        completion_tokens = sum(len(r.token_ids) for r in replies)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens}
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": model_id}
        if body.stream:
            include_usage = bool((body.stream_options or {}).get("include_usage"))
            return StreamingResponse(_stream(policy, replies, head, body.logprobs, usage if include_usage else None),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        choices = []
        for index, reply in enumerate(replies):
            choice: dict[str, Any] = {
                "index": index,
                "message": {"role": "assistant", "content": reply.text},
                "finish_reason": reply.extra["finish_reason"],
                "logprobs": None,
            }
            if body.logprobs:
                choice["logprobs"] = {"content": [_token_logprob(policy, token, logprob)
                                                  for token, logprob in zip(reply.token_ids, reply.logprobs)]}
            choices.append(choice)
        return {**head, "object": "chat.completion", "choices": choices, "usage": usage}

    return app


def _token_logprob(policy: HFPolicy, token: int, logprob: float) -> dict[str, Any]:
    piece = policy.tokenizer.decode([token])
    return {"token": piece, "logprob": logprob, "bytes": list(piece.encode()), "top_logprobs": []}


def _text_pieces(policy: HFPolicy, tokens: list[int], text: str) -> list[str]:
    """The reply ``text`` split at its tokens: piece ``k`` is what token ``k`` adds (``""`` for a token that
    completes no character yet, or that falls after a stop string). The pieces join to ``text`` exactly."""
    pieces, emitted = [], 0
    for count in range(1, len(tokens) + 1):
        prefix = policy.tokenizer.decode([t for t in tokens[:count] if t not in policy.eos_ids],
                                         skip_special_tokens=True)
        upto = min(len(prefix.rstrip("\ufffd")), len(text))
        if upto > emitted and text[:upto] == prefix[:upto]:
            pieces.append(text[emitted:upto])
            emitted = upto
        else:
            pieces.append("")
    if pieces:
        pieces[-1] += text[emitted:]
    elif text:
        pieces.append(text)
    return pieces


def _stream(policy: HFPolicy, replies: list, head: dict[str, Any], logprobs: bool,
            usage: dict[str, int] | None) -> Iterator[str]:
    """Server-sent events of ``replies`` as OpenAI streams them: per choice a role chunk, one chunk per
    token, a finish chunk; then the usage chunk (when asked) and ``[DONE]``."""

    def event(choices: list[dict[str, Any]], **extra: Any) -> str:
        chunk = {**head, "object": "chat.completion.chunk", "choices": choices, **extra}
        return f"data: {json.dumps(chunk)}\n\n"

    for index, reply in enumerate(replies):
        yield event([{"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                      "finish_reason": None}])
        for token, logprob, piece in zip(reply.token_ids, reply.logprobs, _text_pieces(policy, reply.token_ids,
                                                                                         reply.text)):
            yield event([{"index": index, "delta": {"content": piece}, "finish_reason": None,
                          "logprobs": {"content": [_token_logprob(policy, token, logprob)]} if logprobs else None}])
        yield event([{"index": index, "delta": {}, "logprobs": None, "finish_reason": reply.extra["finish_reason"]}])
    if usage is not None:
        yield event([], usage=usage)
    yield "data: [DONE]\n\n"


def serve(model: str = "embedded", *, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          model_id: str | None = None, adapter: str | None = None, threads: int | None = None) -> None:
    """Load ``model`` and serve it until interrupted."""
    if threads:
        torch.set_num_threads(threads)
    policy = HFPolicy(model, adapter=adapter, mode="generate", seed=0)
    app = create_app(policy, model_id or model, api_key)
    print(f"Serving {model!r} as {model_id or model!r} on http://{host}:{port}/v1", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
