"""Validity audit: how often each policy certifies a bound above the true p_A.

A certificate claims, with failure probability at most ``alpha``, that the chosen class's
probability is at least ``p_lower``. This module measures the failure rate on streams
whose p_A is known, for every radius policy (Cohen's CERTIFY, one-stage IAS, both forms of
ISS, or one of a user's own): it executes the policy's own plan
(:meth:`isskit.policies.RadiusPolicy.plan`) and knows no policy by name. It matters
for the paper-faithful ISS, which reuses its pilot: the pilot both decides the sample size
``k_hat`` and is counted in the final estimate, so the count over ``[0, k_hat)`` is not a
binomial with a sample size fixed in advance, and Clopper-Pearson's guarantee does not
apply to it as it stands.

The stream audited is two-class: each sample is the top class (label 0) with probability
``p_A`` and the runner-up (label 1) otherwise, so the pilot may also choose the wrong
class, whose true probability is ``1 - p_A``. A *failure* is an image where the policy
certifies (``p_lower >= 1/2``) a bound above the true probability of the class it chose.

Two computations, which check each other:

* :func:`failure_probability`, exact: a sum over every selection count of its binomial
  probability times the exact conditional probability that the count the policy takes
  reaches the failure threshold. That count is ``Binomial(k, p)`` on a range after the
  selection (Cohen, fresh ISS); on a range from 0 that covers the selection (IAS, ISS
  reusing its pilot with ``k_hat >= k0``) it is ``pilot + Binomial(k - k0, p)``, and on a
  range inside it ``Hypergeometric(k0, pilot, k)`` (ISS with ``k_hat < k0``). These are
  exactly the distributions of the counts a replay over a stream of i.i.d. samples takes,
  given the pilot count.
* :func:`simulate`, Monte Carlo: draws the same counts for ``trials`` independent images
  (the shortcut: counts, not streams, since only counts enter the certificate) and
  reports the failure rate with a two-sided Clopper-Pearson interval. ``tests/test_audit.py``
  checks the shortcut against :func:`isskit.replay.replay` over real synthetic streams.

This module never prints and never reads or writes files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as st

from isskit._bisect import bisect
from isskit.policies import ISS, KINDS, Cohen, CountPlan, RadiusPolicy
from isskit.stats import cp_interval, cp_lower
from isskit.validate import (
    OVERHEAD_BYTES,
    ArgumentError,
    check_memory,
    check_positive_int,
    check_sigma,
)

__all__ = [
    "DEFAULT_P_A",
    "AuditRow",
    "Simulation",
    "audit",
    "default_policies",
    "failure_probability",
    "simulate",
]

#: p_A values audited by default: where certificates are made (p_A > 1/2), denser where
#: ISS's sample size changes fastest (near 1).
DEFAULT_P_A = (0.5, 0.55, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.995, 0.999)


#: Pilot-count tail mass :func:`failure_probability` may skip on each side.
_TAIL = 1e-18

#: Peak bytes per simulated image of :func:`simulate` (about 95 measured with tracemalloc
#: for every policy kind: a dozen int64/float64 arrays of ``trials`` values and SciPy's
#: temporaries; ``tests/test_audit.py`` checks the bound), so ``trials`` can be checked
#: against the memory left before anything is drawn.
_BYTES_PER_TRIAL = 128
#: Peak bytes per pilot count of the exact ISS sum (about 170 measured for large windows).
_BYTES_PER_PILOT_COUNT = 256
#: Most pilot counts the exact ISS sum visits. Each costs a two-sided Clopper-Pearson
#: interval, whose Beta quantiles slow down as k0 grows (measured: 11 us per count at
#: k0 = 10^4, 60 at 10^8, 190 at 10^10, 820 at 10^12), so a million counts is minutes at
#: worst. The window is about 17.6 standard deviations of Binomial(k0, p_A) wide: k0 up
#: to about 10^10 at p_A = 1/2 fits.
_MAX_PILOT_COUNTS = 10**6


def default_policies() -> list:
    """Cohen's CERTIFY (n0 = 100, n = 100,000) and ISS-AD-10-0.05 reused and fresh."""
    return [
        Cohen(n0=100, n=100_000),
        ISS(k_bar=100_000, U=0.05, decline="ad"),
        ISS(k_bar=100_000, U=0.05, decline="ad", fresh=True),
    ]


@dataclass(frozen=True)
class AuditRow:
    """The audit of one policy at one p_A.

    Attributes
    ----------
    policy : str
        The policy's name.
    p_A : float
        True probability of the top class.
    alpha : float
        The policy's failure probability.
    trials : int
        Simulated images (0 when only the exact value was computed).
    failures : int
        Simulated images whose certified bound exceeds the chosen class's probability.
    rate, ci_low, ci_high : float
        ``failures / trials`` and its two-sided Clopper-Pearson interval at ``confidence``.
    exact : float
        Exact failure probability (:func:`failure_probability`).
    certified : float
        Share of simulated images that were certified (``p_lower >= 1/2``).
    mean_samples : float
        Mean samples consumed per simulated image.
    confidence : float
        Level of the interval.
    """

    policy: str
    p_A: float
    alpha: float
    trials: int
    failures: int
    rate: float
    ci_low: float
    ci_high: float
    exact: float
    certified: float
    mean_samples: float
    confidence: float

    @property
    def exceeds_alpha(self) -> bool:
        """Whether the exact failure probability is above alpha (beyond float rounding)."""
        return self.exact > self.alpha * (1 + 1e-9)

    @property
    def significant(self) -> bool:
        """Whether the simulated rate is above alpha with the interval's confidence."""
        return self.trials > 0 and self.ci_low > self.alpha

    def to_dict(self) -> dict:
        """The row as a plain dict, with ``exceeds_alpha`` and ``significant``."""
        out = asdict(self)
        out.update(exceeds_alpha=self.exceeds_alpha, significant=self.significant)
        return out


# --------------------------------------------------------------------------- pieces


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
            "policies have their exact audit in isskit.decision_audit (docs/audit.md)"
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


def _check_trials(trials: int, minimum: int) -> int:
    """``trials`` as an int >= ``minimum``, refused before drawing if it cannot fit."""
    trials = check_positive_int(trials, "trials", minimum=minimum)
    check_memory(OVERHEAD_BYTES + _BYTES_PER_TRIAL * trials, "trials", trials,
                 f"the simulated counts of every image, {_BYTES_PER_TRIAL} bytes each")
    return trials


# --------------------------------------------------------------------------- Monte Carlo


@dataclass(frozen=True)
class Simulation:
    """Counts a replay would take for independent images of a known p_A (:func:`simulate`).

    Attributes
    ----------
    prediction : ndarray of int64
        0 the top class, 1 the runner-up, -1 an abstention.
    p_lower : ndarray of float64
        The certificate's bound (0 without an estimate).
    samples : ndarray of int64
        Samples consumed.
    p_true : ndarray of float64
        True probability of the chosen class.
    failure : ndarray of bool
        Certified with ``p_lower`` above ``p_true``.
    """

    prediction: np.ndarray
    p_lower: np.ndarray
    samples: np.ndarray
    p_true: np.ndarray
    failure: np.ndarray


def simulate(policy, p_A: float, trials: int, rng, sigma: float = 0.5) -> Simulation:
    """Draw the counts a replay would take for ``trials`` independent images.

    Parameters
    ----------
    policy : RadiusPolicy
        The policy.
    p_A : float
        Top-class probability of the two-class stream.
    trials : int
        Number of images.
    rng : numpy.random.Generator
        Source of randomness.
    sigma : float
        Noise level (for the ISS mapping).

    Returns
    -------
    Simulation
        Arrays, one entry per image.
    """
    policy = _check_policy(policy)
    p = _check_p(p_A)
    trials = _check_trials(trials, minimum=1)
    sigma = check_sigma(sigma)
    m = policy.selection_size
    x0 = rng.binomial(m, p, trials)
    top, x_c, p_c = _selection(m, p, x0)
    start, k = _plan(policy, x_c, sigma)
    fresh, covers, inside = _law(policy, start, k)
    count = np.zeros(trials, np.int64)
    # Draw order (fresh, then covering, then inside ranges) keeps earlier seeds' results.
    count[fresh] = rng.binomial(k[fresh], p_c[fresh])
    count[covers] = x_c[covers] + rng.binomial(k[covers] - m, p_c[covers])
    count[inside] = rng.hypergeometric(x_c[inside], m - x_c[inside], k[inside])
    samples = np.broadcast_to(policy.samples_consumed(CountPlan(start, k)), (trials,))
    p_lower = np.where(k > 0, cp_lower(count, np.maximum(k, 1), policy.alpha), 0.0)
    certified = (k > 0) & (p_lower >= 0.5)
    prediction = np.where(certified, np.where(top, 0, 1), -1)
    return Simulation(
        prediction=prediction,
        p_lower=p_lower,
        samples=np.array(samples),
        p_true=p_c,
        failure=certified & (p_lower > p_c),
    )


def audit(
    policies=None,
    p_A=DEFAULT_P_A,
    *,
    trials: int = 100_000,
    sigma: float = 0.5,
    seed: int = 0,
    confidence: float = 0.95,
    progress=None,
) -> list[AuditRow]:
    """Audit every policy at every p_A: simulated failure rate with its interval, and exact.

    Parameters
    ----------
    policies : list of RadiusPolicy, optional
        Default :func:`default_policies`.
    p_A : sequence of float
        Top-class probabilities to audit.
    trials : int
        Simulated images per (policy, p_A); 0 computes only the exact probability.
    sigma : float
        Noise level of the ISS mapping.
    seed : int
        Seed of the generator; each (policy, p_A) gets its own stream from it.
    confidence : float
        Level of the two-sided Clopper-Pearson interval on the rate.
    progress : callable, optional
        Called once per (policy, p_A) done, e.g. a tqdm bar's ``update``.

    Returns
    -------
    list of AuditRow
        Policy-major order.
    """
    policies = default_policies() if policies is None else [_check_policy(q) for q in policies]
    if not policies:
        raise ValueError("audit needs at least one policy")
    ps = [_check_p(p) for p in np.atleast_1d(p_A)]
    if not ps:
        raise ValueError("audit needs at least one p_A")
    trials = _check_trials(trials, minimum=0)  # before any policy runs, not after the first
    if not (isinstance(confidence, float | int) and 0.0 < confidence < 1.0):
        raise ArgumentError("confidence", "{name} ({value}) must be in (0, 1)", value=confidence)
    confidence = float(confidence)
    sigma = check_sigma(sigma)
    for policy in policies:  # every exact sum's size, before the first one runs
        if not policy.fixed_samples:
            for p in ps:
                _selection_window(policy, p)
    seeds = np.random.SeedSequence(check_positive_int(seed, "seed", minimum=0)).spawn(
        len(policies) * len(ps)
    )
    rows = []
    for i, policy in enumerate(policies):
        for j, p in enumerate(ps):
            exact = failure_probability(policy, p, sigma)
            if trials:
                rng = np.random.default_rng(seeds[i * len(ps) + j])
                sim = simulate(policy, p, trials, rng, sigma)
                failures = int(sim.failure.sum())
                lo, hi = cp_interval(failures, trials, 1.0 - confidence)
                certified = float(np.mean(sim.prediction >= 0))
                mean_samples = float(np.mean(sim.samples))
            else:
                failures, lo, hi, certified, mean_samples = 0, 0.0, 1.0, np.nan, np.nan
            rows.append(
                AuditRow(
                    policy=policy.name,
                    p_A=p,
                    alpha=policy.alpha,
                    trials=trials,
                    failures=failures,
                    rate=failures / trials if trials else np.nan,
                    ci_low=float(lo),
                    ci_high=float(hi),
                    exact=exact,
                    certified=certified,
                    mean_samples=mean_samples,
                    confidence=confidence,
                )
            )
            if progress is not None:
                progress(1)
    return rows
