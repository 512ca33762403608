"""The library-wide bounds in ``isskit.validate``, and why they sit where they do."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from isskit.policies import IAS, ISS, Cohen, parse_policy_spec
from isskit.psi import psi_table
from isskit.psi.verify import verify
from isskit.replay.metrics import est_minutes
from isskit.stats import expected_radius
from isskit.validate import (
    MAX_SAMPLE_SIZE,
    MAX_SIGMA,
    MIN_DELTA,
    check_delta,
    check_sample_size,
    check_sigma,
)


def test_sample_size_bound():
    assert check_sample_size(MAX_SAMPLE_SIZE, "n") == MAX_SAMPLE_SIZE
    assert check_sample_size(1e5, "n") == 100_000
    with pytest.raises(ValueError, match=r"k_bar \(1000000000001\) must be an integer <= "):
        check_sample_size(MAX_SAMPLE_SIZE + 1, "k_bar")
    with pytest.raises(ValueError, match=r"n \(1e\+40\)"):  # not 41 digits
        check_sample_size(10**40, "n")


@pytest.mark.parametrize(
    "make",
    [
        lambda: Cohen(n0=100, n=10**13),
        lambda: Cohen(n0=10**13, n=100),
        lambda: IAS(n=10**13),
        lambda: ISS(k_bar=10**13, U=0.05, decline="ad"),
        lambda: ISS(k_bar=10**5, U=0.05, decline="ad", k0=10**13),
        lambda: psi_table(10**13, 0.05, "ad", 0.5, 0.001, 0.001),
        lambda: verify(10**5, 0.05, "ad", 0.5, 0.001, 0.01, k0=10**13),
    ],
)
def test_every_sample_size_is_bounded(make):
    with pytest.raises(ValueError, match="must be an integer <= 1,000,000,000,000"):
        make()


def test_radius_is_accurate_up_to_the_bound():
    # The reason for the bound: R(k, 1) = sigma * Phi^-1(alpha^(1/k)) against 50-digit
    # mpmath. Errors measured (sigma 0.5, alpha 0.001): 5e-7 at 1e12, 2e-5 at 1e14,
    # 2e-3 at 1e16, 3e-2 at 1e17.
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 50

    def exact(k):
        q = mp.mpf("0.001") ** (1 / mp.mpf(k))
        return float(mp.mpf("0.5") * mp.sqrt(2) * mp.erfinv(2 * q - 1))

    assert abs(expected_radius(MAX_SAMPLE_SIZE, 1.0, 0.5, 0.001) - exact(MAX_SAMPLE_SIZE)) < 1e-6
    assert abs(expected_radius(10**16, 1.0, 0.5, 0.001) - exact(10**16)) > 1e-3


def test_sigma_bound():
    assert check_sigma(MAX_SIGMA) == MAX_SIGMA
    with pytest.raises(ValueError, match=r"sigma \(1e\+308\) must be <= 1e\+300"):
        check_sigma(1e308)
    # the largest sigma still gives finite radii
    assert np.isfinite(expected_radius(10**5, 0.999, MAX_SIGMA, 0.001))


def test_delta_bound():
    assert check_delta(MIN_DELTA) == pytest.approx(MIN_DELTA)
    with pytest.raises(ValueError, match=r"delta \(1e-07\) must be >= 1e-06"):
        check_delta(1e-7)
    with pytest.raises(ValueError, match=r"delta \(1e-09\)"):
        ISS(k_bar=10**4, U=0.05, decline="ad", delta=1e-9)


def test_verify_bounds_the_points_it_evaluates():
    with pytest.raises(ValueError, match=r"fine \(20000\) x 1,000 grid cells"):
        verify(10**5, 0.05, "ad", 0.5, 0.001, 0.001, fine=20_000)


def test_est_minutes_overflows_to_inf_quietly():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = est_minutes(np.array([[10_000, 10_000]]), 1e308)
    assert out.tolist() == [np.inf]


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("ias n=1000 n=2000", "n is given twice"),
        ("IAS-0.1 n=2000", "n is given twice"),
        ("ISS-AD-10-0.05-U=0.1", "U is given twice"),
        ("ias n=1000,,2000", "empty value"),
        ("ias n=1000, ", "empty value"),
        ("cohen =5", "is not key=value"),
    ],
)
def test_spec_refuses_what_it_used_to_resolve_silently(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_policy_spec(spec)


def test_spec_lists_and_suffixes_still_work():
    assert [p.n for p in parse_policy_spec("ias n=1000,2000")] == [1000, 2000]
    (p,) = parse_policy_spec("ISS-AD-10-0.05-k0=500")
    assert (p.k_bar, p.U, p.k0) == (100_000, 0.05, 500)
