"""TREBI: Safe Offline Reinforcement Learning with Real-Time Budget Constraints
(Lin, Tang, Wu, Yu, Mao, Xie, Wang & Wang, ICML 2023, arXiv:2306.00603).

Method: Diffuser (:mod:`algorithms.diffuser`; its model, losses and planning pass from
:mod:`algorithms.common.diffuser_core`) with a second value model, the discounted
cost-to-go of a noisy segment. At every guided denoising step the plans whose predicted cost
exceeds the remaining budget are also pushed down the cost gradient; among the final plans the
best-valued one within budget is executed (the cheapest one when none is), and the budget left
shrinks with every step's cost.

Defaults follow the official code (qianlin04/Safe-offline-RL-with-diffusion-model), kept per task
family in :data:`PAPER` (Diffuser's settings extended):
- model and planner: Diffuser's locomotion setting (``config/locomotion.py``: H = 32, T = 20,
  x0-prediction, ``action_weight`` 10, mults (1, 2, 4, 8), 64 candidate plans, guide scale 0.1,
  t_stopgrad 2, 2 guide steps scaled by the posterior variance; the same per-dataset overrides as
  Diffuser's, looked up by the dataset under a ``velocity-*`` task), reward and cost values on
  the same network with discount 0.997, ``cost_grad_weight`` 5; the safe control tasks (kind ``safe``:
  safe-pendulum, safe-reacher) take ``config/toy_safe_env.py``: the same model, 128 candidates,
  value discount 0.99, ``cost_grad_weight`` 20 (its ``test_cost_toyenv.sh`` runs 1000);
- terminal penalties (``config/locomotion.py``; the segment sampler applies them, as this agent's
  ``DataSpec`` declares): the reward values' targets get -100 (``termination_penalty``) and the
  cost values' +100 (``cost_termination_penalty``) on the step where an episode terminates, so a
  plan that falls is expensive, not cheap, under a velocity budget; none on the safe control
  tasks (``config/toy_safe_env.py``: 0);
- guidance (``diffuser/sampling/functions.py``, ``n_step_guided_and_constrained_p_sample``,
  ``guide_type`` 0): for t >= t_stopgrad, n_guide_steps times,
  ``w = cost_grad_weight * exp(clamp((C - thr) / thr, 0, 1))``,
  ``grad = dV/dx - w * 1[C > thr] * dC/dx``, ``x += scale * var_t * grad``, then inpainting;
- ranking: when no plan has ``C <= thr`` the plan with the lowest ``C`` wins, else the best ``V``
  among those with ``C <= thr`` (the official subtracts 1e8 from the others' values, here they
  score -inf);
- budget (``scripts/plan_cost_guided.py``): ``remain = budget - sum_{k<t} gamma^k c_k`` and the
  threshold at step t is ``remain / gamma^t``, so it is compared with a cost-to-go counted from t;
  each ``act`` passes every environment's threshold to its planning pass as that call's context.
Units: the harness resolves the episode budget on the cost discounted by ``TaskInfo.cost_discount``
(``TaskInfo.cost_budget``); that discount is both the bookkeeping's and the cost value targets'
(``DataSpec.cost_discount``), so predicted cost-to-go and remaining budget are in the same units.
TREBI uses its value discount (``discount``) for both, which is ``TaskInfo.cost_discount``
(0.997) on the velocity tasks; on safe-pendulum / safe-reacher our budget is on the plain sum
(discount 1) where the official trains cost values with 0.99 and rescales an undiscounted budget
to them.
Differences and why:
- all of Diffuser's (see its docstring): the harness's padded segment windows (repeats, not
  zeros), reward and cost values trained alongside the diffuser in every ``update`` (official:
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

from algorithms.common.contract import DatasetStats, TaskInfo
from algorithms.common.defaults import Official, PaperDefaults, Settings
from algorithms.common.diffuser_core import (
    DIFFUSER_PAPER,
    DiffuserAgent,
    DiffuserConfig,
    PlanHooks,
    diffuser_fidelity,
    fidelity_rows,
    make_value,
    optimize,
    resolve_diffuser,
    value_fidelity,
    value_loss,
)

_OFFICIAL = "qianlin04/Safe-offline-RL-with-diffusion-model"

# Diffuser's settings (TREBI's config/locomotion.py keeps them, per-dataset overrides included)
# plus the cost model's: the locomotion values for every task but the safe control tasks, which
# take config/toy_safe_env.py.
PAPER = DIFFUSER_PAPER.extend(
    families={
        "default": Settings(
            f"{_OFFICIAL} config/locomotion.py ('plan' cost_grad_weight; 'values' and "
            "'cost_values' termination_penalty)",
            {
                "discount": 0.997,
                "cost_grad_weight": 5.0,
                "termination_penalty": -100.0,
                "cost_termination_penalty": 100.0,
            },
        ),
        "safe": Settings(
            f"{_OFFICIAL} config/toy_safe_env.py",
            {
                "n_candidates": 128,
                "discount": 0.99,
                "cost_grad_weight": 20.0,
                "termination_penalty": 0.0,
                "cost_termination_penalty": 0.0,
            },
        ),
    }
)


@dataclass
class Config(DiffuserConfig):
    """Diffuser's fields plus the cost model's; ``None`` takes :data:`PAPER`'s value."""

    cost_grad_weight: float | None = None  # weight of the cost gradient on plans over budget
    cost_value_lr: float = 2e-4  # Adam learning rate of the cost value ('cost_values')
    cost_termination_penalty: float | None = None  # added to terminal costs of the cost targets


def resolve(cfg: Config, info: TaskInfo, stats: DatasetStats) -> Config:
    """``cfg`` with :data:`PAPER`'s values; refuses tasks without a budget, mazes and unguided
    planning."""
    if info.cost_budget is None:
        raise ValueError(
            f"TREBI needs a cost budget; task {info.task_id!r} has none (TaskInfo.cost_budget)"
        )
    if info.kind == "maze":
        raise ValueError(
            f"TREBI plans against a cost budget with reward guidance; maze task {info.task_id!r} "
            "(goal inpainting, no reward value) is outside it"
        )
    out = resolve_diffuser(cfg, PAPER, info)
    if not out.guided:
        raise ValueError("algo.guided=False: TREBI plans with its reward and cost values")
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


# ---------------------------------------------------------------------------------- agent


class Agent(DiffuserAgent):
    """TREBI following :mod:`algorithms.common.contract`: a Diffuser (:class:`DiffuserAgent`)
    with a cost value that spends a cost budget (a ``CostObserver``) and reports its planned
    barriers."""

    state_attrs = (
        *DiffuserAgent.state_attrs,
        "cost_value",
        "cost_value_ema",
        "cost_value_optimizer",
    )

    def __init__(
        self,
        cfg: Config,
        info: TaskInfo,
        stats: DatasetStats,
        device: torch.device | str,
        train_steps: int,
    ):
        super().__init__(resolve(cfg, info, stats), info, stats, device, extra=("costs",))
        # A fall costs: the cost targets carry the penalty on terminal steps (official +100).
        self.data_spec = dataclasses.replace(
            self.data_spec, terminal_cost=self.cfg.cost_termination_penalty
        )
        self.cost_value, self.cost_value_ema, self.cost_value_optimizer = make_value(
            self.cfg, self.planner.transition_dim, self.cfg.cost_value_lr, self.device
        )
        self.budget = CostBudget(info.cost_budget, info.cost_discount)

    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Diffuser's step (denoiser, reward value on the return-to-go), then the cost value's on
        the segment's cost-to-go, with its EMA."""
        out = super().update(batch)
        seg = self.planner.segments(batch)
        loss = value_loss(self.planner.diffusion, self.cost_value, seg, batch["costs_to_go"][:, 0])
        out["cost_value_loss"] = optimize(
            loss, self.cost_value_optimizer, self.cost_value_ema, self.cost_value
        )
        return out

    # -- planning ----------------------------------------------------------------------------

    def hooks(self, context: Tensor) -> PlanHooks:
        """TREBI's part of a planning pass under each environment's cost threshold
        ``context [n]``: the cost push while guiding, the budget-aware ranking."""
        return PlanHooks(
            guide_term=lambda x, t: self.cost_push(x, t, context),
            score=lambda x, values: self.scores(x, values, context),
        )

    def cost_push(self, x: Tensor, t: Tensor, thresholds: Tensor) -> Tensor:
        """``-w * dC/dx`` for segments ``[n, P, H, C]`` (:func:`constraint_weights`), added to the
        reward value's gradient at every guided step."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            cost = self.cost_value_ema.model(x, t)
            (cost_grad,) = torch.autograd.grad(cost.sum(), x)
        w = constraint_weights(cost.detach(), thresholds, self.cfg.cost_grad_weight)
        return -w[..., None, None] * cost_grad

    def scores(self, x: Tensor, values: Tensor, thresholds: Tensor) -> Tensor:
        """Ranking scores of the final candidates ``[n, P, H, C]`` with reward values ``[n, P]``:
        the best within each env's budget, or its cheapest (:func:`constrained_scores`)."""
        t0 = torch.zeros(x.shape[:2], dtype=torch.long, device=x.device)
        return constrained_scores(values, self.cost_value_ema.model(x, t0), thresholds)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Diffuser's acting, each env due to plan under the budget it has left."""
        thresholds = self.budget.thresholds(len(obs))
        context = torch.as_tensor(thresholds, dtype=torch.float32, device=self.device)
        return self.planner.act(obs, self.plan, context)

    def observe_cost(self, costs: np.ndarray) -> None:
        """Spend the last step's per-environment costs ``[n_envs]`` from the budgets."""
        self.budget.observe(costs)

    def reset(self, done: np.ndarray | None = None) -> None:
        """Drop the flagged environments' plans (all when None); they get the whole budget."""
        super().reset(done)
        self.budget.reset(done)


# ---------------------------------------------------------------------------------- fidelity

FIDELITY_TASKS = ("velocity-hopper-medium-v2", "safe-pendulum")
VELOCITY_TASK, PENDULUM_TASK = FIDELITY_TASKS
_LOCOMOTION = f"{_OFFICIAL} config/locomotion.py ('diffusion', 'values', 'cost_values', 'plan')"
_TOY = f"{_OFFICIAL} config/toy_safe_env.py"
# budget=paper: the final checkpoint, on the official test scripts' n_test_episode.
PAPER_BUDGET = PaperDefaults(
    families={
        "locomotion": Settings(
            f"{_OFFICIAL} config/locomotion.py ('diffusion': n_train_steps 1e6), test_cost.sh "
            "(n_test_episode=20)",
            {"train_steps": 1_000_000, "eval_every": 1_000_000, "eval_episodes": 20},
        ),
        "safe": Settings(
            f"{_TOY} ('diffusion': n_train_steps 2e5), test_cost_toyenv.sh (n_test_episode=40)",
            {"train_steps": 200_000, "eval_every": 200_000, "eval_episodes": 40},
        ),
    }
)
_PLANNER = {
    "horizon": 32,
    "n_diffusion_steps": 20,
    "dim_mults": (1, 2, 4, 8),
    "attention": False,
    "action_weight": 10.0,
    "guided": True,
    "guide_scale": 0.1,
    "t_stopgrad": 2,
    "replan_every": 1,
    "controller": "actions",
    "normalizer": "gaussian",
    "clip_denoised": False,
    "padding": True,
    "goal_exit_radius": 0.0,
}
FIDELITY = (
    *diffuser_fidelity(_OFFICIAL),
    Official("cost_value_lr", 2e-4, f"{_OFFICIAL} config/locomotion.py ('cost_values')"),
    *fidelity_rows(
        VELOCITY_TASK,
        _LOCOMOTION,
        {
            **_PLANNER,
            "n_candidates": 64,
            "discount": 0.997,
            "cost_grad_weight": 5.0,
            "termination_penalty": -100.0,
            "cost_termination_penalty": 100.0,
        },
    ),
    *value_fidelity(_OFFICIAL, VELOCITY_TASK),
    *fidelity_rows(
        PENDULUM_TASK,
        _TOY,
        {
            **_PLANNER,
            "n_candidates": 128,
            "discount": 0.99,
            "cost_grad_weight": 20.0,
            "termination_penalty": 0.0,
            "cost_termination_penalty": 0.0,
        },
    ),
    *value_fidelity(_OFFICIAL, PENDULUM_TASK),
    Official(
        "cost guidance",
        "for t >= t_stopgrad: grad = dV/dx - w 1[C > thr] dC/dx, w = cost_grad_weight "
        "exp(clamp((C - thr) / thr, 0, 1))",
        f"{_OFFICIAL} diffuser/sampling/functions.py (n_step_guided_and_constrained_p_sample, "
        "guide_type 0)",
    ),
    Official(
        "plan choice",
        "the best value among plans with C <= thr (others minus 1e8), else the lowest C",
        f"{_OFFICIAL} diffuser/sampling/functions.py",
    ),
    Official(
        "cost thresholds",
        "one scalar for the one env planned: (budget - discounted cost spent) / gamma^t",
        f"{_OFFICIAL} scripts/plan_cost_guided.py",
        "one batched pass plans every evaluation env, each under its own remaining budget",
        ours="the same per env, [n_envs]",
    ),
    Official(
        "budget units on the safe control tasks",
        "cost values discounted by 0.99; an undiscounted budget rescaled to them",
        _TOY,
        "the suite's budget on these tasks is on the plain sum (TaskInfo.cost_discount 1), which "
        "the cost values then use",
        ours="cost values and budget both on the plain sum",
        task=PENDULUM_TASK,
    ),
)
