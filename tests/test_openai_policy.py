"""OpenAIPolicy against a real `agentgym serve-policy` server over HTTP, with the official client."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import pytest

from agentgym.hf_policy import HFPolicy
from agentgym.openai_policy import OpenAIPolicy
from agentgym.policies import make_policy
from agentgym.prompting import PromptTemplate
from agentgym.rollout import RolloutEngine

from conftest import COIN

API_KEY = "test-key"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "agentgym.cli", "serve-policy", "--model", "tiny", "--port", str(port),
         "--api-key", API_KEY],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{base_url}/models", headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"serve-policy did not start:\n{process.stdout.read()}")
        time.sleep(0.3)
    yield base_url
    process.terminate()
    process.wait(timeout=30)


def _messages():
    return PromptTemplate().build("Find the coin.", "You are in a hall.", ("go north", "take coin"))


def test_models_and_n_samples_with_logprobs(server):
    policy = OpenAIPolicy("tiny", base_url=server, api_key=API_KEY, temperature=1.0, max_tokens=6, seed=3)
    assert [m.id for m in policy.client.models.list()] == ["tiny"]
    replies = policy.sample(_messages(), n=3)
    assert len(replies) == 3
    for reply in replies:
        assert isinstance(reply.text, str)
        assert reply.logprobs and all(lp <= 0 for lp in reply.logprobs)
        assert len(reply.logprobs) == len(reply.extra["tokens"]) <= 6
    policy.close()


def test_served_logprobs_equal_local_ones(server):
    local = HFPolicy("tiny", mode="generate", temperature=0, max_new_tokens=6)
    (expected,) = local.generate([_messages()])
    remote = OpenAIPolicy("tiny", base_url=server, api_key=API_KEY, temperature=0, max_tokens=6)
    (reply,) = remote.sample(_messages())
    assert reply.text == expected.text
    assert reply.logprobs == pytest.approx(expected.logprobs, abs=1e-4)
    remote.close()


def test_greedy_episode_is_the_same_through_the_server_and_locally(server):
    local = make_policy("tiny", mode="generate", temperature=0, max_new_tokens=8)
    remote = make_policy(f"openai:tiny@{server}", api_key=API_KEY, temperature=0, max_tokens=8)
    actions = {}
    for name, policy in (("local", local), ("remote", remote)):
        with RolloutEngine(COIN, "dev", num_envs=2) as engine:
            plan = engine.plan(num_tasks=2, seed=0, run_id="parity")
            actions[name] = [[t.response for t in traj.turns] for traj in engine.run(policy, plan)]
        policy.close()
    assert actions["local"] == actions["remote"]
    assert sum(len(a) for a in actions["local"]) > 2


def test_unknown_model_wrong_key_and_bad_endpoint_are_clear_errors(server):
    with pytest.raises(ValueError, match="does not know the model 'gpt-17'.*Models it serves: tiny"):
        OpenAIPolicy("gpt-17", base_url=server, api_key=API_KEY, max_retries=0).sample(_messages())
    with pytest.raises(PermissionError, match="refused the API key"):
        OpenAIPolicy("tiny", base_url=server, api_key="wrong", max_retries=0).sample(_messages())
    with pytest.raises(ConnectionError, match="Cannot reach .*127.0.0.1:9/v1.*serve-policy"):
        OpenAIPolicy("tiny", base_url="http://127.0.0.1:9/v1", max_retries=0, timeout=5).sample(_messages())


def test_observation_images_travel_as_data_urls():
    import numpy as np

    from agentgym.openai_policy import with_image

    messages = with_image(_messages(), np.zeros((4, 6, 3), dtype=np.uint8))
    text_part, image_part = messages[-1]["content"]
    assert text_part["type"] == "text" and "You are in a hall." in text_part["text"]
    assert image_part["image_url"]["url"].startswith("data:image/png;base64,iVBORw0KGgo")
    assert with_image(_messages(), None) == _messages()


def test_stream_true_sends_chunks_then_done_and_joins_to_the_unstreamed_reply(server):
    import openai

    client = openai.OpenAI(base_url=server, api_key=API_KEY, max_retries=0)
    arguments = {"model": "tiny", "messages": _messages(), "temperature": 1.0, "max_tokens": 8, "seed": 5, "n": 2,
                 "logprobs": True}
    whole = client.chat.completions.create(**arguments)
    stream = client.chat.completions.create(**arguments, stream=True, stream_options={"include_usage": True})
    texts, finish, logprobs, usage, chunks = {0: "", 1: ""}, {}, {0: [], 1: []}, None, 0
    for chunk in stream:
        chunks += 1
        assert chunk.object == "chat.completion.chunk" and chunk.model == "tiny"
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.logprobs and choice.logprobs.content:
                logprobs[choice.index] += [token.logprob for token in choice.logprobs.content]
            if choice.finish_reason:
                finish[choice.index] = choice.finish_reason
    for choice in whole.choices:  # the same seed: the stream is the unstreamed reply, token by token
        assert texts[choice.index] == choice.message.content
        assert finish[choice.index] == choice.finish_reason
        assert logprobs[choice.index] == pytest.approx([t.logprob for t in choice.logprobs.content])
    assert chunks > 4 and usage.completion_tokens == whole.usage.completion_tokens
    raw = httpx.post(f"{server}/chat/completions", json={**arguments, "n": 1, "stream": True},
                     headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)
    assert raw.headers["content-type"].startswith("text/event-stream")
    events = [line for line in raw.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and len(events) > 3
    client.close()
