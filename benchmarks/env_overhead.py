"""Wrapper overhead: steps/s of agentgym's TextWorld env against raw TextWorld, side by side in one run.

Both replay the same recorded action sequences on the same cached games and ask TextWorld for the
same infos (admissible commands, score, max score, won, lost).

    python benchmarks/env_overhead.py [--env agentgym/TextWorld-Simple-v0 ...] [--games 8] [--rounds 10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import textworld

import agentgym
from agentgym.envs.textworld.env import REQUEST_INFOS


def record_sequences(env, task_ids, length, seed):
    """Per game: random admissible actions with some expert moves mixed in, until the game ends."""
    rng = np.random.default_rng(seed)
    sequences = []
    for task_id in task_ids:
        observation, _ = env.reset(options={"task_id": task_id})
        actions = []
        while len(actions) < length:
            expert = env.unwrapped.expert_action()
            action = expert if expert and rng.random() < 0.2 else str(rng.choice(observation["admissible_actions"]))
            observation, _, terminated, truncated, _ = env.step(action)
            actions.append(action)
            if terminated or truncated:
                break
        sequences.append(actions)
    return sequences


def episode_seconds(reset, step, actions) -> float:
    start = time.perf_counter()
    reset()
    for action in actions:
        step(action)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", nargs="+", default=[env_id for env_id in agentgym.list_envs() if "TextWorld-" in env_id],
                        help="env ids (default: every TextWorld family)")
    parser.add_argument("--games", type=int, default=8)
    parser.add_argument("--length", type=int, default=40, help="actions per game (at most)")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    for env_id in args.env:
        measure(env_id, args)


def measure(env_id: str, args: argparse.Namespace) -> None:
    recorder = agentgym.make(env_id, split="test", max_turns=10_000)
    task_ids = [task.id for task in recorder.unwrapped.tasks[: args.games]]
    sequences = record_sequences(recorder, task_ids, args.length, seed=0)
    recorder.close()

    # One engine per game for each side, so neither pays for loading games inside the timed loop.
    ours = [agentgym.make(env_id, split="test", max_turns=10_000) for _ in task_ids]
    raw_envs = []
    for env, task_id in zip(ours, task_ids):
        env.reset(options={"task_id": task_id})
        raw_envs.append(textworld.start(str(env.unwrapped.game_path(env.unwrapped.get_task(task_id))),
                                        request_infos=REQUEST_INFOS))

    # Each game is played by both sides back to back, the order alternating, and the time summed:
    # machine noise then falls on both sides alike.
    seconds = {"raw": 0.0, "ours": 0.0}
    for round_index in range(args.rounds):
        for game, (env, raw, task_id, actions) in enumerate(zip(ours, raw_envs, task_ids, sequences)):
            sides = [
                ("raw", lambda: raw.reset(), raw.step),
                ("ours", lambda: env.reset(options={"task_id": task_id}), env.step),
            ]
            for name, reset, step in sides[:: 1 if (round_index + game) % 2 else -1]:
                seconds[name] += episode_seconds(reset, step, actions)
    for env in ours:
        env.close()
    for raw in raw_envs:
        raw.close()

    steps = args.rounds * sum(len(s) for s in sequences)
    raw_rate, our_rate = steps / seconds["raw"], steps / seconds["ours"]
    print(f"{env_id}: {args.games} games x {args.rounds} rounds = {steps} steps per side (resets included)")
    print(f"  raw TextWorld (same infos) : {raw_rate:8.1f} steps/s")
    print(f"  agentgym TextWorldEnv      : {our_rate:8.1f} steps/s")
    print(f"  ratio agentgym / raw       : {our_rate / raw_rate:8.3f}   (target >= 0.9)")


if __name__ == "__main__":
    main()
