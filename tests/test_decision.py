"""Decision policies (isskit.decision): parameters, names, thresholds and their caches."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from isskit import decision as D
from isskit.policies import CS, Adaptive, Staged, cs_thresholds
from isskit.policies import cs as cs_module
from tests import reference as ref

SIGMA = 0.25


# --------------------------------------------------------------------------- parameters


def test_defaults_follow_design():
    a = Adaptive(r=0.5)
    assert (a.n0, a.stages, a.alpha, a.beta) == (100, (1000, 10_000, 125_000), 0.001, 0.0001)
    s = Staged(r=0.5)
    assert (s.stages, s.alpha) == ((100, 1000, 10_000, 120_000), 0.001)
    c = CS(r=0.5)
    assert (c.method, c.alpha, c.n_max, c.faithful) == ("kt", 0.001, 131_100, False)


def test_names_params_validity():
    assert Adaptive(r=0.5).name == "Adaptive-r=0.5"
    assert Adaptive(r=0.25, n0=50, stages=[10, 20], alpha=0.01, beta=0.1).name == (
        "Adaptive-r=0.25-n0=50-stages=10/20-alpha=0.01-beta=0.1")
    assert Staged(r=1).name == "Staged-r=1"
    assert Staged(r=0.5, stages=(5, 50)).name == "Staged-r=0.5-stages=5/50"
    assert CS(r=0.5).name == "CS-KT-r=0.5"
    assert CS(r=0.5, method="UNION", n_max=1000).name == "CS-union-r=0.5-n_max=1000"
    assert CS(r=0.5, faithful=True).name == "CS-KT-r=0.5-faithful"
    assert Adaptive(r=0.5).validity == Staged(r=0.5).validity == "alpha-split"
    assert CS(r=0.5).validity == "anytime-valid"
    assert CS(r=0.5, faithful=True).validity == "faithful-kt"
    # the authors' union bound spends alpha as DESIGN.md does: nothing to be faithful to
    assert CS(r=0.5, method="union", faithful=True) == CS(r=0.5, method="union")
    assert Adaptive(r=0.5).params() == {"kind": "adaptive", "r": 0.5, "n0": 100,
                                        "stages": (1000, 10_000, 125_000), "alpha": 0.001,
                                        "beta": 0.0001}
    assert CS(r=0.5).params()["kind"] == "cs" and Staged(r=0.5).params()["kind"] == "staged"
    assert str(CS(r=0.5)) == "CS-KT-r=0.5"
    assert len({Adaptive(r=0.5), Adaptive(r=0.5, stages=[1000, 10000, 125000])}) == 1


def test_samples_needed_info():
    a = Adaptive(r=0.5, n0=10, stages=(100, 1000))
    assert a.selection_ranges == ((0, 10), (110, 120))
    assert a.estimation_ranges == ((10, 110), (120, 1120))
    assert a.stage_ends == (110, 1120) and a.max_samples == 1120
    assert Adaptive(r=0.5).max_samples == 136_300
    assert Staged(r=0.5).stage_ends == (100, 1100, 11_100, 131_100)
    assert Staged(r=0.5).max_samples == 131_100 == CS(r=0.5).max_samples
    assert Staged(r=0.5).thresholds(SIGMA).first_decision == 100
    assert CS(r=0.5).thresholds(SIGMA).first_decision == 3  # three failures in a row


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: CS(r=0.0), r"r \(0.0\) must be a finite radius > 0"),
        (lambda: Staged(r=-0.5), r"r \(-0.5\) must be"),
        (lambda: Adaptive(r=math.inf), r"r \(inf\) must be"),
        (lambda: Adaptive(r=math.nan), r"r \(nan\) must not be NaN"),
        (lambda: CS(r=True), r"r \(True\) must be a real number"),
        (lambda: Staged(r=0.5, stages=(100, 100)), r"stages \(100/100\) must be strictly"),
        (lambda: Adaptive(r=0.5, stages=(1000, 100)), r"stages \(1000/100\) must be strictly"),
        (lambda: Staged(r=0.5, stages=(0, 10)), r"stages entry \(0\) must be an integer >= 1"),
        (lambda: Staged(r=0.5, stages=(1.5,)), r"stages entry \(1.5\) must be an integer"),
        (lambda: Staged(r=0.5, stages=()), r"stages \(\(\)\) must hold at least one stage"),
        (lambda: Staged(r=0.5, stages="100/1000"), r"stages \('100/1000'\) must be a sequence"),
        (lambda: Staged(r=0.5, stages=100), r"stages \(100\) must be a sequence"),
        (lambda: Adaptive(r=0.5, n0=0), r"n0 \(0\) must be an integer >= 1"),
        (lambda: CS(r=0.5, alpha=0.0), r"alpha \(0.0\) must be in \(0, 1\)"),
        (lambda: Staged(r=0.5, alpha=1.0), r"alpha \(1.0\) must be in \(0, 1\)"),
        (lambda: Adaptive(r=0.5, alpha=-0.1), r"alpha \(-0.1\) must be in \(0, 1\)"),
        (lambda: Adaptive(r=0.5, beta=1.5), r"beta \(1.5\) must be in \(0, 1\)"),
        (lambda: Adaptive(r=0.5, beta=0.0), r"beta \(0.0\) must be in \(0, 1\)"),
        (lambda: Adaptive(r=0.5, stages=(10, 20), beta=0.6), r"beta \(0.6\) must be < 0.5"),
        (lambda: Staged(r=0.5, stages=(10,), alpha=0.5), r"alpha \(0.5\) must be < 0.5"),
        (lambda: CS(r=0.5, n_max=1), r"n_max \(1\) must be an integer >= 2"),
        (lambda: CS(r=0.5, n_max=10**8), r"n_max \(100000000\) must be an integer <= 10,000,"),
        (lambda: CS(r=0.5, method="bonferroni"), r"method \('bonferroni'\) must be one of"),
        (lambda: CS(r=0.5, faithful="yes"), r"faithful \('yes'\) must be True or False"),
        # needs sigma: at evaluation
        (lambda: CS(r=0.025, n_max=10).thresholds(SIGMA),
         r"n_max \(10\) is smaller than the first possible decision of CS-KT-r=0.025-n_max=10"
         r" at sigma = 0.25 \(the first is at draw 12\)"),
        (lambda: CS(r=3.0).thresholds(SIGMA), r"r \(3.0\) is too large for sigma \(0.25\)"),
        (lambda: Staged(r=3.0).thresholds(SIGMA), r"r \(3.0\) is too large"),
        (lambda: Adaptive(r=0.5).thresholds(0.0), r"sigma \(0.0\) must be a finite number > 0"),
        (lambda: cs_thresholds(1.0, 0.001), r"p0 \(1.0\) must be in \(0, 1\)"),
        (lambda: cs_thresholds(0.5, 2.0), r"alpha \(2.0\) must be in \(0, 1\)"),
    ],
)
def test_bad_input_names_the_value(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# --------------------------------------------------------------------------- thresholds


def test_cs_thresholds_cached_and_read_only():
    a = cs_thresholds(0.8, 0.001, 5000)
    assert cs_thresholds(0.8, 0.001, 5000.0, "KT", False) is a
    assert CS(r=0.25, n_max=5000).thresholds(0.25) is cs_thresholds(
        float(st.norm.cdf(1.0)), 0.001, 5000)
    assert cs_thresholds(0.8, 0.001, 5000, "union") is not a
    for arr in (a.lo, a.hi, a.next_hi, a.next_lo):
        assert not arr.flags.writeable


@pytest.mark.parametrize("method", ["kt", "union"])
@pytest.mark.parametrize("faithful", [False, True])
@pytest.mark.parametrize("p0", [0.5, 0.6914624612740131, 0.9, 0.99, 0.999])
@pytest.mark.parametrize("alpha", [0.001, 0.05, 0.4])
def test_cs_thresholds_match_twin(p0, alpha, method, faithful):
    th = cs_thresholds(p0, alpha, 4000, method, faithful)
    lo, hi = ref.ref_cs_thresholds(p0, alpha, 4000, method, faithful)
    assert np.array_equal(th.lo, lo)
    assert np.array_equal(th.hi, hi)


@pytest.mark.parametrize("method", ["kt", "union"])
def test_cs_threshold_shape_and_skip_tables(method):
    th = cs_thresholds(0.84, 0.01, 3000, method)
    t = np.arange(3000)
    assert np.all(np.diff(th.hi) >= 0) and np.all(np.diff(th.lo) >= 0)
    assert np.all(th.hi <= t + 1) and np.all(th.lo >= -1)
    assert np.all(np.diff(th.lo) <= 1)  # so "count == lo[t]" is the first crossing
    reach = (th.hi <= t) & (th.lo >= 0)
    assert np.all(th.lo[reach] < th.hi[reach])
    # next_hi / next_lo by their definitions, one f and one a at a time
    for f in range(0, 3001, 37):
        ok = np.flatnonzero((t >= 1) & (t - th.hi >= f))
        assert th.next_hi[f] == (ok[0] if ok.size else 3000)
    for a in range(0, 3001, 37):
        ok = np.flatnonzero((t >= 1) & (th.lo >= a))
        assert th.next_lo[a] == (ok[0] if ok.size else 3000)


def test_union_test_times_follow_design():
    """Every t from 3 to 26, then the first integer past each power 1.1**k (k >= 35)."""
    th = cs_thresholds(0.5, 0.001, 200, "union")
    raw = cs_module._union_raw(0.5, 0.001, 200)
    tests = np.flatnonzero(raw != np.arange(200) + 100)
    # 1.1**35 = 28.10, 1.1**36 = 30.91, 34.00, 37.40, 41.15, 45.26, 49.79, 54.76, 60.24, ...
    assert tests.tolist() == [*range(3, 27), 29, 31, 35, 38, 42, 46, 50, 55, 61, 67, 73, 81,
                              89, 98, 107, 118, 130, 143, 157, 172, 190]
    # the j-th test at alpha_j = 5 alpha / ((j + 4)(j + 5)): the first (t = 3) at alpha / 6
    assert raw[3] == st.binom.ppf(1 - 0.001 / 6, 3, 0.5) + 1 == 4
    assert th.hi[3] == 4  # unreachable with 3 draws: marked t + 1


def test_stage_thresholds_are_the_smallest_counts():
    """cert_min / stop_max against a scan of every count with the twins' formulas."""
    pol = Staged(r=0.3, stages=(40, 300, 2000), alpha=0.01)
    th = pol.thresholds(0.5)
    p0 = ref.ref_p0(0.3, 0.5)
    a2 = 0.5 * (0.01 * 2 / 3)
    for j, n in enumerate(pol.stage_ends):
        low = [ref._ref_cp_low(A, n, a2) > p0 for A in range(n + 1)]
        up = [ref._ref_cp_up(A, n, a2) < p0 for A in range(n + 1)]
        assert th.cert_min[j] == (low.index(True) if any(low) else n + 1)
        assert th.stop_max[j] == (n - up[::-1].index(True) if any(up) else -1)
    pol = Adaptive(r=0.3, n0=5, stages=(40, 300, 2000), alpha=0.01, beta=0.02)
    th = pol.thresholds(0.5)
    for j, n in enumerate(pol.stages):
        cert = [ref._ref_cp_low(A, n, 0.01 / 3) > 0.5
                and 0.5 * st.norm.ppf(ref._ref_cp_low(A, n, 0.01 / 3)) >= 0.3
                for A in range(n + 1)]
        assert th.cert_min[j] == cert.index(True)
        if j < 2:
            stop = [0.5 * st.norm.ppf(ref._ref_cp_up(A, n, 0.01)) < 0.3 for A in range(n + 1)]
            assert th.stop_max[j] == n - stop[::-1].index(True)
    assert th.stop_max[2] == -1


def test_entry_points_check_their_arrays():
    bits = np.zeros((2, 16), np.uint8)
    cum = np.zeros((2, 3), np.int32)
    with pytest.raises(ValueError, match="must be an index of"):
        D.decide_cs(bits, cum.astype(np.int64), CS(r=0.5, n_max=100), SIGMA, drawn=128)
    with pytest.raises(ValueError, match=r"drawn \(129\) must be in \[0, 128\]"):
        D.decide_cs(bits, cum, CS(r=0.5, n_max=100), SIGMA, drawn=129)
    with pytest.raises(ValueError, match="slot must give each image a row"):
        D.decide_staged(bits, cum, Staged(r=0.5, stages=(10,)), SIGMA, drawn=128, slot=[0, 2])
    with pytest.raises(ValueError, match="must be a CS policy"):
        D.decide_cs(bits, cum, [Staged(r=0.5)], SIGMA, drawn=128)
    with pytest.raises(ValueError, match="2-D uint16"):
        D.decide_adaptive(np.zeros((2, 10), np.int64), Adaptive(r=0.5), SIGMA)
    with pytest.raises(ValueError, match=r"row 1 holds label 12 at sample 3, not below"):
        labels = np.zeros((2, 300), np.uint16)
        labels[1, 3] = 12
        D.decide_adaptive(labels, Adaptive(r=0.5, n0=5, stages=(10,)), SIGMA, num_classes=10)
    with pytest.raises(ValueError, match="mix schedules"):
        D.decide_adaptive_counts(np.zeros((1, 1)), np.zeros((1, 1)),
                                 [Adaptive(r=0.5, stages=(10,)),
                                  Adaptive(r=0.5, stages=(20,))], SIGMA)


def test_decision_specs_parse_to_registered_policies():
    # DESIGN.md's spec examples, through the one spec language (kinds from the registry)
    from isskit.policies import DecisionPolicy, parse_policies
    from isskit.policies.cohen import Cohen

    got = parse_policies(["adaptive r=0.25,0.5 stages=1000/10000/125000",
                          "cs r=0.5 method=kt,union", "staged r=0.5"])
    assert got == [Adaptive(r=0.25), Adaptive(r=0.5), CS(r=0.5), CS(r=0.5, method="union"),
                   Staged(r=0.5)]
    assert all(isinstance(p, DecisionPolicy) and p.question == "decision" for p in got)
    assert [p.uses_true_label for p in got] == [False, False, True, True, True]
    assert got[0].selection_ranges == ((0, 100), (1100, 1200), (11200, 11300))
    assert got[0].static_need == 1100 and got[4].static_need == 100
    assert got[0].default_reference(got) == Cohen(n0=100, n=100_000)
    assert parse_policies("adaptive r=0.5 stages=500/5000")[0].stages == (500, 5000)
    with pytest.raises(ValueError, match=r"stages \(5000/500\) must be strictly increasing"):
        parse_policies("adaptive r=0.5 stages=5000/500")
