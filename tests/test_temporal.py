import numpy as np
import pytest

from policies.schema import Temporal
from policies.temporal import aggregate

NOISY = np.array([0.1, 0.95, 0.1, 0.2, 0.1])  # one spike
HELD = np.array([0.1, 0.8, 0.9, 0.85, 0.1])  # three frames in a row


def test_one_noisy_frame_does_not_carry_a_consecutive_rule() -> None:
    score, frames = aggregate(NOISY, Temporal(mode="consecutive", n=2), zero_tolerance=False)
    assert score == pytest.approx(0.1)  # the spike never holds for two frames
    score, frames = aggregate(HELD, Temporal(mode="consecutive", n=3), zero_tolerance=False)
    assert score == pytest.approx(0.8) and frames == [1, 2, 3]


def test_zero_tolerance_takes_the_single_worst_frame() -> None:
    assert aggregate(NOISY, Temporal(mode="consecutive", n=3), zero_tolerance=True) == (pytest.approx(0.95), [1])


def test_topk_mean_and_short_clips() -> None:
    score, frames = aggregate(HELD, Temporal(mode="topk_mean", k=2), zero_tolerance=False)
    assert score == pytest.approx(0.875) and frames == [2, 3]
    assert aggregate(np.array([0.7]), Temporal(n=3), False) == (pytest.approx(0.7), [0])
    assert aggregate(np.array([]), Temporal(), False) == (0.0, [])
