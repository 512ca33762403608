"""isskit.studies.oracle against brute force over every allocation of tiny instances.

The brute force here evaluates R with scipy.stats directly (beta.ppf and norm.ppf), not
with isskit.stats, and enumerates all grid allocations within the budget.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats as st

from isskit.studies.oracle import default_k_grid, expected_acr, oracle_allocation

SIGMA, ALPHA = 0.5, 0.001


def _radius(k, p):
    if k == 0:
        return 0.0
    q = st.beta.ppf(ALPHA, p * k, k - p * k + 1)
    return max(SIGMA * st.norm.ppf(q), 0.0) if q > 0 else 0.0


def _brute(p, correct, grid, budget):
    best = 0.0
    table = [[_radius(k, pi) if c else 0.0 for k in grid] for pi, c in zip(p, correct, strict=True)]
    for combo in itertools.product(range(len(grid)), repeat=len(p)):
        if sum(grid[j] for j in combo) <= budget * len(p):
            best = max(best, sum(table[i][j] for i, j in enumerate(combo)))
    return best / len(p)


@pytest.mark.parametrize("seed", range(12))
def test_oracle_brackets_brute_force(seed):
    rng = np.random.default_rng(seed)
    m = 4
    p = rng.choice([0.52, 0.55, 0.6, 0.7, 0.8, 0.9, 0.97, 0.995, 1.0, 0.3], m)
    correct = rng.random(m) < 0.85
    grid = np.array([0, 100, 400, 1500, 5000, 20000])
    budget = float(rng.choice([300, 1000, 2500, 6000, 12000]))
    res = oracle_allocation(p, budget, sigma=SIGMA, alpha=ALPHA, correct=correct, k_grid=grid)
    brute = _brute(p, correct, grid, budget)
    assert res.mean_samples <= budget
    assert np.all(np.isin(res.k, grid)) and np.all(res.k[~correct] == 0)
    # The allocation's value is what it claims, evaluated independently with scipy.
    claimed = np.mean(
        [_radius(k, pi) if c else 0.0 for k, pi, c in zip(res.k, p, correct, strict=True)]
    )
    assert res.acr == pytest.approx(claimed, rel=1e-10, abs=1e-12)
    assert res.acr <= brute + 1e-12
    assert brute <= res.upper_bound + 1e-12


def test_oracle_is_exact_on_concave_instances():
    # p_A near 1: every gain curve is concave on this grid (checked below), so the greedy is
    # exact whenever the budget falls on a breakpoint of the greedy order, and otherwise off by
    # at most the one segment the budget cuts. On this instance it matches brute force at
    # every budget of the sweep (found by running it; the guarantee is only the bracket).
    p = np.array([0.9, 0.97, 0.999, 1.0])
    grid = np.array([0, 200, 1000, 4000, 16000])
    correct = np.ones(4, bool)
    for pi in p:
        g = np.array([_radius(k, pi) for k in grid])
        slopes = np.diff(g) / np.diff(grid)
        assert np.all(np.diff(slopes) < 0), "test premise: concave gain curve"
    exact = 0
    for budget in [200, 400, 1000, 2000, 3000, 4500, 8000, 16000]:
        res = oracle_allocation(p, budget, sigma=SIGMA, alpha=ALPHA, correct=correct, k_grid=grid)
        brute = _brute(p, correct, grid, budget)
        assert res.acr <= brute + 1e-12 <= res.upper_bound + 2e-12
        if res.acr == pytest.approx(brute, rel=1e-12):
            exact += 1
        if res.upper_bound == pytest.approx(res.acr, rel=1e-12):
            assert res.acr == pytest.approx(brute, rel=1e-12)
    assert exact == 8


def test_oracle_gives_nothing_to_hopeless_images_and_spends_budget_on_the_rest():
    p = np.array([0.3, 0.5, 0.9, 0.99])
    correct = np.array([True, True, False, True])
    res = oracle_allocation(p, 50_000, sigma=SIGMA, alpha=ALPHA, correct=correct)
    assert res.k[0] == 0 and res.k[1] == 0 and res.k[2] == 0
    assert res.k[3] > 0 and res.mean_samples <= 50_000
    # All budget into image 3 (the only one that can gain): its k is the largest grid value
    # that fits 4 * 50,000, up to where its radius stops growing on the grid.
    grid = res.k_grid
    assert res.k[3] == grid[grid <= 200_000].max()


def test_oracle_beats_uniform_allocation_at_equal_budget():
    rng = np.random.default_rng(3)
    p = np.clip(rng.beta(5, 1, 200), 0, 1)
    correct = rng.random(200) < 0.8
    for budget in (1_000, 10_000, 100_000):
        res = oracle_allocation(p, budget, sigma=0.25, alpha=0.001, correct=correct)
        uniform = expected_acr(budget, p, correct, 0.25, 0.001)
        assert res.acr >= uniform - 1e-12
        assert res.acr <= res.upper_bound
        # The relaxation gap is at most one image's radius step, i.e. tiny on 200 images.
        assert res.upper_bound - res.acr < 0.01 * res.acr


def test_expected_acr_matches_scipy():
    p = np.array([0.6, 0.95, 0.4, 1.0])
    k = np.array([1000, 50_000, 1000, 0])
    correct = np.array([True, True, True, True])
    ref = np.mean([_radius(ki, pi) for ki, pi in zip(k, p, strict=True)])
    assert expected_acr(k, p, correct, SIGMA, ALPHA) == pytest.approx(ref, rel=1e-10)


def test_bad_input():
    with pytest.raises(ValueError, match=r"budget \(-1.0\)"):
        oracle_allocation([0.9], -1, sigma=SIGMA, alpha=ALPHA)
    with pytest.raises(ValueError, match=r"p_A \(1.5\)"):
        oracle_allocation([1.5], 10, sigma=SIGMA, alpha=ALPHA)
    with pytest.raises(ValueError, match=r"sigma \(0.0\)"):
        oracle_allocation([0.9], 10, sigma=0.0, alpha=ALPHA)
    with pytest.raises(ValueError, match="k_grid"):
        oracle_allocation([0.9], 10, sigma=SIGMA, alpha=ALPHA, k_grid=[-5, 10])
    with pytest.raises(ValueError, match="k_min"):
        default_k_grid(5, k_min=10)
