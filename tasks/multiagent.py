"""Multi-agent particle environments as OMAR modified them, batched: ``n_envs`` worlds stepped together.

OMAR (Pan et al., ICML 2022; github.com/ling-pan/OMAR, ``multiagent-particle-envs``) evaluates on
its own fork of OpenAI's MPE, and MADiff (zbzhu99/madiff) uses OMAR's fork and data. PettingZoo's
MPE (``mpe2`` 1.1) does not match that fork, so this module is a faithful port, not a wrapper:

* ``mpe2``'s continuous actions are 5-D (no-op, +x, -x, +y, -y in [0, 1]); OMAR's are 2-D forces
  in [-1, 1] (``u = 5 a`` for spread);
* ``mpe2``'s ``simple_spread`` rewards ``-sum_l min_a |a - l|`` (shared) and ``-1`` per collision;
  OMAR's rewards each agent ``sum_l min(1 / min_a |a - l|, 10)`` and ``-5`` per collision
  ("modified by ling");
* ``mpe2``'s ``simple_tag`` rewards are unshaped; OMAR's shape both sides (``shape = True``).

Ported from OMAR's ``multiagent/core.py`` (world physics: damping 0.25, dt 0.1, soft contact
forces ``100 * delta / dist * k log(1 + exp(-(dist - dist_min) / k))`` with ``k = 1e-3``, the
action force ``m * accel * (sensitivity * a)`` applied twice over as the original does,
velocity capped at ``max_speed``), ``environment.py`` (2-D continuous actions, observations and
rewards after the physics step, no termination) and ``scenarios/simple_spread.py``: three agents
(size 0.15) and three landmarks drawn U(-1, 1)^2; observation
``[vel, pos, landmark - pos (3x2), other - pos (2x2), comm (2x2, always 0)]`` (18-D). Episodes
last 25 steps (OMAR's ``episode_length``). Actions are clipped to [-1, 1] (OMAR's policies clamp).

Arrays: observations ``[n_envs, n_agents, obs_dim]``, actions ``[n_envs, n_agents, act_dim]``,
rewards ``[n_envs, n_agents]``. Each env has its own ``numpy`` generator, seeded on ``reset``
(env ``i`` with ``seed[i]``), so an episode is reproducible whatever the batch it runs in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DT, DAMPING = 0.1, 0.25
CONTACT_FORCE, CONTACT_MARGIN = 100.0, 1e-3
SENSITIVITY = 5.0  # environment.py: action scale when the agent has no ``accel``
EPISODE_LENGTH = 25


@dataclass(frozen=True)
class Scenario:
    """Static description of one OMAR scenario."""

    name: str
    n_agents: int  # agents controlled by the learners
    n_landmarks: int
    agent_size: float
    obs_dim: int
    act_dim: int = 2
    reward_cap: float = 10.0  # spread: per-landmark reward min(1 / d, cap)
    collision_penalty: float = 5.0  # spread: per collision with another agent


SPREAD = Scenario(name="spread", n_agents=3, n_landmarks=3, agent_size=0.15, obs_dim=18)
SCENARIOS = {"spread": SPREAD}


class ParticleEnvs:
    """``n_envs`` copies of a scenario stepped together (module docstring)."""

    def __init__(self, scenario: str | Scenario, n_envs: int):
        self.scenario = SCENARIOS[scenario] if isinstance(scenario, str) else scenario
        self.n_envs = n_envs
        s = self.scenario
        self.n_agents, self.obs_dim, self.act_dim = s.n_agents, s.obs_dim, s.act_dim
        self.max_episode_steps = EPISODE_LENGTH
        self.rngs = [np.random.default_rng(i) for i in range(n_envs)]
        self.pos = np.zeros((n_envs, s.n_agents, 2))
        self.vel = np.zeros((n_envs, s.n_agents, 2))
        self.landmarks = np.zeros((n_envs, s.n_landmarks, 2))
        self.t = 0

    def reset(self, seed: int | list[int] | None = None) -> np.ndarray:
        """Draw new worlds (env ``i`` seeded with ``seed[i]``, or ``seed + i``); observations."""
        if seed is not None:
            seeds = [seed + i for i in range(self.n_envs)] if np.isscalar(seed) else list(seed)
            self.rngs = [np.random.default_rng(x) for x in seeds]
        s = self.scenario
        for i, rng in enumerate(self.rngs):
            # OMAR's reset_world: agents first, then landmarks, each U(-1, 1)^2 (boundary 1 for
            # three agents)
            self.pos[i] = rng.uniform(-1, 1, (s.n_agents, 2))
            self.landmarks[i] = rng.uniform(-1, 1, (s.n_landmarks, 2))
        self.vel[:] = 0.0
        self.t = 0
        return self.observe()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Advance every env one step: ``(obs, rewards [n_envs, n_agents], terminated,
        truncated)``; every env truncates together after ``max_episode_steps`` steps."""
        u = np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0) * SENSITIVITY
        force = u + self._contact_forces()  # mass 1, no accel: p_force = m * u
        self.vel = self.vel * (1 - DAMPING) + force * DT
        self.pos = self.pos + self.vel * DT
        self.t += 1
        done = np.full(self.n_envs, self.t >= self.max_episode_steps)
        return self.observe(), self.rewards(), np.zeros(self.n_envs, dtype=bool), done

    def _contact_forces(self) -> np.ndarray:
        """Soft collision forces between agents (spread's landmarks do not collide)."""
        delta = self.pos[:, :, None] - self.pos[:, None, :]  # [E, A, A, 2]: a - b
        dist = np.sqrt((delta**2).sum(-1))
        eye = np.eye(self.n_agents, dtype=bool)
        dist = np.where(eye, 1.0, dist)
        dist_min = 2 * self.scenario.agent_size
        penetration = np.logaddexp(0, -(dist - dist_min) / CONTACT_MARGIN) * CONTACT_MARGIN
        force = CONTACT_FORCE * delta / dist[..., None] * penetration[..., None]
        return np.where(eye[..., None], 0.0, force).sum(axis=2)

    def observe(self) -> np.ndarray:
        """``[n_envs, n_agents, obs_dim]`` float32 (module docstring)."""
        n, a = self.n_envs, self.n_agents
        landmarks = self.landmarks[:, None] - self.pos[:, :, None]  # [E, A, L, 2]
        others = self.pos[:, None] - self.pos[:, :, None]  # [E, A, A, 2]: other - self
        off_diagonal = ~np.eye(a, dtype=bool)
        others = others[:, off_diagonal].reshape(n, a, a - 1, 2)
        comm = np.zeros((n, a, 2 * (a - 1)))
        parts = [self.vel, self.pos, landmarks.reshape(n, a, -1), others.reshape(n, a, -1), comm]
        return np.concatenate(parts, axis=-1).astype(np.float32)

    def rewards(self) -> np.ndarray:
        """OMAR's spread reward of each agent (module docstring)."""
        s = self.scenario
        dists = np.sqrt(((self.pos[:, :, None] - self.landmarks[:, None]) ** 2).sum(-1))
        cover = np.minimum(1.0 / dists.min(axis=1), s.reward_cap).sum(-1)  # [E]
        pair = np.sqrt(((self.pos[:, :, None] - self.pos[:, None]) ** 2).sum(-1))
        collide = (pair < 2 * s.agent_size) & ~np.eye(self.n_agents, dtype=bool)
        return cover[:, None] - s.collision_penalty * collide.sum(-1)


def team_score(rewards: np.ndarray, scenario: str) -> np.ndarray:
    """The per-step quantity MADiff and OMAR report, summed over an episode: spread's mean over
    agents (``rewards [..., n_agents]`` -> ``[...]``)."""
    if scenario == "spread":
        return rewards.mean(axis=-1)
    raise ValueError(f"unknown scenario {scenario!r}; valid: {', '.join(SCENARIOS)}")
