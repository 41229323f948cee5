"""Learning happens: agents trained through the harness beat a random policy on a forged maze.

The reference minimum of a forged point maze is the random policy's mean return, so a random
policy scores 0 by construction; each agent must clear ``MARGIN`` normalized points.
"""

import pytest

from bench.run import run_overrides

MARGIN = 10.0
SMALL_MAZE = ["task=pointmaze-umaze", "data.scale=0.05", "eval.episodes=10", "device=cpu"]
SMALL_MAZE += ["train.eval_every=100000", "train.log_every=500"]


# IDQL ranks 16 candidates here instead of its default 64, and its actor trains on batches of
# 256 instead of the paper-era 2048, to keep the test fast on 2 cores.
@pytest.mark.parametrize(
    "overrides",
    [
        ["algo=iql", "train.steps=2000"],
        ["algo=td3bc", "train.steps=2000"],
        ["algo=idql", "algo.n_candidates=16", "algo.batch_size=256", "train.steps=2000"],
    ],
    ids=["iql", "td3bc", "idql"],
)
def test_beats_random_on_a_small_forged_point_maze(tmp_path, overrides):
    rec = run_overrides([*overrides, *SMALL_MAZE, f"results_dir={tmp_path}"])
    assert rec["status"] == "completed"
    assert rec["final"]["normalized_mean"] > MARGIN, rec["final"]
