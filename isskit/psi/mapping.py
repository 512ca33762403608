"""The ISS mapping psi, exactly: the sample size that keeps the radius decline within U.

Names follow DESIGN.md's maths and Chen et al. (AAAI 2022):

===================  ==========================================================
name                 symbol
===================  ==========================================================
``k_bar``            desired sample size (the reference budget), bar k
``U``                maximum decline, absolute (AD) or relative (RD)
``decline``          ``"ad"`` or ``"rd"``
``sigma``            noise level
``alpha``            one-sided failure probability of the certificate
``delta``            grid step of the tabulated mapping (paper Alg. 1)
``psi``              psi(p) = min {k : decline(k; k_bar, p) <= U}, 0 where the
                     target radius is <= 0
``psi_iss``          psi on the grid, off the grid the max of the two
                     neighbouring grid values (paper Eq. 6)
``k_hat``            max(psi_iss(p_low), psi_iss(p_up)) (paper Alg. 2)
===================  ==========================================================

The decline is the one :mod:`isskit.stats` computes (``absolute_decline`` /
``relative_decline``, expected radius with the non-integer count ``p k``), and
"k meets the bound" means exactly ``decline(k; k_bar, p) <= U`` evaluated with those
floating-point operations, so :func:`psi_exact` agrees with a brute-force scan that
uses the same formula.

This module computes psi at given points (:func:`psi_exact`), and over a cell of the grid
the bound the ``"sup"`` mapping looks up; :mod:`isskit.psi.table` tabulates it
(:class:`~isskit.psi.table.PsiTable`). It never prints, never plots and never imports torch
or click.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import betainc, ndtr, ndtri

from isskit._bisect import bisect, bisect_float
from isskit.stats import expected_radius
from isskit.validate import (
    check_alpha,
    check_decline,
    check_sample_size,
    check_sigma,
    check_U,
)

__all__ = [
    "psi_exact",
]


def _check_params(k_bar, U, decline, sigma, alpha):
    k_bar = check_sample_size(k_bar, "k_bar")
    decline = check_decline(decline)
    U = check_U(U, decline)
    sigma = check_sigma(sigma)
    alpha = check_alpha(alpha)
    return k_bar, U, decline, sigma, alpha


def _check_p(p, name: str = "p") -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    bad = ~((p >= 0.0) & (p <= 1.0))
    if np.any(bad):
        raise ValueError(f"{name} ({p[bad].flat[0]}) must be in [0, 1]")
    return p


def _target(r_bar: np.ndarray, U: float, decline: str) -> np.ndarray:
    """The radius R(k, p) must reach: ``R_bar - U`` (AD) or ``(1 - U) R_bar`` (RD)."""
    return r_bar - U if decline == "ad" else (1.0 - U) * r_bar


def _meets(k, p, r_bar, U, decline, sigma, alpha) -> np.ndarray:
    """Whether ``decline(k; k_bar, p) <= U``, with exactly the operations of isskit.stats.

    ``k = 0`` (no samples: abstain) never meets here; callers only ask where the target
    radius is > 0, and there abstaining loses the whole radius R_bar > U (or > U R_bar).
    """
    k = np.asarray(k)
    out = np.zeros(k.shape, dtype=bool)
    pos = k >= 1
    if np.any(pos):
        # Same operations as stats.absolute_decline / relative_decline.
        drop = r_bar[pos] - expected_radius(k[pos], p[pos], sigma, alpha)
        if decline == "rd":
            drop = drop / r_bar[pos]
        out[pos] = drop <= U
    return out


def _bisect_betainc(p, q_star, k_bar, alpha) -> np.ndarray:
    """Smallest k in [1, k_bar] with ``I_{q*}(p k, k - p k + 1) <= alpha``, all p at once.

    The forward regularised incomplete beta is about 15x cheaper than its inverse, and
    ``Beta(alpha; a, b) >= q*`` iff ``I_{q*}(a, b) <= alpha`` (the CDF is increasing), so
    the search runs on ``betainc``; the caller re-checks the answer with the exact
    inverse. Assumes the predicate is monotone in k (see :func:`psi_exact`).
    """

    def meets(mid, rows):
        kf = mid.astype(np.float64)
        a = p[rows] * kf
        return betainc(a, kf - a + 1.0, q_star[rows]) <= alpha

    # k = 0 fails (no samples); k_bar meets (decline(k_bar) = 0 <= U)
    _, hi = bisect(np.zeros(p.shape, np.int64), np.full(p.shape, k_bar, np.int64), meets)
    return hi


def _bisect_exact(p, r_bar, k_bar, U, decline, sigma, alpha) -> np.ndarray:
    """Bisection on the exact predicate (:func:`_meets`); the fallback of the fast search."""

    def meets(mid, rows):
        return _meets(mid, p[rows], r_bar[rows], U, decline, sigma, alpha)

    _, hi = bisect(np.zeros(p.shape, np.int64), np.full(p.shape, k_bar, np.int64), meets)
    return hi


def psi_exact(p, k_bar, U, decline, sigma, alpha) -> np.ndarray:
    """The exact mapping ``psi(p) = min {k >= 1 : decline(k; k_bar, p) <= U}``, vectorised.

    0 where the target radius ``R(k_bar, p) - U`` (AD) or ``(1 - U) R(k_bar, p)`` (RD)
    is <= 0: there the certificate is worth at most U (AD) or nothing (RD), so ISS
    abstains after the pilot. Elsewhere ``1 <= psi(p) <= k_bar`` (k_bar itself has
    decline 0).

    Algorithm. ``R(k, p) >= target`` iff the Clopper-Pearson bound
    ``Beta(alpha; p k, k - p k + 1)`` reaches ``q* = Phi(target / sigma)``, iff
    ``I_{q*}(p k, k - p k + 1) <= alpha``. The search runs on that forward incomplete
    beta (several times cheaper than the Beta quantile), for all p at once: a secant
    iteration in ``sqrt(k)`` (:func:`_secant_guess`) gives the candidate; then the exact
    predicate ``decline(k) <= U`` of :mod:`isskit.stats` is evaluated at the candidate and
    at candidate - 1 (two Beta quantiles per p). Where that check fails (a secant not
    converged, or a tie within an ulp where the two formulations round differently), the
    point is redone by bisection on the forward function and, if still needed, by
    bisection on the exact predicate.

    The answer is the exact minimum when ``R(k, p)`` is non-decreasing in k, which the
    search relies on ("k meets, k - 1 fails" is then the global minimum). That is
    checked, not assumed: a Hypothesis property in the tests, exhaustive scans recorded
    in ``docs/mapping.md``, and
    :func:`isskit.psi.verify.verify` with ``check_minimal=True`` scans every k below psi for
    the user's parameters. For ``alpha >= 1/2`` the bound is not monotone in k (above the
    median, more samples pull the quantile down towards p), and this function scans k
    upward instead, which finds the exact minimum without that assumption.

    Parameters
    ----------
    p : float or array_like
        True top-class probabilities p_A in [0, 1].
    k_bar : int
        Desired sample size, >= 1.
    U : float
        Maximum decline, > 0 (and < 1 for RD).
    decline : {"ad", "rd"}
        Absolute or relative radius decline.
    sigma : float
        Noise level, > 0.
    alpha : float
        One-sided failure probability in (0, 1).

    Returns
    -------
    ndarray of int64
        psi(p), the shape of ``p``.
    """
    k_bar, U, decline, sigma, alpha = _check_params(k_bar, U, decline, sigma, alpha)
    p = _check_p(p)
    shape = p.shape
    p = p.ravel()
    out = np.zeros(p.shape, dtype=np.int64)
    # p <= 1/2: the lower bound Beta(alpha; ...) is < p <= 1/2, so R(k_bar, p) < 0 and
    # the target is negative. Skipping those halves the work on a grid from 0.
    idx = np.flatnonzero(p > 0.5) if alpha < 0.5 else np.flatnonzero(p > 0.0)
    if idx.size == 0:
        return out.reshape(shape)
    pa = p[idx]
    r_bar = expected_radius(k_bar, pa, sigma, alpha)
    target = _target(r_bar, U, decline)
    act = target > 0
    idx, pa, r_bar, target = idx[act], pa[act], r_bar[act], target[act]
    if idx.size == 0:
        return out.reshape(shape)
    if alpha >= 0.5:
        out[idx] = _scan_exact(pa, r_bar, k_bar, U, decline, sigma, alpha)
        return out.reshape(shape)
    q_star = ndtr(target / sigma)
    k = _secant_guess(pa, q_star, r_bar / sigma, k_bar, alpha)
    good = _is_minimum(k, pa, r_bar, U, decline, sigma, alpha)
    if not np.all(good):
        # Secant not converged (rare, next to p = 1): bisection on betainc, then the same
        # exact re-check; what still disagrees (a tie within an ulp) bisects exactly.
        bad = np.flatnonzero(~good)
        k[bad] = _bisect_betainc(pa[bad], q_star[bad], k_bar, alpha)
        good = _is_minimum(k[bad], pa[bad], r_bar[bad], U, decline, sigma, alpha)
        bad = bad[~good]
        if bad.size:
            k[bad] = _bisect_exact(pa[bad], r_bar[bad], k_bar, U, decline, sigma, alpha)
    out[idx] = k
    return out.reshape(shape)


def _is_minimum(k, p, r_bar, U, decline, sigma, alpha) -> np.ndarray:
    """Whether k meets the bound and k - 1 does not (two exact Beta quantiles per point)."""
    return _meets(k, p, r_bar, U, decline, sigma, alpha) & ~_meets(
        k - 1, p, r_bar, U, decline, sigma, alpha
    )


def _secant_guess(p, q_star, z_bar, k_bar, alpha, max_iter: int = 8) -> np.ndarray:
    """Candidate psi: the root in k of ``I_{q*}(p k, k - p k + 1) = alpha``, rounded up.

    In the normal approximation the incomplete beta at q* is ``Phi((q* - p) sqrt(k) /
    s)``, so ``Phi^-1(I) - Phi^-1(alpha)`` is nearly linear in ``s = sqrt(k)``, and a
    secant iteration in s (continuous k, the forward function only) converges in two or
    three steps. It starts from the same approximation calibrated at k_bar, where the
    bound ``Phi(z_bar)`` is already known: ``p - bound`` scales as ``1/sqrt(k)``. At p = 1
    the bound is ``alpha**(1/k)`` and the root ``log(alpha) / log(q*)`` is exact.
    """
    z_alpha = ndtri(alpha)
    s_max = math.sqrt(k_bar)

    def h(s, sel):
        k = s * s
        a = p[sel] * k
        with np.errstate(divide="ignore"):
            return ndtri(betainc(a, k - a + 1.0, q_star[sel])) - z_alpha

    with np.errstate(divide="ignore", invalid="ignore"):
        s1 = s_max * (p - ndtr(z_bar)) / (p - q_star)
        one = p == 1.0
        s1[one] = np.sqrt(np.log(alpha) / np.log(q_star[one]))
    s1 = np.clip(np.nan_to_num(s1, nan=s_max), 1.0, s_max)
    todo = np.flatnonzero(~one)
    s0 = np.clip(s1[todo] * 1.02, 1.0, s_max)
    s0 = np.where(s0 == s1[todo], s1[todo] * 0.98, s0)
    h0 = h(s0, todo)
    h1 = h(s1[todo], todo)
    for _ in range(max_iter):
        if todo.size == 0:
            break
        with np.errstate(divide="ignore", invalid="ignore"):
            s2 = s1[todo] - h1 * (s1[todo] - s0) / (h1 - h0)
        s2 = np.clip(np.where(np.isfinite(s2), s2, s1[todo]), 1.0, s_max)
        # converged when k = s^2 moves by less than 0.01: then rounding up is decided
        moving = np.abs(s2 * s2 - s1[todo] ** 2) >= 0.01
        s0, h0 = s1[todo][moving], h1[moving]
        s1[todo] = s2
        todo = todo[moving]
        h1 = h(s1[todo], todo) if todo.size else h1[:0]
    k = np.ceil(s1 * s1 - 1e-6)
    return np.clip(k, 1, k_bar).astype(np.int64)


def _scan_exact(p, r_bar, k_bar, U, decline, sigma, alpha, chunk: int = 1024) -> np.ndarray:
    """Smallest k meeting the bound by scanning k = 1, 2, ... (no monotonicity assumed).

    All points advance together, a chunk of k at a time; a point leaves the scan at its
    first k that meets the bound (k_bar always does).
    """
    out = np.zeros(p.shape, dtype=np.int64)
    todo = np.arange(p.size)
    for start in range(1, k_bar + 1, chunk):
        if todo.size == 0:
            break
        ks = np.arange(start, min(start + chunk, k_bar + 1), dtype=np.int64)
        kk = np.broadcast_to(ks, (todo.size, ks.size))
        ok = _meets(kk, np.broadcast_to(p[todo, None], kk.shape),
                    np.broadcast_to(r_bar[todo, None], kk.shape), U, decline, sigma, alpha)
        hit = ok.any(axis=1)
        out[todo[hit]] = ks[np.argmax(ok[hit], axis=1)]
        todo = todo[~hit]
    return out


def _cell_values(p, k, mapping, k_bar, U, decline, sigma, alpha) -> np.ndarray:
    """Per-cell lookup values (see :class:`~isskit.psi.table.PsiTable`)."""
    neighbour_max = np.maximum(k[:-1], k[1:])
    if mapping == "paper":
        return neighbour_max
    return _cell_sup(p, k, neighbour_max, k_bar, U, decline, sigma, alpha)


def _cell_sup(p, k, neighbour_max, k_bar, U, decline, sigma, alpha) -> np.ndarray:
    """Upper bound on psi over each closed cell, for the ``"sup"`` mapping.

    Where psi is monotone across a cell its sup is at one of the cell's ends, so the
    neighbour max is the sup (that psi is monotone inside every other cell is what
    :mod:`isskit.psi.verify` checks on a fine grid). The cells where the target radius
    turns positive hold a jump of psi from 0 up to its right limit at the sign change
    p0 (k_bar itself for RD, where R(k_bar, p0) = 0 leaves no room for any decline);
    there psi is evaluated on points packed geometrically towards p0.
    """
    out = neighbour_max.copy()
    for i in _threshold_cells(k):
        ps = _threshold_samples(p[i], p[i + 1], k_bar, U, decline, sigma, alpha)
        out[i] = max(out[i], int(psi_exact(ps, k_bar, U, decline, sigma, alpha).max()))
        if decline == "rd":
            # the limit at p0 from above is k_bar itself: R(k_bar, p0) = 0 > R(k, p0) for
            # k < k_bar, so no smaller k reaches a target (1 - U) R(k_bar, p) -> 0+
            out[i] = k_bar
    return out


def _threshold_cells(k) -> np.ndarray:
    """Cells whose left end has psi = 0 and right end psi > 0 (the target turns positive)."""
    return np.flatnonzero((k[:-1] == 0) & (k[1:] > 0))


def _threshold(lo, hi, k_bar, U, decline, sigma, alpha) -> float:
    """The smallest float p in (lo, hi] where the target radius is > 0 (bisection to an ulp)."""

    def positive(p, rows):
        return _target(np.asarray(expected_radius(k_bar, p, sigma, alpha)), U, decline) > 0

    _, p0 = bisect_float(np.array([lo]), np.array([hi]), positive)
    return float(p0[0])


def _threshold_samples(lo, hi, k_bar, U, decline, sigma, alpha) -> np.ndarray:
    """Points of the cell ``(lo, hi]`` from the sign change p0 on.

    p0 itself, points packed geometrically towards p0 (down to 1e-12 of the cell), and
    evenly spaced points up to ``hi``.
    """
    p0 = _threshold(lo, hi, k_bar, U, decline, sigma, alpha)
    t = np.concatenate([[0.0], np.geomspace(1e-12, 1.0, 49), np.linspace(0.0, 1.0, 17)[1:]])
    return np.unique(np.minimum(p0 + t * (hi - p0), hi))
