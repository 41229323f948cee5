"""``bench.policies``: the behaviour-policy returns table lists every level, shipped or not."""

import csv

import numpy as np
import pytest
import torch

from bench.policies import episode_returns, policy_rows, write_table
from tasks.forge.policies import untrained_policy_set
from tasks.forge.sac import evaluate_actor, make_actor
from tasks.registry import LOCOMOTION


@pytest.fixture
def hopper_random_only(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFRL_POLICY_DIR", str(tmp_path / "policies"))
    monkeypatch.setattr("tasks.forge.policies.POLICY_EVAL_EPISODES", 2)
    untrained_policy_set("hopper")


@pytest.mark.usefixtures("hopper_random_only")
def test_table_scores_shipped_levels_and_marks_the_rest(tmp_path):
    rows = policy_rows(episodes=3, seed=5, data_scale=0.001)
    assert len(rows) == 5 * len(LOCOMOTION)
    by_key = {(row[0], row[1]): row for row in rows}
    env_id, ref_min, ref_max = LOCOMOTION["hopper"]
    torch.manual_seed(0)  # the seed untrained_policy_set draws the random actor with
    returns = evaluate_actor(make_actor(env_id), env_id, 3, 5)
    expected = 100 * (returns.mean() - ref_min) / (ref_max - ref_min)
    random_row = by_key[("hopper", "random")]
    assert random_row[2] == "0"
    assert random_row[3] == f"{returns.mean():.1f} ± {returns.std():.1f}"
    assert float(random_row[4]) == pytest.approx(expected, abs=0.06)
    assert abs(float(random_row[5])) < 5  # the forged random data scores near 0 too
    medium = by_key[("hopper", "medium")]
    assert medium[2:6] == ["not shipped", "—", "—", "—"]
    assert medium[6] == "44.3"  # D4RL's hopper-medium-v2 data
    assert by_key[("hopper", "medium-replay")][2] == "—"  # a dataset, not a policy
    assert all(by_key[("walker2d", level)][2] == "not shipped" for level in ("random", "expert"))

    write_table(rows, tmp_path / "out", episodes=3, seed=5, data_scale=0.001)
    with open(tmp_path / "out" / "policies.csv") as f:
        assert list(csv.reader(f))[1:] == rows
    text = (tmp_path / "out" / "policies.md").read_text()
    assert "| hopper | random | 0 |" in text and "--episodes 3 --seed 5" in text


def test_forged_data_return_counts_only_complete_episodes():
    rewards = np.ones(7, dtype=np.float32)
    terminals = np.array([0, 1, 0, 0, 0, 0, 0], dtype=bool)  # a fall after 2 steps
    timeouts = np.array([0, 0, 0, 0, 1, 0, 1], dtype=bool)  # the 3-step limit, then a cut end
    arrays = {"rewards": rewards, "terminals": terminals, "timeouts": timeouts}
    np.testing.assert_array_equal(episode_returns(arrays, max_steps=3), [2.0, 3.0])
