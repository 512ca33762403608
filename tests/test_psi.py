"""isskit.psi: exact psi against a brute-force scan, table lookups, files, caching, errors."""

from __future__ import annotations

import numpy as np
import pytest
from reference import psi_bruteforce

from isskit.psi import PsiTable, psi_exact, psi_table

GRID = np.arange(201) / 200


@pytest.mark.parametrize(
    "k_bar, U, decline, sigma, alpha",
    [
        (500, 0.05, "ad", 0.25, 0.001),
        (1000, 0.01, "ad", 0.12, 0.1),
        (2000, 0.1, "rd", 0.5, 0.01),
        (300, 0.2, "rd", 1.0, 0.001),
    ],
)
def test_psi_exact_equals_bruteforce(k_bar, U, decline, sigma, alpha):
    got = psi_exact(GRID, k_bar, U, decline, sigma, alpha)
    np.testing.assert_array_equal(got, psi_bruteforce(GRID, k_bar, U, decline, sigma, alpha))
    assert got.dtype == np.int64 and got.max() <= k_bar


def test_k_hat_paper_is_max_of_endpoint_lookups():
    t = psi_table(100_000, 0.05, "ad", 0.5, 0.001, 0.001)
    # on the grid: the grid values; off it: max of the two neighbours (Eq. 6)
    assert t.psi_iss(0.9) == t.k[900]
    assert t.psi_iss(0.9004) == max(t.k[900], t.k[901])
    p_low, p_up = np.array([0.3, 0.85, 0.9]), np.array([0.7, 0.9004, 0.95])
    np.testing.assert_array_equal(
        t.k_hat(p_low, p_up), np.maximum(t.psi_iss(p_low), t.psi_iss(p_up))
    )


def test_table_is_cached_and_read_only():
    a = psi_table(10_000, 0.1, "ad", 0.25, 0.001, 0.01)
    b = psi_table(10_000.0, 0.1, "AD", 0.25, 0.001, 1 / 100)
    assert a is b
    with pytest.raises(ValueError):
        a.k[0] = 5


@pytest.mark.parametrize("suffix", [".csv", ".npz"])
@pytest.mark.parametrize("mapping", ["paper", "sup"])
def test_save_load_roundtrip(tmp_path, suffix, mapping):
    t = psi_table(20_000, 0.01, "rd", 0.5, 0.001, 0.01, mapping=mapping)
    back = PsiTable.load(t.save(tmp_path / f"t{suffix}"))
    assert back.params() == t.params()
    for name in ("p", "k", "k_cell"):
        np.testing.assert_array_equal(getattr(back, name), getattr(t, name))
