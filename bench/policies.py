"""``python -m bench.policies [--episodes 100] [--data-scale 0.1] [--out reports/behaviour-policies]``.

The returns table of the locomotion forge. For every env and level it lists the shipped behaviour
policy's training step and its return over ``--episodes`` episodes (stochastic actions, the ones
that collect the data; seeds ``--seed + i``), the mean episode return of the dataset forged with
it (at ``--data-scale``, over its complete episodes: a forge's slots end with a cut one), and the mean
return of D4RL's dataset of the same name, all D4RL-normalized, so a reader sees at once whether a
forged level is the level users know. Levels whose policies are not shipped are listed as such.
Writes ``policies.md`` and ``policies.csv``; outputs are byte-stable for the same policies, seeds
and scale.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from tasks.forge import forge
from tasks.forge.locomotion import D4RL_DATASET_RETURNS, policies_shipped
from tasks.forge.policies import BehaviourPoliciesMissingError, load_policy_set
from tasks.forge.sac import evaluate_actor
from tasks.hdf5 import read_d4rl_hdf5
from tasks.registry import LOCOMOTION, get_task
from tasks.spec import normalized_score

LEVELS = ("random", "medium", "medium-replay", "expert", "medium-expert")
POLICY_LEVELS = ("random", "medium", "expert")
COLUMNS = [
    "env",
    "level",
    "train step",
    "policy return (mean ± std)",
    "policy normalized",
    "forged data normalized",
    "D4RL data normalized",
]


def policy_rows(episodes: int, seed: int, data_scale: float) -> list[list[str]]:
    """One row per env and level: the shipped policy's and forged data's scores, or absence."""
    rows = []
    for env, (env_id, _, _) in LOCOMOTION.items():
        try:
            shipped = load_policy_set(env)
        except BehaviourPoliciesMissingError:
            shipped = None
        for level in LEVELS:
            d4rl = D4RL_DATASET_RETURNS[env].get(level)
            row = [env, level, "—", "—", "—", "—", "—" if d4rl is None else score(d4rl, env)]
            entry = shipped.manifest["policies"].get(level) if shipped else None
            if level in POLICY_LEVELS and entry is None:
                row[2] = "not shipped"
            if entry is not None:
                returns = evaluate_actor(shipped.actor(level), env_id, episodes, seed)
                row[2] = f"{entry['train_step']:,}"
                row[3] = f"{returns.mean():.1f} ± {returns.std():.1f}"
                row[4] = score(returns.mean(), env)
            spec = get_task(f"{env}-{level}-v2")
            if data_scale > 0 and policies_shipped(spec):
                path = forge(spec, scale=data_scale, progress=False)
                data_returns = episode_returns(read_d4rl_hdf5(path), spec.max_episode_steps)
                row[5] = (
                    score(data_returns.mean(), env) if len(data_returns) else "no whole episode"
                )
            rows.append(row)
    return rows


def score(mean_return: float, env: str) -> str:
    """``mean_return`` as D4RL's normalized score, one decimal."""
    _, ref_min, ref_max = LOCOMOTION[env]
    return f"{float(normalized_score(np.array([mean_return]), ref_min, ref_max)[0]):.1f}"


def episode_returns(arrays: dict[str, np.ndarray], max_steps: int) -> np.ndarray:
    """Returns of the complete episodes of a D4RL-layout dataset: those that end in a fall
    (``terminals``) or at the ``max_steps`` time limit. An episode cut short by the end of a
    collection slot is left out: its partial return would understate the level."""
    ends = np.flatnonzero(arrays["terminals"] | arrays["timeouts"])
    if not len(ends):
        return np.zeros(0)
    starts = np.r_[0, ends[:-1] + 1]
    sums = np.add.reduceat(arrays["rewards"][: ends[-1] + 1].astype(np.float64), starts)
    complete = arrays["terminals"][ends] | (ends - starts + 1 >= max_steps)
    return sums[complete]


def write_table(
    rows: list[list[str]], out: Path, episodes: int, seed: int, data_scale: float
) -> None:
    """``policies.md`` (with how it was made) and ``policies.csv`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "policies.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    lines = [
        "# Behaviour policies of the locomotion forge",
        "",
        f"Each shipped policy (`tasks/policies/<env>/`) run for {episodes} episodes with stochastic "
        f"actions, seeds {seed}+i, in the task's environment; the forged data's mean return over its "
        f"complete episodes at `data.scale={data_scale:g}` (at small scales medium-replay has none); D4RL's dataset mean from "
        "`tasks.forge.locomotion.D4RL_DATASET_RETURNS` (sources cited there). "
        "Normalized: D4RL's score (100 x (return - random ref) / (expert ref - random ref)).",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        f"Regenerate: `python -m bench.policies --episodes {episodes} --seed {seed} "
        f"--data-scale {data_scale:g}`",
        "",
    ]
    (out / "policies.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-scale", type=float, default=0.1)
    parser.add_argument("--out", type=Path, default=Path("reports/behaviour-policies"))
    args = parser.parse_args()
    rows = policy_rows(args.episodes, args.seed, args.data_scale)
    write_table(rows, args.out, args.episodes, args.seed, args.data_scale)
    print((args.out / "policies.md").read_text())


if __name__ == "__main__":
    main()
