"""MADiff: permutation equivariance of the attention-coupled denoiser, decentralized execution
that reads only the agent's own observations, exact inpainting, conditions, and (slow) learning
against MA-BC on a small forged spread dataset."""

import dataclasses

import numpy as np
import pytest
import torch

import algorithms.madiff as madiff
from algorithms.common.contract import DatasetStats, TaskInfo
from algorithms.madiff import (
    AgentAttention,
    Config,
    MultiAgentDenoiser,
    condition_mask,
    resolve,
)

N_AGENTS, OBS, ACT = 3, 5, 2
INFO = TaskInfo("mpe-spread-medium", "multi-agent", OBS, ACT, max_episode_steps=25, n_agents=3)


def stats() -> DatasetStats:
    rng = np.random.default_rng(0)
    obs, act = rng.normal(size=(4000, OBS)), rng.uniform(-1, 1, size=(4000, ACT))
    probs = np.linspace(0, 1, 101)
    return DatasetStats(
        obs_mean=obs.mean(0),
        obs_std=obs.std(0),
        act_mean=act.mean(0),
        act_std=act.std(0),
        reward_min=0.0,
        reward_max=10.0,
        return_min=0.0,
        return_max=200.0,
        n_transitions=4000,
        n_episodes=160,
        obs_quantiles=np.quantile(obs, probs, axis=0).astype(np.float32),
        act_quantiles=np.quantile(act, probs, axis=0).astype(np.float32),
    )


def tiny(**overrides) -> Config:
    base = dict(horizon=4, n_diffusion_steps=3, dim=16, dim_mults=(1, 2), inv_hidden=16)
    return Config(**{**base, **overrides})


def open_gates(model: torch.nn.Module) -> None:
    """Set every attention gate to 1 so agents do influence each other (they start at 0)."""
    for module in model.modules():
        if isinstance(module, AgentAttention):
            module.gamma.data.fill_(1.0)


def test_attention_gates_start_closed_and_agents_then_do_not_interact():
    torch.manual_seed(0)
    model = MultiAgentDenoiser(OBS, 16, (1, 2), heads=4)
    gates = [m.gamma for m in model.modules() if isinstance(m, AgentAttention)]
    # the bottleneck and the one skip connection the up path reads
    assert len(gates) == 2 and all(float(g.detach()) == 0.0 for g in gates)
    x, t = torch.randn(2, N_AGENTS, 4, OBS), torch.tensor([1, 2])
    cond = {"value": torch.rand(2, N_AGENTS, 1), "mask": torch.ones(2, N_AGENTS, 1)}
    out = model(x, t, cond)
    x2 = x.clone()
    x2[:, 1:] = torch.randn(2, N_AGENTS - 1, 4, OBS)
    assert torch.allclose(model(x2, t, cond)[:, 0], out[:, 0], atol=1e-6)
    open_gates(model)
    assert not torch.allclose(model(x2, t, cond)[:, 0], model(x, t, cond)[:, 0], atol=1e-4)


def test_permuting_agents_permutes_the_denoiser_output():
    torch.manual_seed(0)
    model = MultiAgentDenoiser(OBS, 16, (1, 2), heads=4)
    open_gates(model)
    x, t = torch.randn(3, N_AGENTS, 4, OBS), torch.tensor([0, 1, 2])
    cond = {
        "value": torch.rand(3, N_AGENTS, 1),
        "mask": torch.tensor([1.0, 0.0, 1.0]).expand(3, 3)[..., None],
    }
    perm = torch.tensor([2, 0, 1])
    out = model(x, t, cond)
    permuted = model(x[:, perm], t, {k: v[:, perm] for k, v in cond.items()})
    torch.testing.assert_close(permuted, out[:, perm], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out[:, 0], out[:, 1], atol=1e-3)  # agents are not all alike


def agent(execution: str, **overrides) -> madiff.Agent:
    torch.manual_seed(0)
    out = madiff.Agent(tiny(execution=execution, **overrides), INFO, stats(), "cpu", 10)
    open_gates(out.model)
    open_gates(out.ema.model)
    return out


def act(ag: madiff.Agent, obs: np.ndarray) -> np.ndarray:
    ag.reset()
    torch.manual_seed(1)
    return ag.act(obs)


def test_decentralized_actions_read_only_the_agents_own_observations():
    obs = np.random.default_rng(0).normal(size=(4, N_AGENTS, OBS)).astype(np.float32)
    changed = obs.copy()
    changed[:, 1:] += 1.5  # every agent but agent 0 sees something else
    d = agent("decentralized")
    first, second = act(d, obs), act(d, changed)
    assert first.shape == (4, N_AGENTS, ACT)
    np.testing.assert_allclose(second[:, 0], first[:, 0], atol=1e-6)
    assert not np.allclose(second[:, 1:], first[:, 1:], atol=1e-4)
    c = agent("centralized")  # the centralized planner sees everyone: agent 0's action moves
    assert not np.allclose(act(c, changed)[:, 0], act(c, obs)[:, 0], atol=1e-4)


@pytest.mark.parametrize("execution", ["centralized", "decentralized"])
def test_inpainted_history_is_exact(execution):
    ag = agent(execution, history=2)
    rng = np.random.default_rng(0)
    history = torch.as_tensor(rng.uniform(-1, 1, (2, N_AGENTS, 3, OBS)), dtype=torch.float32)
    if execution == "centralized":
        visible = torch.ones(2, N_AGENTS, dtype=torch.bool)
    else:
        visible = torch.tensor([[True, False, False], [False, False, True]])
    torch.manual_seed(0)
    plans = ag.plan(history, visible)
    assert plans.shape == (2, N_AGENTS, 2 + 4, OBS)
    for b in range(2):
        for a in range(N_AGENTS):
            if visible[b, a]:  # the past and current observations, to the bit
                assert torch.equal(plans[b, a, :3], history[b, a])
            else:  # an invisible agent's past is zero, its present imagined
                assert torch.equal(plans[b, a, :2], torch.zeros(2, OBS))
                assert not torch.equal(plans[b, a, 2], history[b, a, 2])


def test_condition_mask_follows_the_official_mask_generator():
    visible = torch.tensor([[True, False]])
    mask = condition_mask(visible, history=1, length=4, obs_dim=1)[0, :, :, 0]
    assert mask.tolist() == [[True, True, False, False], [True, False, False, False]]


def test_resolve_fills_the_official_spread_settings_and_checks_knobs():
    cfg = resolve(Config(), INFO, stats())
    assert (cfg.horizon, cfg.history, cfg.n_diffusion_steps) == (24, 0, 200)
    assert cfg.returns_scale == 500.0 and cfg.share_inverse is True
    expert = dataclasses.replace(INFO, task_id="mpe-spread-expert")
    assert resolve(Config(), expert, stats()).returns_scale == 700.0
    assert resolve(Config(execution="decentralized"), INFO, stats()).share_inverse is False
    with pytest.raises(ValueError, match=r"algo\.execution"):
        resolve(Config(execution="both"), INFO, stats())
    with pytest.raises(ValueError, match=r"algo\.dim"):
        resolve(Config(dim=24), INFO, stats())


def test_resolve_fills_the_official_tag_and_world_returns_scales():
    official = {  # exp_specs/mpe/{tag,world}/mad_mpe_*_attn_{exp,md,mdreplay,random}.yaml
        "tag": {"expert": 700.0, "medium": 600.0, "medium-replay": 600.0, "random": 500.0},
        "world": {"expert": 700.0, "medium": 600.0, "medium-replay": 600.0, "random": 600.0},
    }
    for scenario, levels in official.items():
        for level, scale in levels.items():
            info = dataclasses.replace(INFO, task_id=f"mpe-{scenario}-{level}")
            cfg = resolve(Config(), info, stats())
            assert (cfg.horizon, cfg.returns_scale) == (24, scale), info.task_id


def test_resolve_fills_the_official_mamujoco_halfcheetah_settings():
    info = TaskInfo("mamujoco-halfcheetah-2x3-medium", "multi-agent", 12, 3, 1000, n_agents=2)
    for execution in ("centralized", "decentralized"):  # both 2halfcheetah configs share_inv
        cfg = resolve(Config(execution=execution), info, stats())
        assert (cfg.horizon, cfg.history, cfg.returns_scale) == (10, 18, 300.0)
        assert cfg.share_inverse is True
    scales = {
        level: resolve(
            Config(),
            dataclasses.replace(info, task_id=f"mamujoco-halfcheetah-2x3-{level}"),
            stats(),
        ).returns_scale
        for level in ("good", "poor")
    }
    assert scales == {"good": 1000.0, "poor": 100.0}


# -- learning -----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="not yet: at 2000 steps on scale-0.1 medium-replay MADiff-C scored 1.7 against "
    "MA-BC's 7.6 (seed 0 of the madiff-spread grid, normalized against the scripted controller; "
    "issue 20); strict, so the day it passes it must be turned back into a plain test",
)
def test_madiff_beats_ma_bc_on_a_small_forged_spread_dataset(tmp_path):
    """On forged medium-replay spread data (scale 0.1: the MATD3 buffer up to the medium
    checkpoint, seed 0), return-conditioned MADiff-C outscores MA-BC by 10 normalized points
    after 2000 updates each (fixed seeds; a small denoiser, horizon 8, 10 diffusion steps)."""
    from bench.run import run_overrides

    common = ["task=mpe-spread-medium-replay", "data.scale=0.1", "seed=0", "device=cpu"]
    common += ["train.steps=2000", "eval.episodes=30", "train.eval_every=0"]
    common += ["train.log_every=500", f"results_dir={tmp_path}"]
    bc = run_overrides(["algo=ma_bc", *common])
    md = run_overrides(
        [
            "algo=madiff",
            "algo.horizon=8",
            "algo.n_diffusion_steps=10",
            "algo.dim=16",
            "algo.dim_mults=[1,2,4]",
            "algo.ema_start=200",
            *common,
        ]
    )
    assert md["status"] == bc["status"] == "completed"
    margin = md["final"]["normalized_mean"] - bc["final"]["normalized_mean"]
    assert margin > 10.0, (md["final"]["normalized_mean"], bc["final"]["normalized_mean"])
