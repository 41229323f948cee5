"""The contract between the harness and every algorithm, whole: what is not written here, the
harness does not rely on.

**Module.** ``algorithms.<name>`` defines

* ``Config``: a dataclass, the single source of the algorithm's hyperparameters, one comment per
  field; a field left ``None`` means "the paper's value for this task", filled in from the
  module's :class:`~algorithms.common.defaults.PaperDefaults` by
  :func:`~algorithms.common.defaults.fill`; names follow :data:`VOCABULARY`;
* ``resolve(cfg, info, stats) -> Config``: the Config with every paper default filled in and
  every choice validated (a bad value raises ``ValueError`` naming ``algo.<field>`` and the valid
  values). The harness calls it before any data-hungry work and records its result; the agent
  calls it again itself. Nothing else rewrites a Config field;
* ``Agent(cfg, info, stats, device, train_steps)``: ``train_steps`` is the run's training length
  (learning-rate schedules read it; the Config does not carry it).

**Agent.** The harness then calls

* ``agent.update(batch) -> dict[str, Tensor]``: one training step of every trained component.
  The values are detached scalar tensors; the harness reads them (one host sync) only when it
  logs, so an update never forces a device-to-host copy.
* ``agent.act(obs) -> actions``: ``obs`` is a float32 array ``[n_envs, obs_dim]`` straight from
  the vector env; the result is ``[n_envs, act_dim]`` inside the action bounds.
* ``agent.reset(done=None)``: clear per-environment state (histories, open-loop plans) of the
  environments flagged in the boolean array ``done`` (all of them when ``None``).
* ``agent.state_dict()`` / ``agent.load_state_dict(sd)``: everything needed to resume training
  (networks, EMA copies, optimizers, schedules, step counters), declared once as
  :attr:`Checkpointable.state_attrs`.
* ``agent.data_spec``: a :class:`DataSpec`, the data it trains on; the harness builds the
  matching sampler.

**Capabilities** beyond the core are Protocols, checked with ``isinstance`` (never ``getattr``):
:class:`CostObserver` (spends a cost budget), :class:`BarrierReporter` (reports its planned
states' barrier values) and :class:`OnlineAgent` (after offline pre-training, collects rollouts
in the harness's vector envs and updates from them). Multi-agent agents (MADiff, MA-BC,
MA-TD3+BC; tasks of kind ``"multi-agent"``, ``TaskInfo.n_agents`` > 1, ``obs_dim`` and
``act_dim`` per agent) keep the core contract with an agents axis: ``act`` maps
``[n_envs, n_agents, obs_dim]`` to ``[n_envs, n_agents, act_dim]``; batches carry the axis after
the batch (and horizon) axes: ``observations [B, (H,) n_agents, obs_dim]``, ``actions
[..., n_agents, act_dim]``, ``rewards`` and ``returns_to_go [..., n_agents]`` (each agent's own),
``terminals`` and ``mask`` without it; ``DatasetStats`` are per-agent widths pooled over agents,
its returns the team's (the per-step mean over agents, summed). Dataset transforms
(``augment=<name>``: DiffStitch, SynthER) are no agents: they rewrite the data before any agent
trains, registered apart in ``algorithms.AUGMENTATIONS`` (:class:`DatasetTransform`).

**Imports.** Algorithms import only from ``algorithms.common`` (never another algorithm, never
``tasks`` or ``bench``); task objects such as barrier functions reach them through
:class:`TaskInfo` and are used through their methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch

TRANSITION_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals")

# One name per concept across every Config (a field named otherwise is a bug).
VOCABULARY: dict[str, str] = {
    "n_diffusion_steps": "diffusion steps T of the noise schedule",
    "beta_schedule": "noise schedule: vp, cosine or linear",
    "ddim_steps": "sampler steps at acting time (None: all T DDPM steps)",
    "ema_decay": "decay of the EMA copy of the denoiser (or actor)",
    "ema_start": "training steps before the EMA starts averaging (it tracks the weights until then)",
    "ema_every": "training steps between EMA updates",
    "n_candidates": "samples (actions or plans) drawn per decision and ranked",
    "lr": "learning rate of the main model (``actor_lr``/``critic_lr`` where they differ)",
    "batch_size": "transitions or segments per update",
    "discount": "discount of values and returns",
    "tau": "Polyak rate of target networks",
    "expectile": "IQL expectile of V",
    "hidden": "hidden width of MLPs (``actor_hidden``/``critic_hidden`` where they differ)",
    "depth": "hidden layers of MLPs",
    "horizon": "planned (or sampled) segment length",
    "replan_every": "environment steps between new plans, executed open-loop between (0: once)",
    "warm_start": "share of T a replan denoises, from the last plan shifted (0: from pure noise)",
    "reward_norm": "reward transform before the critic: returns, minus_one, cql_antmaze or none",
}


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
    # Per-dimension quantiles ``[Q, dim]`` at the probabilities ``linspace(0, 1, Q)`` (row 0 the
    # minimum, row -1 the maximum): the limits and CDF normalizers of the planners read them.
    # ``bench.data.compute_stats`` always fills them; ``None`` only in hand-made statistics.
    obs_quantiles: np.ndarray | None = None
    act_quantiles: np.ndarray | None = None


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

    Segments only, each the agent's declaration of how its published code reads the data:
    ``terminal_reward`` / ``terminal_cost`` are added to the reward / cost of every step that
    ends an episode by termination (``terminals``, not timeouts) before ``returns_to_go`` /
    ``costs_to_go`` are summed (Diffuser's ``termination_penalty``; the batch's ``rewards`` and
    ``costs`` stay as recorded); ``padding=False`` draws only windows that lie whole inside one
    episode (``mask`` all ones); ``goal_exits`` replaces the dataset's episodes by those a
    :class:`GoalExits` cuts.
    """

    kind: Literal["transitions", "segments"] = "transitions"
    batch_size: int = 256
    horizon: int = 1
    discount: float = 0.99
    extra: tuple[str, ...] = field(default_factory=tuple)  # e.g. ("costs",)
    cost_discount: float | None = None
    terminal_reward: float = 0.0
    terminal_cost: float = 0.0
    padding: bool = True
    goal_exits: GoalExits | None = None


@dataclass(frozen=True)
class GoalExits:
    """Episodes cut where the agent leaves its goal (Diffuser's ``maze2d_set_terminals``).

    An episode ends at every step whose position (observation ``dims``) lies within ``radius``
    of the goal while the next step's does not. The goal is the fixed ``goal`` or, per step, the
    observation's ``goal_dims``. The dataset's own episode ends are dropped where the stream
    runs on (``next_observations[t]`` equals ``observations[t + 1]`` on ``dims``), so a
    continuous stream of goal-reaching runs becomes the paths between exits from one goal; a
    true restart (the position jumps) still ends an episode.
    """

    dims: tuple[int, ...]
    radius: float
    goal: tuple[float, ...] = ()
    goal_dims: tuple[int, ...] = ()


@runtime_checkable
class Agent(Protocol):
    """Structural type every ``algorithms.<name>.Agent`` satisfies."""

    data_spec: DataSpec

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...

    def act(self, obs: np.ndarray) -> np.ndarray: ...

    def reset(self, done: np.ndarray | None = None) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@runtime_checkable
class CostObserver(Protocol):
    """An agent that spends a cost budget: the evaluator calls ``observe_cost(costs)`` after every
    env step with that step's per-environment costs ``[n_envs]``."""

    def observe_cost(self, costs: np.ndarray) -> None: ...


@runtime_checkable
class BarrierReporter(Protocol):
    """A planner that reports ``planned_barrier_min()``: the smallest barrier value over every
    state it planned since its last full ``reset()``, not counting observed states it inpainted
    (``None`` when it planned nothing or the task has no barriers)."""

    def planned_barrier_min(self) -> float | None: ...


# ---------------------------------------------------------------------------------- online agents


@dataclass(frozen=True)
class OnlineSpec:
    """How an :class:`OnlineAgent` collects: each decision is a chunk of ``act_steps`` actions
    that the harness executes in one environment (stopping early where the episode ends; the
    rewards of the executed steps are summed), and one iteration is ``rollout_steps`` decisions
    in every environment."""

    act_steps: int = 1
    rollout_steps: int = 1


@dataclass
class Rollout:
    """One iteration's experience from ``N`` environments, ``S`` decisions each (numpy arrays).

    Row ``s`` holds what followed the agent's ``s``-th :meth:`OnlineAgent.explore` call of the
    iteration: ``obs [S, N, obs_dim]`` the observation it saw; ``rewards [S, N]`` the sum of the
    rewards of its executed steps; ``terminated [S, N]`` / ``truncated [S, N]`` its episode ended
    by termination / by the time limit during it (the harness then resets that environment);
    ``firsts [S, N]`` it was the first decision of an episode; ``next_obs [N, obs_dim]`` the
    observation after the last decision (to bootstrap values).
    """

    obs: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    firsts: np.ndarray
    next_obs: np.ndarray


@runtime_checkable
class OnlineAgent(Protocol):
    """An agent that, after offline pre-training, improves by interacting (``online.*`` knobs).

    The harness owns the environments (``n_envs`` of them in a vector env), their seeds and
    random state, and the count of environment steps; the agent owns what it learns. The harness
    calls ``start_online(n_envs)`` once when a run's online phase begins (not again when a killed
    run resumes: the agent's state says it began), then repeats an iteration: ``explore(obs)``
    ``rollout_steps`` times (``obs [n_envs, obs_dim]`` -> a stochastic chunk of actions
    ``[n_envs, act_steps, act_dim]`` inside the action bounds; the agent keeps what it needs of
    each call, e.g. its sampling chain, until the update), then ``improve(rollout)`` with the
    :class:`Rollout` of those calls, which updates the agent and forgets the kept calls (detached
    scalar tensors, as ``update``). Between iterations the harness evaluates with ``act`` and
    checkpoints ``state_dict()``; ``online_spec`` may depend on the Config, not on the phase.
    """

    online_spec: OnlineSpec

    def start_online(self, n_envs: int) -> None: ...

    def explore(self, obs: np.ndarray) -> np.ndarray: ...

    def improve(self, rollout: Rollout) -> dict[str, torch.Tensor]: ...


# ------------------------------------------------------------------------------ dataset transforms


@dataclass
class Augmented:
    """What a dataset transform returns: the transitions it adds and how it got them.

    ``arrays`` holds the new transitions only, D4RL layout (:data:`TRANSITION_FIELDS` plus
    ``timeouts``, float32 / bool, ``[N, ...]``), one generated piece after another, each piece's
    last step flagged ``timeouts`` so the harness can append them to the data as episodes.
    """

    arrays: dict[str, np.ndarray]  # the accepted transitions (the harness appends them)
    generated: int  # transitions generated before any check rejected some
    accepted: int  # transitions kept (``len(arrays["observations"])``)
    checkpoints: dict[str, dict]  # name -> state dict of every model trained (the harness hashes)
    stats: dict[str, Any] = field(default_factory=dict)  # method-specific counts and returns


@runtime_checkable
class DatasetTransform(Protocol):
    """An ``algorithms.<name>`` module registered in ``algorithms.AUGMENTATIONS`` (not an agent).

    It defines a ``Config`` (dataclass, paper defaults, a comment per field, like an agent's) and
    ``resolve(cfg, info, stats) -> Config`` (``ValueError`` naming ``augment.<field>``), and

    ``augment(cfg, arrays, info, stats, sampler, device, seed, budget) -> Augmented``:
    ``arrays`` are the dataset's D4RL arrays (read only); ``sampler(spec, seed)`` returns the
    harness's sampler for a :class:`DataSpec` (its ``sample()`` gives batches as an agent's do),
    so a transform trains its models on the batches agents see; ``budget`` (> 0) scales the
    transform's training and generation lengths (1.0: the paper's); the result depends on
    ``seed`` alone (same seed, same device and threads: the same arrays). The harness caches the
    result (keyed by the dataset's hash, the resolved Config, ``seed`` and ``budget``) and trains
    every agent on the original and the new transitions together.
    """

    Config: type

    def resolve(self, cfg: Any, info: TaskInfo, stats: DatasetStats) -> Any: ...

    def augment(
        self,
        cfg: Any,
        arrays: dict[str, np.ndarray],
        info: TaskInfo,
        stats: DatasetStats,
        sampler: Any,
        device: torch.device,
        seed: int,
        budget: float,
    ) -> Augmented: ...


class Checkpointable:
    """``state_dict`` / ``load_state_dict`` from a declared list of attributes.

    An agent lists in ``state_attrs`` every attribute that training changes: modules, optimizers,
    LR schedules, EMA copies (anything with ``state_dict``/``load_state_dict``) and plain values
    (step counters, tensors), and inherits the two methods; nothing is hand-written per agent.
    """

    state_attrs: tuple[str, ...] = ()

    def state_dict(self) -> dict[str, Any]:
        """Every declared attribute's state (plain values as they are)."""
        return {name: _state_of(getattr(self, name)) for name in self.state_attrs}

    def networks(self) -> list[torch.nn.Module]:
        """The declared networks: each module in ``state_attrs`` and each declared EMA copy's
        ``model`` (the harness's ``compile=true`` compiles every one of them in place)."""
        out = []
        for name in self.state_attrs:
            value = getattr(self, name)
            module = value if isinstance(value, torch.nn.Module) else getattr(value, "model", None)
            if isinstance(module, torch.nn.Module):
                out.append(module)
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore every declared attribute from ``state``; a missing or extra key is an error."""
        if set(state) != set(self.state_attrs):
            raise KeyError(
                f"state keys {sorted(state)} do not match declared {sorted(self.state_attrs)}"
            )
        for name in self.state_attrs:
            current = getattr(self, name)
            if hasattr(current, "load_state_dict"):
                current.load_state_dict(state[name])
            elif isinstance(current, torch.Tensor):
                current.copy_(state[name])
            else:
                setattr(self, name, state[name])


def _state_of(value: Any) -> Any:
    if hasattr(value, "state_dict"):
        return value.state_dict()
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    return value
