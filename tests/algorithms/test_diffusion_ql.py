"""Diffusion-QL: the bandit, the Q gradient through the sampling chain, per-task settings, batched
acting in a non-unit box, no host reads in ``update``, determinism, and learning on a point maze
(the contract's shared checks are in ``test_contract.py``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from agent_data import batches, stats_of, unit_stats

from algorithms import diffusion_ql as dql
from algorithms.common.contract import TaskInfo
from bench.run import run_overrides
from tasks import toy

N_DATA = 2000
TOY_INFO = TaskInfo("toy-bandit", "toy", toy.OBS_DIM, toy.ACT_DIM, max_episode_steps=1)
# Narrow networks and a fast learning rate so 600 steps suffice.
SMALL = {"actor_hidden": 64, "critic_hidden": 64, "actor_lr": 1e-2, "critic_lr": 1e-2}
TOY_STEPS = 600


def toy_data() -> dict[str, np.ndarray]:
    return toy.behaviour_dataset(N_DATA, seed=0)


def make_agent(
    seed: int,
    steps: int,
    info: TaskInfo = TOY_INFO,
    train_steps: int | None = None,
    **overrides,
) -> dql.Agent:
    """An agent trained ``steps`` steps; its schedules span ``train_steps`` (default ``steps``)."""
    data = toy_data()
    torch.manual_seed(seed)
    cfg = dql.Config(**{**SMALL, **overrides})
    agent = dql.Agent(cfg, info, stats_of(data), "cpu", train_steps or max(steps, 1))
    stream = batches(data, seed=seed)
    for _ in range(steps):
        agent.update(next(stream))
    return agent


def near(actions: np.ndarray, mode: np.ndarray, radius: float = 0.25) -> float:
    return float((np.linalg.norm(actions - mode, axis=-1) < radius).mean())


# -- the bandit --------------------------------------------------------------------------------


def test_actions_reach_the_high_reward_mode():
    """The data are half low mode, half high mode (mean reward 0.6; their mean action earns
    ~0). The Q term must pull the diffusion policy onto the high mode: at least 80% of actions
    within 0.25 of it, under 5% near the low one, mean reward above 0.75 (seeds 0-5 after 600
    steps: 91-95% near, reward 0.87-0.96)."""
    agent = make_agent(seed=0, steps=TOY_STEPS)
    torch.manual_seed(1)
    actions = agent.act(np.zeros((500, toy.OBS_DIM), np.float32))
    assert near(actions, toy.HIGH_MODE) >= 0.8
    assert near(actions, toy.LOW_MODE) < 0.05
    assert toy.bandit_reward(actions).mean() > 0.75


def test_q_loss_gradient_reaches_the_first_layer_through_the_chain(monkeypatch):
    """With the denoising loss switched off, the actor's first Linear still gets a gradient: the
    Q term flows back through all T sampling steps into the denoiser."""
    agent = make_agent(seed=0, steps=0)
    monkeypatch.setattr(agent.diffusion, "loss", lambda *args, **kwargs: torch.zeros(()))
    agent.update(next(batches(toy_data())))
    first = agent.actor.net[0]
    assert isinstance(first, torch.nn.Linear)
    assert first.weight.grad is not None and first.weight.grad.abs().sum() > 0


def test_sampling_chain_keeps_the_graph_only_when_asked():
    agent = make_agent(seed=0, steps=0)
    obs = torch.zeros(4, toy.OBS_DIM)
    assert agent.sample_unit(agent.actor, obs, differentiable=True).requires_grad
    assert not agent.sample_unit(agent.actor, obs).requires_grad


def test_normalized_q_loss_uses_one_head_over_the_other():
    q1 = torch.tensor([1.0, 3.0], requires_grad=True)
    q2 = torch.tensor([-4.0, 0.0], requires_grad=True)
    loss = dql.normalized_q_loss(q1, q2, torch.tensor(True))
    assert loss.item() == pytest.approx(-2.0 / 2.0)  # -mean(Q1) / mean|Q2|
    loss.backward()
    torch.testing.assert_close(q1.grad, torch.full((2,), -0.25))  # the divisor is a constant
    assert q2.grad is None or not q2.grad.any()
    other = dql.normalized_q_loss(q1.detach(), q2.detach(), torch.tensor(False))
    assert other.item() == pytest.approx(2.0 / 2.0)  # -mean(Q2) / mean|Q1|


# -- per-task settings -------------------------------------------------------------------------


def resolve(task_id: str, kind: str, **overrides) -> dql.Config:
    return dql.resolve(dql.Config(**overrides), TaskInfo(task_id, kind, 3, 2), unit_stats(3, 2))


def test_paper_values_are_applied_per_task_and_overrides_win():
    hopper = resolve("hopper-medium-v2", "locomotion")
    assert (hopper.eta, hopper.actor_lr, hopper.grad_norm, hopper.top_k, hopper.num_epochs) == (
        1.0,
        3e-4,
        9.0,
        2,
        2000,
    )
    assert (hopper.max_q_backup, hopper.reward_norm) == (False, "none")
    walker = resolve("walker2d-medium-v2", "locomotion")
    assert walker.grad_norm == 1.0
    ant = resolve("antmaze-medium-play-v2", "maze")
    assert (ant.actor_lr, ant.eta, ant.max_q_backup, ant.reward_norm) == (
        1e-3,
        2.0,
        True,
        "cql_antmaze",
    )
    override = resolve("hopper-medium-v2", "locomotion", eta=0.3, grad_norm=0.0)
    assert (override.eta, override.grad_norm, override.actor_lr) == (0.3, 0.0, 3e-4)
    other = resolve("pointmaze-umaze", "maze")
    assert (other.eta, other.actor_lr, other.grad_norm) == (1.0, 3e-4, 1.0)
    with pytest.raises(ValueError, match=r"algo\.beta_schedule.*vp"):
        resolve("hopper-medium-v2", "locomotion", beta_schedule="sigmoid")


def test_agent_exposes_the_resolved_config_and_antmaze_reward_norm():
    info = TaskInfo("antmaze-umaze-diverse-v2", "maze", toy.OBS_DIM, toy.ACT_DIM)
    agent = make_agent(seed=0, steps=2, info=info)  # max-Q backup path, finite losses
    assert agent.cfg.max_q_backup and agent.cfg.eta == 2.0 and agent.cfg.grad_norm == 3.0
    assert (agent.reward_scale, agent.reward_shift) == (4.0, -2.0)  # (r - 0.5) * 4
    out = agent.update(next(batches(toy_data())))
    assert all(torch.isfinite(v) for v in out.values())
    with pytest.raises(ValueError, match="cql_antmaze"):
        dql.resolve(dql.Config(reward_norm="normalize"), TOY_INFO, stats_of(toy_data()))


def test_official_learning_rate_steps_once_per_50_epochs_over_num_epochs():
    """The official CosineAnnealingLR(T_max=num_epochs) is stepped once per train() call of 50
    epochs x 1000 updates: flat within a call, and 0.1% lower after 2M updates on hopper."""
    cfg = resolve("hopper-medium-v2", "locomotion")
    assert cfg.lr_schedule == "official" and cfg.num_epochs == 2000
    factor = dql.lr_factor(cfg, train_steps=1_000_000)
    assert factor(0) == factor(49_999) == 1.0
    assert factor(50_000) == pytest.approx(0.5 * (1 + math.cos(math.pi / 2000)))
    assert factor(1_999_999) == pytest.approx(0.5 * (1 + math.cos(math.pi * 39 / 2000)))
    assert 0.998 < factor(1_999_999) < 0.9991
    agent = make_agent(seed=0, steps=4, train_steps=4)
    assert agent.actor_optimizer.param_groups[0]["lr"] == SMALL["actor_lr"]
    assert agent.critic_optimizer.param_groups[0]["lr"] == SMALL["critic_lr"]


def test_cosine_option_decays_both_learning_rates_to_zero_over_the_run():
    agent = make_agent(seed=0, steps=4, train_steps=4, lr_schedule="cosine")
    assert agent.actor_optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert agent.critic_optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match=r"algo\.lr_schedule.*official"):
        resolve("hopper-medium-v2", "locomotion", lr_schedule="linear")


def test_td_target_is_the_reward_at_terminals_and_bootstraps_from_the_ema_actor_elsewhere(
    monkeypatch,
):
    """``r + discount * (1 - done) * min(Q1', Q2')(s', a')`` with ``a'`` from the EMA actor: at a
    terminal the target is the reward alone, however large the target critic's values."""
    agent = make_agent(seed=0, steps=0)
    with torch.no_grad():  # a target critic far from zero, so any leak into the target shows
        for p in agent.critic_target.parameters():
            p.add_(0.5)
    next_obs = torch.randn(4, toy.OBS_DIM, generator=torch.Generator().manual_seed(0))
    reward = torch.tensor([1.0, -2.0, 0.5, 0.0])
    torch.testing.assert_close(agent.td_target(next_obs, reward, torch.ones(4)), reward)

    fixed = torch.full((4, toy.ACT_DIM), 0.3)
    models = []

    def sample(model, obs, differentiable=False):
        models.append(model)
        return fixed

    monkeypatch.setattr(agent, "sample_unit", sample)
    q1, q2 = agent.critic_target(next_obs, fixed)
    assert (torch.minimum(q1, q2).abs() > 1.0).all()
    terminal = torch.tensor([1.0, 0.0, 1.0, 0.0])
    expected = reward + 0.99 * (1.0 - terminal) * torch.minimum(q1, q2)
    torch.testing.assert_close(agent.td_target(next_obs, reward, terminal), expected)
    assert models == [agent.ema.model]


def test_max_q_backup_target_is_the_reward_at_terminals():
    info = TaskInfo("antmaze-umaze-diverse-v2", "maze", toy.OBS_DIM, toy.ACT_DIM)
    agent = make_agent(seed=0, steps=0, info=info)
    assert agent.cfg.max_q_backup
    with torch.no_grad():
        for p in agent.critic_target.parameters():
            p.add_(0.5)
    reward = torch.tensor([1.0, -2.0, 0.5])
    target = agent.td_target(torch.randn(3, toy.OBS_DIM), reward, torch.ones(3))
    torch.testing.assert_close(target, reward)


# -- acting and updating ----------------------------------------------------------------------


def test_act_denoises_all_envs_and_candidates_in_one_pass_inside_the_box():
    info = TaskInfo("box", "toy", toy.OBS_DIM, toy.ACT_DIM, action_low=-0.5, action_high=2.0)
    agent = make_agent(seed=0, steps=0, info=info)
    shapes = []
    agent.actor.register_forward_hook(lambda m, args, out: shapes.append(tuple(args[0].shape)))
    obs = np.random.default_rng(0).normal(size=(7, toy.OBS_DIM)).astype(np.float32)
    actions = agent.act(obs)
    assert shapes == [(7, 50, toy.ACT_DIM)] * agent.cfg.n_diffusion_steps
    assert actions.shape == (7, toy.ACT_DIM) and actions.dtype == np.float32
    assert (actions >= -0.5).all() and (actions <= 2.0).all()
    agent.reset()


def test_update_returns_detached_scalars_without_host_reads(monkeypatch):
    """No ``.item()``, ``float()``, ``bool()`` or copies to the host inside ``update``."""
    agent = make_agent(seed=0, steps=0)
    batch = next(batches(toy_data()))

    def forbidden(*args, **kwargs):
        raise AssertionError("update read a tensor on the host")

    for name in ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    out = agent.update(batch)
    monkeypatch.undo()
    assert {"critic_loss", "bc_loss", "ql_loss", "actor_loss"} <= out.keys()
    assert all(v.dim() == 0 and not v.requires_grad for v in out.values())


def test_same_seed_same_agent():
    obs = np.zeros((5, toy.OBS_DIM), np.float32)
    results = []
    for _ in range(2):
        agent = make_agent(seed=7, steps=5)
        torch.manual_seed(0)
        results.append((agent.act(obs), agent.update(next(batches(toy_data(), seed=3)))))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    assert all(torch.equal(results[0][1][k], results[1][1][k]) for k in results[0][1])


# -- learning on a forged point maze, through the harness --------------------------------------

POINTMAZE = ["task=pointmaze-umaze", "device=cpu", "train.checkpoint_every=1000000"]


def test_pointmaze_smoke_through_the_harness(tmp_path):
    """A tiny run completes and records the resolved per-task settings (pointmaze is not in the
    paper's table: the locomotion defaults); the budget reaches the agent, not its Config."""
    smoke = ["data.scale=0.01", "train.steps=40", "train.eval_every=20", "train.log_every=20"]
    smoke += ["eval.episodes=4", "eval.periodic_episodes=2"]
    smoke += ["algo.actor_hidden=32", "algo.critic_hidden=32"]
    record = run_overrides(["algo=diffusion_ql", *POINTMAZE, *smoke, f"results_dir={tmp_path}"])
    assert record["status"] == "completed", record["failure_reason"]
    resolved = record["config"]["algo_resolved"]
    assert (resolved["eta"], resolved["grad_norm"], resolved["reward_norm"]) == (1.0, 1.0, "none")
    assert "max_steps" not in resolved and resolved["max_q_backup"] is False
    assert len(record["final"]["returns"]) == 4 and record["timings"]["decisions_per_s"] > 0
    assert {"bc_loss", "ql_loss", "critic_loss"} <= record["losses"][-1].keys()


# Diffusion-QL with its default networks: 2000 steps on 30k forged transitions, 20 episodes
# (about 6 minutes on one CPU thread). The margin over the random policy (normalized score 0 by
# construction; over 50 episodes it scores 3.9 with a per-episode std of 21 and reaches the goal
# in 28% of them): a mean normalized score of at least 10 and a success rate of at least 0.6.
# Measured: seeds 0 and 1 scored 16.9 and 12.2 (success 0.85, 0.8); 64-wide networks 13.2-18.7
# (success 0.7-0.9); at 1000 steps it is still at random's level. TD3+BC clears the same margin
# with the same budget in 40 s (seeds 0-2: 46.5, 72.6, 43.4; success 0.85-1.0). The learning
# rates decay to 0 over the 2000 steps (lr_schedule=cosine), as measured: with the official
# schedule (in effect constant, made for 2M steps) a 2000-step run has not settled (seed 0:
# 14.7, success 0.65; seed 1: -1.7, success 0.6).
LEARNING_BUDGET = ["data.scale=0.03", "train.steps=2000", "eval.episodes=20"]
LEARNING_BUDGET += ["train.eval_every=1000000", "train.log_every=500", "algo.lr_schedule=cosine"]
MARGIN = {"normalized_mean": 10.0, "success_rate": 0.6}


@pytest.mark.slow
def test_beats_the_random_policy_on_pointmaze(tmp_path):
    record = run_overrides(
        ["algo=diffusion_ql", *POINTMAZE, *LEARNING_BUDGET, "seed=0", f"results_dir={tmp_path}"]
    )
    assert record["status"] == "completed", record["failure_reason"]
    final = record["final"]
    assert final["normalized_mean"] >= MARGIN["normalized_mean"], final["normalized_mean"]
    assert final["success_rate"] >= MARGIN["success_rate"], final["success_rate"]
