"""How faithful is the experience model? Its predictions of held-out REAL transitions (from `test`
trajectories of each family, played by the oracle mixed with 30% random actions) against what the real env
did, for the prompted embedded model and a trained one (``trainer: experience_model``):

* next-state exact match and token F1; F1 of the admissible-action set;
* reward accuracy (within 0.05) and done accuracy, split into false ends (the model ends an episode the
  real env goes on with: a synthetic win the real game never gives) and missed ends;
* malformed-reply rate (every attempt counted) and the share of transitions with no usable reply after
  every attempt (``failed``; such a step truncates a synthetic episode).

Both models see the same prompts: the task, the recent history, the state, the action and two retrieved
real transitions of other (train) tasks. Each (family, model) result is cached as JSON in ``--out``.

    python benchmarks/experience_fidelity.py --quick     # coin collector, 12 transitions
    python benchmarks/experience_fidelity.py             # coin collector, ALFWorld, WebShop; 40 transitions each
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from agentgym.paths import atomic_write
from agentgym.synthetic.buffer import ReplayBuffer, collect_transitions, read_transitions, write_transitions
from agentgym.synthetic.fidelity import METRICS, evaluate, percent
from agentgym.synthetic.model import ExperienceModel
from agentgym.synthetic.paths import trained_settings

RESULTS = Path(__file__).resolve().parent / "results"  # in git: a long run resumes on another machine

FAMILIES = {  # name: (real id, task filter, held-out split)
    "coin": ("agentgym/TextWorld-CoinCollector-v0", "level3-", "test"),
    "alfworld": ("agentgym/ALFWorld-v0", "", "test"),
    "webshop": ("agentgym/WebShop-v0", "", "test"),
}


def transitions(path: Path, real_id: str, split: str, episodes: int, task_filter: str) -> list:
    """Real transitions of ``split`` (collected once into ``path``)."""
    if not path.exists():
        write_transitions(path, collect_transitions(real_id, split, episodes=episodes, task_filter=task_filter,
                                                    num_envs=2, progress=True))
    return read_transitions(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="coin collector only, 12 held-out transitions")
    parser.add_argument("--families", nargs="+", default=None, choices=sorted(FAMILIES))
    parser.add_argument("--transitions", type=int, default=None, help="held-out transitions per family")
    parser.add_argument("--trained", nargs="*", default=["coin=runs/experience-coin-level3",
                                                           "alfworld=runs/experience-alfworld",
                                                           "webshop=runs/experience-webshop"],
                        help="FAMILY=RUN_FOLDER of a trained experience model, used once it has finished (its "
                             "final/ and the buffer.jsonl it was trained on)")
    parser.add_argument("--buffer-episodes", type=int, default=60,
                        help="train episodes collected as the retrieval buffer of a family without a trained model")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    families = args.families or (["coin"] if args.quick else list(FAMILIES))
    count = args.transitions or (12 if args.quick else 40)
    out = args.out or RESULTS / ("experience_fidelity" + ("-quick" if args.quick else ""))
    trained = dict(item.split("=", 1) for item in args.trained)

    for family in families:
        real_id, task_filter, split = FAMILIES[family]
        run = Path(trained[family]) if family in trained and (Path(trained[family]) / "final").is_dir() else None
        buffer_file = run / "buffer.jsonl" if run else out / f"{family}-train.jsonl"
        buffer = ReplayBuffer(transitions(buffer_file, real_id, "train", args.buffer_episodes, task_filter))
        held_out = transitions(out / f"{family}-{split}.jsonl", real_id, split, max(10, count // 3), task_filter)
        held_out = held_out[:: max(1, len(held_out) // count)][:count]  # spread over the episodes
        variants = {"prompted embedded": {"backend": "embedded"}}
        if run:
            variants["trained"] = trained_settings(run / "final")
        for label, settings in variants.items():
            cached = cache_path(out, family, label)
            result = json.loads(cached.read_text()) if cached.exists() else {}
            if not all(metric in result for metric in METRICS):  # not run yet, or cached before a metric was added
                print(f"== {family}: {label} on {len(held_out)} held-out {split} transitions", flush=True)
                model = ExperienceModel(settings)
                start = time.perf_counter()
                result = {**evaluate(model, buffer, held_out), "seconds": time.perf_counter() - start,
                          "settings": model.config()}
                model.close()
                atomic_write(cached, lambda handle, r=result: handle.write(json.dumps(r, indent=1).encode()))

    rows = cached_rows(out)  # every family measured so far, so a run of one family keeps the others in the figure

    print(f"\nExperience-model fidelity on held-out real transitions ({count} per family, greedy, up to 3 attempts):")
    print("| family | model | real ends | " + " | ".join(METRICS) + " |")
    print("|---|---|---|" + "---|" * len(METRICS))
    for family, label, result in rows:
        print(f"| {family} | {label} | {result['real_ends']} | " + " | ".join(percent(result[m]) for m in METRICS) + " |")
    plot(rows, out / "experience_fidelity.png")
    print(f"figure: {out / 'experience_fidelity.png'}")


def cache_path(out: Path, family: str, label: str) -> Path:
    """Where the result of one (family, model) is cached."""
    return out / f"{family}-{label.replace(' ', '-')}.json"


def cached_rows(out: Path) -> list[tuple[str, str, dict]]:
    """(family, model, result) of every result cached in ``out``, in FAMILIES order, prompted first."""
    return [(family, label, json.loads(cache_path(out, family, label).read_text()))
            for family in FAMILIES for label in ("prompted embedded", "trained")
            if cache_path(out, family, label).exists()]


def plot(rows: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axis = plt.subplots(figsize=(9, 3.5))
    width = 0.8 / max(1, len(rows))
    for index, (family, label, result) in enumerate(rows):
        axis.bar(np.arange(len(METRICS)) + index * width, [result[m] or 0.0 for m in METRICS], width, label=f"{family}: {label}")
    axis.set_xticks(np.arange(len(METRICS)) + 0.4 - width / 2, [m.replace("_", "\n") for m in METRICS], fontsize=8)
    axis.set_ylim(0, 1)
    axis.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


if __name__ == "__main__":
    main()
