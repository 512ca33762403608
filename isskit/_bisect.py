"""Vectorised integer bisection: one search per row, every step one call for all open rows.

Used wherever a count or a sample size is the smallest integer meeting a monotone condition
(recovering counts from printed radii, certification thresholds). Arrays only: never
imports SciPy or anything from isskit, so every module can use it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bisect"]


def bisect(lo: np.ndarray, hi: np.ndarray, pred):
    """Shrink each row's bracket to adjacent integers with ``pred`` False at lo, True at hi.

    ``pred(k, rows)`` must be monotone in ``k`` (False, then True) on ``lo < k < hi``;
    the ends themselves are never evaluated (they may lie outside the count domain).
    Each step evaluates all unfinished rows in one vectorised call.

    Parameters
    ----------
    lo, hi : ndarray of int64, shape (n,)
        Brackets, ``lo < hi``; the inputs are not modified.
    pred : callable
        ``pred(k, rows)`` -> bool array: the condition at ``k`` for rows ``rows``.

    Returns
    -------
    lo, hi : ndarray of int64
        ``hi - lo == 1`` in every row; ``hi`` is the smallest k meeting the condition.
    """
    lo, hi = lo.copy(), hi.copy()
    while True:
        rows = np.flatnonzero(hi - lo > 1)
        if rows.size == 0:
            return lo, hi
        mid = (lo[rows] + hi[rows]) // 2
        up = np.asarray(pred(mid, rows), dtype=bool)
        hi[rows[up]] = mid[up]
        lo[rows[~up]] = mid[~up]
