"""The normalized score, D4RL's ``100 * (R - R_min) / (R_max - R_min)``, against values computed by
hand with a non-zero reference minimum (dividing by ``R_max`` alone, or not subtracting
``R_min``, would pass a test whose minimum is 0)."""

import numpy as np
import pytest

from bench.evaluate import evaluate
from tasks import toy
from tasks.registry import get_task
from tasks.spec import normalized_score


def test_hopper_score_by_hand():
    """Hopper: R_min = -20.272305, R_max = 3234.3 (D4RL infos.py). A return of 1000 scores
    100 * 1020.272305 / 3254.572305 = 31.34889; dividing by R_max instead would give 31.54539,
    ignoring R_min 30.91859."""
    spec = get_task("hopper-medium-v2")
    assert (spec.ref_min_score, spec.ref_max_score) == (-20.272305, 3234.3)
    score = normalized_score(1000.0, spec.ref_min_score, spec.ref_max_score)
    assert float(score) == pytest.approx(31.348890, abs=1e-5)


def test_scores_by_hand_on_arrays_and_at_the_references():
    """Walker2d (R_min = 1.629008, R_max = 4592.3): 3000 scores 100 * 2998.370992 / 4590.670992
    = 65.31444; R_min scores 0 and R_max 100, element-wise over an array."""
    low, high = 1.629008, 4592.3
    scores = normalized_score(np.array([3000.0, low, high]), low, high)
    np.testing.assert_allclose(scores, [65.314439, 0.0, 100.0], atol=1e-5)


class FixedAction:
    """Always the bandit's high mode."""

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.tile(toy.HIGH_MODE, (len(obs), 1))

    def reset(self, done=None) -> None:
        pass


def test_the_evaluator_normalizes_each_episode_by_the_reference_range():
    """With R_min = 0.25 and R_max = 1.25 the score is 100 * (R - 0.25) / 1.0 = 100 R - 25."""
    result = evaluate(
        FixedAction(), get_task("toy-bandit"), episodes=3, seed=0, ref_min=0.25, ref_max=1.25
    )
    ret = float(toy.bandit_reward(toy.HIGH_MODE))
    np.testing.assert_allclose(result.returns, [ret] * 3, rtol=1e-6)
    np.testing.assert_allclose(result.normalized, [100 * ret - 25] * 3, rtol=1e-6)
    assert result.summary()["normalized_mean"] == pytest.approx(100 * ret - 25, rel=1e-6)
