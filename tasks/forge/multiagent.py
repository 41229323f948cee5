"""Multi-agent MPE forge by OMAR's protocol: MATD3 behaviour policies with exploration noise.

OMAR (Pan et al., ICML 2022, Sec. 5) builds its MPE datasets from MATD3 behaviour policies:
``random`` from a randomly initialized policy, ``medium`` from a partly trained one,
``expert`` from a fully trained one, ``medium-replay`` from the replay buffer collected up to the
medium point; its datasets are download-only, so they are forged here the same way in
:mod:`tasks.multiagent`'s port of OMAR's particle worlds, for ``spread``, ``tag`` and ``world``.
In tag and world MATD3 trains the three predators only, against the port's scripted prey (OMAR
trains them against its pretrained prey network, which is not published apart from the data; see
:mod:`tasks.multiagent`), and the data hold the predators alone, as MADiff's
``PretrainedPreyWrapper`` presents them.

MATD3 (Ackermann et al. 2019: MADDPG with TD3's twin critics, target-policy smoothing and delayed
actor updates): per-agent actors ``obs_i -> tanh`` (last layer initialized in +-3e-3, as OMAR's
``MLPNetwork(constrain_out=True)``) and per-agent centralized twin critics of all observations and
actions, 2x64 ReLU MLPs, with OMAR's MPE settings (``main.py``) where they are given: discount
0.95, Polyak 0.01, batch 1024, Gaussian exploration noise 0.1, 25-step episodes, a 1M-step
buffer, gradient norms clipped to 0.5, ``1e-3 * mean(pi^2)`` on the actor
(``algorithms/maddpg.py``); TD3's target noise 0.2 clipped at 0.5 and actor updates every second
round.

Ours, stated (OMAR does not publish its behaviour-training script; its ``main.py`` is the offline
trainer):

* optimization: OMAR's Adam lr 0.01 saturated the actors (tanh at +-1, agents leaving the
  arena) before the critics were fit, and one update round per 100 env steps (OMAR's
  ``steps_per_update``) left the critics far from their targets at the reduced scales; here
  the critics use lr 0.01, the actors 1e-3, one round per 25 env steps (the same for every
  scenario). Measured (one loaded core, seed 0): the team score of the noiseless actors rises
  from 152 (untrained) to 262 after 5000 episodes (125k steps), about 1000 episodes a minute;
  on tag and world (scale 0.05: 2000 episodes, seed 0) from -9.4 to -2.2 (tag) and from -9.8 to
  -4.3 (world): the predators learn to close in on the prey (the shaping term) but rarely catch
  it; the scripted controllers of :mod:`tasks.multiagent` score far above that (below). The first
  ~400 episodes lower the score (to -14 on tag) before it rises, so at scale <= 0.01 the best
  trained checkpoint may be one taken before any update (expert = untrained), and at scale 0.001
  (40 episodes, under one batch of transitions) no update happens at all;
* the actors have no input BatchNorm (OMAR's ``MLPNetwork`` has one);
* levels: every ``n_episodes / 20`` episodes the noiseless actors are scored on 100 evaluation
  episodes (the team metric of :func:`tasks.multiagent.team_score`); ``expert`` is the best
  trained checkpoint, ``medium`` the trained checkpoint closest to ``untrained + 0.5 (expert -
  untrained)`` among those up to the first that reaches it (the locomotion forge's rule),
  ``medium-replay`` every transition collected up to the medium checkpoint; ``random``,
  ``medium`` and ``expert`` data are rollouts of their actors with the exploration noise (0.1,
  clipped to [-1, 1]), 1M transitions per dataset at scale 1, whole 25-step episodes. Training
  runs ``40000 * scale`` episodes (at least 40).

One training run per (scenario, scale, seed) serves all four levels; its snapshots (actor weights,
checkpoint returns, the medium-replay buffer) are cached as HDF5 beside the datasets and reused.
Reference scores (in the team metric), ours (OMAR and MADiff report raw team scores): the uniform
random policy (min) and the scenario's scripted controller (max; see :mod:`tasks.multiagent`),
each 100 episodes from ``reset(seed=123)``, as the point mazes' waypoint controller is theirs;
they depend neither on the scale nor on the MATD3 run. The MATD3 expert would be a poor max:
measured (seed 0; random, expert at scale 0.05 / 0.1, controller) spread 147.0, 169.6 / 204.6,
634.2; tag -9.3, -2.2 / 0.1, 25.8; world -9.5, -4.3 / -3.4, 10.3; at scale <= 0.01 the expert can
be no better than the untrained actors. The provenance names the controller (``ref_max_policy``) and
keeps the noiseless expert's own score (``expert_score``, not a normalizer). Forged files carry
``DATA_TAG`` (``v2``) in their name, so files normalized by the expert (untagged) are never reused.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tasks.forge import REFERENCE_SEED, data_root
from tasks.hdf5 import read_hdf5_attrs, write_d4rl_hdf5
from tasks.multiagent import CONTROLLERS, ParticleEnvs, scripted_controller, team_score
from tasks.progress import progress as progress_bar
from tasks.spec import TaskSpec

STEPS_AT_SCALE_1 = 1_000_000  # transitions per random / medium / expert dataset
TRAIN_EPISODES_AT_SCALE_1 = 40_000  # MATD3 episodes (1M env steps)
MIN_TRAIN_EPISODES = 40
CHECKPOINTS = 20  # evaluated checkpoints over the training run
REF_EPISODES = 100
HIDDEN = 64
ACTOR_LR, CRITIC_LR = 1e-3, 1e-2
DISCOUNT, TAU, BATCH = 0.95, 0.01, 1024
EXPLORATION_STD = 0.1
TARGET_NOISE, TARGET_NOISE_CLIP = 0.2, 0.5
STEPS_PER_UPDATE = 25
POLICY_DELAY = 2
BUFFER = 1_000_000
LEVELS = ("random", "medium", "medium-replay", "expert")
# In the forged file's name: v2 files are normalized by the scripted controllers (v1, unnamed,
# by the MATD3 expert), so a file forged with the old references is never read as a new one.
DATA_TAG = "v2"


class AgentsMLP(nn.Module):
    """One 2-hidden-layer ReLU MLP per agent, run for all agents at once: ``[A, B, in] -> [A, B, out]``."""

    def __init__(self, n_agents: int, d_in: int, d_out: int, hidden: int = HIDDEN):
        super().__init__()
        sizes = [d_in, hidden, hidden, d_out]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in itertools.pairwise(sizes):
            bound = 1.0 / np.sqrt(a)  # nn.Linear's default initialization
            self.weights.append(nn.Parameter(torch.empty(n_agents, a, b).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(n_agents, 1, b).uniform_(-bound, bound)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b, x, w)
            if i < len(self.weights) - 1:
                x = F.relu(x)
        return x


class Actors(nn.Module):
    """Per-agent deterministic actors ``obs [..., A, obs_dim] -> tanh actions [..., A, act_dim]``."""

    def __init__(self, n_agents: int, obs_dim: int, act_dim: int):
        super().__init__()
        self.net = AgentsMLP(n_agents, obs_dim, act_dim)
        with torch.no_grad():  # OMAR's MLPNetwork(constrain_out=True): a small last layer
            self.net.weights[-1].uniform_(-3e-3, 3e-3)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        lead = obs.shape[:-2]
        x = obs.reshape(-1, *obs.shape[-2:]).transpose(0, 1)  # [A, B, obs]
        return torch.tanh(self.net(x)).transpose(0, 1).reshape(*lead, obs.shape[-2], -1)


class TwinCritics(nn.Module):
    """Per-agent centralized twin critics of (all observations, all actions): ``[2, A, B]``."""

    def __init__(self, n_agents: int, obs_dim: int, act_dim: int):
        super().__init__()
        d_in = n_agents * (obs_dim + act_dim)
        self.n_agents = n_agents
        self.q = nn.ModuleList([AgentsMLP(n_agents, d_in, 1) for _ in range(2)])

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        joint = torch.cat([obs.flatten(1), act.flatten(1)], dim=-1)
        x = joint.unsqueeze(0).expand(self.n_agents, -1, -1)
        return torch.stack([q(x).squeeze(-1) for q in self.q])


class Buffer:
    """A FIFO replay buffer of joint transitions (numpy)."""

    def __init__(self, capacity: int, n_agents: int, obs_dim: int, act_dim: int):
        self.obs = np.zeros((capacity, n_agents, obs_dim), np.float32)
        self.act = np.zeros((capacity, n_agents, act_dim), np.float32)
        self.rew = np.zeros((capacity, n_agents), np.float32)
        self.next_obs = np.zeros_like(self.obs)
        self.timeouts = np.zeros(capacity, bool)
        self.n = 0

    def add(self, obs, act, rew, next_obs, timeouts) -> None:
        k = len(obs)
        idx = np.arange(self.n, self.n + k) % len(self.obs)
        self.obs[idx], self.act[idx], self.rew[idx] = obs, act, rew
        self.next_obs[idx], self.timeouts[idx] = next_obs, timeouts
        self.n += k

    def sample(self, rng: np.random.Generator, batch: int) -> tuple[torch.Tensor, ...]:
        idx = rng.integers(min(self.n, len(self.obs)), size=batch)
        return tuple(torch.as_tensor(a[idx]) for a in (self.obs, self.act, self.rew, self.next_obs))

    def arrays(self) -> dict[str, np.ndarray]:
        """Every stored transition in order (the buffer never wraps at the forge's sizes)."""
        n = min(self.n, len(self.obs))
        return {
            "observations": self.obs[:n],
            "actions": self.act[:n],
            "rewards": self.rew[:n],
            "next_observations": self.next_obs[:n],
            "timeouts": self.timeouts[:n],
        }


class MATD3:
    """MATD3 learner (module docstring)."""

    def __init__(self, n_agents: int, obs_dim: int, act_dim: int, seed: int):
        torch.manual_seed(seed)
        self.actor = Actors(n_agents, obs_dim, act_dim)
        self.critic = TwinCritics(n_agents, obs_dim, act_dim)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=ACTOR_LR)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=CRITIC_LR)
        self.rounds = 0

    def update(self, obs, act, rew, next_obs) -> None:
        """One round: every agent's critics, every ``POLICY_DELAY`` rounds every actor, targets."""
        with torch.no_grad():
            noise = (torch.randn_like(act) * TARGET_NOISE).clamp(
                -TARGET_NOISE_CLIP, TARGET_NOISE_CLIP
            )
            next_act = (self.actor_target(next_obs) + noise).clamp(-1, 1)
            target_q = self.critic_target(next_obs, next_act).min(0).values  # [A, B]
            target = rew.T + DISCOUNT * target_q  # MPE never terminates
        q = self.critic(obs, act)
        critic_loss = F.mse_loss(q, target.expand_as(q))
        self.critic_opt.zero_grad()
        critic_loss.backward()
        nn.utils.clip_grad_norm_(self.critic.parameters(), 0.5)
        self.critic_opt.step()
        self.rounds += 1
        if self.rounds % POLICY_DELAY:
            return
        # Each agent's actor ascends its own critic with the other agents' buffer actions.
        new = self.actor(obs)  # [B, A, act]
        n_agents = obs.shape[1]
        eye = torch.eye(n_agents, dtype=torch.bool)[:, None, :, None]  # [A(own), 1, A, 1]
        joint = torch.where(eye, new.unsqueeze(0), act.unsqueeze(0))  # [A, B, A, act]
        q1 = torch.stack([self.critic(obs, joint[i])[0, i] for i in range(n_agents)])
        actor_loss = -q1.mean() + 1e-3 * (new**2).mean()
        self.actor_opt.zero_grad()
        actor_loss.backward()
        nn.utils.clip_grad_norm_(self.actor.parameters(), 0.5)
        self.actor_opt.step()
        with torch.no_grad():
            for target, source in (
                (self.actor_target, self.actor),
                (self.critic_target, self.critic),
            ):
                for t, s in zip(target.parameters(), source.parameters(), strict=True):
                    t.lerp_(s, TAU)


def act(actor: Actors, obs: np.ndarray, noise_std: float, rng: np.random.Generator) -> np.ndarray:
    """The actor's actions with Gaussian exploration noise, clipped to [-1, 1]."""
    with torch.no_grad():
        a = actor(torch.as_tensor(obs)).numpy()
    if noise_std > 0:
        a = a + rng.normal(0.0, noise_std, a.shape)
    return np.clip(a, -1.0, 1.0).astype(np.float32)


def team_return(
    scenario: str, policy, episodes: int = REF_EPISODES, seed: int = REFERENCE_SEED
) -> float:
    """Mean episode team score of ``policy(obs [E, A, D]) -> actions`` over ``episodes``
    parallel episodes, env ``i`` reset with ``seed + i``."""
    envs = ParticleEnvs(scenario, episodes)
    obs = envs.reset(seed)
    total = np.zeros(episodes)
    for _ in range(envs.max_episode_steps):
        obs, rew, _, _ = envs.step(policy(obs))
        total += team_score(rew, scenario)
    return float(total.mean())


@dataclass
class Behaviour:
    """What one MATD3 run leaves for the forge."""

    actors: dict[str, dict[str, torch.Tensor]]  # level -> actor state dict
    returns: list[float]  # team score of each checkpoint (index 0: untrained)
    episodes: list[int]  # training episodes at each checkpoint
    medium_index: int
    expert_index: int
    replay: dict[str, np.ndarray]  # transitions collected up to the medium checkpoint


def pick_medium(returns: list[float], target: float) -> int:
    """The trained checkpoint (index >= 1) closest to ``target`` among those up to the first
    that reaches it (all of them when none does)."""
    last = next((i for i, r in enumerate(returns) if i >= 1 and r >= target), len(returns) - 1)
    return min(range(1, last + 1), key=lambda i: abs(returns[i] - target))


def train_behaviour(scenario: str, scale: float, seed: int, progress: bool) -> Behaviour:
    """Train MATD3 for ``scale * TRAIN_EPISODES_AT_SCALE_1`` episodes, scoring checkpoints."""
    n_episodes = max(MIN_TRAIN_EPISODES, round(TRAIN_EPISODES_AT_SCALE_1 * scale))
    every = max(1, n_episodes // CHECKPOINTS)
    envs = ParticleEnvs(scenario, 1)
    learner = MATD3(envs.n_agents, envs.obs_dim, envs.act_dim, seed)
    rng = np.random.default_rng(seed)
    buffer = Buffer(
        min(BUFFER, n_episodes * envs.max_episode_steps), envs.n_agents, envs.obs_dim, envs.act_dim
    )
    snapshots = [copy.deepcopy(learner.actor.state_dict())]
    returns = [team_return(scenario, lambda o: act(learner.actor, o, 0.0, rng))]
    episodes, sizes = [0], [0]
    steps = 0
    with progress_bar(
        n_episodes, f"forge MATD3 mpe-{scenario}", "episode", enabled=progress
    ) as bar:
        for episode in range(1, n_episodes + 1):
            obs = envs.reset(int(rng.integers(2**31)))
            for _ in range(envs.max_episode_steps):
                action = act(learner.actor, obs, EXPLORATION_STD, rng)
                next_obs, rew, _, truncated = envs.step(action)
                buffer.add(obs, action, rew, next_obs, truncated)
                obs = next_obs
                steps += 1
                if steps % STEPS_PER_UPDATE == 0 and buffer.n >= BATCH:
                    learner.update(*buffer.sample(rng, BATCH))
            bar.update()
            if episode % every == 0 or episode == n_episodes:
                snapshots.append(copy.deepcopy(learner.actor.state_dict()))
                returns.append(team_return(scenario, lambda o: act(learner.actor, o, 0.0, rng)))
                episodes.append(episode)
                sizes.append(buffer.n)
                bar.set_postfix_str(f"team score {returns[-1]:.1f}", False)
    expert = 1 + int(np.argmax(returns[1:]))  # the best trained checkpoint
    medium = pick_medium(returns, returns[0] + 0.5 * (returns[expert] - returns[0]))
    replay = {k: v[: sizes[medium]] for k, v in buffer.arrays().items()}
    return Behaviour(
        actors={"random": snapshots[0], "medium": snapshots[medium], "expert": snapshots[expert]},
        returns=returns,
        episodes=episodes,
        medium_index=medium,
        expert_index=expert,
        replay=replay,
    )


def behaviour_path(scenario: str, scale: float, seed: int):
    return data_root() / f"mpe-{scenario}" / f"behaviour-scale{float(scale):g}-seed{int(seed)}.hdf5"


def load_or_train(scenario: str, scale: float, seed: int, progress: bool) -> Behaviour:
    """The cached MATD3 run of (scenario, scale, seed), trained first if absent."""
    path = behaviour_path(scenario, scale, seed)
    if not path.exists():
        with torch.random.fork_rng():  # MATD3 seeds torch; the caller's stream is left alone
            b = train_behaviour(scenario, scale, seed, progress)
        arrays = {f"replay/{k}": v for k, v in b.replay.items()}
        for level, state in b.actors.items():
            arrays.update({f"actors/{level}/{k}": v.numpy() for k, v in state.items()})
        attrs = {
            "returns": b.returns,
            "episodes": b.episodes,
            "medium_index": b.medium_index,
            "expert_index": b.expert_index,
        }
        write_d4rl_hdf5(path, arrays, attrs)
    with h5py.File(path, "r") as f:
        replay = {k: f["replay"][k][()] for k in f["replay"]}
        actors = {
            level: {k: torch.as_tensor(f["actors"][level][k][()]) for k in f["actors"][level]}
            for level in f["actors"]
        }
    attrs = read_hdf5_attrs(path)
    return Behaviour(
        actors=actors,
        returns=attrs["returns"],
        episodes=attrs["episodes"],
        medium_index=attrs["medium_index"],
        expert_index=attrs["expert_index"],
        replay=replay,
    )


def load_actor(scenario: str, state: dict[str, torch.Tensor]) -> Actors:
    envs = ParticleEnvs(scenario, 1)
    actor = Actors(envs.n_agents, envs.obs_dim, envs.act_dim)
    actor.load_state_dict(state)
    return actor


def rollouts(
    scenario: str, actor: Actors, n_steps: int, seed: int, progress: bool, desc: str
) -> dict[str, np.ndarray]:
    """``n_steps`` transitions (whole episodes, run in parallel) of ``actor`` with exploration noise."""
    length = ParticleEnvs(scenario, 1).max_episode_steps
    n_episodes = max(1, -(-n_steps // length))
    rng = np.random.default_rng(seed)
    chunk = min(n_episodes, 1000)
    parts: list[dict[str, np.ndarray]] = []
    with progress_bar(n_episodes, desc, "episode", enabled=progress) as bar:
        for first in range(0, n_episodes, chunk):
            k = min(chunk, n_episodes - first)
            envs = ParticleEnvs(scenario, k)
            obs = envs.reset(int(rng.integers(2**31)))
            steps = []
            for _ in range(length):
                action = act(actor, obs, EXPLORATION_STD, rng)
                next_obs, rew, _, truncated = envs.step(action)
                steps.append((obs, action, rew, next_obs, truncated))
                obs = next_obs
            # [T, k, ...] -> episode-major [k * T, ...]
            fields = ("observations", "actions", "rewards", "next_observations", "timeouts")
            parts.append(
                {
                    f: np.stack([s[j] for s in steps], 1).reshape(
                        k * length, *steps[0][j].shape[1:]
                    )
                    for j, f in enumerate(fields)
                }
            )
            bar.update(k)
    arrays = {f: np.concatenate([p[f] for p in parts])[:n_steps] for f in parts[0]}
    arrays["timeouts"][-1] = True
    return arrays


def reference_scores(scenario: str) -> tuple[float, float]:
    """(min, max) reference team scores, independent of the forge's scale and MATD3 run: the
    uniform random policy and the scripted controller, 100 episodes from ``reset(seed=123)``."""
    rng = np.random.default_rng(REFERENCE_SEED)
    ref_min = team_return(scenario, lambda o: rng.uniform(-1, 1, (*o.shape[:-1], 2)))
    return ref_min, team_return(scenario, scripted_controller(scenario))


def forge_mpe(
    spec: TaskSpec, scale: float, seed: int, progress: bool
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """One level of an MPE scenario (module docstring)."""
    scenario, level = spec.forge_params["scenario"], spec.forge_params["level"]
    behaviour = load_or_train(scenario, scale, seed, progress)
    if level == "medium-replay":
        arrays = dict(behaviour.replay)
        arrays["timeouts"] = arrays["timeouts"].copy()
        arrays["timeouts"][-1] = True
    else:
        actor = load_actor(scenario, behaviour.actors[level])
        n_steps = max(ParticleEnvs(scenario, 1).max_episode_steps, round(STEPS_AT_SCALE_1 * scale))
        arrays = rollouts(
            scenario,
            actor,
            n_steps,
            seed + 1 + LEVELS.index(level),
            progress,
            f"forge {spec.task_id}",
        )
    arrays = {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in arrays.items()}
    arrays["terminals"] = np.zeros(len(arrays["observations"]), dtype=bool)
    ref_min, ref_max = reference_scores(scenario)
    envs = ParticleEnvs(scenario, 1)
    params = {
        "scenario": scenario,
        "level": level,
        "n_agents": envs.n_agents,
        "episode_length": envs.max_episode_steps,
        "behaviour": "MATD3",
        "exploration_std": EXPLORATION_STD,
        "checkpoint_returns": [round(r, 3) for r in behaviour.returns],
        "checkpoint_episodes": behaviour.episodes,
        "medium_checkpoint": behaviour.medium_index,
        "expert_checkpoint": behaviour.expert_index,
        # the noiseless MATD3 expert's team score (100 episodes from seed 123), for reading only
        "expert_score": round(behaviour.returns[behaviour.expert_index], 3),
        "ref_min_policy": "uniform random actions in [-1, 1]",
        "ref_max_policy": f"scripted controller: {CONTROLLERS[scenario]}",
        "metric": f"team score: {envs.scenario.metric}",
    }
    return arrays, {"params": params, "ref_min_score": ref_min, "ref_max_score": ref_max}
