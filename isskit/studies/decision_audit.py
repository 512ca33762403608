"""False-certification probabilities of the decision policies (:mod:`isskit.decision`).

A decision policy claims "certified at radius r", that is, the class it names has
probability above ``p0 = Phi(r / sigma)`` (for ``cs`` and ``staged``: the true label's
probability; adaptive: the chosen class's). A *false certification* is that claim made for a
class whose probability is at most ``p0``; a valid policy makes it with probability at most
``alpha``, whatever the stream. The hardest stream has ``p = p0`` exactly: the probability
of certifying rises with p, so its value at ``p0`` bounds the rate at every p below (and is
the limit of the rate from below, where the claim is strictly false).

A policy's law on an i.i.d. stream is computed exactly where its thresholds allow, chosen
by what the policy says about itself, not by its class:

* thresholds after every draw (:class:`~isskit.policies.cs.CSThresholds`, ``cs``): a dynamic
  programme over the count after each draw, restricted to the band between the two
  thresholds (O(sqrt(t)) wide, :func:`isskit.replay._kernels.cs_band_dp`);
* stage thresholds on the true label, pooled (``uses_true_label``, ``staged``): the count
  after each stage, convolved with the next stage's binomial and absorbed at the stage's
  thresholds (binomial tails below 1e-20 per stage are dropped);
* stage thresholds after a fresh selection (``selection_ranges``, ``adaptive``): on a
  two-class stream (the class of interest, label 0, with probability p, a runner-up,
  label 1, otherwise), each stage's selection is a binomial vote on ``n0`` fresh draws
  (ties to label 0), its count a binomial on ``n_i`` fresh draws, and stages are
  independent: a product over stages of closed-form binomial probabilities.

Any other decision policy is simulated (:mod:`isskit.studies._decision_sim`): the policy's
own replay over two-class streams, at least 10^6 of them, with a Clopper-Pearson interval;
the same simulation cross-checks the exact laws on request (``trials``).

This module never prints and never reads or writes files.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as st

from isskit.policies._decide import StageThresholds, _p0
from isskit.policies.cs import CSThresholds
from isskit.replay import _kernels
from isskit.stats import cp_interval
from isskit.studies._decision_sim import simulate_decision
from isskit.studies._radius_sim import _check_confidence
from isskit.validate import ArgumentError, check_positive_int, check_sigma

__all__ = [
    "DEFAULT_OFFSETS",
    "DecisionAuditRow",
    "DecisionLaw",
    "audit_decisions",
    "decision_law",
    "exact_law",
    "false_certification",
    "simulate_decision",
]

#: Audited p below p0 by default: p0 itself (the hardest) and three values under it.
DEFAULT_OFFSETS = (0.0, 0.001, 0.003, 0.01)

#: Binomial tail mass :func:`decision_law` may drop on each side of a staged stage.
_TAIL = 1e-20
#: Fewest simulated streams that stand in for an exact law (the issue: at least 10^6).
MIN_SIMULATED = 10**6


@dataclass(frozen=True)
class DecisionLaw:
    """What a decision policy does on an i.i.d. stream with success probability p.

    Attributes
    ----------
    certified : float
        P(certified), any class.
    not_certified, undecided : float
        P(not certified), P(undecided).
    mean_samples : float
        Expected samples consumed.
    certified_runner_up : float
        Adaptive on the two-class stream: P(certified, with the runner-up chosen); 0 for
        ``cs`` and ``staged``, which test the true label.
    """

    certified: float
    not_certified: float
    undecided: float
    mean_samples: float
    certified_runner_up: float = 0.0


def _check_p(p) -> float:
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p ({p}) must be in [0, 1]")
    return p


def _band_law(th: CSThresholds, p: float) -> DecisionLaw:
    out = np.zeros(4, np.float64)
    _kernels.cs_band_dp(th.lo, th.hi, th.n_max, p, out)
    return DecisionLaw(certified=float(out[0]), not_certified=float(out[1]),
                       undecided=float(out[2]), mean_samples=float(out[3]))


def _pooled_law(th: StageThresholds, p: float) -> DecisionLaw:
    values = np.zeros(1, np.int64)  # live counts before stage 1: 0 with probability 1
    prob = np.ones(1, np.float64)
    cert = rej = mean = 0.0
    for j, n in enumerate(np.diff(th.ends, prepend=0)):  # each stage's new draws
        n = int(n)
        first, last = st.binom.ppf(_TAIL, n, p), st.binom.isf(_TAIL, n, p)
        x = np.arange(max(int(first) - 1, 0), min(int(last) + 1, n) + 1)
        mass = np.convolve(prob, st.binom.pmf(x, n, p))
        values = values[0] + x[0] + np.arange(mass.size)
        up = values >= th.cert_min[j]
        down = ~up & (values <= th.stop_max[j])
        c, r = float(mass[up].sum()), float(mass[down].sum())
        cert, rej = cert + c, rej + r
        mean += th.ends[j] * (c + r)
        live = ~(up | down)
        values, prob = values[live], mass[live]
        if values.size == 0:
            break
    undecided = float(prob.sum())
    mean += th.ends[-1] * undecided
    return DecisionLaw(certified=cert, not_certified=rej, undecided=undecided,
                       mean_samples=float(mean))


def _fresh_stage_law(th: StageThresholds, n0: int, p: float) -> DecisionLaw:
    K = len(th.ends)
    # label 0 is chosen when its vote X0 >= n0 - X0 (ties go to the smaller label)
    s0 = float(st.binom.sf(math.ceil(n0 / 2) - 1, n0, p))
    sel = np.array([s0, 1.0 - s0])
    p_class = np.array([p, 1.0 - p])
    reach = 1.0
    cert = np.zeros(2)
    rej = mean = 0.0
    for j, n in enumerate(th.sizes):
        c, s = th.cert_min[j], th.stop_max[j]
        p_cert = st.binom.sf(c - 1, n, p_class)
        if j < K - 1:
            p_stop = st.binom.cdf(s, n, p_class)
            p_go = np.clip(st.binom.cdf(c - 1, n, p_class) - p_stop, 0.0, None)
        else:
            p_stop = st.binom.cdf(c - 1, n, p_class)  # after the last stage: not certified
            p_go = np.zeros(2)
        cert += reach * sel * p_cert
        r = reach * float(np.dot(sel, p_stop))
        rej += r
        mean += th.ends[j] * (reach * float(np.dot(sel, p_cert)) + r)
        reach *= float(np.dot(sel, p_go))
    return DecisionLaw(certified=float(cert.sum()), not_certified=rej, undecided=0.0,
                       mean_samples=float(mean), certified_runner_up=float(cert[1]))


def _check_decision(policy):
    if getattr(policy, "question", None) != "decision":
        raise ValueError(f"policy ({policy!r}) must be a decision policy (adaptive, staged, cs)")
    return policy


def exact_law(policy, p, sigma) -> DecisionLaw | None:
    """The exact law of ``policy``'s decision on an i.i.d. stream, or None if not computable.

    Chosen by the policy's thresholds and what it observes (the module docstring), never
    by its class: a new decision policy with the same kind of thresholds gets its law here.

    Parameters
    ----------
    policy : DecisionPolicy
    p : float
        Probability of a success (the true label, or label 0 of the two-class stream of a
        policy that chooses its class), in [0, 1].
    sigma : float
        Noise level (``p0 = Phi(r / sigma)``).

    Returns
    -------
    DecisionLaw or None
    """
    policy = _check_decision(policy)
    p = _check_p(p)
    sigma = check_sigma(sigma)
    thresholds = getattr(policy, "thresholds", None)
    if thresholds is None:
        return None
    th = thresholds(sigma)
    if isinstance(th, CSThresholds):
        return _band_law(th, p)
    if isinstance(th, StageThresholds):
        if policy.uses_true_label:
            return _pooled_law(th, p)
        widths = {b - a for a, b in policy.selection_ranges}
        if len(widths) == 1 and len(policy.selection_ranges) == len(th.ends):
            return _fresh_stage_law(th, widths.pop(), p)
    return None


def decision_law(policy, p, sigma) -> DecisionLaw:
    """The exact law of ``policy``'s decision on an i.i.d. stream (see the module docstring).

    Parameters
    ----------
    policy : DecisionPolicy
    p : float
        Probability of a success (``cs``, ``staged``: the true label; adaptive: label 0 of
        the two-class stream), in [0, 1].
    sigma : float
        Noise level (``p0 = Phi(r / sigma)``).

    Returns
    -------
    DecisionLaw

    Raises
    ------
    ValueError
        If the policy's law is not computable exactly (:func:`exact_law` gives None).

    Examples
    --------
    >>> from isskit.policies import CS
    >>> from isskit.studies.decision_audit import decision_law
    >>> law = decision_law(CS(r=0.5, n_max=5000), 0.99, sigma=0.5)
    >>> round(law.certified, 6), law.mean_samples < 200
    (1.0, True)
    """
    law = exact_law(policy, p, sigma)
    if law is None:
        raise ValueError(f"policy {policy.name}: no exact law; simulate it "
                         "(isskit.studies.decision_audit.simulate_decision)")
    return law


def false_certification(policy, p, sigma) -> float:
    """Probability that ``policy`` certifies a class whose probability is at most p0.

    For ``cs`` and ``staged`` that is P(certified) where ``p <= p0``, else 0. For adaptive
    on the two-class stream, certifying label 0 is false where ``p <= p0`` and certifying
    the runner-up where ``1 - p <= p0``.
    """
    law = decision_law(policy, p, sigma)
    return _false(law, float(p), _p0(policy.r, check_sigma(sigma)))


def _false(law: DecisionLaw, p: float, p0: float) -> float:
    top = law.certified - law.certified_runner_up
    return float(top * (p <= p0) + law.certified_runner_up * (1.0 - p <= p0))


@dataclass(frozen=True)
class DecisionAuditRow:
    """One policy's false-certification probability at one p, exact or simulated.

    Attributes
    ----------
    policy : str
    validity : str
    alpha : float
    sigma, r, p0 : float
    p : float
        Success probability of the stream audited (``p0 - offset``).
    false_certification : float
        Exact probability (NaN where :func:`exact_law` has none).
    certified, not_certified, undecided, mean_samples : float
        The policy's law at p (:class:`DecisionLaw`; simulated shares where not exact).
    exact : bool
        Whether ``false_certification`` and the law are exact.
    trials, failures : int
        Simulated streams and their false certifications (0 and 0 when not simulated).
    rate, ci_low, ci_high : float
        ``failures / trials`` and its two-sided Clopper-Pearson interval at ``confidence``
        (NaN, 0 and 1 when not simulated).
    confidence : float
    """

    policy: str
    validity: str
    alpha: float
    sigma: float
    r: float
    p0: float
    p: float
    false_certification: float
    certified: float
    not_certified: float
    undecided: float
    mean_samples: float
    exact: bool = True
    trials: int = 0
    failures: int = 0
    rate: float = math.nan
    ci_low: float = 0.0
    ci_high: float = 1.0
    confidence: float = 0.95

    @property
    def ratio(self) -> float:
        """The false-certification probability (exact, else the simulated rate) over alpha."""
        return (self.false_certification if self.exact else self.rate) / self.alpha

    @property
    def exceeds_alpha(self) -> bool:
        """Whether the exact probability is above alpha (beyond float rounding)."""
        return self.exact and self.false_certification > self.alpha * (1 + 1e-9)

    @property
    def significant(self) -> bool:
        """Whether the simulated rate is above alpha with the interval's confidence."""
        return self.trials > 0 and self.ci_low > self.alpha

    def to_dict(self) -> dict:
        """The row as a plain dict, with ``ratio``, ``exceeds_alpha`` and ``significant``."""
        return {**asdict(self), "ratio": self.ratio, "exceeds_alpha": self.exceeds_alpha,
                "significant": self.significant}


def _check_offsets(offsets) -> list[float]:
    out = [float(o) for o in np.atleast_1d(offsets)]
    if not out or any(not (o >= 0.0) for o in out):
        raise ArgumentError("offsets", "{name} ({value}) must be one or more values >= 0",
                            value=",".join(f"{o:g}" for o in out))
    return out


def audit_decisions(policies, sigma, offsets=DEFAULT_OFFSETS, *, trials: int = 0,
                    seed: int = 0, confidence: float = 0.95,
                    progress=None) -> list[DecisionAuditRow]:
    """False-certification probability of each policy at ``p = p0 - offset``.

    Exact where :func:`exact_law` computes it; every policy without an exact law is
    simulated over ``max(trials, MIN_SIMULATED)`` two-class streams
    (:func:`simulate_decision`); ``trials > 0`` also simulates the exact ones, as a check.

    Parameters
    ----------
    policies : sequence of DecisionPolicy
    sigma : float
        Noise level.
    offsets : sequence of float
        Distances below p0 to audit, each >= 0 (0: the hardest p).
    trials : int
        Simulated streams per (policy, p); 0: simulate only what has no exact law.
    seed : int
        Seed; each (policy, p) gets its own generator from it.
    confidence : float
        Level of the two-sided Clopper-Pearson interval on a simulated rate.
    progress : callable, optional
        Called once per (policy, p) done.

    Returns
    -------
    list of DecisionAuditRow
        Policy-major order.

    Examples
    --------
    >>> from isskit.policies import CS
    >>> from isskit.studies.decision_audit import audit_decisions
    >>> row = audit_decisions([CS(r=0.5, n_max=2000)], 0.5, offsets=[0.0])[0]
    >>> row.exact, row.false_certification <= row.alpha
    (True, True)
    """
    sigma = check_sigma(sigma)
    offsets = _check_offsets(offsets)
    policies = [_check_decision(q) for q in policies]
    trials = check_positive_int(trials, "trials", minimum=0)
    confidence = _check_confidence(confidence)
    for policy in policies:  # every p = p0 - offset a probability, before anything runs
        p0 = _p0(policy.r, sigma)
        if max(offsets) >= p0:
            raise ArgumentError("offsets", "{name} ({value}) must stay below p0 = {p0:.4g} "
                                "of policy {policy}: the audited p = p0 - offset must be positive",
                                value=f"{max(offsets):g}", p0=p0, policy=policy.name)
    seeds = np.random.SeedSequence(check_positive_int(seed, "seed", minimum=0)).spawn(
        len(policies) * len(offsets))
    rows = []
    for i, policy in enumerate(policies):
        p0 = _p0(policy.r, sigma)
        for j, off in enumerate(offsets):
            p = p0 - off
            law = exact_law(policy, p, sigma)
            exact = law is not None
            n_sim = trials if exact else max(trials, MIN_SIMULATED)
            sim = {}
            if n_sim:
                rng = np.random.default_rng(seeds[i * len(offsets) + j])
                res = simulate_decision(policy, p, n_sim, rng, sigma)
                lo, hi = cp_interval(res.failures, n_sim, 1.0 - confidence)
                sim = dict(trials=n_sim, failures=res.failures, rate=res.failures / n_sim,
                           ci_low=float(lo), ci_high=float(hi))
                law = law if exact else res.law()
            rows.append(DecisionAuditRow(
                policy=policy.name, validity=policy.validity, alpha=policy.alpha,
                sigma=sigma, r=policy.r, p0=p0, p=p,
                false_certification=_false(law, p, p0) if exact else math.nan,
                certified=law.certified, not_certified=law.not_certified,
                undecided=law.undecided, mean_samples=law.mean_samples, exact=exact,
                confidence=confidence, **sim,
            ))
            if progress is not None:
                progress(1)
    return rows
