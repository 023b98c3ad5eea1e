"""The GUI pointer model: its targets and answers in hand-computed cases, and a tiny train -> policy ->
GUI-RC round trip on real rendered screens."""

from __future__ import annotations

import re

import torch

import agentgym
from agentgym.policies import PolicyRequest, make_policy
from agentgym.trainers.pointer import CELL, PointerConfig, cell_point, cell_target, tokens, train


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
        _, reward, terminated, _, _ = env.step(greedy.act([request])[0].text)
        assert terminated and reward in (0.0, 1.0)
    finally:
        env.close()
