"""Hypothesis properties of the ISS mapping: Props. 1 and 2, monotonicity, exactness, coverage.

Where a property fails for the paper-faithful mapping (Prop. 1 for RD), the failure is
asserted with numbers in tests/test_verify.py and recorded in docs/mapping.md; here the
property is asserted for the mapping that is meant to satisfy it.

Props. 1 and 2 are decided by brute force in tests/reference.py (isskit's ``k_hat`` on
every interval, declines from scipy.stats), not by :func:`isskit.psi.verify.verify`, whose
verdict is asserted beside it. Grids are coarse (at most 20 cells) so that every pair
of points can be an interval, and Prop. 2's scan over every k < k_hat keeps k_bar <= 500.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, note
from hypothesis import strategies as st
from reference import (
    prop1_bruteforce,
    prop2_bruteforce,
    psi_bruteforce,
    psi_grid_ref,
    threshold_ref,
)
from scipy import stats as sst
from strategies import alphas, k_bars, mapping_params, sigmas

from isskit.psi import PsiTable, psi_exact, psi_table
from isskit.psi.verify import verify
from isskit.stats import cp_interval, cp_lower, expected_radius


def _points(table: PsiTable, fine: int = 2) -> np.ndarray:
    """The p_A to check: the grid, ``fine`` points inside every cell, and the sign change.

    The sign change p0 of the target radius (tests/reference.py, by bisection) and points
    packed geometrically after it, up to the next grid point: there psi jumps (to about
    k_bar for RD), which is where a wrong mapping breaks Prop. 1 and where the sup
    mapping's raised cell is tight.
    """
    p = table.p
    t = np.arange(1, fine + 1) / (fine + 1)
    inner = (p[:-1, None] + t * (p[1:] - p[:-1])[:, None]).ravel()
    extra = []
    p0 = threshold_ref(table.k_bar, table.U, table.decline, table.sigma, table.alpha)
    if p0 is not None:
        nxt = p[np.searchsorted(p, p0)]
        extra = p0 + np.concatenate([[0.0], np.geomspace(1e-12, 1.0, 13)]) * (nxt - p0)
    return np.unique(np.concatenate([p, inner, extra]))


@given(mapping_params(max_k_bar=500, max_steps=20), st.sampled_from(["paper", "sup"]))
def test_prop2_tightness_on_grid(params, mapping):
    table = psi_table(**params, mapping=mapping)
    margin, a, b, k, k_hat = prop2_bruteforce(table, _points(table))
    note(f"every p in [{a}, {b}] meets the bound at k = {k} < k_hat = {k_hat}: {margin}")
    assert margin > 0
    res = verify(**params, mapping=mapping, fine=2)
    note(str(res.worst_prop2))
    assert res.prop2


@given(mapping_params(decline="ad", max_steps=20))
def test_prop1_paper_mapping_ad(params):
    # The paper's claim, for its mapping and its decline: holds on every example so far.
    table = psi_table(**params, mapping="paper")
    excess, a, b, p_A, k_hat = prop1_bruteforce(table, _points(table))
    note(f"[{a}, {b}] contains p_A = {p_A}, where k_hat = {k_hat} loses U + {excess}")
    assert excess <= 0
    res = verify(**params, mapping="paper", fine=4)
    note(str(res.worst_prop1))
    assert res.prop1


@given(mapping_params(max_steps=20))
def test_prop1_sup_mapping_ad_and_rd(params):
    # The corrected mapping, meant to hold for RD too (the paper's fails there).
    table = psi_table(**params, mapping="sup")
    excess, a, b, p_A, k_hat = prop1_bruteforce(table, _points(table))
    note(f"[{a}, {b}] contains p_A = {p_A}, where k_hat = {k_hat} loses U + {excess}")
    assert excess <= 0
    res = verify(**params, mapping="sup", fine=4)
    note(str(res.worst_prop1))
    assert res.prop1


@given(mapping_params(max_k_bar=3000))
def test_psi_is_minimal_by_full_scan(params):
    res = verify(**params, fine=1, check_minimal=True)
    assert res.minimal


@given(
    p=st.floats(1e-6, 1.0),
    alpha=st.floats(1e-9, 0.4999),
    start=st.integers(1, 1_000_000),
    sigma=sigmas(),
)
def test_radius_non_decreasing_in_k(p, alpha, start, sigma):
    # What the search over k relies on (alpha < 1/2: the bound lies below the median).
    # Found by Hypothesis: with p k tiny the Beta quantile (about alpha**(1/(p k))) falls
    # below the smallest normal double and Boost returns 2.2e-308, then 0, so R drops to
    # -inf (p = 1e-6, alpha = 0.05, k = 4279). That is R < -37 sigma, far from any target
    # radius > 0, so psi is unaffected; the property is asserted where R is representable.
    ks = np.arange(start, start + 400)
    r = expected_radius(ks, p, sigma, alpha)
    floor = sigma * sst.norm.ppf(np.finfo(float).tiny)  # about -37.5 sigma
    assert np.all((r[1:] >= r[:-1]) | (r[1:] <= floor))


@given(mapping_params(decline="ad"), st.lists(st.floats(0.0, 1.0), min_size=1, max_size=50))
def test_psi_ad_non_decreasing_in_p(params, extra):
    del params["delta"]
    p = np.sort(np.concatenate([np.linspace(0.0, 1.0, 201), extra]))
    k = psi_exact(p, **params)
    assert np.all(np.diff(k) >= 0)


@given(
    mapping_params(max_k_bar=1500, max_alpha=0.95),
    st.lists(st.floats(0.5, 1.0), min_size=1, max_size=4),
)
def test_psi_equals_bruteforce(params, p):
    del params["delta"]
    p = np.array([*p, 1.0])
    np.testing.assert_array_equal(psi_exact(p, **params), psi_bruteforce(p, **params))


@given(
    # scipy's binom.pmf overflows inside Boost for subnormal-scale p (a reference limit)
    p=st.one_of(st.just(0.0), st.floats(1e-12, 1.0)),
    n=k_bars(5000),
    alpha=alphas(0.3),
    seed=st.integers(0, 2**32 - 1),
)
def test_two_sided_cp_coverage(p, n, alpha, seed):
    # Seeded Monte Carlo: the count of misses must not be improbably high for a miss
    # rate <= alpha (one-sided binomial test at 1e-6), and the exact coverage (sum of
    # the binomial pmf over the counts whose interval holds p) is >= 1 - alpha.
    draws = 20_000
    k_A = np.random.default_rng(seed).binomial(n, p, size=draws)
    low, up = cp_interval(k_A, n, alpha)
    misses = int(np.sum((p < low) | (p > up)))
    assert misses <= sst.binom.ppf(1 - 1e-6, draws, alpha)
    counts = np.arange(n + 1)
    low_all, up_all = cp_interval(counts, n, alpha)
    covered = (low_all <= p) & (p <= up_all)
    assert sst.binom.pmf(counts, n, p)[covered].sum() >= 1 - alpha - 1e-9
    # the one-sided bound behind the certificate
    assert sst.binom.pmf(counts, n, p)[cp_lower(counts, n, alpha) <= p].sum() >= 1 - alpha - 1e-9


@given(mapping_params(max_k_bar=20_000))
def test_table_matches_psi_on_its_grid(params):
    # The table against psi computed without isskit: bisection on scipy's radius
    # (tests/reference.py), on the grid i / steps.
    t = psi_table(**params)
    p, k = psi_grid_ref(**params)
    np.testing.assert_array_equal(t.p, p)
    np.testing.assert_array_equal(t.k, k)
