"""GUI-RCPO's settings tried on `dev` before the benchmark (benchmarks/gui_rcpo.py) reports on `test` and
`test_ood`: the trained pointer model adapted on the 100 unlabeled `dev` screens (one seed, 2 passes),
greedy accuracy before and after, the KL to the start at the end and the consistency reward's first and
last values, for each (learning rate, point expansion, temperature). The learning-rate default of
GUIRCPOConfig was chosen here. Each setting is cached as JSON in --out.

    python benchmarks/gui_rcpo_dev_sweep.py       # six settings, ~45 s each on 2 cores
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from agentgym.trainers.gui_rcpo import GUIRCPOConfig
from agentgym.trainers.gui_rcpo import train as train_gui_rcpo

SETTINGS = [(1e-4, 50, 0.7), (1e-5, 50, 0.7), (1e-4, 8, 0.7), (1e-5, 8, 0.7), (3e-5, 16, 0.7), (1e-5, 8, 0.25)]


def adapt(pointer: Path, lr: float, expand: int, temperature: float, folder: Path) -> dict:
    start = time.perf_counter()
    config = GUIRCPOConfig(model=f"pointer:{pointer}", train_split="dev", eval_split="dev", eval_episodes=100,
                           seed=0, lr=lr, point_expand=expand, temperature=temperature, output_dir=str(folder),
                           save_episodes=0)
    result = train_gui_rcpo(config, progress=False)
    rows = [row for row in result["rows"] if "samples" in row]
    return {"before": result["before"]["eval_success_rate"], "after": result["after"]["eval_success_rate"],
            "kl_last": rows[-1].get("kl"), "consistency": [rows[0]["consistency_reward"], rows[-1]["consistency_reward"]],
            "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pointer", type=Path, default=Path("runs/pointer-gui"), help="the trained pointer model")
    parser.add_argument("--out", type=Path, default=Path("results/gui_rcpo/dev-sweep"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print("| lr | point expansion | T | dev before | dev after | KL at the end | consistency first → last |")
    print("|---|---|---|---|---|---|---|")
    for lr, expand, temperature in SETTINGS:
        name = f"lr{lr:g}-e{expand}-t{temperature:g}"
        path = args.out / f"{name}.json"
        if not path.exists():
            path.write_text(json.dumps(adapt(args.pointer, lr, expand, temperature, args.out / name)))
        result = json.loads(path.read_text())
        print(f"| {lr:g} | ±{expand} px | {temperature:g} | {result['before']:.0%} | {result['after']:.0%} | "
              f"{result['kl_last']:.3f} | {result['consistency'][0]:.2f} → {result['consistency'][1]:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
