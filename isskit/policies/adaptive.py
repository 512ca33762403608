"""Adaptive sampling (Horvath et al., ICLR 2022): a decision policy of fresh stages.

The definition is eth-sri/smoothing-ensembles ``smooth_ensemble_adaptive.py``
(``SmoothEnsembleAdaptive.certify``, ``_should_stop``); see :mod:`isskit.decision` for where
it and DESIGN.md part. Evaluation over streams: :func:`isskit.decision.decide_adaptive` and
:func:`isskit.decision.decide_adaptive_counts`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy.special import ndtri

from isskit.policies._decide import (
    StageThresholds,
    _check_staged_fields,
    _memoised,
    _p0,
    _rows,
    _smallest_count,
    _split,
)
from isskit.policies.base import DEFAULT_ALPHA, DecisionPolicy, name_suffix, register
from isskit.policies.base import fmt as _fmt
from isskit.stats import cp_interval, cp_lower
from isskit.validate import check_sample_size, check_sigma

__all__ = ["ADAPTIVE_BETA", "ADAPTIVE_N0", "ADAPTIVE_STAGES", "Adaptive"]

#: Adaptive defaults (Horvath et al. 2022, DESIGN.md).
ADAPTIVE_N0 = 100
ADAPTIVE_STAGES = (1000, 10_000, 125_000)
ADAPTIVE_BETA = 0.0001


@register
@dataclass(frozen=True)
class Adaptive(DecisionPolicy):
    """Adaptive sampling (Horvath et al., ICLR 2022): stages of fresh selection and estimation.

    For stage i = 1..K: ``n0`` fresh samples choose the class (most frequent, ties to the
    smallest label), ``n_i`` fresh samples count it; ``p_lower`` is the one-sided
    Clopper-Pearson bound at ``alpha / K``. Certified when ``p_lower > 1/2`` and
    ``sigma Phi^-1(p_lower) >= r``; else, before the last stage, not certified (early stop)
    when the one-sided upper bound at ``beta / (K - 1)`` gives ``sigma Phi^-1(p_upper) < r``;
    after stage K, not certified. Draw order in the stream: stage 1's selection, stage 1's
    estimation, stage 2's selection, ...

    Parameters
    ----------
    r : float
        Radius to certify, > 0.
    n0 : int
        Selection size of every stage, >= 1.
    stages : tuple of int
        Estimation sizes ``n_1 < n_2 < ...``.
    alpha : float
        Failure probability in (0, 1), split equally over the stages.
    beta : float
        Probability in (0, 1) of stopping early an image that would certify, split over the
        first K - 1 stages.
    """

    r: float
    n0: int = ADAPTIVE_N0
    stages: tuple[int, ...] = ADAPTIVE_STAGES
    alpha: float = DEFAULT_ALPHA
    beta: float = ADAPTIVE_BETA
    kind: ClassVar[str] = "adaptive"
    validity: ClassVar[str] = "alpha-split"

    def __post_init__(self):
        object.__setattr__(self, "n0", check_sample_size(self.n0, "n0"))
        # the early stop's upper bound is taken from a two-sided interval at 2 beta / (K - 1)
        _check_staged_fields(self, "beta", lambda K: K - 1,
                             "each early stop's upper bound gets beta / (K - 1)")

    @property
    def name(self) -> str:
        """Readable name, ``Adaptive-r=<r>`` plus any non-default parameter."""
        return f"Adaptive-r={_fmt(self.r)}" + name_suffix(self, ("n0", "stages", "alpha", "beta"))

    @property
    def selection_ranges(self) -> tuple[tuple[int, int], ...]:
        """``[start, stop)`` of each stage's selection in the stream (range modes needed)."""
        out, a = [], 0
        for n in self.stages:
            out.append((a, a + self.n0))
            a += self.n0 + n
        return tuple(out)

    @property
    def estimation_ranges(self) -> tuple[tuple[int, int], ...]:
        """``[start, stop)`` of each stage's estimation: the chosen class is counted there."""
        return tuple((b, b + n) for (_, b), n in zip(self.selection_ranges, self.stages,
                                                      strict=True))

    @property
    def stage_ends(self) -> tuple[int, ...]:
        """Samples consumed when stopping after each stage: ``sum_{i <= j} (n0 + n_i)``."""
        return tuple(stop for _, stop in self.estimation_ranges)

    @property
    def max_samples(self) -> int:
        """Most samples an image can consume: ``K n0 + sum(stages)``."""
        return self.stage_ends[-1]

    @property
    def static_need(self) -> int:
        """Samples every image needs: the first stage's (nothing decides before it)."""
        return self.stage_ends[0]

    def params(self) -> dict:
        """The policy's parameters, by their names in the paper."""
        return {"kind": self.kind, "r": self.r, "n0": self.n0, "stages": self.stages,
                "alpha": self.alpha, "beta": self.beta}

    def thresholds(self, sigma) -> StageThresholds:
        """Count thresholds of every stage at noise level ``sigma`` (:class:`StageThresholds`)."""
        return _adaptive_thresholds([self], sigma)[0]

    def _decide_prefix(self, labels, sigma, true_label):
        """:func:`isskit.decision.decide_adaptive` on one stream prefix, online."""
        from isskit.decision import decide_adaptive  # lazily: it imports this module

        res = decide_adaptive(np.asarray(labels, np.uint16)[None, :], self, sigma,
                              online=True)
        return res.decision[0], res.samples[0], res.prediction[0]

    def __str__(self) -> str:
        return self.name


@_memoised
def _adaptive_thresholds(policies, sigma) -> list[StageThresholds]:
    sigma = check_sigma(sigma)
    p0 = np.array([_p0(p.r, sigma) for p in policies])
    owner, n = _rows(policies, [p.stages for p in policies])
    K = np.array([len(policies[b].stages) for b in owner])
    r = np.array([policies[b].r for b in owner])
    last = np.concatenate([np.arange(len(p.stages)) == len(p.stages) - 1 for p in policies])

    def certifies(a, rows, lev):
        # smooth_ensemble_adaptive.py: pABar > 0.5 and sigma * norm.ppf(pABar) >= radius
        p_lower = cp_lower(a, n[rows], lev)
        with np.errstate(divide="ignore"):
            return (p_lower > 0.5) & (sigma * ndtri(p_lower) >= r[rows])

    def worth(a, rows, lev):
        # _should_stop: proportion_confint(nA, n, alpha=2*beta/(K-1), "beta")[1], then
        # sigma * norm.ppf(upper) < radius stops
        with np.errstate(divide="ignore"):
            return ~(sigma * ndtri(cp_interval(a, n[rows], lev)[1]) < r[rows])

    cert = _smallest_count(n, np.array([policies[b].alpha / k for b, k in zip(owner, K,
                                                                               strict=True)]),
                           certifies)
    stop = np.full(n.shape, -1, np.int64)
    early = np.flatnonzero(~last)  # no early stop after the last stage
    if early.size:
        level = np.array([2 * policies[owner[i]].beta / (K[i] - 1) for i in early])
        sub_n = n[early]
        stop[early] = _smallest_count(
            sub_n, level, lambda a, rows, lev: worth(a, early[rows], lev)) - 1
    return _split(policies, owner, [p.stage_ends for p in policies], n, cert, stop, p0)
