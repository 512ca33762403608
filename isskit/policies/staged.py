"""Staged testing on the true label (Voracek 2024's baseline): a decision policy.

The definition is vvoracek/RS_conf_seq ``core.py`` ``certify_adaptive``. Evaluation over
streams: :func:`isskit.decision.decide_staged`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from isskit.policies._decide import (
    StageThresholds,
    _check_staged_fields,
    _cumulative,
    _memoised,
    _p0,
    _rows,
    _smallest_count,
    _split,
)
from isskit.policies.base import DEFAULT_ALPHA, DecisionPolicy, name_suffix, register
from isskit.policies.base import fmt as _fmt
from isskit.stats import cp_interval

__all__ = ["STAGED_STAGES", "Staged"]

#: Staged default (Voracek 2024, ``core.py`` ``certify_adaptive``: ``ns``).
STAGED_STAGES = (100, 1000, 10_000, 120_000)


@register
@dataclass(frozen=True)
class Staged(DecisionPolicy):
    """Staged testing on the true label (Voracek 2024's baseline, ``core.py`` ``certify_adaptive``).

    On ``X_t = 1[labels[t] == true label]``, pooled: after stage j the count over
    ``[0, n_1 + ... + n_j)`` gives a two-sided Clopper-Pearson interval with
    ``alpha / K`` in each tail; certified when its lower end exceeds ``p0 = Phi(r / sigma)``,
    not certified when its upper end is below ``p0``, undecided after the last stage.

    Parameters
    ----------
    r : float
        Radius to certify, > 0.
    stages : tuple of int
        Sample sizes added by each stage, increasing.
    alpha : float
        Failure probability in (0, 1); ``alpha / K`` must be < 1/2.
    """

    r: float
    stages: tuple[int, ...] = STAGED_STAGES
    alpha: float = DEFAULT_ALPHA
    kind: ClassVar[str] = "staged"
    validity: ClassVar[str] = "alpha-split"
    uses_true_label: ClassVar[bool] = True

    def __post_init__(self):
        _check_staged_fields(self, "alpha", lambda K: K, "each tail of the interval gets alpha / K")

    @property
    def name(self) -> str:
        """Readable name, ``Staged-r=<r>`` plus any non-default parameter."""
        return f"Staged-r={_fmt(self.r)}" + name_suffix(self, ("stages", "alpha"))

    @property
    def stage_ends(self) -> tuple[int, ...]:
        """Pooled sample sizes at which the policy tests: ``n_1 + ... + n_j``."""
        return _cumulative(self.stages)

    @property
    def max_samples(self) -> int:
        """Most samples an image can consume: ``sum(stages)``."""
        return self.stage_ends[-1]

    @property
    def static_need(self) -> int:
        """Samples every image needs: the first stage's (nothing decides before it)."""
        return self.stage_ends[0]

    def params(self) -> dict:
        """The policy's parameters."""
        return {"kind": self.kind, "r": self.r, "stages": self.stages, "alpha": self.alpha}

    def thresholds(self, sigma) -> StageThresholds:
        """Count thresholds of every stage at noise level ``sigma`` (:class:`StageThresholds`)."""
        return _staged_thresholds([self], sigma)[0]

    def _decide_prefix(self, labels, sigma, true_label):
        """:func:`isskit.decision.decide_staged` on one stream prefix, online."""
        from isskit.decision import CERTIFIED, _stream_bits, decide_staged  # lazily: cycle

        bits, cum = _stream_bits(labels, true_label)
        res = decide_staged(bits, cum, self, sigma, drawn=len(labels), online=True)
        # the class tested is the true label: certified means predicted and correct
        return res.decision[0], res.samples[0], true_label if res.decision[0] == CERTIFIED \
            else -1

    def __str__(self) -> str:
        return self.name


@_memoised
def _staged_thresholds(policies, sigma) -> list[StageThresholds]:
    p0 = np.array([_p0(p.r, sigma) for p in policies])
    owner, n = _rows(policies, [p.stage_ends for p in policies])
    # core.py certify_adaptive: proportion_confint(A, N, alpha=alpha*2/len(ns), "beta"),
    # i.e. alpha / K in each tail; lower end > p0 certifies, upper end < p0 rejects.
    level = np.array([policies[b].alpha * 2 / len(policies[b].stages) for b in owner])
    p0_row = p0[owner]
    cert = _smallest_count(n, level, lambda a, rows, lev: cp_interval(a, n[rows], lev)[0]
                           > p0_row[rows])
    up_ok = _smallest_count(n, level, lambda a, rows, lev: ~(cp_interval(a, n[rows], lev)[1]
                                                             < p0_row[rows]))
    return _split(policies, owner, [p.stage_ends for p in policies], n, cert, up_ok - 1, p0)
