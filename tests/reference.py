"""Slow, obvious implementations the fast code is checked against.

Each one follows the definition in DESIGN.md literally, with scipy.stats as the only
numerical engine, and never shares code with ``isskit`` beyond argument values.
"""

from __future__ import annotations

import hashlib
import math

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


# ---------------------------------------------------------------------------------------------
# replay (issue 4): twins of isskit.replay._kernels / isskit.replay / isskit.replay.metrics.
# Per image, plain loops over the raw labels; Beta quantiles from scipy.stats.beta.ppf.
# ---------------------------------------------------------------------------------------------


def ref_mode(labels) -> tuple[int, int]:
    """Most frequent label of a sequence (ties to the smallest label) and its count."""
    counts: dict[int, int] = {}
    for lab in labels:
        counts[int(lab)] = counts.get(int(lab), 0) + 1
    best, best_count = 0, 0
    for lab in sorted(counts):
        if counts[lab] > best_count:
            best, best_count = lab, counts[lab]
    return best, best_count


def ref_count(labels, cls, start, stop) -> int:
    """How often ``cls`` occurs in ``labels[start:stop]``, by a loop."""
    n = 0
    for q in range(start, stop):
        if int(labels[q]) == cls:
            n += 1
    return n


def ref_cp_lower(k_A, k, alpha) -> float:
    """One-sided Clopper-Pearson lower bound from scipy.stats.beta.ppf (0 when k_A = 0)."""
    if k_A == 0:
        return 0.0
    return float(st.beta.ppf(alpha, k_A, k - k_A + 1))


def ref_cp_interval(k_A, k, alpha) -> tuple[float, float]:
    """Two-sided Clopper-Pearson interval at level alpha, from scipy.stats.beta.ppf."""
    low = 0.0 if k_A == 0 else float(st.beta.ppf(alpha / 2, k_A, k - k_A + 1))
    up = 1.0 if k_A == k else float(st.beta.ppf(1 - alpha / 2, k_A + 1, k - k_A))
    return low, up


class RefTooFewSamples(ValueError):
    """A policy needs more samples than the stream holds (the reference's error)."""


def ref_certify_image(labels, policy, sigma, psi_table=None) -> dict:
    """One policy on one image's stream, read straight off DESIGN.md's policy table.

    ``psi_table(k_bar, U, decline, sigma, alpha, delta, mapping=...)`` gives ISS's mapping
    (its ``k_hat(p_low, p_up)``; isskit.psi, tested on its own against psi_bruteforce).
    Raises :class:`RefTooFewSamples` when the stream is too short.
    """
    n_stream = len(labels)
    kind = policy.kind
    k_hat = -1
    if kind == "cohen":
        sel_stop, start, k = policy.n0, policy.n0, policy.n
        samples = policy.n0 + policy.n
    elif kind == "ias":
        sel_stop, start, k = policy.n, 0, policy.n
        samples = policy.n
    else:
        sel_stop = policy.k0
        if sel_stop > n_stream:
            raise RefTooFewSamples(f"{policy.name}: pilot {sel_stop} > {n_stream}")
        cls, pilot = ref_mode(labels[0 : policy.k0])
        p_low, p_up = ref_cp_interval(pilot, policy.k0, policy.alpha)
        table = psi_table(policy.k_bar, policy.U, policy.decline, sigma, policy.alpha,
                          policy.delta, mapping=policy.mapping)
        k_hat = int(table.k_hat([p_low], [p_up])[0])
        k = k_hat
        if policy.fresh:
            start, samples = policy.k0, policy.k0 + k_hat
        else:
            start, samples = 0, max(policy.k0, k_hat)
    if max(sel_stop, start + k, samples) > n_stream:
        raise RefTooFewSamples(f"{policy.name}: needs {max(start + k, samples)} > {n_stream}")
    cls, _ = ref_mode(labels[0:sel_stop])
    if k == 0:  # ISS with k_hat = 0: abstain after the pilot, no estimate
        return {"prediction": -1, "radius": 0.0, "p_lower": math.nan, "samples": samples,
                "k_hat": k_hat}
    k_A = ref_count(labels, cls, start, start + k)
    p_lower = ref_cp_lower(k_A, k, policy.alpha)
    if p_lower >= 0.5:
        prediction, radius = cls, sigma * float(st.norm.ppf(p_lower))
    else:
        prediction, radius = -1, 0.0
    return {"prediction": prediction, "radius": radius, "p_lower": p_lower, "samples": samples,
            "k_hat": k_hat}


def ref_replay(labels_2d, policy, sigma, psi_table=None) -> dict:
    """:func:`ref_certify_image` for every row; lists per field."""
    out: dict[str, list] = {"prediction": [], "radius": [], "p_lower": [], "samples": [],
                            "k_hat": []}
    for row in labels_2d:
        res = ref_certify_image(list(row), policy, sigma, psi_table)
        for key in out:
            out[key].append(res[key])
    return out


def ref_acr(prediction, radius, true_label) -> float:
    """Eq. 7 by a loop: radius summed over correct predictions, divided by all images."""
    total = 0.0
    for p, r, y in zip(prediction, radius, true_label, strict=True):
        if p == y:
            total += r
    return total / len(true_label)


def ref_certified_accuracy(prediction, radius, true_label, r) -> float:
    """Eq. 8 by a loop: correct and radius strictly above r."""
    hits = 0
    for p, rad, y in zip(prediction, radius, true_label, strict=True):
        if p == y and rad > r:
            hits += 1
    return hits / len(true_label)


def ref_mad(radius, reference_radius) -> float:
    """Largest radius lost against the reference over the images, by a loop."""
    return max(rr - r for r, rr in zip(radius, reference_radius, strict=True))


# --------------------------------------------------------------------------- end of replay --
