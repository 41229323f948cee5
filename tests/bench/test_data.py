"""Samplers and statistics of bench.data on hand-made datasets with known answers."""

import numpy as np
import pytest
import torch

from algorithms.common.contract import DataSpec
from bench.data import (
    SegmentSampler,
    TransitionSampler,
    compute_stats,
    discounted_returns_to_go,
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
