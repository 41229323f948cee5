"""Locomotion forge speed: SAC trainer env steps/s and dataset collection transitions/s, as a table.

    python benchmarks/forge.py [--envs hopper,halfcheetah,walker2d] [--train-steps 300]
                               [--collect 20000] [--workers 1,2] [--threads 1]

Trainer: ``tasks.forge.sac.SACTrainer`` against :class:`NaiveSAC`, a straightforward loop written
the way SAC is usually written (CleanRL / SB3 style: two separate critic MLPs and two target
copies, three Adam optimizers and three backward passes, the actor loss back-propagated through
the critics' weights, ``torch.distributions``, a NumPy replay buffer copied to tensors each batch,
per-parameter Polyak loop, ``.item()`` logging every step) with the same settings (2x256, batch
256, ratio 1). Both fill their buffer with ``--warmup`` env steps, then run ``--train-steps``
timed iterations of one env step + one update, in the same process, alternating.

Collection: ``tasks.forge.collect.collect`` of ``--collect`` transitions with an untrained
actor (the ``random`` level's policy), for each worker count. The machine (cores, current load
average) and library versions head the table: the machines are shared, so compare rows measured
together.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import nn

from bench.run import library_versions
from tasks.forge.collect import Phase, collect
from tasks.forge.sac import SACConfig, SACTrainer, make_actor
from tasks.registry import LOCOMOTION


class NaiveSAC:
    """The usual SAC loop (module docstring), the reference the lean trainer is measured against."""

    def __init__(self, env_id: str, seed: int = 0, hidden: int = 256, batch: int = 256):
        import gymnasium as gym

        torch.manual_seed(seed)
        self.env = gym.make(env_id)
        self.obs, _ = self.env.reset(seed=seed)
        obs_dim = self.env.observation_space.shape[0]
        act_dim = self.env.action_space.shape[0]

        def mlp(inp: int, out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Linear(inp, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                nn.Linear(hidden, out),
            )  # fmt: skip

        self.trunk = mlp(obs_dim, 2 * act_dim)
        self.q1, self.q2 = mlp(obs_dim + act_dim, 1), mlp(obs_dim + act_dim, 1)
        self.q1_target, self.q2_target = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        self.log_alpha = torch.zeros(1, requires_grad=True)
        self.q_opt = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], lr=3e-4)
        self.pi_opt = torch.optim.Adam(self.trunk.parameters(), lr=3e-4)
        self.a_opt = torch.optim.Adam([self.log_alpha], lr=3e-4)
        self.batch, self.act_dim = batch, act_dim
        cap = 100_000
        self.b_obs = np.zeros((cap, obs_dim), np.float32)
        self.b_next = np.zeros((cap, obs_dim), np.float32)
        self.b_act = np.zeros((cap, act_dim), np.float32)
        self.b_rew = np.zeros(cap, np.float32)
        self.b_done = np.zeros(cap, np.float32)
        self.size = 0
        self.log: dict[str, float] = {}

    def policy(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.trunk(obs).chunk(2, -1)
        dist = torch.distributions.Normal(mean, log_std.clamp(-20, 2).exp())
        u = dist.rsample()
        action = torch.tanh(u)
        logp = dist.log_prob(u).sum(-1) - torch.log(1 - action.pow(2) + 1e-6).sum(-1)
        return action, logp

    def env_step(self) -> None:
        with torch.no_grad():
            action, _ = self.policy(torch.tensor(self.obs, dtype=torch.float32).unsqueeze(0))
        action = action.squeeze(0).numpy()
        next_obs, reward, terminated, truncated, _ = self.env.step(action)
        i = self.size
        self.b_obs[i], self.b_act[i], self.b_rew[i] = self.obs, action, reward
        self.b_next[i], self.b_done[i] = next_obs, float(terminated)
        self.size += 1
        self.obs = self.env.reset()[0] if terminated or truncated else next_obs

    def update(self) -> None:
        idx = np.random.randint(0, self.size, self.batch)
        obs = torch.tensor(self.b_obs[idx])
        act = torch.tensor(self.b_act[idx])
        rew = torch.tensor(self.b_rew[idx])
        nxt = torch.tensor(self.b_next[idx])
        done = torch.tensor(self.b_done[idx])
        alpha = self.log_alpha.exp().item()
        with torch.no_grad():
            next_a, next_logp = self.policy(nxt)
            x = torch.cat([nxt, next_a], 1)
            next_q = torch.min(self.q1_target(x), self.q2_target(x)).squeeze(1)
            target = rew + 0.99 * (1 - done) * (next_q - alpha * next_logp)
        x = torch.cat([obs, act], 1)
        q_loss = F.mse_loss(self.q1(x).squeeze(1), target) + F.mse_loss(
            self.q2(x).squeeze(1), target
        )
        self.q_opt.zero_grad()
        q_loss.backward()
        self.q_opt.step()
        a, logp = self.policy(obs)
        x = torch.cat([obs, a], 1)
        pi_loss = (alpha * logp - torch.min(self.q1(x), self.q2(x)).squeeze(1)).mean()
        self.pi_opt.zero_grad()
        pi_loss.backward()
        self.pi_opt.step()
        a_loss = -(self.log_alpha * (logp.detach() - self.act_dim)).mean()
        self.a_opt.zero_grad()
        a_loss.backward()
        self.a_opt.step()
        with torch.no_grad():
            for net, tgt in ((self.q1, self.q1_target), (self.q2, self.q2_target)):
                for p, tp in zip(net.parameters(), tgt.parameters(), strict=True):
                    tp.data.mul_(0.995).add_(0.005 * p.data)
        self.log = {"q_loss": q_loss.item(), "pi_loss": pi_loss.item(), "alpha": alpha}


def time_trainers(env_id: str, warmup: int, steps: int, rounds: int = 3) -> dict[str, float]:
    """Env steps/s (one env step + one update each) of the lean and the naive SAC."""
    lean = SACTrainer(
        SACConfig(env_id=env_id, total_steps=warmup + 10 * steps, learning_starts=0),
        tempfile.mkdtemp(),
    )
    naive = NaiveSAC(env_id)
    for _ in range(warmup):
        lean.collect_step()
        naive.env_step()
    seconds = {"lean": 0.0, "naive": 0.0}
    chunk = max(1, steps // rounds)
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(chunk):
            lean.collect_step()
            lean.update()
        seconds["lean"] += time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(chunk):
            naive.env_step()
            naive.update()
        seconds["naive"] += time.perf_counter() - start
    lean.close()
    return {name: rounds * chunk / s for name, s in seconds.items()}


def time_collection(env_id: str, transitions: int, workers: int) -> float:
    """Transitions/s of the locomotion collector with an untrained actor."""
    torch.manual_seed(0)
    actor = make_actor(env_id)
    start = time.perf_counter()
    collect(env_id, [Phase(actor, transitions)], seed=0, workers=workers)
    return transitions / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", default="hopper,halfcheetah,walker2d")
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--collect", type=int, default=20_000)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    console = Console()
    versions = library_versions()
    console.print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f} at start, torch threads {args.threads}; "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
    )
    workers = [int(w) for w in args.workers.split(",")]
    table = Table("env", "lean SAC steps/s", "naive SAC steps/s", "x naive")
    for w in workers:
        table.add_column(f"collect/s ({w} worker{'s' if w > 1 else ''})")
    for env in args.envs.split(","):
        env_id = LOCOMOTION[env][0]
        sac = time_trainers(env_id, args.warmup, args.train_steps) if args.train_steps else {}
        rates = [time_collection(env_id, args.collect, w) for w in workers] if args.collect else []
        table.add_row(
            env_id,
            f"{sac['lean']:.1f}" if sac else "-",
            f"{sac['naive']:.1f}" if sac else "-",
            f"{sac['lean'] / sac['naive']:.2f}" if sac else "-",
            *(f"{r:,.0f}" for r in rates),
        )
    console.print(table)
    console.print(
        f"trainer: {args.train_steps} timed env steps + updates after {args.warmup} warm-up steps; "
        f"collection: {args.collect:,} transitions; load average {os.getloadavg()[0]:.1f} at end"
    )


if __name__ == "__main__":
    main()
