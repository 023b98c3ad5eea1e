"""agentgym: multi-turn reinforcement learning for LLM agents.

>>> import agentgym
>>> env = agentgym.make("agentgym/TextWorld-CoinCollector-v0", split="test")
>>> observation, info = env.reset(seed=0)
>>> observation, reward, terminated, truncated, info = env.step("go north")
"""

import importlib.metadata

from agentgym.checker import check_env
from agentgym.contract import SPLITS, EngineCrashed, Frame, Task, TextEnv, UnicodeText, state_key
from agentgym.policies import Generation, Policy, PolicyRequest, list_policies, make_policy, register_policy
from agentgym.prompting import ActionParser, PromptTemplate
from agentgym.records import Trajectory, Turn, read_jsonl, write_jsonl
from agentgym.registry import list_envs, make, register, spec
from agentgym.rollout import EnvPool, EpisodeSpec, RolloutEngine

__version__ = importlib.metadata.version("agentgym")

__all__ = [
    "SPLITS", "ActionParser", "EngineCrashed", "EnvPool", "EpisodeSpec", "Frame", "Generation", "Policy", "PolicyRequest",
    "PromptTemplate", "RolloutEngine", "Task", "TextEnv", "Trajectory", "Turn", "UnicodeText", "check_env",
    "list_envs", "list_policies", "make", "make_policy", "read_jsonl", "register", "register_policy", "spec",
    "state_key", "write_jsonl",
]
