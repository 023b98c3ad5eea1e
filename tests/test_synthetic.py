"""Synthetic experience (DreamGym, docs/algorithms.md §5): the curriculum's worked example, the experience
model's strict format and bad replies, the replay buffer, the synthetic env under check_env and the rollout
engine, the experience-model trainer and the DreamGym trainer end to end.

Most tests drive the env with a scripted experience model registered as a policy (``scripted-world``): the
replies a language model may give — well-formed, garbage, an empty state, a reward of 7.5, an episode that
never ends — on demand. The real tiny model drives the rest (its untrained replies are garbage, which the
env must survive), and the trainers train it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading

import pytest

import agentgym
from agentgym.policies import Generation, Policy, register_policy
from agentgym.records import Trajectory, Turn, write_jsonl
from agentgym.rollout import RolloutEngine
from agentgym.synthetic import fidelity, make_synthetic, paths, synthetic_id
from agentgym.synthetic import format as fmt
from agentgym.synthetic.buffer import ReplayBuffer, collect_transitions, read_transitions, write_transitions
from agentgym.synthetic.curriculum import (
    Seed,
    generate_tasks,
    generated_count,
    task_value,
    task_values,
    top_tasks,
)
from agentgym.synthetic.model import Batcher, ExperienceModel

COIN = "agentgym/TextWorld-CoinCollector-v0"
TEST_TASK = "coin_collector-level3-s200040"  # a test game whose first room has no coin

# ---------------------------------------------------------------- a scripted experience model

REPLIES = {
    "garbage": "The room is nice. I think the coin is somewhere.",
    "empty": "Next state:\n   \nActions: go north | take coin\nReward: 0\nDone: no",
    "reward": "Next state:\nYou pick up the coin.\nActions: look\nReward: 7.5\nDone: yes",
    "endless": "Next state:\n-= Corridor =-\nA corridor that never ends.\nActions: go north | go south\nReward: 0\nDone: no",
}
BATCHES: list[int] = []  # sizes of the batches the scripted model was asked, in order


class ScriptedWorld(Policy):
    """Writes what the experience model is asked for. ``world``: a one-room coin world (``take coin`` wins,
    anything else leads to a room with a coin); ``flaky``: garbage when greedy, the world when sampling (a
    retry); the other behaviours give :data:`REPLIES`."""

    name = "scripted-world"

    def __init__(self, behaviour: str = "world", temperature: float = 0.0):
        self.behaviour, self.temperature = behaviour, temperature

    def act(self, requests):
        BATCHES.append(len(requests))
        return [Generation(self._reply(r.messages)) for r in requests]

    def _reply(self, messages) -> str:
        system, user = messages[0]["content"], messages[-1]["content"]
        if self.behaviour == "garbage":
            return REPLIES["garbage"]
        if system == fmt.TASK_SYSTEM:
            number = re.search(r"New task number (\d+)", user).group(1)
            return f"Task: Find the golden coin in room {number} and take it."
        if system == fmt.INITIAL_SYSTEM:
            return "State:\n-= Vault =-\nA vault with a coin.\nActions: go north | take coin"
        if self.behaviour in REPLIES:
            return REPLIES[self.behaviour]
        if self.behaviour == "flaky" and self.temperature == 0:
            return REPLIES["garbage"]
        action = user.rpartition("Action: ")[2].strip()
        if action == "take coin":
            return "Reasoning: the coin is here.\nNext state:\nYou pick up the coin.\nActions: look\nReward: 1\nDone: yes"
        return (f"Next state:\n-= Room after {action} =-\nThere is a coin on the floor.\n"
                "Actions: go north | take coin\nReward: 0\nDone: no")


def _scripted(behaviour: str = "world", *, seed=None, temperature: float = 0.0, **_):
    return ScriptedWorld(behaviour or "world", temperature)


register_policy("scripted-world", _scripted)


@pytest.fixture(scope="module")
def coin_buffer(tmp_path_factory):
    """Real transitions of six level-1 coin games (oracle mixed with random actions)."""
    path = tmp_path_factory.mktemp("buffer") / "coin.jsonl"
    write_transitions(path, collect_transitions(COIN, "train", episodes=6, task_filter="level1-", num_envs=2))
    return str(path)


def _env(buffer, behaviour="world", split="test", **kwargs):
    model = {"backend": f"scripted-world:{behaviour}", "batch_wait": 0.0, **kwargs.pop("model", {})}
    return make_synthetic(COIN, split, model=model, buffer=buffer, **kwargs)


# ---------------------------------------------------------------- curriculum (§5.3)


def test_curriculum_worked_example_population_variance_ranks_c_then_b():
    rewards = {"A": [1, 1, 1, 1], "B": [1, 0, 0, 0], "C": [1, 1, 0, 0], "D": [0, 0, 0, 0]}
    values = task_values(rewards)
    assert values == {"A": 0.0, "B": 0.1875, "C": 0.25, "D": 0.0}  # exact, as in the spec's table
    assert task_value([1, 0, 0, 0]) != pytest.approx(0.25)  # not the unbiased variance (0.25 for B)
    assert top_tasks(values, 4) == ["C", "B"]  # A and D (always or never solved) are never chosen
    assert top_tasks(values, 1) == ["C"]
    for p in (0.25, 0.5):  # binary rewards: V = p(1 - p)
        assert values["B" if p == 0.25 else "C"] == pytest.approx(p * (1 - p))


def test_generated_share_caps_the_generated_tasks_of_an_iteration():
    assert generated_count(tasks=8, share=0.25, available=10) == 2
    assert generated_count(tasks=3, share=0.25, available=10) == 0  # ⌊0.75⌋
    assert generated_count(tasks=4, share=0.5, available=1) == 1  # no more than there are
    assert generated_count(tasks=4, share=0.0, available=5) == 0
    with pytest.raises(ValueError, match=r"λ must be in \[0, 1\]"):
        generated_count(tasks=4, share=1.5, available=5)


def test_task_generator_keeps_new_tasks_and_drops_repeats_and_garbage():
    model = ExperienceModel({"backend": "scripted-world"})
    seeds = [Seed("t1", 0.25, "Find the coin."), Seed("t2", 0.1875, "Take the coin in the vault.")]
    known = ["Find the coin.", "Find the golden coin in room 1 and take it."]  # variation 1 is already known
    tasks, dropped = generate_tasks(model, seeds, known, per_seed=2, iteration=3)
    assert [t.instruction for t in tasks] == ["Find the golden coin in room 2 and take it."]
    assert all(t.split == "train" and t.id.startswith("generated-it3-") for t in tasks)
    assert tasks[0].payload == {"generated_from": "t1", "iteration": 3, "seed_value": 0.25}
    # Seed t1's first variation and both of t2's repeat a known task.
    assert len(dropped) == 3 and all("repeats a known one" in reason for reason in dropped)
    tasks, dropped = generate_tasks(ExperienceModel({"backend": "scripted-world:garbage"}), seeds[:1], known,
                                    per_seed=1, iteration=3)
    assert not tasks and "does not follow the format (Task: ...)" in dropped[0]


# ---------------------------------------------------------------- the format


def test_outcomes_round_trip_and_malformed_replies_are_rejected_with_the_reason():
    example = fmt.Outcome("-= Hall =-\nA hall.", ("go south", "look"), 0.0, False)
    parsed = fmt.parse_outcome(fmt.render_outcome(example), lists_actions=True)
    assert (parsed.next_state, parsed.actions, parsed.reward, parsed.done) == ("-= Hall =-\nA hall.",
                                                                              ("go south", "look"), 0.0, False)
    # Text after the Done line (a model that keeps writing) is ignored; a rationale is read.
    parsed = fmt.parse_outcome("Reasoning: it ends.\n" + fmt.render_outcome(example) + "\nNext state: more", lists_actions=True)
    assert parsed.rationale == "it ends." and parsed.actions == ("go south", "look")
    clipped = fmt.parse_outcome(REPLIES["reward"], lists_actions=True)
    assert (clipped.reward, clipped.raw_reward, clipped.done) == (1.0, 7.5, True)
    assert fmt.parse_outcome(REPLIES["reward"].replace("7.5", "-2"), lists_actions=True).reward == 0.0
    invalid = fmt.parse_outcome("Invalid: there is no door.\n", lists_actions=False)
    assert invalid.invalid and invalid.next_state == "there is no door."
    for reply, reason in [(REPLIES["garbage"], "does not follow the format"), (REPLIES["empty"], "empty"),
                          (REPLIES["reward"].replace("7.5", "lots"), "not a number"),
                          (REPLIES["reward"].replace("7.5", "nan"), "not finite"),
                          (REPLIES["reward"].replace("look", "(none)"), "no admissible actions"), (None, "expected text")]:
        with pytest.raises(fmt.MalformedOutput, match=reason):
            fmt.parse_outcome(reply, lists_actions=True)
    assert fmt.parse_outcome(REPLIES["reward"].replace("look", "(none)"), lists_actions=False).actions == ()


# ---------------------------------------------------------------- the replay buffer


def test_a_missing_or_corrupt_buffer_file_is_a_clear_error(tmp_path, coin_buffer):
    with pytest.raises(FileNotFoundError, match="No replay buffer file at"):
        read_transitions(tmp_path / "missing.jsonl")
    with pytest.raises(FileNotFoundError, match="python -m agentgym.synthetic collect"):
        _env(str(tmp_path / "missing.jsonl"))
    corrupt = tmp_path / "corrupt.jsonl"
    corrupt.write_text(open(coin_buffer).readline() + '{"state": "half a record"}\n')
    with pytest.raises(ValueError, match="corrupt.jsonl:2: not a transition or a trajectory record"):
        ReplayBuffer.load(corrupt)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="holds no transitions"):
        read_transitions(tmp_path / "empty.jsonl")


def test_collected_transitions_chain_and_the_buffer_retrieves_by_state_and_action(coin_buffer):
    transitions = read_transitions(coin_buffer)
    episodes: dict[str, list] = {}
    for t in transitions:
        episodes.setdefault(t.episode_id, []).append(t)
    assert len(episodes) == 6 and all(not t.synthetic for t in transitions)
    for steps in episodes.values():
        for before, after in zip(steps, steps[1:]):  # each next state is the following state, as the env showed it
            assert after.state == before.next_state and after.actions == before.next_actions
        assert steps[-1].done == (steps[-1].reward == 1.0) and steps[-1].next_state != "(not recorded)"
    buffer = ReplayBuffer(transitions)
    winner = next(t for t in transitions if t.action == "take coin")
    found = buffer.retrieve(winner.state, "take coin", 2, exclude=lambda t: t.task_id == winner.task_id)
    assert found and all(t.task_id != winner.task_id for t in found) and found[0].action == "take coin"
    starts = buffer.retrieve_starts(transitions[0].instruction, 2)
    assert starts[0].turn_index == 0 and starts[0].instruction == transitions[0].instruction


@pytest.mark.parametrize("behaviour, false_end, missed_end", [
    ("world", 0.0, 0.0),     # ends exactly when the coin is taken, as the real game does
    ("endless", 0.0, 1.0),   # never ends: every real end missed
    ("reward", 1.0, 0.0),    # always ends: every real step that went on ended
])
def test_fidelity_tells_false_ends_from_missed_ends(coin_buffer, behaviour, false_end, missed_end):
    transitions = read_transitions(coin_buffer)
    model = ExperienceModel({"backend": f"scripted-world:{behaviour}", "batch_wait": 0.0})
    result = fidelity.evaluate(model, ReplayBuffer(transitions), transitions)
    assert result["real_ends"] == sum(t.done for t in transitions) > 0
    assert (result["false_end_rate"], result["missed_end_rate"]) == (false_end, missed_end)
    goes_on_only = fidelity.evaluate(model, ReplayBuffer(transitions), [t for t in transitions if not t.done])
    assert goes_on_only["missed_end_rate"] is None and fidelity.percent(goes_on_only["missed_end_rate"]) == "—"


def test_replaying_synthetic_episodes_in_the_real_env_tells_real_wins_from_false_ones(coin_buffer):
    transitions = read_transitions(coin_buffer)
    winner = next(t for t in transitions if t.done and t.reward == 1.0)
    actions = [t.action for t in transitions if t.episode_id == winner.episode_id]
    assert actions[-1] == "take coin"

    def scored_as_won(moves, payload):  # a synthetic episode the experience model ended as won
        task = agentgym.Task(winner.task_id, "train", winner.instruction, payload)
        turns = [Turn("e", "g", winner.task_id, i, [], move, move, 0.0, False, False, False, "", "")
                 for i, move in enumerate(moves)]
        return Trajectory("e", "g", synthetic_id(COIN), "train", task, None, turns, won=True)

    episodes = [scored_as_won(actions, {}), scored_as_won(actions[:-1], {}),  # the coin never taken: a false win
                scored_as_won(actions, {"generated_from": winner.task_id})]  # no real game to replay
    assert fidelity.replay_in_real(episodes, COIN) == [True, False, None]


def test_turn_records_seed_a_buffer(tmp_path):
    with RolloutEngine(COIN, "train", num_envs=1, concurrency="sequential") as engine:
        ids = [task for task in engine.tasks if "level1-" in task][:2]
        trajectories = engine.run(agentgym.make_policy("oracle"), engine.plan(task_ids=ids))
    write_jsonl(tmp_path / "turns.jsonl", trajectories)
    transitions = read_transitions(tmp_path / "turns.jsonl")
    assert len(transitions) == sum(t.num_turns for t in trajectories)
    first = transitions[0]
    assert first.instruction and "-= " in first.state and first.action == trajectories[0].turns[0].action
    # A turn record does not hold the observation after the last action.
    assert transitions[-1].next_state == "(not recorded)" and transitions[-1].reward == 1.0


# ---------------------------------------------------------------- the env


def test_synthetic_env_passes_check_env_and_copies_the_real_tasks(coin_buffer):
    agentgym.check_env(lambda: _env(coin_buffer))
    env = _env(coin_buffer)
    real = agentgym.make(COIN, split="test")
    try:
        assert [t.id for t in env.unwrapped.tasks] == [t.id for t in real.unwrapped.tasks]
        assert env.unwrapped.splits == agentgym.spec(COIN).splits and env.unwrapped.max_turns == real.unwrapped.max_turns
        observation, info = env.reset(options={"task_id": TEST_TASK})
        real_observation, real_info = real.reset(options={"task_id": TEST_TASK})
        assert observation["text"] == real_observation["text"] and info["instruction"] == real_info["instruction"]
        assert info["synthetic"] is True
        observation, reward, terminated, truncated, info = env.step("take coin")
        assert info["invalid_action"] and reward == 0  # not admissible in the real first room: no model call
        observation, reward, terminated, truncated, info = env.step(observation["admissible_actions"][0])
        assert info["synthetic"] and observation["admissible_actions"] == ("go north", "take coin")
        observation, reward, terminated, truncated, info = env.step("take coin")
        assert (reward, terminated, info["won"], info["rationale"]) == (1.0, True, True, "the coin is here.")
    finally:
        env.close()
        real.close()


def test_the_untrained_tiny_model_gives_garbage_and_the_env_survives_it(coin_buffer):
    env = make_synthetic(COIN, "test", buffer=coin_buffer,
                         model={"backend": "tiny", "max_new_tokens": 8, "max_attempts": 2, "batch_wait": 0.0})
    try:
        observation, _ = env.reset(options={"task_id": TEST_TASK})
        observation, reward, terminated, truncated, info = env.step(observation["admissible_actions"][0])
        assert truncated and not terminated and reward == 0
        assert "does not follow the format" in info["experience_model_error"] and info["engine_crashed"]
        assert env.unwrapped.model.calls == {"prompts": 1, "attempts": 2, "malformed": 2, "failed": 1}
    finally:
        env.close()
    agentgym.check_env(lambda: make_synthetic(COIN, "test", buffer=coin_buffer, model={
        "backend": "tiny", "max_new_tokens": 4, "max_attempts": 1, "batch_wait": 0.0}), determinism_steps=3)


@pytest.mark.parametrize("behaviour, check", [
    ("garbage", lambda r, te, tr, info: tr and "does not follow the format" in info["experience_model_error"]),
    ("empty", lambda r, te, tr, info: tr and info["experience_model_error"] == "the next state is empty"),
    ("reward", lambda r, te, tr, info: (r, te, info["won"], info["reward_clipped_from"]) == (1.0, True, True, 7.5)),
    ("flaky", lambda r, te, tr, info: not tr and "experience_model_error" not in info),
])
def test_bad_replies_truncate_clip_or_are_retried(coin_buffer, behaviour, check):
    env = _env(coin_buffer, behaviour)
    try:
        observation, _ = env.reset(options={"task_id": TEST_TASK})
        _, reward, terminated, truncated, info = env.step(observation["admissible_actions"][0])
        assert check(reward, terminated, truncated, info), info
        calls = env.unwrapped.model.calls
        assert calls["attempts"] == {"garbage": 3, "empty": 3, "reward": 1, "flaky": 2}[behaviour]
    finally:
        env.close()


def test_an_episode_that_never_ends_is_cut_at_the_turn_budget(coin_buffer):
    env = _env(coin_buffer, "endless", max_turns=5)
    try:
        observation, _ = env.reset(options={"task_id": TEST_TASK})
        for turn in range(1, 6):
            observation, _, terminated, truncated, info = env.step(observation["admissible_actions"][0])
            assert not terminated and truncated == (turn == 5)
        assert "experience_model_error" not in info
    finally:
        env.close()


def test_generated_tasks_start_from_the_model_and_fall_back_to_the_real_parent(tmp_path, coin_buffer):
    generated = agentgym.Task("generated-it1-abcd", "train", "Find the golden coin.",
                              {"generated_from": "coin_collector-level1-s0"})
    (tmp_path / "tasks.jsonl").write_text(json.dumps(generated.to_dict()) + "\n")
    env = _env(coin_buffer, split="train", generated_tasks=str(tmp_path / "tasks.jsonl"))
    broken = _env(coin_buffer, "garbage", split="train", generated_tasks=str(tmp_path / "tasks.jsonl"),
                  initial_state="model")
    try:
        assert env.unwrapped.tasks[-1] == generated and generated.id not in {t.id for t in env.unwrapped.load_tasks("dev")}
        observation, info = env.reset(options={"task_id": generated.id})
        assert observation["text"].startswith("-= Vault =-") and info["instruction"] == "Find the golden coin."
        observation, info = broken.reset(options={"task_id": generated.id})  # garbage everywhere: initial prompts too
        assert info["experience_model_error"].startswith("no first state")
        assert "-= " in observation["text"] and info["instruction"] == "Find the golden coin."  # the parent's real room
    finally:
        env.close()
        broken.close()


def test_rollouts_batch_every_episode_into_one_model_call_and_records_say_synthetic(coin_buffer):
    env_id = synthetic_id(COIN)
    kwargs = {"model": {"backend": "scripted-world", "batch_wait": 0.2}, "buffer": coin_buffer, "max_turns": 3}
    BATCHES.clear()
    with RolloutEngine(env_id, "train", num_envs=4, env_kwargs=kwargs) as engine:
        assert engine.pool.concurrency == "thread"
        plan = engine.plan(task_ids=["coin_collector-level1-s0", "coin_collector-level1-s1"], group_size=2)
        trajectories = engine.run(agentgym.make_policy("random", seed=0), plan)
        buffer = engine.pool._envs[0].unwrapped.buffer
        assert all(e.unwrapped.buffer is buffer for e in engine.pool._envs)  # one buffer, one model per process
        before = len(buffer.retrieve(trajectories[0].turns[0].prompt[-1]["content"], "go north", 50))
        buffer.refresh()
        assert buffer.counts()["synthetic"] == sum(t.num_turns for t in trajectories)
        assert len(buffer.retrieve(trajectories[0].turns[0].prompt[-1]["content"], "go north", 50)) > before
    assert all(turn.info["synthetic"] for t in trajectories for turn in t.turns)
    assert max(BATCHES) == 4  # the four episodes' first steps went to the model together


def test_batcher_runs_concurrent_items_as_one_batch():
    sizes = []
    batcher = Batcher(lambda items: sizes.append(len(items)) or [item * 2 for item in items], wait=0.3)
    results = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, batcher(i))) for i in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {i: 2 * i for i in range(5)} and sum(sizes) == 5 and max(sizes) >= 4
    failing = Batcher(lambda items: 1 / 0, wait=0.0)
    with pytest.raises(ZeroDivisionError):
        failing(1)


def test_any_family_gets_a_synthetic_id_with_its_splits(coin_buffer):
    env = make_synthetic("agentgym/TextWorld-Simple-v0", "dev", buffer=coin_buffer, model={"backend": "scripted-world"})
    try:
        assert agentgym.spec("agentgym/Synthetic-TextWorld-Simple-v0").splits == agentgym.spec(
            "agentgym/TextWorld-Simple-v0").splits
        assert env.reset(options={"task_id": env.unwrapped.tasks[0].id})[1]["synthetic"]
    finally:
        env.close()
    assert {synthetic_id(r) for r in ("agentgym/WebShop-v0", "agentgym/ALFWorld-v0", COIN)} <= set(agentgym.list_envs())


# ---------------------------------------------------------------- the trainers


def test_experience_model_trainer_learns_the_replies_and_installs_its_adapter(tmp_path, coin_buffer, monkeypatch):
    from agentgym.trainers.config import RunConfig
    from agentgym.trainers.experience_model import (
        ExperienceModelConfig,
        example_samples,
        reply_loss,
        train_experience_model,
    )
    from agentgym.trainers.model import build_policy

    monkeypatch.setattr(paths, "home", lambda real_id: tmp_path / "home")
    config = ExperienceModelConfig(model="tiny", lora_rank=0, data=[coin_buffer], eval_data=[coin_buffer],
                                   eval_transitions=3, eval_before=False, max_examples=6, epochs=6, lr=5e-3,
                                   minibatch_size=4, max_new_tokens=8, output_dir=str(tmp_path / "run"), install=True)
    # The loss is on exactly the reply: the outcome's tokens and the end-of-turn token.
    policy = build_policy(RunConfig(model="tiny", lora_rank=0))
    transitions = read_transitions(coin_buffer)[:3]
    samples = example_samples(policy, config.experience_settings(), ReplayBuffer(transitions), transitions)
    assert samples[0].response_ids == policy.reply_ids(fmt.render_outcome(transitions[0].outcome()))
    assert len(samples) == 3 + sum(t.turn_index == 0 for t in transitions)  # plus the first states
    assert float(reply_loss(policy, samples[:1])[0].detach()) > 0
    result = train_experience_model(config, progress=False)
    losses = [row["loss"] for row in result["rows"] if "loss" in row]
    assert len(losses) == 6 and losses[-1] < 0.8 * losses[0]
    assert set(result["after"]) >= {"next_state_f1", "actions_f1", "malformed_rate"} and not result["before"]
    installed = paths.installed_model(COIN)
    assert (installed / "config.json").is_file()  # lora_rank 0: the whole fine-tuned model
    settings = paths.resolve_settings(COIN, None)  # the synthetic env's default model is now the trained one
    assert (settings.backend, settings.adapter, settings.max_new_tokens) == (f"hf:{installed}", None, 8)
    assert paths.resolve_settings(COIN, {"backend": "embedded"}).backend == "embedded"
    assert paths.resolve_settings(COIN, {"retrieval_k": 5}).retrieval_k == 5  # a given setting is kept
    assert "Fidelity on 3 held-out real transitions" in open(result["report"]).read()


def test_dreamgym_trains_in_the_synthetic_env_then_the_real_one_and_evaluates_on_the_real_env(tmp_path, coin_buffer):
    from agentgym.trainers.dreamgym import DreamGymConfig, train

    config = DreamGymConfig(
        env_id=COIN, env_kwargs={"max_turns": 2}, task_filter="level1-", eval_split="dev", eval_episodes=2,
        model="tiny", lora_rank=0, choice_temperature=8.0, tasks_per_iteration=4, group_size=2, num_envs=2,
        iterations=3, real_iterations=1, eval_every=0, lr=0.01, seed=0, output_dir=str(tmp_path),
        experience_model={"backend": "scripted-world", "batch_wait": 0.0}, buffer=coin_buffer,
        generated_share=0.5, curriculum_seeds=2)
    result = train(config, progress=False)
    rows = {row["iteration"]: row for row in result["rows"] if "phase_real" in row}
    assert [rows[i]["phase_real"] for i in (1, 2, 3)] == [0, 0, 1]
    generated = [json.loads(line) for line in (tmp_path / "generated_tasks.jsonl").read_text().splitlines()]
    assert generated and rows[2]["generated_tasks"] == len(generated)
    iteration_2 = [Trajectory.from_dict(json.loads(line))
                   for line in (tmp_path / "trajectories" / "iteration-0002.jsonl").read_text().splitlines()]
    assert any(t.task.id.startswith("generated-") for t in iteration_2)  # λ = 0.5 of 4 tasks: up to 2 generated
    assert sum(t.task.id.startswith("generated-") for t in iteration_2) <= 2 * config.group_size
    assert all(turn.info.get("synthetic") for t in iteration_2 for turn in t.turns)
    assert len(read_transitions(tmp_path / "synthetic_transitions.jsonl")) == rows[2]["buffer_synthetic"]
    # Evaluation ran the real env's held-out split: its episodes are real (no synthetic flag).
    assert "eval_success_rate" in result["after"]
    report = open(result["report"]).read()
    assert "agentgym/Synthetic-TextWorld-CoinCollector-v0" in report and "generated tasks" in report


def test_dreamgym_trains_its_experience_model_first_then_reuses_the_finished_stage(tmp_path, coin_buffer, monkeypatch):
    from agentgym.trainers import dreamgym

    handed = []  # the policy stage's settings, as the loop would get them
    monkeypatch.setattr(dreamgym.loop, "train", lambda trainer, progress: handed.append(trainer.config) or {})
    stage = {"model": "tiny", "lora_rank": 0, "data": [coin_buffer], "eval_transitions": 0, "max_examples": 4,
             "epochs": 1, "max_new_tokens": 8, "output_dir": str(tmp_path / "shared-model")}
    config = dreamgym.DreamGymConfig(env_id=COIN, model="tiny", output_dir=str(tmp_path / "policy"),
                                     experience_model_training=stage)
    dreamgym.train(config, progress=False)
    folder = tmp_path / "shared-model"  # the stage's own output_dir, not policy/experience-model
    assert (folder / "final" / paths.SETTINGS_FILE).is_file() and not (tmp_path / "policy" / "experience-model").exists()
    assert handed[0].experience_model["backend"] == f"hf:{folder / 'final'}"  # lora_rank 0: the whole model
    assert handed[0].buffer == str(folder / "buffer.jsonl")
    # A second run (another policy seed, say) reuses the finished experience model instead of training again.
    monkeypatch.setattr(dreamgym, "train_experience_model", lambda *a, **k: pytest.fail("retrained a finished stage"))
    dreamgym.train(dataclasses.replace(config, seed=1), progress=False)
    assert handed[1].experience_model == handed[0].experience_model


def test_trainer_settings_are_documented_and_checked(capsys):
    from agentgym.cli import main
    from agentgym.trainers.config import setting_help
    from agentgym.trainers.dreamgym import DreamGymConfig
    from agentgym.trainers.experience_model import ExperienceModelConfig

    for config_class in (DreamGymConfig, ExperienceModelConfig):
        helps = setting_help(config_class)
        assert not [f.name for f in dataclasses.fields(config_class) if not helps.get(f.name, ("", ""))[1]]
    assert main(["train", "--help-config", "dreamgym"]) == 0
    assert main(["train", "--help-config", "experience_model"]) == 0
    assert "generated_share" in capsys.readouterr().out
    with pytest.raises(ValueError, match="real_iterations"):
        DreamGymConfig(iterations=2, real_iterations=3)
    with pytest.raises(ValueError, match="initial_state"):
        DreamGymConfig(initial_state="dream")


@pytest.mark.slow
@pytest.mark.parametrize("real_id", ["agentgym/TextWorld-CoinCollector-v0", "agentgym/ALFWorld-v0", "agentgym/WebShop-v0"])
def test_registered_synthetic_ids_pass_check_env_with_their_default_model(real_id):
    """The registered ids as a user gets them: the default buffer (collected on first use) and the default
    model (the installed trained one, else the prompted embedded model); minutes each on 2 CPU cores."""
    agentgym.check_env(synthetic_id(real_id))
