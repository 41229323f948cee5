"""Loaded datasets on the training device: statistics and the batch samplers agents ask for.

The samplers keep every array as one tensor on the device and draw indices with a dedicated
``torch.Generator``: no DataLoader workers, no per-step host copies, and the generator state goes
into the checkpoint so a resumed run draws the same batches as an uninterrupted one.
"""

from __future__ import annotations

import numpy as np
import torch

from algorithms.common.contract import TRANSITION_FIELDS, DatasetStats, DataSpec
from tasks.spec import Dataset

MIN_STD = 1e-3  # floor for per-dimension std so constant dimensions do not blow up normalization


def episode_returns(rewards: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Undiscounted return of each episode given its exclusive end indices."""
    sums = np.add.reduceat(rewards.astype(np.float64), np.r_[0, ends[:-1]])
    return sums.astype(np.float64)


def compute_stats(dataset: Dataset) -> DatasetStats:
    """Normalization statistics of a dataset (std floored at ``MIN_STD``)."""
    a = dataset.arrays
    returns = episode_returns(a["rewards"], dataset.episode_ends())
    return DatasetStats(
        obs_mean=a["observations"].mean(0).astype(np.float32),
        obs_std=np.maximum(a["observations"].std(0), MIN_STD).astype(np.float32),
        act_mean=a["actions"].mean(0).astype(np.float32),
        act_std=np.maximum(a["actions"].std(0), MIN_STD).astype(np.float32),
        reward_min=float(a["rewards"].min()),
        reward_max=float(a["rewards"].max()),
        return_min=float(returns.min()),
        return_max=float(returns.max()),
        n_transitions=len(dataset),
        n_episodes=len(returns),
    )


def discounted_returns_to_go(rewards: np.ndarray, ends: np.ndarray, discount: float) -> np.ndarray:
    """``rtg[t] = r[t] + discount * rtg[t+1]`` within each episode (0 past its end)."""
    rtg = np.zeros(len(rewards), dtype=np.float64)
    start = 0
    for end in ends:
        acc = 0.0
        for t in range(end - 1, start - 1, -1):
            acc = rewards[t] + discount * acc
            rtg[t] = acc
        start = end
    return rtg.astype(np.float32)


def _to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    dtype = torch.float32 if array.dtype != np.int64 else torch.int64
    return torch.as_tensor(np.ascontiguousarray(array), dtype=dtype, device=device)


class TransitionSampler:
    """Uniform batches of single transitions: the fields of ``TRANSITION_FIELDS`` plus extras."""

    def __init__(self, dataset: Dataset, spec: DataSpec, device: torch.device, seed: int):
        fields = TRANSITION_FIELDS + tuple(spec.extra)
        self.tensors = {f: _to_device(dataset.arrays[f], device) for f in fields}
        self.n = len(dataset)
        self.batch_size = spec.batch_size
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def sample(self) -> dict[str, torch.Tensor]:
        idx = torch.randint(
            self.n, (self.batch_size,), device=self.generator.device, generator=self.generator
        )
        return {k: v[idx] for k, v in self.tensors.items()}


class SegmentSampler:
    """Uniform batches of ``horizon``-step windows inside one episode each.

    A window may start at any step of an episode; steps past the episode's end repeat its last
    step and carry ``mask = 0`` (Diffuser pads the same way, with zeros instead of repeats).
    Each batch holds ``[B, H, ...]`` for the transition fields, the extras, ``returns_to_go``
    (discounted, from each step to its episode's end), ``costs_to_go`` when ``costs`` is an extra,
    and ``mask``.
    """

    def __init__(self, dataset: Dataset, spec: DataSpec, device: torch.device, seed: int):
        ends = dataset.episode_ends()
        starts = np.r_[0, ends[:-1]]
        lengths = ends - starts
        self.episode_end = _to_device(np.repeat(ends, lengths).astype(np.int64), device)
        arrays = dict(dataset.arrays)
        arrays["returns_to_go"] = discounted_returns_to_go(arrays["rewards"], ends, spec.discount)
        fields = (*TRANSITION_FIELDS, *spec.extra, "returns_to_go")
        if "costs" in spec.extra:
            gamma = spec.discount if spec.cost_discount is None else spec.cost_discount
            arrays["costs_to_go"] = discounted_returns_to_go(arrays["costs"], ends, gamma)
            fields += ("costs_to_go",)
        self.tensors = {f: _to_device(arrays[f], device) for f in fields}
        self.n = len(dataset)
        self.batch_size = spec.batch_size
        self.offsets = torch.arange(spec.horizon, device=device)
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def sample(self) -> dict[str, torch.Tensor]:
        start = torch.randint(
            self.n, (self.batch_size,), device=self.generator.device, generator=self.generator
        )
        idx = start[:, None] + self.offsets
        last = self.episode_end[start][:, None] - 1
        batch = {k: v[torch.minimum(idx, last)] for k, v in self.tensors.items()}
        batch["mask"] = (idx <= last).float()
        return batch


def make_sampler(
    dataset: Dataset, spec: DataSpec, device: torch.device, seed: int
) -> TransitionSampler | SegmentSampler:
    """The sampler an agent's ``DataSpec`` asks for."""
    missing = [f for f in spec.extra if f not in dataset.arrays]
    if missing:
        raise ValueError(f"the agent needs dataset fields {missing}, which this dataset lacks")
    cls = TransitionSampler if spec.kind == "transitions" else SegmentSampler
    return cls(dataset, spec, device, seed)
