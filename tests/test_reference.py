"""The slow twins in tests/reference.py against slower, more obvious versions of themselves.

Every check of isskit leans on these twins, so the twins are checked without isskit:
the bisection for psi against the full scan over k, the sign change against its
definition, and the ISS lookup against values read off the scan by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
from reference import (
    k_hat_ref,
    psi_bisect_ref,
    psi_bruteforce,
    psi_grid_ref,
    radius_ref,
    threshold_ref,
)

GRID = np.arange(101) / 100


@pytest.mark.parametrize(
    "k_bar, U, decline, sigma, alpha",
    [
        (500, 0.05, "ad", 0.25, 0.001),
        (2000, 0.1, "rd", 0.5, 0.01),
        (1, 0.5, "ad", 1.0, 0.3),
        (40, 0.9, "rd", 2.0, 0.2),
        (150, 0.05, "ad", 0.5, 0.7),  # alpha >= 1/2: the scan itself
    ],
)
def test_bisection_equals_scan(k_bar, U, decline, sigma, alpha):
    np.testing.assert_array_equal(psi_bisect_ref(GRID, k_bar, U, decline, sigma, alpha),
                                  psi_bruteforce(GRID, k_bar, U, decline, sigma, alpha))


def test_grid_is_i_over_steps():
    p, k = psi_grid_ref(300, 0.1, "ad", 0.5, 0.001, 1 / 7)
    assert p.tolist() == [i / 7 for i in range(8)] and p[0] == 0.0 and p[-1] == 1.0
    np.testing.assert_array_equal(k, psi_bruteforce(p, 300, 0.1, "ad", 0.5, 0.001))


@pytest.mark.parametrize("decline, U", [("ad", 0.05), ("rd", 0.01)])
def test_threshold_is_where_the_target_turns_positive(decline, U):
    p0 = threshold_ref(2000, U, decline, 0.5, 0.001)
    r_bar = radius_ref(2000, np.array([np.nextafter(p0, 0.0), p0]), 0.5, 0.001)
    target = r_bar - U if decline == "ad" else (1 - U) * r_bar
    assert target[0] <= 0 < target[1]
    # no sign change at all: psi is 0 everywhere
    assert threshold_ref(100, 5.0, "ad", 0.5, 0.001) is None


def test_k_hat_by_hand():
    # psi of the scan on the grid 0, 0.1, ..., 1 (RD, k_bar = 1000), then Eq. 6 and Alg. 2
    # by hand: on the grid its value, off it the larger neighbour, k_hat the larger end.
    params = (1000, 0.05, "rd", 0.5, 0.001, 0.1)
    k = psi_bruteforce(np.arange(11) / 10, *params[:5])
    # [0 0 0 0 0 0 906 755 642 562 714]: a jump after 1/2, then a U with its bottom at 0.9
    assert k[5] == 0 and k[6] > k[7] > k[8] > k[9] < k[10]
    assert k_hat_ref(0.9, 0.9, *params) == k[9]
    assert k_hat_ref(0.65, 0.73, *params) == max(k[6], k[7], k[8]) == k[6]
    assert k_hat_ref(0.75, 0.95, *params) == max(k[7], k[8], k[9], k[10]) == k[7]
    assert k_hat_ref(0.85, 0.95, *params) == max(k[8], k[9], k[10]) == k[10]
    assert k_hat_ref(0.2, 0.4, *params) == 0
    # sup: the largest value over the interval, and k_bar in the cell where psi leaves 0
    assert k_hat_ref(0.6, 0.9, *params, "sup") == k[6:10].max()
    assert k_hat_ref(0.55, 0.95, *params) == k[6] < k_hat_ref(0.55, 0.95, *params, "sup") == 1000
    assert k_hat_ref(0.5, 0.5, *params, "sup") == 0 and k_hat_ref(0.6, 0.6, *params, "sup") == k[6]
