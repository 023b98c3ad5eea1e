"""`agentgym serve-env` (openenv-core's server) and `openenv:` remote ids, against real servers on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest

import agentgym
from agentgym.checker import check_env
from agentgym.policies import make_policy
from agentgym.rollout import RolloutEngine

from conftest import COIN

pytest.importorskip("openenv.core")

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from agentgym.envserver.client import RemoteEnvError

KEY = "env-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
TWX_COIN = "agentgym/TWX-CoinCollector-v0"
MINIWOB = "agentgym/MiniWoB-ClickButton-v0"
IDLE = 8  # the shared server's idle timeout (s); its reaper looks every max(IDLE / 4, 5) s


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def env_server(env_id: str, *args: str, key: str | None = KEY, startup: float = 240):
    """``agentgym serve-env`` in a subprocess (its output in a file: an unread pipe would block it);
    yields (base URL, process); SIGTERM at the end, and a server that does not stop within a minute fails."""
    port = _free_port()
    command = [sys.executable, "-m", "agentgym.cli", "serve-env", env_id, "--port", str(port), *args]
    if key:
        command += ["--api-key", key]
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True)
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, process, startup, log)
        try:
            yield url, process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                    raise
            log.seek(0)
            output = log.read()
            assert "Traceback" not in output, output[-3000:]


def _wait_healthy(url: str, process: subprocess.Popen, startup: float, log) -> None:
    deadline = time.monotonic() + startup
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            log.seek(0)
            raise RuntimeError(f"the server did not start:\n{log.read()}")
        time.sleep(0.3)


def _sessions(url: str) -> dict:
    return httpx.get(f"{url}/agentgym/sessions", headers=AUTH, timeout=30).json()


def _wait_sessions(url: str, count: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while (state := _sessions(url))["active"] != count and time.monotonic() < deadline:
        time.sleep(0.25)
    return state


def _engines(pid: int) -> dict[str, int]:
    """Java and Chromium processes under the server process."""
    names = [child.name() for child in psutil.Process(pid).children(recursive=True)]
    return {"java": sum("java" in n for n in names), "chromium": sum("chrom" in n for n in names)}


def _episode(env, seed: int, policy_seed: int, turns: int = 6) -> list[tuple]:
    """A seeded episode: reset, then seeded picks among the admissible actions; what must match remotely."""
    import random

    rng = random.Random(policy_seed)
    observation, info = env.reset(seed=seed)
    trace = [(info["task_id"], observation["text"], tuple(observation["admissible_actions"]), observation["state_key"])]
    for _ in range(turns):
        actions = observation["admissible_actions"]
        action = actions[rng.randrange(len(actions))] if actions else "click[1]"
        observation, reward, terminated, truncated, info = env.step(action)
        trace.append((action, observation["text"], observation["state_key"], reward, terminated, truncated,
                      info["won"], info["invalid_action"], info["turn"]))
        if terminated or truncated:
            break
    return trace


@pytest.fixture(scope="module")
def coin_server():
    with env_server(COIN, "--max-sessions", "6", "--idle-timeout", str(IDLE)) as (url, process):
        os.environ["AGENTGYM_ENV_API_KEY"] = KEY  # the rollout engine's spec look-up reads it
        yield url, process
        os.environ.pop("AGENTGYM_ENV_API_KEY", None)


# ---------------------------------------------------------------------------------------------- contract and parity
@pytest.mark.parametrize("transport", ["ws", "http"])
def test_check_env_passes_and_episodes_match_in_process_ones(coin_server, transport):
    url, _ = coin_server
    remote = agentgym.make(f"openenv:{url}", split="test", transport=transport, api_key=KEY)
    check_env(remote)  # closes it
    remote = agentgym.make(f"openenv:{url}", split="dev", transport=transport, api_key=KEY)
    local = agentgym.make(COIN, split="dev")
    try:
        for seed in (0, 1):
            assert _episode(remote, seed, seed) == _episode(local, seed, seed)
        observation, info = remote.reset(seed=4)
        assert info["instruction"] and remote.unwrapped.expert_action() in observation["admissible_actions"]
        _, reward, _, _, info = remote.step(None)  # non-text: an invalid turn, refused before the network
        assert info["invalid_action"] and reward == 0
    finally:
        remote.close()
        local.close()
    assert _wait_sessions(url, 0, 10)["active"] == 0  # close() freed the server's env


def test_rollouts_eval_and_the_oracle_work_unchanged_on_a_remote_id(coin_server):
    url, _ = coin_server
    remote_id = f"openenv:{url}"
    assert agentgym.registry.spec(remote_id).splits == ("train", "dev", "test", "test_ood")
    assert agentgym.registry.max_turns(remote_id) == agentgym.registry.max_turns(COIN)
    assert agentgym.registry.max_turns(remote_id, {"max_turns": 1}) == 1
    results = {}
    for env_id in (COIN, remote_id):
        with RolloutEngine(env_id, "dev", num_envs=2) as engine:
            plan = engine.plan(num_tasks=2, group_size=2, seed=3, run_id="parity")
            random_runs = engine.run(make_policy("random", seed=3), plan)
            oracle_runs = engine.run(make_policy("oracle"), plan)
        results[env_id] = ([[(t.action, t.reward, t.next_state_key, t.prompt) for t in r.turns] for r in random_runs],
                           [r.won for r in oracle_runs])
    assert results[COIN] == results[remote_id]
    assert all(results[remote_id][1])  # the expert's actions travel: the oracle wins every game


@pytest.mark.slow  # ~2 min: one GRPO iteration of the tiny model with held-out evaluation before and after
def test_a_trainer_runs_unchanged_on_a_remote_id(coin_server, tmp_path):
    from agentgym.trainers.grpo import GRPOConfig, train

    url, _ = coin_server
    config = GRPOConfig(env_id=f"openenv:{url}", env_kwargs={"max_turns": 1}, task_filter="level1-",
                        eval_split="dev", model="tiny", lora_rank=0, choice_temperature=8.0, tasks_per_iteration=2,
                        group_size=2, num_envs=2, iterations=1, eval_every=0, eval_episodes=4, seed=0,
                        output_dir=str(tmp_path))
    result = train(config, progress=False)
    assert "eval_success_rate" in result["after"] and (tmp_path / "report.md").exists()


def test_a_wrong_split_or_a_too_long_budget_is_a_clear_error(coin_server):
    url, _ = coin_server
    with env_server(COIN, "--split", "dev", key=None) as (dev_url, _):
        with pytest.raises(ValueError, match="serves the split\\(s\\) dev, not 'train'"):
            agentgym.make(f"openenv:{dev_url}")
        assert agentgym.make(f"openenv:{dev_url}", split="dev").unwrapped.tasks
    with pytest.raises(ValueError, match="more than the served env's"):
        agentgym.make(f"openenv:{url}", api_key=KEY, max_turns=999)
    with pytest.raises(PermissionError, match="refused the API key"):
        agentgym.make(f"openenv:{url}", api_key="wrong")
    with pytest.raises(ConnectionError, match="Cannot reach the env server"):
        agentgym.make(f"openenv:http://127.0.0.1:{_free_port()}")


# ---------------------------------------------------------------------------------------------- hostile input
def test_hostile_input_gets_clear_errors_and_the_server_keeps_serving(coin_server):
    url, _ = coin_server
    healthy = agentgym.make(f"openenv:{url}", api_key=KEY)
    healthy.reset(seed=0)

    def still_serving():
        observation, _, _, _, info = healthy.step(healthy.unwrapped.expert_action() or "look")
        assert isinstance(observation["text"], str) and "task_id" in info
        healthy.reset(seed=0)

    http = httpx.Client(base_url=url, headers=AUTH, timeout=30)
    # Malformed JSON, over HTTP and over a WebSocket (the session survives it).
    reply = http.post("/reset", content=b"{not json", headers={"content-type": "application/json"})
    assert reply.status_code == 400 and "not JSON" in reply.json()["error"]["message"]
    with connect(f"ws://{url[7:]}/ws", additional_headers=AUTH) as ws:
        ws.send("{not json")
        assert json.loads(ws.recv(timeout=30))["data"]["code"] == "INVALID_JSON"
        ws.send(json.dumps({"type": "launch"}))
        assert json.loads(ws.recv(timeout=30))["data"]["code"] == "UNKNOWN_TYPE"
        ws.send(json.dumps({"type": "step", "data": {"action": "look"}}))
        assert "Reset the session" in json.loads(ws.recv(timeout=30))["data"]["message"]
        ws.send(json.dumps({"type": "reset", "data": {"seed": 1, "split": "nope"}}))
        assert "not 'nope'" in json.loads(ws.recv(timeout=30))["data"]["message"]
        ws.send(json.dumps({"type": "reset", "data": {"seed": 1, "lucky": True}}))
        assert "Unknown reset option(s) 'lucky'" in json.loads(ws.recv(timeout=30))["data"]["message"]
        ws.send(json.dumps({"type": "reset", "data": {"seed": 1}}))
        assert json.loads(ws.recv(timeout=60))["type"] == "observation"
        # A message over the size limit closes this connection (1009), not the server.
        ws.send(json.dumps({"type": "step", "data": {"action": "x" * (2 << 20)}}))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
        assert closed.value.rcvd.code == 1009
    still_serving()
    # A huge HTTP body: 413 before it is read whole.
    reply = http.post("/reset", content=b"{" + b" " * (3 << 20) + b"}", headers={"content-type": "application/json"})
    assert reply.status_code == 413
    # Unknown session ids, a wrong action shape, calls after close.
    assert http.post("/step", json={"session_id": "no-such", "action": {"action": "look"}}).status_code == 404
    assert http.get("/state", params={"session_id": "no-such"}).status_code == 404
    opened = http.post("/reset", json={"seed": 0, "split": "dev"}).json()
    session = opened["session_id"]
    assert opened["observation"]["info"]["split"] == "dev" and opened["observation"]["admissible_actions"]
    assert http.post("/step", json={"session_id": session, "action": {"act": 1}}).status_code == 422
    assert http.get("/state", params={"session_id": session}).json()["split"] == "dev"
    assert http.post("/close", json={"session_id": session}).json()["closed"] is True
    for reply in (http.post("/step", json={"session_id": session, "action": "look"}),
                  http.post("/close", json={"session_id": session}),
                  http.post("/reset", json={"session_id": session})):
        assert reply.status_code == 404 and "Unknown or closed session" in reply.json()["error"]["message"]
    # A wrong key: 401 over HTTP, an error message and close code 1008 over a WebSocket; /health stays open.
    wrong = {"Authorization": "Bearer nope"}
    assert httpx.post(f"{url}/reset", json={}, headers=wrong).status_code == 401
    assert httpx.get(f"{url}/schema").status_code == 401
    assert httpx.get(f"{url}/health").status_code == 200
    with connect(f"ws://{url[7:]}/ws", additional_headers=wrong) as ws:
        assert json.loads(ws.recv(timeout=30))["data"]["code"] == "UNAUTHORIZED"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
        assert closed.value.rcvd.code == 1008
    # openenv-core's MCP and metadata routes answer without making an env.
    assert http.post("/mcp", json={"jsonrpc": "2.0", "method": "tools/list", "id": 1}).json()["error"]["code"] == -32601
    assert http.get("/metadata").json()["name"] == COIN
    assert set(http.get("/schema").json()["observation"]["properties"]) >= {"text", "admissible_actions", "info"}
    still_serving()
    healthy.close()
    http.close()


def test_past_the_session_cap_a_clear_error_not_a_queue(coin_server):
    url, _ = coin_server
    envs = [agentgym.make(f"openenv:{url}", api_key=KEY, transport="http" if i % 2 else "ws") for i in range(6)]
    try:
        for env in envs:
            env.reset(seed=0)
        started = time.monotonic()
        reply = httpx.post(f"{url}/reset", json={}, headers=AUTH, timeout=30)
        assert reply.status_code == 503 and reply.json()["error"]["code"] == "CAPACITY_REACHED"
        extra = agentgym.make(f"openenv:{url}", api_key=KEY)
        with pytest.raises(RemoteEnvError, match="CAPACITY_REACHED"):
            extra.reset(seed=0)
        extra.close()
        assert time.monotonic() - started < 20  # refused at once
        envs.pop().close()
        assert _wait_sessions(url, 5, 10)["active"] == 5
        replacement = agentgym.make(f"openenv:{url}", api_key=KEY)
        replacement.reset(seed=0)
        envs.append(replacement)
    finally:
        for env in envs:
            env.close()


# ---------------------------------------------------------------------------------------------- soak and reaping
KILLED_CLIENT = textwrap.dedent("""
    import sys, time, agentgym
    url, key = sys.argv[1], sys.argv[2]
    envs = [agentgym.make("openenv:" + url, api_key=key, transport=t) for t in ("ws", "http")]
    for env in envs:
        env.reset(seed=0)
        env.step(env.unwrapped.expert_action())
    print("ready", flush=True)
    time.sleep(600)
""")


def _soak(url: str, pid: int, sessions: int) -> None:
    """Open, play and close ``sessions`` sessions (WebSocket and HTTP, 4 at a time) on four dev games
    (generated once, then cached); the server's RSS, threads and engine processes stay flat and no
    session is left."""
    server = psutil.Process(pid)
    tasks = [task.id for task in agentgym.make(COIN, split="dev").unwrapped.tasks[:4]]

    def play(index: int) -> None:
        env = agentgym.make(f"openenv:{url}", split="dev", api_key=KEY, transport="http" if index % 2 else "ws")
        try:
            observation, _ = env.reset(options={"task_id": tasks[index % len(tasks)]})
            for _ in range(3):
                observation, _, terminated, truncated, _ = env.step(observation["admissible_actions"][index % 2])
                if terminated or truncated:
                    break
        finally:
            env.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(play, range(8)))  # warm-up: caches, allocator pools
        baseline = (server.memory_info().rss, server.num_threads(), _engines(pid))
        list(pool.map(play, range(8, 8 + sessions)))
    assert _wait_sessions(url, 0, 15)["active"] == 0
    rss, threads, engines = server.memory_info().rss, server.num_threads(), _engines(pid)
    assert engines == baseline[2]
    assert threads <= baseline[1] + 2, (baseline[1], threads)
    assert rss < baseline[0] + 80 * 2**20, f"RSS grew from {baseline[0] >> 20} to {rss >> 20} MiB"


def test_soak_short_and_killed_clients_are_reaped(coin_server):
    url, process = coin_server
    _soak(url, process.pid, sessions=24)
    client = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, url, KEY], stdout=subprocess.PIPE, text=True)
    idle = {}
    try:
        assert client.stdout.readline().strip() == "ready"
        idle = {transport: agentgym.make(f"openenv:{url}", api_key=KEY, transport=transport)
                for transport in ("ws", "http")}
        for env in idle.values():
            env.reset(seed=0)
        assert _sessions(url)["active"] == 4
        client.kill()
        client.wait()
        # The killed WebSocket session ends with its connection; the others when idle past the timeout.
        assert _wait_sessions(url, 3, 10)["active"] == 3
        assert _wait_sessions(url, 0, IDLE + 15)["active"] == 0
        for env in idle.values():  # a reaped session: the episode is truncated, the next reset opens a new one
            _, reward, terminated, truncated, info = env.step("look")
            assert truncated and info["engine_crashed"] and reward == 0 and not terminated
            env.reset(seed=1)
            assert not env.step(env.unwrapped.expert_action())[4]["invalid_action"]
        assert _sessions(url)["active"] == 2
    finally:
        for env in idle.values():
            env.close()
        if client.poll() is None:
            client.kill()


@pytest.mark.slow
def test_soak_200_sessions(coin_server):
    url, process = coin_server
    _soak(url, process.pid, sessions=200)


# ---------------------------------------------------------------------------------------------- engines and SIGTERM
@pytest.mark.parametrize("env_id, engine", [(TWX_COIN, "java"), (MINIWOB, "chromium")])
def test_sigterm_closes_sessions_and_leaves_no_engine_process(env_id, engine):
    with env_server(env_id) as (url, process):
        remote = agentgym.make(f"openenv:{url}", api_key=KEY)
        http_env = agentgym.make(f"openenv:{url}", api_key=KEY, transport="http")
        for env in (remote, http_env):
            env.reset(seed=0)
            env.step(env.unwrapped.expert_action() or "click[1]")
        engines = [child for child in psutil.Process(process.pid).children(recursive=True)
                   if engine[:5] in child.name()]
        assert engines, f"no {engine} process under the server"
        http_env.close()  # one closed by its client: its engine goes at once
        time.sleep(1)
        assert sum(child.is_running() for child in engines) < len(engines)
        process.send_signal(signal.SIGTERM)  # the other is still open
        assert process.wait(timeout=60) == 0
        _, alive = psutil.wait_procs(engines, timeout=10)
        assert not alive, f"{engine} processes outlived the server: {[p.pid for p in alive]}"
        remote.close()  # the server is gone: closing the client still succeeds


# ---------------------------------------------------------------------------------------------- concurrency
@pytest.mark.slow
@pytest.mark.parametrize("env_id", [TWX_COIN, MINIWOB])
def test_16_sessions_at_once_match_in_process_runs(env_id):
    seeds = list(range(16))
    local = agentgym.make(env_id, split="dev")
    try:
        expected = [_episode(local, seed, seed) for seed in seeds]
    finally:
        local.close()
    with env_server(env_id, "--max-sessions", "16", startup=300) as (url, _):
        envs = [agentgym.make(f"openenv:{url}", split="dev", api_key=KEY) for _ in seeds]
        barrier = threading.Barrier(len(envs))

        def run(index: int) -> list[tuple]:
            barrier.wait()
            return _episode(envs[index], seeds[index], seeds[index])

        try:
            with ThreadPoolExecutor(max_workers=len(envs)) as pool:
                got = list(pool.map(run, range(len(envs))))
        finally:
            for env in envs:
                env.close()
        assert got == expected
        assert _wait_sessions(url, 0, 30)["active"] == 0


# ---------------------------------------------------------------------------------------------- foreign servers
def test_an_openenv_server_agentgym_did_not_write(tmp_path):
    """The echo environment openenv-core's own `openenv init` template generates, served by its own app."""
    made = subprocess.run([os.path.join(os.path.dirname(sys.executable), "openenv"), "init", "echo_env"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert made.returncode == 0, made.stderr
    port = _free_port()
    log = open(tmp_path / "server.log", "w+")  # noqa: SIM115 - the server writes it until the end
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "echo_env.server.app:app", "--port", str(port)],
                               cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, process, 240, log)
        env = agentgym.make(f"openenv:{url}")
        try:
            observation, info = env.reset(seed=0)
            assert "ready" in observation["text"] and info["task_id"] == "default" and info["instruction"]
            observation, reward, terminated, truncated, info = env.step("hello there")
            assert observation["text"] == "hello there" and reward == pytest.approx(1.1)
            assert not (terminated or truncated) and not info["invalid_action"] and info["turn"] == 1
            assert env.unwrapped.expert_action() is None
        finally:
            env.close()
        with RolloutEngine(f"openenv:{url}", "train", num_envs=1, env_kwargs={"max_turns": 2}) as engine:
            (trajectory,) = engine.run(make_policy("random", seed=0), engine.plan(num_tasks=1, seed=0))
        assert len(trajectory.turns) == 2
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        log.close()
