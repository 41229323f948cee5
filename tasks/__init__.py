"""Task registry, data sources and forges."""

from tasks import d4rl_envs  # noqa: F401  registers the envs in the dynamics of D4RL's data
