"""GUI-RC voting and the GUI-RCPO reward against docs/algorithms.md §4.3, prediction parsing (and bad
answers), soft GUI-RC's expected votes, and the voting policy wrappers."""

from __future__ import annotations

import numpy as np
import pytest

from agentgym.grounding import (
    Box,
    GUIRCPolicy,
    SoftGUIRCPolicy,
    consensus_region,
    expected_votes,
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
    assert parse_prediction("info: click (100, 50)", 1280, 720) == Box(75, 25, 125, 75)  # 'inf' only as a word
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


BAD_ANSWERS = {
    "no numbers": "the search button",
    "one number": "click 5",
    "NaN": "(NaN, 300)",
    "NaN in a box": "[10, nan, 40, 60]",
    "infinite": "(inf, 300)",
    "negative point": "(-3, 300)",
    "point off the right edge": "(1281, 300)",
    "point below the screen": "(600, 900)",
    "box off the screen": "[1300, 10, 1400, 50]",
    "degenerate box": "[10, 10, 10, 60]",
    "box of no height": "[10, 60, 90, 60]",
}


@pytest.mark.parametrize("answer", list(BAD_ANSWERS.values()), ids=list(BAD_ANSWERS))
def test_a_bad_answer_casts_no_vote_and_earns_zero(answer):
    good = parse_prediction("(640, 360)", 1280, 720)
    bad = parse_prediction(answer, 1280, 720)
    assert bad is None
    grid = vote_grid([bad, good], 1280, 720)
    assert grid.sum() == good.area and grid.max() == 1  # only the good answer voted
    assert region_consistency_rewards([bad, good], 1280, 720) == [0.0, 1.0]
    assert region_consistency_rewards([bad, bad], 1280, 720) == [0.0, 0.0]  # nobody voted: no exception
    assert consensus_region(vote_grid([bad], 1280, 720)) is None


def test_gui_rc_policy_answers_the_consensus_point_and_records_its_samples():
    screen = np.zeros((8, 10, 3), dtype=np.uint8)
    answers = ["[2, 2, 6, 5]", "[3, 2, 7, 6]", "[3, 3, 6, 5]", "[0, 0, 2, 2]"]
    policy = GUIRCPolicy(_Answers(answers), samples=4)
    (reply,) = policy.act([PolicyRequest([], image=screen)])
    assert reply.text == "(4.5, 4)" and policy.config()["samples"] == 4
    assert reply.extra == {"gui_rc_samples": answers, "gui_rc_point_expand": 25}  # what the viewer draws
    (reply,) = GUIRCPolicy(_Answers(["no idea"]), samples=3).act([PolicyRequest([], image=screen)])
    assert reply.text == "no consensus"


# Soft GUI-RC, by hand: a 10 x 8 screen, points widened by ±1 pixel.
#   (2, 2) with p = 0.5 -> box (1, 1, 3, 3);  (3, 2) with p = 0.3 -> (2, 1, 4, 3);  (8, 6) with p = 0.2 -> (7, 5, 9, 7)
# Expected votes: 0.8 where the first two overlap (x = 2, y = 1..2), 0.5 at x = 1, 0.3 at x = 3, 0.2 around (8, 6).
# The peak region is (2, 1, 3, 3); its centre (2.5, 2.0) is soft GUI-RC's answer.
SOFT_POINTS = np.array([[2.0, 2.0], [3.0, 2.0], [8.0, 6.0]])
SOFT_PROBABILITIES = np.array([0.5, 0.3, 0.2])


def test_soft_votes_are_the_probability_map_convolved_with_the_box():
    grid = expected_votes(SOFT_POINTS, SOFT_PROBABILITIES, 10, 8, point_expand=1)
    expected = np.zeros((8, 10))
    expected[1:3, 1] = 0.5
    expected[1:3, 2] = 0.8
    expected[1:3, 3] = 0.3
    expected[5:7, 7:9] = 0.2
    np.testing.assert_allclose(grid, expected, atol=1e-12)
    assert consensus_region(grid) == Box(2, 1, 3, 3) and consensus_region(grid).centre == (2.5, 2.0)
    # The limit of K-sample voting: the mean vote grid of many samples approaches the expected one.
    rng = np.random.default_rng(0)
    drawn = rng.choice(3, size=20_000, p=SOFT_PROBABILITIES)
    boxes = [parse_prediction(f"({SOFT_POINTS[i, 0]:g}, {SOFT_POINTS[i, 1]:g})", 10, 8, point_expand=1) for i in drawn]
    assert np.abs(vote_grid(boxes, 10, 8) / len(boxes) - grid).max() < 0.02
    # Boxes clipped at the screen's edges: still each point's box, weighted by its probability.
    wide = expected_votes(SOFT_POINTS, SOFT_PROBABILITIES, 10, 8, point_expand=6)
    direct = sum(p * vote_grid([parse_prediction(f"({x:g}, {y:g})", 10, 8, point_expand=6)], 10, 8)
                 for (x, y), p in zip(SOFT_POINTS, SOFT_PROBABILITIES))
    np.testing.assert_allclose(wide, direct, atol=1e-12)
    with pytest.raises(ValueError, match="one probability each"):
        expected_votes(SOFT_POINTS, SOFT_PROBABILITIES[:2], 10, 8)


class _Distribution(Policy):
    """A policy that exposes a fixed point distribution (the pointer model's role)."""

    name = "distribution"

    def act(self, requests):
        raise AssertionError("soft GUI-RC never samples")

    def point_distribution(self, requests, *, temperature):
        scaled = SOFT_PROBABILITIES ** (1 / temperature)
        return [(SOFT_POINTS, scaled / scaled.sum()) for _ in requests]


def test_soft_gui_rc_policy_answers_the_expected_consensus_deterministically():
    screen = np.zeros((8, 10, 3), dtype=np.uint8)
    policy = SoftGUIRCPolicy(_Distribution(), point_expand=1)
    replies = policy.act([PolicyRequest([], image=screen)] * 2)
    assert [reply.text for reply in replies] == ["(2.5, 2)", "(2.5, 2)"]
    with pytest.raises(ValueError, match="whole point distribution"):
        SoftGUIRCPolicy(_Answers(["(1, 1)"]))
