"""Validity audit: how often each policy certifies a bound above the true p_A.

A certificate claims, with failure probability at most ``alpha``, that the chosen class's
probability is at least ``p_lower``. This module measures the failure rate on streams
whose p_A is known, for Cohen's CERTIFY, one-stage IAS and both forms of ISS. It matters
for the paper-faithful ISS, which reuses its pilot: the pilot both decides the sample size
``k_hat`` and is counted in the final estimate, so the count over ``[0, k_hat)`` is not a
binomial with a sample size fixed in advance, and Clopper-Pearson's guarantee does not
apply to it as it stands.

The stream audited is two-class: each sample is the top class (label 0) with probability
``p_A`` and the runner-up (label 1) otherwise, so the pilot may also choose the wrong
class, whose true probability is ``1 - p_A``. A *failure* is an image where the policy
certifies (``p_lower >= 1/2``) a bound above the true probability of the class it chose.

Two computations, which check each other:

* :func:`failure_probability`, exact: a sum over every pilot count of its binomial
  probability times the exact conditional probability that the count the policy takes
  reaches the failure threshold. That count is ``Binomial(k_hat, p)`` on fresh samples;
  for the reused pilot it is ``pilot + Binomial(k_hat - k0, p)`` when ``k_hat >= k0`` and
  ``Hypergeometric(k0, pilot, k_hat)`` (the first ``k_hat`` of the ``k0`` pilot samples)
  when ``k_hat < k0``. These are exactly the distributions of the counts a replay over a
  stream of i.i.d. samples takes, given the pilot count.
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
from isskit._validate import (
    OVERHEAD_BYTES,
    ArgumentError,
    check_memory,
    check_positive_int,
    check_sigma,
)
from isskit.policies import IAS, ISS, Cohen
from isskit.psi import psi_table
from isskit.stats import cp_interval, cp_lower

__all__ = [
    "DEFAULT_P_A",
    "AuditRow",
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


def _table(policy: ISS, sigma: float):
    return psi_table(
        policy.k_bar, policy.U, policy.decline, sigma, policy.alpha, policy.delta,
        mapping=policy.mapping,
    )


def _pilot(policy, x0: np.ndarray, p: float, sigma: float):
    """From pilot counts of class 0: chosen class's pilot count, its true p, and k_hat."""
    k0 = policy.k0
    # The most frequent label, ties to the smaller (label 0, the top class).
    top = x0 >= k0 - x0
    x_c = np.where(top, x0, k0 - x0)
    p_c = np.where(top, p, 1.0 - p)
    p_low, p_up = cp_interval(x_c, k0, policy.alpha)
    k_hat = np.asarray(_table(policy, sigma).k_hat(p_low, p_up), dtype=np.int64)
    return x_c, p_c, k_hat


def _check_policy(policy):
    if not isinstance(policy, Cohen | IAS | ISS):
        raise ValueError(f"policy ({policy!r}) must be a Cohen, IAS or ISS policy")
    return policy


# --------------------------------------------------------------------------- exact


def failure_probability(policy, p_A: float, sigma: float = 0.5) -> float:
    """Exact probability that ``policy`` certifies a bound above its class's true p.

    Parameters
    ----------
    policy : Cohen, IAS or ISS
        The policy (its alpha is the one audited).
    p_A : float
        Top-class probability of the two-class stream, in [0, 1].
    sigma : float
        Noise level: the ISS mapping psi depends on it (the others do not).

    Returns
    -------
    float
        The failure probability, summed over every pilot / selection count.
    """
    policy = _check_policy(policy)
    p = _check_p(p_A)
    sigma = check_sigma(sigma)
    alpha = policy.alpha
    if isinstance(policy, Cohen):
        n0, n = policy.n0, policy.n
        p_top = st.binom.sf(np.ceil(n0 / 2) - 1, n0, p)  # P(X0 >= n0/2): ties go to label 0
        m = _threshold(np.array([n, n]), np.array([p, 1 - p]), alpha)
        tails = st.binom.sf(m - 1, n, np.array([p, 1 - p]))
        return float(p_top * tails[0] + (1 - p_top) * tails[1])
    if isinstance(policy, IAS):
        n = policy.n
        # x top-class samples of n: the class chosen is the top class when x >= n - x
        # (ties to label 0), i.e. x >= ceil(n/2), and fails once its count x reaches its
        # threshold m[0]; the runner-up is chosen when x <= ceil(n/2) - 1 and fails once
        # n - x reaches m[1]. Two binomial tails: no array of the n + 1 counts (8 TB at
        # n = 10^12).
        m = _threshold(np.array([n, n]), np.array([p, 1 - p]), alpha)
        half = -(-n // 2)
        top_fails = st.binom.sf(max(int(m[0]), half) - 1, n, p)
        runner_up_fails = st.binom.cdf(min(half - 1, n - int(m[1])), n, p)
        return float(top_fails + runner_up_fails)
    k0 = policy.k0
    lo, hi = _pilot_window(policy, p)
    x0 = np.arange(lo, hi + 1)
    weight = st.binom.pmf(x0, k0, p)
    x_c, p_c, k_hat = _pilot(policy, x0, p, sigma)
    m = _threshold(k_hat, p_c, alpha)
    if policy.fresh:
        cond = st.binom.sf(m - 1, k_hat, p_c)
    else:
        extra = np.maximum(k_hat - k0, 0)
        above = st.binom.sf(m - x_c - 1, extra, p_c)  # k_hat >= k0: pilot + fresh tail
        below = st.hypergeom.sf(m - 1, k0, x_c, np.maximum(k_hat, 0))  # first k_hat of pilot
        cond = np.where(k_hat >= k0, above, below)
    cond = np.where(k_hat > 0, cond, 0.0)
    return float(np.sum(weight * cond))


def _pilot_window(policy: ISS, p: float) -> tuple[int, int]:
    """The pilot counts ``lo..hi`` the exact ISS sum visits, checked against its bounds.

    Counts outside the central 1 - 2e-18 of Binomial(k0, p) are skipped: they change the
    sum by less than 2e-18 and would cost most of the time for large k0. The upper end
    comes from the lower tail of the failures, Binomial(k0, 1 - p): SciPy's isf at 1e-18
    returns k0 itself (1 - 1e-18 rounds to 1), which made the window span a tenth of k0
    at p = 0.9 (10^11 counts at k0 = 10^12) instead of about 18 standard deviations.
    """
    k0 = policy.k0
    first = st.binom.ppf(_TAIL, k0, p)
    last = k0 - st.binom.ppf(_TAIL, k0, 1.0 - p)
    lo, hi = max(int(first) - 1, 0), min(int(last) + 1, k0)
    _check_exact_size(policy, p, hi - lo + 1)
    return lo, hi


def _check_exact_size(policy, p: float, counts: int) -> None:
    """Refuse an exact ISS sum over more pilot counts than the work or the memory allows."""
    if counts > _MAX_PILOT_COUNTS:
        raise ArgumentError(
            "policies", "{name} ({policy}): the exact failure probability at p_A = {p:g} sums "
            "over {counts:,} pilot counts of k0 = {k0:,}, more than the {cap:,} an audit "
            "visits (each costs a Clopper-Pearson interval); choose a smaller k0",
            policy=policy.name, p=p, counts=counts, k0=policy.k0, cap=_MAX_PILOT_COUNTS,
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


def simulate(policy, p_A: float, trials: int, rng, sigma: float = 0.5):
    """Draw the counts a replay would take for ``trials`` independent images.

    Parameters
    ----------
    policy : Cohen, IAS or ISS
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
    dict
        Arrays per image: ``prediction`` (0 top class, 1 runner-up, -1 abstain),
        ``p_lower``, ``samples`` (consumed), ``p_true`` (true probability of the chosen
        class) and ``failure``.
    """
    policy = _check_policy(policy)
    p = _check_p(p_A)
    trials = _check_trials(trials, minimum=1)
    sigma = check_sigma(sigma)
    if isinstance(policy, Cohen):
        x0 = rng.binomial(policy.n0, p, trials)
        top = x0 >= policy.n0 - x0
        p_c = np.where(top, p, 1.0 - p)
        k = np.full(trials, policy.n)
        count = rng.binomial(policy.n, p_c)
        samples = np.full(trials, policy.n0 + policy.n)
    elif isinstance(policy, IAS):
        x = rng.binomial(policy.n, p, trials)
        top = x >= policy.n - x
        p_c = np.where(top, p, 1.0 - p)
        k = np.full(trials, policy.n)
        count = np.where(top, x, policy.n - x)
        samples = k.copy()
    else:
        k0 = policy.k0
        x0 = rng.binomial(k0, p, trials)
        top = x0 >= k0 - x0
        x_c, p_c, k = _pilot(policy, x0, p, sigma)
        count = np.zeros(trials, np.int64)
        go = k > 0
        if policy.fresh:
            count[go] = rng.binomial(k[go], p_c[go])
            samples = k0 + k
        else:
            more = go & (k >= k0)
            count[more] = x_c[more] + rng.binomial(k[more] - k0, p_c[more])
            less = go & (k < k0)
            count[less] = rng.hypergeometric(x_c[less], k0 - x_c[less], k[less])
            samples = np.maximum(k0, k)
    p_lower = np.where(k > 0, cp_lower(count, np.maximum(k, 1), policy.alpha), 0.0)
    certified = (k > 0) & (p_lower >= 0.5)
    prediction = np.where(certified, np.where(top, 0, 1), -1)
    return {
        "prediction": prediction,
        "p_lower": p_lower,
        "samples": samples,
        "p_true": p_c,
        "failure": certified & (p_lower > p_c),
    }


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
    policies : list of Cohen, IAS or ISS, optional
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
        if isinstance(policy, ISS):
            for p in ps:
                _pilot_window(policy, p)
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
                failures = int(sim["failure"].sum())
                lo, hi = cp_interval(failures, trials, 1.0 - confidence)
                certified = float(np.mean(sim["prediction"] >= 0))
                mean_samples = float(np.mean(sim["samples"]))
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
