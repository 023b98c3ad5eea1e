"""ALFWorld: our env against ALFWorld's own gym env on the same games, side by side in one run, and a
random policy's success per task type.

Speed: both play each game's walkthrough from a reset; ALFWorld's env is built by its own
``AlfredTWEnv.init_env`` (evaluation mode: no expert in the loop) over the same ``game.tw-pddl`` files.
Memory: the same games loaded one after another for a few laps (every reset on another game, two steps
each, as in training on a split); the resident memory gained per game load after the first lap.
Random: uniform choice among admissible commands for the full 50-turn budget on every test game.

    python benchmarks/alfworld_speed.py [--games-per-type 2] [--memory-laps 4] [--random-seeds 0 1]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections import defaultdict

import numpy as np
import psutil

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


def memory(env, tasks, laps: int) -> tuple[float, float]:
    """MiB of RSS gained per game load from the end of the first lap to the end of the last, and the
    median seconds of a reset that loads another game."""
    process, marks, switches = psutil.Process(), [], []
    for _ in range(laps):
        for task in tasks:
            start = time.perf_counter()
            observation, _ = env.reset(options={"task_id": task.id})
            switches.append(time.perf_counter() - start)
            for _ in range(2):
                observation, *_ = env.step(observation["admissible_actions"][0])
        gc.collect()
        marks.append(process.memory_info().rss)
    return (marks[-1] - marks[0]) / 2**20 / (len(tasks) * (laps - 1)), statistics.median(switches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--games-per-type", type=int, default=2, help="test games per task type for the speed run")
    parser.add_argument("--memory-laps", type=int, default=4, help="laps over the speed games for the memory run")
    parser.add_argument("--random-seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()

    env = agentgym.make(ALFWORLD, split="test")
    by_type = defaultdict(list)
    for task in env.unwrapped.tasks:
        by_type[task.payload["task_type"]].append(task)
    rows, played = [], []
    for task_type, tasks in by_type.items():
        for task in tasks[: args.games_per_type]:
            played.append(task)
            env.reset(options={"task_id": task.id})  # generates and loads the game once, for both sides
            our_reset, our_speed = ours(env, task)
            their_reset, their_speed = theirs(env.unwrapped.game_folder(task), list(env.unwrapped._walkthrough))
            rows.append((our_reset, our_speed, their_reset, their_speed))
    our_reset, our_speed, their_reset, their_speed = (statistics.median(column) for column in zip(*rows))
    print(f"speed on {len(rows)} test games (medians, same games and walkthroughs, one run)")
    print(f"  ALFWorld's own env: {their_speed:6.1f} steps/s   reset {their_reset * 1000:7.0f} ms")
    print(f"  agentgym          : {our_speed:6.1f} steps/s   reset {our_reset * 1000:7.0f} ms")
    print(f"  ratio             : x{our_speed / their_speed:.1f} steps/s, x{their_reset / our_reset:.1f} faster resets")

    if args.memory_laps > 1:
        per_game, switch = memory(env, played, args.memory_laps)
        print(f"\nmemory: {len(played)} games loaded in turn for {args.memory_laps} laps (2 steps each): "
              f"{per_game:+.2f} MiB RSS per game load after the first lap; a load (reset on another game) "
              f"{switch * 1000:.0f} ms median")

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
