"""Trainers that learn from agentgym's turn records (GRPO/PPO, EPO, GiGPO, ...).

Trainers meet environments only through :mod:`agentgym.records`; they never import an env family.
"""
