"""ALFWorld: our env against ALFWorld's own gym env on the same games, side by side in one run, and a
random policy's success per task type.

Speed: both play each game's walkthrough from a reset; ALFWorld's env is built by its own
``AlfredTWEnv.init_env`` (evaluation mode: no expert in the loop) over the same ``game.tw-pddl`` files.
Random: uniform choice among admissible commands for the full 50-turn budget on every test game.

    python benchmarks/alfworld_speed.py [--games-per-type 2] [--random-seeds 0 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import numpy as np

import agentgym

ALFWORLD = "agentgym/ALFWorld-v0"


def ours(env, task) -> tuple[float, float]:
    """Reset seconds and steps/s of playing the walkthrough."""
    start = time.perf_counter()
    env.reset(options={"task_id": task.id})
    reset = time.perf_counter() - start
    walkthrough, start = list(env.unwrapped._walkthrough), time.perf_counter()
    for action in walkthrough:
        env.step(action)
    return reset, len(walkthrough) / (time.perf_counter() - start)


def theirs(folder, walkthrough) -> tuple[float, float]:
    from alfworld.agents.environment.alfred_tw_env import AlfredTWEnv

    config = {"env": {"goal_desc_human_anns_prob": 0, "task_types": [1, 2, 3, 4, 5, 6], "domain_randomization": False,
                      "expert_type": "handcoded"},
              "dataset": {"eval_id_data_path": str(folder.parent), "num_eval_games": -1},
              "general": {"training_method": "dagger"}, "dagger": {"training": {"max_nb_steps_per_episode": 50}}}
    alfred = AlfredTWEnv(config, train_eval="eval_in_distribution")
    alfred.game_files = [str(folder / "game.tw-pddl")]
    env = alfred.init_env(batch_size=1)
    try:
        env.reset()  # the first reset also loads the game
        start = time.perf_counter()
        env.reset()
        reset = time.perf_counter() - start
        start = time.perf_counter()
        for action in walkthrough:
            env.step([action])
        return reset, len(walkthrough) / (time.perf_counter() - start)
    finally:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--games-per-type", type=int, default=2, help="test games per task type for the speed run")
    parser.add_argument("--random-seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()

    env = agentgym.make(ALFWORLD, split="test")
    by_type = defaultdict(list)
    for task in env.unwrapped.tasks:
        by_type[task.payload["task_type"]].append(task)
    rows = []
    for task_type, tasks in by_type.items():
        for task in tasks[: args.games_per_type]:
            env.reset(options={"task_id": task.id})  # generates and loads the game once, for both sides
            our_reset, our_speed = ours(env, task)
            their_reset, their_speed = theirs(env.unwrapped.game_folder(task), list(env.unwrapped._walkthrough))
            rows.append((our_reset, our_speed, their_reset, their_speed))
    our_reset, our_speed, their_reset, their_speed = (statistics.median(column) for column in zip(*rows))
    print(f"speed on {len(rows)} test games (medians, same games and walkthroughs, one run)")
    print(f"  ALFWorld's own env: {their_speed:6.1f} steps/s   reset {their_reset * 1000:7.0f} ms")
    print(f"  agentgym          : {our_speed:6.1f} steps/s   reset {our_reset * 1000:7.0f} ms")
    print(f"  ratio             : x{our_speed / their_speed:.1f} steps/s, x{their_reset / our_reset:.1f} faster resets")

    print(f"\nrandom policy (admissible commands, {env.unwrapped.max_turns} turns), success on test by task type")
    for task_type, tasks in by_type.items():
        rates = []
        for seed in args.random_seeds:
            rng, wins = np.random.default_rng(seed), 0
            for task in tasks:
                observation, info = env.reset(options={"task_id": task.id})
                terminated = truncated = False
                while not (terminated or truncated):
                    action = str(rng.choice(observation["admissible_actions"]))
                    observation, _, terminated, truncated, info = env.step(action)
                wins += bool(info["won"])
            rates.append(100 * wins / len(tasks))
        print(f"  {task_type:32s} {np.mean(rates):5.1f}% ± {np.std(rates, ddof=1) if len(rates) > 1 else 0:4.1f}"
              f"  ({len(tasks)} games x {len(rates)} seeds)")
    env.close()


if __name__ == "__main__":
    main()
