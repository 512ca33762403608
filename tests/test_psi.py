"""isskit.psi: exact psi against a brute-force scan, table lookups, files, caching, errors."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from reference import k_hat_ref, psi_bruteforce, psi_grid_ref, radius_ref
from scipy import stats as st

from isskit.psi import PsiTable, psi_exact, psi_table
from isskit.psi import mapping as psi_mod
from isskit.stats import absolute_decline, relative_decline

GRID = np.arange(201) / 200


@pytest.mark.parametrize(
    "k_bar, U, decline, sigma, alpha",
    [
        (500, 0.05, "ad", 0.25, 0.001),
        (1000, 0.01, "ad", 0.12, 0.1),
        (2000, 0.1, "rd", 0.5, 0.01),
        (300, 0.2, "rd", 1.0, 0.001),
        (1, 0.5, "ad", 1.0, 0.3),
        (40, 0.9, "rd", 2.0, 0.2),
    ],
)
def test_psi_exact_equals_bruteforce(k_bar, U, decline, sigma, alpha):
    got = psi_exact(GRID, k_bar, U, decline, sigma, alpha)
    np.testing.assert_array_equal(got, psi_bruteforce(GRID, k_bar, U, decline, sigma, alpha))
    assert got.dtype == np.int64 and got.max() <= k_bar


@pytest.mark.parametrize("alpha", [0.5, 0.7, 0.95])
def test_psi_exact_alpha_at_least_half_scans(alpha):
    # Above the median the bound falls as k grows (not monotone): the scan path must still
    # return the brute-force minimum.
    got = psi_exact(GRID[::5], 150, 0.05, "ad", 0.5, alpha)
    np.testing.assert_array_equal(got, psi_bruteforce(GRID[::5], 150, 0.05, "ad", 0.5, alpha))


def test_psi_at_paper_scale_against_scipy_scan():
    # The paper's ISS-AD-10-0.05 and ISS-RD-10-0.01 at sigma = 0.5 (k_bar = 100000), each
    # checked against a scan of all 100000 k with scipy.stats (tests/reference.py).
    for U, decline, p in ((0.05, "ad", [0.9, 1.0]), (0.01, "rd", [0.9, 0.999])):
        got = psi_exact(p, 100_000, U, decline, 0.5, 0.001)
        np.testing.assert_array_equal(got, psi_bruteforce(p, 100_000, U, decline, 0.5, 0.001))
    # The scan above, spelt out: k = np.arange(1, 100_001); R = 0.5 * scipy.stats.norm.ppf(
    # scipy.stats.beta.ppf(0.001, p * k, k - p * k + 1)); first k with R[-1] - R <= 0.05
    # is 2051 at p = 0.9 and 67040 at p = 1 (tests/test_cli_psi.py prints these).
    assert psi_exact([0.9, 1.0], 100_000, 0.05, "ad", 0.5, 0.001).tolist() == [2051, 67040]


def test_p_equal_one_closed_form():
    # Beta(alpha; k, 1) = alpha**(1/k): the smallest k with alpha**(1/k) >= q* is
    # ceil(log(alpha) / log(q*)), q* = Phi((R(k_bar, 1) - U) / sigma).
    for k_bar, U, sigma, alpha in ((100_000, 0.05, 0.5, 0.001), (500_000, 0.1, 1.0, 0.01),
                                   (1000, 0.02, 0.25, 0.05)):
        r_bar = sigma * st.norm.ppf(alpha ** (1 / k_bar))
        q_star = st.norm.cdf((r_bar - U) / sigma)
        closed = math.ceil(math.log(alpha) / math.log(q_star))
        assert psi_exact(1.0, k_bar, U, "ad", sigma, alpha) == closed


def test_psi_is_a_minimum_of_the_stats_decline():
    # k = psi meets the bound and k - 1 does not, with isskit.stats' declines.
    for decline, fn, U in (("ad", absolute_decline, 0.05), ("rd", relative_decline, 0.02)):
        p = np.linspace(0.55, 1.0, 46)
        k = psi_exact(p, 200_000, U, decline, 0.25, 0.001)
        # AD at sigma = 0.25: R(k_bar, p) <= U = 0.05 at p = 0.55 .. 0.58 (scipy:
        # radius_ref(200_000, 0.58, 0.25, 0.001) = 0.0483, at 0.59 it is 0.0547): psi = 0
        # exactly there. RD: R(k_bar, p) > 0 from p = 0.55 on, psi > 0 everywhere.
        zero = radius_ref(200_000, p, 0.25, 0.001) <= U if decline == "ad" else p < 0
        assert zero.sum() == (4 if decline == "ad" else 0)
        np.testing.assert_array_equal(k == 0, zero)
        p, k = p[k > 0], k[k > 0]
        assert np.all(fn(k, 200_000, p, 0.25, 0.001) <= U)
        below = k > 1
        assert np.all(fn(k[below] - 1, 200_000, p[below], 0.25, 0.001) > U)


def test_psi_zero_where_target_not_positive():
    # p <= 1/2: R(k_bar, p) < 0. AD: also zero while R(k_bar, p) <= U.
    p = np.array([0.0, 0.3, 0.5])
    assert psi_exact(p, 10_000, 0.1, "rd", 0.5, 0.001).tolist() == [0, 0, 0]
    r_bar = radius_ref(10_000, 0.56, 0.5, 0.001)  # about 0.056 < U = 0.1
    assert 0 < r_bar < 0.1
    assert psi_exact(0.56, 10_000, 0.1, "ad", 0.5, 0.001) == 0
    assert psi_exact(0.6, 10_000, 0.1, "ad", 0.5, 0.001) > 0


def test_exact_bisection_fallback_matches_bruteforce():
    # The fallback used where betainc and betaincinv disagree at a tie, on its own.
    p = np.array([0.6, 0.8, 0.95, 1.0])
    r_bar = np.array([radius_ref(3000, x, 0.5, 0.01) for x in p])
    got = psi_mod._bisect_exact(p, r_bar, 3000, 0.05, "ad", 0.5, 0.01)
    np.testing.assert_array_equal(got, psi_bruteforce(p, 3000, 0.05, "ad", 0.5, 0.01))


def test_psi_iss_on_and_off_grid():
    t = psi_table(100_000, 0.05, "ad", 0.5, 0.001, 0.001)
    assert t.p.size == 1001 and t.p[0] == 0.0 and t.p[-1] == 1.0 and t.p[900] == 0.9
    # the grid values against psi computed without isskit (bisection on scipy's radius)
    p_ref, k_ref = psi_grid_ref(100_000, 0.05, "ad", 0.5, 0.001, 0.001)
    np.testing.assert_array_equal(t.p, p_ref)
    np.testing.assert_array_equal(t.k, k_ref)
    # on the grid: the grid values; off it: max of the two neighbours (Eq. 6)
    assert t.psi_iss(0.9) == t.k[900]
    assert t.psi_iss(0.9004) == max(t.k[900], t.k[901]) == t.k[901]
    np.testing.assert_array_equal(t.psi_iss([0.9, 0.9004, 1.0]), [t.k[900], t.k[901], t.k[1000]])
    # 0.3 * 10 is 3.0000000000000004 in floating point: still the grid point 0.3
    t10 = psi_table(1000, 0.05, "ad", 0.5, 0.001, 0.1)
    assert t10.p[3] == 0.3 and t10.psi_iss(0.3) == t10.k[3]


def test_k_hat_paper_is_max_of_endpoint_lookups():
    t = psi_table(100_000, 0.05, "ad", 0.5, 0.001, 0.001)
    p_low, p_up = np.array([0.3, 0.85, 0.9]), np.array([0.7, 0.9004, 0.95])
    np.testing.assert_array_equal(
        t.k_hat(p_low, p_up), np.maximum(t.psi_iss(p_low), t.psi_iss(p_up))
    )
    assert t.k_hat(0.85, 0.9004) == t.k[901]
    assert np.asarray(t.k_hat(0.2, 0.4)).item() == 0
    # broadcast: one p_low against several p_up
    np.testing.assert_array_equal(t.k_hat(0.6, [0.7, 0.8]), [t.k[700], t.k[800]])
    # each lookup as the reference twin reads Eq. 6 and Alg. 2 (its psi without isskit)
    for a, b in zip([*p_low, 0.2, 0.6, 0.6], [*p_up, 0.4, 0.7, 0.8], strict=True):
        assert t.k_hat(a, b) == k_hat_ref(a, b, 100_000, 0.05, "ad", 0.5, 0.001, 0.001)


def test_k_hat_rejects_bad_intervals():
    t = psi_table(1000, 0.05, "ad", 0.5, 0.001, 0.01)
    with pytest.raises(ValueError, match=r"p_low \(0.6\) must be <= p_up \(0.5\)"):
        t.k_hat(0.6, 0.5)
    with pytest.raises(ValueError, match=r"1.5"):
        t.k_hat(0.5, 1.5)
    with pytest.raises(ValueError, match=r"-0.1"):
        t.psi_iss(-0.1)


def test_sup_mapping_raises_the_rd_jump_cell_to_k_bar():
    params = (100_000, 0.01, "rd", 0.5, 0.001, 0.001)
    paper = psi_table(*params)
    sup = psi_table(*params, mapping="sup")
    np.testing.assert_array_equal(paper.k, sup.k)  # same grid values, different lookups
    # psi without isskit (bisection on scipy's radius, tests/reference.py): 0 at 0.504,
    # 99956 at 0.505, 68491 at 0.607 and 68261 at 0.608 (falling: the left arm of the U)
    _, k_ref = psi_grid_ref(*params)
    np.testing.assert_array_equal(paper.k, k_ref)
    assert k_ref[[504, 505, 607, 608]].tolist() == [0, 99_956, 68_491, 68_261]
    # R(k_bar, p) turns positive inside the cell (0.504, 0.505): psi jumps from 0 to k_bar
    assert paper.k[504] == 0 and paper.k[505] == 99_956
    assert sup.k_cell[504] == 100_000 and paper.k_cell[504] == 99_956
    raised = sup.k_cell != paper.k_cell
    assert raised.sum() == 1
    # an interval straddling the jump: the paper takes its ends, sup the whole interval
    assert paper.k_hat(0.5035, 0.6076) == max(k_ref[607], k_ref[608]) == 68_491
    assert sup.k_hat(0.5035, 0.6076) == 100_000
    # grid-ended: the same where psi is quasi-convex (U-shaped), k_bar across the jump
    assert sup.k_hat(0.6, 0.95) == paper.k_hat(0.6, 0.95) == k_ref[600:951].max()
    assert sup.k_hat(0.5, 0.6) == 100_000 > paper.k_hat(0.5, 0.6) == k_ref[600]
    # and each lookup as the reference twin reads DESIGN.md
    for a, b in ((0.5035, 0.6076), (0.6, 0.95), (0.5, 0.6), (0.5049, 0.5049), (0.97, 0.9704)):
        for table in (paper, sup):
            assert table.k_hat(a, b) == k_hat_ref(a, b, *params, table.mapping), (a, b)


def test_sup_equals_paper_for_ad_tables():
    for sigma in (0.25, 0.5, 1.0):
        a = psi_table(100_000, 0.05, "ad", sigma, 0.001, 0.001)
        b = psi_table(100_000, 0.05, "ad", sigma, 0.001, 0.001, mapping="sup")
        np.testing.assert_array_equal(a.k_cell, b.k_cell)


def test_table_is_cached_and_read_only():
    a = psi_table(10_000, 0.1, "ad", 0.25, 0.001, 0.01)
    b = psi_table(10_000.0, 0.1, "AD", 0.25, 0.001, 1 / 100)
    assert a is b
    assert psi_table(10_000, 0.1, "ad", 0.25, 0.001, 0.01, mapping="sup") is not a
    with pytest.raises(ValueError):
        a.k[0] = 5


def test_uncached_table_is_fresh_and_leaves_the_cache_alone():
    # parameters no other test uses: were the fresh table cached, the lookup would return it
    params = (12_345, 0.07, "rd", 0.75, 0.002, 0.02)
    fresh = psi_table(*params, mapping="sup", cache=False)
    assert psi_table(*params, mapping="sup", cache=False) is not fresh
    cached = psi_table(*params, mapping="sup")
    assert cached is not fresh and psi_table(*params, mapping="sup") is cached
    assert fresh.params() == cached.params()
    for name in ("p", "k", "k_cell"):
        np.testing.assert_array_equal(getattr(fresh, name), getattr(cached, name))
    with pytest.raises(ValueError, match="delta"):
        psi_table(*params[:5], 0.3, cache=False)


@pytest.mark.parametrize("suffix", [".csv", ".npz"])
@pytest.mark.parametrize("mapping", ["paper", "sup"])
def test_save_load_roundtrip(tmp_path, suffix, mapping):
    t = psi_table(20_000, 0.01, "rd", 0.5, 0.001, 0.01, mapping=mapping)
    back = PsiTable.load(t.save(tmp_path / f"t{suffix}"))
    assert back.params() == t.params()
    for name in ("p", "k", "k_cell"):
        np.testing.assert_array_equal(getattr(back, name), getattr(t, name))


def test_csv_has_p_k_columns(tmp_path):
    t = psi_table(5000, 0.05, "ad", 0.5, 0.001, 0.01)
    path = t.save(tmp_path / "t.csv")
    with path.open() as f:
        rows = list(csv.DictReader(f))  # plain CSV: no comment lines to skip
    assert list(rows[0]) == ["p", "k"] and len(rows) == t.p.size
    np.testing.assert_array_equal([float(r["p"]) for r in rows], t.p)
    np.testing.assert_array_equal([int(r["k"]) for r in rows], t.k)


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("p,k\n0.0,0\n")
    with pytest.raises(ValueError, match="not an isskit psi table with parameters"):
        PsiTable.load(path)
    path.write_text("a,b\n0.0,0\n")
    with pytest.raises(ValueError, match="first line is not 'p,k'"):
        PsiTable.load(path)


def test_csv_reads_with_plain_readers_and_loads_without_sidecar(tmp_path):
    t = psi_table(5000, 0.05, "ad", 0.5, 0.001, 0.01)
    path = t.save(tmp_path / "t.csv")
    arr = np.loadtxt(path, delimiter=",", skiprows=1)
    np.testing.assert_array_equal(arr[:, 0], t.p)
    np.testing.assert_array_equal(arr[:, 1], t.k)
    (tmp_path / "t.csv.json").unlink()
    back = PsiTable.load(path, k_bar=5000, U=0.05, decline="ad", sigma=0.5, alpha=0.001,
                         delta=0.01)
    assert back.params() == t.params()
    np.testing.assert_array_equal(back.k_cell, t.k_cell)
    t.save(path)
    with pytest.raises(ValueError, match="differ from its sidecar"):
        PsiTable.load(path, k_bar=6000)


def test_to_dict_and_table_validation():
    t = psi_table(1000, 0.05, "ad", 0.5, 0.001, 0.5)
    d = t.to_dict()
    assert d["p"] == [0.0, 0.5, 1.0] and d["k"] == t.k.tolist() and d["mapping"] == "paper"
    with pytest.raises(ValueError, match="grid"):
        PsiTable(1000, 0.05, "ad", 0.5, 0.001, 0.5, "paper", p=[0.0, 0.4, 1.0], k=[0, 0, 1])
    with pytest.raises(ValueError, match="k_cell"):
        PsiTable(1000, 0.05, "ad", 0.5, 0.001, 0.5, "sup", p=[0.0, 0.5, 1.0], k=[0, 0, 9],
                 k_cell=[0, 3])
    with pytest.raises(ValueError, match="mapping"):
        PsiTable(1000, 0.05, "ad", 0.5, 0.001, 0.5, "hull", p=[0.0, 0.5, 1.0], k=[0, 0, 9])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"U": 0.0}, r"U \(0.0\)"),
        ({"U": -0.1}, r"U \(-0.1\)"),
        ({"U": 1.0, "decline": "rd"}, r"U \(1.0\) must be < 1"),
        ({"alpha": 0.0}, r"alpha \(0.0\)"),
        ({"alpha": 1.0}, r"alpha \(1.0\)"),
        ({"sigma": 0.0}, r"sigma \(0.0\)"),
        ({"sigma": -1.0}, r"sigma \(-1.0\)"),
        ({"delta": 0.3}, r"delta \(0.3\)"),
        ({"delta": 0.0}, r"delta \(0.0\)"),
        ({"k_bar": 100.5}, r"k_bar \(100.5\)"),
        ({"k_bar": 0}, r"k_bar \(0\)"),
        ({"decline": "xd"}, r"decline \('xd'\)"),
        ({"mapping": "hull"}, r"mapping \('hull'\)"),
    ],
)
def test_bad_parameters_raise_value_error_naming_the_value(kwargs, message):
    args = {"k_bar": 1000, "U": 0.05, "decline": "ad", "sigma": 0.5, "alpha": 0.001,
            "delta": 0.01} | kwargs
    with pytest.raises(ValueError, match=message):
        psi_table(**args)
    if "delta" not in kwargs and "mapping" not in kwargs:
        del args["delta"]
        with pytest.raises(ValueError, match=message):
            psi_exact(0.9, **args)


def test_psi_exact_rejects_p_outside_unit_interval():
    with pytest.raises(ValueError, match=r"p \(1.2\)"):
        psi_exact([0.5, 1.2], 100, 0.1, "ad", 0.5, 0.001)


def test_fallback_when_the_secant_guess_is_wrong(monkeypatch):
    # Force every candidate to be wrong: the betainc bisection and the exact re-check
    # must still return the brute-force minimum.
    monkeypatch.setattr(psi_mod, "_secant_guess", lambda p, *a, **k: np.ones(p.shape, np.int64))
    got = psi_exact(GRID, 2000, 0.1, "rd", 0.5, 0.01)
    np.testing.assert_array_equal(got, psi_bruteforce(GRID, 2000, 0.1, "rd", 0.5, 0.01))
    monkeypatch.setattr(psi_mod, "_bisect_betainc", lambda p, *a, **k: np.ones(p.shape, np.int64))
    got = psi_exact(GRID, 2000, 0.1, "ad", 0.25, 0.01)
    np.testing.assert_array_equal(got, psi_bruteforce(GRID, 2000, 0.1, "ad", 0.25, 0.01))
