"""Slow, obvious implementations the fast code is checked against.

Each one follows the definition in DESIGN.md literally, with scipy.stats as the only
numerical engine, and never shares code with ``isskit`` beyond argument values.
"""

from __future__ import annotations

import hashlib

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

# --- sampling (isskit.sampling) ---------------------------------------------

def sample_row_reference(model, x, *, sigma, N, batch, seed, image_index):
    """One stream row, one forward pass per noisy copy (isskit.sampling's documented noise).

    The noise follows the derivation written in ``isskit/sampling.py``'s docstring, coded
    here from that text: a CPU ``torch.Generator`` seeded with the first 8 bytes
    (little-endian, top bit cleared) of ``blake2b(b"isskit-noise-v1:<seed>:<index>")``,
    ``normal_`` on float32 blocks of ``batch`` copies (the last one shorter), input
    ``torch.add(x, z, alpha=sigma)``. Then every copy is classified alone and the first
    maximal logit wins.

    Returns
    -------
    labels : ndarray of int64, shape (N,)
    margins : ndarray of float64, shape (N,)
        Top logit minus the runner-up, per copy: a batched forward pass may round
        differently from a single one, so labels are comparable where this is not tiny.
    """
    import torch

    digest = hashlib.blake2b(f"isskit-noise-v1:{seed}:{image_index}".encode(),
                             digest_size=8).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))
    labels, margins = [], []
    with torch.no_grad():
        for start in range(0, N, batch):
            b = min(batch, N - start)
            z = torch.empty((b, *x.shape), dtype=torch.float32)
            z.normal_(generator=gen)
            noisy = torch.add(x, z, alpha=sigma)
            for j in range(b):
                logits = model(noisy[j : j + 1])[0].double()
                top2 = torch.topk(logits, 2).values
                labels.append(int(torch.argmax(logits)))
                margins.append(float(top2[0] - top2[1]))
    return np.asarray(labels, dtype=np.int64), np.asarray(margins)
