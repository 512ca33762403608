"""The ceiling of input-specific sampling: an oracle that knows every image's p_A.

Any input-specific policy (ISS among them) decides each image's sample size ``k_i`` from
samples of that image. An oracle that knows the true top-class probability ``p_i`` of
every image, and whether its prediction is correct, can instead choose the ``k_i`` that
maximise the expected ACR

    ACR(k) = (1 / m) * sum_i 1[correct_i] * max(R(k_i, p_i), 0)

at a given mean sample size ``sum_i k_i / m <= budget``, with ``R`` the expected radius of
:func:`isskit.stats.expected_radius` (the paper's Eq. 3: the count taken at its mean
``p k``). No policy that only sees samples can beat it on average, so the oracle's ACR
bounds what input-specific sampling can gain over input-agnostic sampling (IAS) at the
same cost.

The optimisation is a resource allocation over a grid of sample sizes per image
(``0`` = spend nothing and abstain). It is solved by the Lagrangian / greedy method on
each image's upper concave hull of ``(k, max(R, 0))``:

* Where each image's gain curve is concave on the grid, the greedy on marginal gains is
  exact up to the one segment cut by the budget: the returned allocation is optimal for
  the budget it spends, and :attr:`OracleResult.upper_bound` (the same greedy with the last
  segment taken fractionally, i.e. the Lagrangian dual value) is at most one image's
  radius step above the optimum.
* Where a curve is not concave (``max(R, 0)`` is flat at 0 until ``k`` is large enough to
  certify, then rises: p_A just above 1/2), the hull bridges the flat part with a chord.
  Allocations are still taken at hull vertices, which are real grid points, so the
  returned value is always achieved; the chord only makes the upper bound (the concave
  relaxation) looser. ``acr <= optimum <= upper_bound`` holds in every case, and the
  tests check it against brute force.

This module never reads or writes files and never prints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isskit.stats import expected_radius
from isskit.validate import check_alpha, check_sigma

__all__ = ["OracleResult", "default_k_grid", "expected_acr", "oracle_allocation"]


@dataclass(frozen=True)
class OracleResult:
    """An oracle allocation of sample sizes.

    Attributes
    ----------
    k : ndarray of int64
        Sample size given to each image (0 for images that get nothing).
    acr : float
        Expected ACR the allocation achieves, ``mean(1[correct] * max(R(k_i, p_i), 0))``.
    upper_bound : float
        The concave relaxation's value at the same budget: no allocation on the grid
        with mean sample size ``<= budget`` has a higher expected ACR.
    mean_samples : float
        Mean of ``k`` (``<= budget``).
    budget : float
        The mean sample budget asked for.
    k_grid : ndarray of int64
        The candidate sample sizes (0 included).
    """

    k: np.ndarray
    acr: float
    upper_bound: float
    mean_samples: float
    budget: float
    k_grid: np.ndarray


def default_k_grid(k_max: int, points: int = 400, k_min: int = 10) -> np.ndarray:
    """0 and about ``points`` geometrically spaced integer sample sizes in ``[k_min, k_max]``."""
    if not (1 <= k_min <= k_max):
        raise ValueError(f"k_min ({k_min}) and k_max ({k_max}) must satisfy 1 <= k_min <= k_max")
    grid = np.unique(np.round(np.geomspace(k_min, k_max, points)).astype(np.int64))
    return np.concatenate([[0], grid])


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


def _upper_hull(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the upper concave hull of points sorted by x, from the first point."""
    hull: list[int] = []
    for j in range(len(x)):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # b lies on or below the chord a -> j: it is not a hull vertex.
            if (y[b] - y[a]) * (x[j] - x[a]) <= (y[j] - y[a]) * (x[b] - x[a]):
                hull.pop()
            else:
                break
        hull.append(j)
    return np.asarray(hull, dtype=np.int64)


def oracle_allocation(
    p_A, budget: float, *, sigma: float, alpha: float, correct=True, k_grid=None
) -> OracleResult:
    """Sample sizes that maximise expected ACR at a mean sample budget, knowing every p_A.

    Greedy on marginal gains over each image's upper concave hull of ``(k, gain)`` on
    ``k_grid``: hull segments of all images are taken in order of decreasing slope
    (radius per sample) while the budget lasts; a segment that does not fit is skipped
    and so are the later segments of its image, and smaller ones after it may still be
    taken. See the module docstring for exactness.

    Parameters
    ----------
    p_A : array_like of float
        True top-class probability of each image.
    budget : float
        Mean sample size per image allowed (over all images, as ``mean_samples`` of a
        replay), ``>= 0``.
    sigma, alpha : float
        Noise level and one-sided failure probability of the certificate.
    correct : bool or array_like of bool
        Whether each image's top class is its true label; incorrect images gain nothing
        and get ``k = 0``.
    k_grid : array_like of int, optional
        Candidate sample sizes; 0 is always added. Default :func:`default_k_grid` up to
        ``max(10 * budget, 10**6)``.

    Returns
    -------
    OracleResult
        The allocation, its expected ACR and the relaxation's upper bound.
    """
    sigma = check_sigma(sigma)
    alpha = check_alpha(alpha)
    budget = float(budget)
    if not (np.isfinite(budget) and budget >= 0):
        raise ValueError(f"budget ({budget}) must be a finite number >= 0")
    _, p_A, correct = _arrays(0, p_A, correct)
    m = p_A.size
    if k_grid is None:
        k_grid = default_k_grid(int(max(10 * budget, 10**6)))
    k_grid = np.asarray(k_grid)
    if k_grid.ndim != 1 or k_grid.size == 0 or k_grid.dtype.kind not in "iu":
        raise ValueError("k_grid must be a non-empty 1-d array of integers")
    if np.any(k_grid < 0):
        raise ValueError(f"k_grid ({k_grid[k_grid < 0][0]}) must hold sample sizes >= 0")
    k_grid = np.unique(np.concatenate([[0], k_grid.astype(np.int64)]))

    gains = _gain(k_grid[None, :], p_A[:, None], correct[:, None], sigma, alpha)  # (m, g)
    # Segments of every image's hull: (slope, image, from-vertex, to-vertex).
    seg_img, seg_from, seg_to = [], [], []
    for i in range(m):
        if not correct[i] or gains[i, -1] <= 0:
            continue
        h = _upper_hull(k_grid.astype(np.float64), gains[i])
        # Drop the hull's flat tail: extra samples that buy no radius.
        h = h[: int(np.argmax(gains[i, h])) + 1]
        seg_img.append(np.full(len(h) - 1, i))
        seg_from.append(h[:-1])
        seg_to.append(h[1:])
    k = np.zeros(m, np.int64)
    total = budget * m
    if not seg_img:
        return OracleResult(k, 0.0, 0.0, 0.0, budget, k_grid)
    seg_img = np.concatenate(seg_img)
    seg_from = np.concatenate(seg_from)
    seg_to = np.concatenate(seg_to)
    d_k = (k_grid[seg_to] - k_grid[seg_from]).astype(np.float64)
    d_gain = gains[seg_img, seg_to] - gains[seg_img, seg_from]
    slope = d_gain / d_k
    # Decreasing slope; within an image the hull's slopes already decrease, and the stable
    # sort on (slope, vertex) keeps an image's segments in hull order on exact ties.
    order = np.lexsort((seg_from, -slope))

    spent = 0.0
    value = 0.0
    bound = None
    blocked = np.zeros(m, bool)
    for s in order:
        i = seg_img[s]
        if blocked[i]:
            continue
        if spent + d_k[s] <= total:
            spent += d_k[s]
            value += d_gain[s]
            k[i] = k_grid[seg_to[s]]
        else:
            if bound is None:  # the Lagrangian bound: this segment taken fractionally
                bound = value + d_gain[s] * (total - spent) / d_k[s]
            blocked[i] = True
    if bound is None:  # every segment fitted: the allocation is optimal outright
        bound = value
    acr = float(np.mean(_gain(k, p_A, correct, sigma, alpha)))
    return OracleResult(k, acr, float(max(bound, value) / m), float(k.mean()), budget, k_grid)
