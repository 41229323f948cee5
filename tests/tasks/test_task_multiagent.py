"""The batched port of OMAR's particle worlds against a literal, loop-by-loop transcription of
OMAR's ``core.py`` / ``environment.py`` / ``scenarios/simple_spread.py``; seeding; team score."""

import numpy as np
import pytest

from tasks.multiagent import SPREAD, ParticleEnvs, team_score


def omar_spread_step(pos, vel, landmarks, actions):
    """One step of OMAR's simple_spread for one world, entity by entity as OMAR's code does."""
    n = len(pos)
    pos, vel = [p.copy() for p in pos], [v.copy() for v in vel]
    force = [5.0 * np.clip(a, -1, 1) for a in actions]  # u *= sensitivity 5; p_force = mass * u
    for a in range(n):  # apply_environment_force: pairs a < b (landmarks do not collide)
        for b in range(a + 1, n):
            delta = pos[a] - pos[b]
            dist = np.sqrt(np.sum(np.square(delta)))
            dist_min = 0.15 + 0.15
            penetration = np.logaddexp(0, -(dist - dist_min) / 1e-3) * 1e-3
            f = 100.0 * delta / dist * penetration
            force[a] = f + force[a]
            force[b] = -f + force[b]
    for i in range(n):  # integrate_state
        vel[i] = vel[i] * (1 - 0.25) + force[i] * 0.1
        pos[i] = pos[i] + vel[i] * 0.1
    obs, rewards = [], []
    for i in range(n):
        rew = 0.0
        for lm in landmarks:
            dists = [np.sqrt(np.sum(np.square(p - lm))) for p in pos]
            rew += min(1.0 / min(dists), 10.0)
        for j in range(n):
            if j != i and np.sqrt(np.sum(np.square(pos[j] - pos[i]))) < 0.3:
                rew -= 5
        rewards.append(rew)
        entity = [lm - pos[i] for lm in landmarks]
        other = [pos[j] - pos[i] for j in range(n) if j != i]
        comm = [np.zeros(2) for j in range(n) if j != i]
        obs.append(np.concatenate([vel[i], pos[i], *entity, *other, *comm]))
    return pos, vel, np.array(obs), np.array(rewards)


def test_spread_matches_omars_code_step_by_step():
    envs = ParticleEnvs("spread", 4)
    obs = envs.reset(seed=7)
    assert obs.shape == (4, 3, SPREAD.obs_dim) and obs.dtype == np.float32
    rng = np.random.default_rng(0)
    state = [(envs.pos[i].copy(), envs.vel[i].copy()) for i in range(4)]
    for _ in range(25):
        actions = rng.uniform(-1.5, 1.5, (4, 3, 2))  # out-of-box actions are clipped
        obs, rewards, terminated, truncated = envs.step(actions)
        for i in range(4):
            pos, vel, ref_obs, ref_rew = omar_spread_step(*state[i], envs.landmarks[i], actions[i])
            state[i] = (np.array(pos), np.array(vel))
            np.testing.assert_allclose(obs[i], ref_obs, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(rewards[i], ref_rew, rtol=1e-9)
    assert truncated.all() and not terminated.any()


def test_collisions_are_penalized_per_agent():
    envs = ParticleEnvs("spread", 1)
    envs.reset(seed=0)
    envs.pos[0] = [[0.0, 0.0], [0.1, 0.0], [2.0, 2.0]]  # agents 0 and 1 overlap
    envs.landmarks[0] = [[0.0, 0.5], [1.0, 1.0], [-1.0, 0.0]]
    rewards = envs.rewards()[0]
    assert rewards[0] == pytest.approx(rewards[2] - 5) and rewards[1] == pytest.approx(rewards[0])


def test_reset_seeds_each_world_so_an_episode_does_not_depend_on_its_batch():
    a = ParticleEnvs("spread", 3).reset(seed=[10, 11, 12])
    b = ParticleEnvs("spread", 1).reset(seed=11)
    np.testing.assert_array_equal(a[1], b[0])
    c = ParticleEnvs("spread", 3).reset(seed=10)  # scalar seed: world i gets seed + i
    np.testing.assert_array_equal(a, c)


def test_team_score_is_the_mean_over_agents():
    rewards = np.array([[1.0, 2.0, 6.0], [0.0, 0.0, 3.0]])
    np.testing.assert_allclose(team_score(rewards, "spread"), [3.0, 1.0])
    with pytest.raises(ValueError, match="valid: spread"):
        team_score(rewards, "tag")
