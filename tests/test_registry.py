"""Registry: versioned ids from entry points, clear errors, and a core that never imports a family."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import gymnasium as gym
import pytest

import agentgym
from conftest import TEXTWORLD_IDS

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


def _imports(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_never_imports_a_family_or_a_trainer():
    for path in (ROOT / "agentgym").glob("*.py"):
        bad = {name for name in _imports(path) if name.startswith(("agentgym.envs", "agentgym.trainers", "envs", "trainers"))}
        assert not bad, f"{path.name} imports {bad}"


def test_envs_never_import_trainers():
    for path in (ROOT / "envs").rglob("*.py"):
        bad = {name for name in _imports(path) if name.startswith(("agentgym.trainers", "trainers"))}
        assert not bad, f"{path} imports {bad}"


def test_listing_envs_imports_no_engine():
    code = "import sys, agentgym; agentgym.list_envs(); print('textworld' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "False"
