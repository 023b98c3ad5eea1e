"""What an agentgym env looks like on the wire: OpenEnv ``Action``, ``Observation`` and ``State`` models.

The models subclass openenv-core's own, so ``/schema`` describes them and any OpenEnv client can read
them. An observation carries the contract's observation (``text``, ``admissible_actions``,
``state_key``, the ``image`` as a base64 PNG) and the step's ``info`` (the contract keys
``task_id``, ``split``, ``won``, ``invalid_action``, ``turn``, ``instruction`` on reset, and the
family's extras), with Gymnasium's ``terminated``/``truncated`` beside OpenEnv's ``done``. OpenEnv's
serializer drops ``metadata``, so nothing travels there.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy as np
from openenv.core.env_server.types import Action, Observation, State
from pydantic import Field

EXPERT_QUERY = "expert_action"
"""``metadata={"query": EXPERT_QUERY}`` on a step asks for the expert's next action instead of acting
(it runs on the session's own thread, where the engine lives; the state message does not)."""


class TextAction(Action):
    """One text action, as an agentgym env takes it."""

    action: str = Field(..., max_length=1 << 16, description="The command, e.g. 'go north' or 'click[3]'.")


class TextObservation(Observation):
    """An agentgym observation with the step's info and Gymnasium's end flags."""

    text: str = Field("", description="What the agent reads this turn.")
    admissible_actions: list[str] = Field(default_factory=list,
                                          description="Actions the engine accepts now (empty: it cannot list them).")
    state_key: str = Field("", description="A stable hash of the state without history.")
    image: str | None = Field(None, description="The rendered screen as a base64 PNG, for families that render one.")
    info: dict[str, Any] = Field(default_factory=dict, description="The step's info (contract keys and extras).")
    terminated: bool = Field(False, description="The engine ended the episode (won or lost).")
    truncated: bool = Field(False, description="The turn budget ran out or the engine crashed.")


class TextState(State):
    """The session's episode: which env, split and task, and how far it went."""

    env_id: str = ""
    split: str = ""
    task_id: str | None = None
    turn: int = 0
    episode_over: bool = False


def encode_image(image: np.ndarray | None) -> str | None:
    """An RGB array as a base64 PNG (lossless, so a remote episode sees exactly the local pixels)."""
    if image is None:
        return None
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG", compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_image(data: str | None) -> np.ndarray | None:
    """The RGB array of a base64 PNG from :func:`encode_image`."""
    if data is None:
        return None
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(data))) as picture:
        return np.array(picture.convert("RGB"), dtype=np.uint8)


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars and arrays, tuples and sets made JSON-ready; anything else that JSON
    cannot hold becomes its ``repr`` (an info extra is for reading, not for round-tripping objects)."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(item) for item in value]
    return repr(value)
