"""Online-phase environments (:mod:`tasks.online_envs`): action chunks and exact snapshots."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.envs import make_env
from tasks.online_envs import (
    ActionChunk,
    SnapshotError,
    make_online_vector_env,
    restore_vector_env,
    snapshot_env,
)
from tasks.registry import get_task


def test_a_chunk_sums_its_rewards_and_stops_at_the_episode_end():
    env = ActionChunk(make_env(get_task("safe-pendulum")), act_steps=3)
    env.reset(seed=0)
    plain = make_env(get_task("safe-pendulum"))
    plain.reset(seed=0)
    chunk = np.array([[0.5], [-0.5], [1.0]], dtype=np.float32)
    obs, reward, _, _, info = env.step(chunk)
    rewards = [plain.step(a)[1] for a in chunk]
    assert info["steps"] == 3 and reward == pytest.approx(sum(rewards))
    assert np.array_equal(obs, plain.unwrapped._get_obs().astype(np.float32))
    bandit = ActionChunk(make_env(get_task("toy-bandit")), act_steps=4)
    bandit.reset(seed=0)
    *_, info = bandit.step(np.zeros((4, 2), dtype=np.float32))
    assert info["steps"] == 1  # the one-step episode ended: the rest of the chunk is dropped


@pytest.mark.parametrize("task", ["hopper-medium-v2", "safe-pendulum"])
def test_a_restored_vector_env_continues_exactly(task):
    """Mid-episode snapshots (MuJoCo and pure-python envs) continue bit for bit, resets included."""
    envs = make_online_vector_env(get_task(task), 2, act_steps=4)
    envs.reset(seed=[3, 4])
    rng = np.random.default_rng(0)
    shape = (2, *envs.single_action_space.shape)

    def run(vec, actions):
        out = []
        for a in actions:
            obs, reward, term, trunc, _ = vec.step(a)
            ended = term | trunc
            if ended.any():
                reset_obs, _ = vec.reset(options={"reset_mask": ended})
                obs = np.where(ended[:, None], reset_obs, obs)
            out.append((obs, reward))
        return out

    run(envs, rng.uniform(-1, 1, (5, *shape)).astype(np.float32))
    restored = restore_vector_env([snapshot_env(env) for env in envs.envs])
    actions = rng.uniform(-1, 1, (60, *shape)).astype(np.float32)
    for (o1, r1), (o2, r2) in zip(run(envs, actions), run(restored, actions), strict=True):
        assert np.array_equal(o1, o2) and np.array_equal(r1, r2)


def test_an_env_that_cannot_be_pickled_says_so():
    env = make_env(get_task("safe-pendulum"))
    env.reset(seed=0)
    env.unwrapped.handle = lambda: None  # a lambda cannot be pickled
    with pytest.raises(SnapshotError, match="cannot be pickled"):
        snapshot_env(env)
