"""The thresholds of ``cs`` (Voracek 2024): the KT walk, made monotone, and skip tables.

Python wrappers and checks live in :mod:`isskit.policies.cs`.
"""

from __future__ import annotations

import numpy as np

from isskit.replay._kernels.options import _jit

__all__: list[str] = []


@_jit
def kt_upper_raw(p, log_c, out):
    """Per draw count t, the KT upper threshold of Voracek's ``thresholds.py`` (not monotone).

    ``out[t]`` is the smallest count ``A >= p t`` whose Beta(1/2, 1/2) mixture likelihood
    ratio against Bernoulli(p) exceeds ``exp(log_c)``, and ``A + len(out)`` where no count
    does. Computed as the authors do (``get_upper_threshold``): one walk that carries the
    log mixture probability of the current (count, length) along -- a success turns into a
    failure by the predictive ratio, a new draw is a failure -- and starts each length's
    search at the previous length's threshold. Same floating-point operations in the same
    order, so the same integers, including at near-ties (tested against a direct
    ``betaln`` search in ``tests/reference.py``).
    """
    n = out.shape[0]
    lp = np.log(p)
    lq = np.log(1.0 - p)
    a = 0
    t = 0
    log_q = 0.0
    while t < n:
        log_p = a * lp + (t - a) * lq
        if log_q - log_p > log_c and a >= p * t:
            out[t] = a
            q = (a + 0.5) / (t + 1)
            log_q += np.log(1.0 - q)
            t += 1
        elif a != t:
            q = (a + 0.5) / t
            log_q = log_q - np.log(1.0 - q) + np.log(q)
            a += 1
        else:
            out[t] = a + n
            q = (a + 0.5) / (t + 1)
            log_q += np.log(1.0 - q)
            t += 1


@_jit
def cs_tables(up, up_fail, lo, hi, next_hi, next_lo):
    """Monotone cs thresholds and their skip tables from the raw upper thresholds.

    ``hi`` is the running minimum from the right of ``up`` (``thresholds.py``'s ``cumin``),
    ``lo[t]`` the running maximum of ``t - `` that of ``up_fail``; then unreachable entries
    are written ``hi[t] = t + 1``, ``lo[t] = -1``. ``next_hi[f]`` (``f = 0 .. n``) is the
    first ``t >= 1`` with ``t - hi[t] >= f`` and ``next_lo[a]`` the first ``t >= 1`` with
    ``lo[t] >= a``, ``n`` where there is none (see :class:`isskit.decision.CSThresholds`).
    """
    n = up.shape[0]
    m = up[n - 1]
    m_fail = up_fail[n - 1]
    for t in range(n - 1, -1, -1):
        m = min(m, up[t])
        m_fail = min(m_fail, up_fail[t])
        hi[t] = min(m, t + 1)
        lo[t] = t - m_fail
    best = lo[0]
    for t in range(n):
        best = max(best, lo[t])
        lo[t] = max(best, -1)
    next_hi[:] = n
    next_lo[:] = n
    slack = -1  # max of t - hi[t] so far (>= -1 everywhere)
    reach = -1  # max of lo[t] so far
    for t in range(1, n):
        g = t - hi[t]
        while slack < g:
            slack += 1
            next_hi[slack] = t
        while reach < lo[t]:
            reach += 1
            next_lo[reach] = t
