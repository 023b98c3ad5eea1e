"""``agentgym serve-env``: any registered env id behind openenv-core's server.

openenv-core's :class:`~openenv.core.env_server.http_server.HTTPEnvServer` does the protocol: the
WebSocket sessions at ``/ws`` (each connection owns one env, made, stepped and closed on the
session's own thread, so Playwright's and the JVM's thread rules hold), ``/schema``, ``/health``,
the session cap (``CAPACITY_REACHED`` past it, never a queue) and the idle-session reaper.

What this module adds around it:

* :class:`AgentgymEnvironment`, the OpenEnv ``Environment`` over one agentgym env. Reset takes
  ``seed``, ``task_id``, ``split`` (one of the served splits) and ``episode_id``; an action whose
  ``metadata`` is ``{"query": "expert_action"}`` returns the expert's next action without acting.
* HTTP sessions. OpenEnv's own ``/reset`` and ``/step`` make a throwaway env per request, which cannot
  play a multi-turn episode; here ``POST /reset`` without a ``session_id`` opens a session (its id
  comes back in the reply) and ``/reset``, ``/step``, ``GET /state`` and ``POST /close`` take that id.
  HTTP and WebSocket sessions share the cap and the reaper.
* ``GET /agentgym/info`` (id, splits, turn budget, image shape), ``GET /agentgym/tasks?split=``
  (ids and instructions only: never a task's answer or payload) and ``GET /agentgym/sessions``.
* An API key (``Authorization: Bearer KEY`` on every request and WebSocket handshake but
  ``/health``), a request-body and WebSocket-message size limit, and a shutdown that closes every
  session and then ends any engine process still running, so SIGTERM leaves no JVM or Chromium.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import psutil
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from openenv.core.env_server.exceptions import EnvironmentFactoryError, SessionCapacityError
from openenv.core.env_server.http_server import HTTPEnvServer
from openenv.core.env_server.interfaces import Environment
from openenv.core.env_server.types import ConcurrencyConfig, EnvironmentMetadata, ServerMode
from pydantic import ValidationError
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.websockets import WebSocketDisconnect

from agentgym.envserver.protocol import (
    EXPERT_QUERY,
    TextAction,
    TextObservation,
    TextState,
    encode_image,
    jsonable,
)
from agentgym.registry import make, spec

DEFAULT_MAX_BODY = 1 << 20
"""Largest request body and WebSocket message the server reads (1 MiB: actions are short text)."""

RESET_OPTIONS = ("seed", "episode_id", "task_id", "split")


class SessionClosed(RuntimeError):
    """A call on a session that was closed (by its client, or by the reaper after the idle timeout)."""


@dataclass(frozen=True)
class ServedEnv:
    """What a server serves: an env id, the splits sessions may play (the first is the default) and the
    constructor arguments every session's env gets."""

    env_id: str
    splits: tuple[str, ...]
    env_kwargs: dict[str, Any] = field(default_factory=dict)


class AgentgymEnvironment(Environment[TextAction, TextObservation, TextState]):
    """One agentgym env as an OpenEnv ``Environment``: one per session, made at the first reset on the
    split it asks for (made again if a later reset asks for another served split)."""

    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(self, served: ServedEnv):
        super().__init__()
        self.served = served
        self.env: gym.Env | None = None
        self.closed = False
        self._state = TextState(env_id=served.env_id, split=served.splits[0])

    def _env_on(self, split: str) -> gym.Env:
        if self.closed:
            raise SessionClosed("This session is closed (by its client, or after the server's idle timeout); "
                                "open a new one.")
        if split not in self.served.splits:
            raise ValueError(f"This server serves {self.served.env_id} on the split(s) "
                             f"{', '.join(self.served.splits)}, not {split!r}.")
        if self.env is None or self.env.unwrapped.split != split:
            if self.env is not None:
                self.env.close()
                self.env = None
            self.env = make(self.served.env_id, split=split, **self.served.env_kwargs)
        return self.env

    def reset(self, seed: int | None = None, episode_id: str | None = None, task_id: str | None = None,
              split: str | None = None, **unknown: Any) -> TextObservation:
        if unknown:
            raise ValueError(f"Unknown reset option(s) {', '.join(map(repr, sorted(unknown)))}; a reset takes "
                             f"{', '.join(RESET_OPTIONS)}.")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"The reset seed must be an integer, not {seed!r}.")
        env = self._env_on(split or self._state.split)
        observation, info = env.reset(seed=seed, options=None if task_id is None else {"task_id": task_id})
        self._state = TextState(episode_id=episode_id or uuid.uuid4().hex, env_id=self.served.env_id,
                                split=env.unwrapped.split, task_id=info["task_id"])
        return _observation(observation, 0.0, False, False, info)

    def step(self, action: TextAction, timeout_s: float | None = None, **kwargs: Any) -> TextObservation:
        if self.env is None or self.closed:
            self._env_on(self._state.split)  # raises SessionClosed when closed
            raise gym.error.ResetNeeded("Reset the session before stepping it.")
        if action.metadata.get("query") == EXPERT_QUERY:
            return TextObservation(text="(the expert's next action)",
                                   info={"expert_action": self.env.unwrapped.expert_action()})
        observation, reward, terminated, truncated, info = self.env.step(action.action)
        self._state.step_count += 1
        self._state.turn = info["turn"]
        self._state.episode_over = terminated or truncated
        return _observation(observation, reward, terminated, truncated, info)

    @property
    def state(self) -> TextState:
        return self._state

    def get_metadata(self) -> EnvironmentMetadata:
        return _metadata(self.served.env_id)

    def close(self) -> None:
        self.closed = True
        env, self.env = self.env, None
        if env is not None:
            env.close()


def _observation(observation: dict, reward: float, terminated: bool, truncated: bool,
                 info: dict) -> TextObservation:
    return TextObservation(
        text=observation["text"], admissible_actions=list(observation["admissible_actions"]),
        state_key=observation["state_key"], image=encode_image(observation.get("image")), info=jsonable(info),
        terminated=terminated, truncated=truncated, done=terminated or truncated, reward=float(reward))


def _metadata(env_id: str) -> EnvironmentMetadata:
    import importlib.metadata

    try:
        version = importlib.metadata.version("agentgym")
    except importlib.metadata.PackageNotFoundError:
        version = None
    return EnvironmentMetadata(name=env_id, description=spec(env_id).description or env_id, version=version,
                               author="agentgym")


def catalog(env_id: str, splits: tuple[str, ...] | None, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """What clients need before they play: the served splits, the turn budget, the image shape and
    every served split's tasks (id, split, instruction; never a task's answer or payload). Read from one
    env made on a thread of its own and closed (an env starts no engine before its first reset)."""

    def read() -> dict[str, Any]:
        env = make(env_id, split=spec(env_id).splits[0], **env_kwargs)
        try:
            base = env.unwrapped
            served = tuple(splits or base.splits)
            unknown = [split for split in served if split not in base.splits]
            if unknown:
                raise ValueError(f"{env_id} has no split(s) {', '.join(unknown)}; its splits are "
                                 f"{', '.join(base.splits)}.")
            return {
                "env_id": env_id, "splits": list(served), "max_turns": int(base.max_turns),
                "image_shape": list(base.image_shape) if base.image_shape else None,
                "admissible_is_complete": bool(base.admissible_is_complete),
                "description": spec(env_id).description,
                "tasks": {split: [{"id": task.id, "split": task.split, "instruction": task.instruction}
                                  for task in base.load_tasks(split)] for split in served},
            }
        finally:
            env.close()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="agentgym-catalog") as executor:
        return executor.submit(read).result()


def _error(status: int, message: str, code: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"message": message, "code": code}})


class AgentgymEnvServer(HTTPEnvServer):
    """openenv-core's server for one agentgym env id, with HTTP sessions and the agentgym routes."""

    def __init__(self, served: ServedEnv, info: dict[str, Any], *, max_sessions: int = 16,
                 idle_timeout: float | None = 300.0):
        super().__init__(functools.partial(AgentgymEnvironment, served), TextAction, TextObservation,
                         concurrency_config=ConcurrencyConfig(max_concurrent_envs=max_sessions,
                                                              session_timeout=idle_timeout))
        self.served, self.info = served, info
        self._http_sessions: set[str] = set()

    async def _destroy_session(self, session_id: str) -> None:
        self._http_sessions.discard(session_id)
        await super()._destroy_session(session_id)

    async def close_all_sessions(self, timeout: float = 20.0) -> None:
        """Close every session's env (the shutdown hook), waiting at most ``timeout`` seconds for envs busy
        in a long call; :func:`serve` then ends whatever engine process is left."""
        closing = [self._destroy_session(session_id) for session_id in list(self._sessions)]
        if closing:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), timeout)
        self._executor.shutdown(wait=False)

    def _http_session(self, session_id: Any) -> str:
        if not isinstance(session_id, str) or session_id not in self._http_sessions:
            raise KeyError(f"Unknown or closed session {session_id!r}: it was closed, reaped after the idle timeout "
                           "or never existed. POST /reset without a session_id opens a new one.")
        if self._sessions.get(session_id) is None:
            raise KeyError(f"Session {session_id!r} is not ready yet.")
        return session_id

    async def _call(self, session_id: str, method: str, *args: Any, **kwargs: Any) -> JSONResponse | dict:
        env = self._sessions.get(session_id)
        if env is None:  # reaped or closed since the request came in
            return _error(404, f"Session {session_id!r} was just closed.", "UNKNOWN_SESSION")
        try:
            observation = await self._run_in_session_executor(session_id, getattr(env, method), *args, **kwargs)
        except SessionClosed as error:
            return _error(410, str(error), "SESSION_CLOSED")
        except gym.error.ResetNeeded as error:
            return _error(409, str(error), "RESET_NEEDED")
        except ValueError as error:
            return _error(400, str(error), "INVALID_REQUEST")
        except Exception as error:  # noqa: BLE001 - the client gets the message; the server keeps serving
            return _error(500, f"{type(error).__name__}: {error}", "EXECUTION_ERROR")
        self._update_session_activity(session_id, increment_step=method == "step")
        return {"session_id": session_id, "observation": observation.model_dump(exclude={"reward", "done", "metadata"}),
                "reward": observation.reward, "done": observation.done}

    def register_agentgym_routes(self, app: FastAPI) -> None:
        """The session-aware ``/reset``, ``/step``, ``/state`` and ``/close``, the agentgym routes, and
        ``/metadata`` and ``/mcp`` answered without making an env. Registered before openenv-core's
        routes, so these win where the paths are the same."""

        async def body_of(request: Request) -> dict[str, Any]:
            try:
                body = json.loads(await request.body() or b"{}")
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise ValueError(f"The request body is not JSON: {error}.") from None
            if not isinstance(body, dict):
                raise TypeError("The request body must be a JSON object.")
            return body

        @app.post("/reset", tags=["Environment Control"], summary="Open an HTTP session or reset one")
        async def reset(request: Request):
            try:
                body = await body_of(request)
            except (ValueError, TypeError) as error:
                return _error(400, str(error), "INVALID_JSON")
            session_id = body.pop("session_id", None)
            if session_id is None:
                try:
                    session_id, _ = await self._create_session()
                except SessionCapacityError as error:
                    return _error(503, f"{error} Close a session or retry later.", "CAPACITY_REACHED")
                except EnvironmentFactoryError as error:
                    return _error(500, str(error), "FACTORY_ERROR")
                self._http_sessions.add(session_id)
            else:
                try:
                    self._http_session(session_id)
                except KeyError as error:
                    return _error(404, error.args[0], "UNKNOWN_SESSION")
            return await self._call(session_id, "reset", **body)

        @app.post("/step", tags=["Environment Control"], summary="Step an HTTP session")
        async def step(request: Request):
            try:
                body = await body_of(request)
                session_id = self._http_session(body.get("session_id"))
            except (ValueError, TypeError) as error:
                return _error(400, str(error), "INVALID_JSON")
            except KeyError as error:
                return _error(404, error.args[0], "UNKNOWN_SESSION")
            action = body.get("action")
            try:
                action = TextAction.model_validate({"action": action} if isinstance(action, str) else action)
            except ValidationError as error:
                return JSONResponse(status_code=422, content={"error": {
                    "message": 'The action must be {"action": "<text>"}.', "code": "VALIDATION_ERROR",
                    "errors": jsonable(error.errors(include_url=False, include_context=False))}})
            return await self._call(session_id, "step", action)

        @app.get("/state", tags=["State Management"], summary="The state of an HTTP session")
        async def state(session_id: str):
            try:
                env = self._sessions[self._http_session(session_id)]
            except KeyError as error:
                return _error(404, error.args[0], "UNKNOWN_SESSION")
            return env.state.model_dump()

        @app.post("/close", tags=["Environment Control"], summary="Close an HTTP session and free its env")
        async def close(request: Request):
            try:
                session_id = self._http_session((await body_of(request)).get("session_id"))
            except (ValueError, TypeError) as error:
                return _error(400, str(error), "INVALID_JSON")
            except KeyError as error:
                return _error(404, error.args[0], "UNKNOWN_SESSION")
            await self._destroy_session(session_id)
            return {"session_id": session_id, "closed": True}

        @app.get("/metadata", tags=["Environment Info"])
        async def metadata():
            return _metadata(self.served.env_id)

        @app.post("/mcp", tags=["Environment Info"])
        async def mcp():
            return {"jsonrpc": "2.0", "id": None,
                    "error": {"code": -32601, "message": "agentgym environments expose no MCP tools."}}

        @app.get("/agentgym/info", tags=["Environment Info"])
        async def info():
            return {key: value for key, value in self.info.items() if key != "tasks"}

        @app.get("/agentgym/tasks", tags=["Environment Info"])
        async def tasks(split: str):
            if split not in self.info["tasks"]:
                return _error(404, f"This server serves the split(s) {', '.join(self.served.splits)}, not {split!r}.",
                              "UNKNOWN_SPLIT")
            return self.info["tasks"][split]

        @app.get("/agentgym/sessions", tags=["Health"])
        async def sessions():
            now = time.time()
            return {"active": self.active_sessions, "max": self.max_concurrent_envs,
                    "http": len(self._http_sessions),
                    "sessions": [{"id": sid, "steps": item.step_count, "idle_s": round(now - item.last_activity_at, 3)}
                                 for sid, item in list(self._session_info.items())]}


class APIKeyMiddleware:
    """Refuse every HTTP request and WebSocket handshake without ``Authorization: Bearer KEY`` (bar
    ``/health``): HTTP with 401, a WebSocket with an OpenEnv error message and close code 1008."""

    OPEN_PATHS = ("/health",)

    def __init__(self, app, api_key: str):
        self.app, self.expected = app, f"Bearer {api_key}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.OPEN_PATHS:
            return await self.app(scope, receive, send)
        if dict(scope["headers"]).get(b"authorization") == self.expected:
            return await self.app(scope, receive, send)
        message = "Missing or wrong API key (send the header Authorization: Bearer <key>)."
        if scope["type"] == "http":
            return await _error(401, message, "UNAUTHORIZED")(scope, receive, send)
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps({"type": "error", "data": {
            "message": message, "code": "UNAUTHORIZED"}})})
        await send({"type": "websocket.close", "code": 1008, "reason": "unauthorized"})


class ClosedWebSocketGuard:
    """openenv-core's ``/ws`` handler closes the socket after the session ends and catches only
    ``RuntimeError``; when the client closed first, Starlette raises ``WebSocketDisconnect`` there and
    uvicorn logs a traceback for every session. The session is already cleaned up: end quietly."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            return await self.app(scope, receive, send)
        try:
            await self.app(scope, receive, send)
        except WebSocketDisconnect:
            pass


def create_app(env_id: str, *, splits: tuple[str, ...] | None = None, env_kwargs: dict[str, Any] | None = None,
               api_key: str | None = None, max_sessions: int = 16, idle_timeout: float | None = 300.0,
               max_body: int = DEFAULT_MAX_BODY) -> FastAPI:
    """The FastAPI app serving ``env_id``; :attr:`FastAPI.state.env_server` is its :class:`AgentgymEnvServer`."""
    env_kwargs = dict(env_kwargs or {})
    info = catalog(env_id, splits, env_kwargs)
    served = ServedEnv(env_id, tuple(info["splits"]), env_kwargs)
    server = AgentgymEnvServer(served, info, max_sessions=max_sessions, idle_timeout=idle_timeout)
    app = FastAPI(title=f"agentgym env server: {env_id}",
                  description="An agentgym environment behind the OpenEnv protocol (openenv-core).")
    server.register_agentgym_routes(app)
    server.register_routes(app, mode=ServerMode.PRODUCTION)  # /ws, /schema, /health; /reset etc. are ours
    app.router.on_shutdown.append(server.close_all_sessions)
    app.add_middleware(RequestBodyLimitMiddleware, max_body_size=max_body)
    app.add_middleware(ClosedWebSocketGuard)
    if api_key:
        app.add_middleware(APIKeyMiddleware, api_key=api_key)
    app.state.env_server = server
    return app


def end_engine_processes(timeout: float = 10.0) -> list[int]:
    """Terminate, then kill, every child process still running (a JVM or a browser whose env did not
    close in time); return their pids."""
    children = psutil.Process().children(recursive=True)
    for child in children:
        try:
            child.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(children, timeout=timeout)
    for child in alive:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=timeout)
    return [child.pid for child in children]


class _Stopped(Exception):
    """SIGTERM, after uvicorn's graceful shutdown."""


def _stopped(signum, frame) -> None:
    raise _Stopped


def serve(env_id: str, *, splits: tuple[str, ...] | None = None, env_kwargs: dict[str, Any] | None = None,
          host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None, max_sessions: int = 16,
          idle_timeout: float | None = 300.0, max_body: int = DEFAULT_MAX_BODY) -> None:
    """Serve ``env_id`` until SIGINT or SIGTERM, then close every session and end leftover engines."""
    import uvicorn

    app = create_app(env_id, splits=splits, env_kwargs=env_kwargs, api_key=api_key, max_sessions=max_sessions,
                     idle_timeout=idle_timeout, max_body=max_body)
    info = app.state.env_server.info
    print(f"Serving {env_id} (splits {', '.join(info['splits'])}; at most {max_sessions} sessions) on "
          f"http://{host}:{port} (WebSocket ws://{host}:{port}/ws)", flush=True)
    # uvicorn shuts down on SIGTERM, then raises the signal again for the previous handler: this one lets
    # the sweep below run instead of the process dying there.
    signal.signal(signal.SIGTERM, _stopped)
    try:
        uvicorn.run(app, host=host, port=port, log_level=os.environ.get("AGENTGYM_SERVER_LOG", "warning"),
                    ws_max_size=max_body, timeout_graceful_shutdown=10)
    except _Stopped:
        pass
    finally:
        leftovers = end_engine_processes()
        if leftovers:
            print(f"Ended {len(leftovers)} engine process(es) that outlived their env: {leftovers}", flush=True)
    deadline = time.monotonic() + 5
    for thread in [t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon]:
        thread.join(max(0.0, deadline - time.monotonic()))
    busy = [t.name for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon]
    if busy:  # a session thread still inside a long env call (its engine is gone): do not wait for it
        print(f"Exiting with {len(busy)} session thread(s) still busy.", flush=True)
        sys.stdout.flush()
        os._exit(0)


