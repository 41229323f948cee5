"""DiffStitch (a dataset transform): its windows, masks, dynamics check and stitches, on a small
synthetic chain task whose dynamics are known (``s' = s + 0.1 * [a, a_0]``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import algorithms
from algorithms import diffstitch
from algorithms.common.contract import DatasetTransform, TaskInfo
from algorithms.common.planning import StateLayout, make_normalizer
from bench.data import compute_stats, make_sampler
from tasks.spec import Dataset, Provenance

INFO = TaskInfo("toy-chain", "toy", obs_dim=3, act_dim=2, max_episode_steps=60)
TINY = diffstitch.Config(
    horizon=16,
    n_diffusion_steps=5,
    dim=8,
    dim_mults=(1, 2),
    inv_hidden=16,
    batch_size=16,
    ema_start=10,
    train_steps=60,
    returns_scale=10.0,
    target_return=0.9,
    stitch_low=4,
    stitch_high=10,
    similarity=0.0,
    deviation=1e6,
    target_share=0.2,
    stitch_batch=8,
    target_batch=8,
    generate_limit=200,
    max_rounds=2,
    ensemble_size=3,
    n_elites=2,
    dynamics_hidden=16,
    dynamics_depth=2,
    weight_decay=(2.5e-5, 5e-5, 1e-4),
    dynamics_max_epochs=3,
)


def chain_arrays(episodes: int = 12, length: int = 60, seed: int = 0) -> dict[str, np.ndarray]:
    """Episodes of ``s' = s + 0.1 [a_0, a_1, a_0]``, reward ``s_0``: episode ``i`` drifts with
    its own mean action, so returns differ and windows of high and low return exist."""
    rng = np.random.default_rng(seed)
    obs, act, nxt = [], [], []
    for i in range(episodes):
        s = rng.normal(size=3).astype(np.float32) * 0.1
        drift = (i / episodes - 0.5) * 1.5
        for _ in range(length):
            a = np.clip(drift + 0.3 * rng.normal(size=2), -1, 1).astype(np.float32)
            s2 = s + 0.1 * np.array([a[0], a[1], a[0]], dtype=np.float32)
            obs.append(s), act.append(a), nxt.append(s2)
            s = s2
    obs, act, nxt = np.array(obs), np.array(act), np.array(nxt)
    timeouts = np.zeros(len(obs), dtype=bool)
    timeouts[length - 1 :: length] = True
    return {
        "observations": obs,
        "actions": act,
        "rewards": obs[:, 0].copy(),
        "next_observations": nxt,
        "terminals": np.zeros(len(obs), dtype=bool),
        "timeouts": timeouts,
    }


def as_dataset(arrays: dict[str, np.ndarray]) -> Dataset:
    provenance = Provenance("synthetic", "memory", "0" * 64, len(arrays["rewards"]), 12)
    return Dataset(arrays, provenance, ref_min_score=0.0, ref_max_score=1.0)


@pytest.fixture(scope="module")
def chain():
    arrays = chain_arrays()
    dataset = as_dataset(arrays)
    return arrays, dataset, compute_stats(dataset)


def run_tiny(chain, cfg=TINY, seed: int = 0):
    arrays, dataset, stats = chain
    sampler = lambda spec, s: make_sampler(dataset, spec, torch.device("cpu"), s)  # noqa: E731
    return diffstitch.augment(cfg, arrays, INFO, stats, sampler, torch.device("cpu"), seed, 1.0)


def test_registered_apart_from_agents_with_the_transform_contract():
    assert "diffstitch" in algorithms.augmentations() and "diffstitch" not in algorithms.ALGORITHMS
    assert isinstance(algorithms.load_augmentation("diffstitch"), DatasetTransform)
    with pytest.raises(KeyError, match="valid: none, diffstitch"):
        algorithms.load_augmentation("mixup")


def test_paper_settings_per_dataset_and_bad_knobs(chain):
    stats = chain[2]
    hopper = dataclasses.replace(INFO, task_id="hopper-medium-v2")
    cfg = diffstitch.resolve(diffstitch.Config(), hopper, stats)
    assert (cfg.target_return, cfg.deviation, cfg.similarity) == (0.9, 1.5, 0.8)
    assert cfg.returns_scale == 400.0
    with pytest.raises(ValueError, match=r"augment\.stitch_low"):
        diffstitch.resolve(dataclasses.replace(TINY, stitch_low=20), INFO, stats)


def test_training_mask_knows_the_first_state_and_one_block():
    known = diffstitch.random_block_mask(2000, 16, torch.Generator().manual_seed(0))
    assert known[:, 0].all() and not known[:, -1].any()
    rest = torch.nn.functional.pad(known[:, 1:].int(), (1, 0))
    assert ((rest[:, 1:] - rest[:, :-1]) == 1).sum(1).eq(1).all()  # exactly one block
    assert known[:, 1].any() and known[:, -2].any()


def test_windows_are_the_top_returns_to_go(chain):
    arrays = chain[0]
    windows = diffstitch.top_windows(arrays, 16, 0.99, 0.1)
    starts, ends = diffstitch.episode_bounds(arrays)
    rtg = diffstitch.returns_to_go(arrays["rewards"], starts, ends, 0.99)
    left = np.repeat(ends, ends - starts) - np.arange(len(rtg))
    eligible = rtg[left > 16]
    assert len(windows.starts) == round(0.1 * len(rtg))
    assert windows.returns.min() >= np.sort(eligible)[-len(windows.starts)]
    assert (left[windows.starts] > 16).all()


def test_dynamics_check_rejects_an_injected_inconsistent_transition(chain):
    arrays, _, stats = chain
    cfg = diffstitch.resolve(TINY, INFO, stats)
    rng = np.random.default_rng(0)
    model, _ = diffstitch.train_dynamics(
        dataclasses.replace(cfg, dynamics_max_epochs=30, dynamics_hidden=64), arrays, "cpu", rng
    )
    obs = torch.as_tensor(arrays["observations"][:200])
    act = torch.as_tensor(arrays["actions"][:200])
    pred, _ = model.predict(obs, act, torch.Generator().manual_seed(0))
    true = torch.as_tensor(arrays["next_observations"][:200])
    fake = true + torch.tensor([0.5, -0.5, 0.5])  # a jump the dynamics cannot make
    norm_err = lambda x: (((x - pred) / torch.as_tensor(stats.obs_std)) ** 2).sum(-1)  # noqa: E731
    assert norm_err(true).mean() < 0.1 * norm_err(fake).mean()
    # the same error through the stitch check: the consistent copy passes, the jump is rejected
    layout = diffstitch.StateLayout(tuple(range(3)))
    norm = diffstitch.make_normalizer("gaussian", stats, layout, torch.device("cpu"))
    stitcher = diffstitch.Stitcher(cfg, 3, 2, torch.device("cpu"))
    window = torch.as_tensor(arrays["observations"][:16])[None].repeat(2, 1, 1)
    window[1, 5] += torch.tensor([0.5, -0.5, 0.5])
    rnd = diffstitch.Round(
        np.array([0, 0]), np.array([20, 20]), np.array([1e9, 1e9]), np.array([9, 9])
    )
    deviation = float(norm_err(true).max()) * 4 + 0.05
    checked = diffstitch.check_stitches(
        dataclasses.replace(cfg, deviation=deviation),
        rnd,
        window,
        norm.states(window),
        stitcher,
        norm,
        model,
        np.array([0.0, 0.0]),
        None,
        torch.Generator().manual_seed(0),
    )
    assert checked.status[1] == "deviated"


def test_termination_rule_rejects_hopper_falls():
    rule = diffstitch.termination_rule(dataclasses.replace(INFO, task_id="hopper-medium-v2"))
    standing, fallen = np.zeros((1, 11)), np.zeros((1, 11))
    standing[0, 0], fallen[0, 0] = 1.25, 0.5
    assert not rule(standing).any() and rule(fallen).all()
    assert diffstitch.termination_rule(INFO) is None


def test_stitches_join_source_to_target_and_beat_the_source(chain):
    arrays = chain[0]
    out = run_tiny(chain)
    a = out.arrays
    assert out.accepted == len(a["rewards"]) > 0 and out.generated >= out.accepted
    ends = np.flatnonzero(a["timeouts"]) + 1
    obs = arrays["observations"]
    source_rows = {tuple(r) for r in obs}
    for start, end in zip(np.r_[0, ends[:-1]], ends, strict=True):
        # the stitch starts exactly at a source state and ends exactly on a target window's
        # first state; in between each next state is the following transition's state
        assert tuple(a["observations"][start]) in source_rows
        assert tuple(a["next_observations"][end - 1]) in source_rows
        assert np.array_equal(
            a["next_observations"][start : end - 1], a["observations"][start + 1 : end]
        )
        assert a["backed_up_return"][start] >= a["source_return"][start]
    # similarity 0 admits every target: every dream, and every data continuation, finds one
    assert out.stats["dream_target_rate"] == out.stats["data_target_rate"] == 1.0
    assert set(out.checkpoints) == {
        "diffusion",
        "diffusion_ema",
        "inverse_dynamics",
        "dynamics_ensemble",
    }


def test_the_target_states_follow_the_stitch_point(chain):
    arrays, _, stats = chain
    cfg = diffstitch.resolve(TINY, INFO, stats)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    layout = diffstitch.StateLayout(tuple(range(3)))
    norm = diffstitch.make_normalizer("cdf", stats, layout, torch.device("cpu"))
    stitcher = diffstitch.Stitcher(cfg, 3, 2, torch.device("cpu"))
    sources = diffstitch.top_windows(arrays, 16, 0.99, 0.3)
    targets = diffstitch.top_windows(arrays, 16, 0.99, 0.2)
    states = norm.states(torch.as_tensor(arrays["observations"][targets.starts]))
    rnd, raw, _ = diffstitch.stitch_round(
        cfg, stitcher, norm, arrays, sources, targets, states, rng, torch.device("cpu")
    )
    obs = arrays["observations"]
    for j in np.flatnonzero(rnd.target >= 0):
        p = int(rnd.point[j])
        assert torch.equal(raw[j, 0], torch.as_tensor(obs[rnd.source[j]]))
        assert torch.equal(raw[j, p:], torch.as_tensor(obs[rnd.target[j] : rnd.target[j] + 16 - p]))


def test_same_seed_same_stitches(chain):
    first, second = run_tiny(chain, seed=3), run_tiny(chain, seed=3)
    for key, value in first.arrays.items():
        assert np.array_equal(value, second.arrays[key]), key


def test_data_target_rate_finds_the_targets_the_data_leads_to(chain):
    """Sources placed ``stitch_low`` steps before a target reach it along the data (rate 1); a
    threshold no cosine can meet leaves none (rate 0)."""
    arrays, _, stats = chain
    cfg = diffstitch.resolve(
        dataclasses.replace(TINY, similarity=0.9999, target_batch=10_000), INFO, stats
    )
    norm = make_normalizer(cfg.normalizer, stats, StateLayout((0, 1, 2)), "cpu")
    targets = diffstitch.top_windows(arrays, cfg.horizon, cfg.discount, cfg.target_share)
    states = norm.states(torch.as_tensor(arrays["observations"][targets.starts]))
    before = targets.starts[targets.starts % 60 >= cfg.stitch_low] - cfg.stitch_low
    sources = diffstitch.Windows(before, np.zeros(len(before)))
    rng = np.random.default_rng(0)
    rate = diffstitch.data_target_rate(
        cfg, arrays["observations"], sources, targets, states, norm, rng
    )
    assert rate == 1.0
    never = dataclasses.replace(cfg, similarity=1.01)
    rate = diffstitch.data_target_rate(
        never, arrays["observations"], sources, targets, states, norm, rng
    )
    assert rate == 0.0
