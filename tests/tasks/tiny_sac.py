"""A SAC configuration small enough to train, save and resume in seconds (tests only)."""

from tasks.forge.sac import SACConfig


def tiny_sac(**overrides) -> SACConfig:
    """300 env steps, 32-wide networks, a checkpoint every 100 steps, a full save every 200."""
    cfg = dict(
        env_id="Hopper-v5",
        total_steps=300,
        learning_starts=100,
        hidden=32,
        batch_size=32,
        checkpoint_every=100,
        save_every=200,
        eval_episodes=2,
    )
    return SACConfig(**{**cfg, **overrides})
