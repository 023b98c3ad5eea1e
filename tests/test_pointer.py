"""The GUI pointer model: its targets and answers in hand-computed cases, the seams GUI-RCPO trains it
through, and a tiny train -> policy -> GUI-RC round trip on real rendered screens."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import agentgym
from agentgym.policies import PolicyRequest, make_policy
from agentgym.trainers.pointer import (
    CELL,
    PointerConfig,
    PointerNet,
    PointerPolicy,
    cell_point,
    cell_target,
    tokens,
    train,
)


def test_the_target_spreads_over_the_cells_whose_centres_lie_in_the_box():
    # A 3x4 grid of 16-pixel cells; centres at 8, 24, 40, 56 (x) and 8, 24, 40 (y).
    target = cell_target([10, 0, 45, 30], (3, 4)).view(3, 4)
    expected = torch.zeros(3, 4)
    expected[0:2, 1:3] = 0.25  # x centres 24 and 40, y centres 8 and 24
    assert torch.equal(target, expected)
    tiny = cell_target([50, 35, 52, 37], (3, 4)).view(3, 4)  # no centre inside: the centre's cell
    assert tiny[2, 3] == 1 and tiny.sum() == 1
    assert cell_point(5, (3, 4)) == (1.5 * CELL, 1.5 * CELL)


def test_instructions_hash_the_same_everywhere():
    assert tokens("Click the Send button.", 1000) == tokens("click the send button", 1000)
    assert len(tokens("Click the Send button.", 1000)) == 4 + 3  # words and word pairs


def test_train_then_point_greedily_and_with_gui_rc(tmp_path):
    result = train(PointerConfig(train_screens=6, epochs=2, screens_per_batch=3, eval_screens=3,
                                 output_dir=str(tmp_path / "run")))
    assert [row["iteration"] for row in result["metrics"]] == [0, 1, 2]
    assert result["metrics"][2]["loss"] < result["metrics"][1]["loss"]  # it fits the screens it sees
    env = agentgym.make("agentgym/GUIGrounding-v0", split="dev")
    try:
        observation, _ = env.reset(seed=0)
        request = PolicyRequest([{"role": "user", "content": observation["text"]}], image=observation["image"])
        greedy = make_policy(f"pointer:{tmp_path / 'run'}")
        assert greedy.act([request])[0].text == greedy.act([request])[0].text
        voted = make_policy(f"gui-rc:pointer:{tmp_path / 'run'}", samples=16, seed=0).act([request])[0].text
        assert voted == "no consensus" or re.fullmatch(r"\(\d+(\.\d+)?, \d+(\.\d+)?\)", voted)
        soft = make_policy(f"soft-gui-rc:pointer:{tmp_path / 'run'}", temperature=0.5)
        assert soft.act([request])[0].text == soft.act([request])[0].text  # deterministic
        # Votes are widened by half the pointer's cell, not the paper's ±25 px (README: why voting lost)
        assert voted_point_expand(tmp_path / "run") == (CELL // 2, 25)
        assert re.fullmatch(r"\(\d+(\.\d+)?, \d+(\.\d+)?\)", soft.act([request])[0].text)
        _, reward, terminated, _, _ = env.step(greedy.act([request])[0].text)
        assert terminated and reward in (0.0, 1.0)
    finally:
        env.close()


def voted_point_expand(run) -> tuple[int, int]:
    """The point expansion GUI-RC and soft GUI-RC vote with on the pointer by default, and when told ±25."""
    default = make_policy(f"gui-rc:pointer:{run}", samples=2), make_policy(f"soft-gui-rc:pointer:{run}")
    assert default[0].point_expand == default[1].point_expand
    return default[0].point_expand, make_policy(f"gui-rc:pointer:{run}", point_expand=25).point_expand


def _request(seed: int = 0) -> PolicyRequest:
    image = (np.random.default_rng(seed).random((720, 1280, 3)) * 255).astype(np.uint8)
    return PolicyRequest([{"role": "user", "content": "Instruction: Click the Send button.\nReply (x, y)."}], image=image)


def test_the_training_seams_score_exactly_what_was_sampled():
    torch.manual_seed(0)
    policy = PointerPolicy(model=PointerNet(width=16, buckets=256), seed=0)
    request = _request()
    state = policy.rng_state()
    (group,) = policy.sample([request], 8, temperature=0.7)
    policy.set_rng_state(state)
    assert [g.token_ids for g in policy.sample([request], 8, temperature=0.7)[0]] == [g.token_ids for g in group]
    cells = [g.token_ids for g in group]
    logps, entropies = policy.answer_logprobs([request] * 8, cells, temperature=0.7, grad=False)
    assert torch.allclose(torch.cat(logps), torch.tensor([g.logprobs[0] for g in group]), atol=1e-6)  # ratio 1
    for answer, cell in zip(group, cells):
        assert answer.text == "({:g}, {:g})".format(*cell_point(cell[0], (45, 80)))
    # The whole distribution: every cell's centre, probabilities summing to 1; greedy is its argmax.
    ((points, probabilities),) = policy.point_distribution([request], temperature=1.0)
    assert points.shape == (45 * 80, 2) and probabilities.sum() == pytest.approx(1.0)
    assert policy.act([request])[0].text == "({:g}, {:g})".format(*points[probabilities.argmax()])
    # A tiny nucleus keeps only the most likely cell.
    tight = policy.sample([request], 5, temperature=0.7, top_p=1e-9)[0]
    assert {g.token_ids[0] for g in tight} == {int(probabilities.argmax())}
    # Gradients reach the weights; the reference keeps the starting weights while they move.
    policy.model.requires_grad_(True)
    policy.keep_reference()
    logps, _ = policy.answer_logprobs([request], [cells[0]], temperature=0.7, grad=True)
    logps[0].sum().backward()
    assert policy.model.head[-1].bias.grad is not None and policy.model.head[-1].weight.grad.abs().sum() > 0
    with torch.no_grad():
        policy.model.head[-1].weight.add_(torch.randn_like(policy.model.head[-1].weight))
    moved = policy.answer_logprobs([request], [cells[0]], temperature=0.7, grad=False)[0][0]
    with policy.as_reference():
        kept = policy.answer_logprobs([request], [cells[0]], temperature=0.7, grad=False)[0][0]
    assert not torch.allclose(moved, kept) and torch.allclose(kept, torch.tensor(group[0].logprobs), atol=1e-6)
    with pytest.raises(ValueError, match="temperature > 0"):
        policy.sample([request], 2, temperature=0.0)
