"""What the decision policies share: parameter checks, p0 and stage thresholds.

The policies themselves live in :mod:`isskit.policies.adaptive`, :mod:`isskit.policies.staged`
and :mod:`isskit.policies.cs`; their evaluation over streams in :mod:`isskit.decision`. This
module imports nothing that reads a store or compiles a kernel.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from isskit._bisect import bisect
from isskit.psi.table import _frozen
from isskit.validate import _real, check_alpha, check_sample_size, check_sigma


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


def _check_staged_fields(policy, level: str, parts, why: str) -> None:
    """Check and set the fields the staged decision policies share (``adaptive``, ``staged``).

    ``r``, ``stages`` and ``alpha``; then ``level`` (``"alpha"`` or ``"beta"``), which the
    policy splits over ``parts(K)`` tests of its K stages (0: none), must leave each test a
    level below 1/2 (``why`` says how it is split, for the message).
    """
    object.__setattr__(policy, "r", _check_r(policy.r))
    object.__setattr__(policy, "stages", _check_stages(policy.stages))
    object.__setattr__(policy, "alpha", check_alpha(policy.alpha))
    value = check_alpha(getattr(policy, level), level)
    K = len(policy.stages)
    n = parts(K)
    if n and value / n >= 0.5:
        raise ValueError(f"{level} ({value}) must be < {n / 2:g} with {K} stage(s): {why}")
    object.__setattr__(policy, level, value)


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


def _memoised(compute):
    """Cache a thresholds function per (policies, sigma).

    Online certification asks a policy for its thresholds once per image and round, and
    they cost a bisection per stage.
    """

    @functools.lru_cache(maxsize=256)
    def cached(policies, sigma):
        return tuple(compute(list(policies), sigma))

    @functools.wraps(compute)
    def thresholds(policies, sigma):
        # the arrays are read-only (_split), so sharing them between callers is safe
        return list(cached(tuple(policies), float(check_sigma(sigma))))

    return thresholds


def _split(policies, owner, ends, sizes, cert, stop, p0):
    return [StageThresholds(ends=_frozen(np.asarray(ends[b], np.int64)),
                            sizes=_frozen(sizes[owner == b]), cert_min=_frozen(cert[owner == b]),
                            stop_max=_frozen(stop[owner == b]), p0=p0[b])
            for b in range(len(policies))]
