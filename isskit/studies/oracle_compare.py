"""A policy against IAS and both oracles at the policy's own mean sample size.

:func:`compare_to_oracles` (one policy) and :func:`compare_replayed` (every radius policy of
a replay: ``isskit replay --oracle``) put a policy's ACR beside IAS's expected ACR at the
same mean (:func:`ias_expected_acr`) and both oracles' ACR there
(:class:`isskit.studies.oracle.Oracles`), with the share of each oracle's gain over IAS
that the policy takes (:class:`OracleComparison`).

This module never reads or writes files and never prints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isskit.studies._oracle_core import _check_budget, default_k_grid, expected_acr

__all__ = [
    "COMPARISON_KEYS",
    "OracleComparison",
    "compare_replayed",
    "compare_to_oracles",
    "ias_expected_acr",
]


@dataclass(frozen=True)
class OracleComparison:
    """A policy against IAS and both oracles at the policy's own mean sample size.

    Every ACR here is on the same images; the field names are the keys of
    :meth:`to_dict` (and of ``isskit replay --oracle --json``).

    Attributes
    ----------
    mean_samples : float
        The policy's mean samples per image, the budget everything else is evaluated at.
    policy_acr : float
        The policy's ACR (expected or replayed, as the caller measured it).
    ias_acr_same_samples : float
        IAS's expected ACR at the same mean sample size (:func:`ias_expected_acr`).
    oracle_blind_acr, oracle_aware_acr : float
        Expected ACR of the label-blind and the label-aware oracle at that budget.
    share_blind, share_aware : float
        ``(policy_acr - ias) / (oracle - ias)`` for each oracle: the share of the oracle's
        gain over IAS that the policy takes. NaN where the oracle gains nothing over IAS.
        Not capped: a replayed ACR fluctuates around its expectation, and the label-blind
        oracle does not maximise ACR, so a policy can exceed it.
    """

    mean_samples: float
    policy_acr: float
    ias_acr_same_samples: float
    oracle_blind_acr: float
    oracle_aware_acr: float
    share_blind: float
    share_aware: float

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict (NaN stays a float NaN)."""
        return {f: float(getattr(self, f)) for f in self.__dataclass_fields__}


def ias_expected_acr(mean_samples: float, p_A, correct, sigma: float, alpha: float) -> float:
    """IAS's expected ACR at a (non-integer) mean sample size, exactly.

    At ``n = mean_samples`` with ``n = floor(n) + f``: ``(1 - f) * E[ACR](IAS(floor(n))) +
    f * E[ACR](IAS(floor(n) + 1))``, the expected ACR of the randomised IAS that certifies
    each image with ``floor(n) + 1`` samples with probability ``f`` and ``floor(n)``
    otherwise, whose mean sample size is exactly ``mean_samples``. At an integer it is
    :func:`expected_acr` of ``IAS(n)``; below 1 it interpolates from 0 (no samples).

    Parameters
    ----------
    mean_samples : float
        Mean samples per image, ``>= 0``.
    p_A, correct : array_like
        True top-class probability and correctness per image.
    sigma, alpha : float
        Noise level and one-sided failure probability.

    Returns
    -------
    float

    Examples
    --------
    >>> from isskit.studies.oracle_compare import expected_acr, ias_expected_acr
    >>> p, c = [0.99, 0.8], [True, True]
    >>> lo = expected_acr(1000, p, c, 0.5, 0.001)
    >>> hi = expected_acr(1001, p, c, 0.5, 0.001)
    >>> bool(abs(ias_expected_acr(1000.25, p, c, 0.5, 0.001) - (0.75 * lo + 0.25 * hi)) < 1e-15)
    True
    """
    n = _check_budget(mean_samples, "mean_samples")
    base = int(np.floor(n))
    f = n - base
    lo = expected_acr(base, p_A, correct, sigma, alpha)
    if f == 0.0:
        return lo
    return (1.0 - f) * lo + f * expected_acr(base + 1, p_A, correct, sigma, alpha)


def compare_to_oracles(
    mean_samples: float, policy_acr: float, p_A, correct, *, sigma: float, alpha: float,
    k_grid=None,
) -> OracleComparison:
    """A policy's ACR against IAS and both oracles at the policy's own mean sample size.

    Parameters
    ----------
    mean_samples : float
        The policy's mean samples per image, ``>= 0``.
    policy_acr : float
        The policy's ACR on these images (expected or replayed).
    p_A, correct : array_like
        True top-class probability and correctness per image. For a sampled store the
        empirical frequency of the stream's top class over the whole stream stands in for
        ``p_A`` (``StreamIndex.p_A_empirical``).
    sigma, alpha : float
        Noise level and one-sided failure probability.
    k_grid : array_like of int, optional
        The oracles' candidate sample sizes. Default :func:`default_k_grid` up to
        ``max(10 * mean_samples, 10**6)``.

    Returns
    -------
    OracleComparison

    Examples
    --------
    >>> from isskit.studies.oracle_compare import compare_to_oracles
    >>> c = compare_to_oracles(5_000, 0.55, [0.999, 0.9, 0.7], [True, True, False],
    ...                        sigma=0.5, alpha=0.001)
    >>> sorted(c.to_dict())[:3]
    ['ias_acr_same_samples', 'mean_samples', 'oracle_aware_acr']
    """
    mean_samples = _check_budget(mean_samples, "mean_samples")
    if k_grid is None:
        k_grid = default_k_grid(int(max(10 * mean_samples, 10**6)))
    from isskit.studies.oracle import Oracles  # which imports this module

    return Oracles(p_A, sigma=sigma, alpha=alpha, correct=correct, k_grid=k_grid).compare(
        mean_samples, policy_acr)


#: Per-policy keys :func:`compare_replayed` returns (the ``--oracle --json`` keys).
COMPARISON_KEYS = ("ias_acr_same_samples", "oracle_blind_acr", "oracle_aware_acr",
                   "share_blind", "share_aware")


def compare_replayed(mean_samples, acr, alpha, p_A, correct, *, sigma: float,
                     k_grid=None) -> dict:
    """Every radius policy of a replay against IAS and both oracles at its own mean samples.

    One :class:`Oracles` (hulls computed once) per distinct ``alpha``, then
    :meth:`Oracles.compare` per policy. Policies with a NaN ``acr`` (decision policies: ACR
    does not apply) get NaN in every key.

    Parameters
    ----------
    mean_samples, acr, alpha : array_like of float, shape (P,)
        Each policy's mean samples per image, replayed ACR and certificate alpha.
    p_A, correct : array_like, shape (n,)
        Each image's true top-class probability (or its stand-in) and whether that class is
        the true label.
    sigma : float
        Noise level.
    k_grid : array_like of int, optional
        The oracles' candidate sample sizes. Default :func:`default_k_grid` up to
        ``max(10 * max(mean_samples), 10**6)``.

    Returns
    -------
    dict of str to ndarray of float64, shape (P,)
        The keys of :data:`COMPARISON_KEYS`.

    Examples
    --------
    >>> import numpy as np
    >>> from isskit.studies.oracle_compare import compare_replayed
    >>> out = compare_replayed([5_000, 1_000], [0.55, float("nan")], [0.001, 0.001],
    ...                        [0.999, 0.9, 0.7], [True, True, False], sigma=0.5)
    >>> bool(out["oracle_blind_acr"][0] <= out["oracle_aware_acr"][0])
    True
    >>> bool(np.isnan(out["share_blind"][1]))  # no ACR, no comparison
    True
    """
    mean_samples = np.asarray(mean_samples, dtype=np.float64).reshape(-1)
    acr = np.asarray(acr, dtype=np.float64).reshape(-1)
    alpha = np.asarray(alpha, dtype=np.float64).reshape(-1)
    out = {key: np.full(acr.shape, np.nan) for key in COMPARISON_KEYS}
    rows = np.flatnonzero(np.isfinite(acr))
    if rows.size == 0:
        return out
    if k_grid is None:
        k_grid = default_k_grid(int(max(10 * float(np.max(mean_samples[rows])), 10**6)))
    from isskit.studies.oracle import Oracles  # which imports this module

    for a in np.unique(alpha[rows]):
        oracles = Oracles(p_A, sigma=sigma, alpha=float(a), correct=correct, k_grid=k_grid)
        for i in rows[alpha[rows] == a]:
            c = oracles.compare(float(mean_samples[i]), float(acr[i])).to_dict()
            for key in COMPARISON_KEYS:
                out[key][i] = c[key]
    return out
