"""Shared fixtures. Games are generated into the user's agentgym cache and reused across runs."""

from __future__ import annotations

import importlib.util

import pytest

import agentgym

COIN = "agentgym/TextWorld-CoinCollector-v0"
TEXTWORLD_IDS = [
    "agentgym/TextWorld-CoinCollector-v0",
    "agentgym/TextWorld-TreasureHunter-v0",
    "agentgym/TextWorld-Simple-v0",
    "agentgym/TextWorld-Cooking-v0",
]
# The Ray rollout mode as a test parameter: it runs where the extra `ray` is installed.
RAY_MODE = pytest.param("ray", marks=pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                                        reason="Ray is not installed (extra ray)"))


@pytest.fixture
def coin_env():
    env = agentgym.make(COIN, split="test")
    yield env
    env.close()
