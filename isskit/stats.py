"""Clopper-Pearson bounds, the certified radius and the radius declines of ISS.

Names follow DESIGN.md's maths and Chen et al. (AAAI 2022):

===================  ==========================================================
name                 symbol
===================  ==========================================================
``k_A``              top-class count among ``k`` samples
``alpha``            failure probability (one-sided for :func:`cp_lower`)
``sigma``            noise level of the smoothing distribution N(0, sigma^2 I)
``p``                true top-class probability p_A
``k_bar``            desired sample size (the reference budget)
===================  ==========================================================

Every function is vectorised over NumPy broadcasting and exact against
``scipy.stats.beta.ppf`` (``scipy.special.betaincinv`` is the same Boost routine
without the distribution-object overhead). This module never prints and never
imports torch.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.special import betaincinv, ndtri

from isskit.validate import check_alpha, check_sigma

__all__ = [
    "CPInterval",
    "absolute_decline",
    "certified_radius",
    "cp_interval",
    "cp_lower",
    "expected_radius",
    "relative_decline",
]


class CPInterval(NamedTuple):
    """A two-sided Clopper-Pearson interval (as scipy's ``BinomTestResult.proportion_ci``).

    A named tuple, so ``p_low, p_up = cp_interval(...)`` still unpacks.

    Attributes
    ----------
    low, high : float or ndarray
        ``p_low`` and ``p_up``.
    """

    low: object
    high: object


def _counts(k_A, k):
    """Broadcast and check counts: integers with 0 <= k_A <= k and k >= 1."""
    k_A = np.asarray(k_A)
    k = np.asarray(k)
    for name, arr in (("k_A", k_A), ("k", k)):
        if arr.dtype.kind not in "iuf" or (
            arr.dtype.kind == "f" and not np.all(np.isfinite(arr) & (arr == np.round(arr)))
        ):
            raise ValueError(f"{name} ({arr!r}) must hold integer counts")
    k_A, k = np.broadcast_arrays(k_A.astype(np.float64), k.astype(np.float64))
    if np.any(k < 1):
        raise ValueError(f"k ({k[k < 1].flat[0]:g}) must be >= 1")
    if np.any((k_A < 0) | (k_A > k)):
        bad = (k_A < 0) | (k_A > k)
        raise ValueError(f"k_A ({k_A[bad].flat[0]:g}) must be in [0, k] (k = {k[bad].flat[0]:g})")
    return k_A, k


def _scalar_or_array(out):
    return out[()] if isinstance(out, np.ndarray) and out.ndim == 0 else out


def cp_lower(k_A, k, alpha):
    """One-sided Clopper-Pearson lower confidence bound on p_A at level ``1 - alpha``.

    ``Beta(alpha; k_A, k - k_A + 1)``, the ``alpha`` quantile, and 0 when ``k_A = 0``.
    This is Cohen et al.'s ``lowerConfBound`` (``proportion_confint(k_A, k,
    alpha=2*alpha, method="beta")[0]``).

    Parameters
    ----------
    k_A : int or array_like of int
        Top-class counts, ``0 <= k_A <= k``.
    k : int or array_like of int
        Sample sizes, ``>= 1``. Broadcast against ``k_A``.
    alpha : float
        Failure probability in (0, 1).

    Returns
    -------
    float or ndarray
        The lower bound p_lower, in [0, 1).
    """
    alpha = check_alpha(alpha)
    k_A, k = _counts(k_A, k)
    with np.errstate(invalid="ignore"):
        out = np.where(k_A > 0, betaincinv(np.maximum(k_A, 1.0), k - k_A + 1.0, alpha), 0.0)
    return _scalar_or_array(out)


def cp_interval(k_A, k, alpha):
    """Two-sided Clopper-Pearson interval ``[p_low, p_up]`` at level ``1 - alpha``.

    ``p_low = Beta(alpha/2; k_A, k - k_A + 1)`` (0 when ``k_A = 0``) and
    ``p_up = Beta(1 - alpha/2; k_A + 1, k - k_A)`` (1 when ``k_A = k``). ISS
    takes its pilot interval from here (the paper's Alg. 2, line 3).

    Parameters
    ----------
    k_A, k : int or array_like of int
        Top-class counts and sample sizes, ``0 <= k_A <= k``, ``k >= 1``.
    alpha : float
        Total failure probability in (0, 1), split equally between the two tails.

    Returns
    -------
    CPInterval
        ``(low, high)`` = ``(p_low, p_up)``, floats or arrays.

    References
    ----------
    Clopper and Pearson (1934); Chen et al. (2022), Alg. 2, line 3.

    Examples
    --------
    >>> from isskit.stats import cp_interval
    >>> ci = cp_interval(990, 1000, 0.001)
    >>> round(float(ci.low), 6), round(float(ci.high), 6)
    (0.974937, 0.997292)
    """
    alpha = check_alpha(alpha)
    k_A, k = _counts(k_A, k)
    with np.errstate(invalid="ignore"):
        low = np.where(k_A > 0, betaincinv(np.maximum(k_A, 1.0), k - k_A + 1.0, alpha / 2), 0.0)
        up = np.where(
            k_A < k, betaincinv(k_A + 1.0, np.maximum(k - k_A, 1.0), 1.0 - alpha / 2), 1.0
        )
    return CPInterval(_scalar_or_array(low), _scalar_or_array(up))


def certified_radius(p_lower, sigma):
    """Certified l2 radius ``sigma * Phi^-1(p_lower)``, 0 where the certificate abstains.

    Cohen et al. certify when ``p_lower >= 1/2`` (compared exactly, at 1/2 the radius
    is 0 but a prediction is made) and abstain otherwise. Use
    ``p_lower >= 0.5`` to tell the two zero radii apart.

    Parameters
    ----------
    p_lower : float or array_like
        Lower confidence bounds on p_A, in [0, 1].
    sigma : float
        Noise level, > 0.

    Returns
    -------
    float or ndarray
        The radius, >= 0.
    """
    sigma = check_sigma(sigma)
    p_lower = np.asarray(p_lower, dtype=np.float64)
    if np.any(~((p_lower >= 0.0) & (p_lower <= 1.0))):
        bad = p_lower[~((p_lower >= 0.0) & (p_lower <= 1.0))].flat[0]
        raise ValueError(f"p_lower ({bad}) must be in [0, 1]")
    out = np.where(p_lower >= 0.5, sigma * ndtri(np.maximum(p_lower, 0.5)), 0.0)
    return _scalar_or_array(out)


def expected_radius(k, p, sigma, alpha):
    """Expected certified radius ``R(k, p) = sigma * Phi^-1(Beta(alpha; p k, k - p k + 1))``.

    The radius certified at sample size ``k`` when the top-class count takes its
    expected value ``p k`` (a non-integer count, as in the paper's Eq. 3). It is not
    clipped at 0: below p_lower = 1/2 it is negative, and ``-inf`` at ``p = 0``,
    which keeps :func:`absolute_decline` defined everywhere; callers that want the
    certificate clip themselves.

    Parameters
    ----------
    k : int or array_like of int
        Sample sizes, ``>= 1``.
    p : float or array_like
        True top-class probabilities p_A, in [0, 1].
    sigma : float
        Noise level, > 0.
    alpha : float
        One-sided failure probability in (0, 1).

    Returns
    -------
    float or ndarray
        ``R(k, p)``, broadcast over ``k`` and ``p``.
    """
    sigma = check_sigma(sigma)
    alpha = check_alpha(alpha)
    k = np.asarray(k)
    if k.dtype.kind not in "iuf" or np.any(k < 1) or np.any(k != np.round(k)):
        raise ValueError(f"k ({k!r}) must hold integers >= 1")
    p = np.asarray(p, dtype=np.float64)
    if np.any(~((p >= 0.0) & (p <= 1.0))):
        raise ValueError(f"p ({p[~((p >= 0.0) & (p <= 1.0))].flat[0]}) must be in [0, 1]")
    k, p = np.broadcast_arrays(k.astype(np.float64), p)
    a = p * k
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(a > 0, betaincinv(np.where(a > 0, a, 1.0), k - a + 1.0, alpha), 0.0)
        out = sigma * ndtri(q)
    return _scalar_or_array(out)


def absolute_decline(k, k_bar, p, sigma, alpha):
    """Absolute radius decline ``AD(k; k_bar, p) = R(k_bar, p) - R(k, p)`` (paper Eq. 4).

    Parameters
    ----------
    k, k_bar : int or array_like of int
        Sample size and desired sample size, ``>= 1``.
    p : float or array_like
        True top-class probability p_A, in (0, 1].
    sigma, alpha : float
        Noise level and one-sided failure probability.

    Returns
    -------
    float or ndarray
        The decline; ``nan`` at ``p = 0`` where both radii are ``-inf``.
    """
    with np.errstate(invalid="ignore"):
        return expected_radius(k_bar, p, sigma, alpha) - expected_radius(k, p, sigma, alpha)


def relative_decline(k, k_bar, p, sigma, alpha):
    """Relative radius decline ``RD = AD(k; k_bar, p) / R(k_bar, p)`` (paper Eq. 5).

    Meaningful where ``R(k_bar, p) > 0``; elsewhere the ratio is returned as computed
    (negative, infinite or nan), and :mod:`isskit.psi` treats those p as abstaining.

    Parameters
    ----------
    k, k_bar : int or array_like of int
        Sample size and desired sample size, ``>= 1``.
    p : float or array_like
        True top-class probability p_A, in [0, 1].
    sigma, alpha : float
        Noise level and one-sided failure probability.

    Returns
    -------
    float or ndarray
        The relative decline.
    """
    r_bar = expected_radius(k_bar, p, sigma, alpha)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (r_bar - expected_radius(k, p, sigma, alpha)) / r_bar
