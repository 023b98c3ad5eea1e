"""Steps/s of agentgym's ScienceWorld and TextWorldExpress envs against the packages' own wrappers and
the bare JVM call, side by side in one run, replaying the same gold action sequences.

`scienceworld.ScienceWorldEnv.step` rebuilds the valid-action list, look, inventory and task description
on every call; `TextWorldExpressEnv.step` makes a second JVM call for the task description. agentgym's
envs ask only for what the observation needs (ScienceWorld's valid-action list only when
`admissible_actions=True`, measured too). Resets and task loading are outside the timed loop; the
ScienceWorld resets are timed on their own, each loading another task: agentgym's env with its constant
identity hash (`reproducible=True`, the default) and without it, and the package's `load` + `reset`.

    python benchmarks/jvm_env_speed.py [--tasks 6] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time

import agentgym


def timed(reset, step, actions) -> float:
    reset()
    start = time.perf_counter()
    for action in actions:
        step(action)
    return time.perf_counter() - start


def race(sides: dict, workloads: list, rounds: int) -> dict[str, float]:
    """Steps/s per side; each workload is played by every side back to back, the order rotating, so
    machine noise falls on all sides alike."""
    seconds = dict.fromkeys(sides, 0.0)
    steps = 0
    for round_index in range(rounds):
        for index, workload in enumerate(workloads):
            names = list(sides)
            shift = (round_index + index) % len(names)
            for name in names[shift:] + names[:shift]:
                reset, step = sides[name](workload)
                seconds[name] += timed(reset, step, workload["actions"])
            steps += len(workload["actions"])
    return {name: steps / total for name, total in seconds.items()}


def report(title: str, rates: dict[str, float], baseline: str) -> None:
    print(title)
    for name, rate in rates.items():
        print(f"  {name:<38} {rate:8.1f} steps/s   x{rate / rates[baseline]:6.2f}")


def scienceworld(args) -> None:
    from scienceworld import ScienceWorldEnv as PackageEnv

    ours = agentgym.make("agentgym/ScienceWorld-v0", split="test", max_turns=10_000)
    legacy = agentgym.make("agentgym/ScienceWorld-v0", split="test", max_turns=10_000, reproducible=False)
    listing = agentgym.make("agentgym/ScienceWorld-v0", split="test", max_turns=10_000, admissible_actions=True)
    package = PackageEnv("", envStepLimit=10_000)
    names = sorted({task.payload["task_name"] for task in ours.unwrapped.tasks})
    workloads = []
    for name in names[:: max(1, len(names) // args.tasks)][: args.tasks]:
        task = next(task for task in ours.unwrapped.tasks if task.payload["task_name"] == name)
        ours.reset(options={"task_id": task.id})
        actions = []
        while (action := ours.unwrapped.expert_action()) is not None:
            actions.append(action)
            ours.step(action)
        workloads.append({"task": task, "actions": actions})

    def package_side(workload):
        payload = workload["task"].payload
        package.load(payload["task_name"], payload["variation"], "")
        return package.reset, package.step

    def env_side(env):
        return lambda workload: (lambda: env.reset(options={"task_id": workload["task"].id}), env.step)

    def bare_side(workload):
        server = ours.unwrapped.engine.server
        return (lambda: ours.reset(options={"task_id": workload["task"].id})), server.step

    rates = race({"scienceworld.ScienceWorldEnv.step": package_side, "agentgym ScienceWorldEnv": env_side(ours),
                  "agentgym, reproducible=False": env_side(legacy),
                  "agentgym, admissible_actions=True": env_side(listing), "bare JVM server.step": bare_side},
                 workloads, args.rounds)
    report(f"ScienceWorld: gold paths of {len(workloads)} tasks "
           f"({sum(len(w['actions']) for w in workloads)} steps) x {args.rounds} rounds", rates,
           "scienceworld.ScienceWorldEnv.step")
    scienceworld_resets(workloads, {"agentgym ScienceWorldEnv": ours, "agentgym, reproducible=False": legacy},
                        package, args.rounds)
    for env in (ours, legacy, listing):
        env.close()
    package.close()


def scienceworld_resets(workloads: list, envs: dict, package, rounds: int) -> None:
    """Milliseconds per reset that loads another task (the workloads' tasks in turn), sides rotating."""
    def package_reset(task):
        package.load(task.payload["task_name"], task.payload["variation"], "")
        package.reset()

    def env_reset(env):
        return lambda task: env.reset(options={"task_id": task.id})

    sides = {name: env_reset(env) for name, env in envs.items()}
    sides["scienceworld load + reset"] = package_reset
    seconds = dict.fromkeys(sides, 0.0)
    resets = 0
    for round_index in range(rounds):
        for index, workload in enumerate(workloads):
            names = list(sides)
            shift = (round_index + index) % len(names)
            for name in names[shift:] + names[:shift]:
                start = time.perf_counter()
                sides[name](workload["task"])
                seconds[name] += time.perf_counter() - start
            resets += 1
    print(f"ScienceWorld resets ({resets} per side, each to another task)")
    for name, total in seconds.items():
        print(f"  {name:<38} {1000 * total / resets:8.1f} ms per reset")


def textworld_express(args) -> None:
    from textworld_express import TextWorldExpressEnv as PackageEnv

    package = PackageEnv(envStepLimit=10_000)
    for game, env_id in (("cookingworld", "agentgym/TWX-CookingWorld-v0"), ("coin", "agentgym/TWX-CoinCollector-v0")):
        textworld_express_game(package, game, env_id, args)
    package.close()


def textworld_express_game(package, game: str, env_id: str, args) -> None:
    ours = agentgym.make(env_id, split="test", max_turns=10_000)
    workloads = []
    for task in ours.unwrapped.tasks[: args.tasks * 4]:
        ours.reset(options={"task_id": task.id})
        ours.unwrapped.expert_action()
        workloads.append({"task": task, "actions": list(ours.unwrapped._gold)})

    def package_side(workload):
        payload = workload["task"].payload
        return (lambda: package.reset(seed=payload["seed"], gameFold=payload["fold"], gameName=game,
                                      gameParams=payload["settings"])), package.step

    def our_reset(workload):
        return lambda: ours.reset(options={"task_id": workload["task"].id})

    rates = race({"textworld_express.TextWorldExpressEnv.step": package_side,
                  "agentgym TextWorldExpressEnv": lambda workload: (our_reset(workload), ours.step),
                  "bare JVM stepJSON": lambda workload: (our_reset(workload), ours.unwrapped.engine.server.stepJSON)},
                 workloads, args.rounds)
    report(f"TextWorldExpress {game}: gold paths of {len(workloads)} games "
           f"({sum(len(w['actions']) for w in workloads)} steps) x {args.rounds} rounds", rates,
           "textworld_express.TextWorldExpressEnv.step")
    ours.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=6, help="ScienceWorld tasks (x4 TextWorldExpress games)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    scienceworld(args)
    textworld_express(args)


if __name__ == "__main__":
    main()
