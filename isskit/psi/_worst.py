"""The worst interval for each p_A, in closed form: what :mod:`isskit.psi.verify` checks.

For Prop. 1 only the interval with the smallest k_hat containing a p_A matters (the decline
does not increase with k), and it has a closed form for every interval
(:func:`_worst_intervals`) and among Clopper-Pearson pilot intervals
(:func:`_worst_cp_intervals`). Also here: the p_A checked (:func:`_points`) and the decline
on clipped radii (:func:`_clipped_decline`).
"""

from __future__ import annotations

import numpy as np

from isskit.psi.mapping import _threshold_cells, _threshold_samples
from isskit.psi.table import _range_max, _sparse_max
from isskit.stats import cp_interval, expected_radius
from isskit.validate import OVERHEAD_BYTES

__all__: list[str] = []


def _clipped_decline(k, p, r_bar, decline, sigma, alpha) -> np.ndarray:
    """Decline of a certificate of k samples on clipped radii (k = 0: abstain, radius 0)."""
    r_bar_plus = np.maximum(r_bar, 0.0)
    r_k = np.zeros(p.shape)
    pos = k >= 1
    if np.any(pos):
        r_k[pos] = np.maximum(expected_radius(k[pos], p[pos], sigma, alpha), 0.0)
    drop = r_bar_plus - r_k
    if decline == "rd":
        with np.errstate(invalid="ignore", divide="ignore"):
            drop = np.where(r_bar > 0, drop / np.where(r_bar > 0, r_bar, 1.0), 0.0)
    return drop


def _prefix_argmin(k: np.ndarray) -> np.ndarray:
    """Index of min(k[0..i]) for each i, the largest such index (the tightest interval)."""
    n = k.size
    key = k.astype(np.int64) * n + (n - 1 - np.arange(n))
    return n - 1 - np.minimum.accumulate(key) % n


def _suffix_argmin(k: np.ndarray) -> np.ndarray:
    """Index of min(k[i..]) for each i, the smallest such index."""
    n = k.size
    key = k.astype(np.int64) * n + np.arange(n)
    return np.minimum.accumulate(key[::-1])[::-1] % n


def _points(table, fine: int):
    """The p_A to check, each with its grid cell and whether it is a grid point."""
    steps = table.p.size - 1
    t = np.arange(1, fine + 1) / (fine + 1)
    inner = (table.p[:-1, None] + t[None, :] * (table.p[1:] - table.p[:-1])[:, None]).ravel()
    inner_cell = np.repeat(np.arange(steps), fine)
    extra, extra_cell = [], []
    for c in _threshold_cells(table.k):
        s = _threshold_samples(table.p[c], table.p[c + 1], table.k_bar, table.U,
                                    table.decline, table.sigma, table.alpha)
        s = s[(s > table.p[c]) & (s < table.p[c + 1])]
        extra.append(s)
        extra_cell.append(np.full(s.size, c))
    p_A = np.concatenate([table.p, inner, *extra])
    cell = np.concatenate([np.arange(steps + 1), inner_cell, *extra_cell])
    on_grid = np.zeros(p_A.size, dtype=bool)
    on_grid[: steps + 1] = True
    return p_A, cell, on_grid


def _worst_intervals(table, cell, on_grid):
    """For each p_A, the interval containing it with the smallest k_hat.

    ``"paper"``: ``k_hat = max(psi_iss(p_low), psi_iss(p_up))`` and the two ends can be
    chosen independently, so the smallest k_hat over intervals containing p_A is
    ``max(min_{a <= p_A} psi_iss(a), min_{b >= p_A} psi_iss(b))``. Off the grid psi_iss
    is the max of two grid values, so both minima are attained at grid points: prefix
    and suffix minima of the grid table. ``"sup"``: k_hat only grows as the interval
    grows, so the worst interval is the point ``[p_A, p_A]``.

    Because the decline is non-increasing in k (R(k, p) non-decreasing in k, tested),
    the smallest k_hat is the worst case for Prop. 1, and checking it decides Prop. 1
    for every interval containing p_A.
    """
    k = table.k
    steps = k.size - 1
    if table.mapping == "sup":
        idx = np.where(on_grid, cell, 0)
        k_hat = np.where(on_grid, k[idx], table.k_cell[np.minimum(cell, steps - 1)])
        return None, None, k_hat
    pre, suf = _prefix_argmin(k), _suffix_argmin(k)
    lo_idx = pre[cell]  # on the grid cell is the grid index; inside a cell, its left end
    hi_idx = np.where(on_grid, suf[cell], suf[np.minimum(cell + 1, steps)])
    return lo_idx, hi_idx, np.maximum(k[lo_idx], k[hi_idx])


def _pilot_bytes(k0: int) -> int:
    """Peak bytes of :func:`_worst_cp_intervals` for a pilot of ``k0``.

    Per pilot count: 8 per level of the sparse table (floor(log2(k0 + 1)) + 1 levels) and
    64 for the intervals, k_hat and keys (tracemalloc measured 134 bytes at k0 = 10^3 and
    166 at 10^5; tests/test_sizes.py checks the bound).
    """
    return (k0 + 1) * (8 * ((k0 + 1).bit_length()) + 64) + OVERHEAD_BYTES


def _worst_cp_intervals(table, p_A, k0):
    """For each p_A, the pilot interval containing it with the smallest k_hat.

    Returns the interval ends and k_hat per p_A; p_A outside every interval (none, as
    consecutive Clopper-Pearson intervals overlap, but kept safe) get ``k_hat = k_bar``,
    which meets the bound trivially.
    """
    k_A = np.arange(k0 + 1)
    low, up = cp_interval(k_A, k0, table.alpha)
    k_hat = np.asarray(table.k_hat(low, up), dtype=np.int64)
    first = np.searchsorted(up, p_A, side="left")  # first k_A with p_up >= p_A
    last = np.searchsorted(low, p_A, side="right") - 1  # last k_A with p_low <= p_A
    key = k_hat * (k0 + 1) + k_A  # range min of (k_hat, k_A): value and witness at once
    best = -_range_max(_sparse_max(-key), first, np.minimum(last, k0))
    empty = first > last
    which = np.where(empty, 0, best % (k0 + 1))
    k_best = np.where(empty, table.k_bar, best // (k0 + 1))
    return low[which], up[which], k_best
