"""The one bisection of isskit: integer (vectorised over rows) and float (to one ulp).

Used wherever a count or a sample size is the smallest integer meeting a monotone condition
(psi's exact minimum, recovering counts from printed radii, certification thresholds), and,
through :func:`bisect_float`, wherever a non-negative float is (the budget policy's price,
the p where psi's target radius turns positive). Arrays only: never imports SciPy or
anything from isskit, so every module can use it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bisect", "bisect_float"]


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
        # lo + (hi - lo) // 2 is (lo + hi) // 2 without overflow near 2**63 (float bits)
        mid = lo[rows] + (hi[rows] - lo[rows]) // 2
        up = np.asarray(pred(mid, rows), dtype=bool)
        hi[rows[up]] = mid[up]
        lo[rows[~up]] = mid[~up]


def bisect_float(lo, hi, pred):
    """:func:`bisect` over non-negative floats: brackets shrink to adjacent doubles.

    The bit patterns of non-negative IEEE doubles, read as int64, are ordered like their
    values (and neighbouring doubles differ by one), so the integer bisection on the bits
    ends on two adjacent doubles in at most 63 steps, whatever the scale of the bracket:
    no tolerance to choose, and no second bisection loop.

    Parameters
    ----------
    lo, hi : array_like of float, shape (n,)
        Brackets, ``0 <= lo < hi``, finite; ``pred`` False at lo and True at hi (neither
        end is evaluated).
    pred : callable
        ``pred(x, rows)`` -> bool array: the condition at the floats ``x`` for rows
        ``rows``; monotone in ``x`` (False, then True) on ``lo < x < hi``.

    Returns
    -------
    lo, hi : ndarray of float64
        Adjacent doubles in every row; ``hi`` is the smallest double meeting the condition.
    """
    lo = np.ascontiguousarray(lo, dtype=np.float64).reshape(-1)
    hi = np.ascontiguousarray(hi, dtype=np.float64).reshape(-1)
    if lo.shape != hi.shape or not np.all((lo >= 0) & (lo < hi) & np.isfinite(hi)):
        raise ValueError(f"brackets must satisfy 0 <= lo < hi < inf (got {lo} and {hi})")
    lo_b, hi_b = bisect(lo.view(np.int64), hi.view(np.int64),
                        lambda bits, rows: pred(np.ascontiguousarray(bits).view(np.float64),
                                                rows))
    return lo_b.view(np.float64), hi_b.view(np.float64)
