"""isskit.stats against scipy.stats.beta and against counts recovered from published logs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as st

from isskit.stats import (
    absolute_decline,
    certified_radius,
    cp_interval,
    cp_lower,
    expected_radius,
    relative_decline,
)

RNG = np.random.default_rng(20221)


def _random_counts(size=2000, kmax=200_000):
    k = RNG.integers(1, kmax, size)
    k_A = RNG.integers(0, k + 1)
    return k_A, k


def test_cp_lower_matches_beta_ppf():
    k_A, k = _random_counts()
    alpha = 0.001
    ref = np.array(
        [0.0 if a == 0 else st.beta.ppf(alpha, a, n - a + 1) for a, n in zip(k_A, k, strict=True)]
    )
    np.testing.assert_array_equal(cp_lower(k_A, k, alpha), ref)


def test_cp_interval_matches_beta_ppf_and_edges():
    k_A, k = _random_counts()
    k_A[:5] = 0
    k_A[5:10] = k[5:10]
    alpha = 0.01
    low, up = cp_interval(k_A, k, alpha)
    for a, n, lo, hi in zip(k_A, k, low, up, strict=True):
        assert lo == (0.0 if a == 0 else st.beta.ppf(alpha / 2, a, n - a + 1))
        assert hi == (1.0 if a == n else st.beta.ppf(1 - alpha / 2, a + 1, n - a))
    assert np.all(low[:5] == 0) and np.all(up[5:10] == 1)
    assert np.all(low <= k_A / k) and np.all(k_A / k <= up)


def test_cp_lower_edge_values():
    # k_A = k: Beta(alpha; k, 1) = alpha**(1/k) in closed form.
    for k in (1, 10, 100_000):
        assert cp_lower(k, k, 0.001) == pytest.approx(0.001 ** (1 / k), rel=1e-14)
    assert cp_lower(0, 10, 0.05) == 0.0
    # Cohen et al.'s lowerConfBound is statsmodels' proportion_confint(k_A, k, alpha=2*alpha,
    # method="beta")[0]; that equals the beta quantile below, e.g. 95 of 100 at alpha 0.001:
    assert cp_lower(95, 100, 0.001) == st.beta.ppf(0.001, 95, 6)


def test_cp_lower_scalar_and_broadcast():
    assert isinstance(cp_lower(5, 10, 0.1), float)
    out = cp_lower(np.arange(11), 10, 0.1)
    assert out.shape == (11,) and np.all(np.diff(out) > 0)


@pytest.mark.parametrize(
    ("k_A", "k", "alpha", "match"),
    [
        (5, 0, 0.1, r"k \(0\) must be >= 1"),
        (11, 10, 0.1, r"k_A \(11\) must be in \[0, k\]"),
        (-1, 10, 0.1, r"k_A \(-1\)"),
        (5, 10, 0.0, r"alpha \(0.0\) must be in \(0, 1\)"),
        (5, 10, 1.5, r"alpha \(1.5\)"),
        (5.5, 10, 0.1, r"k_A .* integer counts"),
    ],
)
def test_cp_bad_input(k_A, k, alpha, match):
    with pytest.raises(ValueError, match=match):
        cp_lower(k_A, k, alpha)


def test_certified_radius_abstains_below_half():
    p = np.array([0.0, 0.3, 0.4999999, 0.5, 0.75, 0.999])
    r = certified_radius(p, 0.5)
    np.testing.assert_array_equal(r[:4], 0.0)
    np.testing.assert_allclose(r[4:], 0.5 * st.norm.ppf(p[4:]), rtol=1e-15)
    with pytest.raises(ValueError, match=r"sigma \(0.0\)"):
        certified_radius(0.7, 0.0)
    with pytest.raises(ValueError, match=r"p_lower \(1.5\)"):
        certified_radius(1.5, 0.25)


def _sig3(r):
    """Cohen et al.'s certify.py prints radii with ``"{:.3}".format``: 3 significant digits."""
    return np.array([float(f"{x:.3}") for x in np.atleast_1d(r)])


def test_published_radii_reproduced_from_recovered_counts(published):
    """Every certified row of a published log is reproduced from its recovered count range.

    The recovered ranges in data/published/recovered were computed independently of isskit
    (see its README); the printed radii come from Cohen et al.'s own certify.py.
    """
    path = published / "recovered" / "cohen2019__cifar10_resnet110_noise_0.25_test_sigma_0.25.tsv"
    rows = np.genfromtxt(path, skip_header=1, names=True, delimiter="\t", dtype=None)
    cert = rows[rows["predict"] >= 0]
    assert len(cert) > 400
    for kA in ("kA_min", "kA_max"):
        r = certified_radius(cp_lower(cert[kA], 100_000, 0.01), 0.25)
        np.testing.assert_array_equal(_sig3(r), cert["radius_logged"])
    # one count beyond either end of the range prints a different radius (where it can)
    inner = cert[(cert["kA_max"] < 100_000) & (cert["kA_min"] > 50_000)]
    r_hi = certified_radius(cp_lower(inner["kA_max"] + 1, 100_000, 0.01), 0.25)
    r_lo = certified_radius(cp_lower(inner["kA_min"] - 1, 100_000, 0.01), 0.25)
    assert np.all(_sig3(r_hi) != inner["radius_logged"])
    assert np.all(_sig3(r_lo) != inner["radius_logged"])
    abst = rows[rows["predict"] < 0]
    assert np.all(cp_lower(abst["kA_max"], 100_000, 0.01) < 0.5)


def test_expected_radius_against_beta_ppf_with_noninteger_count():
    k = np.array([100, 1000, 12345, 100_000])
    p = np.array([0.9, 0.61, 0.99999, 0.5])
    ref = 0.25 * st.norm.ppf(st.beta.ppf(0.001, p * k, k - p * k + 1))
    np.testing.assert_allclose(expected_radius(k, p, 0.25, 0.001), ref, rtol=1e-13, atol=0)
    # p = 1: Beta(alpha; k, 1) = alpha**(1/k)
    assert expected_radius(1000, 1.0, 0.5, 0.001) == pytest.approx(
        0.5 * st.norm.ppf(0.001 ** (1 / 1000)), rel=1e-13
    )
    assert expected_radius(1000, 0.0, 0.5, 0.001) == -np.inf
    assert expected_radius(1000, 0.3, 0.5, 0.001) < 0  # not clipped


def test_declines():
    k_bar, sigma, alpha = 100_000, 0.25, 0.001
    p = np.linspace(0.6, 1.0, 9)
    r_bar = expected_radius(k_bar, p, sigma, alpha)
    r = expected_radius(5000, p, sigma, alpha)
    np.testing.assert_array_equal(absolute_decline(5000, k_bar, p, sigma, alpha), r_bar - r)
    rd = relative_decline(5000, k_bar, p, sigma, alpha)
    np.testing.assert_array_equal(rd, (r_bar - r) / r_bar)
    assert absolute_decline(k_bar, k_bar, 0.9, sigma, alpha) == 0.0
    with pytest.raises(ValueError, match=r"k \("):
        expected_radius(0, 0.9, sigma, alpha)
    with pytest.raises(ValueError, match=r"p \(1.1\)"):
        expected_radius(10, 1.1, sigma, alpha)
