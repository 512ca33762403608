"""TEMPORARY stand-in for isskit.psi.psi_table until the psi module lands on main.

Follows DESIGN.md's definition (psi(p) = min k with decline <= U, 0 where the target radius
is <= 0; psi_iss = max of the two neighbouring grid values; k_hat = max(psi_iss(p_low),
psi_iss(p_up))) by bisection, assuming the decline falls with k. Tests only.
"""

from __future__ import annotations

import functools

import numpy as np

from isskit.stats import expected_radius


class StandinTable:
    def __init__(self, k_bar, U, decline, sigma, alpha, delta):
        steps = round(1 / delta)
        self.steps = steps
        self.p = np.arange(steps + 1) / steps
        r_bar = expected_radius(k_bar, self.p, sigma, alpha)
        target = r_bar - U if decline == "ad" else (1 - U) * r_bar
        k = np.zeros(steps + 1, np.int64)
        live = np.flatnonzero(target > 0)
        lo = np.ones(live.size, np.int64)
        hi = np.full(live.size, k_bar, np.int64)
        while np.any(lo < hi):
            mid = (lo + hi) // 2
            ok = expected_radius(mid, self.p[live], sigma, alpha) >= target[live]
            hi = np.where(ok & (lo < hi), mid, hi)
            lo = np.where(~ok & (lo < hi), mid + 1, lo)
        k[live] = lo
        self.k = k

    def psi_iss(self, p):
        x = np.asarray(p, dtype=np.float64) * self.steps
        i = np.clip(np.floor(x + 1e-9).astype(np.int64), 0, self.steps)
        j = np.clip(np.ceil(x - 1e-9).astype(np.int64), 0, self.steps)
        return np.maximum(self.k[i], self.k[j])

    def k_hat(self, p_low, p_up):
        return np.maximum(self.psi_iss(p_low), self.psi_iss(p_up)).astype(np.int64)


@functools.cache
def psi_table(k_bar, U, decline, sigma, alpha, delta):
    return StandinTable(k_bar, U, decline, sigma, alpha, delta)
