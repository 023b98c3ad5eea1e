"""The project builds as a wheel that carries every module, task file and asset, and works installed."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)],
                   check=True, capture_output=True, text=True)
    (path,) = out.glob("agentgym-*.whl")
    return path


def test_wheel_carries_every_source_task_and_asset_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = set()
    for path in (ROOT / "agentgym").rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            expected.add(path.relative_to(ROOT).as_posix())
    assert expected - names == set()
    assert any(name.startswith("agentgym/tasks/textworld/") and name.endswith(".json") for name in names)
    assert "agentgym/assets/prompts/text_agent.txt" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[agentgym.envs]" in text and "textworld = agentgym.envs.textworld:register_envs" in text
    assert all(name.startswith(("agentgym/", "agentgym-")) for name in names), "everything lands under agentgym/"


def test_installed_wheel_runs(wheel, tmp_path):
    zipfile.ZipFile(wheel).extractall(tmp_path)
    code = ("import agentgym, agentgym.envs.textworld.env as e, sys; "
            "assert agentgym.__file__.startswith(sys.argv[1]) and e.__file__.startswith(sys.argv[1]); "
            "env = agentgym.make('agentgym/TextWorld-CoinCollector-v0', split='test'); "
            "obs, info = env.reset(seed=0); env.close(); print(info['task_id'])")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(pathlib.Path.home())})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("coin_collector-")
