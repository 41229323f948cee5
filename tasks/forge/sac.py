"""Lean SAC that trains the behaviour policies of the locomotion forge (DESIGN section 4).

What: soft actor-critic with automatic entropy tuning, configured as D4RL trained its behaviour
policies with rlkit: a tanh-Gaussian actor and two critics, each a 2x256 ReLU MLP; batch 256;
Adam with learning rate 3e-4 for actor, critics and temperature; discount 0.99; Polyak averaging
of the target critics with 5e-3 after every update; entropy target ``-dim(A)``; log-std clamped to
[-20, 2]; initialisation after rlkit's (hidden layers U(+-1/sqrt(fan_in)) with zero biases,
output layers U(+-1e-3) for the actor and U(+-3e-3) for the critics), so the untrained actor (the
``random`` behaviour policy) samples nearly ``tanh(N(0, 1))``. Data are collected by the current
stochastic policy from the first step, also during the ``learning_starts`` warm-up (rlkit's initial
exploration uses the policy, not uniform actions); the update-to-data ratio is 1.

Why not stable-baselines3: a dependency-free loop that removes the overhead around the arithmetic
(SB3's SAC was measured on these 2-core machines at about 70 env steps/s on ``Hopper-v5``, 1M steps
in about 4 h, in other load conditions than the numbers below):

* one backward pass per update: as in rlkit, the critic, actor and temperature losses are computed
  from the same pre-update parameters, so they are summed and stepped by one fused Adam; the
  actor's loss reads the critics through detached weights, so no critic weight gradients are
  computed for it;
* the two critics (and their targets) are one batched ensemble (``baddbmm``), the target update is
  one ``_foreach_lerp_``;
* the replay buffer is one preallocated tensor (a row per transition), sampled by one
  ``index_select`` with a seeded ``torch.Generator``;
* no host syncs in the update (losses are accumulated as tensors and read at checkpoints); the
  only per-step transfer is the env interaction itself.

Measured by ``benchmarks/forge.py`` (one thread, lean and naive loops alternating in one process,
while other jobs loaded both cores, in two sessions): 26-34 env steps/s against 19-29 for a naive
loop written the usual way, 1.14-1.45x on Hopper, HalfCheetah and Walker2d; on the idle machine
61 against 54 on Hopper (1.12x), so 1M steps take about 4.5 h per env on one core. An update is
about 0.57 GFLOP and spends about 78% of its time in matmuls, so on CPU the arithmetic, not
overhead, bounds it; 2 threads help only on an idle machine (on a loaded one they were several
times slower).

Departures from rlkit, on purpose: checkpoints are evaluated with the stochastic policy (the one
that collects the datasets) rather than its mean action; ``n_envs > 1`` steps several envs in
lockstep with batched inference and then makes ``n_envs`` updates (ratio 1 kept).

A run directory holds ``actors/step{N:09d}.safetensors`` (actor weights every
``checkpoint_every`` env steps, step 0 being the untrained actor), ``curve.json`` (their
evaluation returns) and the full training state ``state.json`` + ``state-{N}.safetensors``
(actor, critics, targets, Adam, temperature, replay buffer, torch and env RNGs, the MuJoCo state of
every env mid-episode, step), saved every ``save_every`` steps; :meth:`SACTrainer.train` resumes
from it and continues bit-for-bit as if never interrupted.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from tasks.progress import progress as progress_bar

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
LOG_2PI = math.log(2 * math.pi)
EVAL_SEED_OFFSET = 1_000_003


# ---------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------


def _uniform_(tensor: torch.Tensor, bound: float) -> torch.Tensor:
    return nn.init.uniform_(tensor, -bound, bound)


class TanhGaussianActor(nn.Module):
    """rlkit's ``TanhGaussianPolicy``: 2 hidden ReLU layers, mean and log-std heads, tanh squash.

    Parameter names follow rlkit (``fc0``, ``fc1``, ``last_fc``, ``last_fc_log_std``); actions are
    ``tanh(u) * scale + shift`` for the env's action bounds.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: int = 256,
        low: Sequence[float] | None = None,
        high: Sequence[float] | None = None,
    ):
        super().__init__()
        self.fc0 = nn.Linear(obs_dim, hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.last_fc = nn.Linear(hidden, act_dim)
        self.last_fc_log_std = nn.Linear(hidden, act_dim)
        low_t = torch.full((act_dim,), -1.0) if low is None else torch.as_tensor(low).float()
        high_t = torch.full((act_dim,), 1.0) if high is None else torch.as_tensor(high).float()
        self.register_buffer("action_scale", (high_t - low_t) / 2)
        self.register_buffer("action_shift", (high_t + low_t) / 2)
        for layer in (self.fc0, self.fc1):
            _uniform_(layer.weight, 1 / math.sqrt(layer.in_features))
            nn.init.zeros_(layer.bias)
        for layer in (self.last_fc, self.last_fc_log_std):
            _uniform_(layer.weight, 1e-3)
            _uniform_(layer.bias, 1e-3)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and clamped log-std of the pre-tanh Gaussian."""
        h = F.relu(self.fc1(F.relu(self.fc0(obs))))
        return self.last_fc(h), self.last_fc_log_std(h).clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, obs: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterized action for standard-normal ``noise`` and its log-probability."""
        mean, log_std = self(obs)
        u = mean + log_std.exp() * noise
        gauss = -0.5 * noise.square() - log_std - 0.5 * LOG_2PI
        # log |d tanh(u) / du| = 2 (log 2 - u - softplus(-2u)), numerically stable.
        squash = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
        log_prob = (gauss - squash).sum(-1) - torch.log(self.action_scale).sum()
        return torch.tanh(u) * self.action_scale + self.action_shift, log_prob

    def mean_action(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self(obs)[0]) * self.action_scale + self.action_shift


class TwinCritic(nn.Module):
    """Two Q-networks ``(obs, action) -> R`` as one batched ensemble of 2x``hidden`` ReLU MLPs."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, n: int = 2):
        super().__init__()
        sizes = (obs_dim + act_dim, hidden, hidden, 1)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in pairwise(sizes[:-1]):
            self.weights.append(
                _uniform_(nn.Parameter(torch.empty(n, fan_in, fan_out)), fan_in**-0.5)
            )
            self.biases.append(nn.Parameter(torch.zeros(n, 1, fan_out)))
        self.weights.append(_uniform_(nn.Parameter(torch.empty(n, hidden, 1)), 3e-3))
        self.biases.append(_uniform_(nn.Parameter(torch.empty(n, 1, 1)), 3e-3))
        self.n = n

    def forward(
        self, obs: torch.Tensor, action: torch.Tensor, detach_params: bool = False
    ) -> torch.Tensor:
        """Q-values ``[n, batch]``; ``detach_params`` lets gradients reach the inputs only."""
        x = torch.cat([obs, action], -1).unsqueeze(0).expand(self.n, -1, -1)
        layers = list(zip(self.weights, self.biases, strict=True))
        for i, (w, b) in enumerate(layers):
            if detach_params:
                w, b = w.detach(), b.detach()
            x = torch.baddbmm(b, x, w)
            if i < len(layers) - 1:
                x = F.relu(x)
        return x.squeeze(-1)


# ---------------------------------------------------------------------------------------------
# Environments and replay
# ---------------------------------------------------------------------------------------------


@dataclass
class StepResult:
    """One lockstep of an :class:`EnvBatch`; ``next_obs`` is the true successor (before resets)."""

    next_obs: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray


class EnvBatch:
    """``n`` gymnasium MuJoCo envs stepped in lockstep, a minimal vector env with auto-reset.

    Each env is the unwrapped gymnasium env (``gym.make(...).unwrapped``: no wrapper overhead)
    reset once with its own seed; the ``max_episode_steps`` limit is applied here and reported as
    ``truncated``, true terminations as ``terminated``. After a step that ends an episode the env
    is reset (its ``np_random`` continues), so :attr:`obs` always holds the next decision states.
    :meth:`physics` reads ``qpos``/``qvel`` of the current states (before the next step), as D4RL's
    collector recorded them.
    """

    def __init__(self, env_id: str, seeds: Sequence[int], max_episode_steps: int = 1000):
        self.env_id = env_id
        self.envs = [gym.make(env_id, disable_env_checker=True).unwrapped for _ in seeds]
        self.max_episode_steps = max_episode_steps
        self.obs = np.stack(
            [env.reset(seed=int(s))[0] for env, s in zip(self.envs, seeds, strict=True)]
        )
        self.elapsed = np.zeros(len(seeds), dtype=np.int64)

    @property
    def n(self) -> int:
        return len(self.envs)

    def physics(self) -> tuple[np.ndarray, np.ndarray]:
        qpos = np.stack([env.data.qpos for env in self.envs])
        qvel = np.stack([env.data.qvel for env in self.envs])
        return qpos, qvel

    def step(self, actions: np.ndarray, index: np.ndarray | None = None) -> StepResult:
        """Step the envs in ``index`` (default: all) with one action row each."""
        index = np.arange(self.n) if index is None else np.asarray(index)
        n = len(index)
        next_obs = np.empty((n, self.obs.shape[1]))
        rewards = np.empty(n)
        terminated = np.zeros(n, dtype=bool)
        for row, i in enumerate(index):
            next_obs[row], rewards[row], terminated[row], _, _ = self.envs[i].step(actions[row])
        self.elapsed[index] += 1
        truncated = (self.elapsed[index] >= self.max_episode_steps) & ~terminated
        self.obs[index] = next_obs
        for row in np.flatnonzero(terminated | truncated):
            self.obs[index[row]] = self.envs[index[row]].reset()[0]
            self.elapsed[index[row]] = 0
        return StepResult(next_obs, rewards, terminated, truncated)

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Tensors (MuJoCo integration state, observations) and JSON (RNG states, step counts)."""
        kind = mujoco.mjtState.mjSTATE_INTEGRATION
        states = []
        for env in self.envs:
            state = np.empty(mujoco.mj_stateSize(env.model, kind))
            mujoco.mj_getState(env.model, env.data, state, kind)
            states.append(state)
        tensors = {"mujoco": torch.from_numpy(np.stack(states)), "obs": torch.from_numpy(self.obs)}
        meta = {
            "elapsed": self.elapsed.tolist(),
            "rng": [env.np_random.bit_generator.state for env in self.envs],
        }
        return tensors, meta

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        kind = mujoco.mjtState.mjSTATE_INTEGRATION
        for env, state, rng in zip(self.envs, tensors["mujoco"].numpy(), meta["rng"], strict=True):
            mujoco.mj_setState(env.model, env.data, state, kind)
            mujoco.mj_forward(env.model, env.data)
            env.np_random.bit_generator.state = rng
        self.obs = tensors["obs"].numpy().copy()
        self.elapsed = np.asarray(meta["elapsed"], dtype=np.int64)

    def close(self) -> None:
        for env in self.envs:
            env.close()


class ReplayBuffer:
    """Preallocated FIFO of transitions, one float32 row each: ``obs | action | reward | next_obs |
    terminal``, sampled uniformly by one ``index_select``."""

    def __init__(self, obs_dim: int, act_dim: int, capacity: int):
        self.obs_dim, self.act_dim, self.capacity = obs_dim, act_dim, capacity
        self.rows = torch.zeros(capacity, 2 * obs_dim + act_dim + 2)
        self.size = 0
        self.ptr = 0

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminals: np.ndarray,
    ) -> None:
        batch = np.concatenate(
            [obs, actions, rewards[:, None], next_obs, terminals[:, None]], axis=1, dtype=np.float32
        )
        idx = (self.ptr + np.arange(len(batch))) % self.capacity
        self.rows[torch.from_numpy(idx)] = torch.from_numpy(batch)
        self.ptr = int((self.ptr + len(batch)) % self.capacity)
        self.size = min(self.size + len(batch), self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """``(obs, actions, rewards, next_obs, terminals)`` views of one gathered batch."""
        idx = torch.randint(self.size, (batch_size,), generator=generator)
        rows = self.rows.index_select(0, idx)
        o, a = self.obs_dim, self.act_dim
        return rows.split((o, a, 1, o, 1), dim=1)

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
        return {"rows": self.rows[: self.size].clone()}, {"size": self.size, "ptr": self.ptr}

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict[str, int]) -> None:
        self.size, self.ptr = int(meta["size"]), int(meta["ptr"])
        self.rows[: self.size] = tensors["rows"]


# ---------------------------------------------------------------------------------------------
# Trainer
# ---------------------------------------------------------------------------------------------


@dataclass
class SACConfig:
    """rlkit's SAC settings as D4RL used them (module docstring); budgets are in env steps."""

    env_id: str = "Hopper-v5"
    total_steps: int = 1_000_000
    seed: int = 0
    n_envs: int = 1
    hidden: int = 256
    batch_size: int = 256
    buffer_size: int = 1_000_000
    learning_starts: int = 1_000  # rlkit's min_num_steps_before_training
    gamma: float = 0.99
    tau: float = 5e-3
    lr: float = 3e-4
    max_episode_steps: int = 1000
    checkpoint_every: int = 10_000
    save_every: int = 50_000
    eval_episodes: int = 10

    def __post_init__(self) -> None:
        for name in ("checkpoint_every", "save_every"):
            if getattr(self, name) % self.n_envs:
                raise ValueError(f"{name} must be a multiple of n_envs={self.n_envs}")


@dataclass
class Checkpoint:
    """An actor saved during training and its evaluation."""

    step: int
    path: str
    mean_return: float
    returns: list[float] = field(default_factory=list)


def make_actor(env_id: str, hidden: int = 256) -> TanhGaussianActor:
    """An untrained actor sized for ``env_id``'s spaces."""
    env = gym.make(env_id, disable_env_checker=True)
    obs_dim, act_space = env.observation_space.shape[0], env.action_space
    env.close()
    return TanhGaussianActor(obs_dim, act_space.shape[0], hidden, act_space.low, act_space.high)


def sample_actions(actor: TanhGaussianActor, obs: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Stochastic actions of ``actor`` for a batch of states and standard-normal ``noise``."""
    with torch.inference_mode():
        action, _ = actor.sample(torch.from_numpy(obs).float(), torch.from_numpy(noise).float())
    return action.numpy()


def evaluate_actor(
    actor: TanhGaussianActor,
    env_id: str,
    episodes: int,
    seed: int,
    max_episode_steps: int = 1000,
    deterministic: bool = False,
) -> np.ndarray:
    """Returns of ``episodes`` episodes, one per env of a batch seeded ``seed, seed+1, ...``."""
    envs = EnvBatch(env_id, range(seed, seed + episodes), max_episode_steps)
    rng = np.random.default_rng(seed)
    totals = np.zeros(episodes)
    live = np.arange(episodes)
    act_dim = actor.last_fc.out_features
    while len(live):
        obs = envs.obs[live].astype(np.float32)
        if deterministic:
            with torch.inference_mode():
                actions = actor.mean_action(torch.from_numpy(obs)).numpy()
        else:
            actions = sample_actions(actor, obs, rng.standard_normal((len(live), act_dim)))
        out = envs.step(actions, live)
        totals[live] += out.rewards
        live = live[~(out.terminated | out.truncated)]
    envs.close()
    return totals


class SACTrainer:
    """Trains SAC on ``cfg.env_id`` in ``run_dir`` (resuming the run found there)."""

    def __init__(self, cfg: SACConfig, run_dir: str | os.PathLike):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        torch.manual_seed(cfg.seed)
        seeds = np.random.SeedSequence(cfg.seed).generate_state(cfg.n_envs)
        self.envs = EnvBatch(cfg.env_id, seeds.tolist(), cfg.max_episode_steps)
        self.actor = make_actor(cfg.env_id, cfg.hidden)
        obs_dim, act_dim = self.actor.fc0.in_features, self.actor.last_fc.out_features
        self.critic = TwinCritic(obs_dim, act_dim, cfg.hidden)
        self.target = TwinCritic(obs_dim, act_dim, cfg.hidden)
        self.target.load_state_dict(self.critic.state_dict())
        self.target.requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.zeros(()))
        self.target_entropy = -float(act_dim)
        params = [*self.actor.parameters(), *self.critic.parameters(), self.log_alpha]
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr, fused=True)
        self.buffer = ReplayBuffer(obs_dim, act_dim, min(cfg.buffer_size, cfg.total_steps))
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.step = 0
        self.checkpoints: list[Checkpoint] = []
        self.metrics = torch.zeros(4)  # critic loss, actor loss, alpha, entropy: running sums
        self.updates_since_log = 0

    # -- one update ----------------------------------------------------------------------------

    def update(self) -> torch.Tensor:
        """One SAC update; returns ``[critic_loss, actor_loss, alpha, entropy]`` as a tensor."""
        obs, actions, rewards, next_obs, terminals = self.buffer.sample(
            self.cfg.batch_size, self.generator
        )
        alpha = self.log_alpha.detach().exp()
        noise = torch.randn(2, *actions.shape, generator=self.generator)
        with torch.no_grad():
            next_actions, next_logp = self.actor.sample(next_obs, noise[0])
            next_q = self.target(next_obs, next_actions).min(0).values - alpha * next_logp
            target_q = rewards.squeeze(1) + self.cfg.gamma * (1 - terminals.squeeze(1)) * next_q
        q = self.critic(obs, actions)
        critic_loss = (q - target_q).square().mean(1).sum()
        new_actions, logp = self.actor.sample(obs, noise[1])
        q_new = self.critic(obs, new_actions, detach_params=True).min(0).values
        actor_loss = (alpha * logp - q_new).mean()
        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self.optimizer.zero_grad(set_to_none=True)
        (critic_loss + actor_loss + alpha_loss).backward()
        self.optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(
                list(self.target.parameters()), list(self.critic.parameters()), self.cfg.tau
            )
        return torch.stack([critic_loss, actor_loss, alpha, -logp.mean()]).detach()

    # -- the loop --------------------------------------------------------------------------------

    def collect_step(self) -> None:
        """One lockstep of the envs with the current stochastic actor, stored in the buffer."""
        obs = self.envs.obs.astype(np.float32)
        noise = torch.randn(self.envs.n, self.buffer.act_dim, generator=self.generator)
        with torch.inference_mode():
            actions = self.actor.sample(torch.from_numpy(obs), noise)[0].numpy()
        out = self.envs.step(actions)
        self.buffer.add(obs, actions, out.rewards, out.next_obs, out.terminated)
        self.step += self.envs.n

    def train(
        self,
        progress: bool = True,
        until: Callable[[list[Checkpoint]], bool] | None = None,
        on_save: Callable[[list[Checkpoint]], None] | None = None,
    ) -> list[Checkpoint]:
        """Run (or resume) training to ``total_steps``, or until ``until(checkpoints)`` holds after
        an actor checkpoint (the state is then saved, so a later call goes on from there);
        ``on_save(checkpoints)`` runs after every state save (e.g. to copy it off the machine).
        Returns the evaluated actor checkpoints."""
        cfg = self.cfg
        self.resume()
        if self.step == 0:
            self.save_actor()
        if until is not None and until(self.checkpoints):
            return self.checkpoints
        with progress_bar(
            cfg.total_steps, f"SAC {cfg.env_id}", "step", initial=self.step, enabled=progress
        ) as bar:
            while self.step < cfg.total_steps:
                self.collect_step()
                if self.step >= cfg.learning_starts:
                    for _ in range(self.envs.n):
                        self.metrics += self.update()
                        self.updates_since_log += 1
                bar.update(self.envs.n)
                stop = False
                if self.step % cfg.checkpoint_every == 0 or self.step >= cfg.total_steps:
                    self.save_actor()
                    bar.set_postfix(self._postfix(), refresh=False)
                    stop = until is not None and until(self.checkpoints)
                if stop or self.step % cfg.save_every == 0 or self.step >= cfg.total_steps:
                    self.save_state()
                    if on_save is not None:
                        on_save(self.checkpoints)
                if stop:
                    break
        return self.checkpoints

    def _postfix(self) -> dict[str, str]:
        out = {"return": f"{self.checkpoints[-1].mean_return:.0f}"}
        if self.updates_since_log:
            mean = (self.metrics / self.updates_since_log).tolist()
            out.update(q_loss=f"{mean[0]:.3g}", alpha=f"{mean[2]:.3g}")
            self.metrics.zero_()
            self.updates_since_log = 0
        return out

    # -- checkpoints -----------------------------------------------------------------------------

    def save_actor(self) -> Checkpoint:
        """Save the actor's weights at the current step, evaluate it and update ``curve.json``."""
        cfg = self.cfg
        path = self.run_dir / "actors" / f"step{self.step:09d}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_actor_weights(self.actor, path, {"env_id": cfg.env_id, "step": str(self.step)})
        seed = cfg.seed + EVAL_SEED_OFFSET + self.step
        returns = evaluate_actor(self.actor, cfg.env_id, cfg.eval_episodes, seed)
        checkpoint = Checkpoint(
            self.step, str(path.relative_to(self.run_dir)), float(returns.mean()), returns.tolist()
        )
        self.checkpoints.append(checkpoint)
        curve = {"config": asdict(cfg), "checkpoints": [asdict(c) for c in self.checkpoints]}
        _write_json(self.run_dir / "curve.json", curve)
        return checkpoint

    def save_state(self) -> Path:
        """Save the full training state (module docstring), then drop the previous one."""
        tensors: dict[str, torch.Tensor] = {}
        for prefix, module in (("actor", self.actor), ("critic", self.critic)):
            tensors.update({f"{prefix}/{k}": v for k, v in module.state_dict().items()})
        tensors.update({f"target/{k}": v for k, v in self.target.state_dict().items()})
        tensors["log_alpha"] = self.log_alpha.detach()
        opt = self.optimizer.state_dict()
        for index, state in opt["state"].items():
            tensors.update({f"adam/{index}/{k}": v for k, v in state.items()})
        buffer_tensors, buffer_meta = self.buffer.state_dict()
        tensors.update({f"buffer/{k}": v for k, v in buffer_tensors.items()})
        env_tensors, env_meta = self.envs.state_dict()
        tensors.update({f"envs/{k}": v for k, v in env_tensors.items()})
        tensors["generator"] = self.generator.get_state()
        tensors["metrics"] = self.metrics
        name = f"state-{self.step:09d}.safetensors"
        tmp = self.run_dir / f".{name}.{os.getpid()}.tmp"
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp)
        os.replace(tmp, self.run_dir / name)
        meta = {
            "step": self.step,
            "file": name,
            "config": asdict(self.cfg),
            "adam_param_groups": opt["param_groups"],
            "buffer": buffer_meta,
            "envs": env_meta,
            "updates_since_log": self.updates_since_log,
            "checkpoints": [asdict(c) for c in self.checkpoints],
        }
        previous = _read_json(self.run_dir / "state.json")
        _write_json(self.run_dir / "state.json", meta)
        if previous and previous["file"] != name:
            (self.run_dir / previous["file"]).unlink(missing_ok=True)
        return self.run_dir / name

    def resume(self) -> bool:
        """Load the run's saved state if there is one; True when it did."""
        meta = _read_json(self.run_dir / "state.json")
        if meta is None:
            return False
        if meta["config"] != asdict(self.cfg):
            raise ValueError(
                f"{self.run_dir} holds a run with another config; use another run directory\n"
                f"  saved: {meta['config']}\n  asked: {asdict(self.cfg)}"
            )
        tensors = load_file(self.run_dir / meta["file"])

        def part(prefix: str) -> dict[str, torch.Tensor]:
            return {
                k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + "/")
            }

        self.actor.load_state_dict(part("actor"))
        self.critic.load_state_dict(part("critic"))
        self.target.load_state_dict(part("target"))
        with torch.no_grad():
            self.log_alpha.copy_(tensors["log_alpha"])
        adam = part("adam")
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in adam.items():
            index, name = key.split("/")
            state.setdefault(int(index), {})[name] = value
        self.optimizer.load_state_dict({"state": state, "param_groups": meta["adam_param_groups"]})
        self.buffer.load_state_dict(part("buffer"), meta["buffer"])
        self.envs.load_state_dict(part("envs"), meta["envs"])
        self.generator.set_state(tensors["generator"])
        self.metrics = tensors["metrics"].clone()
        self.updates_since_log = meta["updates_since_log"]
        self.step = meta["step"]
        self.checkpoints = [Checkpoint(**c) for c in meta["checkpoints"]]
        return True

    def close(self) -> None:
        self.envs.close()


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def save_actor_weights(
    actor: TanhGaussianActor,
    path: str | os.PathLike,
    metadata: dict[str, str] | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write the actor's weights (and action bounds) to a safetensors file, atomically."""
    path = Path(path)
    tensors = {k: v.detach().to(dtype).contiguous() for k, v in actor.state_dict().items()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, tmp, metadata=metadata)
    os.chmod(tmp, 0o644)  # safetensors creates owner-only files; these are shipped data
    os.replace(tmp, path)
    return path


def actor_from_tensors(tensors: dict[str, torch.Tensor]) -> TanhGaussianActor:
    """A float32 actor from :func:`save_actor_weights` tensors (sizes read from the shapes)."""
    hidden, obs_dim = tensors["fc0.weight"].shape
    act_dim = tensors["last_fc.weight"].shape[0]
    actor = TanhGaussianActor(obs_dim, act_dim, hidden)
    actor.load_state_dict({k: v.float() for k, v in tensors.items()})
    return actor.eval().requires_grad_(False)


def load_actor(path: str | os.PathLike) -> TanhGaussianActor:
    """Load an actor saved by :func:`save_actor_weights` (safetensors, no pickle)."""
    return actor_from_tensors(load_file(str(path)))


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=1))
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def train_sac(
    cfg: SACConfig,
    run_dir: str | os.PathLike,
    progress: bool = True,
    until: Callable[[list[Checkpoint]], bool] | None = None,
    on_save: Callable[[list[Checkpoint]], None] | None = None,
) -> list[Checkpoint]:
    """Train (or resume) SAC in ``run_dir`` (to the end, or ``until``, with ``on_save``, as in
    :meth:`SACTrainer.train`) and return its evaluated checkpoints."""
    trainer = SACTrainer(cfg, run_dir)
    start = time.perf_counter()
    try:
        checkpoints = trainer.train(progress, until, on_save)
    finally:
        trainer.close()
    if progress:
        print(f"SAC {cfg.env_id}: {trainer.step:,} steps in {time.perf_counter() - start:.0f} s")
    return checkpoints
