"""The one bisection of isskit: integer (vectorised over rows) and float (to one ulp).

:func:`bisect` is used wherever a count or a sample size is the smallest integer meeting a
monotone condition (psi's exact minimum, recovering counts from printed radii,
certification thresholds); :func:`bisect_float` where a real threshold is wanted to the
last bit (where psi's target radius turns positive). Arrays only: never imports SciPy or
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
        mid = (lo[rows] + hi[rows]) // 2
        up = np.asarray(pred(mid, rows), dtype=bool)
        hi[rows[up]] = mid[up]
        lo[rows[~up]] = mid[~up]


def bisect_float(lo: float, hi: float, pred) -> float:
    """The smallest float in ``(lo, hi]`` where a monotone ``pred`` holds, to one ulp.

    ``pred(x)`` must be False at and below ``lo`` and True at and above the answer; ``hi``
    is returned when no float between ``lo`` and ``hi`` meets it.

    Parameters
    ----------
    lo, hi : float
        Bracket, ``lo < hi``; ``pred`` is never evaluated at the ends.
    pred : callable
        ``pred(x)`` -> bool.

    Returns
    -------
    float

    Examples
    --------
    >>> bisect_float(0.0, 1.0, lambda x: x * x >= 0.5) == 0.5 ** 0.5
    True
    """
    while True:
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi:
            return hi
        if pred(mid):
            hi = mid
        else:
            lo = mid
