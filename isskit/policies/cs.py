"""A confidence sequence on the true label (Voracek 2024): the ``cs`` decision policy.

The definition is vvoracek/RS_conf_seq ``core.py`` (``Certifier.certify`` for KT,
``certify_ub`` for the union bound) and ``thresholds.py``; see :mod:`isskit.decision` for
where they and DESIGN.md part. The thresholds are computed here (:func:`cs_thresholds`) and
cached like psi tables; evaluation over streams is :func:`isskit.decision.decide_cs`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from scipy.stats import binom

from isskit.policies._decide import _check_bool, _check_r, _p0
from isskit.policies.base import DEFAULT_ALPHA, DecisionPolicy, name_suffix, register
from isskit.policies.base import fmt as _fmt
from isskit.validate import _real, check_alpha, check_positive_int

__all__ = ["CS", "CS_METHODS", "CS_N_MAX", "MAX_N_MAX", "CSThresholds", "cs_thresholds"]

#: ``cs`` methods: ``"kt"`` the Beta(1/2, 1/2) mixture martingale, ``"union"`` binomial
#: tests on a geometric grid of times with a union bound.
CS_METHODS = ("kt", "union")

#: cs default (``core.py``: ``get_thresholds(..., n=131100)``), the same budget as staged's.
CS_N_MAX = 131_100
#: Largest n_max accepted: cs keeps four int32 arrays of n_max per threshold set.
MAX_N_MAX = 10**7

#: Union bound's time grid (``thresholds.py`` ``get_upper_threshold_ub``): a test at the
#: first draw count past each power ``1.1^k``, k counted from 11, at most one per draw.
_UNION_BASE = 1.1
_UNION_K0 = 11

#: Threshold sets kept by :func:`cs_thresholds` (about 2 MB each at the default n_max).
_CACHE_SIZE = 128


@register
@dataclass(frozen=True)
class CS(DecisionPolicy):
    """A confidence sequence on the true label (Voracek 2024), tested after every draw.

    On ``X_t = 1[labels[t] == true label]``: after draw t (``t = 1 .. n_max - 1``) with
    ``A_t`` successes, certified when ``A_t`` reaches ``hi[t]``, not certified when it falls
    to ``lo[t]``; at ``t = n_max`` undecided without a test (that draw counts). Thresholds
    from :func:`cs_thresholds`.

    Parameters
    ----------
    r : float
        Radius to certify, > 0.
    method : {"kt", "union"}
        ``"kt"``: Beta(1/2, 1/2) mixture likelihood ratio against ``p0``, threshold
        ``1 / alpha`` (Ville's inequality). ``"union"``: binomial tests on a geometric time
        grid, ``alpha`` spread over them.
    alpha : float
        Failure probability in (0, 1).
    n_max : int
        Draw at which the policy stops undecided, >= 2.
    faithful : bool
        For ``"kt"``: threshold ``1 / (2 alpha)`` as the authors' ``thresholds.py`` writes it
        (``log(1/alpha/2)``); Ville's inequality then bounds the failure probability by
        ``2 alpha`` only (validity ``"faithful-kt"``). Normalised to False for ``"union"``.
    """

    r: float
    method: str = "kt"
    alpha: float = DEFAULT_ALPHA
    n_max: int = CS_N_MAX
    faithful: bool = False
    kind: ClassVar[str] = "cs"
    uses_true_label: ClassVar[bool] = True

    def __post_init__(self):
        object.__setattr__(self, "r", _check_r(self.r))
        method = str(self.method).lower()
        if method not in CS_METHODS:
            raise ValueError(f"method ({self.method!r}) must be one of {', '.join(CS_METHODS)}")
        object.__setattr__(self, "method", method)
        object.__setattr__(self, "alpha", check_alpha(self.alpha))
        object.__setattr__(self, "n_max", check_positive_int(self.n_max, "n_max", minimum=2,
                                                             maximum=MAX_N_MAX))
        faithful = _check_bool(self.faithful, "faithful")
        object.__setattr__(self, "faithful", faithful and method == "kt")

    @property
    def validity(self) -> str:
        """``"anytime-valid"``, or ``"faithful-kt"`` for the authors' KT level (up to 2 alpha)."""
        return "faithful-kt" if self.faithful else "anytime-valid"

    @property
    def name(self) -> str:
        """Readable name, ``CS-KT-r=<r>`` or ``CS-union-r=<r>`` plus non-default parameters."""
        method = "KT" if self.method == "kt" else "union"
        return f"CS-{method}-r={_fmt(self.r)}" + name_suffix(self, ("alpha", "n_max", "faithful"))

    @property
    def max_samples(self) -> int:
        """Most samples an image can consume: ``n_max``."""
        return self.n_max

    def params(self) -> dict:
        """The policy's parameters."""
        return {"kind": self.kind, "r": self.r, "method": self.method, "alpha": self.alpha,
                "n_max": self.n_max, "faithful": self.faithful}

    def thresholds(self, sigma) -> CSThresholds:
        """:func:`cs_thresholds` at ``p0 = Phi(r / sigma)``; checks n_max reaches a decision."""
        th = cs_thresholds(_p0(self.r, sigma), self.alpha, self.n_max, self.method,
                           self.faithful)
        if th.first_decision >= self.n_max:
            first = _first_decision_beyond(th)
            where = (f"the first is at draw {first}" if first is not None
                     else f"none before {MAX_N_MAX:,} draws")
            raise ValueError(
                f"n_max ({self.n_max}) is smaller than the first possible decision of "
                f"{self.name} at sigma = {sigma} ({where}): every image would end undecided"
            )
        return th

    def _decide_prefix(self, labels, sigma, true_label):
        """:func:`isskit.decision.decide_cs` on one stream prefix, online.

        The thresholds come from the cache of :func:`cs_thresholds` (one set per ``p0``,
        ``alpha``, ``n_max``), so asking after every few draws costs one pass over the
        prefix, not a new set.
        """
        from isskit.decision import CERTIFIED, _stream_bits, decide_cs  # lazily: cycle

        bits, cum = _stream_bits(labels, true_label)
        res = decide_cs(bits, cum, self, sigma, drawn=len(labels), online=True)
        return res.decision[0], res.samples[0], true_label if res.decision[0] == CERTIFIED \
            else -1

    def __str__(self) -> str:
        return self.name



# --------------------------------------------------------------------------- cs thresholds


@dataclass(frozen=True, eq=False)
class CSThresholds:
    """The stopping thresholds of a ``cs`` policy, one pair per draw count ``t < n_max``.

    A value: arrays are read-only, so a cached set is shared by every caller.

    Attributes
    ----------
    p0, alpha, n_max, method, faithful :
        What the thresholds are for (see :class:`CS`).
    lo, hi : ndarray of int64, shape (n_max,)
        After draw t, certified when the count reaches ``hi[t]``, not certified when it is
        at most ``lo[t]``. Both non-decreasing. **Unreachable** entries are marked
        ``hi[t] = t + 1`` (no count of t draws reaches it) and ``lo[t] = -1``; entry 0 is
        never tested.
    next_hi : ndarray of int32, shape (n_max + 1,)
        ``next_hi[f]``: the first t >= 1 with ``t - hi[t] >= f``, i.e. where a stream with
        ``f`` failures so far could certify; ``n_max`` if none.
    next_lo : ndarray of int32, shape (n_max + 1,)
        ``next_lo[a]``: the first t >= 1 with ``lo[t] >= a``, where a stream with ``a``
        successes so far could fail; ``n_max`` if none.
    """

    p0: float
    alpha: float
    n_max: int
    method: str
    faithful: bool
    lo: np.ndarray = field(repr=False)
    hi: np.ndarray = field(repr=False)
    next_hi: np.ndarray = field(repr=False)
    next_lo: np.ndarray = field(repr=False)

    @property
    def first_certify(self) -> int:
        """First draw count at which a stream can certify (all successes); n_max if none."""
        return int(self.next_hi[0])

    @property
    def first_reject(self) -> int:
        """First draw count at which a stream can be not certified (all failures); n_max if none."""
        return int(self.next_lo[0])

    @property
    def first_decision(self) -> int:
        """First draw count at which any decision is possible; n_max if none."""
        return min(self.first_certify, self.first_reject)


def _union_raw(p: float, alpha: float, n: int) -> np.ndarray:
    """The union-bound upper threshold of ``thresholds.py`` before the running minimum.

    Tests at draw counts ``t_j`` (j = 1, 2, ...): the first t past ``1.1^k`` for k = 11,
    12, ... with at most one test per draw (so every t from 3 to 26, then one per power);
    the j-th at ``alpha_j = 5 alpha / ((j + 4)(j + 5))`` (sum over j: alpha), threshold
    ``binom.ppf(1 - alpha_j, t_j, p) + 1``. Other entries hold the authors' ``t + 100``.
    """
    out = np.arange(n, dtype=np.int64) + 100
    times, levels = [], []
    k, t = _UNION_K0, 0
    while True:
        # the authors' loop tests draw t when t > 1.1**k, then moves to k + 1
        t = max(t + 1, math.floor(_UNION_BASE**k) + 1)
        if t >= n:
            break
        k += 1
        j = k - _UNION_K0
        times.append(t)
        levels.append(1 - 5 * alpha / (j + 4) / (j + 5))
    if times:
        t_arr = np.asarray(times, dtype=np.int64)
        out[t_arr] = binom.ppf(np.asarray(levels), t_arr, p) + 1
    return out


def _kt_raw(p: float, alpha: float, n: int, faithful: bool) -> np.ndarray:
    from isskit.replay import _kernels  # lazily: isskit.replay imports the policies

    out = np.empty(n, dtype=np.int64)
    # thresholds.py: log(1/alpha/2); Ville's inequality needs log(1/alpha)
    log_c = math.log(1 / alpha / 2) if faithful else math.log(1 / alpha)
    _kernels.kt_upper_raw(p, log_c, out)
    return out


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _cached_thresholds(p0, alpha, n_max, method, faithful) -> CSThresholds:
    from isskit.replay import _kernels  # lazily: isskit.replay imports the policies

    if method == "kt":
        up, up_fail = _kt_raw(p0, alpha, n_max, faithful), _kt_raw(1 - p0, alpha, n_max,
                                                                    faithful)
    else:
        up, up_fail = _union_raw(p0, alpha, n_max), _union_raw(1 - p0, alpha, n_max)
    lo = np.empty(n_max, np.int64)
    hi = np.empty(n_max, np.int64)
    next_hi = np.empty(n_max + 1, np.int32)
    next_lo = np.empty(n_max + 1, np.int32)
    _kernels.cs_tables(up, up_fail, lo, hi, next_hi, next_lo)
    for a in (lo, hi, next_hi, next_lo):  # fresh arrays: made read-only without a copy
        a.flags.writeable = False
    return CSThresholds(p0=p0, alpha=alpha, n_max=n_max, method=method, faithful=faithful,
                        lo=lo, hi=hi, next_hi=next_hi, next_lo=next_lo)


def cs_thresholds(p0, alpha, n_max=CS_N_MAX, method="kt", faithful=False) -> CSThresholds:
    """The thresholds of a confidence sequence for ``p > p0``, cached like psi tables.

    As vvoracek/RS_conf_seq ``thresholds.py`` computes them (``get_thresholds`` for KT,
    ``get_thresholds_union_bound``): the upper threshold ``hi`` for the successes against
    ``p0``, the same construction for the failures against ``1 - p0`` giving ``hi'``, and
    ``lo[t] = t - hi'[t]``; ``hi`` made monotone by a running minimum from the right and
    ``lo`` by a running maximum (a stream that crosses ``hi[t]`` would cross the later
    threshold it was lowered to as well, so monotone arrays keep the guarantee).

    * ``"kt"``: ``hi[t]`` is the smallest ``A >= p0 t`` whose Beta(1/2, 1/2) mixture
      likelihood ratio against Bernoulli(p0) exceeds ``1 / alpha`` (``1 / (2 alpha)`` with
      ``faithful``), by the authors' walk (:func:`isskit.replay._kernels.kt_upper_raw`).
    * ``"union"``: see :func:`_union_raw`.

    Arguments are validated and normalised before the cache lookup (as
    :func:`isskit.psi.psi_table` does), so equal parameters share one computation.

    Parameters
    ----------
    p0 : float
        Probability to test against, in (0, 1): ``Phi(r / sigma)`` for radius r.
    alpha : float
        Failure probability in (0, 1).
    n_max : int
        Length of the arrays; draws 1 .. n_max - 1 are tested.
    method : {"kt", "union"}
    faithful : bool
        KT only: the authors' level ``1 / (2 alpha)``.

    Returns
    -------
    CSThresholds
    """
    p0 = _real(p0, "p0")
    if not 0.0 < p0 < 1.0:
        raise ValueError(f"p0 ({p0}) must be in (0, 1)")
    alpha = check_alpha(alpha)
    n_max = check_positive_int(n_max, "n_max", minimum=2, maximum=MAX_N_MAX)
    method = str(method).lower()
    if method not in CS_METHODS:
        raise ValueError(f"method ({method!r}) must be one of {', '.join(CS_METHODS)}")
    faithful = _check_bool(faithful, "faithful") and method == "kt"
    return _cached_thresholds(p0, alpha, n_max, method, faithful)


def _first_decision_beyond(th: CSThresholds) -> int | None:
    """First possible decision of ``th``'s test with a larger n_max (for error messages)."""
    n = th.n_max
    while n < MAX_N_MAX:
        n = min(4 * n, MAX_N_MAX)
        wider = cs_thresholds(th.p0, th.alpha, n, th.method, th.faithful)
        if wider.first_decision < n:
            return wider.first_decision
    return None
