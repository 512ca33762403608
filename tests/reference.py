"""Slow, obvious implementations the fast code is checked against.

Each one follows the definition in DESIGN.md literally, with scipy.stats as the only
numerical engine, and never shares code with ``isskit`` beyond argument values.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as st


def radius_ref(k, p, sigma, alpha):
    """R(k, p) = sigma * Phi^-1(Beta(alpha; p k, k - p k + 1)), scipy.stats only."""
    k = np.asarray(k, dtype=np.float64)
    a = p * k
    with np.errstate(divide="ignore"):
        q = np.where(a > 0, st.beta.ppf(alpha, np.where(a > 0, a, 1.0), k - a + 1.0), 0.0)
        return sigma * st.norm.ppf(q)


def psi_bruteforce(p, k_bar, U, decline, sigma, alpha):
    """psi(p) by scanning k = 1 .. k_bar: the first k whose decline is <= U.

    0 where the target radius R(k_bar, p) - U (AD) or (1 - U) R(k_bar, p) (RD) is <= 0.
    """
    out = []
    ks = np.arange(1, k_bar + 1)
    for pp in np.atleast_1d(np.asarray(p, dtype=np.float64)):
        r_bar = float(radius_ref(k_bar, pp, sigma, alpha))
        target = r_bar - U if decline == "ad" else (1.0 - U) * r_bar
        if not target > 0:
            out.append(0)
            continue
        drop = r_bar - radius_ref(ks, pp, sigma, alpha)
        if decline == "rd":
            drop = drop / r_bar
        out.append(int(ks[np.argmax(drop <= U)]))
    return np.array(out, dtype=np.int64)


def clipped_decline_ref(k, p, k_bar, decline, sigma, alpha):
    """Decline of a certificate of k samples (k = 0: abstain) on radii clipped at 0."""
    r_bar = float(radius_ref(k_bar, p, sigma, alpha))
    r_k = max(float(radius_ref(k, p, sigma, alpha)), 0.0) if k >= 1 else 0.0
    drop = max(r_bar, 0.0) - r_k
    if decline == "rd":
        return drop / r_bar if r_bar > 0 else 0.0
    return drop


def prop1_bruteforce(table, points, intervals=None):
    """Largest decline(k_hat(a, b); p_A) - U over intervals and p_A in ``points``.

    ``intervals``: a list of (a, b); default every pair a <= b of ``points``. The decline
    of each distinct k_hat at each point is computed once with scipy.stats, then every
    interval takes the max over the points it contains. Returns (excess, a, b, p_A, k_hat).
    """
    pts = np.unique(np.asarray(points, dtype=np.float64))
    if intervals is None:
        ia, ib = np.triu_indices(pts.size)
        a_all, b_all = pts[ia], pts[ib]
    else:
        a_all = np.array([iv[0] for iv in intervals])
        b_all = np.array([iv[1] for iv in intervals])
    k_hat = np.asarray(table.k_hat(a_all, b_all))
    decl = {}
    for k in np.unique(k_hat):
        decl[int(k)] = np.array([
            clipped_decline_ref(int(k), p, table.k_bar, table.decline, table.sigma, table.alpha)
            for p in pts
        ])
    best = (-np.inf, None, None, None, None)
    for a, b, k in zip(a_all, b_all, k_hat, strict=True):
        inside = (pts >= a) & (pts <= b)
        if not np.any(inside):
            continue
        d = np.where(inside, decl[int(k)], -np.inf)
        j = int(np.argmax(d))
        if d[j] - table.U > best[0]:
            best = (d[j] - table.U, float(a), float(b), float(pts[j]), int(k))
    return best
