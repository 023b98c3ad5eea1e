"""Web step latency: agentgym's MiniWoB++ env (Playwright, text observation) against the ``miniwob``
package's own Selenium env, side by side in one run on the same tasks and seeds.

Both envs reset to the same seeded page and click the same checkbox or radio button (steps that do not
end the episode, so both build a full observation). The package's env is timed twice: with its default
observation (DOM elements + screenshot) and with screenshots off (DOM only, the closer match to our
text observation). Needs the package's Selenium: ``pip install selenium`` (``miniwob`` depends on it).

    python benchmarks/web_step.py [--episodes 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import gymnasium as gym

import agentgym

TASKS = {"click-checkboxes": "input_checkbox", "click-option": "input_radio"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=20, help="episodes per task (seeds 20000...)")
    args = parser.parse_args()
    os.environ.setdefault("MINIWOB_CHROME_BINARY", "/usr/bin/chromium")
    os.environ.setdefault("MINIWOB_CHROMEDRIVER", "/usr/bin/chromedriver")
    import miniwob
    from miniwob.action import ActionTypes

    gym.register_envs(miniwob)
    rows = []
    for task, tag in TASKS.items():
        ours = agentgym.make(f"agentgym/MiniWoB-{''.join(w.title() for w in task.split('-'))}-v0", split="test")
        theirs = gym.make(f"miniwob/{task}-v1")
        times = {"agentgym step (text observation)": [], "miniwob step (DOM + screenshot)": [],
                 "miniwob step (DOM only)": [], "agentgym reset": [], "miniwob reset": []}
        for episode in range(args.episodes):
            seed = 20_000 + episode
            start = time.perf_counter()
            ours.reset(options={"task_id": f"{task}-s{seed}"})
            times["agentgym reset"].append(time.perf_counter() - start)
            boxes = [item[0] for item in ours.unwrapped._items if item[1] in ("checkbox", "radio")]
            clicks = []
            while (action := ours.unwrapped.expert_action()) is not None:
                element = int(action[6:-1])
                if element not in boxes:
                    break  # Submit ends the episode: only non-ending steps are timed
                start = time.perf_counter()
                ours.step(action)
                times["agentgym step (text observation)"].append(time.perf_counter() - start)
                clicks.append(boxes.index(element))
            for screenshots in (True, False):
                start = time.perf_counter()
                observation, _ = theirs.reset(seed=seed, options={"record_screenshots": screenshots})
                times["miniwob reset"].append(time.perf_counter() - start)
                refs = [e["ref"] for e in observation["dom_elements"] if e["tag"] == tag]
                label = "miniwob step (DOM + screenshot)" if screenshots else "miniwob step (DOM only)"
                for position in clicks:
                    action = theirs.unwrapped.create_action(ActionTypes.CLICK_ELEMENT, ref=refs[position])
                    start = time.perf_counter()
                    theirs.step(action)
                    times[label].append(time.perf_counter() - start)
        ours.close()
        theirs.close()
        rows.append((task, {name: statistics.median(values) * 1000 for name, values in times.items()},
                     len(times["agentgym step (text observation)"])))
    print(f"median latency in ms ({args.episodes} episodes per task, same seeds, one run)")
    for task, medians, steps in rows:
        print(f"\n{task} ({steps} timed steps each)")
        for name, value in medians.items():
            print(f"  {name:36s} {value:7.1f}")
        ratio = medians["miniwob step (DOM only)"] / medians["agentgym step (text observation)"]
        print(f"  miniwob DOM-only step / agentgym step: x{ratio:.2f}")


if __name__ == "__main__":
    main()
