"""Short seeded runs of every LLM trainer give the losses, advantages and metrics recorded before the
trainers moved onto the shared loop (``tests/data/trainer_runs.json``, written by the code at commit
ada9d25): a refactor of the machinery must not change the training maths.

If a change is meant to alter the maths, rewrite the file with ``python tests/test_trainer_equivalence.py``
and say why in the commit.

Deliberate differences from the old code, outside what these runs record: PPO no longer logs GRPO's
``train_groups_kept`` (the PPO record is written without it); an iteration whose groups all saturated
under DAPO now checkpoints and evaluates like any other (it skipped both); ``norm_by_std`` defaults to
the advantage estimator's own choice (GiGPO silently ran GRPO's std normalisation).
"""

from __future__ import annotations

import json
import math
import pathlib
import sys

import pytest

from agentgym.trainers import epo, grpo, loop, ppo, sft, update

RECORD = pathlib.Path(__file__).parent / "data" / "trainer_runs.json"
SHARED = dict(env_id="agentgym/TextWorld-CoinCollector-v0", env_kwargs={"max_turns": 3}, task_filter="level1-",
              eval_split="dev", model="tiny", choice_temperature=8.0, tasks_per_iteration=3, group_size=3,
              num_envs=3, lr=0.01, eval_every=2, eval_episodes=4, seed=3, iterations=3, minibatch_size=8,
              micro_batch_size=4, reuse_computation=False)  # the record predates it; test_reuse_computation.py
RUNS = {
    "grpo": (grpo.GRPOConfig, grpo.GroupRelative, dict(lora_rank=0)),
    "gigpo": (grpo.GRPOConfig, grpo.GroupRelative,
              dict(advantage="gigpo", lora_rank=4, lora_layers=1, kl_coef=0.05, norm_by_std=False)),
    "epo": (epo.EPOConfig, epo.EntropySmoothing, dict(lora_rank=0, epochs=2)),
    "ppo": (ppo.PPOConfig, ppo.ValueBaseline, dict(lora_rank=0, group_size=2)),
    "sft": (sft.SFTConfig, sft.BehaviourCloning, dict(lora_rank=4, collect_episodes=6, lr=0.01)),
}
TIMING = ("seconds_", "update_tokens_per_s")


def seeded_run(name: str, folder: pathlib.Path, patch) -> dict:
    """The run's metrics rows (timings left out) and, per update, each sample's advantages, old log-probs
    and turn, with the update's logged means."""
    config_class, algorithm, settings = RUNS[name]
    updates, optimise = [], update.optimise

    def recording(samples, loss_fn, **kwargs):
        result = optimise(samples, loss_fn, **kwargs)
        updates.append({"advantages": [s.advantages for s in samples],
                        "old_logprobs": [list(s.old_logprobs) for s in samples],
                        "turn_index": [s.turn_index for s in samples], "result": dict(result)})
        return result

    patch(update, "optimise", recording)
    result = loop.train(algorithm(config_class(**{**SHARED, **settings}, output_dir=str(folder))), progress=False)
    rows = [{k: v for k, v in row.items() if not k.startswith(TIMING)} for row in result["rows"]]
    return {"rows": rows, "updates": updates}


def assert_close(recorded, now, where: str) -> None:
    if isinstance(recorded, dict):
        assert set(now) >= set(recorded), f"{where}: lost keys {sorted(set(recorded) - set(now))}"
        for key, value in recorded.items():
            assert_close(value, now[key], f"{where}.{key}")
    elif isinstance(recorded, list):
        assert len(now) == len(recorded), f"{where}: {len(now)} items, recorded {len(recorded)}"
        for index, (a, b) in enumerate(zip(recorded, now)):
            assert_close(a, b, f"{where}[{index}]")
    elif isinstance(recorded, float):
        assert math.isclose(now, recorded, rel_tol=1e-6, abs_tol=1e-6), f"{where}: {now} != recorded {recorded}"
    else:
        assert now == recorded, f"{where}: {now!r} != recorded {recorded!r}"


@pytest.mark.parametrize("name", list(RUNS))
def test_a_seeded_run_matches_the_recorded_one(name, tmp_path, monkeypatch):
    recorded = json.loads(RECORD.read_text())[name]
    now = seeded_run(name, tmp_path, monkeypatch.setattr)
    for index, (old, new) in enumerate(zip(recorded["updates"], now["updates"])):
        assert_close(old["advantages"], new["advantages"], f"{name} update {index} advantages")
    assert_close(recorded, now, name)


if __name__ == "__main__":  # rewrite the record (only when the maths is meant to change)
    import tempfile

    record = {}
    for run_name in sys.argv[1:] or RUNS:
        with tempfile.TemporaryDirectory() as scratch, pytest.MonkeyPatch.context() as patches:
            record[run_name] = seeded_run(run_name, pathlib.Path(scratch), patches.setattr)
    RECORD.write_text(json.dumps(record))
