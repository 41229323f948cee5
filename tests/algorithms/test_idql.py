"""IDQL: value-aware action selection on the toy bandit, determinism, config (the contract's
shared checks are in ``test_contract.py``)."""

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch

from algorithms import idql
from algorithms.common.contract import DatasetStats, TaskInfo
from algorithms.common.nets import Mish
from algorithms.common.offline import reward_transform
from tasks import toy

N_DATA = 2000
# Small networks, faster learning rates and a short EMA horizon so 400 steps suffice.
SMALL = {
    "actor_hidden": 64,
    "actor_blocks": 1,
    "critic_hidden": 64,
    "time_dim": 16,
    "actor_lr": 3e-3,
    "critic_lr": 3e-3,
    "ema_decay": 0.95,
}
FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals")


def toy_task() -> tuple[TaskInfo, DatasetStats, dict[str, torch.Tensor]]:
    data = toy.behaviour_dataset(N_DATA, seed=0)
    info = TaskInfo("toy-bandit", "toy", toy.OBS_DIM, toy.ACT_DIM, max_episode_steps=1)
    r = data["rewards"]
    stats = DatasetStats(
        obs_mean=np.zeros(toy.OBS_DIM, np.float32),
        obs_std=np.ones(toy.OBS_DIM, np.float32),  # the constant observation's std, clamped
        act_mean=data["actions"].mean(0),
        act_std=data["actions"].std(0),
        reward_min=float(r.min()),
        reward_max=float(r.max()),
        return_min=float(r.min()),
        return_max=float(r.max()),
        n_transitions=N_DATA,
        n_episodes=N_DATA,
    )
    tensors = {k: torch.as_tensor(data[k], dtype=torch.float32) for k in FIELDS}
    return info, stats, tensors


def batches(data: dict[str, torch.Tensor], n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        idx = torch.randint(0, N_DATA, (256,), generator=g)
        yield {k: v[idx] for k, v in data.items()}


def make_agent(seed: int, steps: int, **overrides) -> idql.Agent:
    info, stats, data = toy_task()
    torch.manual_seed(seed)
    cfg = idql.Config(**{**SMALL, **overrides})
    agent = idql.Agent(cfg, info, stats, "cpu", train_steps=max(steps, 1))
    for batch in batches(data, steps, seed):
        agent.update(batch)
    return agent


def near(actions: np.ndarray, mode: np.ndarray, radius: float = 0.25) -> float:
    return float((np.linalg.norm(actions - mode, axis=-1) < radius).mean())


@pytest.fixture(scope="module")
def trained() -> idql.Agent:
    return make_agent(seed=0, steps=400)


def test_concentrates_on_the_high_reward_mode(trained):
    _, _, data = toy_task()
    assert np.linalg.norm(data["actions"].mean(0).numpy()) < 0.1, (
        "the data mean lies between the modes"
    )
    torch.manual_seed(1)
    actions = trained.act(np.zeros((500, toy.OBS_DIM), np.float32))
    assert near(actions, toy.HIGH_MODE) >= 0.8


def test_behaviour_samples_cover_both_modes(trained):
    """With one candidate the actor is the diffusion behaviour policy: bimodal, not averaged."""
    single = copy.copy(trained)
    single.cfg = dataclasses.replace(trained.cfg, n_candidates=1)
    torch.manual_seed(2)
    actions = single.act(np.zeros((500, toy.OBS_DIM), np.float32))
    assert near(actions, toy.HIGH_MODE) > 0.15 and near(actions, toy.LOW_MODE) > 0.15


def test_expectile_selection_acts_in_bounds(trained):
    agent = copy.copy(trained)
    agent.cfg = dataclasses.replace(trained.cfg, selection="expectile")
    actions = agent.act(np.zeros((7, toy.OBS_DIM), np.float32))
    assert actions.shape == (7, toy.ACT_DIM) and actions.dtype == np.float32
    assert (np.abs(actions) <= 1.0).all()


def test_expectile_selection_draws_with_the_implicit_policy_frequencies(monkeypatch):
    """The paper's implicit policy over N behaviour samples: candidate i with probability
    ``|tau - 1(Q_i < V)| / sum_j |tau - 1(Q_j < V)|`` (``sample_implicit_policy``). With Q =
    (2, 1, 0, -1), V = 1.5 and tau = 0.7, only the first is above V: 0.7 / (0.7 + 3 * 0.3) =
    0.4375, the others 0.1875 each (swapped weights give 0.125; V read as mean Q, 0.2917)."""
    info, stats, _ = toy_task()
    cfg = idql.Config(**SMALL, selection="expectile", n_candidates=4)
    agent = idql.Agent(cfg, info, stats, "cpu", train_steps=1)
    assert agent.cfg.expectile == 0.7
    candidates = torch.tensor([[0.8, 0.0], [0.0, 0.8], [-0.8, 0.0], [0.0, -0.8]])

    def sample(model, shape, cond, **kwargs):
        return candidates.expand(shape)

    def q(obs, act):  # 2, 1, 0, -1 for the four candidates
        return act[..., 0] * 1.25 + 1.0 - (act[..., 1] < 0).float() * 2.0

    monkeypatch.setattr(agent.diffusion, "sample", sample)
    monkeypatch.setattr(agent.critic, "q", q)
    monkeypatch.setattr(agent.critic, "v", lambda obs: torch.full(obs.shape[:1], 1.5))
    assert q(None, candidates).tolist() == [2.0, 1.0, 0.0, -1.0]
    torch.manual_seed(0)
    actions = torch.as_tensor(agent.act(np.zeros((20_000, toy.OBS_DIM), np.float32)))
    chosen = (actions.unsqueeze(1) == candidates).all(-1).float().argmax(-1)
    freq = torch.bincount(chosen, minlength=4).float() / len(chosen)
    torch.testing.assert_close(
        freq, torch.tensor([0.4375, 0.1875, 0.1875, 0.1875]), atol=0.015, rtol=0
    )


def test_argmax_selection_takes_the_largest_q():
    q = torch.tensor([[0.0, 3.0, 1.0], [5.0, -1.0, 4.0]])
    assert idql.select_candidates(q, None, "argmax", 0.7).tolist() == [1, 0]


def test_critic_trains_on_the_first_256_transitions_and_the_actor_on_all(monkeypatch):
    """The paper-era update: the actor's loss sees all 2048 transitions, V and Q the first 256."""
    info, stats, data = toy_task()
    agent = idql.Agent(idql.Config(**SMALL), info, stats, "cpu", train_steps=10)
    assert (agent.cfg.batch_size, agent.cfg.critic_batch_size) == (2048, 256)
    assert agent.data_spec.batch_size == 2048
    seen = {}
    critic_update, actor_loss = agent.critic.update, agent.diffusion.loss

    def spy_critic(obs, *args):
        seen["critic"] = len(obs)
        return critic_update(obs, *args)

    def spy_actor(model, x, cond):
        seen["actor"] = len(x)
        return actor_loss(model, x, cond)

    monkeypatch.setattr(agent.critic, "update", spy_critic)
    monkeypatch.setattr(agent.diffusion, "loss", spy_actor)
    idx = torch.randint(0, N_DATA, (2048,), generator=torch.Generator().manual_seed(0))
    agent.update({k: v[idx] for k, v in data.items()})
    assert seen == {"critic": 256, "actor": 2048}


def test_empty_actor_step_moves_by_momentum_and_advances_schedule_and_ema():
    """Each update takes a second, zero-gradient Adam step (the paper-era ``batch[2048:]``):
    the weights move again by Adam's momentum, and the schedule (3e6 actor steps, i.e. 1.5M
    updates) and the EMA advance twice."""
    info, stats, data = toy_task()
    batch = next(batches(data, 1, seed=0))
    agents = {}
    for empty in (True, False):
        torch.manual_seed(0)
        agent = idql.Agent(idql.Config(**SMALL, empty_actor_step=empty), info, stats, "cpu", 10)
        torch.manual_seed(1)
        agent.update(batch)
        agents[empty] = agent
    two, one = agents[True], agents[False]
    assert two.ema.step == 2 and one.ema.step == 1
    assert two.actor_schedule.last_epoch == 2 and one.actor_schedule.last_epoch == 1
    pairs = zip(one.actor.parameters(), two.actor.parameters(), strict=True)
    assert any(not torch.equal(a, b) for a, b in pairs)
    lr = two.actor_optimizer.param_groups[0]["lr"]
    assert lr == pytest.approx(SMALL["actor_lr"] * 0.5 * (1 + math.cos(math.pi * 2 / 3e6)))
    assert idql.actor_decay_steps(two.cfg, train_steps=10) == 3_000_000
    ours = dataclasses.replace(two.cfg, lr_decay_steps=None)  # the run's: 10 updates x 2 steps
    assert idql.actor_decay_steps(ours, train_steps=10) == 20


def test_same_seed_same_agent():
    _, _, data = toy_task()
    obs = np.zeros((5, toy.OBS_DIM), np.float32)
    results = []
    for _ in range(2):
        agent = make_agent(seed=7, steps=5)
        torch.manual_seed(0)
        results.append((agent.act(obs), agent.update(next(batches(data, 1, seed=3)))))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    assert {"actor_loss", "q_loss", "v_loss"} <= results[0][1].keys()
    assert all(torch.equal(results[0][1][k], results[1][1][k]) for k in results[0][1])


def test_actions_respect_a_non_unit_box():
    info, stats, _ = toy_task()
    info = dataclasses.replace(info, action_low=-0.5, action_high=2.0)
    torch.manual_seed(0)
    agent = idql.Agent(idql.Config(**SMALL), info, stats, "cpu", train_steps=1)
    actions = agent.act(np.random.default_rng(0).normal(size=(9, toy.OBS_DIM)).astype(np.float32))
    assert actions.shape == (9, toy.ACT_DIM)
    assert (actions >= -0.5).all() and (actions <= 2.0).all()


def test_paper_values_per_task_family():
    stats = toy_task()[1]
    hopper_info = TaskInfo("hopper-medium-v2", "locomotion", 11, 3)
    ant = idql.resolve(idql.Config(), TaskInfo("antmaze-umaze-v2", "maze", 29, 8), stats)
    hopper = idql.resolve(idql.Config(), hopper_info, stats)
    assert (ant.expectile, ant.reward_norm) == (0.9, "minus_one")
    assert (hopper.expectile, hopper.reward_norm) == (0.7, "returns")
    assert reward_transform("returns", stats)[0] == pytest.approx(
        1000 / (stats.return_max - stats.return_min)
    )
    with pytest.raises(ValueError, match=r"algo\.selection.*argmax"):
        idql.resolve(idql.Config(selection="softmax"), hopper_info, stats)
    with pytest.raises(ValueError, match=r"algo\.beta_schedule.*vp"):
        idql.resolve(idql.Config(beta_schedule="sigmoid"), hopper_info, stats)


def test_fast_mish_matches_torch():
    x = torch.linspace(-30, 30, 2001, dtype=torch.float32).requires_grad_(True)
    ref_x = x.detach().clone().requires_grad_(True)
    y, ref = Mish()(x), torch.nn.functional.mish(ref_x)
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)
    y.sum().backward()
    ref.sum().backward()
    torch.testing.assert_close(x.grad, ref_x.grad, atol=1e-5, rtol=1e-5)
