"""IDQL: value-aware action selection on the toy bandit, determinism, config (the contract's
shared checks are in ``test_contract.py``)."""

import copy
import dataclasses

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
