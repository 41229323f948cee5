"""Multi-agent evaluation and task info: parallel worlds, one ``act`` per step on
``[n_envs, n_agents, obs_dim]``, the paper's team score, normalization and reproducibility."""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

from algorithms.common.contract import DataSpec
from bench.data import compute_stats, make_sampler
from bench.evaluate import DivergenceError, evaluate
from bench.multiagent import make_envs, multiagent_env_info, multiagent_task_info
from tasks.multiagent import ParticleEnvs, team_score
from tasks.registry import get_task
from tasks.sources import load_dataset
from tasks.spec import DatasetFormatError

SPEC = get_task("mpe-spread-medium")


class Scripted:
    """Each agent heads for the landmark of its own index (a decent spread policy), recording
    the shapes it is called with."""

    def __init__(self):
        self.calls, self.resets = [], 0

    def act(self, obs):
        self.calls.append(obs.shape)
        n_envs, n_agents, _ = obs.shape
        rel = obs[:, :, 4:10].reshape(n_envs, n_agents, 3, 2)[:, np.arange(3), np.arange(3)]
        return np.clip(2 * rel - 0.5 * obs[:, :, :2], -1, 1)

    def reset(self, done=None):
        self.resets += 1


class Still:
    def act(self, obs):
        return np.zeros((*obs.shape[:-1], 2))

    def reset(self, done=None):
        pass


def replay_scores(policy, seeds):
    """Team scores of ``policy`` episode by episode in one world each (the evaluator's meaning)."""
    out = []
    for seed in seeds:
        envs = ParticleEnvs("spread", 1)
        obs, total = envs.reset(seed), 0.0
        for _ in range(25):
            obs, rewards, _, _ = envs.step(policy.act(obs))
            total += float(team_score(rewards, "spread")[0])
        out.append(total)
    return np.array(out)


def test_evaluation_reports_the_team_score_normalized_in_waves():
    agent = Scripted()
    result = evaluate(agent, SPEC, episodes=5, seed=100, ref_min=0.0, ref_max=200.0, max_envs=2)
    assert agent.calls == [(2, 3, 18)] * 25 + [(2, 3, 18)] * 25 + [(1, 3, 18)] * 25
    assert agent.resets == 3
    np.testing.assert_allclose(result.returns, replay_scores(Scripted(), range(100, 105)))
    np.testing.assert_allclose(result.normalized, result.returns / 2.0)
    assert result.lengths.tolist() == [25] * 5 and result.decisions == 125
    summary = result.summary()
    assert summary["episodes"] == 5 and "success_rate" not in summary


def test_a_policy_that_covers_landmarks_outscores_standing_still():
    moving = evaluate(Scripted(), SPEC, episodes=20, seed=0, ref_min=0.0, ref_max=1.0).returns
    still = evaluate(Still(), SPEC, episodes=20, seed=0, ref_min=0.0, ref_max=1.0).returns
    assert moving.mean() > 2 * still.mean()


def test_non_finite_actions_fail_the_evaluation():
    class Broken(Still):
        def act(self, obs):
            return np.full((*obs.shape[:-1], 2), np.nan)

    with pytest.raises(DivergenceError):
        evaluate(Broken(), SPEC, episodes=2, seed=0, ref_min=0.0, ref_max=1.0)


def test_task_info_has_per_agent_widths_and_checks_the_data():
    dataset = load_dataset(SPEC, scale=0.001, forge_seed=0, verbose=False)
    info = multiagent_task_info(SPEC, dataset)
    assert (info.kind, info.n_agents, info.obs_dim, info.act_dim) == ("multi-agent", 3, 18, 2)
    assert info.max_episode_steps == 25
    dataset.arrays["observations"] = dataset.arrays["observations"][:, :2]
    with pytest.raises(DatasetFormatError, match="3 agents of width 18"):
        multiagent_task_info(SPEC, dataset)


def test_samplers_and_statistics_keep_the_agents_axis():
    dataset = load_dataset(SPEC, scale=0.001, forge_seed=0, verbose=False)
    a = dataset.arrays
    stats = compute_stats(dataset)
    pooled = a["observations"].reshape(-1, 18)
    np.testing.assert_allclose(stats.obs_mean, pooled.mean(0), rtol=1e-5, atol=1e-6)
    assert stats.obs_quantiles.shape == (1001, 18) and stats.act_quantiles.shape == (1001, 2)
    team = a["rewards"].mean(-1).reshape(-1, 25).sum(-1)  # whole 25-step episodes
    assert stats.return_max == pytest.approx(team.max(), rel=1e-5)
    spec = DataSpec(kind="segments", batch_size=8, horizon=5, discount=0.9)
    batch = make_sampler(dataset, spec, torch.device("cpu"), seed=0).sample()
    assert batch["observations"].shape == (8, 5, 3, 18) and batch["actions"].shape == (8, 5, 3, 2)
    assert batch["returns_to_go"].shape == (8, 5, 3) and batch["mask"].shape == (8, 5)
    rtg = batch["returns_to_go"]  # each agent's own: r_t + 0.9 rtg_{t+1} inside an episode
    inside = batch["mask"][:, 1:] > 0
    expected = batch["rewards"][:, :-1] + 0.9 * rtg[:, 1:]
    torch.testing.assert_close(rtg[:, :-1][inside], expected[inside], rtol=1e-4, atol=1e-4)
    transitions = make_sampler(dataset, DataSpec(batch_size=4), torch.device("cpu"), 0).sample()
    assert transitions["rewards"].shape == (4, 3) and transitions["terminals"].shape == (4,)


MAMUJOCO = get_task("mamujoco-halfcheetah-2x3-medium")


class Swing:
    """Every joint follows one sine of the step: a deterministic MaMuJoCo policy."""

    def __init__(self):
        self.calls, self.t = [], 0

    def act(self, obs):
        self.calls.append(obs.shape)
        self.t += 1
        return np.full((*obs.shape[:-1], 3), np.sin(0.3 * self.t))

    def reset(self, done=None):
        self.t = 0


def test_mamujoco_evaluation_is_the_team_return_of_each_seeded_episode():
    agent = Swing()
    result = evaluate(agent, MAMUJOCO, episodes=3, seed=40, ref_min=0.0, ref_max=1000.0, max_envs=2)
    assert agent.calls == [(2, 2, 12)] * 1000 + [(1, 2, 12)] * 1000
    assert result.lengths.tolist() == [1000] * 3 and result.decisions == 3000
    expected = []
    for seed in (40, 41, 42):  # one single-agent HalfCheetah-v5 per episode, same actions
        single = gym.make("HalfCheetah-v5")
        single.reset(seed=seed)
        expected.append(sum(single.step(np.full(6, np.sin(0.3 * t)))[1] for t in range(1, 1001)))
    np.testing.assert_allclose(result.returns, expected, rtol=1e-9)
    np.testing.assert_allclose(result.normalized, result.returns / 10.0)


def test_mamujoco_task_info_and_unknown_families():
    info = multiagent_env_info(MAMUJOCO)
    assert (info.n_agents, info.obs_dim, info.act_dim, info.max_episode_steps) == (2, 12, 3, 1000)
    with pytest.raises(ValueError, match="valid prefixes: diffrl/mpe-, diffrl/mamujoco-"):
        make_envs(dataclasses.replace(MAMUJOCO, env_id="diffrl/smac-3m"), 1)
