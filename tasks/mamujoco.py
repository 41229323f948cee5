"""Multi-agent MuJoCo (MaMuJoCo), batched: ``n_envs`` copies of one gymnasium-robotics
``mamujoco_v1.parallel_env`` stepped together, with the arrays of :mod:`tasks.multiagent`.

MaMuJoCo (Peng et al. 2021; gymnasium-robotics' ``mamujoco_v1``) splits one single-agent MuJoCo
robot into agents that each actuate some joints and observe the joints near them. Underneath,
``parallel_env("HalfCheetah", "2x3")`` is gymnasium's ``HalfCheetah-v5`` (``gymnasium.make``,
its 1000-step ``TimeLimit``; the cheetah never terminates): agent 0 moves the back leg
(``bthigh, bshin, bfoot``), agent 1 the front leg; each observes (``agent_obsk=1``) the position
and velocity of its own joints, the position of the neighbouring joint of the other leg and the
root's height, angle and velocities: 12 numbers, all of them entries of the 17-D global state
(the single-agent observation, :meth:`MaMuJoCoEnvs.states`). Every agent receives the
single-agent reward, so the team reward is any agent's (:func:`team_reward`).

MADiff and OG-MARL used the older ``multiagent_mujoco`` (v0, ``HalfCheetah-v2`` on mujoco-py,
agent ids appended to the observations, ``global_categories="qvel,qpos"``); this suite uses
gymnasium-robotics' maintained v1 with its defaults, the same dynamics as the single-agent
``HalfCheetah-v5`` tasks.

Arrays: observations ``[n_envs, n_agents, obs_dim]`` (float32), actions ``[n_envs, n_agents,
act_dim]``, rewards ``[n_envs, n_agents]``. Env ``i`` is reset with its own seed (``seed[i]``, or
``seed + i``), so an episode is reproducible whatever the batch it runs in. Actions are passed on
unclipped, as gymnasium's MuJoCo envs take them (the single-agent evaluation does not clip either).
"""

from __future__ import annotations

import numpy as np

SCENARIOS = {"HalfCheetah": ("2x3",)}  # (scenario, agent_conf) pairs the suite registers


class MaMuJoCoEnvs:
    """``n_envs`` copies of ``mamujoco_v1.parallel_env(scenario, agent_conf)`` (module docstring)."""

    def __init__(self, scenario: str, agent_conf: str, n_envs: int):
        if agent_conf not in SCENARIOS.get(scenario, ()):
            valid = ", ".join(f"{s} {c}" for s, confs in SCENARIOS.items() for c in confs)
            raise ValueError(f"unknown MaMuJoCo task {scenario} {agent_conf}; valid: {valid}")
        from gymnasium_robotics import mamujoco_v1  # heavy import, only for MaMuJoCo tasks

        self.envs = [mamujoco_v1.parallel_env(scenario, agent_conf) for _ in range(n_envs)]
        first = self.envs[0]
        self.agents = list(first.possible_agents)
        self.n_envs, self.n_agents = n_envs, len(self.agents)
        self.obs_index = np.stack([first.observation_factorization[a] for a in self.agents])
        self.act_index = np.array(
            [[node.act_ids for node in part] for part in first.agent_action_partitions]
        )
        self.obs_dim, self.act_dim = self.obs_index.shape[1], self.act_index.shape[1]
        self.state_dim = first.single_agent_env.observation_space.shape[0]
        self.max_episode_steps = first.single_agent_env.spec.max_episode_steps

    def reset(self, seed: int | list[int]) -> np.ndarray:
        """Reset env ``i`` with ``seed[i]`` (or ``seed + i``); the observations."""
        seeds = [seed + i for i in range(self.n_envs)] if np.isscalar(seed) else list(seed)
        if len(seeds) != self.n_envs:
            raise ValueError(f"{len(seeds)} seeds for {self.n_envs} envs")
        return self._stack(
            [env.reset(seed=int(s))[0] for env, s in zip(self.envs, seeds, strict=True)]
        )

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Step every env with its agents' ``actions [n_envs, n_agents, act_dim]``:
        ``(obs, rewards [n_envs, n_agents], terminated, truncated)``."""
        actions = np.asarray(actions)
        if actions.shape != (self.n_envs, self.n_agents, self.act_dim):
            raise ValueError(
                f"actions of shape {actions.shape}; expected "
                f"{(self.n_envs, self.n_agents, self.act_dim)}"
            )
        obs, rewards, terminated, truncated = [], [], [], []
        for env, act in zip(self.envs, actions, strict=True):
            o, r, term, trunc, _ = env.step(dict(zip(self.agents, act, strict=True)))
            obs.append(o)
            rewards.append([r[a] for a in self.agents])
            terminated.append(term[self.agents[0]])
            truncated.append(trunc[self.agents[0]])
        if any(terminated):
            raise RuntimeError(
                "a MaMuJoCo episode terminated; the batched envs support never-terminating "
                "robots only (HalfCheetah)"
            )
        return (
            self._stack(obs),
            np.asarray(rewards, dtype=np.float64),
            np.asarray(terminated),
            np.asarray(truncated),
        )

    def states(self) -> np.ndarray:
        """The global states ``[n_envs, state_dim]``: each env's single-agent observation."""
        return np.stack([env.state() for env in self.envs]).astype(np.float32)

    def _stack(self, obs: list[dict[str, np.ndarray]]) -> np.ndarray:
        return np.stack([[o[a] for a in self.agents] for o in obs]).astype(np.float32)


def split_states(states: np.ndarray, obs_index: np.ndarray) -> np.ndarray:
    """Global states ``[..., state_dim]`` -> local observations ``[..., n_agents, obs_dim]``
    (MaMuJoCo's ``map_global_state_to_local_observations``, vectorized)."""
    return states[..., obs_index]


def split_actions(actions: np.ndarray, act_index: np.ndarray) -> np.ndarray:
    """Global actions ``[..., act_total]`` -> local actions ``[..., n_agents, act_dim]``
    (MaMuJoCo's ``map_global_action_to_local_actions``, vectorized)."""
    return actions[..., act_index]


def join_actions(local: np.ndarray, act_index: np.ndarray) -> np.ndarray:
    """Local actions ``[..., n_agents, act_dim]`` -> the global action ``[..., act_total]``
    (MaMuJoCo's ``map_local_actions_to_global_action``; every joint is one agent's)."""
    out = np.empty((*local.shape[:-2], act_index.size), dtype=local.dtype)
    out[..., act_index] = local
    return out


def team_reward(rewards: np.ndarray) -> np.ndarray:
    """The team reward of each step, ``[..., n_agents] -> [...]``: MaMuJoCo gives every agent
    the single-agent reward, so this is any agent's (the mean, which equals each); summed over an
    episode it is the return MADiff reports (``diffuser/utils/evaluator.py``)."""
    return rewards.mean(axis=-1)
