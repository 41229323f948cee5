"""The contract between the harness and every algorithm.

The harness builds an agent as ``module.Agent(cfg, info, stats, device)`` where ``module`` is
``algorithms.<name>`` and ``cfg`` is an instance of ``module.Config``. It then calls

* ``agent.update(batch) -> dict[str, Tensor]``: one training step of every trained component.
  The values are detached scalar tensors; the harness reads them (one host sync) only when it
  logs, so an update never forces a device-to-host copy.
* ``agent.act(obs) -> actions``: ``obs`` is a float32 array ``[n_envs, obs_dim]`` straight from
  the vector env; the result is ``[n_envs, act_dim]`` inside the action bounds.
* ``agent.reset(done=None)``: clear per-environment state (histories, open-loop plans) of the
  environments flagged in the boolean array ``done`` (all of them when ``None``).
* ``agent.state_dict()`` / ``agent.load_state_dict(sd)``: everything needed to resume training
  (networks, EMA copies, optimizers, step counters).

Safe agents may also define ``observe_cost(costs)``, called by the evaluator after every env step
with that step's per-environment costs ``[n_envs]`` (TREBI spends its budget with them), and
``planned_barrier_min() -> float | None``, the smallest barrier value over every state the agent
planned since its last full ``reset()``, not counting observed states it inpainted (the
evaluator records it beside the executed states').

The agent declares the data it trains on with ``data_spec`` (a :class:`DataSpec`); the harness
builds the matching sampler. Algorithms import nothing from ``bench``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import torch

TRANSITION_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals")


@dataclass(frozen=True)
class TaskInfo:
    """What an agent may know about its task: shapes, bounds, kind and budget."""

    task_id: str
    kind: str  # "locomotion" | "maze" | "toy" | "safe" | "multi-agent"
    obs_dim: int
    act_dim: int
    action_low: float = -1.0
    action_high: float = 1.0
    max_episode_steps: int = 1000
    goal_dims: tuple[int, ...] = ()  # indices of the observation that hold the goal, if any
    n_agents: int = 1
    # Safe tasks (tasks.safety): the per-episode budget on the cumulative cost discounted by
    # ``cost_discount``, and state constraints: objects with ``dims`` (observation dims),
    # ``value(states) -> b`` (>= 0 is safe) and ``gradient(states) -> db/ds over dims``, for
    # numpy arrays and torch tensors ``[..., obs_dim]`` alike.
    cost_budget: float | None = None
    cost_discount: float = 1.0
    barriers: tuple = ()
    dataset_task: str | None = None  # a safe task trains on this task's data

    @property
    def data_id(self) -> str:
        """The task whose dataset (and per-dataset paper settings) this task uses."""
        return self.dataset_task or self.task_id


@dataclass(frozen=True)
class DatasetStats:
    """Dataset statistics the agent may use for normalization (numpy, float32)."""

    obs_mean: np.ndarray
    obs_std: np.ndarray
    act_mean: np.ndarray
    act_std: np.ndarray
    reward_min: float
    reward_max: float
    return_min: float  # smallest episode return in the dataset
    return_max: float  # largest episode return in the dataset
    n_transitions: int
    n_episodes: int


@dataclass(frozen=True)
class DataSpec:
    """What an agent trains on.

    ``kind="transitions"``: batches of single steps with :data:`TRANSITION_FIELDS` (+ ``extra``),
    each ``[B, ...]``; ``terminals`` is float (1.0 where the episode truly ended, not on timeouts).
    ``kind="segments"``: windows of ``horizon`` consecutive steps of one episode, each field
    ``[B, horizon, ...]``, plus ``returns_to_go`` (discounted return from each step to the end of
    the episode with ``discount``) and ``mask`` (1.0 on real steps, 0.0 on padding past an
    episode's end). With ``"costs"`` in ``extra`` (safe tasks) segments also carry
    ``costs_to_go``, the cost from each step to the episode's end discounted with
    ``cost_discount`` (``None``: ``discount``).
    """

    kind: Literal["transitions", "segments"] = "transitions"
    batch_size: int = 256
    horizon: int = 1
    discount: float = 0.99
    extra: tuple[str, ...] = field(default_factory=tuple)  # e.g. ("costs",)
    cost_discount: float | None = None


class Agent(Protocol):
    """Structural type every ``algorithms.<name>.Agent`` satisfies."""

    data_spec: DataSpec

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...

    def act(self, obs: np.ndarray) -> np.ndarray: ...

    def reset(self, done: np.ndarray | None = None) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...
