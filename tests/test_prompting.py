"""The shared prompt template and action parser."""

from __future__ import annotations

import pytest

from agentgym.prompting import ActionParser, HistoryItem, PromptTemplate

ADMISSIBLE = ("go north", "take coin", "look")


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("go north", "go north"),
        ("  Go North.  ", "Go North"),
        ("Action: take coin", "take coin"),
        ("> look", "look"),
        ("`take coin`", "take coin"),
        ('"go north"', "go north"),
        ("I think I should move.\ntake coin\n", "take coin"),
        ("<action>take coin</action> because it is there", "take coin"),
        ("", ""),
        ("\n  \n", ""),
        ("Let me dance around the room", "Let me dance around the room"),
        ("I need the capital.\n<search>Chad capital</search>", "<search>Chad capital</search>"),
        ("<search>a</search> so <answer>N'Djamena</answer>", "<answer>N'Djamena</answer>"),
        ('{"name": "search", "arguments": {"query": "Chad"}}', '{"name": "search", "arguments": {"query": "Chad"}}'),
    ],
)
def test_parser(reply, expected):
    assert ActionParser().parse(reply, ADMISSIBLE) == expected


def test_parser_takes_first_line_when_several_admissible_lines():
    assert ActionParser().parse("go north\ntake coin", ADMISSIBLE) == "go north"


def test_template_lists_task_observation_actions_and_a_history_window():
    template = PromptTemplate(history_window=2)
    history = [HistoryItem(f"action {i}", f"observation {i}") for i in range(5)]
    messages = template.build("Find the coin.", "You are in a hall.", ADMISSIBLE, history)
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    assert "Task: Find the coin." in user and "You are in a hall." in user
    assert "- take coin" in user
    assert "action 4" in user and "action 3" in user and "action 2" not in user
    assert "[4] > action 3" in user  # turns keep their episode numbers
    assert "admissible actions" in messages[0]["content"]


def test_template_without_admissible_actions_has_no_action_list():
    user = PromptTemplate().build("Answer.", "Question?", ())[1]["content"]
    assert "Admissible actions" not in user
