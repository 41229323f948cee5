"""Our TD3+BC and IQL against d3rlpy's, side by side: training steps/s and act decisions/s.

    python benchmarks/compare_d3rlpy.py [--venv ~/.cache/diffrl-bench/venv-d3rlpy] [--steps 300]

d3rlpy 2.8.1 pins gymnasium 1.0.0, which clashes with ours, so its half runs in a subprocess
under a separate virtualenv (created on first use with ``pip install d3rlpy==2.8.1
torch==<our torch version>``; ``--venv`` points at an existing one). Both halves train on the
same synthetic transitions (written once to an ``.npz``), batch 256, 2x256 MLPs for actor and
critics, observations standardized, with the same number of torch threads: a timed step is one
batch draw plus one update, as in each library's own training loop (d3rlpy's ``fit``); ``act``
times one call for ``--envs`` environments. The subprocess is this file run with ``--d3rlpy-half``,
so its top level imports only the standard library and numpy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

D3RLPY_VERSION = "2.8.1"
DEFAULT_VENV = Path.home() / ".cache" / "diffrl-bench" / "venv-d3rlpy"
ALGOS = ("td3bc", "iql")
OBS_DIM, ACT_DIM, EPISODE = 17, 6, 1000  # walker2d's shapes and episode length


def synthetic_data(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` transitions of a smooth random walk in episodes of ``EPISODE`` steps."""
    rng = np.random.default_rng(seed)
    obs = np.cumsum(rng.normal(0, 0.1, (n + 1, OBS_DIM)), axis=0).astype(np.float32)
    timeouts = np.zeros(n, dtype=bool)
    timeouts[EPISODE - 1 :: EPISODE] = True
    timeouts[-1] = True
    return {
        "observations": obs[:-1],
        "actions": rng.uniform(-1, 1, (n, ACT_DIM)).astype(np.float32),
        "rewards": rng.normal(0, 1, n).astype(np.float32),
        "next_observations": obs[1:],
        "terminals": np.zeros(n, dtype=bool),
        "timeouts": timeouts,
    }


def timed(step, steps: int, warmup: int) -> float:
    """Calls per second of ``step()`` after ``warmup`` untimed calls (d3rlpy's half; ours uses
    ``train_speed.py``'s timers, which do the same and end on a host sync)."""
    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - t0)


# -- d3rlpy's half (runs in d3rlpy's virtualenv) ----------------------------------------------


def d3rlpy_algo(name: str, batch_size: int):
    """d3rlpy's TD3+BC or IQL with its defaults (2x256 MLPs, the papers' settings), batch and
    standardized observations as ours."""
    import d3rlpy

    scaler = d3rlpy.preprocessing.StandardObservationScaler()
    if name == "td3bc":
        config = d3rlpy.algos.TD3PlusBCConfig(batch_size=batch_size, observation_scaler=scaler)
    else:
        config = d3rlpy.algos.IQLConfig(batch_size=batch_size, observation_scaler=scaler)
    return config.create(device="cpu:0")


def measure_d3rlpy(data_path: str, args) -> list[dict]:
    import d3rlpy
    import torch
    from d3rlpy.algos.utility import build_scalers_with_transition_picker

    torch.set_num_threads(args.threads)
    d3rlpy.seed(0)
    data = dict(np.load(data_path))
    dataset = d3rlpy.dataset.MDPDataset(
        observations=data["observations"],
        actions=data["actions"],
        rewards=data["rewards"],
        terminals=data["terminals"],
        timeouts=data["timeouts"],
    )
    obs = data["observations"][: args.envs]
    rows = []
    for name in ALGOS:
        algo = d3rlpy_algo(name, args.batch)
        build_scalers_with_transition_picker(algo, dataset)  # as ``fit`` does first
        algo.build_with_dataset(dataset)

        def step(algo=algo):
            algo.update(dataset.sample_transition_batch(args.batch))

        rows.append(
            {
                "lib": f"d3rlpy {d3rlpy.__version__}",
                "algo": name,
                "steps_per_s": timed(step, args.steps, args.warmup),
                "act_decisions_per_s": args.envs
                * timed(lambda algo=algo: algo.predict(obs), args.act_calls, 2),
            }
        )
    return rows


# -- our half ---------------------------------------------------------------------------------


def measure_ours(data: dict[str, np.ndarray], args) -> list[dict]:
    import torch
    from omegaconf import OmegaConf
    from train_speed import time_act, time_updates  # the suite's own timing, beside this file

    import algorithms
    from algorithms.common.contract import TaskInfo
    from bench.data import make_sampler
    from bench.run import build_agent
    from tasks.spec import Dataset, Provenance

    torch.set_num_threads(args.threads)
    n = len(data["rewards"])
    dataset = Dataset(
        arrays=data,
        provenance=Provenance("synthetic", "", "", n, int(data["timeouts"].sum())),
        ref_min_score=0.0,
        ref_max_score=1.0,
    )
    info = TaskInfo("synthetic", "locomotion", OBS_DIM, ACT_DIM)
    obs = data["observations"][: args.envs]
    rows = []
    for name in ALGOS:
        module = algorithms.load(name)
        torch.manual_seed(0)
        cfg = OmegaConf.structured(module.Config(batch_size=args.batch))
        agent, _ = build_agent(module, cfg, info, dataset, "cpu", steps=args.steps + args.warmup)
        sampler = make_sampler(dataset, agent.data_spec, torch.device("cpu"), seed=0)

        rows.append(
            {
                "lib": "diffrl-bench",
                "algo": name,
                "steps_per_s": time_updates(agent, sampler, args.steps, args.warmup),
                "act_decisions_per_s": time_act(agent, obs, args.act_calls),
            }
        )
    return rows


# -- driver -----------------------------------------------------------------------------------


def ensure_venv(venv: Path) -> Path:
    """The d3rlpy virtualenv's python, creating the virtualenv on first use."""
    python = venv / "bin" / "python"
    if not python.exists():
        import torch

        torch_version = torch.__version__.split("+")[0]
        print(f"creating {venv} (d3rlpy {D3RLPY_VERSION}, torch {torch_version})", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pins = [f"d3rlpy=={D3RLPY_VERSION}", f"torch=={torch_version}"]
        subprocess.run([str(python), "-m", "pip", "install", "-q", *pins], check=True)
    return python


def run_d3rlpy_half(python: Path, data_path: str, args) -> list[dict]:
    cmd = [str(python), str(Path(__file__).resolve()), "--d3rlpy-half", data_path]
    for key in ("steps", "warmup", "envs", "act_calls", "batch", "threads"):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    env = {**os.environ, "PYTHONPATH": ""}  # keep our checkout off d3rlpy's path
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def print_table(ours: list[dict], theirs: list[dict], args, n: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    console.print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}; torch threads {args.threads}; synthetic data "
        f"{n:,} transitions, obs {OBS_DIM}, act {ACT_DIM}; batch {args.batch}; "
        f"{args.steps} timed steps; act on {args.envs} envs"
    )
    table = Table(
        "algo",
        "ours steps/s",
        f"d3rlpy {D3RLPY_VERSION} steps/s",
        "ratio",
        "ours decisions/s",
        "d3rlpy decisions/s",
        "ratio",
    )
    for a, b in zip(ours, theirs, strict=True):
        table.add_row(
            a["algo"],
            f"{a['steps_per_s']:.1f}",
            f"{b['steps_per_s']:.1f}",
            f"{a['steps_per_s'] / b['steps_per_s']:.2f}",
            f"{a['act_decisions_per_s']:.0f}",
            f"{b['act_decisions_per_s']:.0f}",
            f"{a['act_decisions_per_s'] / b['act_decisions_per_s']:.2f}",
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--envs", type=int, default=50)
    parser.add_argument("--act-calls", type=int, default=50)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--transitions", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("TORCH_THREADS", 2)))
    parser.add_argument("--d3rlpy-half", metavar="NPZ", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.d3rlpy_half:
        print(json.dumps(measure_d3rlpy(args.d3rlpy_half, args)))
        return
    python = ensure_venv(args.venv.expanduser())
    data = synthetic_data(args.transitions)
    with tempfile.TemporaryDirectory() as tmp:
        data_path = str(Path(tmp) / "data.npz")
        np.savez(data_path, **data)
        theirs = run_d3rlpy_half(python, data_path, args)
    ours = measure_ours(data, args)
    print_table(ours, theirs, args, args.transitions)


if __name__ == "__main__":
    main()
