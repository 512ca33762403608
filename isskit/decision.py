"""Decision policies: is this image certified at the radius r? (DESIGN.md, "Policies").

A radius policy returns the radius it can certify; a decision policy answers one question,
"is the smoothed prediction robust at radius ``r``?", with certified (1), not certified
(0) or undecided (-1), and the samples it consumed. It stops as soon as the answer is
clear, so it needs far fewer samples than a radius certificate. Three families:

=========================================  =====================  ===========  =============
policy                                     observations           stops        validity
=========================================  =====================  ===========  =============
``Adaptive(r, n0, stages, alpha, beta)``   fresh selection of     after each   alpha-split
(Horvath et al., ICLR 2022)                ``n0``, then the       stage
                                           stage's own ``n_i``
``Staged(r, stages, alpha)``               ``1[label == true]``   after each   alpha-split
(Voracek 2024's baseline)                  pooled over stages     stage
``CS(r, method, alpha, n_max)``            ``1[label == true]``   after any    anytime-valid
(Voracek 2024)                             one at a time          draw
=========================================  =====================  ===========  =============

Names: ``r`` the radius asked about, ``sigma`` the noise level (given at evaluation, it is
the store's), ``p0 = Phi(r / sigma)`` the class probability that radius needs (Cohen et
al.: radius ``sigma Phi^-1(p)``), ``alpha`` the failure probability, ``beta`` adaptive's
early-stopping error, ``n0`` adaptive's selection size, ``stages`` the sample sizes of the
stages, ``n_max`` the draw at which ``cs`` gives up.

The authors' code is the definition wherever DESIGN.md's summary is unclear:
eth-sri/smoothing-ensembles ``smooth_ensemble_adaptive.py`` (``SmoothEnsembleAdaptive.
certify``, ``_should_stop``) for ``Adaptive``; vvoracek/RS_conf_seq ``core.py``
(``Certifier.certify`` for KT, ``certify_ub`` for the union bound, ``certify_adaptive`` for
``Staged``) and ``thresholds.py`` for ``CS``. Where this module had to choose, it says so:

* ``core.py`` ``certify``/``certify_ub`` test the lower threshold before the upper one
  (``lower_threshold[N] == A`` first); so does :func:`decide_cs`. They test equality; the
  thresholds are monotone and the count moves by one, so equality is the first crossing,
  which is what is tested here.
* ``thresholds.py`` ``get_upper_threshold`` starts each length's search at the previous
  length's threshold instead of searching for DESIGN.md's "smallest A"; the two agree at
  every t < 131,100 for 10 values of p0 (r / sigma from 0.05 to 4), 3 alphas and both KT
  levels, both sides (``tests/test_decision.py::test_cs_thresholds_match_twin`` and
  ``tests/test_decision_kernels.py::test_kt_walk_matches_direct_search_at_full_length``
  repeat part of that), and the authors' walk is what
  :func:`isskit.replay._kernels.kt_upper_raw` computes.
* ``thresholds.py`` marks unreachable thresholds ``A + n`` (KT) and ``t + 100`` (union)
  before the running minimum; :func:`cs_thresholds` keeps the authors' running minimum and
  then writes every unreachable entry as ``t + 1`` (``lo``: -1), which changes no decision.
  DESIGN.md's "a stream can stop between test times" (union bound) holds only where the
  next test's threshold is already reachable: for ``p0 > 1/1.1`` (about 0.909) only in the
  last ``(1 - p0) / (1 - 1/1.1)`` or so of each gap between tests (21 % of the draws at
  p0 = 0.977), and never after the last test before ``n_max`` (t = 123,396 for the
  default n_max), where every stream runs on to ``n_max``.
* ``smooth_ensemble_adaptive.py`` returns -1 (abstain) both for an early stop and after the
  last stage; DESIGN.md calls both "not certified" (0), so adaptive is never undecided.
  DESIGN.md's stages 1000/10000/125000 are the README's example command; the driver
  ``certify_ensemble_adaptive.py`` defaults to two stages (``--N1 1000 --N2 10000``,
  ``--N3 0``).
* ``faithful=True`` applies to ``method="kt"`` only: the authors' union bound spends
  ``alpha`` as DESIGN.md does, so ``faithful`` is normalised to False there.

Evaluation is over plain arrays: the bit vector of ``labels == true label`` with its rank
directory (the layout of :func:`isskit.replay._kernels.pack_slots`) for ``cs`` and ``staged``, the
raw label block, or the per-stage classes and counts taken from an index, for ``Adaptive``.
Each entry point accepts one policy (arrays of shape (n,)) or a list of them ((P, n)).

This module never prints, never reads a store and never imports click.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

import numpy as np
from scipy.special import ndtr, ndtri
from scipy.stats import binom

from isskit._bisect import bisect
from isskit.policies.base import DEFAULT_ALPHA
from isskit.policies.base import fmt as _fmt
from isskit.psi.mapping import _frozen
from isskit.replay import _kernels
from isskit.stats import cp_interval, cp_lower
from isskit.validate import (
    _real,
    check_alpha,
    check_positive_int,
    check_sample_size,
    check_sigma,
)

__all__ = [
    "CERTIFIED",
    "CS",
    "CS_METHODS",
    "NEED_MORE",
    "NOT_CERTIFIED",
    "UNDECIDED",
    "Adaptive",
    "CSThresholds",
    "DecisionPolicy",
    "Decisions",
    "StageThresholds",
    "Staged",
    "adaptive_ranges",
    "cs_thresholds",
    "decide_adaptive",
    "decide_adaptive_counts",
    "decide_cs",
    "decide_staged",
]

#: Decision codes (the results' ``decision`` variable, DESIGN.md "Results").
CERTIFIED = _kernels._CERTIFIED
NOT_CERTIFIED = _kernels._NOT_CERTIFIED
UNDECIDED = _kernels._UNDECIDED
#: Online only (``online=True``): the stream prefix is too short to decide, and ``samples``
#: is the least total number of samples the policy needs before it can (DESIGN.md: a policy
#: evaluated on a prefix decides or answers with the samples it needs). Never in results.
NEED_MORE = _kernels._NEED_MORE

#: ``cs`` methods: ``"kt"`` the Beta(1/2, 1/2) mixture martingale, ``"union"`` binomial
#: tests on a geometric grid of times with a union bound.
CS_METHODS = ("kt", "union")

#: Adaptive defaults (Horvath et al. 2022, DESIGN.md).
ADAPTIVE_N0 = 100
ADAPTIVE_STAGES = (1000, 10_000, 125_000)
ADAPTIVE_BETA = 0.0001
#: Staged default (Voracek 2024, ``core.py`` ``certify_adaptive``: ``ns``).
STAGED_STAGES = (100, 1000, 10_000, 120_000)
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


# --------------------------------------------------------------------------- checks


def _check_r(r) -> float:
    r = _real(r, "r")
    if not (math.isfinite(r) and r > 0.0):
        raise ValueError(f"r ({r}) must be a finite radius > 0")
    return r


def _check_stages(stages, name: str = "stages") -> tuple[int, ...]:
    if isinstance(stages, str) or not isinstance(stages, Sequence | np.ndarray):
        raise ValueError(
            f"{name} ({stages!r}) must be a sequence of increasing sample sizes, "
            "e.g. (1000, 10000, 125000)"
        )
    out = tuple(check_sample_size(s, f"{name} entry") for s in stages)
    if not out:
        raise ValueError(f"{name} ({stages!r}) must hold at least one stage")
    for a, b in itertools.pairwise(out):
        if b <= a:
            raise ValueError(f"{name} ({'/'.join(map(str, out))}) must be strictly increasing")
    return out


def _check_bool(value, name: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} ({value!r}) must be True or False")
    return bool(value)


def _p0(r: float, sigma: float) -> float:
    """``Phi(r / sigma)``, the class probability radius ``r`` needs; must be below 1."""
    sigma = check_sigma(sigma)
    p0 = float(ndtr(r / sigma))
    if not p0 < 1.0:
        raise ValueError(
            f"r ({r}) is too large for sigma ({sigma}): Phi(r / sigma) rounds to 1, so no "
            "finite number of samples can certify it"
        )
    return p0


def _cumulative(sizes) -> tuple[int, ...]:
    return tuple(int(x) for x in np.cumsum(sizes))


# --------------------------------------------------------------------------- policies


@dataclass(frozen=True)
class Adaptive:
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
        object.__setattr__(self, "r", _check_r(self.r))
        object.__setattr__(self, "n0", check_sample_size(self.n0, "n0"))
        object.__setattr__(self, "stages", _check_stages(self.stages))
        object.__setattr__(self, "alpha", check_alpha(self.alpha))
        beta = check_alpha(self.beta, "beta")
        if len(self.stages) == 2 and beta >= 0.5:
            # the upper bound is taken from a two-sided interval at 2 beta / (K - 1)
            raise ValueError(f"beta ({beta}) must be < 0.5 with 2 stages")
        object.__setattr__(self, "beta", beta)

    @property
    def name(self) -> str:
        """Readable name, ``Adaptive-r=<r>`` plus any non-default parameter."""
        out = f"Adaptive-r={_fmt(self.r)}"
        if self.n0 != ADAPTIVE_N0:
            out += f"-n0={self.n0}"
        if self.stages != ADAPTIVE_STAGES:
            out += f"-stages={'/'.join(map(str, self.stages))}"
        if self.alpha != DEFAULT_ALPHA:
            out += f"-alpha={_fmt(self.alpha)}"
        if self.beta != ADAPTIVE_BETA:
            out += f"-beta={_fmt(self.beta)}"
        return out

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

    def params(self) -> dict:
        """The policy's parameters, by their names in the paper."""
        return {"kind": self.kind, "r": self.r, "n0": self.n0, "stages": self.stages,
                "alpha": self.alpha, "beta": self.beta}

    def thresholds(self, sigma) -> StageThresholds:
        """Count thresholds of every stage at noise level ``sigma`` (:class:`StageThresholds`)."""
        return _adaptive_thresholds([self], sigma)[0]

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Staged:
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

    def __post_init__(self):
        object.__setattr__(self, "r", _check_r(self.r))
        object.__setattr__(self, "stages", _check_stages(self.stages))
        alpha = check_alpha(self.alpha)
        if alpha / len(self.stages) >= 0.5:
            raise ValueError(
                f"alpha ({alpha}) must be < {len(self.stages) / 2:g} with "
                f"{len(self.stages)} stage(s): each tail of the interval gets alpha / K"
            )
        object.__setattr__(self, "alpha", alpha)

    @property
    def name(self) -> str:
        """Readable name, ``Staged-r=<r>`` plus any non-default parameter."""
        out = f"Staged-r={_fmt(self.r)}"
        if self.stages != STAGED_STAGES:
            out += f"-stages={'/'.join(map(str, self.stages))}"
        if self.alpha != DEFAULT_ALPHA:
            out += f"-alpha={_fmt(self.alpha)}"
        return out

    @property
    def stage_ends(self) -> tuple[int, ...]:
        """Pooled sample sizes at which the policy tests: ``n_1 + ... + n_j``."""
        return _cumulative(self.stages)

    @property
    def max_samples(self) -> int:
        """Most samples an image can consume: ``sum(stages)``."""
        return self.stage_ends[-1]

    def params(self) -> dict:
        """The policy's parameters."""
        return {"kind": self.kind, "r": self.r, "stages": self.stages, "alpha": self.alpha}

    def thresholds(self, sigma) -> StageThresholds:
        """Count thresholds of every stage at noise level ``sigma`` (:class:`StageThresholds`)."""
        return _staged_thresholds([self], sigma)[0]

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class CS:
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
        out = f"CS-{'KT' if self.method == 'kt' else 'union'}-r={_fmt(self.r)}"
        if self.alpha != DEFAULT_ALPHA:
            out += f"-alpha={_fmt(self.alpha)}"
        if self.n_max != CS_N_MAX:
            out += f"-n_max={self.n_max}"
        if self.faithful:
            out += "-faithful"
        return out

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

    def __str__(self) -> str:
        return self.name


DecisionPolicy = Adaptive | Staged | CS


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
    out = np.empty(n, dtype=np.int64)
    # thresholds.py: log(1/alpha/2); Ville's inequality needs log(1/alpha)
    log_c = math.log(1 / alpha / 2) if faithful else math.log(1 / alpha)
    _kernels.kt_upper_raw(p, log_c, out)
    return out


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _cached_thresholds(p0, alpha, n_max, method, faithful) -> CSThresholds:
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


# --------------------------------------------------------------------------- stage thresholds


@dataclass(frozen=True, eq=False)
class StageThresholds:
    """Count thresholds of a staged or adaptive policy, one per stage.

    Attributes
    ----------
    ends : ndarray of int64, shape (K,)
        Samples consumed when the policy stops after stage j.
    sizes : ndarray of int64, shape (K,)
        Samples the count of stage j is taken over (pooled for staged, fresh for adaptive).
    cert_min : ndarray of int64, shape (K,)
        Certified at stage j when the count is at least this (``sizes[j] + 1``: never).
    stop_max : ndarray of int64, shape (K,)
        Not certified at stage j when the count is at most this (-1: never). For adaptive
        the early stop; its last stage does not test (-1) and ends not certified.
    p0 : float
        ``Phi(r / sigma)``.
    """

    ends: np.ndarray
    sizes: np.ndarray
    cert_min: np.ndarray
    stop_max: np.ndarray
    p0: float

    @property
    def first_decision(self) -> int:
        """Samples consumed at the first stage where some count decides."""
        can = (self.cert_min <= self.sizes) | (self.stop_max >= 0)
        j = int(np.argmax(can)) if can.any() else len(self.ends) - 1
        return int(self.ends[j])


def _smallest_count(n: np.ndarray, level: np.ndarray, pred) -> np.ndarray:
    """Smallest count ``A`` in ``[0, n]`` with ``pred(A, rows, level)``, ``n + 1`` if none.

    ``pred`` must be monotone in A. Rows (stages of many policies) are searched together,
    one vectorised bisection per distinct level, since the bounds take one level per call.
    """
    out = np.empty(n.shape, np.int64)
    for lev in np.unique(level):
        rows = np.flatnonzero(level == lev)
        _, hi = bisect(np.full(rows.size, -1, np.int64), n[rows] + 1,
                       lambda a, sub, rows=rows, lev=lev: pred(a, rows[sub], float(lev)))
        out[rows] = hi
    return out


def _rows(policies, sizes):
    """Per (policy, stage) row: the policy's index and the stage's sample size."""
    owner = np.concatenate([np.full(len(s), b) for b, s in enumerate(sizes)])
    return owner, np.concatenate([np.asarray(s, np.int64) for s in sizes])


def _split(policies, owner, ends, sizes, cert, stop, p0):
    return [StageThresholds(ends=_frozen(np.asarray(ends[b], np.int64)),
                            sizes=_frozen(sizes[owner == b]), cert_min=_frozen(cert[owner == b]),
                            stop_max=_frozen(stop[owner == b]), p0=p0[b])
            for b in range(len(policies))]


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


# --------------------------------------------------------------------------- evaluation


class Decisions(NamedTuple):
    """What decision policies answer per image: shape (n,) for one policy, (P, n) for several.

    Attributes
    ----------
    decision : ndarray of int8
        :data:`CERTIFIED`, :data:`NOT_CERTIFIED`, :data:`UNDECIDED` (and :data:`NEED_MORE`
        online).
    samples : ndarray of int64
        Samples consumed (online, for NEED_MORE: the least total the policy needs).
    prediction : ndarray of int64 or None
        Adaptive only: the class certified, -1 where not certified. ``cs`` and ``staged``
        test the true label, so certified means correct (None).
    """

    decision: np.ndarray
    samples: np.ndarray
    prediction: np.ndarray | None = None


def _as_policies(policies, cls):
    single = isinstance(policies, cls)
    items = [policies] if single else list(policies)
    for p in items:
        if not isinstance(p, cls):
            raise ValueError(f"policy ({p!r}) must be a {cls.__name__} policy")
    if not items:
        raise ValueError(f"no {cls.__name__} policy given")
    return items, single


def _drawn(drawn, n: int, limit: int) -> np.ndarray:
    d = np.asarray(drawn)
    if d.dtype.kind not in "iu":
        raise ValueError(f"drawn ({drawn!r}) must be an integer or integer array")
    d = np.broadcast_to(d.astype(np.int64), (n,)).copy() if d.ndim == 0 else d.astype(np.int64)
    if d.shape != (n,):
        raise ValueError(f"drawn must hold one count per image ({n}), got shape {d.shape}")
    bad = (d < 0) | (d > limit)
    if np.any(bad):
        raise ValueError(f"drawn ({d[bad][0]}) must be in [0, {limit}] (image {np.argmax(bad)})")
    return d


def _check_index(bits, cum, slot, n_images):
    bits = np.asarray(bits)
    cum = np.asarray(cum)
    if bits.dtype != np.uint8 or bits.ndim != 2 or cum.dtype != np.int32 or cum.ndim != 2 \
            or bits.shape[0] != cum.shape[0] or bits.shape[1] != 8 * (cum.shape[1] - 1):
        raise ValueError(
            "bits (uint8, (slots, 8 w)) and cum (int32, (slots, w + 1)) must be an index of "
            f"isskit.replay._kernels.pack_slots, got {bits.dtype} {bits.shape} and {cum.dtype} "
            f"{cum.shape}"
        )
    if slot is None:
        slot = np.arange(bits.shape[0] if n_images is None else n_images, dtype=np.int64)
    slot = np.asarray(slot, dtype=np.int64)
    if slot.ndim != 1 or np.any((slot < 0) | (slot >= bits.shape[0])):
        raise ValueError(f"slot must give each image a row of bits in [0, {bits.shape[0]})")
    return np.ascontiguousarray(bits), np.ascontiguousarray(cum), slot


def _too_short(policy, image, need, have, n_bad):
    more = f" (and {n_bad - 1} more images)" if n_bad > 1 else ""
    holds = "does not hold them" if have is None else f"holds {have}"
    return ValueError(
        f"policy {policy.name} needs {need} samples for image {image}{more}, but its stream "
        f"{holds}; sample more, or choose a smaller policy"
    )


def _finish(policies, single, decision, samples, prediction, drawn, online, image_ids):
    if not online:
        for b, p in enumerate(policies):
            short = np.flatnonzero(decision[b] == NEED_MORE)
            if short.size:
                i = int(short[0])
                image = i if image_ids is None else image_ids[i]
                have = None if drawn is None else int(drawn[i])
                raise _too_short(p, image, int(samples[b, i]), have, short.size)
    if single:
        return Decisions(decision[0], samples[0], None if prediction is None else prediction[0])
    return Decisions(decision, samples, prediction)


def decide_cs(bits, cum, policies, sigma, *, drawn, slot=None, online=False,
              image_ids=None) -> Decisions:
    """Replay ``cs`` policies over the bit vectors of each image's true label.

    The stopping time is found without visiting every draw: from count A after t draws,
    the count after u draws lies in ``[A, A + u - t]``, so no threshold can be crossed
    before ``min(next_hi[t - A], next_lo[A])`` (:class:`CSThresholds`); and a stream that
    has not stopped can reach ``lo`` only on a failure and ``hi`` only on a success. So it
    moves from one draw that can stop it to the next with a select and a rank query on the
    bit vector (:func:`isskit.replay._kernels._cs_one`); 64-draw words of the wrong kind are
    skipped by their popcount, unread.

    Parameters
    ----------
    bits, cum : ndarray
        uint8 bit vectors and int32 rank directories (:func:`isskit.replay._kernels.pack_slots`)
        of ``labels == true label``.
    policies : CS or sequence of CS
    sigma : float
        Noise level of the streams.
    drawn : int or ndarray of int64, shape (n,)
        Draws each stream holds (the store's ``/drawn``, or N).
    slot : ndarray of int64, shape (n,), optional
        Row of ``bits`` of each image's true label; default ``arange(len(bits))``.
    online : bool
        Return :data:`NEED_MORE` with the samples needed where a stream is too short,
        instead of raising.
    image_ids : array_like, optional
        Image names for error messages (default: positions).

    Returns
    -------
    Decisions
        ``decision`` and ``samples``.

    Raises
    ------
    ValueError
        Bad parameters, or (unless ``online``) a stream too short for a decision, naming
        the image and the numbers.
    """
    policies, single = _as_policies(policies, CS)
    bits, cum, slot = _check_index(bits, cum, slot, None)
    n = slot.size
    drawn = _drawn(drawn, n, 64 * (cum.shape[1] - 1))
    sets = [p.thresholds(sigma) for p in policies]
    width = max(s.n_max for s in sets) + 1
    B = len(sets)
    lo = np.full((B, width), -1, np.int32)
    hi = np.empty((B, width), np.int32)
    next_hi = np.empty((B, width), np.int32)
    next_lo = np.empty((B, width), np.int32)
    for b, s in enumerate(sets):
        m = s.n_max
        lo[b, :m], hi[b, :m] = s.lo, s.hi
        next_hi[b, : m + 1], next_lo[b, : m + 1] = s.next_hi, s.next_lo
    n_max = np.array([s.n_max for s in sets], dtype=np.int64)
    decision = np.empty((B, n), np.int8)
    samples = np.empty((B, n), np.int64)
    _kernels.cs_decide(bits, cum, slot, drawn, n_max, lo, hi, next_hi, next_lo, decision,
                       samples)
    return _finish(policies, single, decision, samples, None, drawn, online, image_ids)


def _stack(rows, dtype, fill) -> np.ndarray:
    K = max(len(r) for r in rows)
    out = np.full((len(rows), K), fill, dtype=dtype)
    for b, r in enumerate(rows):
        out[b, : len(r)] = r
    return out


def decide_staged(bits, cum, policies, sigma, *, drawn, slot=None, online=False,
                  image_ids=None) -> Decisions:
    """Replay ``staged`` policies over the bit vectors of each image's true label.

    The pooled count after each stage is one rank query. Parameters and returns as
    :func:`decide_cs`, with :class:`Staged` policies.
    """
    policies, single = _as_policies(policies, Staged)
    bits, cum, slot = _check_index(bits, cum, slot, None)
    n = slot.size
    drawn = _drawn(drawn, n, 64 * (cum.shape[1] - 1))
    th = _staged_thresholds(policies, sigma)
    ends = _stack([t.ends for t in th], np.int64, 0)
    cert = _stack([t.cert_min for t in th], np.int64, 0)
    rej = _stack([t.stop_max for t in th], np.int64, -1)
    n_stages = np.array([len(t.ends) for t in th], dtype=np.int64)
    decision = np.empty((len(th), n), np.int8)
    samples = np.empty((len(th), n), np.int64)
    _kernels.staged_decide(bits, cum, slot, drawn, ends, n_stages, cert, rej, decision,
                           samples)
    return _finish(policies, single, decision, samples, None, drawn, online, image_ids)


def _labels(labels_block, num_classes, drawn):
    block = np.asarray(labels_block)
    if block.ndim != 2 or block.dtype != np.uint16:
        raise ValueError(
            f"labels_block must be a 2-D uint16 array (images, samples), got {block.dtype} "
            f"{block.shape}"
        )
    block = np.ascontiguousarray(block)
    if num_classes is None:
        num_classes = int(block.max()) + 1 if block.size else 1
    num_classes = check_positive_int(num_classes, "num_classes")
    d = _drawn(block.shape[1] if drawn is None else drawn, block.shape[0], block.shape[1])
    return block, num_classes, d


def _schedule(policy) -> tuple[int, tuple[int, ...]]:
    return policy.n0, policy.stages


def adaptive_ranges(labels_block, n0, stages, *, num_classes=None, drawn=None):
    """Per image and stage: the class adaptive sampling chooses and its fresh count.

    The class is the most frequent label of stage j's selection range (ties to the smallest
    label, :func:`isskit.replay._kernels.range_modes`); the count is over stage j's estimation
    range, from the raw labels (:func:`isskit.replay._kernels.range_counts`). An index that holds
    the selection modes and a bit vector for each class chosen can give the counts instead
    (:func:`isskit.replay._kernels.count_ranges`), then :func:`decide_adaptive_counts` decides.

    Parameters
    ----------
    labels_block : ndarray of uint16, shape (n, N)
    n0 : int
    stages : tuple of int
        The schedule (every :class:`Adaptive` with the same ``n0`` and ``stages`` shares it).
    num_classes : int, optional
        Labels must be below it; default the largest label + 1.
    drawn : int or ndarray, optional
        Draws each row holds (default N): ranges past them get -1.

    Returns
    -------
    classes, counts : ndarray of int64, shape (n, K)
        -1 where the row does not hold the range.
    """
    block, num_classes, d = _labels(labels_block, num_classes, drawn)
    sched = Adaptive(r=1.0, n0=n0, stages=stages)
    sel = np.array([a for a, _ in sched.selection_ranges], dtype=np.int64)
    est = np.array(sched.estimation_ranges, dtype=np.int64)
    n, K = block.shape[0], len(sched.stages)
    classes = np.empty((n, K), np.int64)
    mode_counts = np.empty((n, K), np.int64)
    bad = np.empty(n, np.int64)
    _kernels.range_modes(block, sel, sched.n0, d, num_classes, classes, mode_counts, bad)
    if np.any(bad >= 0):
        r = int(np.argmax(bad >= 0))
        raise ValueError(
            f"row {r} holds label {int(block[r, bad[r]])} at sample {int(bad[r])}, "
            f"not below num_classes ({num_classes})"
        )
    counts = np.empty((n, K), np.int64)
    _kernels.range_counts(block, classes, np.ascontiguousarray(est[:, 0]),
                          np.ascontiguousarray(est[:, 1]), d, counts)
    return classes, counts


def decide_adaptive_counts(classes, counts, policies, sigma, *, drawn=None, online=False,
                           image_ids=None) -> Decisions:
    """Decide :class:`Adaptive` policies of one schedule from per-stage classes and counts.

    Parameters
    ----------
    classes, counts : ndarray of int64, shape (n, K)
        From :func:`adaptive_ranges` (or an index); -1 where the stream does not hold them.
    policies : Adaptive or sequence of Adaptive
        All with the schedule (``n0``, ``stages``) the counts were taken for.
    sigma : float
    drawn : int or ndarray, optional
        Draws each stream holds, for error messages only.
    online, image_ids :
        As in :func:`decide_cs`.

    Returns
    -------
    Decisions
        ``decision``, ``samples`` and ``prediction`` (the certified class, -1 otherwise).
    """
    policies, single = _as_policies(policies, Adaptive)
    classes = np.ascontiguousarray(classes, dtype=np.int64)
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    scheds = {_schedule(p) for p in policies}
    if len(scheds) != 1:
        raise ValueError(f"policies mix schedules {sorted(scheds)}; pass one schedule at a time")
    K = len(policies[0].stages)
    if classes.ndim != 2 or classes.shape != counts.shape or classes.shape[1] != K:
        raise ValueError(
            f"classes and counts must have shape (images, {K}), got {classes.shape} and "
            f"{counts.shape}"
        )
    n = classes.shape[0]
    th = _adaptive_thresholds(policies, sigma)
    ends = np.stack([t.ends for t in th])
    cert = np.stack([t.cert_min for t in th])
    stop = np.stack([t.stop_max for t in th])
    n_stages = np.full(len(th), K, dtype=np.int64)
    decision = np.empty((len(th), n), np.int8)
    samples = np.empty((len(th), n), np.int64)
    prediction = np.empty((len(th), n), np.int64)
    _kernels.adaptive_decide(classes, counts, ends, n_stages, cert, stop, decision, samples,
                             prediction)
    if drawn is not None:
        drawn = _drawn(drawn, n, np.iinfo(np.int64).max)
    return _finish(policies, single, decision, samples, prediction, drawn, online, image_ids)


def decide_adaptive(labels_block, policies, sigma, *, num_classes=None, drawn=None,
                    online=False, image_ids=None) -> Decisions:
    """Replay :class:`Adaptive` policies over raw label streams.

    Policies are grouped by schedule (``n0``, ``stages``); each schedule's selection modes
    and counts are computed once (:func:`adaptive_ranges`) and shared by its policies.

    Parameters
    ----------
    labels_block : ndarray of uint16, shape (n, N)
        One stream per row.
    policies : Adaptive or sequence of Adaptive
    sigma : float
    num_classes : int, optional
        Labels must be below it; default the largest label + 1.
    drawn : int or ndarray, optional
        Draws each row holds, default N.
    online, image_ids :
        As in :func:`decide_cs`.

    Returns
    -------
    Decisions
        ``decision``, ``samples`` and ``prediction`` (the certified class, -1 otherwise).
    """
    policies, single = _as_policies(policies, Adaptive)
    block, num_classes, d = _labels(labels_block, num_classes, drawn)
    n = block.shape[0]
    decision = np.empty((len(policies), n), np.int8)
    samples = np.empty((len(policies), n), np.int64)
    prediction = np.empty((len(policies), n), np.int64)
    groups: dict = {}
    for b, p in enumerate(policies):
        groups.setdefault(_schedule(p), []).append(b)
    for (n0, stages), members in groups.items():
        classes, counts = adaptive_ranges(block, n0, stages, num_classes=num_classes, drawn=d)
        res = decide_adaptive_counts(classes, counts, [policies[b] for b in members], sigma,
                                     drawn=d, online=True)
        decision[members], samples[members], prediction[members] = res
    return _finish(policies, single, decision, samples, prediction, d, online, image_ids)
