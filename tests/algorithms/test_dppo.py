"""DPPO (:mod:`algorithms.dppo`): the denoising MDP's log-probabilities, the frozen steps, the
official clip schedule, and learning by fine-tuning on the toy bandit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from algorithms import dppo
from algorithms.common.contract import OnlineAgent, Rollout
from bench.data import compute_stats
from bench.run import run_overrides, task_info
from tasks.registry import get_task
from tasks.sources import load_dataset

SMALL = {
    "horizon": 2,
    "act_steps": 2,
    "hidden": 32,
    "critic_hidden": 16,
    "n_diffusion_steps": 6,
    "ft_denoising_steps": 3,
    "ft_batch_size": 8,
}


@pytest.fixture(scope="module")
def bandit():
    spec = get_task("toy-bandit")
    dataset = load_dataset(spec, source="auto", scale=0.2, forge_seed=0)
    return task_info(spec, dataset), compute_stats(dataset)


def online_agent(bandit, **overrides) -> dppo.Agent:
    info, stats = bandit
    torch.manual_seed(0)
    agent = dppo.Agent(dppo.Config(**{**SMALL, **overrides}), info, stats, "cpu", train_steps=10)
    agent.start_online(n_envs=4)
    return agent


def test_the_agent_is_an_online_agent(bandit):
    assert isinstance(online_agent(bandit), OnlineAgent)


def test_the_log_prob_of_a_sampled_chain_is_its_sampling_density(bandit):
    """Replaying the sampler's noise: each fine-tuned step drew ``x = mean + std * z`` with
    ``std = max(posterior std, 0.1)`` and ``z`` clipped at 3, so its log-density is
    ``log N(z; 0, 1) - log std`` per element; ``log_probs`` recomputes it from the chain."""
    agent = online_agent(bandit)
    cfg, obs = agent.cfg, agent.obs_scale(torch.as_tensor(bandit[1].obs_mean).expand(5, -1))
    torch.manual_seed(1)
    _, chain = agent.sample(obs, explore=True, chain_steps=agent.cfg.ft_denoising_steps)
    torch.manual_seed(1)
    torch.randn(5, cfg.horizon, agent.info.act_dim)  # the initial noise
    expected = []
    for t in reversed(range(cfg.n_diffusion_steps)):
        z = torch.randn(5, cfg.horizon, agent.info.act_dim).clamp(-3, 3)
        if t < cfg.ft_denoising_steps:
            std = agent.mdp.std[t].clamp(min=cfg.min_sampling_std)
            expected.append(-0.5 * z**2 - 0.5 * math.log(2 * math.pi) - std.log())
    expected = torch.stack(expected, dim=1)
    assert chain.shape == (5, cfg.ft_denoising_steps + 1, cfg.horizon, agent.info.act_dim)
    with torch.no_grad():
        recomputed = agent.log_probs(obs, chain)
    torch.testing.assert_close(recomputed, expected, atol=1e-4, rtol=1e-4)


def fake_rollout(agent: dppo.Agent, obs_value: np.ndarray, steps: int, n_envs: int) -> Rollout:
    """``steps`` explore calls on the bandit's observation, with random rewards and ends."""
    rng = np.random.default_rng(0)
    obs = np.broadcast_to(obs_value, (steps, n_envs, agent.info.obs_dim)).astype(np.float32)
    for s in range(steps):
        agent.explore(obs[s])
    ended = rng.random((steps, n_envs)) < 0.2
    firsts = np.vstack([np.ones((1, n_envs), bool), ended[:-1]])
    rewards = rng.normal(size=(steps, n_envs)).astype(np.float32)
    return Rollout(obs, rewards, ended, np.zeros_like(ended), firsts, obs[-1])


def test_frozen_denoising_steps_do_not_move(bandit):
    agent = online_agent(bandit, target_kl=None)
    frozen = {k: v.clone() for k, v in agent.ema.model.state_dict().items()}
    tuned = {k: v.clone() for k, v in agent.actor_ft.state_dict().items()}
    obs = agent.obs_scale(torch.as_tensor(bandit[1].obs_mean).expand(3, -1))
    torch.manual_seed(2)
    _, before = agent.sample(obs, explore=True, chain_steps=agent.cfg.ft_denoising_steps)
    agent.improve(fake_rollout(agent, bandit[1].obs_mean, steps=6, n_envs=4))
    for key, value in agent.ema.model.state_dict().items():
        assert torch.equal(value, frozen[key]), f"frozen network moved: {key}"
    assert any(not torch.equal(v, tuned[k]) for k, v in agent.actor_ft.state_dict().items())
    torch.manual_seed(2)
    _, after = agent.sample(obs, explore=True, chain_steps=agent.cfg.ft_denoising_steps)
    assert torch.equal(after[:, 0], before[:, 0]), "the frozen steps' output changed"
    assert not torch.equal(after[:, -1], before[:, -1]), "the fine-tuned steps did not change"


def official_clip_coefficients(k: int, coef: float, base: float, rate: float) -> list[float]:
    """diffusion_ppo.py's formula, written out per step."""
    if k == 1:
        return [coef]
    return [
        base + (coef - base) * (math.exp(rate * i / (k - 1)) - 1) / (math.exp(rate) - 1)
        for i in range(k)
    ]


@pytest.mark.parametrize(
    ("k", "coef", "base", "rate"),
    [(10, 0.1, 0.001, 3.0), (4, 0.01, 0.01, 3.0), (1, 0.2, 0.01, 3.0)],
)
def test_the_clip_schedule_is_the_official_formula(k, coef, base, rate):
    ours = dppo.clip_schedule(k, coef, base, rate)
    expected = official_clip_coefficients(k, coef, base, rate)
    torch.testing.assert_close(ours, torch.tensor(expected), atol=1e-7, rtol=1e-6)
    assert ours[0] == pytest.approx(base if k > 1 else coef) and ours[-1] == pytest.approx(coef)


def test_the_denoising_discount_spares_the_last_step():
    torch.testing.assert_close(dppo.denoising_discount(3, 0.9), torch.tensor([0.81, 0.9, 1.0]))


def test_fine_tuning_raises_the_return_of_a_weak_pretrained_policy(tmp_path):
    """On the toy bandit (one-step episodes; reward 1 at one behaviour mode, 0.5 at the other,
    about 0 between), a diffusion policy pre-trained for only 300 steps scores about 0.16; ten
    iterations of 1000 decisions in 10 envs (a larger clip and learning rate than hopper's, for
    speed) raise the mean return on the same 100 evaluation episodes by at least 0.25."""
    record = run_overrides(
        [
            "algo=dppo",
            "task=toy-bandit",
            "data.scale=0.2",
            f"results_dir={tmp_path}",
            "train.steps=300",
            "train.eval_every=0",
            "eval.episodes=100",
            "online.n_envs=10",
            "online.env_steps=10000",
            "online.eval_every=0",
            "device=cpu",
            "algo.horizon=1",
            "algo.act_steps=1",
            "algo.hidden=64",
            "algo.critic_hidden=32",
            "algo.n_diffusion_steps=5",
            "algo.ft_denoising_steps=3",
            "algo.batch_size=64",
            "algo.rollout_steps=100",
            "algo.ft_batch_size=250",
            "algo.ft_lr=1e-3",
            "algo.clip_coef=0.1",
            "algo.clip_coef_base=0.1",
        ]
    )
    pretrained = record["online"]["pretrained"]["return_mean"]
    final = record["final"]["return_mean"]
    assert final >= pretrained + 0.25, (pretrained, final)
