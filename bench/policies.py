"""``python -m bench.policies [--episodes 100] [--out reports/behaviour-policies]``: returns table.

Evaluates every shipped locomotion behaviour policy (``tasks/policies/<env>/``, or
``$DIFFRL_POLICY_DIR``) for ``--episodes`` episodes with the stochastic actions that collect the
datasets, and writes ``policies.md`` and ``policies.csv``: per env and level the training step,
the return as mean ± std, and the D4RL-normalized score beside D4RL's own level for it (random 0
and expert 100 by the definition of D4RL's reference returns; medium "about one third", which the
forge's threshold fixes at 33.3). A level whose policy is not shipped yet is listed as such, so the
table shows what forges today. Episodes are seeded ``--seed + i``; outputs are byte-stable for the
same policies and seed.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from tasks.forge.locomotion import (
    MEDIUM_FRACTION,
    BehaviourPoliciesMissingError,
    load_policy_set,
)
from tasks.forge.sac import evaluate_actor
from tasks.registry import LOCOMOTION
from tasks.spec import normalized_score

LEVELS = ("random", "medium", "expert")
D4RL_LEVEL = {"random": "0", "medium": f"about {100 * MEDIUM_FRACTION:.1f}", "expert": "100"}
COLUMNS = ["env", "level", "train step", "return (mean ± std)", "normalized", "D4RL level"]


def policy_rows(episodes: int, seed: int) -> list[list[str]]:
    """One row per env and level: the shipped policy's evaluation, or a note that it is absent."""
    rows = []
    for env, (env_id, ref_min, ref_max) in LOCOMOTION.items():
        try:
            policies = load_policy_set(env)
        except BehaviourPoliciesMissingError:
            policies = None
        shipped = policies.manifest["policies"] if policies else {}
        for level in LEVELS:
            if level not in shipped:
                rows.append([env, level, "not shipped", "—", "—", D4RL_LEVEL[level]])
                continue
            returns = evaluate_actor(policies.actor(level), env_id, episodes, seed)
            score = normalized_score(returns, ref_min, ref_max)
            rows.append(
                [
                    env,
                    level,
                    f"{shipped[level]['train_step']:,}",
                    f"{returns.mean():.1f} ± {returns.std():.1f}",
                    f"{np.mean(score):.1f}",
                    D4RL_LEVEL[level],
                ]
            )
    return rows


def write_table(rows: list[list[str]], out: Path, episodes: int, seed: int) -> None:
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
        f"actions, seeds {seed}+i, on gymnasium `*-v5`. Normalized: D4RL's score "
        "(100 x (return - random ref) / (expert ref - random ref)).",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        f"Regenerate: `python -m bench.policies --episodes {episodes} --seed {seed}`",
        "",
    ]
    (out / "policies.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("reports/behaviour-policies"))
    args = parser.parse_args()
    rows = policy_rows(args.episodes, args.seed)
    write_table(rows, args.out, args.episodes, args.seed)
    print((args.out / "policies.md").read_text())


if __name__ == "__main__":
    main()
