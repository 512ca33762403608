"""Metrics against hand computations and the loops in tests/reference.py."""

from __future__ import annotations

import numpy as np
import pytest

from isskit.policies import IAS, ISS, Cohen
from isskit.replay.metrics import (
    acr,
    certified_accuracy,
    est_minutes,
    mad,
    mean_samples,
    speedup,
    total_samples,
)
from tests import reference as ref

# Four images, worked by hand: true labels 1, 2, 3, 4.
TRUE = np.array([1, 2, 3, 4])
PRED = np.array([1, 0, 3, -1])  # correct, wrong, correct, abstain
RAD = np.array([0.5, 0.9, 0.25, 0.0])
SAMPLES = np.array([1000, 2000, 500, 100])


def test_acr_by_hand():
    # (0.5 + 0.25) / 4: the wrong prediction's 0.9 does not count (Eq. 7)
    assert acr(PRED, RAD, TRUE) == pytest.approx(0.1875, abs=1e-15)


def test_certified_accuracy_by_hand_and_strict():
    ca = certified_accuracy(PRED, RAD, TRUE, [0.0, 0.25, 0.4, 0.5, 1.0])
    # r = 0: images 0 and 2; r = 0.25: only image 0 (0.25 > 0.25 is false); r = 0.5: none
    np.testing.assert_array_equal(ca, [0.5, 0.25, 0.25, 0.0, 0.0])


def test_abstention_with_matching_label_never_counts():
    # true label -1 would match an abstention's -1; it must not count as correct
    assert acr([-1], [0.0], [-1]) == 0.0
    assert certified_accuracy([-1], [0.3], [-1], [0.0])[0] == 0.0


def test_samples_and_time_by_hand():
    assert mean_samples(SAMPLES) == 900.0
    assert total_samples(SAMPLES) == 3600
    # 3600 samples at 0.01 s = 36 s = 0.6 min
    assert est_minutes(SAMPLES, 0.01) == pytest.approx(0.6, rel=1e-15)
    with pytest.raises(ValueError, match=r"seconds_per_sample \(-1.0\)"):
        est_minutes(SAMPLES, -1.0)


def test_speedup_and_mad_by_hand():
    ref_samples = np.full(4, 1800)
    assert speedup(SAMPLES, ref_samples) == 2.0  # 7200 / 3600
    ref_rad = np.array([0.6, 0.9, 0.1, 0.05])
    # declines: 0.1, 0.0, -0.15, 0.05 -> 0.1
    assert mad(RAD, ref_rad) == pytest.approx(0.1, abs=1e-15)
    assert mad(ref_rad, ref_rad) == 0.0


def test_batched_over_policies_matches_loops():
    rng = np.random.default_rng(1)
    pred = rng.integers(-1, 4, (5, 40))
    rad = np.where(pred >= 0, rng.random((5, 40)), 0.0)
    rad[:, :3] = 0.5  # radii exactly on a grid point
    true = rng.integers(0, 4, 40)
    grid = [0.0, 0.25, 0.5, 0.75]
    a = acr(pred, rad, true)
    ca = certified_accuracy(pred, rad, true, grid)
    m = mad(rad[1:], rad[:1])
    for k in range(5):
        assert a[k] == pytest.approx(ref.ref_acr(pred[k], rad[k], true), abs=1e-15)
        for g, r in enumerate(grid):
            assert ca[k, g] == ref.ref_certified_accuracy(pred[k], rad[k], true, r)
    for k in range(4):
        assert m[k] == ref.ref_mad(rad[k + 1], rad[0])


def test_default_reference_rule():
    pols = [ISS(100_000, 0.05, "ad"), ISS(500_000, 0.1, "rd", alpha=0.01), IAS(26_000),
            Cohen(n=50_000, alpha=0.01)]
    refs = [p.default_reference(pols) for p in pols]
    assert refs == [IAS(100_000), IAS(500_000, alpha=0.01), IAS(500_000),
                    IAS(500_000, alpha=0.01)]
    # no ISS: the largest n of the IAS and Cohen policies
    assert IAS(26_000).default_reference([IAS(26_000), IAS(50_000)]) == IAS(50_000)
