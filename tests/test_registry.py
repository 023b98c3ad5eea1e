"""Registry: versioned ids from entry points, clear errors, and a core that never imports a family."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import gymnasium as gym
import psutil
import pytest

import agentgym
from agentgym import registry
from conftest import COIN, TEXTWORLD_IDS

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_textworld_ids_are_registered_with_versions_and_splits():
    ids = agentgym.list_envs()
    assert set(TEXTWORLD_IDS) <= set(ids)
    for env_id in TEXTWORLD_IDS:
        assert env_id.startswith("agentgym/") and env_id.endswith("-v0")
        assert agentgym.spec(env_id).splits == ("train", "dev", "test", "test_ood")
        assert env_id in gym.registry


def test_unknown_id_suggests_close_matches():
    with pytest.raises(gym.error.NameNotFound, match="Did you mean agentgym/TextWorld-CoinCollector-v0"):
        agentgym.make("agentgym/TextWorld-CoinColector-v0")


def test_register_a_users_own_env_by_string_entry_point():
    agentgym.register("mytests/Coin-v9", "agentgym.envs.textworld.env:TextWorldEnv", kwargs={"family": "coin_collector"})
    env = agentgym.make("mytests/Coin-v9", split="dev")
    try:
        assert env.unwrapped.split == "dev" and env.unwrapped.family == "coin_collector"
    finally:
        env.close()


def test_the_layering_contract_holds():
    """The core never imports a family or a trainer, and families and trainers never import each other
    (.importlinter; `make test` runs the same check first)."""
    result = subprocess.run([str(pathlib.Path(sys.executable).with_name("lint-imports"))], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:]


def test_listing_envs_imports_no_engine():
    code = "import sys, agentgym; agentgym.list_envs(); print('textworld' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "False"


def _children() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


def test_max_turns_reads_the_budget_without_starting_an_engine(monkeypatch):
    from agentgym.envs.scienceworld.env import ScienceWorldEnv

    def never(*args, **kwargs):
        raise AssertionError("max_turns built a ScienceWorld env")

    monkeypatch.setattr(ScienceWorldEnv, "__init__", never)
    before = _children()
    assert registry.max_turns("agentgym/ScienceWorld-v0") == 100  # the class attribute: no JVM
    assert registry.max_turns("agentgym/ScienceWorld-v0", {"max_turns": 30}) == 30
    # TextWorld's budget comes from the family's task file, read by the constructor (no engine starts).
    assert registry.max_turns(COIN) == 25
    assert registry.max_turns("agentgym/TextWorld-Cooking-v0") == 50
    assert registry.max_turns(COIN, {"max_turns": 8}) == 8
    assert _children() <= before
    env = agentgym.make(COIN)
    try:
        assert env.unwrapped.max_turns == registry.max_turns(COIN)
    finally:
        env.close()
