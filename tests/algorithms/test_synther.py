"""SynthER (a dataset transform): the EDM model learns a bimodal transition distribution, samples
split back into transitions, and a seed fixes the result."""

from __future__ import annotations

import numpy as np
import torch

from algorithms import synther
from algorithms.common.contract import TaskInfo
from bench.data import compute_stats
from tasks.spec import Dataset, Provenance

INFO = TaskInfo("toy-modes", "toy", obs_dim=1, act_dim=1, max_episode_steps=1)
TINY = synther.Config(
    mlp_width=256, depth=2, dim_t=32, batch_size=256, n_sample_steps=32, sample_batch=1000
)


def bimodal(n: int = 4000, seed: int = 0) -> dict[str, np.ndarray]:
    """Transitions whose state is +1 or -1 (std 0.05), the action its sign, the reward the
    state, the next state the state again; a tenth terminal."""
    rng = np.random.default_rng(seed)
    sign = rng.choice([-1.0, 1.0], size=(n, 1)).astype(np.float32)
    obs = sign + 0.05 * rng.normal(size=(n, 1)).astype(np.float32)
    return {
        "observations": obs,
        "actions": sign * 0.5,
        "rewards": obs[:, 0].copy(),
        "next_observations": obs.copy(),
        "terminals": rng.random(n) < 0.1,
        "timeouts": np.ones(n, dtype=bool),
    }


def run(arrays, steps: int, seed: int = 0, n: int = 1000):
    cfg = synther.Config(**{**TINY.__dict__, "train_steps": steps, "n_samples": n})
    provenance = Provenance("synthetic", "memory", "0" * 64, len(arrays["rewards"]), 1)
    stats = compute_stats(Dataset(arrays, provenance, 0.0, 1.0))
    return synther.augment(cfg, arrays, INFO, stats, None, torch.device("cpu"), seed, 1.0)


def near_a_mode(out) -> float:
    obs = out.arrays["observations"][:, 0]
    return float(np.mean(np.abs(np.abs(obs) - 1.0) < 0.25))


def test_learns_the_two_modes_by_a_margin():
    arrays = bimodal()
    untrained, trained = run(arrays, steps=1), run(arrays, steps=1500)
    assert trained.accepted == trained.generated == 1000
    assert near_a_mode(trained) > 0.8 and near_a_mode(trained) > near_a_mode(untrained) + 0.3
    # transitions stay coherent: the action's sign follows the state's
    a = trained.arrays
    agree = np.sign(a["observations"][:, 0]) == np.sign(a["actions"][:, 0])
    assert agree.mean() > 0.8


def test_samples_split_into_one_step_episodes():
    samples = np.array([[0.1, 0.2, 0.3, 0.4, 0.9], [1.0, 5.0, 2.0, 3.0, 0.1]], np.float32)
    out = synther.split_samples(samples, INFO, threshold=0.5)
    assert out["terminals"].tolist() == [True, False] and out["timeouts"].tolist() == [False, True]
    assert out["actions"].max() <= INFO.action_high and out["next_observations"].shape == (2, 1)


def test_same_seed_same_samples():
    arrays = bimodal(500)
    first, second = run(arrays, 5, seed=2, n=50), run(arrays, 5, seed=2, n=50)
    assert all(np.array_equal(first.arrays[k], second.arrays[k]) for k in first.arrays)
