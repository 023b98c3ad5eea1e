"""agentgym: multi-turn reinforcement learning for LLM agents.

>>> import agentgym
>>> env = agentgym.make("agentgym/TextWorld-CoinCollector-v0", split="test")
>>> observation, info = env.reset(seed=0)
>>> observation, reward, terminated, truncated, info = env.step("go north")
"""

import importlib.metadata

from agentgym.checker import check_env
from agentgym.contract import SPLITS, EngineCrashed, Frame, Task, TextEnv, UnicodeText, state_key
from agentgym.multiagent import (
    MultiAgentRollout,
    check_multiagent_env,
    list_multiagent_envs,
    make_multiagent,
    register_multiagent,
)
from agentgym.policies import Generation, Policy, PolicyRequest, list_policies, make_policy, register_policy
from agentgym.prompting import ActionParser, PromptTemplate
from agentgym.records import Trajectory, Turn, read_jsonl, write_jsonl
from agentgym.registry import list_envs, make, register, spec
from agentgym.rollout import EnvPool, EpisodeSpec, RolloutEngine

__version__ = importlib.metadata.version("agentgym")

__all__ = [
    "SPLITS", "ActionParser", "check_env", "check_multiagent_env", "EngineCrashed", "EnvPool",
    "EpisodeSpec", "Frame", "Generation", "list_envs", "list_multiagent_envs", "list_policies", "make",
    "make_multiagent", "make_policy", "MultiAgentRollout", "Policy", "PolicyRequest", "PromptTemplate",
    "register_multiagent",
    "read_jsonl", "register", "register_policy", "RolloutEngine", "spec", "state_key", "Task", "TextEnv",
    "Trajectory", "Turn", "UnicodeText", "write_jsonl",
]
