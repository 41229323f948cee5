"""Multi-agent behaviour cloning (MA-BC): one deterministic policy per agent, regressed onto that
agent's dataset actions from its own observation.

Paper: the MA-BC baseline of OMAR (Pan et al., ICML 2022) and MADiff (Zhu et al., NeurIPS 2024,
whose MPE table quotes OMAR's numbers). Method: behaviour cloning applied to each agent
independently (decentralized execution): normalize the agent's observation, map it through a
2x256 ReLU MLP with a tanh output in the action box, minimize the MSE to the agent's dataset
action; no reward, no value.
Official code followed: the suite's single-agent BC (CORL ``any_percent_bc.py`` settings), per
agent. Departures: OMAR publishes no MA-BC script (its MPE networks are 2x64 with Adam 0.01); we
keep CORL's 2x256 / 3e-4 / batch 256 so MA-BC is the same learner as the suite's BC; the
observation statistics are pooled over agents (the harness's multi-agent ``DatasetStats``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from algorithms.common.contract import Checkpointable, DatasetStats, DataSpec, TaskInfo
from algorithms.common.defaults import PaperDefaults, Settings, fill
from algorithms.common.nets import ObsNormalizer, gradient_step
from algorithms.common.policies import TanhPolicy

PAPER = PaperDefaults(
    families={"default": Settings("CORL any_percent_bc.py (frac=1), per agent", {})}
)


@dataclass
class Config:
    """CORL ``any_percent_bc.py`` defaults (Adam 3e-4, batch 256, 2x256 ReLU), per agent."""

    hidden: int = 256  # width of each agent's policy MLP hidden layers
    depth: int = 2  # hidden layers of each agent's policy MLP
    lr: float = 3e-4  # Adam learning rate
    batch_size: int = 256  # joint transitions per update


def resolve(cfg: Config, info: TaskInfo, stats: DatasetStats) -> Config:
    """``cfg`` with the paper's values filled in (no per-task ones); multi-agent tasks only."""
    if info.n_agents < 2:
        raise ValueError(f"ma_bc needs a multi-agent task; {info.task_id} has one agent")
    return fill(cfg, PAPER, info)


def ma_bc_loss(actors: nn.ModuleList, obs: Tensor, act: Tensor) -> Tensor:
    """Mean over agents of each agent's MSE to its dataset actions (``[B, A, ...]``)."""
    pred = torch.stack([actor(obs[:, i]) for i, actor in enumerate(actors)], dim=1)
    return (pred - act).square().mean()


class Agent(Checkpointable):
    """MA-BC following :mod:`algorithms.common.contract` (multi-agent: ``[n_envs, n_agents, .]``)."""

    state_attrs = ("actors", "optimizer", "step")

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
        self.data_spec = DataSpec(kind="transitions", batch_size=cfg.batch_size)
        self.normalize = ObsNormalizer(stats.obs_mean, stats.obs_std, self.device)
        self.actors = nn.ModuleList(
            TanhPolicy(info, cfg.hidden, cfg.depth) for _ in range(info.n_agents)
        ).to(self.device)
        self.optimizer = torch.optim.Adam(self.actors.parameters(), lr=cfg.lr)
        self.step = 0

    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One Adam step on :func:`ma_bc_loss`."""
        loss = ma_bc_loss(self.actors, self.normalize(batch["observations"]), batch["actions"])
        gradient_step(self.optimizer, loss)
        self.step += 1
        return {"actor_loss": loss.detach()}

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions ``[n_envs, n_agents, act_dim]``, each agent from its own observation."""
        x = self.normalize.from_numpy(obs)
        acts = [actor.box.clamp(actor(x[:, i])) for i, actor in enumerate(self.actors)]
        return torch.stack(acts, dim=1).cpu().numpy()

    def reset(self, done: np.ndarray | None = None) -> None:
        """MA-BC keeps no per-environment state."""
