"""Generation throughput of the embedded model: one batch of 8 prompts against the same prompts one at a time.

Both use HFPolicy's sampling loop with the same settings on the same TextWorld-style prompts (built by
the shared template, ~250 tokens each). Tokens/s counts generated tokens; prompt reading is included,
as in a rollout. Greedy decoding with a fixed reply length keeps the work equal on both sides.

    python benchmarks/generation_throughput.py [--batch 8] [--new-tokens 32] [--model embedded]
"""

from __future__ import annotations

import argparse
import time

import torch

from agentgym.hf_policy import HFPolicy, Sampling
from agentgym.prompting import PromptTemplate

ROOMS = ["kitchen", "pantry", "bedroom", "attic", "cellar", "garden", "study", "hall", "vault", "bathroom"]


def prompts(count: int) -> list[list[dict[str, str]]]:
    template = PromptTemplate()
    out = []
    for i in range(count):
        room = ROOMS[i % len(ROOMS)]
        observation = (f"-= {room.title()} =-\nYou are in the {room}. There is a closed chest here and a table "
                       f"with a {['coin', 'key', 'apple', 'knife'][i % 4]} on it. Exits lead north and east.")
        actions = ["go north", "go east", "open chest", f"take {['coin', 'key', 'apple', 'knife'][i % 4]}",
                   "inventory", "look", "examine table"]
        out.append(template.build("Find the coin and take it.", observation, actions))
    return out


def timed(policy: HFPolicy, batches, sampling: Sampling) -> tuple[int, float]:
    start = time.perf_counter()
    tokens = sum(len(g.token_ids) for batch in batches for g in policy.generate(batch, sampling=sampling))
    return tokens, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    args = parser.parse_args()

    policy = HFPolicy(args.model, mode="generate", seed=0)
    # An end-of-turn token the model never emits keeps every reply exactly --new-tokens long.
    policy.eos_ids = {-1}
    sampling = Sampling(temperature=0.0, max_new_tokens=args.new_tokens)
    chats = prompts(args.batch)
    prompt_tokens = sum(len(policy.prompt_ids(c)) for c in chats) / len(chats)
    timed(policy, [chats[:2]], Sampling(temperature=0.0, max_new_tokens=2))  # warm-up
    sequential_tokens, sequential_seconds = timed(policy, [[chat] for chat in chats], sampling)
    batched_tokens, batched_seconds = timed(policy, [chats], sampling)
    sequential_rate, batched_rate = sequential_tokens / sequential_seconds, batched_tokens / batched_seconds
    print(f"{args.model}: {args.batch} prompts of ~{prompt_tokens:.0f} tokens, {args.new_tokens} new tokens each, "
          f"fp32 on {torch.get_num_threads()} threads")
    print(f"  one at a time (batch 1) : {sequential_rate:7.1f} tokens/s  ({sequential_seconds:.1f} s)")
    print(f"  batched (batch {args.batch:<2})      : {batched_rate:7.1f} tokens/s  ({batched_seconds:.1f} s)")
    print(f"  speed-up                : {batched_rate / sequential_rate:7.2f}x   (target >= 4x at batch 8)")


if __name__ == "__main__":
    main()
