"""Exact false-certification probabilities of the decision policies (:mod:`isskit.decision`).

A decision policy claims "certified at radius r", that is, the class it names has
probability above ``p0 = Phi(r / sigma)`` (for ``cs`` and ``staged``: the true label's
probability; adaptive: the chosen class's). A *false certification* is that claim made for a
class whose probability is at most ``p0``; a valid policy makes it with probability at most
``alpha``, whatever the stream. The hardest stream has ``p = p0`` exactly: the probability
of certifying rises with p, so its value at ``p0`` bounds the rate at every p below (and is
the limit of the rate from below, where the claim is strictly false).

Every policy's law is computed exactly on an i.i.d. stream, no simulation:

* ``cs``: a dynamic programme over the count after each draw, restricted to the band
  between the two thresholds (O(sqrt(t)) wide, :func:`isskit.replay._kernels.cs_band_dp`);
* ``staged``: the count after each stage, convolved with the next stage's binomial and
  absorbed at the stage's thresholds (binomial tails below 1e-20 per stage are dropped);
* ``adaptive``: on a two-class stream (the class of interest, label 0, with probability p,
  a runner-up, label 1, otherwise), each stage's selection is a binomial vote on ``n0``
  fresh draws (ties to label 0), its count a binomial on ``n_i`` fresh draws, and stages
  are independent: a product over stages of closed-form binomial probabilities.

This module never prints and never reads or writes files.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as st

from isskit.policies import CS, Adaptive, Staged
from isskit.policies._decide import _p0
from isskit.replay import _kernels
from isskit.validate import check_sigma

__all__ = [
    "DEFAULT_OFFSETS",
    "DecisionAuditRow",
    "DecisionLaw",
    "audit_decisions",
    "decision_law",
    "false_certification",
]

#: Audited p below p0 by default: p0 itself (the hardest) and three values under it.
DEFAULT_OFFSETS = (0.0, 0.001, 0.003, 0.01)

#: Binomial tail mass :func:`decision_law` may drop on each side of a staged stage.
_TAIL = 1e-20


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


def _cs_law(policy: CS, p: float, sigma: float) -> DecisionLaw:
    th = policy.thresholds(sigma)
    out = np.zeros(4, np.float64)
    _kernels.cs_band_dp(th.lo, th.hi, th.n_max, p, out)
    return DecisionLaw(certified=float(out[0]), not_certified=float(out[1]),
                       undecided=float(out[2]), mean_samples=float(out[3]))


def _staged_law(policy: Staged, p: float, sigma: float) -> DecisionLaw:
    th = policy.thresholds(sigma)
    values = np.zeros(1, np.int64)  # live counts before stage 1: 0 with probability 1
    prob = np.ones(1, np.float64)
    cert = rej = mean = 0.0
    for j, n in enumerate(policy.stages):
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


def _adaptive_law(policy: Adaptive, p: float, sigma: float) -> DecisionLaw:
    th = policy.thresholds(sigma)
    n0 = policy.n0
    K = len(policy.stages)
    # label 0 is chosen when its vote X0 >= n0 - X0 (ties go to the smaller label)
    s0 = float(st.binom.sf(math.ceil(n0 / 2) - 1, n0, p))
    sel = np.array([s0, 1.0 - s0])
    p_class = np.array([p, 1.0 - p])
    reach = 1.0
    cert = np.zeros(2)
    rej = mean = 0.0
    for j, n in enumerate(policy.stages):
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


def decision_law(policy, p, sigma) -> DecisionLaw:
    """The exact law of ``policy``'s decision on an i.i.d. stream (see the module docstring).

    Parameters
    ----------
    policy : Adaptive, Staged or CS
    p : float
        Probability of a success (``cs``, ``staged``: the true label; adaptive: label 0 of
        the two-class stream), in [0, 1].
    sigma : float
        Noise level (``p0 = Phi(r / sigma)``).

    Returns
    -------
    DecisionLaw
    """
    p = _check_p(p)
    sigma = check_sigma(sigma)
    if isinstance(policy, CS):
        return _cs_law(policy, p, sigma)
    if isinstance(policy, Staged):
        return _staged_law(policy, p, sigma)
    if isinstance(policy, Adaptive):
        return _adaptive_law(policy, p, sigma)
    raise ValueError(f"policy ({policy!r}) must be an Adaptive, Staged or CS policy")


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
    """One policy's exact false-certification probability at one p.

    Attributes
    ----------
    policy : str
    validity : str
    alpha : float
    sigma, r, p0 : float
    p : float
        Success probability of the stream audited (``p0 - offset``).
    false_certification : float
    certified, not_certified, undecided, mean_samples : float
        The policy's law at p (:class:`DecisionLaw`).
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

    @property
    def ratio(self) -> float:
        """False-certification probability over alpha."""
        return self.false_certification / self.alpha

    @property
    def exceeds_alpha(self) -> bool:
        """Whether the probability is above alpha (beyond float rounding)."""
        return self.false_certification > self.alpha * (1 + 1e-9)

    def to_dict(self) -> dict:
        """The row as a plain dict, with ``ratio`` and ``exceeds_alpha``."""
        return {**asdict(self), "ratio": self.ratio, "exceeds_alpha": self.exceeds_alpha}


def audit_decisions(policies, sigma, offsets=DEFAULT_OFFSETS) -> list[DecisionAuditRow]:
    """Exact false-certification probability of each policy at ``p = p0 - offset``.

    Parameters
    ----------
    policies : sequence of Adaptive, Staged or CS
    sigma : float
        Noise level.
    offsets : sequence of float
        Distances below p0 to audit, each >= 0 (0: the hardest p).

    Returns
    -------
    list of DecisionAuditRow
        Policy-major order.
    """
    sigma = check_sigma(sigma)
    offsets = [float(o) for o in offsets]
    if not offsets or any(not (o >= 0.0) for o in offsets):
        raise ValueError(f"offsets ({offsets}) must be one or more values >= 0")
    rows = []
    for policy in policies:
        if not isinstance(policy, Adaptive | Staged | CS):
            raise ValueError(f"policy ({policy!r}) must be an Adaptive, Staged or CS policy")
        p0 = _p0(policy.r, sigma)
        for off in offsets:
            p = max(p0 - off, 0.0)
            law = decision_law(policy, p, sigma)
            rows.append(DecisionAuditRow(
                policy=policy.name, validity=policy.validity, alpha=policy.alpha,
                sigma=sigma, r=policy.r, p0=p0, p=p, false_certification=_false(law, p, p0),
                certified=law.certified, not_certified=law.not_certified,
                undecided=law.undecided, mean_samples=law.mean_samples,
            ))
    return rows
