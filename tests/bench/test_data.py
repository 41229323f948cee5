"""Samplers and statistics of bench.data on hand-made datasets with known answers."""

import numpy as np
import pytest
import torch

from algorithms.common.contract import DataSpec, GoalExits
from bench.data import (
    SegmentSampler,
    TransitionSampler,
    compute_stats,
    discounted_returns_to_go,
    goal_exit_ends,
    make_sampler,
)
from tasks.spec import Dataset, Provenance


def make_dataset(lengths=(3, 5, 2)) -> Dataset:
    """Episodes whose observation is (episode id, step) and whose reward is 1 per step."""
    obs, terminals = [], []
    for ep, n in enumerate(lengths):
        obs += [[ep, t] for t in range(n)]
        terminals += [False] * (n - 1) + [True]
    obs = np.array(obs, dtype=np.float32)
    n = len(obs)
    arrays = {
        "observations": obs,
        "actions": obs[:, :1].copy(),
        "rewards": np.ones(n, dtype=np.float32),
        "next_observations": obs + np.array([0, 1], dtype=np.float32),
        "terminals": np.array(terminals),
        "timeouts": np.zeros(n, dtype=bool),
    }
    prov = Provenance("synthetic", "-", "-", n, len(lengths))
    return Dataset(arrays, prov, ref_min_score=0.0, ref_max_score=1.0)


def test_stats_floor_std_and_episode_returns():
    ds = make_dataset()
    ds.arrays["observations"][:, 0] = 7.0  # a constant dimension
    stats = compute_stats(ds)
    assert stats.obs_std[0] == pytest.approx(1e-3)
    assert (stats.return_min, stats.return_max) == (2.0, 5.0)
    assert stats.n_episodes == 3 and stats.n_transitions == 10


def test_returns_to_go_restart_at_episode_ends():
    rtg = discounted_returns_to_go(np.ones(5, np.float32), np.array([2, 5]), discount=0.5)
    np.testing.assert_allclose(rtg, [1.5, 1.0, 1.75, 1.5, 1.0])


def test_transition_batches_are_seeded_and_shaped():
    ds = make_dataset()
    spec = DataSpec(batch_size=16)
    a = TransitionSampler(ds, spec, torch.device("cpu"), seed=3).sample()
    b = TransitionSampler(ds, spec, torch.device("cpu"), seed=3).sample()
    assert a["observations"].shape == (16, 2) and a["terminals"].dtype == torch.float32
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_segments_stay_inside_one_episode_and_mask_padding():
    ds = make_dataset()
    spec = DataSpec(kind="segments", batch_size=512, horizon=4, discount=1.0)
    batch = SegmentSampler(ds, spec, torch.device("cpu"), seed=0).sample()
    episode = batch["observations"][..., 0]
    step = batch["observations"][..., 1]
    assert (episode == episode[:, :1]).all(), "a window crossed an episode boundary"
    real = batch["mask"].bool()
    # real steps advance by one; padded steps repeat the episode's last step
    assert (step[:, 1:][real[:, 1:]] == (step[:, :-1] + 1)[real[:, 1:]]).all()
    assert (step[:, 1:][~real[:, 1:]] == step[:, :-1][~real[:, 1:]]).all()
    lengths = torch.tensor([3.0, 5.0, 2.0])[episode[:, 0].long()]
    torch.testing.assert_close(batch["returns_to_go"][:, 0], lengths - step[:, 0])
    assert (~real).any() and real[:, 0].all()


def test_missing_extra_field_is_a_clear_error():
    with pytest.raises(ValueError, match="costs"):
        make_sampler(make_dataset(), DataSpec(extra=("costs",)), torch.device("cpu"), seed=0)


def test_stats_carry_per_dimension_quantiles():
    stats = compute_stats(make_dataset())
    assert stats.obs_quantiles.shape == (1001, 2) and stats.act_quantiles.shape == (1001, 1)
    np.testing.assert_allclose(stats.obs_quantiles[[0, 500, -1]], [[0, 0], [1, 1], [2, 4]])


def test_terminal_penalties_enter_returns_and_costs_to_go_only():
    """Diffuser's ``termination_penalty`` (and TREBI's on costs), declared by the agent: added to
    the terminal step's reward / cost before summing; the recorded fields stay as they are."""
    ds = make_dataset()  # every episode ends in a terminal
    ds.arrays["timeouts"][4] = True  # episode 1 is cut at step 2 by a timeout instead...
    ds.arrays["terminals"][4] = False  # ...and ends in a terminal at its last step only
    ds.arrays["costs"] = np.full(len(ds), 2.0, np.float32)
    spec = DataSpec(
        kind="segments",
        batch_size=256,
        horizon=1,
        discount=1.0,
        extra=("costs",),
        terminal_reward=-100.0,
        terminal_cost=10.0,
    )
    batch = SegmentSampler(ds, spec, torch.device("cpu"), seed=0).sample()
    index = batch["observations"][:, 0, 0] * 10 + batch["observations"][:, 0, 1]
    rtg, ctg = batch["returns_to_go"][:, 0], batch["costs_to_go"][:, 0]
    # episodes (lengths 3, 2 by timeout, 3, 2): only those ending in a terminal are penalized
    expected_rtg = {0: -97, 1: -98, 2: -99, 10: 2, 11: 1, 12: -97, 13: -98, 14: -99, 20: -98}
    expected_rtg[21] = -99
    for key, value in expected_rtg.items():
        hits = index == key
        assert hits.any() and (rtg[hits] == value).all(), key
        penalty = 10.0 if value < 0 else 0.0
        assert (ctg[hits] == 2 * (value + (100 if value < 0 else 0)) + penalty).all(), key
    assert (batch["rewards"] == 1).all() and (batch["costs"] == 2).all()


def test_unpadded_windows_lie_whole_in_an_episode_and_cover_every_start():
    ds = make_dataset(lengths=(3, 6, 2, 4))
    spec = DataSpec(kind="segments", batch_size=4000, horizon=3, padding=False)
    batch = SegmentSampler(ds, spec, torch.device("cpu"), seed=0).sample()
    assert (batch["mask"] == 1).all()
    episode, step = batch["observations"][..., 0], batch["observations"][..., 1]
    assert (episode == episode[:, :1]).all() and (step.diff(dim=1) == 1).all()
    starts = {(int(e), int(t)) for e, t in zip(episode[:, 0], step[:, 0], strict=True)}
    assert starts == {(0, 0), (1, 0), (1, 1), (1, 2), (1, 3), (3, 0), (3, 1)}
    with pytest.raises(ValueError, match="whole window of 7"):
        SegmentSampler(ds, DataSpec(kind="segments", horizon=7, padding=False), "cpu", seed=0)


def stream(positions: list[float], resets: tuple[int, ...] = ()) -> Dataset:
    """A 1-D point's stream ``[x, 0]``, cut into dataset episodes of 3 steps; a reset at step
    ``i`` makes the position jump there."""
    x = np.array(positions, dtype=np.float32)
    obs = np.stack([x, np.zeros_like(x)], 1)
    nxt = np.roll(obs, -1, axis=0)
    for i in resets:
        nxt[i - 1, 0] = obs[i - 1, 0]  # the episode before the reset ended where it was
    n = len(x)
    timeouts = np.zeros(n, bool)
    timeouts[2::3] = True
    arrays = {
        "observations": obs,
        "actions": np.zeros((n, 1), np.float32),
        "rewards": np.zeros(n, np.float32),
        "next_observations": nxt,
        "terminals": np.zeros(n, bool),
        "timeouts": timeouts,
    }
    return Dataset(arrays, Provenance("synthetic", "-", "-", n, n // 3), 0.0, 1.0)


def test_goal_exits_cut_a_continuous_stream_where_it_leaves_the_goal():
    """maze2d_set_terminals: an episode ends at a step at the goal whose next step is not; the
    dataset's own ends are dropped where the stream runs on and kept at a reset."""
    #            0  1  2    3    4  5  6    7  8    9 10 11
    positions = [5, 4, 0.2, 0.1, 1, 2, 0.3, 9, 8, 7, 6, 5]
    exits = GoalExits(dims=(0,), radius=0.5, goal=(0.0,))
    ends = goal_exit_ends(stream(positions).arrays, stream(positions).episode_ends(), exits)
    assert ends.tolist() == [4, 7, 12]  # leaves the goal after steps 3 and 6
    ds = stream(positions, resets=(9,))
    assert goal_exit_ends(ds.arrays, ds.episode_ends(), exits).tolist() == [4, 7, 9, 12]
    with_goal_dims = stream(positions)
    with_goal_dims.arrays["observations"][:, 1] = 0.0  # the goal in observation dim 1
    per_step = GoalExits(dims=(0,), radius=0.5, goal_dims=(1,))
    ends = goal_exit_ends(with_goal_dims.arrays, with_goal_dims.episode_ends(), per_step)
    assert ends.tolist() == [4, 7, 12]
    spec = DataSpec(kind="segments", batch_size=500, horizon=2, padding=False, goal_exits=exits)
    batch = SegmentSampler(stream(positions), spec, torch.device("cpu"), seed=0).sample()
    x = batch["observations"][..., 0]
    pairs = {(round(a, 3), round(b, 3)) for a, b in x.tolist()}
    assert (0.1, 1.0) not in pairs and (0.3, 9.0) not in pairs and (0.2, 0.1) in pairs
