"""Remote envs: ``agentgym.make("openenv:http://HOST:PORT")`` plays a session of an OpenEnv server.

:class:`RemoteEnv` is a :class:`~agentgym.contract.TextEnv` whose engine is a server session, so the
base class's contract (info keys, turn budget, invalid turns) holds exactly as in-process, and
rollouts, evaluation and the trainers use it unchanged. It talks over openenv-core's own WebSocket
client (``transport="ws"``, the default) or over the server's HTTP sessions (``transport="http"``,
agentgym servers only).

Against an ``agentgym serve-env`` server the remote env is the served env: the same tasks, the same
seeded task choice, the same observations, rewards and feedback for invalid actions (the server's env
judges every non-empty action), the expert's actions for the oracle policy. Against any other OpenEnv
server it adapts what it finds: the observation's ``text`` field (or its only text field, or all its
fields as JSON) is the text, a one-text-field action schema takes the action as that field (otherwise
the action is a JSON object of the schema), OpenEnv's ``done`` ends the episode, and the env has one
task, ``default``, on the ``train`` split; there is no expert and no admissible list, so such an env
cannot pass ``check_env``'s invalid-action rules (it has no invalid actions).

The API key comes from ``api_key=`` or the ``AGENTGYM_ENV_API_KEY`` environment variable (which the
rollout engine's ``spec`` look-up also uses).
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

import httpx

from agentgym.contract import INFO_KEYS, EngineCrashed, Frame, Task, TextEnv, state_key
from agentgym.envserver.protocol import EXPERT_QUERY, decode_image
from agentgym.registry import EnvSpec

PREFIX = "openenv:"
API_KEY_ENV = "AGENTGYM_ENV_API_KEY"
TRANSPORTS = ("ws", "http")

_SPECS: dict[str, EnvSpec] = {}


class RemoteEnvError(RuntimeError):
    """The server refused or failed a call; the message is the server's."""


class SessionLost(EngineCrashed):
    """The server no longer has this env's session (reaped after its idle timeout, or the server restarted).
    To :class:`~agentgym.contract.TextEnv` it is a crashed engine: the episode is truncated, and a reset
    opens a new session."""


def server_url(env_id_or_url: str) -> str:
    """The server's HTTP base URL from ``openenv:URL`` or a bare URL (``ws://`` becomes ``http://``)."""
    url = env_id_or_url.removeprefix(PREFIX).rstrip("/")
    for old, new in (("ws://", "http://"), ("wss://", "https://")):
        if url.startswith(old):
            url = new + url[len(old):]
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"A remote env id is openenv:http://HOST:PORT, not {env_id_or_url!r}.")
    return url


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _get(http: httpx.Client, path: str, **params: Any) -> Any:
    """GET ``path``; ``None`` on 404; a clear error when the server is unreachable or refuses the key."""
    try:
        response = http.get(path, params=params or None)
    except httpx.TransportError as error:
        raise ConnectionError(f"Cannot reach the env server {http.base_url} ({error}). Is it running? Start one "
                              "with `agentgym serve-env ENV_ID --port PORT`.") from error
    if response.status_code == 404:
        return None
    _raise_for(response)
    return response.json()


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        error = response.json().get("error") or {}
        message = error.get("message") or response.text
    except (ValueError, AttributeError):
        message = response.text
    if response.status_code == 401:
        raise PermissionError(f"The env server refused the API key: {message} Pass api_key= or set {API_KEY_ENV}.")
    raise RemoteEnvError(f"The env server answered {response.status_code}: {message}")


def server_info(url: str, api_key: str | None = None, timeout: float = 30.0) -> dict[str, Any] | None:
    """An agentgym server's ``/agentgym/info``, or ``None`` for an OpenEnv server agentgym did not write."""
    with httpx.Client(base_url=server_url(url), headers=_headers(api_key), timeout=timeout) as http:
        return _get(http, "/agentgym/info")


def remote_spec(env_id: str) -> EnvSpec:
    """The spec of ``openenv:URL``: the served splits and turn budget, read once from the server."""
    if env_id not in _SPECS:
        info = server_info(env_id, os.environ.get(API_KEY_ENV))
        _SPECS[env_id] = EnvSpec(
            env_id, RemoteEnv, splits=tuple(info["splits"]) if info else ("train",),
            description=f"{info['env_id']} served at {server_url(env_id)}" if info else f"OpenEnv server {env_id}",
            kwargs={"url": server_url(env_id)}, concurrency="thread", max_turns=info["max_turns"] if info else None,
            module=__name__)
    return _SPECS[env_id]


def make_remote(env_id: str, split: str = "train", **kwargs: Any) -> RemoteEnv:
    """``agentgym.make`` for ``openenv:URL`` ids."""
    return RemoteEnv(server_url(env_id), split, **kwargs)


class _WebSocketSession:
    """One server session over openenv-core's WebSocket client (its sync wrapper)."""

    def __init__(self, url: str, api_key: str | None, timeout: float):
        from openenv.core.generic_client import GenericEnvClient
        from websockets.asyncio.client import connect

        class Client(GenericEnvClient):
            # openenv-core's connect() sends no headers; this one sends the API key with the handshake.
            async def connect(self):
                if self._ws is None:
                    try:
                        self._ws = await connect(self._ws_url, open_timeout=self._connect_timeout,
                                                 max_size=self._max_message_size, additional_headers=_headers(api_key))
                    except Exception as error:
                        raise ConnectionError(f"Cannot open a WebSocket session at {self._ws_url}: {error}") from error
                return self

        self.client = Client(base_url=url, connect_timeout_s=timeout, message_timeout_s=timeout).sync()
        self.client.connect()

    def _call(self, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        from websockets.exceptions import ConnectionClosed

        try:
            result = getattr(self.client, method)(*args, **kwargs)
        except ConnectionClosed as error:
            # A server that refuses a session (at capacity, a wrong key) says why, then closes: read it.
            reason = self._last_words()
            if reason is None:
                raise SessionLost(f"the server closed the session's connection ({error})") from None
            self._raise(reason)
        except RuntimeError as error:
            self._raise(str(error))
        return {"observation": result.observation, "reward": result.reward, "done": result.done}

    @staticmethod
    def _raise(message: str) -> None:
        if "UNAUTHORIZED" in message:
            raise PermissionError(f"{message} Pass api_key= or set {API_KEY_ENV}.") from None
        if "This session is closed" in message:
            raise SessionLost(message) from None
        raise RemoteEnvError(message) from None

    def _last_words(self) -> str | None:
        """The error message a closed connection left unread, if any."""
        import asyncio

        connection = self.client.async_client._ws
        if connection is None:
            return None
        try:
            reply = json.loads(self.client._run(asyncio.wait_for(connection.recv(), 1.0)))
        except Exception:  # noqa: BLE001 - nothing left to read
            return None
        if reply.get("type") != "error":
            return None
        data = reply.get("data") or {}
        return f"Server error: {data.get('message')} (code: {data.get('code')})"

    def reset(self, **options: Any) -> dict[str, Any]:
        return self._call("reset", **options)

    def step(self, action: dict[str, Any]) -> dict[str, Any]:
        return self._call("step", action)

    def close(self) -> None:
        self.client.close()


class _HTTPSession:
    """One server session over an agentgym server's HTTP session routes."""

    def __init__(self, http: httpx.Client):
        self.http, self.session_id = http, None

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self.http.post(path, json=body)
        except httpx.TransportError as error:
            raise ConnectionError(f"Lost the env server {self.http.base_url} ({error}).") from error
        if self.session_id is not None and response.status_code in (404, 410):  # reaped, or the server restarted
            self.session_id = None
            raise SessionLost(response.json().get("error", {}).get("message", response.text))
        _raise_for(response)
        return response.json()

    def reset(self, **options: Any) -> dict[str, Any]:
        reply = self._post("/reset", {**options, **({"session_id": self.session_id} if self.session_id else {})})
        self.session_id = reply["session_id"]
        return reply

    def step(self, action: dict[str, Any]) -> dict[str, Any]:
        return self._post("/step", {"session_id": self.session_id, "action": action})

    def close(self) -> None:
        if self.session_id is not None:
            try:
                self._post("/close", {"session_id": self.session_id})
            except (ConnectionError, RemoteEnvError, SessionLost):
                pass  # already gone (reaped, or the server stopped): nothing left to free
            self.session_id = None


class RemoteEnv(TextEnv):
    """A session of an OpenEnv server as an agentgym env.

    Arguments:
        url: the server, ``http://HOST:PORT`` (``agentgym.make("openenv:http://HOST:PORT")`` passes it).
        split: one of the splits the server serves (``agentgym serve-env --split``).
        max_turns: the turn budget; at most the served env's (default: the served env's).
        api_key: the server's key (default: ``AGENTGYM_ENV_API_KEY``).
        transport: ``"ws"`` (openenv-core's WebSocket client) or ``"http"`` (the server's HTTP sessions;
            agentgym servers only).
        timeout: seconds to wait for the server on each call.

    The session opens at the first reset and closes with :meth:`close` (the server frees its env). A
    session the server lost (reaped after its idle timeout while the learner updated, or a restarted
    server) is a crashed engine to the contract: the episode in progress is truncated
    (``info["engine_crashed"]``) and the next reset opens a new session.
    """

    def __init__(self, url: str, split: str = "train", *, max_turns: int | None = None, api_key: str | None = None,
                 transport: str = "ws", timeout: float = 120.0, render_mode: str | None = None):
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, not {transport!r}.")
        self.url, self.transport, self.timeout = server_url(url), transport, timeout
        self._api_key = api_key or os.environ.get(API_KEY_ENV)
        self._http = httpx.Client(base_url=self.url, headers=_headers(self._api_key), timeout=timeout)
        self._session: _WebSocketSession | _HTTPSession | None = None
        self._seed: int | None = None
        self._action_field: str | None = "action"  # a foreign server's schema may name it otherwise
        try:
            self.info = _get(self._http, "/agentgym/info")
            if self.info is None:
                self._foreign_setup()
            else:
                self.splits = tuple(self.info["splits"])
                self.image_shape = tuple(self.info["image_shape"]) if self.info["image_shape"] else None
                self.admissible_is_complete = self.info["admissible_is_complete"]
            served_turns = self.info["max_turns"] if self.info else None
            if served_turns is not None and max_turns is not None and max_turns > served_turns:
                raise ValueError(f"max_turns={max_turns} is more than the served env's {served_turns}; restart the "
                                 f"server with --env-kwargs '{{\"max_turns\": {max_turns}}}'.")
            if split not in self.splits:
                raise ValueError(f"The env server at {self.url} serves the split(s) {', '.join(self.splits)}, not "
                                 f"{split!r} (agentgym serve-env --split chooses them).")
            if self.info is None and transport == "http":
                raise ValueError("transport='http' needs an agentgym server (OpenEnv's own HTTP routes keep no "
                                 "session); use transport='ws'.")
            super().__init__(split, max_turns=max_turns or served_turns, render_mode=render_mode)
        except BaseException:
            self._http.close()
            raise
        self._tasks: dict[str, list[Task]] = {}

    def _foreign_setup(self) -> None:
        """An OpenEnv server agentgym did not write: read its action schema and metadata."""
        schema = _get(self._http, "/schema") or {}
        metadata = _get(self._http, "/metadata") or {}
        action = schema.get("action") or {}
        fields = {name: prop for name, prop in (action.get("properties") or {}).items() if name != "metadata"}
        required = [name for name in action.get("required", []) if name in fields]
        texts = [name for name, prop in fields.items() if prop.get("type") == "string"]
        self._action_field = required[0] if len(required) == 1 and required[0] in texts else (
            texts[0] if len(fields) == 1 and texts else None)  # None: the action is a JSON object
        self._action_schema = fields
        self._instruction = (metadata.get("description") or metadata.get("name") or
                             f"Interact with the OpenEnv environment at {self.url}.")
        self.splits = ("train",)
        self.image_shape = None
        self.admissible_is_complete = False

    # ------------------------------------------------------------------ TextEnv hooks
    def load_tasks(self, split: str) -> list[Task]:
        if split not in self._tasks:
            if self.info is None:
                self._tasks[split] = [Task("default", split, self._instruction)]
            else:
                rows = _get(self._http, "/agentgym/tasks", split=split)
                if rows is None:
                    raise ValueError(f"The env server at {self.url} does not serve the split {split!r}.")
                self._tasks[split] = [Task(row["id"], row["split"], row["instruction"]) for row in rows]
        return self._tasks[split]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._seed = seed  # TextEnv.reset picks the task; the server gets the same seed with it
        return super().reset(seed=seed, options=options)

    def _admit(self, action: Any) -> tuple[str | None, str]:
        # Every non-empty text goes to the server, whose env judges it and words the feedback exactly as
        # the env does in-process; empty and non-text actions are refused here, as TextEnv does.
        if isinstance(action, str) and action.strip():
            return action, ""
        return super()._admit(action)

    def _open(self) -> _WebSocketSession | _HTTPSession:
        if self._session is None:
            self._session = (_WebSocketSession(self.url, self._api_key, self.timeout) if self.transport == "ws"
                             else _HTTPSession(self._http))
        return self._session

    def _call(self, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """A session call; a lost session is dropped and raised as a crashed engine (TextEnv truncates the
        episode, or on reset retries once, which opens a new session). Only a reset opens a session."""
        if self._session is None and method != "reset":
            raise SessionLost("This env's server session was lost; reset to open a new one.")
        try:
            return getattr(self._open(), method)(*args, **kwargs)
        except SessionLost:
            session, self._session = self._session, None
            if session is not None:
                with contextlib.suppress(Exception):
                    session.close()
            raise

    def _start(self, task: Task) -> Frame:
        options: dict[str, Any] = {} if self._seed is None else {"seed": self._seed}
        if self.info is not None:
            options.update(task_id=task.id, split=self.split)
        return self._frame(self._call("reset", **options))

    def _act(self, action: str) -> Frame:
        if self.info is None and self._action_field is None:
            try:
                payload = json.loads(action)
            except json.JSONDecodeError:
                payload = None
            if not isinstance(payload, dict):
                return self.invalid_frame(f"Invalid action: this environment takes a JSON object with the fields "
                                          f"{json.dumps(self._action_schema)}. Nothing happened.")
        else:
            payload = {self._action_field: action}
        return self._frame(self._call("step", payload))

    def expert_action(self) -> str | None:
        """The served env's expert action in the current state (``None`` on servers that are not agentgym's)."""
        if self.info is None or self._session is None or self.task is None:
            return None
        try:
            reply = self._call("step", {"action": "", "metadata": {"query": EXPERT_QUERY}})
        except SessionLost:
            return None
        return reply["observation"]["info"].get("expert_action")

    def _frame(self, reply: dict[str, Any]) -> Frame:
        observation = reply["observation"]
        if self.info is None:
            return self._foreign_frame(observation, reply)
        info = observation["info"]
        return Frame(
            text=observation["text"], admissible_actions=tuple(observation["admissible_actions"]),
            state_key=observation["state_key"], reward=float(reply["reward"] or 0.0),
            terminated=bool(observation["terminated"]), won=bool(info.get("won")),
            invalid=bool(info.get("invalid_action")), image=decode_image(observation.get("image")),
            info={key: value for key, value in info.items() if key not in INFO_KEYS})

    def _foreign_frame(self, observation: dict[str, Any], reply: dict[str, Any]) -> Frame:
        texts = [value for value in observation.values() if isinstance(value, str)]
        if isinstance(observation.get("text"), str):
            text = observation["text"]
        elif len(texts) == 1:
            text = texts[0]
        else:
            text = json.dumps(observation, sort_keys=True, default=str)
        listed = observation.get("admissible_actions") or observation.get("legal_actions") or ()
        admissible = tuple(listed) if all(isinstance(a, str) for a in listed) else ()
        return Frame(text=text or "(empty observation)", admissible_actions=admissible,
                     state_key=state_key(json.dumps(observation, sort_keys=True, default=str)),
                     reward=float(reply["reward"] or 0.0), terminated=bool(reply["done"]),
                     won=bool(observation.get("won", False)), info={"observation": observation})

    def close(self) -> None:
        session, self._session = self._session, None
        try:
            if session is not None:
                session.close()
        finally:
            self._http.close()
            super().close()
