"""agentgym envs over the network, through the OpenEnv protocol (openenv-core).

* :mod:`agentgym.envserver.server` — ``agentgym serve-env``: any registered id behind openenv-core's
  server (WebSocket and HTTP sessions, a session cap, idle reaping, an API key, clean shutdown).
* :mod:`agentgym.envserver.client` — ``agentgym.make("openenv:http://HOST:PORT")``: a session of an
  OpenEnv server as an agentgym env.
* :mod:`agentgym.envserver.protocol` — the Action, Observation and State models on the wire.

Needs the ``server`` extra (``pip install 'agentgym[server]'``); nothing here is imported until used.
"""
