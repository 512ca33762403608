"""isskit.studies.oracle against brute force over every allocation of tiny instances.

The brute force here evaluates R with scipy.stats directly (beta.ppf and norm.ppf), not
with isskit.stats, and enumerates all grid allocations within the budget.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from reference import ref_best_allocation, ref_oracle_greedy
from scipy import stats as st

from isskit.studies.oracle import (
    Oracles,
    compare_to_oracles,
    default_k_grid,
    expected_acr,
    ias_expected_acr,
    oracle_allocation,
    oracle_blind,
)
from isskit.studies.synthetic import realistic_p_A

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


# ------------------------------------------------------------------ issue 11: the label-blind
# oracle, the comparison, IAS at a non-integer mean; the kernels against their loop twins.


@pytest.mark.parametrize("seed", range(8))
def test_blind_oracle_brackets_brute_force_on_the_radius_over_all_images(seed):
    rng = np.random.default_rng(100 + seed)
    m = 4
    p = rng.choice([0.52, 0.55, 0.6, 0.7, 0.8, 0.9, 0.97, 0.995, 1.0, 0.3], m)
    correct = rng.random(m) < 0.6
    grid = np.array([0, 100, 400, 1500, 5000, 20000])
    budget = float(rng.choice([300, 1000, 2500, 6000, 12000]))
    res = oracle_blind(p, budget, sigma=SIGMA, alpha=ALPHA, correct=correct, k_grid=grid)
    every = [[_radius(k, pi) for k in grid] for pi in p]  # gains of every image, blind
    brute = ref_best_allocation(every, grid, budget) / m
    assert res.mean_samples <= budget and np.all(np.isin(res.k, grid))
    claimed = np.mean([_radius(k, pi) for k, pi in zip(res.k, p, strict=True)])
    assert res.radius == pytest.approx(claimed, rel=1e-10, abs=1e-12)
    acr = np.mean([_radius(k, pi) if c else 0.0 for k, pi, c in zip(res.k, p, correct,
                                                                       strict=True)])
    assert res.acr == pytest.approx(acr, rel=1e-10, abs=1e-12)
    assert res.radius <= brute + 1e-12 <= res.radius_bound + 2e-12
    aware = oracle_allocation(p, budget, sigma=SIGMA, alpha=ALPHA, correct=correct, k_grid=grid)
    assert res.acr <= aware.upper_bound + 1e-12  # the aware relaxation bounds every allocation


def test_blind_equals_aware_when_every_prediction_is_correct():
    rng = np.random.default_rng(7)
    p = realistic_p_A(300, rng, "cohen2019__imagenet_resnet50_noise_0.50_test_sigma_0.50")
    o = Oracles(p, sigma=SIGMA, alpha=ALPHA, correct=True)
    for budget in (2_000, 25_000, 150_000):
        blind, aware = o.blind(budget), o.aware(budget)
        np.testing.assert_array_equal(blind.k, aware.k)
        assert blind.acr == aware.acr == blind.radius
        assert blind.radius_bound == aware.upper_bound


@pytest.mark.parametrize("source", ["cohen2019__imagenet_resnet50_noise_1.00_test_sigma_1.00",
                                    "cohen2019__cifar10_resnet110_noise_0.25_test_sigma_0.25"])
def test_blind_below_aware_and_both_above_ias_at_the_same_mean(source):
    rng = np.random.default_rng(11)
    p = realistic_p_A(400, rng, source)
    correct = rng.random(400) < 0.75
    o = Oracles(p, sigma=SIGMA, alpha=ALPHA, correct=correct)
    for budget in (1_000, 10_000, 20_000.5, 100_000):
        blind, aware = o.blind(budget), o.aware(budget)
        ias = o.ias_acr(budget)
        # the greedy itself, not only the comparison's max(): on realistic instances
        assert ias <= blind.acr <= aware.acr
        assert aware.acr <= aware.upper_bound and blind.radius <= blind.radius_bound
        assert blind.radius >= blind.acr
        c = o.compare(budget, policy_acr=0.5 * (ias + blind.acr))
        assert c.ias_acr_same_samples == ias
        assert c.oracle_blind_acr == blind.acr and c.oracle_aware_acr == aware.acr
        assert c.share_blind == pytest.approx(0.5, rel=1e-9)
        assert c.share_aware == pytest.approx(0.5 * (blind.acr - ias) / (aware.acr - ias),
                                              rel=1e-9)


def test_oracles_aware_is_oracle_allocation_number_for_number():
    rng = np.random.default_rng(2)
    p = np.clip(rng.beta(5, 1, 150), 0, 1)
    correct = rng.random(150) < 0.8
    grid = default_k_grid(10**6)
    o = Oracles(p, sigma=0.25, alpha=ALPHA, correct=correct, k_grid=grid)
    for budget in (500, 8_000, 90_000):
        a = o.aware(budget)
        b = oracle_allocation(p, budget, sigma=0.25, alpha=ALPHA, correct=correct, k_grid=grid)
        np.testing.assert_array_equal(a.k, b.k)
        assert (a.acr, a.upper_bound, a.mean_samples) == (b.acr, b.upper_bound, b.mean_samples)


def test_ias_expected_acr_is_the_randomised_ias():
    p = np.array([0.6, 0.95, 0.999, 0.4])
    correct = np.array([True, True, False, True])

    def ias(n):  # scipy directly: mean of 1[correct] max(R(n, p), 0)
        return np.mean([_radius(n, pi) if c else 0.0 for pi, c in zip(p, correct, strict=True)])

    assert ias_expected_acr(2000, p, correct, SIGMA, ALPHA) == pytest.approx(ias(2000), rel=1e-10)
    got = ias_expected_acr(2000.3, p, correct, SIGMA, ALPHA)
    assert got == pytest.approx(0.7 * ias(2000) + 0.3 * ias(2001), rel=1e-10)
    assert ias_expected_acr(0.5, p, correct, SIGMA, ALPHA) == 0.0  # half of IAS(1): no radius
    with pytest.raises(ValueError, match=r"mean_samples \(-1.0\)"):
        ias_expected_acr(-1, p, correct, SIGMA, ALPHA)


def test_compare_to_oracles_keys_and_nan_share():
    c = compare_to_oracles(5_000, 0.3, [0.999, 0.9, 0.7], [True, True, False], sigma=SIGMA,
                           alpha=ALPHA)
    assert set(c.to_dict()) == {"mean_samples", "policy_acr", "ias_acr_same_samples",
                                "oracle_blind_acr", "oracle_aware_acr", "share_blind",
                                "share_aware"}
    # no image can gain: both oracles equal IAS (0), the shares are undefined
    none = compare_to_oracles(5_000, 0.0, [0.3, 0.2], [True, True], sigma=SIGMA, alpha=ALPHA)
    assert none.oracle_aware_acr == none.ias_acr_same_samples == 0.0
    assert np.isnan(none.share_blind) and np.isnan(none.share_aware)
    with pytest.raises(ValueError, match=r"policy_acr \(nan\) must be a finite number"):
        compare_to_oracles(5_000, float("nan"), [0.9], [True], sigma=SIGMA, alpha=ALPHA)
    with pytest.raises(ValueError, match=r"budget \(-5.0\)"):
        oracle_blind([0.9], -5, sigma=SIGMA, alpha=ALPHA)


@pytest.mark.kernels
@pytest.mark.parametrize("seed", range(4))
def test_hull_and_greedy_kernels_match_their_loop_twin(seed):
    rng = np.random.default_rng(seed)
    m = 40
    p = np.concatenate([rng.uniform(0.45, 0.6, 8), np.clip(rng.beta(6, 1, m - 8), 0, 1)])
    correct = rng.random(m) < 0.8
    grid = default_k_grid(200_000, points=60)
    gains = [[_radius(k, pi) if c else 0.0 for k in grid] for pi, c in zip(p, correct,
                                                                            strict=True)]
    for budget in (300.0, 4_000.0, 40_000.0):
        k, value, bound = ref_oracle_greedy(grid, gains, budget)
        res = oracle_allocation(p, budget, sigma=SIGMA, alpha=ALPHA, correct=correct, k_grid=grid)
        np.testing.assert_array_equal(res.k, k)
        assert res.upper_bound == pytest.approx(max(bound, value) / m, rel=1e-9)
