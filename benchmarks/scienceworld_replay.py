"""Do ScienceWorld episodes replay the same? One variation of each of the 30 tasks: the oracle plays it
(``expert_action``, the simulator's gold path) and its actions are replayed 3 times in the same env,
after the other tasks, and 3 times in a fresh env, each replay compared step by step with the oracle's
episode (text, reward, score, end, state key). Both JVM settings, side by side, task by task:
``reproducible=True`` (the default: one constant identity hash code) and ``reproducible=False`` (the
JVM's own hashing, the old behaviour).

A replay "differs" if any step does: in "line order only" if every differing step has the same lines in
another order (a room's objects listed in another order) and the same numbers, else in "content" (another
temperature, another plant, another score); its outcome differs if the final score, win or end does.
Reset times are the replays' ``reset()`` calls in the envs that had run before.

    python benchmarks/scienceworld_replay.py [--replays 3] [--tasks boil melt] [--settings reproducible legacy]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field

import agentgym
from agentgym.envs.scienceworld.tasks import HELD_OUT_TASKS, load_variations

ENV_ID = "agentgym/ScienceWorld-v0"
SETTINGS = {"reproducible": True, "legacy": False}
ISSUE_VARIATIONS = {  # the variations the issue reported; the other tasks play their first test variation
    "boil": 26, "power-component": 19, "grow-fruit": 116, "melt": 24, "mendelian-genetics-known-plant": 92,
    "inclined-plane-friction-named-surfaces": 1096,
}


def task_id(name: str) -> tuple[str, str]:
    """The task id played for task ``name`` and the split it is in."""
    variation = ISSUE_VARIATIONS.get(name, load_variations()[name]["test"][0])
    return f"{name}-v{variation}", "test_ood" if name in HELD_OUT_TASKS else "test"


def make(split: str, reproducible: bool):
    return agentgym.make(ENV_ID, split=split, max_turns=1_000, reproducible=reproducible)


def snapshot(observation, reward, info, terminated) -> tuple:
    # An action the simulator rejects (the replay left the path) carries no score.
    return (observation["text"], reward, info.get("score"), info["won"], terminated, observation["state_key"],
            info["invalid_action"])


def play(env, tid: str, actions: list[str] | None, resets: list[float] | None = None):
    """Play ``actions`` (or the oracle's, when ``None``); the episode's snapshots and the actions."""
    start = time.perf_counter()
    observation, info = env.reset(options={"task_id": tid})
    if resets is not None:
        resets.append(time.perf_counter() - start)
    trace, taken = [snapshot(observation, 0.0, info, False)], []
    for index in range(10_000):
        action = env.unwrapped.expert_action() if actions is None else (
            actions[index] if index < len(actions) else None)
        if action is None:
            break
        observation, reward, terminated, truncated, info = env.step(action)
        taken.append(action)
        trace.append(snapshot(observation, reward, info, terminated))
        if terminated or truncated:
            break
    return trace, taken


def compare(reference: list[tuple], replay: list[tuple]) -> tuple[int, bool, bool]:
    """(steps that differ, whether only in line order, whether the outcome differs)."""
    differing = [(a, b) for a, b in zip(reference, replay) if a != b] + [(None, None)] * abs(len(reference) - len(replay))
    order_only = all(a is not None and sorted(a[0].splitlines()) == sorted(b[0].splitlines()) and a[1:5] == b[1:5]
                     and a[6] == b[6] for a, b in differing)
    outcome = reference[-1][2:5] != replay[-1][2:5]
    return len(differing), order_only, outcome


@dataclass
class Row:
    task: str
    steps: int = 0
    oracle_won: bool = False
    same: list[tuple[int, bool, bool]] = field(default_factory=list)
    fresh: list[tuple[int, bool, bool]] = field(default_factory=list)


def run_task(name: str, reproducible: bool, shared: dict, replays: int, resets: list[float]) -> Row:
    tid, split = task_id(name)
    if split not in shared:
        shared[split] = make(split, reproducible)
    env = shared[split]
    reference, actions = play(env, tid, None)
    row = Row(tid, len(actions), bool(reference[-1][3]))
    for _ in range(replays):
        row.same.append(compare(reference, play(env, tid, actions, resets)[0]))
    for _ in range(replays):
        fresh = make(split, reproducible)
        try:
            row.fresh.append(compare(reference, play(fresh, tid, actions)[0]))
        finally:
            fresh.close()
    return row


def cell(results: list[tuple[int, bool, bool]]) -> str:
    differing = [r for r in results if r[0]]
    if not differing:
        return f"0/{len(results)}"
    outcomes = sum(r[2] for r in differing)
    kind = ("line order only" if all(r[1] for r in differing) else
            f"content, {outcomes} with another outcome" if outcomes else "content, same outcome")
    return f"{len(differing)}/{len(results)} (≤{max(r[0] for r in differing)} steps; {kind})"


def report(setting: str, rows: list[Row], resets: list[float]) -> None:
    print(f"\n### {setting} (reproducible={SETTINGS[setting]})\n")
    print("| task | gold steps | oracle won | same env: replays differing | fresh env: replays differing |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row.task} | {row.steps} | {'yes' if row.oracle_won else '**no**'} | {cell(row.same)} | "
              f"{cell(row.fresh)} |")
    replays = [r for row in rows for r in row.same + row.fresh]
    differing = [r for r in replays if r[0]]
    print(f"\n{setting}: oracle won {sum(row.oracle_won for row in rows)}/{len(rows)} tasks; "
          f"{sum(any(r[0] for r in row.same + row.fresh) for row in rows)}/{len(rows)} tasks have a replay "
          f"that differs; {len(differing)}/{len(replays)} replays differ "
          f"({sum(r[1] for r in differing)} only in line order, {sum(r[2] for r in replays)} in outcome); "
          f"reset {1000 * statistics.mean(resets):.0f} ms mean, {1000 * statistics.median(resets):.0f} ms median "
          f"over {len(resets)} resets")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replays", type=int, default=3, help="replays per task in the same env and in fresh envs")
    parser.add_argument("--tasks", nargs="*", default=sorted(load_variations()), help="task names (default: all 30)")
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()
    shared: dict[str, dict] = {setting: {} for setting in args.settings}
    rows: dict[str, list[Row]] = {setting: [] for setting in args.settings}
    resets: dict[str, list[float]] = {setting: [] for setting in args.settings}
    start = time.perf_counter()
    try:
        for index, name in enumerate(args.tasks):
            # Settings alternate which goes first, so machine noise falls on both alike.
            order = args.settings if index % 2 == 0 else args.settings[::-1]
            for setting in order:
                row = run_task(name, SETTINGS[setting], shared[setting], args.replays, resets[setting])
                rows[setting].append(row)
                print(f"[{time.perf_counter() - start:6.0f} s] {setting:<12} {row.task:<52} steps {row.steps:3d} "
                      f"won {row.oracle_won!s:<5} same {cell(row.same)}  fresh {cell(row.fresh)}", flush=True)
    finally:
        for envs in shared.values():
            for env in envs.values():
                env.close()
    for setting in args.settings:
        report(setting, rows[setting], resets[setting])


if __name__ == "__main__":
    main()
