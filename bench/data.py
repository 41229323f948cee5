"""Loaded datasets on the training device: statistics and the batch samplers agents ask for.

The samplers keep every array as one tensor on the device and draw indices with a dedicated
``torch.Generator``: no DataLoader workers, no per-step host copies, and the generator state goes
into the checkpoint so a resumed run draws the same batches as an uninterrupted one.
"""

from __future__ import annotations

import numpy as np
import torch

from algorithms.common.contract import TRANSITION_FIELDS, DatasetStats, DataSpec, GoalExits
from tasks.spec import Dataset

MIN_STD = 1e-3  # floor for per-dimension std so constant dimensions do not blow up normalization
N_QUANTILES = 1001  # per-dimension quantiles in DatasetStats: every 0.1% of the data


def episode_returns(rewards: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Undiscounted return of each episode given its exclusive end indices."""
    sums = np.add.reduceat(rewards.astype(np.float64), np.r_[0, ends[:-1]])
    return sums.astype(np.float64)


def compute_stats(dataset: Dataset) -> DatasetStats:
    """Normalization statistics of a dataset (std floored at ``MIN_STD``)."""
    a = dataset.arrays
    rewards, ends = a["rewards"], dataset.episode_ends()
    if "infos/augmented" in a:  # the pieces a transform appended are no episodes (bench.augment)
        n = int(np.count_nonzero(a["infos/augmented"] == 0))
        rewards, ends = rewards[:n], ends[ends <= n]
    obs, act = a["observations"], a["actions"]
    if obs.ndim == 3:  # an agents axis: statistics pooled over agents, team returns (mean)
        obs, act = obs.reshape(-1, obs.shape[-1]), act.reshape(-1, act.shape[-1])
        rewards = rewards.mean(axis=-1)
    returns = episode_returns(rewards, ends)
    return DatasetStats(
        obs_mean=obs.mean(0).astype(np.float32),
        obs_std=np.maximum(obs.std(0), MIN_STD).astype(np.float32),
        act_mean=act.mean(0).astype(np.float32),
        act_std=np.maximum(act.std(0), MIN_STD).astype(np.float32),
        reward_min=float(a["rewards"].min()),
        reward_max=float(a["rewards"].max()),
        return_min=float(returns.min()),
        return_max=float(returns.max()),
        n_transitions=len(dataset),
        n_episodes=len(returns),
        obs_quantiles=quantiles(obs),
        act_quantiles=quantiles(act),
    )


def quantiles(values: np.ndarray) -> np.ndarray:
    """``[N_QUANTILES, dim]`` per-dimension quantiles at ``linspace(0, 1, N_QUANTILES)``."""
    probs = np.linspace(0.0, 1.0, N_QUANTILES)
    return np.quantile(values, probs, axis=0).astype(np.float32)


def discounted_returns_to_go(rewards: np.ndarray, ends: np.ndarray, discount: float) -> np.ndarray:
    """``rtg[t] = r[t] + discount * rtg[t+1]`` within each episode (0 past its end); trailing
    axes (per-agent rewards ``[N, n_agents]``) are kept."""
    rtg = np.zeros(rewards.shape, dtype=np.float64)
    start = 0
    for end in ends:
        acc = 0.0
        for t in range(end - 1, start - 1, -1):
            acc = rewards[t] + discount * acc
            rtg[t] = acc
        start = end
    return rtg.astype(np.float32)


def penalized(values: np.ndarray, terminals: np.ndarray, penalty: float) -> np.ndarray:
    """``values`` with ``penalty`` added on terminal steps (Diffuser's ``termination_penalty``)."""
    if penalty == 0.0:
        return values
    return values + penalty * terminals.astype(values.dtype)


def goal_exit_ends(arrays: dict[str, np.ndarray], ends: np.ndarray, exits: GoalExits) -> np.ndarray:
    """Exclusive episode ends under ``exits`` (:class:`GoalExits`): after every step at the goal
    whose next step is not, and at the dataset's ends where the position jumps; the last step."""
    dims = list(exits.dims)
    pos = arrays["observations"][:, dims]
    goal = arrays["observations"][:, list(exits.goal_dims)] if exits.goal_dims else exits.goal
    at_goal = np.linalg.norm(pos - np.asarray(goal, dtype=pos.dtype), axis=-1) < exits.radius
    cut = np.zeros(len(pos), dtype=bool)
    cut[:-1] = at_goal[:-1] & ~at_goal[1:]
    inner = ends[ends < len(pos)] - 1  # dataset episode ends with a following step
    jumps = ~np.isclose(arrays["next_observations"][inner][:, dims], pos[inner + 1], atol=1e-5)
    cut[inner[jumps.any(-1)]] = True
    cut[-1] = True
    return np.flatnonzero(cut) + 1


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

    With ``spec.padding`` a window may start at any step of an episode; steps past the
    episode's end repeat its last step and carry ``mask = 0`` (Diffuser pads the same way, with
    zeros instead of repeats). Without, windows start only where they fit whole in their
    episode, each such window equally likely. Episodes are the dataset's, or those
    ``spec.goal_exits`` cuts. Each batch holds ``[B, H, ...]`` for the transition fields, the
    extras, ``returns_to_go`` (discounted, from each step to its episode's end, with
    ``spec.terminal_reward`` on terminal steps), ``costs_to_go`` when ``costs`` is an extra (with
    ``spec.terminal_cost``), and ``mask``.
    """

    def __init__(self, dataset: Dataset, spec: DataSpec, device: torch.device, seed: int):
        arrays = dict(dataset.arrays)
        ends = dataset.episode_ends()
        if spec.goal_exits is not None:
            ends = goal_exit_ends(arrays, ends, spec.goal_exits)
        starts = np.r_[0, ends[:-1]]
        lengths = ends - starts
        self.episode_end = _to_device(np.repeat(ends, lengths).astype(np.int64), device)
        terminals = arrays["terminals"]
        rewards = penalized(arrays["rewards"], terminals, spec.terminal_reward)
        arrays["returns_to_go"] = discounted_returns_to_go(rewards, ends, spec.discount)
        fields = (*TRANSITION_FIELDS, *spec.extra, "returns_to_go")
        if "costs" in spec.extra:
            gamma = spec.discount if spec.cost_discount is None else spec.cost_discount
            costs = penalized(arrays["costs"], terminals, spec.terminal_cost)
            arrays["costs_to_go"] = discounted_returns_to_go(costs, ends, gamma)
            fields += ("costs_to_go",)
        self.tensors = {f: _to_device(arrays[f], device) for f in fields}
        self.starts = None  # None: any step starts a window
        if not spec.padding:
            self.starts = _to_device(self._whole_window_starts(starts, ends, spec), device)
        self.n = len(dataset)
        self.batch_size = spec.batch_size
        self.offsets = torch.arange(spec.horizon, device=device)
        self.generator = torch.Generator(device=device).manual_seed(seed)

    @staticmethod
    def _whole_window_starts(starts: np.ndarray, ends: np.ndarray, spec: DataSpec) -> np.ndarray:
        """Every step where a ``horizon``-step window fits inside its episode."""
        last = ends - spec.horizon  # the last start that fits, per episode
        keep = last >= starts
        if not keep.any():
            raise ValueError(
                f"no episode holds a whole window of {spec.horizon} steps (padding=False); the "
                f"longest has {int((ends - starts).max())}"
            )
        ranges = [np.arange(a, b + 1) for a, b in zip(starts[keep], last[keep], strict=True)]
        return np.concatenate(ranges).astype(np.int64)

    def sample(self) -> dict[str, torch.Tensor]:
        gen = self.generator
        if self.starts is None:
            start = torch.randint(self.n, (self.batch_size,), device=gen.device, generator=gen)
        else:
            pick = torch.randint(
                len(self.starts), (self.batch_size,), device=gen.device, generator=gen
            )
            start = self.starts[pick]
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
