"""The oracles' machinery: gain curves, their upper concave hulls and the greedy over them.

Private to :mod:`isskit.studies.oracle` (the two oracles) and
:mod:`isskit.studies.oracle_compare` (a policy against them): arrays in, arrays out; the
method and its exactness are in :mod:`isskit.studies.oracle`'s docstring.

This module never reads or writes files and never prints.
"""

from __future__ import annotations

import numpy as np

from isskit.policies._budget_gain import geometric_grid
from isskit.replay._kernels import _jit
from isskit.stats import expected_radius

__all__ = ["default_k_grid", "expected_acr"]


def default_k_grid(k_max: int, points: int = 400, k_min: int = 10) -> np.ndarray:
    """0 and about ``points`` geometrically spaced integer sample sizes in ``[k_min, k_max]``."""
    return geometric_grid(k_max, points, k_min)


def expected_acr(k, p_A, correct, sigma: float, alpha: float) -> float:
    """Expected ACR of sample sizes ``k``: ``mean(1[correct] * max(R(k_i, p_i), 0))``.

    ``k_i = 0`` contributes 0 (nothing sampled, abstain).

    Parameters
    ----------
    k : array_like of int
        Sample size per image, ``>= 0``.
    p_A : array_like of float
        True top-class probability per image, in [0, 1].
    correct : array_like of bool
        Whether the image's top class is its true label.
    sigma, alpha : float
        Noise level and one-sided failure probability.

    Returns
    -------
    float
        The expected ACR, averaged over all images as in the paper's Eq. 7.
    """
    k, p_A, correct = _arrays(k, p_A, correct)
    return float(np.mean(_gain(k, p_A, correct, sigma, alpha)))


def _arrays(k, p_A, correct):
    p_A = np.asarray(p_A, dtype=np.float64)
    if p_A.ndim != 1 or p_A.size == 0:
        raise ValueError(f"p_A must be a non-empty 1-d array (got shape {p_A.shape})")
    if np.any(~((p_A >= 0) & (p_A <= 1))):
        raise ValueError(f"p_A ({p_A[~((p_A >= 0) & (p_A <= 1))][0]}) must be in [0, 1]")
    correct = np.broadcast_to(np.asarray(correct, dtype=bool), p_A.shape)
    k = np.broadcast_to(np.asarray(k), p_A.shape)
    if k.dtype.kind not in "iu" and not np.all(k == np.round(k)):
        raise ValueError("k must hold integer sample sizes")
    k = k.astype(np.int64)
    if np.any(k < 0):
        raise ValueError(f"k ({k[k < 0][0]}) must be >= 0")
    return k, p_A, correct


def _gain(k, p, correct, sigma, alpha):
    """``1[correct] * max(R(k, p), 0)``, 0 where ``k = 0``; broadcast over k and p."""
    k, p = np.broadcast_arrays(np.asarray(k, np.int64), np.asarray(p, np.float64))
    r = expected_radius(np.maximum(k, 1), p, sigma, alpha)
    r = np.where((k > 0) & (r > 0), r, 0.0)  # -inf at p = 0 becomes 0 too
    return r * np.broadcast_to(correct, r.shape)


@_jit
def _upper_hull(x, y, hull):
    """Upper concave hull of points sorted by x, from the first point.

    Writes the vertex indices into ``hull`` and returns how many there are. A point on or
    below the chord between its neighbours is not a vertex.
    """
    n = 0
    for j in range(x.shape[0]):
        while n >= 2:
            a = hull[n - 2]
            b = hull[n - 1]
            # b lies on or below the chord a -> j: it is not a hull vertex.
            if (y[b] - y[a]) * (x[j] - x[a]) <= (y[j] - y[a]) * (x[b] - x[a]):
                n -= 1
            else:
                break
        hull[n] = j
        n += 1
    return n


@_jit
def _hull_segments(x, gains, seg_img, seg_from, seg_to):
    """Segments of every image's upper hull of ``(x, gains[i])``, up to its highest vertex.

    Images whose gain is 0 at the last grid point get no segment. Fills the outputs (each
    of size ``rows * len(x)`` at most) and returns the number of segments.
    """
    hull = np.empty(x.shape[0], np.int64)
    s = 0
    for i in range(gains.shape[0]):
        if not gains[i, -1] > 0:
            continue
        n = _upper_hull(x, gains[i], hull)
        # Drop the hull's flat tail: extra samples that buy no radius (first argmax).
        top = 0
        for v in range(1, n):
            if gains[i, hull[v]] > gains[i, hull[top]]:
                top = v
        for v in range(top):
            seg_img[s] = i
            seg_from[s] = hull[v]
            seg_to[s] = hull[v + 1]
            s += 1
    return s


@_jit
def _greedy(seg_img, d_k, d_gain, k_to, total, k):
    """Take hull segments, in the order given, while the budget ``total`` lasts.

    The arrays are already in the greedy's order (decreasing slope), so the pass streams
    through them. A segment that does not fit is skipped, and so are the later segments of
    its image. Writes each image's sample size into ``k`` (zeros on entry) and returns the
    value taken and the Lagrangian bound (the first segment that does not fit, taken
    fractionally; the value itself when every segment fits).
    """
    spent = 0.0
    value = 0.0
    bound = np.nan
    blocked = np.zeros(k.shape[0], np.bool_)
    for s in range(seg_img.shape[0]):
        i = seg_img[s]
        if blocked[i]:
            continue
        if spent + d_k[s] <= total:
            spent += d_k[s]
            value += d_gain[s]
            k[i] = k_to[s]
        else:
            if np.isnan(bound):  # the Lagrangian bound: this segment taken fractionally
                bound = value + d_gain[s] * (total - spent) / d_k[s]
            blocked[i] = True
    if np.isnan(bound):  # every segment fitted: the allocation is optimal outright
        bound = value
    return value, bound


def _check_k_grid(k_grid) -> np.ndarray:
    k_grid = np.asarray(k_grid)
    if k_grid.ndim != 1 or k_grid.size == 0 or k_grid.dtype.kind not in "iu":
        raise ValueError("k_grid must be a non-empty 1-d array of integers")
    if np.any(k_grid < 0):
        raise ValueError(f"k_grid ({k_grid[k_grid < 0][0]}) must hold sample sizes >= 0")
    return np.unique(np.concatenate([[0], k_grid.astype(np.int64)]))


def _check_budget(budget, name: str = "budget") -> float:
    budget = float(budget)
    if not (np.isfinite(budget) and budget >= 0):
        raise ValueError(f"{name} ({budget}) must be a finite number >= 0")
    return budget
