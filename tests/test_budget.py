"""isskit.budget against its slow twin (tests/reference.py: scipy quad, brute force over k).

Golden numbers: none; every expectation is recomputed here by the twin or by scipy.
"""

from __future__ import annotations

import doctest
import itertools
import math

import numpy as np
import pytest
from reference import (
    ref_budget_certify,
    ref_budget_gain,
    ref_budget_k,
    ref_npmle,
    ref_radius,
    ref_two_stage,
)
from scipy import stats as st

import isskit.budget as budget_mod
import isskit.policies._budget_gain as budget_gain_mod
import isskit.policies.budget as budget_policy_mod
import isskit.studies.budget_priors as budget_priors_mod
from isskit._bisect import bisect_float
from isskit.budget import (
    Budget,
    BudgetVariant,
    Prior,
    binned_prior,
    budget_table,
    empirical_prior,
    gain_table,
    k_grid,
    pilot_predictive,
    plan_budget,
    replay_budget,
    solve_price,
    two_stage_rule,
)
from isskit.replay import _kernels, index_blocks
from isskit.studies.synthetic import realistic_p_A, synthetic_labels

SIGMA, ALPHA = 0.5, 0.001


# ------------------------------------------------------------------ the policy value


def test_budget_names_params_validity():
    p = Budget(B=26000, k0=300)
    assert p.name == "Budget-B=26000-k0=300"
    assert (p.kind, p.validity, p.selection_size, p.budget) == ("budget", "fixed-n", 300, 26000)
    assert p.params() == {"kind": "budget", "k0": 300, "price": None, "B": 26000.0,
                          "alpha": 0.001, "k_max": 10**6}
    q = BudgetVariant(price=2.5e-6, k0=100, prior="EB", alpha=0.01, k_max=5000)
    assert q.name == "Budget-price=0.0000025-k0=100-alpha=0.01-k_max=5000-prior=eb"
    assert q.max_samples == 5100 and q.policy.budget == 100
    assert q.params() == {**q.policy.params(), "prior": "eb", "k1": 0}
    two = BudgetVariant(B=20000, k0=100, k1=1000, prior="eb")
    assert two.name == "Budget-B=20000-k0=100-prior=eb-k1=1000" and two.validity == "fixed-n"
    assert two.max_samples == 100 + 1000 + 10**6
    assert Budget(price=0) == Budget(price=0.0)  # a value: equal parameters, equal policies


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"price": -1e-6}, r"price \(-1e-06\) must be a finite number >= 0"),
        ({"price": math.inf}, r"price \(inf\) must be a finite number >= 0"),
        ({"B": 300, "k0": 300}, r"B \(300\) must be larger than k0 \(300\)"),
        ({"B": 99.5, "k0": 100}, r"B \(99.5\) must be larger than k0 \(100\)"),
        ({"B": 1000, "k0": 0}, r"k0 \(0\) must be an integer >= 1"),
        ({"B": 1000, "k0": -5}, r"k0 \(-5\) must be an integer >= 1"),
        ({}, r"give exactly one of price \(None\) and B \(None\)"),
        ({"B": 1000, "price": 1e-6}, r"give exactly one of price \(1e-06\) and B \(1000\)"),
        ({"B": 1000, "prior": "flat"}, r"prior \('flat'\) must be one of jeffreys, eb"),
        ({"B": 1000, "alpha": 0.5}, r"alpha \(0.5\) must be < 0.5"),
        ({"B": 1000, "alpha": 0.0}, r"alpha \(0.0\) must be in \(0, 1\)"),
        ({"B": 1000, "k_max": 0}, r"k_max \(0\) must be an integer >= 1"),
        ({"B": 1000, "k1": -1}, r"k1 \(-1\) must be an integer >= 0"),
    ],
)
def test_budget_bad_input_names_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BudgetVariant(**kwargs)
    if not {"prior", "k1"} & set(kwargs):  # the policy says the same, in the same words
        with pytest.raises(ValueError, match=match):
            Budget(**kwargs)


# ------------------------------------------------------------------ the posterior gains


@pytest.mark.parametrize("k0", [20, 300])
def test_gain_table_matches_quad(k0):
    # The fast product integration (nodes, kink cell, Richardson) against scipy quad in the
    # quantile form, at points spread over pilot counts and sizes, sharp posteriors included.
    table = gain_table(k0, SIGMA, ALPHA)
    assert table.gain.shape == (k0 + 1, table.k.size) and table.k[0] == 0
    assert np.all(table.gain[:, 0] == 0)
    rng = np.random.default_rng(k0)
    xs = np.concatenate([[k0, k0 - 1, k0 // 2 + 2], rng.integers(k0 // 2, k0 + 1, 9)])
    js = rng.integers(1, table.k.size, xs.size)
    worst = 0.0
    for x, j in zip(xs, js, strict=True):
        ref = ref_budget_gain(int(x), k0, int(table.k[j]), SIGMA, ALPHA)
        worst = max(worst, abs(table.gain[x, j] - ref))
    assert worst < 1e-7 * SIGMA


def test_gain_table_scales_with_sigma_and_is_cached():
    a = gain_table(300, 0.25, ALPHA)
    b = gain_table(300, 1.0, ALPHA)
    np.testing.assert_allclose(4 * a.gain, b.gain, rtol=1e-13, atol=1e-300)  # subnormals
    assert gain_table(300, 0.25, ALPHA) is a  # the same cached value
    assert budget_table(300, 1e-5, 0.25, ALPHA) is budget_table(300.0, 1e-5, 0.25, ALPHA)
    with pytest.raises(ValueError):
        a.gain[0, 0] = 1.0  # read-only: a cached table is shared


@pytest.mark.parametrize(
    ("k0", "x", "price"),
    [(20, 20, 2e-4), (20, 17, 5e-5), (300, 300, 1e-4), (300, 290, 3e-4), (300, 200, 1e-4)],
)
def test_rule_matches_brute_force_twin(k0, x, price):
    # Small k_max so the twin's brute force over every grid size stays quick; the rule and
    # the twin search the same grid (an input to the twin, not code it calls).
    k_max = 3000
    table = budget_table(k0, price, SIGMA, ALPHA, k_max=k_max)
    grid = k_grid(k_max)
    k_ref, best, values = ref_budget_k(x, k0, price, SIGMA, ALPHA, grid)
    k = int(table.k[x])
    assert k == k_ref or values[k] >= best - 2e-8 * SIGMA  # a near-tie decided by 1e-8
    assert table.value[x] == pytest.approx(best, abs=2e-8 * SIGMA)
    assert np.all(table.value >= 0) and table.k[0] == 0


def test_grid_argmax_loses_little_against_every_integer():
    # The best integer k near the grid's choice (between its grid neighbours, where V's
    # maximum lies) gains at most 1e-5 sigma of objective over the grid's choice.
    k0, price = 300, 2e-4
    table = budget_table(k0, price, SIGMA, ALPHA, k_max=3000)
    grid = k_grid(3000)
    for x in (300, 295):
        k = int(table.k[x])
        j = int(np.searchsorted(grid, k))
        lo, hi = int(grid[j - 1]), int(grid[min(j + 1, grid.size - 1)])
        best = max(ref_budget_gain(x, k0, kk, SIGMA, ALPHA) - price * kk
                   for kk in range(lo, hi + 1, max(1, (hi - lo) // 40)))
        assert 0 <= best - table.value[x] < 1e-5 * SIGMA


def test_price_zero_buys_everything_and_large_price_nothing():
    t0 = budget_table(100, 0.0, SIGMA, ALPHA, k_max=5000)
    g = gain_table(100, SIGMA, ALPHA, k_max=5000)
    can = g.gain[:, -1] > 0
    assert np.all(t0.k[can] == 5000) and np.all(t0.k[~can] == 0)
    huge = float(np.max(g.gain[:, 1:] / g.k[1:]))
    assert np.all(budget_table(100, huge, SIGMA, ALPHA, k_max=5000).k == 0)
    # and k(x) never grows with the price (spot check on a ladder of prices)
    prices = np.geomspace(1e-7, 1e-2, 12)
    ks = [budget_table(100, pr, SIGMA, ALPHA, k_max=5000).k for pr in prices]
    assert all(np.all(a >= b) for a, b in itertools.pairwise(ks))


# ------------------------------------------------------------------ empirical Bayes


def test_empirical_prior_matches_em_twin():
    rng = np.random.default_rng(1)
    x = rng.binomial(30, rng.choice([0.6, 0.9, 1.0], 40))
    prior = empirical_prior(x, 30, max_iter=25, tol=-np.inf)
    assert prior.iterations == 25
    ref = ref_npmle(x, 30, prior.p, 25)
    np.testing.assert_allclose(prior.weight, ref, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("fitted_support", [True, False])
def test_point_mass_prior_gives_the_radius_at_that_p(fitted_support):
    # Under a prior with all its mass on p0, every pilot's posterior is p0 itself, so the
    # gain is max(R(k, p0), 0) whatever x: checked against scipy's radius directly. On
    # empirical_prior's support (tabulated radii) and on any other support.
    support = budget_priors_mod._prior_support() if fitted_support else np.array([0.3, 0.9973, 1.0])
    j = int(np.argmin(np.abs(support - 0.9973)))
    w = np.zeros(support.size)
    w[j] = 1.0
    prior = Prior(p=support, weight=w, k0=50)
    g = gain_table(50, SIGMA, ALPHA, prior=prior)
    for jk in (5, 100, 300, -1):
        k = int(g.k[jk])
        ref = max(ref_radius(k, support[j], SIGMA, ALPHA), 0.0)
        np.testing.assert_allclose(g.gain[:, jk], ref, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="fitted at k0 = 50, not k0 = 60"):
        gain_table(60, SIGMA, ALPHA, prior=prior)
    with pytest.raises(ValueError, match=r"prior weights must be >= 0 and sum to 1"):
        Prior(p=[0.5, 0.9], weight=[0.5, 0.6], k0=50)


def test_binned_prior_moves_each_value_to_the_nearest_support_point():
    support = budget_priors_mod._prior_support()
    p = np.array([1.0, 0.99999, 0.5, 0.2013, 0.0, 1.0])
    prior = binned_prior(p, 100)
    assert prior.weight.sum() == pytest.approx(1.0) and prior.k0 == 100
    for v in p:
        j = int(np.argmin(np.abs(support - v)))
        assert prior.weight[j] >= 1 / 6 - 1e-12
    assert prior.weight[support == 1.0][0] == pytest.approx(2 / 6)
    with pytest.raises(ValueError, match=r"p must hold values in \[0, 1\]"):
        binned_prior([1.2], 100)


# ------------------------------------------------------------------ a mean budget


def _pilots(k0, m=500, seed=0):
    rng = np.random.default_rng(seed)
    source = "salman2019__imagenet_replication-resnet50_noise_0.50_test_sigma_0.50"
    p = realistic_p_A(m, rng, source)
    return rng.binomial(k0, p)


@pytest.mark.parametrize("B", [1_500, 20_000, 80_000])
def test_solve_price_meets_B_at_one_price_for_every_image(B):
    k0 = 300
    x = _pilots(k0)
    g = gain_table(k0, SIGMA, ALPHA)
    sol = solve_price(g, x, B)
    # one price for all, so each k depends on its own pilot alone (a per-image rule that an
    # online run given this price reproduces): the rule's k at the price, image by image
    at = g.choose(sol.price, x)
    below = g.choose(float(np.nextafter(sol.price, 0.0)), x)
    np.testing.assert_array_equal(sol.k, at)
    assert sol.mean_samples == k0 + at.mean() <= B < k0 + below.mean()
    # the shortfall is at most the step of the images at the breakpoint (the counts whose k
    # changes between the two adjacent doubles), spread over all images
    assert B - sol.mean_samples <= (below - at).sum() / x.size
    # the price is where the mean crosses B: a bisection twin by hand on a few prices
    for f in (0.5, 0.9):
        assert g.choose(sol.price * f, x).mean() + k0 > B


def test_solve_price_refuses_what_the_images_cannot_spend():
    x = _pilots(100)
    g = gain_table(100, SIGMA, ALPHA, k_max=5000)
    most = 100 + g.choose(0.0, x).mean()
    with pytest.raises(ValueError, match=r"B \(6000\) is larger than these images can spend: "
                                         rf"at most {most:.6g} mean samples"):
        solve_price(g, x, 6000)
    with pytest.raises(ValueError, match=r"B \(100\) must be larger than k0 \(100\)"):
        solve_price(g, x, 100)
    with pytest.raises(ValueError,
                       match=r"pilot count \(101\) of image 3 must be in \[0, k0 = 100\]"):
        solve_price(g, np.array([5, 5, 5, 101]), 500)


def test_bisect_float_ends_on_adjacent_doubles():
    # sqrt(2), sqrt(0.7) and the first double >= 1e-310 (a subnormal): adjacent doubles
    targets = np.array([2.0, 0.7])
    lo, hi = bisect_float([0.0, 0.5], [10.0, 1.0], lambda v, r: v * v >= targets[r])
    assert np.all(np.nextafter(lo, np.inf) == hi)
    assert np.all(lo * lo < targets) and np.all(hi * hi >= targets)
    lo, hi = bisect_float([0.0], [1e-300], lambda v, r: v >= 1e-310)
    assert lo[0] < 1e-310 <= hi[0] and np.nextafter(lo[0], 1.0) == hi[0]
    with pytest.raises(ValueError, match="brackets"):
        bisect_float([1.0], [0.5], lambda v, r: v > 0)


# ------------------------------------------------------------------ replay


def _streams(m=60, N=20_000, seed=3):
    rng = np.random.default_rng(seed)
    p = realistic_p_A(m, rng, "cohen2019__imagenet_resnet50_noise_1.00_test_sigma_1.00")
    predicted = rng.integers(0, 10, m)
    labels = synthetic_labels(p, N, predicted=predicted, num_classes=10, rng=rng)
    return labels


def _counter(labels, chosen):
    hits = labels == chosen[:, None]
    cum = np.concatenate([np.zeros((labels.shape[0], 1), np.int64), np.cumsum(hits, axis=1)], 1)
    rows = np.arange(labels.shape[0])
    calls = []

    def count(start, stop):
        calls.append((np.array(start), np.array(stop)))
        return cum[rows, stop] - cum[rows, np.minimum(start, stop)]

    return cum, count, calls


@pytest.mark.parametrize("policy", [Budget(B=6_000, k0=100), Budget(price=5e-5, k0=300),
                                    BudgetVariant(B=6_000, k0=100, prior="eb")])
def test_replay_budget_matches_twin_certificates(policy):
    labels = _streams()
    m, N = labels.shape
    pilot = [ref_budget_certify(list(row), policy.k0, 0, policy.alpha, SIGMA) for row in labels]
    chosen = np.array([int(np.bincount(row[: policy.k0], minlength=10).argmax()) for row in labels])
    x = np.array([r["pilot"] for r in pilot])
    _, count, calls = _counter(labels, chosen)
    res = replay_budget(policy, x, count, sigma=SIGMA, chosen=chosen, samples_per_image=N)
    # estimation strictly after the pilot: the samples are fresh by construction
    assert len(calls) == 1 and np.all(calls[0][0] == policy.k0)
    assert np.all(calls[0][1] - calls[0][0] == res.k)
    if policy.B is not None:
        assert 0.9 * policy.B < res.mean_samples <= policy.B
    else:
        np.testing.assert_array_equal(res.k, budget_table(policy.k0, policy.price, SIGMA,
                                                          policy.alpha).k[x])
    for i in range(m):
        ref = ref_budget_certify(list(labels[i]), policy.k0, int(res.k[i]), policy.alpha, SIGMA)
        assert res.prediction[i] == ref["prediction"] and res.samples[i] == ref["samples"]
        assert res.radius[i] == pytest.approx(ref["radius"], rel=1e-12, abs=1e-15)
        if math.isnan(ref["p_lower"]):
            assert math.isnan(res.p_lower[i])
        else:
            assert res.p_lower[i] == pytest.approx(ref["p_lower"], rel=1e-12, abs=1e-15)
    assert np.any(res.prediction >= 0) and np.any(res.k == 0)


@pytest.mark.kernels
def test_replay_budget_through_the_stream_index():
    # The integration path: pilot counts and classes from a StreamIndex built for k0, the
    # counts from count_ranges over the bit vectors of the pilot's class.
    labels = _streams(m=60, N=12_000, seed=5)
    policy = Budget(B=4_000, k0=300)
    index = index_blocks([labels], samples_per_image=labels.shape[1], num_classes=10,
                         selection_sizes=[policy.k0])
    j = index.column(policy.k0)
    slot = np.ascontiguousarray(index.slot[:, j])

    def count(start, stop):
        out = np.empty((1, start.size), np.int64)
        _kernels.count_ranges(slot[None], start[None], stop[None], index.bits, index.cum, out)
        return out[0]

    res = replay_budget(policy, index.mode_counts[:, j], count, sigma=SIGMA,
                        chosen=index.modes[:, j], samples_per_image=index.samples_per_image)
    chosen = np.array([int(np.bincount(r[:300], minlength=10).argmax()) for r in labels])
    _, raw_count, _ = _counter(labels, chosen)
    raw = replay_budget(policy, index.mode_counts[:, j], raw_count, sigma=SIGMA, chosen=chosen,
                        samples_per_image=labels.shape[1])
    for field in ("prediction", "radius", "samples", "k"):
        np.testing.assert_array_equal(getattr(res, field), getattr(raw, field))


def test_replay_budget_errors_name_the_image_and_numbers():
    labels = _streams(m=20, N=2_000)
    chosen = np.zeros(20, np.int64)
    x = np.full(20, 100)
    _, count, _ = _counter(labels, chosen)
    with pytest.raises(ValueError, match=r"needs \d+ samples for image 100 \(and \d+ more "
                                         r"images\), but each stream holds 2000 \(N\)"):
        replay_budget(Budget(price=1e-7, k0=100), x, count, sigma=SIGMA, chosen=chosen,
                      samples_per_image=2000, image_ids=np.arange(100, 120))
    with pytest.raises(ValueError, match=r"B \(2500\) is larger than these images can spend.*"
                                         r"streams of N = 2000 samples"):
        replay_budget(Budget(B=2500, k0=100), x, count, sigma=SIGMA, chosen=chosen,
                      samples_per_image=2000)
    with pytest.raises(ValueError, match="needs its pilot of 3000 samples for image 0"):
        replay_budget(Budget(B=4000, k0=3000), np.zeros(20, int), count, sigma=SIGMA,
                      chosen=chosen, samples_per_image=2000)
    with pytest.raises(ValueError, match="count must return 20 integer counts"):
        replay_budget(Budget(price=1e-4, k0=100), x, lambda a, b: np.zeros(3, int),
                      sigma=SIGMA, chosen=chosen)
    with pytest.raises(ValueError, match="chosen must hold 20 integer classes"):
        replay_budget(Budget(price=1e-4, k0=100), x, count, sigma=SIGMA, chosen=chosen[:5])


# ------------------------------------------------------------------ a second pilot


def test_pilot_predictive_matches_scipy():
    got = pilot_predictive(30, 12)
    for x in (0, 7, 29, 30):
        np.testing.assert_allclose(got[x], st.betabinom.pmf(np.arange(13), 12, x + 0.5,
                                                            30 - x + 0.5), rtol=1e-10)
    prior = Prior(p=[0.5, 0.9, 1.0], weight=[0.2, 0.5, 0.3], k0=30)
    got = pilot_predictive(30, 12, prior)
    for x in (0, 20, 30):
        post = np.array([0.2, 0.5, 0.3]) * st.binom.pmf(x, 30, [0.5, 0.9, 1.0])
        post /= post.sum()
        ref = sum(q * st.binom.pmf(np.arange(13), 12, p)
                  for q, p in zip(post, [0.5, 0.9, 1.0], strict=True))
        np.testing.assert_allclose(got[x], ref, rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("price", [2e-4, 1e-3])
def test_two_stage_rule_matches_twin(price):
    support, weight = [0.55, 0.8, 0.97, 0.999, 1.0], [0.2, 0.2, 0.2, 0.2, 0.2]
    k0, k1, k_max = 10, 20, 400
    first = gain_table(k0, SIGMA, ALPHA, k_max=k_max,
                       prior=Prior(p=support, weight=weight, k0=k0))
    both = gain_table(k0 + k1, SIGMA, ALPHA, k_max=k_max,
                      prior=Prior(p=support, weight=weight, k0=k0 + k1))
    pred = pilot_predictive(k0, k1, Prior(p=support, weight=weight, k0=k0))
    rule = two_stage_rule(first, both, pred, price)
    second, k_one, k_two = ref_two_stage(k0, k1, price, support, weight, SIGMA, ALPHA,
                                         k_grid(k_max))
    np.testing.assert_array_equal(rule.k_one, k_one)
    np.testing.assert_array_equal(rule.k_two, k_two)
    np.testing.assert_array_equal(rule.second, second)
    assert rule.second.any() or price > 5e-4  # the test exercises both branches
    assert np.all(rule.expected_samples >= k0)


def test_two_stage_replay_counts_after_both_pilots_and_meets_B():
    labels = _streams(m=60, N=20_000, seed=8)
    policy = BudgetVariant(B=5_000, k0=100, k1=400, prior="eb")
    chosen = np.array([int(np.bincount(r[:100], minlength=10).argmax()) for r in labels])
    x = np.array([ref_budget_certify(list(r), 100, 0, ALPHA, SIGMA)["pilot"] for r in labels])
    cum, count, calls = _counter(labels, chosen)
    plan = plan_budget(policy, x, sigma=SIGMA, samples_per_image=20_000, count=count)
    assert plan.second.any() and not plan.second.all()
    np.testing.assert_array_equal(calls[0][0], 100)  # the second pilots, right after the first
    np.testing.assert_array_equal(calls[0][1], np.where(plan.second, 500, 100))
    np.testing.assert_array_equal(plan.start, np.where(plan.second, 500, 100))
    # the second price shares the rest of B, never above it
    assert 4_500 < plan.mean_samples <= 5_000
    assert np.isfinite(plan.price_second) and plan.price_second > 0
    # and every image that drew the second pilot got the rule's k at that price, by its
    # pooled count
    both = gain_table(500, SIGMA, ALPHA, prior=Prior(p=plan.prior.p, weight=plan.prior.weight,
                                                     k0=500))
    z = (cum[:, 500] - cum[:, 100] + x)[plan.second]
    at = both.choose(plan.price_second, z)
    got = plan.k[plan.second]
    np.testing.assert_array_equal(got, at)
    _, count, calls = _counter(labels, chosen)
    res = replay_budget(policy, x, count, sigma=SIGMA, chosen=chosen, samples_per_image=20_000,
                        prior=plan.prior)
    np.testing.assert_array_equal(res.k, plan.k)
    np.testing.assert_array_equal(calls[1][0], plan.start)  # estimation after both pilots
    for i in range(labels.shape[0]):
        start = int(plan.start[i])
        ref = ref_budget_certify(list(labels[i]), 100, 0, ALPHA, SIGMA)
        if plan.k[i] > 0:  # a shifted stream: the count starts after the pilots drawn
            shifted = list(labels[i][:100]) + list(labels[i][start:])
            ref = ref_budget_certify(shifted, 100, int(plan.k[i]), ALPHA, SIGMA)
        assert res.prediction[i] == ref["prediction"]
        assert res.radius[i] == pytest.approx(ref["radius"], rel=1e-12, abs=1e-15)
        assert res.samples[i] == start + plan.k[i]
    with pytest.raises(ValueError, match="draws a second pilot: give count"):
        plan_budget(policy, x, sigma=SIGMA)


def test_docstring_examples_run():
    for mod in (budget_mod, budget_policy_mod, budget_gain_mod, budget_priors_mod):
        failed, tried = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert tried > 0 and failed == 0


# ------------------------------------------------------------------ the policy in replay

#: The grid of k the rule maximises over, written out from its definition (docs/budget.md):
#: 0, then round(geomspace(1, 10^6, ceil(ln 10^6 / ln 1.02) + 1)), deduplicated.
_GRID = np.unique(np.concatenate([[0], np.round(np.geomspace(
    1, 10**6, math.ceil(math.log(10**6) / math.log(1.02)) + 1)).astype(np.int64)]))


@pytest.fixture(scope="module")
def budget_store(tmp_path_factory):
    from isskit.studies.synthetic import write_synthetic_store

    path = tmp_path_factory.mktemp("budget") / "streams.h5"
    rng = np.random.default_rng(11)
    m = 40
    p = realistic_p_A(m, rng, "cohen2019__imagenet_resnet50_noise_0.50_test_sigma_0.50")
    predicted = rng.integers(0, 10, m)
    write_synthetic_store(
        path,
        p,
        predicted=predicted,
        true_label=predicted,
        samples_per_image=2_020,
        num_classes=10,
        sigma=SIGMA,
        seed=4,
    )
    import h5py

    with h5py.File(path, "r") as f:
        labels = np.asarray(f["labels"][:], dtype=np.int64)
    return path, labels


def _twin_gains(xs, k0, k_max):
    """The twin's posterior gains on the grid up to k_max, per distinct pilot count."""
    grid = _GRID[_GRID <= k_max]
    out = {}
    for x in sorted(set(int(v) for v in xs)):
        _, _, values = ref_budget_k(x, k0, 0.0, SIGMA, ALPHA, grid)  # at price 0: the gains
        out[x] = np.array([values[int(k)] for k in grid])
    return grid, out


def _twin_k(grid, gains, x, price):
    v = gains[x] - price * grid
    v[0] = 0.0
    return int(grid[int(np.argmax(v))])  # first maximum: ties to the smallest k


def test_budget_policy_replay_matches_twin_image_by_image(budget_store):
    # replay (planner, numba counts over [k0, k0 + k), certificate) against the slow twin
    # on the raw streams: the rule's k by quad and a loop over the grid, the count by hand
    from isskit.replay import replay

    path, labels = budget_store
    k0, k_max, price = 20, 2_000, 1e-4
    ds = replay(path, [f"budget price={price} k0={k0} k_max={k_max}"])
    xs = [ref_budget_certify(list(r), k0, 0, ALPHA, SIGMA)["pilot"] for r in labels]
    grid, gains = _twin_gains(xs, k0, k_max)
    ks = [_twin_k(grid, gains, x, price) for x in xs]
    assert len(set(ks)) >= 3 and 0 in ks  # abstentions and several sizes
    for i, row in enumerate(labels):
        ref = ref_budget_certify(list(row), k0, ks[i], ALPHA, SIGMA)
        assert int(ds.samples[0, i]) == ref["samples"] == k0 + ks[i]
        assert int(ds.k_hat[0, i]) == ks[i]
        assert int(ds.prediction[0, i]) == ref["prediction"]
        assert float(ds.radius[0, i]) == pytest.approx(ref["radius"], rel=1e-12, abs=1e-15)
    assert ds.validity.values[0] == "fixed-n" and float(ds.price[0]) == price


def test_budget_B_replay_reports_its_price_and_that_price_replays_the_same(budget_store):
    from isskit.policies import Budget
    from isskit.replay import replay

    path, labels = budget_store
    k0, B = 20, 700.0
    ds = replay(path, [f"budget B={B:g} k0={k0}"])
    price = float(ds.price[0])
    cap = int(ds.k_max[0])
    assert cap == labels.shape[1] - k0  # capped where the streams end
    assert float(ds.mean_samples[0]) <= B
    # the twin's bisection condition: at the price the mean is within B, a little below
    # it (0.1%, far beyond the gains' 1e-7 agreement) it is not
    xs = [ref_budget_certify(list(r), k0, 0, ALPHA, SIGMA)["pilot"] for r in labels]
    grid, gains = _twin_gains(xs, k0, cap)
    mean = [k0 + np.mean([_twin_k(grid, gains, x, f * price) for x in xs])
            for f in (1.001, 0.999)]
    assert mean[0] <= B < mean[1]
    # what replay reports is the per-image rule: give it as price= and nothing changes
    again = replay(path, [Budget(price=price, k0=k0, k_max=cap)])
    for v in ("prediction", "radius", "samples", "k_hat"):
        np.testing.assert_array_equal(ds[v].values, again[v].values)
    # online, one image at a time (RadiusPolicy.needs, as isskit certify asks it)
    online = Budget(price=price, k0=k0, k_max=cap)
    for i in range(5):
        assert online.needs(labels[i][: k0 - 1], sigma=SIGMA) == k0
        got = online.needs(labels[i][:k0], sigma=SIGMA)
        want = int(ds.samples[0, i])
        if want > k0:
            assert got == want
            got = online.needs(labels[i][:want], sigma=SIGMA)
        assert got.samples == want and got.k == int(ds.k_hat[0, i])
    # a B policy cannot plan one image alone: it says so, and what to give instead
    with pytest.raises(ValueError, match=r"has a mean budget B = 700: its price is solved "
                                         r"over the images replayed together"):
        Budget(B=B, k0=k0).needs(labels[0], sigma=SIGMA)
    with pytest.raises(ValueError, match=r"B \(5000\) is larger than these images can spend"
                                         r".*streams of N = 2020 samples"):
        replay(path, ["budget B=5000 k0=20"], reference="ias n=100")


@pytest.mark.parametrize("p_A", [0.5, 0.6, 0.9, 0.99])
def test_audit_finds_the_budget_policy_fixed_n(p_A):
    # isskit.studies.audit executes the policy's plan with no change there; its exact
    # failure probability against one summed here with scipy over the pilot counts of the
    # two-class stream (fresh binomial counts after the pilot), and <= alpha
    from isskit.policies import Budget
    from isskit.studies.audit import failure_probability

    policy = Budget(price=1e-4, k0=20, k_max=2_000)
    got = failure_probability(policy, p_A, sigma=SIGMA)
    total = 0.0
    for x_top in range(21):
        top = x_top >= 20 - x_top  # ties go to the smaller label, the top class (0)
        x, p_c = (x_top, p_A) if top else (20 - x_top, 1 - p_A)
        k = int(policy.k(np.array([x]), sigma=SIGMA)[0])
        if k == 0:
            continue
        counts = np.arange(k + 1)
        low = np.where(counts > 0, st.beta.ppf(ALPHA, np.maximum(counts, 1), k - counts + 1),
                       0.0)
        fails = (low >= 0.5) & (low > p_c)
        total += st.binom.pmf(x_top, 20, p_A) * st.binom.pmf(counts, k, p_c)[fails].sum()
    assert got == pytest.approx(total, rel=1e-9, abs=1e-15)
    assert got <= ALPHA
