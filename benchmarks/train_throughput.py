"""Update-step throughput of the per-turn layout: sharing a group's prompt prefix or not, and LoRA on
every layer or on the top layers only.

A group's episodes start from the same prompt, so the first-turn samples of a group share it whole
(and every sample shares the system text). The trainer computes the shared prefix once per micro-batch
and lets the gradient flow through it. With LoRA on the top N layers only (``lora_layers``), the
backward pass stops below them. This script runs the same forward+backward on the same samples in
each setting, alternating, and prints tokens/s (prompt + action tokens).

    python benchmarks/train_throughput.py [--model embedded] [--group 4] [--rounds 3] [--lora-layers 8]
"""

from __future__ import annotations

import argparse
import time

import torch

from agentgym.hf_policy import HFPolicy
from agentgym.prompting import PromptTemplate
from agentgym.trainers.config import RunConfig
from agentgym.trainers.model import build_policy

ACTIONS = ["go north", "go east", "take coin", "inventory", "look"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--group", type=int, default=4, help="samples sharing one first-turn prompt")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lora-layers", type=int, default=8, help="top layers adapted in the LoRA comparison")
    args = parser.parse_args()

    policy = HFPolicy(args.model, seed=0)
    policy.model.train(False)
    lora = {depth: build_policy(RunConfig(model=args.model, lora_layers=depth)) for depth in (0, args.lora_layers)}
    messages = PromptTemplate().build(
        "Find the coin and take it.",
        "-= Hall =-\nYou are in a hall. A closed chest stands here. Exits lead north and east.", ACTIONS)
    prompt = policy.prompt_ids(messages)
    responses = [[policy.reply_ids(ACTIONS[i % len(ACTIONS)])] for i in range(args.group)]
    tokens = args.group * len(prompt) + sum(len(r[0]) for r in responses)

    def step(learner: HFPolicy) -> float:
        learner.model.zero_grad()
        start = time.perf_counter()
        logps, _ = learner.token_logprobs([prompt] * args.group, responses, grad=True)
        torch.stack([group[0].sum() for group in logps]).sum().backward()
        return time.perf_counter() - start

    default_min = policy.MIN_SHARED_PREFIX
    seconds = {"shared": 0.0, "separate": 0.0, "lora-all": 0.0, "lora-top": 0.0}
    for learner in (policy, *lora.values()):
        step(learner)  # warm-up
    for _ in range(args.rounds):
        for label, minimum in (("shared", default_min), ("separate", 10**9)):
            policy.MIN_SHARED_PREFIX = minimum
            seconds[label] += step(policy)
        seconds["lora-all"] += step(lora[0])
        seconds["lora-top"] += step(lora[args.lora_layers])
    print(f"{args.model}: {args.group} samples sharing a {len(prompt)}-token prompt, forward+backward, "
          f"{args.rounds} alternating rounds")
    print("full fine-tuning (gradients for every weight):")
    for label in ("separate", "shared"):
        print(f"  prefix {label:8s}: {tokens * args.rounds / seconds[label]:8.1f} tokens/s")
    print(f"  speed-up          : {seconds['separate'] / seconds['shared']:8.2f}x")
    print("LoRA rank 16, shared prefix:")
    print(f"  every layer       : {tokens * args.rounds / seconds['lora-all']:8.1f} tokens/s")
    print(f"  top {args.lora_layers:2d} layers     : {tokens * args.rounds / seconds['lora-top']:8.1f} tokens/s")
    print(f"  speed-up          : {seconds['lora-all'] / seconds['lora-top']:8.2f}x")


if __name__ == "__main__":
    main()
