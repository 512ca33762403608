"""isskit.psi.verify: the closed-form worst intervals against brute force, and found violations."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from reference import clipped_decline_ref, prop1_bruteforce

from isskit.psi import PsiTable, psi_table
from isskit.psi import verify as verify_mod
from isskit.psi.verify import verify, verify_table
from isskit.stats import cp_interval


def _tampered(table, index, step):
    """The table with psi at one grid point moved by ``step`` (a wrong table to catch)."""
    k = table.k.copy()
    k[index] += step
    return PsiTable(**table.params(), p=table.p, k=k)


@pytest.mark.parametrize(
    "k_bar, U, decline, mapping",
    [(2000, 0.05, "ad", "paper"), (2000, 0.05, "rd", "paper"), (2000, 0.05, "rd", "sup"),
     (500, 0.3, "ad", "sup")],
)
def test_worst_interval_reduction_equals_all_pairs(k_bar, U, decline, mapping):
    # Every pair of points (grid, inside cells, next to the jump) as an interval, every
    # point inside it as p_A, declines from scipy.stats: the largest excess must be the
    # one verify finds with its prefix/suffix minima.
    table = psi_table(k_bar, U, decline, 0.5, 0.001, 0.05, mapping=mapping)
    res = verify_table(table, fine=3)
    points, _, _ = verify_mod._points(table, 3)
    excess = prop1_bruteforce(table, points)[0]
    assert res.max_decline - U == pytest.approx(excess, abs=1e-12)
    assert res.prop1 == (excess <= 0)
    if not res.prop1:
        w = res.worst_prop1
        assert w.decline_minus_U == pytest.approx(excess, abs=1e-12)
        assert w.p_low <= w.p_A <= w.p_up and table.k_hat(w.p_low, w.p_up) == w.k_hat


def test_cp_interval_reduction_equals_scan_of_pilot_intervals():
    table = psi_table(2000, 0.05, "rd", 0.5, 0.001, 0.05)
    k0 = 40
    res = verify_table(table, fine=3, k0=k0)
    low, up = cp_interval(np.arange(k0 + 1), k0, 0.001)
    points, _, _ = verify_mod._points(table, 3)
    excess = prop1_bruteforce(table, points, list(zip(low, up, strict=True)))[0]
    assert res.max_decline - 0.05 == pytest.approx(excess, abs=1e-12)
    assert excess > 0 and not res.prop1
    assert res.params["intervals"] == "clopper-pearson, k0=40"


def test_paper_ad_settings_hold():
    # The paper's ISS-AD-10-0.05 (k_bar = 100000) at its three noise levels.
    for sigma in (0.25, 0.5, 1.0):
        res = verify(100_000, 0.05, "ad", sigma, 0.001, 0.001)
        assert res.holds and res.worst is None and res.n_violations_prop1 == 0
        assert res.max_decline <= 0.05
        assert res.n_points > 1001 + 1000 * 16  # grid, 16 per cell, and the jump points


def test_paper_rd_mapping_breaks_prop1_next_to_one_half():
    # Recorded in docs/mapping.md: psi_RD jumps from 0 to about k_bar where R(k_bar, p)
    # turns positive (p0 in (0.504, 0.505)); an interval that starts below p0 gets the
    # small psi of its upper end, and at p_A = 0.505 that sample size certifies nothing.
    res = verify(100_000, 0.01, "rd", 0.5, 0.001, 0.001)
    assert not res.holds and not res.prop1 and res.prop2
    w = res.worst
    assert (w.proposition, w.p_low, w.p_up, w.p_A, w.k_hat) == (1, 0.504, 0.943, 0.505, 31243)
    assert w.decline_minus_U == pytest.approx(0.99, abs=1e-12)
    # independently: scipy.stats radius at 31243 samples is negative (abstain): RD = 1
    assert clipped_decline_ref(31243, 0.505, 100_000, "rd", 0.5, 0.001) == 1.0
    assert w.r_bar == pytest.approx(1.3655e-4, rel=1e-3)
    assert res.n_violations_prop1 > 1000
    # also for the intervals a pilot of k0 = 1000 can produce
    res_cp = verify(100_000, 0.01, "rd", 0.5, 0.001, 0.001, k0=1000)
    assert not res_cp.prop1 and res_cp.worst.p_low < 0.505 < res_cp.worst.p_up


def test_sup_mapping_repairs_rd():
    for k0 in (None, 1000):
        res = verify(100_000, 0.01, "rd", 0.5, 0.001, 0.001, mapping="sup", k0=k0)
        assert res.holds and res.max_decline <= 0.01


def test_lowered_grid_value_breaks_prop1_there():
    table = psi_table(5000, 0.05, "ad", 0.5, 0.001, 0.01)
    bad = _tampered(table, 90, -1)
    res = verify_table(bad)
    assert not res.prop1 and res.prop2
    w = res.worst_prop1
    assert w.p_A == 0.9 and w.k_hat == table.k[90] - 1
    expected = clipped_decline_ref(int(table.k[90]) - 1, 0.9, 5000, "ad", 0.5, 0.001) - 0.05
    assert w.decline_minus_U == pytest.approx(expected, rel=1e-12) and expected > 0


def test_raised_grid_value_breaks_prop2_and_minimality():
    table = psi_table(5000, 0.05, "ad", 0.5, 0.001, 0.01)
    assert verify_table(table, check_minimal=True).minimal is True
    res = verify_table(_tampered(table, 80, +2), check_minimal=True)
    assert res.prop1 and not res.prop2 and res.minimal is False and not res.holds
    w = res.worst_prop2
    assert (w.p_low, w.p_up, w.p_A, w.k_hat) == (0.8, 0.8, 0.8, table.k[80] + 2)
    assert w.decline_minus_U <= 0  # k_hat - 1 meets the bound: not tight


def test_minimal_scan_on_rd_table():
    assert verify(3000, 0.05, "rd", 0.5, 0.001, 0.01, check_minimal=True).minimal is True


def test_result_to_dict_and_validation():
    d = verify(2000, 0.05, "rd", 0.5, 0.001, 0.05).to_dict()
    assert d["worst"]["proposition"] == 1 and d["params"]["intervals"] == "all"
    assert dataclasses.is_dataclass(verify_mod.VerifyResult)
    with pytest.raises(ValueError, match=r"k0 \(3000\) must be <= k_bar \(2000\)"):
        verify(2000, 0.05, "rd", 0.5, 0.001, 0.05, k0=3000)
    with pytest.raises(ValueError, match=r"fine \(0\)"):
        verify(2000, 0.05, "rd", 0.5, 0.001, 0.05, fine=0)
    with pytest.raises(ValueError, match=r"U \(1.5\)"):
        verify(2000, 1.5, "rd", 0.5, 0.001, 0.05)
