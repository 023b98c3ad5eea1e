"""agentgym environments inside other projects' trainers.

* :mod:`agentgym.integrations.trl` — TRL's ``GRPOTrainer`` on any agentgym id (``environment_factory``);
  needs the ``trl`` extra.
"""
