"""Slow, obvious implementations the fast code is checked against.

Each one follows the definition in DESIGN.md literally, with scipy.stats as the only
numerical engine, and never shares code with ``isskit`` beyond argument values.
"""

from __future__ import annotations

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


# ---------------------------------------------------------------------------------------------
# replay (issue 4): twins of isskit._kernels / isskit.replay / isskit.metrics.
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
