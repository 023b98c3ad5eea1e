"""TRL's GRPOTrainer on an agentgym env id: the tiny model, a few steps, on CPU, offline.

    python examples/trl_grpo.py [--env-id ID] [--steps 3] [--output-dir runs/trl-grpo]

1. The tiny model (a random 2-layer Llama with the SmolLM2 tokenizer) gets TRL's Qwen2.5 chat template,
   which renders tools in the ChatML tokens the tokenizer already has, and TRL's parser for it.
2. A random model never calls a tool, so a short behaviour-cloning warm start teaches it the call
   format on the env's expert episodes (train split; agentgym's ``tool_call_conversations``).
3. ``GRPOTrainer`` trains it with ``environment_factory``: every rollout resets an agentgym env to a
   dataset row's task, the model acts by calling ``act``, and the env's reward scores the rollout.

It prints one JSON line at the end: the env steps taken through the tool and TRL's logged rewards.
Needs the ``trl`` extra (``pip install 'agentgym[trl]'``).
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # environment_factory is marked experimental in TRL 1.x

ENV_ID = "agentgym/TextWorld-CoinCollector-v0"
TASKS = "level1-"  # one-room coin games: `take coin` wins


def warm_start(model, tokenizer, chats, tools, *, steps: int, lr: float, seed: int) -> float:
    """Behaviour cloning on whole tool-calling chats, loss on the assistant turns only; returns the last loss."""
    import torch

    torch.manual_seed(seed)
    samples = []
    for chat in chats:
        ids = tokenizer.apply_chat_template(chat, tools=tools, tokenize=True, return_dict=True)["input_ids"]
        labels = [-100] * len(ids)
        for end in range(2, len(chat) + 1):  # label each assistant message's tokens
            if chat[end - 1]["role"] != "assistant":
                continue
            start = len(tokenizer.apply_chat_template(chat[: end - 1], tools=tools, tokenize=True, return_dict=True,
                                                      add_generation_prompt=True)["input_ids"])
            stop = len(tokenizer.apply_chat_template(chat[:end], tools=tools, tokenize=True,
                                                     return_dict=True)["input_ids"])
            labels[start:stop] = ids[start:stop]
        samples.append((torch.tensor([ids]), torch.tensor([labels])))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    loss = torch.tensor(float("nan"))
    for step in range(steps):
        ids, labels = samples[step % len(samples)]
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    return float(loss.detach())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-id", default=ENV_ID, help=f"an agentgym id or openenv:URL (default: {ENV_ID})")
    parser.add_argument("--task-filter", default=TASKS, help=f"train tasks whose id contains this (default: {TASKS})")
    parser.add_argument("--steps", type=int, default=3, help="GRPO steps (default: 3)")
    parser.add_argument("--warm-start-steps", type=int, default=150, help="behaviour-cloning steps (default: 150)")
    parser.add_argument("--output-dir", default="runs/trl-grpo")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from trl import GRPOConfig, GRPOTrainer
    from trl.chat_template_utils import add_response_schema, qwen2_5_chat_template

    from agentgym.integrations.trl import (
        AgentgymToolEnv,
        environment_factory,
        make_dataset,
        tool_call_conversations,
    )
    from agentgym.models import load_causal_lm

    model, tokenizer = load_causal_lm("tiny")
    tokenizer.chat_template = qwen2_5_chat_template
    add_response_schema(tokenizer)

    dataset = make_dataset(args.env_id, "train", num_tasks=8, seed=args.seed, task_filter=args.task_filter)
    chats = tool_call_conversations(args.env_id, "train", task_ids=dataset["task_id"])
    loss = warm_start(model, tokenizer, chats, [AgentgymToolEnv.act], steps=args.warm_start_steps, lr=3e-3,
                      seed=args.seed)

    factory = environment_factory(args.env_id, "train")
    config = GRPOConfig(
        output_dir=args.output_dir, max_steps=args.steps, per_device_train_batch_size=4, num_generations=4,
        max_completion_length=96, max_tool_calling_iterations=3, learning_rate=1e-4, temperature=0.7,
        logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, seed=args.seed,
        dataloader_num_workers=0)
    trainer = GRPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                          environment_factory=factory)
    try:
        trainer.train()
    finally:
        steps = factory.steps
        factory.close()
    logs = [row for row in trainer.state.log_history if "reward" in row]
    result = {"warm_start_loss": round(loss, 4), "env_steps": steps,
              "rewards": [row["reward"] for row in logs],
              "env_rewards": [row.get(f"rewards/{AgentgymToolEnv.__name__}/mean") for row in logs]}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
