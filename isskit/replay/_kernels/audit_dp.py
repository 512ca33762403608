"""The exact law of a ``cs`` decision on an i.i.d. stream: the audit's dynamic programme."""

from __future__ import annotations

import numpy as np

from isskit.replay._kernels.options import _jit

__all__: list[str] = []

#: Probability below which a count is dropped from the audit's dynamic programme.
_NEGLIGIBLE = 1e-300


@_jit
def cs_band_dp(lo, hi, n_max, p, out):
    """Exact law of a cs decision on an i.i.d. Bernoulli(p) stream, over the undecided band.

    The undecided counts after t draws lie strictly between ``lo[t]`` and ``hi[t]``; their
    probabilities advance one draw at a time (``P'(A) = (1 - p) P(A) + p P(A - 1)``), and
    the mass that reaches a threshold is absorbed (the lower one first, as the stopping
    rule tests it). The band is O(sqrt(t)) wide, so the whole law costs O(n_max^1.5).
    Counts of probability below 1e-300 at the band's ends are dropped (at most about
    n_max * 1e-300 in all).

    ``out`` (float64, shape (4,)): P(certified), P(not certified), P(undecided) and the
    expected samples consumed.
    """
    w = np.zeros(n_max + 2, np.float64)
    w[0] = 1.0
    first = 0  # the band of live counts is [first, last]
    last = 0
    cert = 0.0
    rej = 0.0
    mean = 0.0
    q = 1.0 - p
    for t in range(1, n_max):
        # one more draw: new[A] = q old[A] + p old[A - 1], walking down to reuse w in place
        w[last + 1] = p * w[last]
        for a in range(last, first, -1):
            w[a] = q * w[a] + p * w[a - 1]
        w[first] = q * w[first]
        last += 1
        low = lo[t]
        high = hi[t]
        stopped = 0.0
        while first <= last and first <= low:
            rej += w[first]
            stopped += w[first]
            w[first] = 0.0
            first += 1
        while last >= first and last >= high:
            cert += w[last]
            stopped += w[last]
            w[last] = 0.0
            last -= 1
        mean += t * stopped
        # Counts whose probability underflows carry nothing (< 1e-300 each) but would cost
        # subnormal arithmetic on every later draw: the band ends at the last live value.
        while first < last and w[first] < _NEGLIGIBLE:
            w[first] = 0.0
            first += 1
        while last > first and w[last] < _NEGLIGIBLE:
            w[last] = 0.0
            last -= 1
        if first > last:
            break
    live = 0.0
    for a in range(first, last + 1):
        live += w[a]
    out[0] = cert
    out[1] = rej
    out[2] = live
    out[3] = mean + n_max * live
