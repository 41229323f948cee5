"""IDQL: Implicit Q-Learning as an Actor-Critic Method with Diffusion Policies
(Hansen-Estruch, Kostrikov, Janner, Kuba & Levine, 2023, arXiv:2304.10573).

Method: train IQL's critic unchanged (V: expectile of Q over dataset actions; Q: TD to V(s')) and,
independently, a DDPM behaviour policy on the dataset actions. To act, draw N candidate actions
from the diffusion policy and pick among them with the critic: the implicit actor of IQL is the
behaviour policy reweighted by the critic, so re-ranking behaviour samples recovers it.

Follows the official code as it produced the paper's numbers: philippe-eecs/IDQL at commit
9cc91a6 (April 2023; ``jaxrl5/agents/ddpm_iql/ddpm_iql_learner.py`` and the launcher
``launcher/examples/train_ddpm_iql_offline.py``). Its offline loop draws 2048 transitions per
iteration, takes an actor step on all 2048 and a second actor step on the empty slice
``batch[2048:]`` (a zero gradient: Adam moves the weights by its momentum alone, and the
learning-rate schedule and the actor's EMA advance once more), then V and Q steps on the first 256
transitions, for 1.5M iterations; the actor's learning rate decays with a cosine to 0 over
``decay_steps = 3e6`` actor optimizer steps, i.e. over the 1.5M iterations. The later commit
7582571 (December 2023, "IDQL Bug Fixes and Simplification") trains actor, V and Q on the same
512 transitions for 3M iterations, one actor step each; ``batch_size=512, critic_batch_size=512,
empty_actor_step=False`` selects it (the decay horizon is the same 3e6). Also as the paper-era
code: T = 5 with the VP schedule, the LN-ResNet denoiser (3 residual blocks of width 256 with 4x
expansion, LayerNorm, dropout 0.1, Mish), epsilon loss, Adam 3e-4, an EMA of the actor (rate
0.001, updated after each actor step) used for sampling, ancestral sampling with noise
``sqrt(beta_t)`` and each step's sample clipped to the action box, N = 64 candidates (the
launcher's training-time N; it also evaluates 16, 32, 128 and 256), and the offline evaluation's
rule (``eval_actions``): the candidate with the largest target-critic min Q.
``selection="expectile"`` instead samples a candidate with the paper's implicit-policy weights
``|tau - 1(Q < V)|`` (``sample_implicit_policy``). Expectile 0.7 (locomotion) / 0.9 (antmaze)
and the reward normalization of the official ``train_diffusion_offline.py`` are :data:`PAPER`;
its budget (1.5M iterations, 50 episodes every 250k) is :data:`PAPER_BUDGET`.
Differences and why:
- every transition of the dataset is trained on: the official script holds out 5% for a
  validation loss it only logs;
- the time embedding is the suite's fixed sinusoidal one (then a 2-layer Mish MLP to 128, as
  the official), not learnable Fourier features; the loss is the per-element mean instead of
  the sum over action dimensions (a constant factor that Adam cancels);
- observations are normalized with the dataset statistics (the official code does not), and
  actions are mapped affinely onto [-1, 1] for the diffusion when the box differs;
- the critic is the suite's :class:`IQLCritic` (as in our IQL): its TD target reads V(s')
  before this step's V update (one step stale, as CORL), and PyTorch's default init is used;
- ``ddpm_temperature`` also scales the initial noise (the suite's sampler convention; the
  official scales only the per-step noise; the same at the default 1);
- Mish is computed with one exp (the suite's :class:`~algorithms.common.nets.Mish`), same
  values, 2.5x faster on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from algorithms.common.contract import Checkpointable, DatasetStats, DataSpec, TaskInfo
from algorithms.common.critics import IQLCritic
from algorithms.common.defaults import Official, PaperDefaults, Settings, check_choice, fill
from algorithms.common.diffusion import GaussianDiffusion
from algorithms.common.nets import EMA, Mish, ObsNormalizer, SinusoidalEmbedding, gradient_step, mlp
from algorithms.common.offline import REWARD_NORMS, cosine_decay, reward_transform
from algorithms.common.policies import ActionBox
from algorithms.common.schedules import SCHEDULES, make_betas

SELECTIONS = ("argmax", "expectile")
PAPER_ERA = "philippe-eecs/IDQL@9cc91a6 launcher/examples/train_ddpm_iql_offline.py"

PAPER = PaperDefaults(
    families={
        "default": Settings(
            "no IDQL setting (point mazes, toys): the launcher's locomotion expectile, rewards "
            "unchanged",
            {"expectile": 0.7, "reward_norm": "none"},
        ),
        "locomotion": Settings(
            "philippe-eecs/IDQL train_diffusion_offline.py (critic_hyperparam, rewards)",
            {"expectile": 0.7, "reward_norm": "returns"},
        ),
        "antmaze": Settings(
            "philippe-eecs/IDQL train_diffusion_offline.py (critic_hyperparam, rewards)",
            {"expectile": 0.9, "reward_norm": "minus_one"},
        ),
    }
)


# budget=paper: the paper-era launcher's length and evaluation, every task alike.
PAPER_BUDGET = PaperDefaults(
    families={
        "default": Settings(
            f"{PAPER_ERA} (max_steps=1500001, eval_interval=250000, eval_episodes=50)",
            {"train_steps": 1_500_000, "eval_every": 250_000, "eval_episodes": 50},
        )
    }
)


@dataclass
class Config:
    """Paper defaults; ``None`` takes the paper's value for the task family (:data:`PAPER`)."""

    # IQL critic
    expectile: float | None = None  # expectile of Q that V regresses
    discount: float = 0.99  # discount of the TD target
    tau: float = 0.005  # Polyak rate of the target twin Q
    critic_lr: float = 3e-4  # Adam learning rate of V and Q
    critic_hidden: int = 256  # width of the critic MLPs' hidden layers
    critic_depth: int = 2  # hidden layers of the critic MLPs
    reward_norm: str | None = None  # reward transform: returns, minus_one, cql_antmaze or none
    critic_batch_size: int = 256  # the first this many transitions of each batch train V and Q
    # diffusion actor
    n_diffusion_steps: int = 5  # diffusion steps T of the noise schedule
    beta_schedule: str = "vp"  # noise schedule: vp, cosine or linear
    actor_hidden: int = 256  # width of the denoiser's residual stream
    actor_blocks: int = 3  # residual blocks of the denoiser
    actor_dropout: float = 0.1  # dropout rate at the input of every residual block
    time_dim: int = 64  # width of the sinusoidal diffusion-step embedding
    actor_lr: float = 3e-4  # Adam learning rate of the denoiser (cosine decay to 0)
    lr_decay_steps: int | None = 3_000_000  # actor optimizer steps of that decay; None: the run's
    empty_actor_step: bool = True  # a second, zero-gradient actor step per update (paper-era code)
    ema_decay: float = 0.999  # decay of the denoiser's EMA copy, updated after each actor step
    batch_size: int = 2048  # transitions per update; the actor trains on all of them
    # acting
    n_candidates: int = 64  # actions sampled per state and ranked by the critic
    selection: str = "argmax"  # argmax: the largest Q; expectile: the implicit policy's weights
    ddpm_temperature: float = 1.0  # scale of the sampler's noise (initial and per step)
    clip_sampler: bool = True  # clip every denoising step's sample to [-1, 1], as the official
    act_chunk: int = 1024  # CPU: candidates per denoising pass (cache-sized); GPUs take all


def resolve(cfg: Config, info: TaskInfo, stats: DatasetStats) -> Config:
    """``cfg`` with the paper's per-family values filled in; every choice validated."""
    cfg = fill(cfg, PAPER, info)
    check_choice("reward_norm", cfg.reward_norm, REWARD_NORMS)
    check_choice("beta_schedule", cfg.beta_schedule, tuple(SCHEDULES))
    check_choice("selection", cfg.selection, SELECTIONS)
    if cfg.critic_batch_size > cfg.batch_size:
        raise ValueError(
            f"algo.critic_batch_size={cfg.critic_batch_size} is not valid; valid: at most "
            f"algo.batch_size={cfg.batch_size}"
        )
    return cfg


# ---------------------------------------------------------------------------------- networks


class ResidualBlock(nn.Module):
    """``x + W2 mish(W1 LN(dropout(x)))`` with a 4x wider hidden layer (IDQL's MLPResNetBlock)."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.Dropout(dropout),
            nn.LayerNorm(dim),
            nn.Linear(dim, 4 * dim),
            Mish(),
            nn.Linear(4 * dim, dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


class LNResNetDenoiser(nn.Module):
    """IDQL's LN_Resnet noise predictor ``eps(a_t, t, s)`` in the suite's model-call convention.

    Input ``concat(a_t, s, MLP(sinusoid(t)))`` -> linear -> residual blocks -> mish -> linear.
    """

    def __init__(
        self, obs_dim: int, act_dim: int, hidden: int, blocks: int, dropout: float, time_dim: int
    ):
        super().__init__()
        time_hidden = 2 * time_dim
        self.time = nn.Sequential(
            SinusoidalEmbedding(time_dim),
            mlp(time_dim, time_hidden, time_hidden, depth=1, activation=Mish),
        )
        self.inp = nn.Linear(act_dim + obs_dim + time_hidden, hidden)
        self.blocks = nn.Sequential(*(ResidualBlock(hidden, dropout) for _ in range(blocks)))
        self.out = nn.Sequential(Mish(), nn.Linear(hidden, act_dim))

    def forward(self, a_t: Tensor, t: Tensor, obs: Tensor) -> Tensor:
        h = self.inp(torch.cat([a_t, obs, self.time(t)], dim=-1))
        return self.out(self.blocks(h))


def actor_decay_steps(cfg: Config, train_steps: int) -> int:
    """Actor optimizer steps over which its learning rate decays to 0: ``lr_decay_steps``, or,
    when ``None``, the run's (``train_steps`` updates of one or two actor steps)."""
    if cfg.lr_decay_steps is not None:
        return cfg.lr_decay_steps
    return train_steps * (2 if cfg.empty_actor_step else 1)


# ---------------------------------------------------------------------------------- selection


def select_candidates(q: Tensor, v: Tensor | None, selection: str, expectile: float) -> Tensor:
    """Index ``[E]`` of the chosen candidate per state from Q values ``[E, N]`` (and V ``[E]``).

    ``argmax``: the largest Q. ``expectile``: sample with weights ``|tau - 1(Q < V)|``, the
    expectile critic's implicit policy over behaviour samples.
    """
    if selection == "argmax":
        return q.argmax(dim=-1)
    weights = torch.where(q - v.unsqueeze(-1) > 0, expectile, 1.0 - expectile)
    return torch.multinomial(weights, 1).squeeze(-1)


# ---------------------------------------------------------------------------------- agent


class Agent(Checkpointable):
    """IDQL agent following :mod:`algorithms.common.contract`."""

    # The critic's state holds its target twin Q and its optimizer (IQLCritic trains itself).
    state_attrs = ("critic", "actor", "ema", "actor_optimizer", "actor_schedule", "step")

    def __init__(
        self,
        cfg: Config,
        info: TaskInfo,
        stats: DatasetStats,
        device: torch.device | str,
        train_steps: int,
    ):
        self.cfg = cfg = resolve(cfg, info, stats)
        self.info, self.device = info, torch.device(device)
        self.data_spec = DataSpec(
            kind="transitions", batch_size=cfg.batch_size, discount=cfg.discount
        )
        self.normalize = ObsNormalizer(stats.obs_mean, stats.obs_std, self.device)
        self.reward_scale, self.reward_shift = reward_transform(cfg.reward_norm, stats)
        self.box = ActionBox.of(info)

        self.critic = IQLCritic(
            info.obs_dim,
            info.act_dim,
            cfg.critic_hidden,
            cfg.critic_depth,
            expectile=cfg.expectile,
            discount=cfg.discount,
            tau=cfg.tau,
            lr=cfg.critic_lr,
        ).to(self.device)
        self.actor = LNResNetDenoiser(
            info.obs_dim,
            info.act_dim,
            cfg.actor_hidden,
            cfg.actor_blocks,
            cfg.actor_dropout,
            cfg.time_dim,
        ).to(self.device)
        self.ema = EMA(self.actor, decay=cfg.ema_decay)
        self.ema.model.eval()
        self.actor_params = list(self.actor.parameters())
        self.actor_optimizer = torch.optim.Adam(self.actor_params, lr=cfg.actor_lr, fused=True)
        self.actor_schedule = torch.optim.lr_scheduler.LambdaLR(
            self.actor_optimizer, cosine_decay(actor_decay_steps(cfg, train_steps))
        )
        self.diffusion = GaussianDiffusion(
            make_betas(cfg.beta_schedule, cfg.n_diffusion_steps), variance="beta"
        ).to(self.device)
        self.step = 0

    def _update_actor(self, obs: Tensor, unit_actions: Tensor) -> Tensor:
        """One step of the denoiser on the diffusion (behaviour-cloning) loss of the dataset's
        actions in ``[-1, 1]``, then of its learning-rate decay and its EMA; with
        ``empty_actor_step``, then :meth:`_empty_actor_step`."""
        loss = self.diffusion.loss(self.actor, unit_actions, obs)
        gradient_step(self.actor_optimizer, loss)
        self._after_actor_step()
        if self.cfg.empty_actor_step:
            self._empty_actor_step()
        return loss

    def _empty_actor_step(self) -> None:
        """The paper-era code's second actor step, on the empty slice ``batch[2048:]``: its
        gradient is zero, so Adam moves the weights by its momentum alone (its moment estimates
        decay); the schedule and the EMA advance as after any actor step."""
        torch._foreach_zero_([p.grad for p in self.actor_params])
        self.actor_optimizer.step()
        self._after_actor_step()

    def _after_actor_step(self) -> None:
        self.actor_schedule.step()
        self.ema.update(self.actor)

    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One step of the IQL critic on the batch's first ``critic_batch_size`` transitions and,
        independently, of the diffusion actor on all of them."""
        obs = self.normalize(batch["observations"])
        next_obs = self.normalize(batch["next_observations"])
        reward = self.reward_scale * batch["rewards"] + self.reward_shift
        n = self.cfg.critic_batch_size
        info = self.critic.update(
            obs[:n], batch["actions"][:n], reward[:n], next_obs[:n], batch["terminals"][:n]
        )
        actor_loss = self._update_actor(obs, self.box.to_unit(batch["actions"]))
        self.step += 1
        return {**info, "actor_loss": actor_loss.detach()}

    def _clip_to_box(self, x_prev: Tensor, x_t: Tensor, t: int) -> Tensor:
        """Projection hook: the official sampler clips every step's sample to [-1, 1]."""
        return x_prev.clamp(-1.0, 1.0)

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions ``[n_envs, act_dim]``: N candidates per env denoised together, re-ranked.

        On CPU the envs go through in groups of ``act_chunk // n_candidates`` so that the
        activations stay in cache (about 2x faster at 256 candidates); GPUs take all at once.
        """
        obs_t = self.normalize.from_numpy(obs)
        group = len(obs_t)
        if self.device.type == "cpu":
            group = max(1, self.cfg.act_chunk // self.cfg.n_candidates)
        actions = torch.cat([self._act_group(o) for o in obs_t.split(group)])
        return actions.cpu().numpy()

    def _act_group(self, obs: Tensor) -> Tensor:
        """Actions for one group of normalized observations ``[E, obs_dim]``."""
        n_envs, n = obs.shape[0], self.cfg.n_candidates
        cond = obs.unsqueeze(1).expand(n_envs, n, obs.shape[-1])
        unit = self.diffusion.sample(
            self.ema.model,
            (n_envs, n, self.info.act_dim),
            cond,
            temperature=self.cfg.ddpm_temperature,
            projection=self._clip_to_box if self.cfg.clip_sampler else None,
        )
        candidates = self.box.from_unit(unit)
        q = self.critic.q(cond, candidates)
        v = self.critic.v(obs) if self.cfg.selection == "expectile" else None
        idx = select_candidates(q, v, self.cfg.selection, self.cfg.expectile)
        action = candidates[torch.arange(n_envs, device=self.device), idx]
        return self.box.clamp(action)

    def reset(self, done: np.ndarray | None = None) -> None:
        """IDQL keeps no per-environment state."""


# ---------------------------------------------------------------------------------- fidelity

LEARNER = "philippe-eecs/IDQL@9cc91a6 jaxrl5/agents/ddpm_iql/ddpm_iql_learner.py"
SCRIPT = "philippe-eecs/IDQL@9cc91a6 examples/states/train_diffusion_offline.py"
FIDELITY_TASKS = ("hopper-medium-v2",)
FIDELITY = (
    # critic
    Official("expectile", 0.7, f"{PAPER_ERA} (critic_hyperparam)"),
    Official("discount", 0.99, f"{LEARNER} (create)"),
    Official("tau", 0.005, f"{LEARNER} (create)"),
    Official("critic_lr", 3e-4, PAPER_ERA),
    Official("critic_hidden", 256, f"{LEARNER} (critic_hidden_dims)"),
    Official("critic_depth", 2, f"{LEARNER} (critic_hidden_dims)"),
    Official("reward_norm", "returns", f"{SCRIPT} (normalize_returns)"),
    Official("critic_batch_size", 256, f"{LEARNER} (update: batch[:256])"),
    Official(
        "critic TD target",
        "r + discount * V(s') with V after this step's V update",
        f"{LEARNER} (update_v, then update_q)",
        "one V forward pass fewer per step (as CORL's IQL)",
        ours="V(s') before this step's V update (one step stale)",
    ),
    # diffusion actor
    Official("n_diffusion_steps", 5, PAPER_ERA),
    Official("beta_schedule", "vp", PAPER_ERA),
    Official("actor_hidden", 256, f"{LEARNER} (MLPResNet)"),
    Official("actor_blocks", 3, PAPER_ERA),
    Official("actor_dropout", 0.1, PAPER_ERA),
    Official("time_dim", 64, f"{LEARNER} (create)"),
    Official(
        "diffusion-step embedding",
        "learnable Fourier features, then MLP (128, 128) with Mish",
        "philippe-eecs/IDQL@9cc91a6 jaxrl5/networks/diffusion.py (FourierFeatures)",
        "the suite's shared embedding; the MLP after it is the official one",
        ours="fixed sinusoidal features, then MLP (128, 128) with Mish",
    ),
    Official(
        "denoising loss",
        "epsilon prediction, squared error summed over action dimensions",
        f"{LEARNER} (update_actor)",
        "a constant factor (the action width) that Adam cancels",
        ours="epsilon prediction, squared error averaged over action dimensions",
    ),
    Official("actor_lr", 3e-4, PAPER_ERA),
    Official("lr_decay_steps", 3_000_000, f"{PAPER_ERA} (decay_steps)"),
    Official("empty_actor_step", True, f"{LEARNER} (update: update_actor(batch[2048:]))"),
    Official("ema_decay", 0.999, f"{PAPER_ERA} (actor_tau=0.001)"),
    Official("batch_size", 2048, f"{PAPER_ERA} (batch_size)"),
    Official(
        "training data",
        "95% of the dataset (5% held out for a logged validation loss)",
        f"{SCRIPT} (ds.split(0.95))",
        "the held-out loss is only logged; the suite trains every algorithm on all the data",
        ours="all of the dataset",
    ),
    Official(
        "observation normalization",
        "none",
        SCRIPT,
        "the suite's convention for every actor-critic (z-scores with the dataset statistics)",
        ours="z-scores with the dataset's mean and std",
    ),
    Official(
        "network initialization",
        "Xavier-uniform in the MLPs, Flax's default inside the residual blocks",
        "philippe-eecs/IDQL@9cc91a6 jaxrl5/networks/mlp.py, resnet.py",
        "every network of the suite starts from PyTorch's default initialization",
        ours="PyTorch defaults",
    ),
    # acting
    Official("n_candidates", 64, f"{PAPER_ERA} (training_time_inference_params N)"),
    Official("selection", "argmax", f"{LEARNER} (eval_actions)"),
    Official("ddpm_temperature", 1.0, f"{LEARNER} (create)"),
    Official("clip_sampler", True, PAPER_ERA),
    Official(
        "action sampler",
        "ancestral DDPM, noise sqrt(beta_t), each step clipped to [-1, 1], EMA actor",
        "philippe-eecs/IDQL@9cc91a6 jaxrl5/networks/diffusion.py (ddpm_sampler)",
    ),
    Official(
        "evaluation protocol",
        "every 250k steps, 50 episodes, for N in (16, 32, 64, 128, 256) and the implicit policy",
        SCRIPT,
        "one N and one rule per run (algo.n_candidates, algo.selection sweep them)",
        ours="periodic and final evaluation with N = 64, argmax Q",
    ),
)
