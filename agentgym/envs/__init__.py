"""Environment families. Each registers its ids through an ``agentgym.envs`` entry point."""
