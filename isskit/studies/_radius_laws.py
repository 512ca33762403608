"""Exact failure probabilities of radius policies (the law half of :mod:`isskit.studies.audit`).

The stream is two-class: each sample is the top class (label 0) with probability ``p_A``
and the runner-up (label 1) otherwise, so the pilot may also choose the wrong class, whose
true probability is ``1 - p_A``. A *failure* is an image where the policy certifies
(``p_lower >= 1/2``) a bound above the true probability of the class it chose.

:func:`failure_probability` sums over every selection count its binomial probability times
the exact conditional probability that the count the policy takes reaches the failure
threshold. That count is ``Binomial(k, p)`` on a range after the selection (Cohen, fresh
ISS); on a range from 0 that covers the selection (IAS, ISS reusing its pilot with
``k_hat >= k0``) it is ``pilot + Binomial(k - k0, p)``, and on a range inside it
``Hypergeometric(k0, pilot, k)`` (ISS with ``k_hat < k0``). These are exactly the
distributions of the counts a replay over a stream of i.i.d. samples takes, given the pilot
count. The policy's own plan (:meth:`isskit.policies.RadiusPolicy.plan`) gives the ranges;
no policy is known here by name.

This module never prints and never reads or writes files.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as st

from isskit._bisect import bisect
from isskit.policies import KINDS, RadiusPolicy
from isskit.stats import cp_lower
from isskit.validate import OVERHEAD_BYTES, ArgumentError, check_memory, check_sigma

__all__ = ["failure_probability"]

#: Pilot-count tail mass :func:`failure_probability` may skip on each side.
_TAIL = 1e-18
#: Peak bytes per pilot count of the exact ISS sum (about 170 measured for large windows).
_BYTES_PER_PILOT_COUNT = 256
#: Most pilot counts the exact ISS sum visits. Each costs a two-sided Clopper-Pearson
#: interval, whose Beta quantiles slow down as k0 grows (measured: 11 us per count at
#: k0 = 10^4, 60 at 10^8, 190 at 10^10, 820 at 10^12), so a million counts is minutes at
#: worst. The window is about 17.6 standard deviations of Binomial(k0, p_A) wide: k0 up
#: to about 10^10 at p_A = 1/2 fits.
_MAX_PILOT_COUNTS = 10**6


def _check_p(p_A) -> float:
    p = float(p_A)
    if not 0.0 <= p <= 1.0:
        raise ArgumentError("p_A", "{name} ({value}) must be in [0, 1]", value=p_A)
    return p


def _threshold(k: np.ndarray, p_c: np.ndarray, alpha: float) -> np.ndarray:
    """Smallest count y with ``cp_lower(y, k) >= 1/2`` and ``> p_c``; ``k + 1`` if none.

    Both conditions are monotone in y, so a vectorised bisection finds it; ``k = 0``
    (abstain) gets 1, which no count out of 0 reaches.
    """
    k, p_c = np.broadcast_arrays(np.asarray(k, np.int64), np.asarray(p_c, np.float64))

    def meets(mid, rows):
        pl = cp_lower(mid, np.maximum(k[rows], 1), alpha)
        return (pl >= 0.5) & (pl > p_c[rows])

    # lo fails the condition (or is below the domain), hi meets it (or is above it)
    _, hi = bisect(np.full(k.shape, -1, np.int64), k + 1, meets)
    return np.where(k > 0, hi, 1)


def _check_policy(policy):
    if not isinstance(policy, RadiusPolicy):
        radius = [k for k, c in KINDS.items() if issubclass(c, RadiusPolicy)]
        raise ValueError(
            f"policy ({policy!r}) must be a radius policy ({', '.join(radius)}); decision "
            "policies have their own audit (isskit.studies.decision_audit; "
            "isskit.studies.audit.audit takes both, docs/audit.md)"
        )
    return policy


def _selection(m: int, p: float, x0: np.ndarray):
    """Label 0's counts in ``[0, m)`` -> whether it is chosen, the chosen class's count, its p.

    The class chosen is the most frequent label, ties to the smaller one (label 0).
    """
    top = x0 >= m - x0
    return top, np.where(top, x0, m - x0), np.where(top, p, 1.0 - p)


def _plan(policy, x_c: np.ndarray, sigma: float):
    """The policy's own plan for each selection count (asked once per distinct count)."""
    uniq, inv = np.unique(x_c, return_inverse=True)
    plan = policy.plan(uniq.astype(np.int64), sigma=sigma)
    start, k = (np.broadcast_to(np.asarray(v, np.int64), uniq.shape)[inv.reshape(-1)]
                for v in (plan.start, plan.k))
    return start.reshape(x_c.shape), k.reshape(x_c.shape)


def _law(policy, start: np.ndarray, k: np.ndarray):
    """How the count over ``[start, start + k)`` relates to the selection ``[0, m)``.

    Given the chosen class's selection count, the count is ``Binomial(k, p)`` on a range
    after the selection ("fresh"), ``selection count + Binomial(k - m, p)`` on a range
    that starts at 0 and covers it ("covers"), and ``Hypergeometric(m, count, k)`` on a
    range inside it ("inside": i.i.d. samples are exchangeable). Those are the ranges of
    every policy here; one that overlaps part of the selection and goes past it is refused.
    """
    m = policy.selection_size
    go = k > 0
    fresh = go & (start >= m)
    covers = go & ~fresh & (start == 0) & (k >= m)
    inside = go & ~fresh & ~covers & (start + k <= m)
    if np.any(go & ~(fresh | covers | inside)):
        raise ValueError(
            f"policy {policy.name}: a count range that overlaps part of the selection and "
            "goes past it cannot be audited"
        )
    return fresh, covers, inside


# --------------------------------------------------------------------------- exact


def failure_probability(policy, p_A: float, sigma: float = 0.5) -> float:
    """Exact probability that ``policy`` certifies a bound above its class's true p.

    Parameters
    ----------
    policy : RadiusPolicy
        The policy (its alpha is the one audited).
    p_A : float
        Top-class probability of the two-class stream, in [0, 1].
    sigma : float
        Noise level: the ISS mapping psi depends on it (the others do not).

    Returns
    -------
    float
        The failure probability, summed over every selection count.

    Examples
    --------
    >>> from isskit.studies.audit import failure_probability
    >>> from isskit.policies import Cohen
    >>> bool(failure_probability(Cohen(n0=100, n=10_000), 0.9) <= 0.001)
    True
    """
    policy = _check_policy(policy)
    p = _check_p(p_A)
    sigma = check_sigma(sigma)
    m = policy.selection_size
    if policy.fixed_samples:
        closed = _fixed_failure(policy, p, sigma)
        if closed is not None:
            return closed
    lo, hi = _selection_window(policy, p)
    x0 = np.arange(lo, hi + 1)
    weight = st.binom.pmf(x0, m, p)
    _, x_c, p_c = _selection(m, p, x0)
    start, k = _plan(policy, x_c, sigma)
    fresh, covers, inside = _law(policy, start, k)
    thr = _threshold(k, p_c, policy.alpha)
    cond = np.zeros(x0.shape)
    cond[fresh] = st.binom.sf(thr[fresh] - 1, k[fresh], p_c[fresh])
    cond[covers] = st.binom.sf(thr[covers] - x_c[covers] - 1, k[covers] - m, p_c[covers])
    cond[inside] = st.hypergeom.sf(thr[inside] - 1, m, x_c[inside], k[inside])
    return float(np.sum(weight * cond))


def _fixed_failure(policy, p: float, sigma: float) -> float | None:
    """The failure probability of a policy whose count range ignores the selection count.

    Two binomial tails, with no array of the selection's m + 1 counts (8 TB for an IAS of
    n = 10^12): the top class (label 0) is chosen when its count x >= ceil(m/2) (ties to
    label 0), the runner-up otherwise. On a range after the selection (Cohen) the count is
    a fresh binomial; on the selection itself (IAS) it is x, or m - x for the runner-up.
    None for any other range (the caller sums over the selection counts).
    """
    plan = policy.plan(np.zeros(1, np.int64), sigma=sigma)
    start, k = int(np.asarray(plan.start).reshape(-1)[0]), int(np.asarray(plan.k).reshape(-1)[0])
    m = policy.selection_size
    if k == 0:
        return 0.0
    thr = _threshold(np.array([k, k]), np.array([p, 1 - p]), policy.alpha)
    half = -(-m // 2)
    if start >= m:
        p_top = st.binom.sf(half - 1, m, p)  # P(x >= m / 2)
        tails = st.binom.sf(thr - 1, k, np.array([p, 1 - p]))
        return float(p_top * tails[0] + (1 - p_top) * tails[1])
    if start == 0 and k == m:
        top_fails = st.binom.sf(max(int(thr[0]), half) - 1, m, p)
        runner_up_fails = st.binom.cdf(min(half - 1, m - int(thr[1])), m, p)
        return float(top_fails + runner_up_fails)
    return None


def _selection_window(policy, p: float) -> tuple[int, int]:
    """The selection counts ``lo..hi`` the exact sum visits, checked against its bounds.

    Counts outside the central 1 - 2e-18 of Binomial(m, p) are skipped: they change the
    sum by less than 2e-18 and would cost most of the time for large m. The upper end
    comes from the lower tail of the failures, Binomial(m, 1 - p): SciPy's isf at 1e-18
    returns m itself (1 - 1e-18 rounds to 1), which made the window span a tenth of m
    at p = 0.9 (10^11 counts at m = 10^12) instead of about 18 standard deviations.
    """
    m = policy.selection_size
    first = st.binom.ppf(_TAIL, m, p)
    last = m - st.binom.ppf(_TAIL, m, 1.0 - p)
    lo, hi = max(int(first) - 1, 0), min(int(last) + 1, m)
    _check_exact_size(policy, p, hi - lo + 1)
    return lo, hi


def _check_exact_size(policy, p: float, counts: int) -> None:
    """Refuse an exact sum over more selection counts than the work or the memory allows."""
    if counts > _MAX_PILOT_COUNTS:
        raise ArgumentError(
            "policies", "{name} ({policy}): the exact failure probability at p_A = {p:g} sums "
            "over {counts:,} pilot counts of k0 = {k0:,}, more than the {cap:,} an audit "
            "visits (each costs a Clopper-Pearson interval); choose a smaller k0",
            policy=policy.name, p=p, counts=counts, k0=policy.selection_size,
            cap=_MAX_PILOT_COUNTS,
        )
    need = OVERHEAD_BYTES + _BYTES_PER_PILOT_COUNT * counts
    check_memory(need, "policies", policy.name,
                 f"the exact failure probability sums over {counts:,} pilot counts, "
                 f"{_BYTES_PER_PILOT_COUNT} bytes each; a smaller k0 needs fewer")
