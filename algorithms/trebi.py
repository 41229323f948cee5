"""TREBI: Safe Offline Reinforcement Learning with Real-Time Budget Constraints
(Lin, Tang, Wu, Yu, Mao, Xie, Wang & Wang, ICML 2023, arXiv:2306.00603).

Method: Diffuser (:mod:`algorithms.diffuser`) with a second value model, the discounted
cost-to-go of a noisy segment. At every guided denoising step the plans whose predicted cost
exceeds the remaining budget are also pushed down the cost gradient; among the final plans the
best-valued one within budget is executed (the cheapest one when none is), and the budget left
shrinks with every step's cost.

Defaults follow the official code (qianlin04/Safe-offline-RL-with-diffusion-model), kept per task
family in :data:`PAPER_DEFAULTS`:
- model and planner: Diffuser's locomotion setting (``config/locomotion.py``: H = 32, T = 20,
  x0-prediction, ``action_weight`` 10, mults (1, 2, 4, 8), 64 plans, guide scale 0.1, t_stopgrad 2,
  2 guide steps scaled by the posterior variance; the same per-dataset overrides as Diffuser's,
  looked up by the dataset under a ``velocity-*`` task), reward and cost values on the same
  network with discount 0.997, ``cost_grad_weight`` 5; the safe control tasks (kind ``safe``:
  safe-pendulum, safe-reacher) take ``config/toy_safe_env.py``: the same model, 128 plans,
  value discount 0.99, ``cost_grad_weight`` 20 (its ``test_cost_toyenv.sh`` runs 1000);
- guidance (``diffuser/sampling/functions.py``, ``n_step_guided_and_constrained_p_sample``,
  ``guide_type`` 0): for t >= t_stopgrad, n_guide_steps times,
  ``w = cost_grad_weight * exp(clamp((C - thr) / thr, 0, 1))``,
  ``grad = dV/dx - w * 1[C > thr] * dC/dx``, ``x += scale * var_t * grad``, then inpainting;
- ranking: when no plan has ``C <= thr`` the plan with the lowest ``C`` wins, else the best ``V``
  among those with ``C <= thr`` (the official subtracts 1e8 from the others' values, here they
  score -inf);
- budget (``scripts/plan_cost_guided.py``): ``remain = budget - sum_{k<t} gamma^k c_k`` and the
  threshold at step t is ``remain / gamma^t``, so it is compared with a cost-to-go counted from t.
Units: the harness resolves the episode budget on the cost discounted by ``TaskInfo.cost_discount``
(``TaskInfo.cost_budget``); that discount is both the bookkeeping's and the cost value targets'
(``DataSpec.cost_discount``), so predicted cost-to-go and remaining budget are in the same units.
TREBI uses its value discount for both, which is ``TaskInfo.cost_discount`` (0.997) on the
velocity tasks; on safe-pendulum / safe-reacher our budget is on the plain sum (discount 1) where
the official trains cost values with 0.99 and rescales an undiscounted budget to them.
Differences and why:
- all of Diffuser's (see its docstring): z-scored data, the harness's padded segment windows, no
  termination penalty (official -100 on rewards, +100 on costs: the segment sampler's targets
  carry none), reward and cost values trained alongside the diffuser in every ``update`` (official:
  three separate runs);
- thresholds are per environment, ``[n_envs]`` broadcast over each env's plans, so one batched
  denoising pass plans for every evaluation env under its own remaining budget (the official
  plans one env with one scalar threshold); "no plan within budget" is decided per env;
- plans are ranked by both values of the final sample at step 0, as our Diffuser ranks (official:
  the values seen in the last guided step, before the last denoising update);
- ``w`` uses ``thr = 0`` as the limit ``thr -> 0+`` (the official divides by zero there, which
  gives NaN for a plan predicted at zero cost);
- maze tasks (goal inpainting, no reward guidance) are outside TREBI: the agent refuses them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from algorithms import diffuser
from algorithms.common.contract import DatasetStats, DataSpec, TaskInfo
from algorithms.common.diffusion import ClassifierGuidance
from algorithms.common.planning import SegmentValue, best_of
from algorithms.common.unet import TemporalValue

# Per task family: config/locomotion.py (the Diffuser values and the 'plan' cost_grad_weight) and
# config/toy_safe_env.py for the safe control tasks (everything else as locomotion).
PAPER_DEFAULTS: dict[str, dict] = {
    "locomotion": {
        **diffuser.PAPER_DEFAULTS["locomotion"],
        "value_discount": 0.997,
        "cost_grad_weight": 5.0,
    },
    "safe": {
        **diffuser.PAPER_DEFAULTS["locomotion"],
        "n_plans": 128,
        "value_discount": 0.99,
        "cost_grad_weight": 20.0,
    },
}


@dataclass
class Config(diffuser.Config):
    """Diffuser's fields plus the cost model's; ``None`` takes the task family's value."""

    value_discount: float | None = None  # the reward value's; the cost value's is the task's
    cost_grad_weight: float | None = None
    cost_value_lr: float = 2e-4  # 'cost_values' learning_rate, EMA as the diffuser's


def task_family(info: TaskInfo) -> str:
    """``safe`` for the safe control tasks, ``locomotion`` otherwise; mazes are refused."""
    if info.kind == "maze":
        raise ValueError(
            f"TREBI plans against a cost budget with reward guidance; maze task {info.task_id!r} "
            "(goal inpainting, no reward value) is outside it"
        )
    return "safe" if info.kind == "safe" else "locomotion"


def resolve_config(cfg: Config, info: TaskInfo) -> Config:
    """``cfg`` with TREBI's per-family values, then Diffuser's, where a field is ``None``."""
    defaults = dict(PAPER_DEFAULTS[task_family(info)])
    defaults.update(diffuser.TASK_OVERRIDES.get(info.data_id, {}))
    filled = {k: v for k, v in defaults.items() if getattr(cfg, k) in (None, "auto")}
    out = diffuser.resolve_config(dataclasses.replace(cfg, **filled), info)
    if not out.guided:
        raise ValueError("TREBI plans with its reward and cost values; guided must be True")
    return out


def constraint_weights(cost: Tensor, thresholds: Tensor, weight: float) -> Tensor:
    """TREBI's cost-gradient weights ``[n, P]``: ``weight * exp(clamp((C - thr) / thr, 0, 1))``
    on plans over their env's threshold ``thresholds [n]``, 0 on the others."""
    thr = thresholds.unsqueeze(1)
    tiny = torch.finfo(cost.dtype).tiny
    excess = (cost - thr) / torch.where(thr == 0, torch.full_like(thr, tiny), thr)
    w = weight * excess.clamp(0.0, 1.0).exp()
    return torch.where(cost > thr, w, torch.zeros_like(w))


def constrained_scores(reward: Tensor, cost: Tensor, thresholds: Tensor) -> Tensor:
    """Scores ``[n, P]`` whose argmax is TREBI's choice: the best reward within budget, infeasible
    plans last; where no plan of an env is within budget, the lowest cost."""
    feasible = cost <= thresholds.unsqueeze(1)
    within = torch.where(feasible, reward, torch.full_like(reward, -torch.inf))
    return torch.where(feasible.any(1, keepdim=True), within, -cost)


class CostBudget:
    """Each environment's remaining budget: discounted cost spent and steps taken this episode."""

    def __init__(self, budget: float, discount: float):
        self.budget, self.discount = float(budget), float(discount)
        self.spent = np.zeros(0)
        self.steps = np.zeros(0, dtype=np.int64)

    def _fit(self, n_envs: int) -> None:
        """Start fresh episodes when the set of environments changes."""
        if len(self.spent) != n_envs:
            self.spent = np.zeros(n_envs)
            self.steps = np.zeros(n_envs, dtype=np.int64)

    def reset(self, done: np.ndarray | None = None) -> None:
        """New episodes for the environments flagged in ``done`` (all when None)."""
        if done is None:
            self._fit(0)
        elif len(done) == len(self.spent):
            done = np.asarray(done, dtype=bool)
            self.spent[done], self.steps[done] = 0.0, 0

    def observe(self, costs: np.ndarray) -> None:
        """Spend one step's per-environment costs ``[n_envs]``."""
        costs = np.asarray(costs, dtype=np.float64).reshape(-1)
        self._fit(len(costs))
        self.spent += self.discount**self.steps * costs
        self.steps += 1

    def thresholds(self, n_envs: int) -> np.ndarray:
        """``(budget - spent) / discount^t`` per environment: the budget left for a cost-to-go."""
        self._fit(n_envs)
        return (self.budget - self.spent) / self.discount**self.steps


class Agent(diffuser.Agent):
    """TREBI following :mod:`algorithms.common.contract` (a Diffuser with a cost budget)."""

    def __init__(
        self, cfg: Config, info: TaskInfo, stats: DatasetStats, device: torch.device | str
    ):
        if info.cost_budget is None:
            raise ValueError(
                f"TREBI needs a cost budget; task {info.task_id!r} has none (TaskInfo.cost_budget)"
            )
        super().__init__(resolve_config(cfg, info), info, stats, device)
        cfg = self.cfg
        self.data_spec = DataSpec(
            kind="segments",
            batch_size=cfg.batch_size,
            horizon=cfg.horizon,
            discount=cfg.value_discount,
            extra=("costs",),
            cost_discount=info.cost_discount,
        )
        net = TemporalValue(cfg.horizon, self.transition_dim, cfg.dim, cfg.dim_mults)
        self.cost_value = SegmentValue(
            net.to(self.device), cfg.cost_value_lr, cfg.ema_decay, cfg.ema_start, cfg.ema_every
        )
        self.budget = CostBudget(info.cost_budget, info.cost_discount)
        self.due_thresholds: np.ndarray | None = None  # set by act for the envs due to plan
        self.thresholds = torch.zeros(0, device=self.device)  # of the plan being sampled

    # -- training ----------------------------------------------------------------------------

    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Diffuser's update, then one step of the cost value on the segment's cost-to-go."""
        out = super().update(batch)
        x0 = self.trajectories(batch)
        hook = self.constraints(x0.shape, x0[:, 0, self.act_dim :], None).hook()
        target = batch["costs_to_go"][:, 0]
        out["cost_value_loss"] = self.cost_value.update(self.diffusion, x0, target, hook)
        return out

    # -- acting ------------------------------------------------------------------------------

    def plan(self, obs: Tensor, thresholds: Tensor | None = None) -> Tensor:
        """Best plans ``[n, H, C]`` for observations ``[n, obs]`` under cost thresholds ``[n]``.

        Without ``thresholds``: those ``act`` prepared for the envs due to plan, else the whole
        budget (a fresh episode).
        """
        if thresholds is None:
            pending = self.due_thresholds
            full = np.full(len(obs), self.budget.budget)
            thresholds = torch.as_tensor(pending if pending is not None else full)
        self.thresholds = thresholds.to(self.device, torch.float32)
        return super().plan(obs)

    def guidance(self) -> ClassifierGuidance | None:
        """TREBI's constrained value gradient, with the thresholds of the plan being sampled."""
        cfg = self.cfg
        if cfg.guide_scale <= 0:
            return None
        return ClassifierGuidance(
            self.constrained_gradient,
            scale=cfg.guide_scale,
            n_steps=cfg.n_guide_steps,
            t_stopgrad=cfg.t_stopgrad,
        )

    def constrained_gradient(self, x: Tensor, t: Tensor) -> Tensor:
        """``dV/dx - w * dC/dx`` for segments ``[n, P, H, C]`` (:func:`constraint_weights`)."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (reward_grad,) = torch.autograd.grad(self.value(x, t).sum(), x)
            cost = self.cost_value(x, t)
            (cost_grad,) = torch.autograd.grad(cost.sum(), x)
        w = constraint_weights(cost.detach(), self.thresholds, self.cfg.cost_grad_weight)
        return reward_grad - w[..., None, None] * cost_grad

    def rank(self, x: Tensor) -> Tensor:
        """The best plan within each env's budget, or its cheapest (:func:`constrained_scores`)."""
        if self.cfg.n_plans == 1:
            return x[:, 0]
        t0 = torch.zeros(x.shape[:2], dtype=torch.long, device=self.device)
        scores = constrained_scores(self.plan_values(x), self.cost_value(x, t0), self.thresholds)
        return best_of(x, scores)

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Diffuser's acting, each env due to plan under the budget it has left."""
        due = self.plans.due(len(obs))
        self.due_thresholds = self.budget.thresholds(len(obs))[due]
        try:
            return super().act(obs)
        finally:
            self.due_thresholds = None

    def observe_cost(self, costs: np.ndarray) -> None:
        """Spend the last step's per-environment costs ``[n_envs]`` from the budgets."""
        self.budget.observe(costs)

    def reset(self, done: np.ndarray | None = None) -> None:
        """Diffuser's reset; the flagged environments (all when None) get the whole budget."""
        super().reset(done)
        self.budget.reset(done)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "cost_value": self.cost_value.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.cost_value.load_state_dict(state["cost_value"])
