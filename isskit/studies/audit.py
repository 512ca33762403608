"""Validity audit: how often each policy certifies a bound above the true p_A.

A certificate claims, with failure probability at most ``alpha``, that the chosen class's
probability is at least ``p_lower``. This module measures the failure rate on streams
whose p_A is known, for every radius policy (Cohen's CERTIFY, one-stage IAS, both forms of
ISS, or one of a user's own): it executes the policy's own plan
(:meth:`isskit.policies.RadiusPolicy.plan`) and knows no policy by name. It matters
for the paper-faithful ISS, which reuses its pilot: the pilot both decides the sample size
``k_hat`` and is counted in the final estimate, so the count over ``[0, k_hat)`` is not a
binomial with a sample size fixed in advance, and Clopper-Pearson's guarantee does not
apply to it as it stands. :func:`audit` also takes decision policies (``question ==
"decision"``: adaptive, staged, cs) and hands them to
:func:`isskit.studies.decision_audit.audit_decisions` (their false-certification rate at
``p = p0`` and below).

The stream audited is two-class: each sample is the top class (label 0) with probability
``p_A`` and the runner-up (label 1) otherwise, so the pilot may also choose the wrong
class, whose true probability is ``1 - p_A``. A *failure* is an image where the policy
certifies (``p_lower >= 1/2``) a bound above the true probability of the class it chose.

Two computations, which check each other (radius policies):

* :func:`failure_probability` (:mod:`isskit.studies._radius_laws`), exact: a sum over every
  selection count of its binomial probability times the exact conditional probability that
  the count the policy takes reaches the failure threshold. That count is
  ``Binomial(k, p)`` on a range after the selection (Cohen, fresh ISS); on a range from 0
  that covers the selection (IAS, ISS reusing its pilot with ``k_hat >= k0``) it is
  ``pilot + Binomial(k - k0, p)``, and on a range inside it ``Hypergeometric(k0, pilot, k)``
  (ISS with ``k_hat < k0``). These are exactly the distributions of the counts a replay
  over a stream of i.i.d. samples takes, given the pilot count.
* :func:`simulate` (:mod:`isskit.studies._radius_sim`), Monte Carlo: draws the same counts
  for ``trials`` independent images (the shortcut: counts, not streams, since only counts
  enter the certificate) and reports the failure rate with a two-sided Clopper-Pearson
  interval. ``tests/test_audit.py`` checks the shortcut against
  :func:`isskit.replay.replay` over real synthetic streams.

This module never prints and never reads or writes files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from isskit.policies import ISS, Cohen
from isskit.stats import cp_interval
from isskit.studies import decision_audit
from isskit.studies._radius_laws import (  # noqa: F401  (private names: tests/test_sizes.py)
    _BYTES_PER_PILOT_COUNT,
    _check_p,
    _check_policy,
    _selection_window,
    failure_probability,
)
from isskit.studies._radius_sim import (  # noqa: F401
    _BYTES_PER_TRIAL,
    Simulation,
    _check_confidence,
    _check_trials,
    simulate,
)
from isskit.validate import check_positive_int, check_sigma

__all__ = [
    "DEFAULT_OFFSETS",
    "DEFAULT_P_A",
    "AuditRow",
    "DecisionAuditRow",
    "Simulation",
    "audit",
    "default_policies",
    "failure_probability",
    "simulate",
]

#: p_A values audited by default: where certificates are made (p_A > 1/2), denser where
#: ISS's sample size changes fastest (near 1).
DEFAULT_P_A = (0.5, 0.55, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.995, 0.999)
#: Distances below p0 a decision policy is audited at (0: the hardest p, p0 itself).
DEFAULT_OFFSETS = decision_audit.DEFAULT_OFFSETS
DecisionAuditRow = decision_audit.DecisionAuditRow


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


def audit(
    policies=None,
    p_A=DEFAULT_P_A,
    *,
    trials: int = 100_000,
    sigma: float = 0.5,
    seed: int = 0,
    confidence: float = 0.95,
    progress=None,
    offsets=DEFAULT_OFFSETS,
    decision_trials: int = 0,
) -> list:
    """Audit every policy: radius policies at every p_A, decision policies at p0 and below.

    The policies are dispatched by the question they answer (``policy.question``), never by
    class. A radius policy gets its simulated failure rate with its interval and its exact
    probability at each p_A (:class:`AuditRow`); a decision policy its false-certification
    probability at ``p = p0 - offset`` for each offset, exact where its thresholds allow,
    simulated otherwise (:class:`DecisionAuditRow`,
    :func:`isskit.studies.decision_audit.audit_decisions`).

    Parameters
    ----------
    policies : list of policies, optional
        Default :func:`default_policies`.
    p_A : sequence of float
        Top-class probabilities at which radius policies are audited.
    trials : int
        Simulated images per (radius policy, p_A); 0 computes only the exact probability.
    sigma : float
        Noise level (the ISS mapping; a decision policy's ``p0 = Phi(r / sigma)``).
    seed : int
        Seed of the generator; each (policy, p) gets its own stream from it.
    confidence : float
        Level of the two-sided Clopper-Pearson interval on a simulated rate.
    progress : callable, optional
        Called once per (policy, p) done, e.g. a tqdm bar's ``update``.
    offsets : sequence of float
        Distances below p0 at which decision policies are audited (0: the hardest p).
    decision_trials : int
        Simulated streams per (decision policy, p) next to an exact law, as a check; 0
        simulates only decision policies without one (at least 10^6 streams).

    Returns
    -------
    list of AuditRow and DecisionAuditRow
        Policy-major order, in the order of ``policies``.

    Examples
    --------
    >>> from isskit.policies import CS, Cohen
    >>> from isskit.studies.audit import audit
    >>> rows = audit([Cohen(n0=100, n=10_000), CS(r=0.5, n_max=2000)], [0.9], trials=0,
    ...              offsets=[0.0])
    >>> [type(r).__name__ for r in rows]
    ['AuditRow', 'DecisionAuditRow']
    """
    policies = default_policies() if policies is None else list(policies)
    if not policies:
        raise ValueError("audit needs at least one policy")
    decide = [getattr(q, "question", None) == "decision" for q in policies]
    radius = [_check_policy(q) for q, d in zip(policies, decide, strict=True) if not d]
    ps = [_check_p(p) for p in np.atleast_1d(p_A)]  # checked even where only decisions use none
    if radius and not ps:
        raise ValueError("audit needs at least one p_A")
    trials = _check_trials(trials, minimum=0)  # before any policy runs, not after the first
    confidence = _check_confidence(confidence)
    sigma = check_sigma(sigma)
    seed = check_positive_int(seed, "seed", minimum=0)
    decision_trials = check_positive_int(decision_trials, "decision_trials", minimum=0)
    for policy in radius:  # every exact sum's size, before the first one runs
        if not policy.fixed_samples:
            for p in ps:
                _selection_window(policy, p)
    decision = [q for q, d in zip(policies, decide, strict=True) if d]
    d_rows = decision_audit.audit_decisions(
        decision, sigma, offsets, trials=decision_trials, seed=seed, confidence=confidence,
        progress=progress) if decision else []
    r_rows = _audit_radius(radius, ps, trials, sigma, seed, confidence, progress)
    # back to the order of ``policies``: each kind's rows are policy-major
    n_d, n_r = (len(d_rows) // len(decision) if decision else 0), len(ps)
    out, i_d, i_r = [], 0, 0
    for d in decide:
        if d:
            out += d_rows[i_d:i_d + n_d]
            i_d += n_d
        else:
            out += r_rows[i_r:i_r + n_r]
            i_r += n_r
    return out


def _audit_radius(policies, ps, trials, sigma, seed, confidence, progress) -> list[AuditRow]:
    """The radius policies' rows (seeded as before decision policies joined the audit)."""
    seeds = np.random.SeedSequence(seed).spawn(len(policies) * len(ps))
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
