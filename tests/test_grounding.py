"""GUI-RC voting and the GUI-RCPO reward against ALGORITHMS.md section 4.3, prediction parsing, and
the voting policy wrapper."""

from __future__ import annotations

import numpy as np
import pytest

from agentgym.grounding import (
    Box,
    GUIRCPolicy,
    consensus_region,
    inside,
    parse_prediction,
    region_consistency_rewards,
    vote_grid,
)
from agentgym.policies import Generation, Policy, PolicyRequest

BOXES = [Box(2, 2, 6, 5), Box(3, 2, 7, 6), Box(3, 3, 6, 5), Box(0, 0, 2, 2)]


def test_worked_example_vote_grid_consensus_and_rewards():
    grid = vote_grid(BOXES, width=10, height=8)
    expected = np.zeros((8, 10), dtype=int)
    expected[0:2] = [1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    expected[2] = [0, 0, 1, 2, 2, 2, 1, 0, 0, 0]
    expected[3:5] = [0, 0, 1, 3, 3, 3, 1, 0, 0, 0]
    expected[5] = [0, 0, 0, 1, 1, 1, 1, 0, 0, 0]
    np.testing.assert_array_equal(grid, expected)
    region = consensus_region(grid)
    assert region == Box(3, 3, 6, 5) and region.centre == (4.5, 4.0)
    rewards = region_consistency_rewards(BOXES, width=10, height=8)
    assert rewards == pytest.approx([0.75, 0.6458, 1.0, 0.3333], abs=1e-4)
    advantages = (np.array(rewards) - np.mean(rewards)) / (np.std(rewards, ddof=1) + 1e-4)
    assert advantages == pytest.approx([0.2452, -0.1320, 1.1505, -1.2636], abs=1e-4)


def test_consensus_keeps_the_largest_region_and_reports_none_without_votes():
    grid = vote_grid([Box(0, 0, 2, 2), Box(5, 5, 9, 8)], width=10, height=10)  # two regions at 1 vote
    assert consensus_region(grid) == Box(5, 5, 9, 8)
    assert consensus_region(vote_grid([None, Box(3, 3, 3, 9)], 10, 10)) is None  # no box, zero area
    assert region_consistency_rewards([None, Box(1, 1, 4, 4)], 10, 10) == [0.0, 1.0]


@pytest.mark.parametrize("size", [(40, 30), (128, 96)], ids=["small boxes (sliced)", "large boxes (difference array)"])
def test_vote_grid_equals_the_direct_sum(size):
    rng = np.random.default_rng(0)
    boxes = []
    for _ in range(64):
        x1, y1 = rng.integers(0, 120), rng.integers(0, 80)
        boxes.append(Box(int(x1), int(y1), int(x1 + rng.integers(0, size[0])), int(y1 + rng.integers(0, size[1]))))
    boxes = [Box(b.x1, b.y1, min(b.x2, 128), min(b.y2, 96)) for b in boxes]
    direct = np.zeros((96, 128), dtype=int)
    for box in boxes:
        direct[box.y1 : box.y2, box.x1 : box.x2] += 1
    np.testing.assert_array_equal(vote_grid(boxes, 128, 96), direct)
    rewards = region_consistency_rewards(boxes, 128, 96)
    peak = direct.max()
    for box, reward in zip(boxes, rewards):
        want = direct[box.y1 : box.y2, box.x1 : box.x2].sum() / (peak * box.area) if box.area else 0.0
        assert reward == pytest.approx(want)


def test_parse_points_boxes_scales_and_garbage():
    assert parse_prediction("click (100, 50)", 1280, 720) == Box(75, 25, 125, 75)
    assert parse_prediction("[10, 20, 30, 40]", 1280, 720) == Box(10, 20, 30, 40)
    assert parse_prediction("<point>500 500</point>", 1280, 720, scale="1000") == Box(615, 335, 665, 385)
    assert parse_prediction("(0.5, 0.5)", 1000, 800, scale="unit", point_expand=50) == Box(450, 350, 550, 450)
    assert parse_prediction("[-5, 700, 1300, 900]", 1280, 720) == Box(0, 700, 1280, 720)  # clipped
    assert parse_prediction("[30, 40, 10, 20]", 1280, 720) == Box(10, 20, 30, 40)  # corners in any order
    assert parse_prediction("the search button", 1280, 720) is None
    assert inside((4.5, 4.0), Box(3, 3, 6, 5)) and inside((6, 5), Box(3, 3, 6, 5)) and not inside((7, 4), Box(3, 3, 6, 5))
    with pytest.raises(ValueError, match="scale must be one of"):
        parse_prediction("(1, 2)", 10, 10, scale="percent")


class _Answers(Policy):
    """A sampling policy stand-in that cycles through fixed answers (the grounding model's role)."""

    name = "answers"

    def __init__(self, answers):
        self.answers, self.calls = answers, 0

    def act(self, requests):
        out = []
        for _ in requests:
            out.append(Generation(self.answers[self.calls % len(self.answers)]))
            self.calls += 1
        return out


def test_gui_rc_policy_answers_the_consensus_point():
    screen = np.zeros((8, 10, 3), dtype=np.uint8)
    answers = ["[2, 2, 6, 5]", "[3, 2, 7, 6]", "[3, 3, 6, 5]", "[0, 0, 2, 2]"]
    policy = GUIRCPolicy(_Answers(answers), samples=4)
    (reply,) = policy.act([PolicyRequest([], image=screen)])
    assert reply.text == "(4.5, 4)" and policy.config()["samples"] == 4
    (reply,) = GUIRCPolicy(_Answers(["no idea"]), samples=3).act([PolicyRequest([], image=screen)])
    assert reply.text == "no consensus"
