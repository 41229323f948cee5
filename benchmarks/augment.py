"""Generation throughput of the dataset transforms (DiffStitch, SynthER), as a table.

    python -m benchmarks.augment [--task hopper-medium-v2] [--scale 0.01] [--batches 8,32,64]
        [--rounds 3] [--train-steps 200] [--synther-samples 2000] [--set field=value ...]

DiffStitch: its models are trained briefly (``--train-steps`` diffusion updates, two ensemble
epochs; the reduced sizes below, stated in the output), then ``--rounds`` stitch rounds run at
each ``--batches`` batch size (``stitch_batch``: stitches dreamed, searched, inpainted and
checked together): rounds/s, generated transitions/s (attempts that found a target) and accepted
transitions/s. Barely trained models accept little at the paper's thresholds, so the table
also gives the throughput of generated transitions, which does not depend on them. SynthER:
samples/s of its EDM sampler at the same sampler settings (``--synther-samples`` transitions).
Threads: ``--threads`` (default 1; on a shared 2-core machine two OpenMP threads can be many
times slower than one).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from algorithms import diffstitch, synther
from bench.data import compute_stats, make_sampler
from bench.run import task_info
from tasks.registry import get_task
from tasks.sources import load_dataset

# Reduced sizes that train in a minute on one CPU core (the paper's: diffstitch.Config()).
REDUCED = {
    "horizon": 64,
    "n_diffusion_steps": 20,
    "dim": 32,
    "dim_mults": (1, 2, 4),
    "batch_size": 32,
    "stitch_low": 8,
    "stitch_high": 24,
    "dynamics_max_epochs": 2,
}
SYNTHER_REDUCED = {"mlp_width": 256, "depth": 3, "n_sample_steps": 32, "sample_batch": 10_000}


def parse_sets(pairs: list[str]) -> dict:
    """``field=value`` overrides (values parsed as Python literals where they can be)."""
    import ast

    out = {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def stitch_throughput(args, dataset, info, stats, device) -> list[list[str]]:
    """Rows ``[batch, rounds/s, generated/s, accepted/s, acceptance]`` of DiffStitch rounds."""
    cfg = diffstitch.Config(**{**REDUCED, **parse_sets(args.set)})
    cfg = diffstitch.resolve(cfg, info, stats)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    arrays = dataset.arrays
    layout = diffstitch.StateLayout(tuple(range(info.obs_dim)))
    norm = diffstitch.make_normalizer(cfg.normalizer, stats, layout, device)
    stitcher = diffstitch.Stitcher(cfg, info.obs_dim, info.act_dim, device)
    spec = diffstitch.DataSpec(
        kind="segments",
        batch_size=cfg.batch_size,
        horizon=cfg.horizon,
        discount=cfg.discount,
        terminal_reward=cfg.termination_penalty,
    )
    diffstitch.train_stitcher(
        stitcher, norm, make_sampler(dataset, spec, device, 0), args.train_steps
    )
    dynamics, _ = diffstitch.train_dynamics(cfg, arrays, device, rng)
    sources = diffstitch.top_windows(arrays, cfg.horizon, cfg.discount, cfg.source_share)
    targets = diffstitch.top_windows(arrays, cfg.horizon, cfg.discount, cfg.target_share)
    first = torch.as_tensor(arrays["observations"][targets.starts], device=device)
    target_states = norm.states(first)
    starts, ends = diffstitch.episode_bounds(arrays)
    rtg = diffstitch.returns_to_go(arrays["rewards"], starts, ends, cfg.discount)
    rule = diffstitch.termination_rule(info)
    generator = torch.Generator(device=device).manual_seed(0)
    rows = []
    for batch in args.batches:
        run_cfg = dataclasses.replace(cfg, stitch_batch=batch)
        generated = accepted = attempts = 0
        tick = time.perf_counter()
        for _ in range(args.rounds):
            rnd, raw, normed = diffstitch.stitch_round(
                run_cfg, stitcher, norm, arrays, sources, targets, target_states, rng, device
            )
            checked = diffstitch.check_stitches(
                run_cfg,
                rnd,
                raw,
                normed,
                stitcher,
                norm,
                dynamics,
                rtg[rnd.source + cfg.dream_len - 1],
                rule,
                generator,
            )
            generated += checked.generated
            accepted += sum(len(p["rewards"]) for p in checked.pieces)
            attempts += batch
        seconds = time.perf_counter() - tick
        rows.append(
            [
                str(batch),
                f"{args.rounds / seconds:.2f}",
                f"{generated / seconds:.1f}",
                f"{accepted / seconds:.1f}",
                f"{accepted / max(generated, 1):.1%}",
            ]
        )
    return rows


def synther_throughput(args, dataset, info, stats, device) -> float:
    """Samples/s of SynthER's sampler (an untrained denoiser: the cost does not depend on it)."""
    cfg = synther.resolve(synther.Config(**SYNTHER_REDUCED), info, stats)
    dim = 2 * info.obs_dim + info.act_dim + 2
    net = synther.ResidualMLPDenoiser(cfg, dim).to(device)
    tick = time.perf_counter()
    synther.edm_sample(net, args.synther_samples, dim, cfg, device)
    return args.synther_samples / (time.perf_counter() - tick)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="hopper-medium-v2")
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument(
        "--batches", type=lambda s: [int(x) for x in s.split(",")], default=[8, 32, 64]
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=200)
    parser.add_argument("--synther-samples", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", nargs="*", default=[], help="DiffStitch Config field=value")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    spec = get_task(args.task)
    dataset = load_dataset(spec, scale=args.scale)
    info, stats = task_info(spec, dataset), compute_stats(dataset)
    console = Console()
    table = Table(title=f"DiffStitch generation on {args.task} (scale {args.scale:g}, {device})")
    for column in ("stitch batch", "rounds/s", "generated/s", "accepted/s", "acceptance"):
        table.add_column(column, justify="right")
    for row in stitch_throughput(args, dataset, info, stats, device):
        table.add_row(*row)
    console.print(table)
    console.print(
        f"reduced DiffStitch settings: {REDUCED} (+ {args.set}); {args.train_steps} updates"
    )
    rate = synther_throughput(args, dataset, info, stats, device)
    console.print(f"SynthER sampling ({SYNTHER_REDUCED}): {rate:.1f} transitions/s")


if __name__ == "__main__":
    main()
