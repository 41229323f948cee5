"""One contract test for every registered algorithm (:mod:`algorithms.common.contract`).

Each algorithm in ``algorithms.available()`` is built from its defaults on a tiny task (the toy
bandit for policies, a small point maze or hopper dataset with small networks for planners) and
checked for what the harness relies on:

* the module: ``Config`` with a comment on every field and none of the retired names,
  ``resolve(cfg, info, stats)`` that fills defaults without touching its input, is idempotent
  (the agent resolves again) and rejects a bad choice with a ``ValueError`` naming ``algo.<field>``,
  and ``Agent(cfg, info, stats, device, train_steps)``, a :class:`Checkpointable`;
* ``update`` returns detached finite scalar tensors, ``act`` returns ``[n_envs, act_dim]`` inside
  the action box (also after ``reset`` of some environments);
* the state round-trips bitwise: agent B loads agent A's saved state, both take one more update on
  the same batch from the same RNG state, and every tensor of both states (networks, EMA copies,
  optimizer moments, schedules, counters) is then equal;
* 20 steps through ``bench.run`` complete, and a run killed after step 15 resumes from its step-10
  checkpoint to the uninterrupted run's losses, curve, final returns and final agent state.

A new algorithm joins by adding its tiny task and settings to :data:`TINY`.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import itertools
import textwrap
import tokenize
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import algorithms
from algorithms.common.contract import Agent as AgentProtocol
from algorithms.common.contract import Checkpointable, DatasetTransform
from bench.data import compute_stats, make_sampler
from tasks.registry import get_task
from tasks.sources import load_dataset

# ``bench.run`` is imported where it is used: importing it imports every algorithm, and one
# algorithm that fails to import must fail its own tests, not hide the others'.

ALGORITHMS = algorithms.available()
# Names one concept had before the vocabulary (contract.VOCABULARY) and a knob the harness used
# to rewrite; no Config may use them again.
RETIRED_NAMES = {"T", "actor_ema", "step_start_ema", "n_plans", "max_steps"}


@dataclass(frozen=True)
class Tiny:
    """A task and Config overrides on which an algorithm builds, trains and plans in seconds."""

    task: str
    scale: float  # share of the forged dataset
    algo: dict[str, Any] = field(default_factory=dict)  # Config overrides


_PLANNER = {"dim": 8, "dim_mults": (1, 2), "n_diffusion_steps": 4, "horizon": 16, "batch_size": 16}
TINY: dict[str, Tiny] = {
    "bc": Tiny("toy-bandit", 0.2),
    "iql": Tiny("toy-bandit", 0.2),
    "td3bc": Tiny("toy-bandit", 0.2),
    "idql": Tiny("toy-bandit", 0.2),
    "diffusion_ql": Tiny("toy-bandit", 0.2),
    "diffuser": Tiny("pointmaze-umaze", 0.02, _PLANNER),
    "decision_diffuser": Tiny(
        "pointmaze-umaze", 0.02, {**_PLANNER, "inv_hidden": 16, "replan_every": 8}
    ),
    "hdmi": Tiny(
        "pointmaze-umaze",
        0.02,
        {
            "n_subgoals": 3,
            "subgoal_interval": 4,
            "n_diffusion_steps": 4,
            "goal_width": 16,
            "goal_layers": 1,
            "goal_heads": 2,
            "dim": 8,
            "dim_mults": (1, 2),
            "inv_hidden": 16,
            "batch_size": 16,
        },
    ),
    "safediffuser": Tiny("obstacles-pointmaze-umaze", 0.02, _PLANNER),
    "trebi": Tiny(
        "velocity-hopper-medium-v2", 0.003, {**_PLANNER, "horizon": 8, "n_candidates": 4}
    ),
    # One-step bandit episodes: one-action chunks; the quick budget's online phase (10 envs,
    # 40000 env steps) is two iterations of 2000 decisions.
    "dppo": Tiny(
        "toy-bandit",
        0.2,
        {
            "horizon": 1,
            "act_steps": 1,
            "hidden": 16,
            "critic_hidden": 16,
            "n_diffusion_steps": 4,
            "ft_denoising_steps": 2,
            "batch_size": 16,
            "rollout_steps": 2000,
        },
    ),
    "gaussian_ppo": Tiny(
        "toy-bandit", 0.2, {"hidden": 16, "critic_hidden": 16, "rollout_steps": 2000}
    ),
    "drwr": Tiny(
        "toy-bandit",
        0.2,
        {
            "horizon": 1,
            "act_steps": 1,
            "hidden": 16,
            "n_diffusion_steps": 4,
            "batch_size": 16,
            "rollout_steps": 2000,
        },
    ),
    "dawr": Tiny(
        "toy-bandit",
        0.2,
        {
            "horizon": 1,
            "act_steps": 1,
            "hidden": 16,
            "critic_hidden": 16,
            "n_diffusion_steps": 4,
            "batch_size": 16,
            "rollout_steps": 2000,
            "replay_ratio": 1.0,
        },
    ),
    # Multi-agent (three agents of OMAR's spread); scale 0.001 forges 1000 steps in seconds.
    "madiff": Tiny(
        "mpe-spread-medium",
        0.001,
        {
            "horizon": 4,
            "n_diffusion_steps": 3,
            "dim": 16,
            "dim_mults": (1, 2),
            "inv_hidden": 16,
            "batch_size": 8,
        },
    ),
    "ma_bc": Tiny("mpe-spread-medium", 0.001, {"hidden": 16}),
    "ma_td3bc": Tiny("mpe-spread-medium", 0.001, {"hidden": 16, "batch_size": 64}),
}
# EMA copies average from the first update, so that their state is exercised (where a Config
# has these fields).
EMA_NOW = {"ema_start": 1, "ema_every": 1}
STEPS, KILLED_AT, CHECKPOINT_EVERY = 20, 15, 10


def tiny(name: str) -> Tiny:
    """The algorithm's tiny settings, with :data:`EMA_NOW` where its Config has those fields."""
    assert name in TINY, f"add a tiny task and settings for {name!r} to TINY"
    names = {f.name for f in dataclasses.fields(algorithms.load(name).Config)}
    ema = {k: v for k, v in EMA_NOW.items() if k in names}
    return dataclasses.replace(TINY[name], algo={**ema, **TINY[name].algo})


@functools.cache
def task_data(task: str, scale: float):
    """The tiny task's spec, dataset, TaskInfo and DatasetStats, as the harness makes them."""
    from bench.run import task_info

    spec = get_task(task)
    dataset = load_dataset(spec, source="auto", scale=scale, forge_seed=0)
    return spec, dataset, task_info(spec, dataset), compute_stats(dataset)


def build(name: str, seed: int = 0, train_steps: int = STEPS):
    """``(agent, dataset)``: the algorithm's agent on its tiny task, built as ``bench.run`` does."""
    module, settings = algorithms.load(name), tiny(name)
    _, dataset, info, stats = task_data(settings.task, settings.scale)
    cfg = module.resolve(module.Config(**settings.algo), info, stats)
    torch.manual_seed(seed)
    return module.Agent(cfg, info, stats, "cpu", train_steps), dataset


def assert_same(a: Any, b: Any, where: str = "state") -> None:
    """``a`` and ``b`` are equal to the bit: nested dicts, sequences, tensors and plain values."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {set(a) ^ set(b)}"
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), f"{where}: not a tensor"
        assert (a.dtype, a.shape) == (b.dtype, b.shape), (
            f"{where}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
        )
        assert torch.equal(a, b), f"{where}: values differ"
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), f"{where}: values differ"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def tensors_differ(a: Any, b: Any) -> bool:
    """Whether some tensor of the nested state ``a`` differs from its counterpart in ``b``."""
    if isinstance(a, dict):
        return any(tensors_differ(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return any(tensors_differ(x, y) for x, y in zip(a, b, strict=True))
    return isinstance(a, torch.Tensor) and not torch.equal(a, b)


def saved_and_loaded(state: dict) -> dict:
    """``state`` through ``torch.save`` and ``torch.load``, as a checkpoint stores it."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


def undocumented_fields(cls: type) -> list[str]:
    """Fields of the dataclass ``cls`` (its bases' included) whose statement has no comment."""
    documented = set()
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        source = textwrap.dedent(inspect.getsource(klass))
        comments = {
            tok.start[0]
            for tok in tokenize.generate_tokens(io.StringIO(source).readline)
            if tok.type == tokenize.COMMENT
        }
        (node,) = ast.parse(source).body
        documented |= {
            stmt.target.id
            for stmt in node.body
            if isinstance(stmt, ast.AnnAssign)
            and comments & set(range(stmt.lineno, stmt.end_lineno + 1))
        }
    return [f.name for f in dataclasses.fields(cls) if f.name not in documented]


def validated_choices(module) -> set[str]:
    """Config fields the module's own source validates: ``check_choice("<field>", ...)`` calls
    and fields typed ``Literal[...]``."""
    names = set()
    for node in ast.walk(ast.parse(Path(inspect.getsourcefile(module)).read_text())):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) == "check_choice"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(node.args[0].value)
    hints = typing.get_type_hints(module.Config)
    names |= {name for name, hint in hints.items() if typing.get_origin(hint) is typing.Literal}
    return names & {f.name for f in dataclasses.fields(module.Config)}


# -- the module -------------------------------------------------------------------------------


def test_every_algorithm_has_tiny_settings():
    assert list(algorithms.ALGORITHMS) == ALGORITHMS  # every registered module is present
    assert set(ALGORITHMS) <= set(TINY)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_module_exposes_the_contract(name):
    module = algorithms.load(name)
    assert dataclasses.is_dataclass(module.Config)
    assert list(inspect.signature(module.resolve).parameters) == ["cfg", "info", "stats"]
    parameters = list(inspect.signature(module.Agent).parameters)
    assert parameters == ["cfg", "info", "stats", "device", "train_steps"]
    assert issubclass(module.Agent, Checkpointable)
    assert module.Agent.state_attrs and all(isinstance(a, str) for a in module.Agent.state_attrs)
    assert len(set(module.Agent.state_attrs)) == len(module.Agent.state_attrs)
    fields = {f.name for f in dataclasses.fields(module.Config)}
    assert fields & RETIRED_NAMES == set(), "retired names (see contract.VOCABULARY)"


@pytest.mark.parametrize("name", ALGORITHMS)
def test_every_config_field_has_a_comment(name):
    assert undocumented_fields(algorithms.load(name).Config) == []


@pytest.mark.parametrize("name", algorithms.augmentations())
def test_dataset_transform_exposes_its_contract(name):
    """Dataset transforms (``algorithms.AUGMENTATIONS``) are no agents: a Config with a comment
    per field, ``resolve`` and ``augment`` (contract.DatasetTransform)."""
    module = algorithms.load_augmentation(name)
    assert isinstance(module, DatasetTransform) and name not in algorithms.ALGORITHMS
    assert dataclasses.is_dataclass(module.Config)
    assert undocumented_fields(module.Config) == []
    assert list(inspect.signature(module.resolve).parameters) == ["cfg", "info", "stats"]
    parameters = list(inspect.signature(module.augment).parameters)
    assert parameters == ["cfg", "arrays", "info", "stats", "sampler", "device", "seed", "budget"]


@pytest.mark.parametrize("name", ALGORITHMS)
def test_resolve_fills_defaults_without_touching_its_input_and_is_idempotent(name):
    module, settings = algorithms.load(name), tiny(name)
    _, _, info, stats = task_data(settings.task, settings.scale)
    cfg = module.Config()
    resolved = module.resolve(cfg, info, stats)
    assert type(resolved) is module.Config
    assert cfg == module.Config(), "resolve changed its input"
    assert module.resolve(resolved, info, stats) == resolved, "resolving twice changed the Config"


@pytest.mark.parametrize("name", ALGORITHMS)
def test_resolve_rejects_a_bad_choice_naming_the_knob_and_the_valid_values(name):
    """Every field whose resolved value is a string is tried with a bogus value: ``resolve``
    either accepts it (a free-form string) or raises a ``ValueError`` naming ``algo.<field>`` and
    listing the valid values; every field the module validates must raise."""
    module, settings = algorithms.load(name), tiny(name)
    _, _, info, stats = task_data(settings.task, settings.scale)
    resolved = module.resolve(module.Config(), info, stats)
    strings = [
        f.name
        for f in dataclasses.fields(module.Config)
        if isinstance(getattr(resolved, f.name), str)
    ]
    validated = validated_choices(module)
    if not strings and not validated:
        pytest.skip(f"{name} has no choice among strings")
    rejected = set()
    for knob in strings:
        bad = dataclasses.replace(module.Config(), **{knob: "no-such-choice"})
        try:
            module.resolve(bad, info, stats)
        except ValueError as e:
            assert f"algo.{knob}" in str(e), str(e)
            assert getattr(resolved, knob) in str(e), f"the valid values are not listed: {e}"
            rejected.add(knob)
    assert validated <= rejected, f"validated but accepted a bogus value: {validated - rejected}"


# -- the agent --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALGORITHMS)
def test_update_returns_detached_finite_scalar_tensors(name):
    agent, dataset = build(name)
    assert isinstance(agent, AgentProtocol)
    sampler = make_sampler(dataset, agent.data_spec, torch.device("cpu"), seed=0)
    for _ in range(2):
        losses = agent.update(sampler.sample())
        assert losses and all(isinstance(k, str) for k in losses)
        for key, value in losses.items():
            assert isinstance(value, torch.Tensor) and value.dim() == 0, key
            assert not value.requires_grad and value.grad_fn is None, f"{key} is not detached"
            assert value.is_floating_point() and torch.isfinite(value), key


@pytest.mark.parametrize("name", ALGORITHMS)
def test_actions_stay_in_the_box_for_any_observation(name):
    agent, dataset = build(name)
    sampler = make_sampler(dataset, agent.data_spec, torch.device("cpu"), seed=0)
    agent.update(sampler.sample())
    _, _, info, stats = task_data(tiny(name).task, tiny(name).scale)
    rows = dataset.arrays["observations"][:: max(1, len(dataset.arrays["observations"]) // 3)][:3]
    far = stats.obs_mean + 5 * stats.obs_std  # an observation far from the data
    far = np.broadcast_to(far, rows.shape[1:])  # every agent's, on multi-agent tasks
    obs = np.concatenate([rows, far[None]]).astype(np.float32)
    agent.reset()
    for done in (None, np.array([True, False, True, False])):
        if done is not None:
            agent.reset(done)
        actions = np.asarray(agent.act(obs))
        assert actions.shape == (*obs.shape[:-1], info.act_dim)
        assert np.isfinite(actions).all()
        low, high = info.action_low, info.action_high
        assert (actions >= low).all() and (actions <= high).all(), (
            f"actions {actions.min()}..{actions.max()} outside [{low}, {high}]"
        )


@pytest.mark.parametrize("name", ALGORITHMS)
def test_networks_hold_every_parameter_an_optimizer_trains(name):
    """``networks()`` (what ``compile=true`` compiles) covers every trained parameter."""
    agent, _ = build(name)
    declared = {id(p) for net in agent.networks() for p in net.parameters()}
    optimizers = [getattr(agent, a) for a in agent.state_attrs]
    trained = [
        p
        for opt in optimizers
        if isinstance(opt, torch.optim.Optimizer)
        for group in opt.param_groups
        for p in group["params"]
    ]
    assert trained and all(id(p) in declared for p in trained)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_state_round_trips_bitwise_through_one_more_update(name):
    """Agent B, built from other weights, loads agent A's saved state; after one more update on
    the same batch from the same RNG state both states are equal to the bit, and both act alike
    (which also catches undeclared state that only acting reads)."""
    a, dataset = build(name, seed=0)
    batches = non_terminal_batches(make_sampler(dataset, a.data_spec, torch.device("cpu"), seed=0))
    for _ in range(3):
        a.update(next(batches))
    state = a.state_dict()
    assert set(state) == set(a.state_attrs)
    saved = saved_and_loaded(state)

    b, _ = build(name, seed=1)
    b.load_state_dict(saved)
    assert_same(b.state_dict(), a.state_dict())

    batch = next(batches)
    losses = []
    for agent in (a, b):
        torch.manual_seed(2)
        np.random.seed(2)
        losses.append(agent.update({k: v.clone() for k, v in batch.items()}))
    assert_same(*losses, "losses")
    after = a.state_dict()
    assert tensors_differ(after, saved), "the update changed no tensor of the state"
    assert_same(b.state_dict(), after)  # networks, EMA copies, optimizer states, counters

    obs = dataset.arrays["observations"][:3].astype(np.float32)
    actions = []
    for agent in (a, b):
        agent.reset()
        torch.manual_seed(3)
        np.random.seed(3)
        actions.append(np.asarray(agent.act(obs)))
    assert np.array_equal(*actions), "the restored agent acts differently"


def non_terminal_batches(sampler):
    """The sampler's batches with every ``terminals`` flag cleared, so that TD targets read the
    target networks and EMA copies (on the toy bandit every step ends its episode)."""
    while True:
        batch = sampler.sample()
        if "terminals" in batch:
            batch["terminals"] = torch.zeros_like(batch["terminals"])
        yield batch


# -- through the harness ----------------------------------------------------------------------


class Killed(BaseException):
    """SIGKILL's stand-in: not an ``Exception``, so the harness writes no record on its way out."""


def dying_sampler(after: int):
    """``bench.run.make_sampler`` whose sampler is killed when asked for batch ``after + 1``."""
    from bench.run import make_sampler as make

    def make_dying(*args, **kwargs):
        sampler = make(*args, **kwargs)
        sample, calls = sampler.sample, itertools.count(1)

        def sample_or_die():
            if next(calls) > after:
                raise Killed
            return sample()

        sampler.sample = sample_or_die
        return sampler

    return make_dying


def harness_overrides(name: str) -> list[str]:
    settings = tiny(name)
    args = [f"algo={name}", f"task={settings.task}", f"data.scale={settings.scale}"]
    args += [f"train.steps={STEPS}", "train.log_every=5", f"train.eval_every={CHECKPOINT_EVERY}"]
    args += [f"train.checkpoint_every={CHECKPOINT_EVERY}", "eval.episodes=2"]
    args += ["eval.periodic_episodes=1", "device=cpu"]
    for key, value in settings.algo.items():
        value = list(value) if isinstance(value, tuple) else value
        args.append(f"algo.{key}={str(value).replace(' ', '')}")
    return args


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """Per algorithm (run once): the uninterrupted run, and a run killed after step
    :data:`KILLED_AT` then resumed; each as ``(record, final checkpoint)``."""
    import bench.run
    from bench.run import CHECKPOINT_FILE, run_overrides

    done: dict[str, tuple] = {}

    def runs(name: str) -> tuple:
        if name not in done:
            root = tmp_path_factory.mktemp(name)
            args = harness_overrides(name)
            reference = run_overrides([*args, f"results_dir={root / 'reference'}"])
            killed = [*args, f"results_dir={root / 'killed'}"]
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(bench.run, "make_sampler", dying_sampler(KILLED_AT))
                with pytest.raises(Killed):
                    run_overrides(killed)
            assert not list((root / "killed").rglob("record.json")), "a killed run left a record"
            resumed = run_overrides(killed)
            done[name] = tuple(
                (rec, torch.load(out / rec["run_id"] / CHECKPOINT_FILE, weights_only=False))
                for rec, out in ((reference, root / "reference"), (resumed, root / "killed"))
            )
        return done[name]

    return runs


@pytest.mark.parametrize("name", ALGORITHMS)
def test_twenty_steps_through_bench_run(name, harness):
    (record, checkpoint), _ = harness(name)
    assert record["status"] == "completed" and record["failure_reason"] is None
    assert [row["step"] for row in record["losses"]] == [5, 10, 15, 20]
    values = [v for row in record["losses"] for k, v in row.items() if k != "step"]
    assert values and all(np.isfinite(values))
    assert [p["step"] for p in record["curve"]] == [10] and record["best"]["step"] == 10
    assert record["final"]["step"] == STEPS and len(record["final"]["returns"]) == 2
    fields = {f.name for f in dataclasses.fields(algorithms.load(name).Config)}
    assert set(record["config"]["algo_resolved"]) == fields
    assert checkpoint["step"] == STEPS and set(checkpoint["agent"]) == set(
        algorithms.load(name).Agent.state_attrs
    )


@pytest.mark.parametrize("name", ALGORITHMS)
def test_a_killed_run_resumes_to_the_same_state(name, harness):
    (reference, ref_checkpoint), (resumed, checkpoint) = harness(name)
    assert resumed["status"] == "completed" and resumed["resumed"] == 1
    for key in ("losses", "curve", "best"):
        assert resumed[key] == reference[key], key
    assert resumed["final"]["returns"] == reference["final"]["returns"]
    assert_same(checkpoint["agent"], ref_checkpoint["agent"], "agent")
