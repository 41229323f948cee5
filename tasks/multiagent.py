"""Multi-agent particle environments as OMAR modified them, batched: ``n_envs`` worlds stepped together.

OMAR (Pan et al., ICML 2022; github.com/ling-pan/OMAR, ``multiagent-particle-envs``) evaluates on
its own fork of OpenAI's MPE, and MADiff (zbzhu99/madiff) uses OMAR's fork and data. PettingZoo's
MPE (``mpe2`` 1.1) does not match that fork, so this module is a faithful port, not a wrapper:

* ``mpe2``'s continuous actions are 5-D (no-op, +x, -x, +y, -y in [0, 1]); OMAR's are 2-D forces
  in [-1, 1];
* ``mpe2``'s ``simple_spread`` rewards ``-sum_l min_a |a - l|`` (shared) and ``-1`` per collision;
  OMAR's rewards each agent ``sum_l min(1 / min_a |a - l|, 10)`` and ``-5`` per collision
  ("modified by ling");
* ``mpe2``'s ``simple_tag`` rewards are unshaped; OMAR's shape both sides (``shape = True``), and
  OMAR's ``simple_world`` is its own scenario (no ``mpe2`` counterpart).

World physics, from OMAR's ``multiagent/core.py`` and ``environment.py``: damping 0.25, dt 0.1;
soft contact forces ``100 * delta / dist * k log(1 + exp(-(dist - dist_min) / k))`` (``k = 1e-3``,
``dist_min`` the sum of the sizes) between every two agents and between an agent and a colliding
landmark (two agents push each other in the ratio of their masses; landmarks never move); the
action force ``mass * accel * (accel * a)`` (``accel`` applied twice over, as the original does;
``mass * 5 a`` for agents without ``accel``); velocity capped at ``max_speed``; observations and
rewards after the physics step; no termination. Episodes last 25 steps (OMAR's
``episode_length``). Actions are clipped to [-1, 1] (OMAR's policies clamp). Scenarios
(``scenarios/*.py``), each reset as OMAR's ``reset_world`` (agents U(-1, 1)^2, then landmarks):

* ``spread``: three agents (size 0.15), three landmarks U(-1, 1)^2 that do not collide;
  observation ``[vel, pos, landmark - pos (3x2), other - pos (2x2), comm (2x2, always 0)]``
  (18-D); rewards as above;
* ``tag`` (``simple_tag``): three predators (OMAR's adversaries: size 0.075, accel 3, max speed 1)
  chase one prey (size 0.05, accel 4, max speed 1.3) among two colliding landmarks (size 0.2)
  U(-0.9, 0.9)^2; a predator observes ``[vel, pos, landmark - pos (2x2), other - pos (3x2: the
  other predators, then the prey), prey vel]`` (16-D); every predator gets the shared shaped
  reward ``-0.1 sum_predators |predator - prey| + 10`` per (predator, prey) contact;
* ``world`` (``simple_world``): the same predators and a prey of size 0.045, among one colliding
  landmark (size 0.2), two food (0.03) and two forests (0.3), all U(-0.9, 0.9)^2 and the last four
  passed through; a predator observes ``[vel, pos, landmark - pos (5x2: landmark, food, forests),
  other - pos (3x2), prey vel, in forest (2: +1 / -1 per forest)]`` (24-D; every agent is a
  ``leader``, so the forests hide nobody); reward as tag's with ``+5`` per contact. OMAR draws
  food and forests twice in ``reset_world``; they are drawn once here (same distribution).

The prey, decided here: OMAR's prey (the "good" agent) is a pretrained DDPG network that ships
only inside OMAR's and MADiff's datasets (``pretrained_adv_model.pt``); neither its weights nor
the script that trained them are published apart from the data. So the prey is scripted,
deterministic given the world, and the learners control only the three predators (as in MADiff's
``PretrainedPreyWrapper``): it pushes at full force (OMAR's accel and max speed) along the unit
vector of ``sum_predators (prey - predator) / |prey - predator|^2`` (flee, nearest predators most)
plus, per axis, ``1 / (1 + x) - 1 / (1 - x)`` (each arena wall at +-1 repels as a predator at
its distance would, distances floored at 0.05), acting on the world before the step as OMAR's
prey acts on its last observation. The prey's own reward is not computed (nothing reads it).

Scripted controllers, ours (OMAR has none; the forge's max reference, as the waypoint controller
is the point mazes'), deterministic functions of the joint observations (every agent's position,
velocity and relative view are in them, so they run through the harness's evaluator as any
agent): spread's assigns the agents to distinct landmarks (of the 3! assignments the one of least
total distance, recomputed each step, which scored slightly above one fixed at reset: 634.2 vs
631.3) and steers each with ``clip(10 (landmark - pos) - 1 vel, -1, 1)``; tag's and world's
predators each aim 0.3 past the prey along their line of sight and match its velocity,
``clip(2 (prey + 0.3 u - pos) + 1 (prey vel - vel), -1, 1)`` (``u`` the unit vector to the prey;
aiming past the prey keeps a predator from braking short of it). Gains from a small grid (100
episodes from seed 123, checked on a second seed); team scores there, random policy in brackets:
spread 634.2 (147.0), tag 25.8 (-9.3), world 10.3 (-9.5); plain full-force pursuit scores 0.7 on
tag and -3.2 on world.

Arrays: observations ``[n_envs, n_agents, obs_dim]``, actions ``[n_envs, n_agents, act_dim]``,
rewards ``[n_envs, n_agents]``, for the learners' agents only. Each env has its own ``numpy``
generator, seeded on ``reset`` (env ``i`` with ``seed[i]``), so an episode is reproducible whatever
the batch it runs in.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

DT, DAMPING = 0.1, 0.25
CONTACT_FORCE, CONTACT_MARGIN = 100.0, 1e-3
SENSITIVITY = 5.0  # environment.py: action scale when the agent has no ``accel``
EPISODE_LENGTH = 25
WALL_FLOOR = 0.05  # the scripted prey's smallest distance to a wall
# The scripted controllers' gains (module docstring), tuned on 100 episodes from seed 123.
COVER_GAINS = (10.0, 1.0)  # spread: position, velocity
PURSUIT_GAINS = (2.0, 1.0)  # tag / world: position, velocity matching
PURSUIT_OVERSHOOT = 0.3  # tag / world: aim this far past the prey, along the line of sight


@dataclass(frozen=True)
class Body:
    """Physical properties of one kind of agent (OMAR's ``Agent``; all of OMAR's have mass 1)."""

    size: float
    accel: float | None = None
    max_speed: float | None = None
    mass: float = 1.0

    @property
    def gain(self) -> float:
        """Force per unit action: ``mass * accel * accel`` (``u *= accel`` in environment.py,
        then ``mass * accel * u`` in core.py), or ``mass * 5`` without ``accel``."""
        return self.mass * (self.accel * self.accel if self.accel else SENSITIVITY)


@dataclass(frozen=True)
class Scenario:
    """Static description of one OMAR scenario (module docstring)."""

    name: str
    n_agents: int  # agents controlled by the learners (tag / world: the predators)
    agent: Body
    landmark_sizes: tuple[float, ...]  # every landmark, in OMAR's ``world.landmarks`` order
    landmark_collide: tuple[bool, ...]
    obs_dim: int
    metric: str  # what :func:`team_score` sums over an episode
    act_dim: int = 2
    landmark_range: float = 1.0  # landmarks drawn U(-range, range)^2
    prey: Body | None = None  # tag / world: one scripted prey, after the predators
    comm_dim: int = 0  # spread: other agents' (silent, zero) utterances in the observation
    forests: tuple[int, ...] = ()  # world: landmark indices of the forests
    reward_cap: float = 10.0  # spread: per-landmark reward min(1 / d, cap)
    collision_penalty: float = 5.0  # spread: per collision with another agent
    catch_reward: float = 0.0  # tag / world: per (predator, prey) contact, to every predator

    @property
    def n_bodies(self) -> int:
        """Agents in the world: the learners' and the prey."""
        return self.n_agents + (self.prey is not None)


SPREAD = Scenario(
    name="spread",
    n_agents=3,
    agent=Body(size=0.15),
    landmark_sizes=(0.05,) * 3,
    landmark_collide=(False,) * 3,
    obs_dim=18,
    metric="per-step mean reward over agents, summed over the episode",
    comm_dim=2,
)
_PREDATOR = Body(size=0.075, accel=3.0, max_speed=1.0)
_PREDATOR_METRIC = (
    "per-step reward of predator 0 (shared by every predator), summed over the episode"
)
TAG = Scenario(
    name="tag",
    n_agents=3,
    agent=_PREDATOR,
    landmark_sizes=(0.2, 0.2),
    landmark_collide=(True, True),
    obs_dim=16,
    metric=_PREDATOR_METRIC,
    landmark_range=0.9,
    prey=Body(size=0.05, accel=4.0, max_speed=1.3),
    catch_reward=10.0,
)
WORLD = Scenario(
    name="world",
    n_agents=3,
    agent=_PREDATOR,
    landmark_sizes=(0.2, 0.03, 0.03, 0.3, 0.3),  # landmark, food x2, forest x2
    landmark_collide=(True, False, False, False, False),
    obs_dim=24,
    metric=_PREDATOR_METRIC,
    landmark_range=0.9,
    prey=Body(size=0.045, accel=4.0, max_speed=1.3),
    forests=(3, 4),
    catch_reward=5.0,
)
SCENARIOS = {s.name: s for s in (SPREAD, TAG, WORLD)}


def get_scenario(name: str) -> Scenario:
    """The scenario called ``name``; a one-line error lists the valid names."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; valid: {', '.join(SCENARIOS)}")
    return SCENARIOS[name]


def contact_penetration(dist: np.ndarray, dist_min: np.ndarray) -> np.ndarray:
    """OMAR's softmax penetration ``k log(1 + exp(-(dist - dist_min) / k))``."""
    return np.logaddexp(0, -(dist - dist_min) / CONTACT_MARGIN) * CONTACT_MARGIN


def flee_actions(prey: np.ndarray, predators: np.ndarray) -> np.ndarray:
    """The scripted prey's actions ``[E, 2]`` from its position ``[E, 2]`` and the predators'
    ``[E, P, 2]`` (module docstring): a unit push away from the predators and the walls."""
    away = prey[:, None] - predators
    push = (away / (away**2).sum(-1, keepdims=True)).sum(1)
    push = push + 1 / np.maximum(1 + prey, WALL_FLOOR) - 1 / np.maximum(1 - prey, WALL_FLOOR)
    norm = np.sqrt((push**2).sum(-1, keepdims=True))
    return np.divide(push, norm, out=np.zeros_like(push), where=norm > 0)


class ParticleEnvs:
    """``n_envs`` copies of a scenario stepped together (module docstring)."""

    def __init__(self, scenario: str | Scenario, n_envs: int):
        s = get_scenario(scenario) if isinstance(scenario, str) else scenario
        self.scenario, self.n_envs = s, n_envs
        self.n_agents, self.obs_dim, self.act_dim = s.n_agents, s.obs_dim, s.act_dim
        self.max_episode_steps = EPISODE_LENGTH
        bodies = [s.agent] * s.n_agents + ([s.prey] if s.prey else [])
        self.sizes = np.array([b.size for b in bodies])
        self.masses = np.array([b.mass for b in bodies])
        self.gains = np.array([b.gain for b in bodies])
        self.max_speeds = np.array([b.max_speed or np.inf for b in bodies])
        self.landmark_sizes = np.array(s.landmark_sizes)
        self.rngs = [np.random.default_rng(i) for i in range(n_envs)]
        self.pos = np.zeros((n_envs, s.n_bodies, 2))  # the learners' agents, then the prey
        self.vel = np.zeros((n_envs, s.n_bodies, 2))
        self.landmarks = np.zeros((n_envs, len(s.landmark_sizes), 2))
        self.t = 0

    def reset(self, seed: int | list[int] | None = None) -> np.ndarray:
        """Draw new worlds (env ``i`` seeded with ``seed[i]``, or ``seed + i``); observations."""
        if seed is not None:
            seeds = [seed + i for i in range(self.n_envs)] if np.isscalar(seed) else list(seed)
            self.rngs = [np.random.default_rng(x) for x in seeds]
        s = self.scenario
        for i, rng in enumerate(self.rngs):
            # OMAR's reset_world: agents U(-1, 1)^2, then landmarks
            self.pos[i] = rng.uniform(-1, 1, self.pos.shape[1:])
            self.landmarks[i] = rng.uniform(
                -s.landmark_range, s.landmark_range, (len(self.landmark_sizes), 2)
            )
        self.vel[:] = 0.0
        self.t = 0
        return self.observe()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Advance every env one step: ``(obs, rewards [n_envs, n_agents], terminated,
        truncated)``; every env truncates together after ``max_episode_steps`` steps."""
        a = np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0)
        if self.scenario.prey is not None:
            prey = flee_actions(self.pos[:, -1], self.pos[:, : self.n_agents])
            a = np.concatenate([a, prey[:, None]], axis=1)
        force = self.gains[:, None] * a + self._contact_forces()
        vel = self.vel * (1 - DAMPING) + force / self.masses[:, None] * DT
        speed = np.sqrt((vel**2).sum(-1, keepdims=True))
        over = speed > self.max_speeds[:, None]
        self.vel = vel * np.where(over, self.max_speeds[:, None] / np.where(over, speed, 1.0), 1.0)
        self.pos = self.pos + self.vel * DT
        self.t += 1
        done = np.full(self.n_envs, self.t >= self.max_episode_steps)
        return self.observe(), self.rewards(), np.zeros(self.n_envs, dtype=bool), done

    def _contact_forces(self) -> np.ndarray:
        """Soft collision forces on every agent ``[E, B, 2]``: from the other agents (scaled by the
        mass ratio ``m_other / m_self``) and from the colliding landmarks."""
        n = self.pos.shape[1]
        delta = self.pos[:, :, None] - self.pos[:, None, :]  # [E, B, B, 2]: a - b
        eye = np.eye(n, dtype=bool)
        dist = np.where(eye, 1.0, np.sqrt((delta**2).sum(-1)))
        pen = contact_penetration(dist, self.sizes[:, None] + self.sizes[None, :])
        ratio = self.masses[None, :] / self.masses[:, None]
        pair = CONTACT_FORCE * ratio[..., None] * delta / dist[..., None] * pen[..., None]
        force = np.where(eye[..., None], 0.0, pair).sum(axis=2)
        solid = np.array(self.scenario.landmark_collide)
        if solid.any():
            lm = self.landmarks[:, solid]
            delta = self.pos[:, :, None] - lm[:, None]  # [E, B, L, 2]
            dist = np.sqrt((delta**2).sum(-1))
            pen = contact_penetration(dist, self.sizes[:, None] + self.landmark_sizes[solid])
            force = force + (CONTACT_FORCE * delta / dist[..., None] * pen[..., None]).sum(2)
        return force

    def observe(self) -> np.ndarray:
        """``[n_envs, n_agents, obs_dim]`` float32 (module docstring)."""
        s, n, a = self.scenario, self.n_envs, self.n_agents
        own = self.pos[:, :a]
        landmarks = self.landmarks[:, None] - own[:, :, None]  # [E, A, L, 2]
        others = self.pos[:, None] - own[:, :, None]  # [E, A, B, 2]: other - self
        not_self = ~np.eye(a, s.n_bodies, dtype=bool)
        others = others[:, not_self].reshape(n, a, s.n_bodies - 1, 2)
        parts = [self.vel[:, :a], own, landmarks.reshape(n, a, -1), others.reshape(n, a, -1)]
        if s.comm_dim:
            parts.append(np.zeros((n, a, s.comm_dim * (s.n_bodies - 1))))
        if s.prey is not None:
            parts.append(np.broadcast_to(self.vel[:, None, -1], (n, a, 2)))
        if s.forests:
            dist = np.sqrt((landmarks[:, :, list(s.forests)] ** 2).sum(-1))
            inside = dist < s.agent.size + self.landmark_sizes[list(s.forests)]
            parts.append(np.where(inside, 1.0, -1.0))
        return np.concatenate(parts, axis=-1).astype(np.float32)

    def rewards(self) -> np.ndarray:
        """Each learner's reward ``[n_envs, n_agents]`` (module docstring)."""
        return self._predator_rewards() if self.scenario.prey else self._spread_rewards()

    def _spread_rewards(self) -> np.ndarray:
        s = self.scenario
        dists = np.sqrt(((self.pos[:, :, None] - self.landmarks[:, None]) ** 2).sum(-1))
        cover = np.minimum(1.0 / dists.min(axis=1), s.reward_cap).sum(-1)  # [E]
        pair = np.sqrt(((self.pos[:, :, None] - self.pos[:, None]) ** 2).sum(-1))
        collide = (pair < 2 * s.agent.size) & ~np.eye(self.n_agents, dtype=bool)
        return cover[:, None] - s.collision_penalty * collide.sum(-1)

    def _predator_rewards(self) -> np.ndarray:
        s = self.scenario
        dist = np.sqrt(((self.pos[:, : self.n_agents] - self.pos[:, -1:]) ** 2).sum(-1))  # [E, A]
        caught = (dist < s.agent.size + s.prey.size).sum(-1)
        shared = -0.1 * dist.sum(-1) + s.catch_reward * caught
        return np.repeat(shared[:, None], self.n_agents, axis=1)


def team_score(rewards: np.ndarray, scenario: str) -> np.ndarray:
    """The per-step quantity MADiff and OMAR report, summed over an episode (``rewards
    [..., n_agents]`` -> ``[...]``): spread's mean over agents; tag's and world's the first
    predator's reward (OMAR's ``eval_policy`` sums ``rewards[0][0]``; every predator gets the
    same)."""
    s = get_scenario(scenario)
    return rewards[..., 0] if s.prey is not None else rewards.mean(axis=-1)


def cover_actions(obs: np.ndarray) -> np.ndarray:
    """Spread's scripted controller on joint observations ``[E, 3, 18]`` -> actions ``[E, 3, 2]``:
    every step the agents take the assignment to distinct landmarks of least total distance (of
    the 3! permutations) and each steers to its own by ``10 (landmark - pos) - 1 vel``."""
    obs = obs.astype(np.float64)
    vel, pos = obs[..., 0:2], obs[..., 2:4]
    n = obs.shape[1]
    landmarks = obs[:, 0, 4 : 4 + 2 * n].reshape(-1, n, 2) + pos[:, :1]  # agent 0 sees them all
    dist = np.sqrt(((pos[:, :, None] - landmarks[:, None]) ** 2).sum(-1))  # [E, A, L]
    perms = np.array(list(itertools.permutations(range(n))))  # [P, A]: agent -> landmark
    cost = dist[:, np.arange(n), perms].sum(-1)  # [E, P]
    target = np.take_along_axis(landmarks, perms[cost.argmin(-1)][..., None], axis=1)
    kp, kd = COVER_GAINS
    return np.clip(kp * (target - pos) - kd * vel, -1.0, 1.0)


def pursuit_actions(obs: np.ndarray, scenario: str | Scenario) -> np.ndarray:
    """Tag's and world's scripted predators on joint observations ``[E, 3, obs_dim]`` -> actions
    ``[E, 3, 2]``: each aims ``PURSUIT_OVERSHOOT`` past the prey along its line of sight (so it
    runs through the prey instead of braking at it) and matches the prey's velocity,
    ``2 (aim - pos) + 1 (prey vel - vel)``."""
    s = get_scenario(scenario) if isinstance(scenario, str) else scenario
    obs = obs.astype(np.float64)
    vel = obs[..., 0:2]
    at = 4 + 2 * len(s.landmark_sizes) + 2 * (s.n_bodies - 2)  # the prey, after the others
    to_prey, prey_vel = obs[..., at : at + 2], obs[..., at + 2 : at + 4]
    dist = np.sqrt((to_prey**2).sum(-1, keepdims=True))
    line = np.divide(to_prey, dist, out=np.zeros_like(to_prey), where=dist > 0)
    kp, kd = PURSUIT_GAINS
    aim = to_prey + PURSUIT_OVERSHOOT * line
    return np.clip(kp * aim + kd * (prey_vel - vel), -1.0, 1.0)


_PURSUIT = (
    f"pursuit {PURSUIT_GAINS[0]:g} (prey + {PURSUIT_OVERSHOOT:g} line of sight - pos) "
    f"+ {PURSUIT_GAINS[1]:g} (prey vel - vel)"
)
CONTROLLERS = {  # what each scripted controller does, for the forge's provenance
    "spread": (
        "landmark assignment of least total distance, recomputed each step; "
        f"PD {COVER_GAINS[0]:g} (landmark - pos) - {COVER_GAINS[1]:g} vel"
    ),
    "tag": _PURSUIT,
    "world": _PURSUIT,
}


def scripted_controller(scenario: str) -> Callable[[np.ndarray], np.ndarray]:
    """The scenario's scripted controller, joint observations -> joint actions (deterministic,
    batched; the forge's max reference)."""
    s = get_scenario(scenario)
    if s.prey is None:
        return cover_actions
    return lambda obs: pursuit_actions(obs, s)
