"""Slow, obvious implementations the fast code is checked against.

Each one follows the definition in DESIGN.md literally, with scipy.stats as the only
numerical engine, and never shares code with ``isskit`` beyond argument values.
"""

from __future__ import annotations

import bisect
import functools
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


def psi_bisect_ref(p, k_bar, U, decline, sigma, alpha):
    """psi(p) by a plain bisection over k in [1, k_bar], every p at once.

    The definition and the floating-point operations of :func:`psi_bruteforce` (the first
    k whose decline is <= U; 0 where the target radius is <= 0), found in about
    log2(k_bar) steps instead of a scan of every k, so that whole grids at k_bar = 100000
    stay cheap. Bisection needs R(k, p) non-decreasing in k, true for alpha < 1/2 (the
    Hypothesis property ``test_radius_non_decreasing_in_k``; ``tests/test_reference.py``
    checks this function against the scan); for alpha >= 1/2 it is the scan.
    """
    p = np.atleast_1d(np.asarray(p, dtype=np.float64))
    if alpha >= 0.5:
        return psi_bruteforce(p, k_bar, U, decline, sigma, alpha)
    out = np.zeros(p.shape, dtype=np.int64)
    r_bar = radius_ref(k_bar, p, sigma, alpha)
    target = r_bar - U if decline == "ad" else (1.0 - U) * r_bar
    live = np.flatnonzero(target > 0)
    pl, rl = p[live], r_bar[live]
    lo = np.zeros(live.size, dtype=np.int64)  # k = 0 (no samples) never meets the bound
    hi = np.full(live.size, k_bar, dtype=np.int64)  # k_bar meets it: decline 0
    while np.any(hi - lo > 1):
        todo = hi - lo > 1
        mid = (lo + hi) // 2
        drop = rl - radius_ref(np.maximum(mid, 1), pl, sigma, alpha)
        if decline == "rd":
            drop = drop / rl
        meets = drop <= U
        hi = np.where(todo & meets, mid, hi)
        lo = np.where(todo & ~meets, mid, lo)
    out[live] = hi
    return out


def psi_grid_ref(k_bar, U, decline, sigma, alpha, delta):
    """The grid ``p = i / steps`` (``steps = round(1 / delta)``) and psi on it, by bisection."""
    steps = round(1.0 / delta)
    p = np.array([i / steps for i in range(steps + 1)])
    return p, psi_bisect_ref(p, k_bar, U, decline, sigma, alpha)


def threshold_ref(k_bar, U, decline, sigma, alpha):
    """The smallest float p where the target radius turns positive; None if it never does.

    Plain bisection on p over [1/2, 1] with scipy's radius (for alpha < 1/2 the target is
    negative at p <= 1/2 and increasing in p): where psi jumps from 0.
    """

    def positive(q):
        r_bar = float(radius_ref(k_bar, q, sigma, alpha))
        return (r_bar - U if decline == "ad" else (1.0 - U) * r_bar) > 0

    lo, hi = 0.5, 1.0
    if positive(lo) or not positive(hi):
        return None
    while True:
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi:
            return hi
        if positive(mid):
            hi = mid
        else:
            lo = mid


@functools.cache
def _psi_grid_cached(k_bar, U, decline, sigma, alpha, delta) -> tuple[int, ...]:
    return tuple(int(k) for k in psi_grid_ref(k_bar, U, decline, sigma, alpha, delta)[1])


def k_hat_ref(p_low, p_up, k_bar, U, decline, sigma, alpha, delta, mapping="paper") -> int:
    """ISS's sample size for the pilot interval ``[p_low, p_up]``, read off DESIGN.md.

    psi at the grid points ``i / steps`` (``steps = round(1 / delta)``) comes from
    :func:`psi_grid_ref`, once per parameter set. ``"paper"`` (Eq. 6, Alg. 2):
    ``max(psi_iss(p_low), psi_iss(p_up))``, psi_iss being psi on the grid and, off it, the
    larger of the two neighbouring grid values. ``"sup"``: the largest psi over the whole
    interval: the grid points inside it and the sup of psi over every cell that meets its
    inside. psi_AD is non-decreasing in p (the property ``test_psi_ad_non_decreasing_in_p``)
    and psi_RD falls then rises after the sign change of R(k_bar, p) (docs/mapping.md), so
    a cell's sup is its larger end, except for RD in the cell where psi leaves 0: there it
    is k_bar, the limit of psi at the sign change p0 (R(k_bar, p0) = 0 > R(k, p0) for every
    k < k_bar).
    """
    steps = round(1.0 / delta)
    grid = [i / steps for i in range(steps + 1)]
    psi = _psi_grid_cached(k_bar, U, decline, sigma, alpha, 1.0 / steps).__getitem__

    def cell_sup(c):
        if mapping == "sup" and decline == "rd" and psi(c) == 0 < psi(c + 1):
            return k_bar
        return max(psi(c), psi(c + 1))

    def psi_iss(q):
        j = bisect.bisect_left(grid, q)  # first grid point >= q
        return psi(j) if grid[j] == q else cell_sup(j - 1)

    out = max(psi_iss(p_low), psi_iss(p_up))
    if mapping == "sup":
        for c in range(steps):
            if grid[c] < p_up and grid[c + 1] > p_low:
                out = max(out, cell_sup(c))
    return out


def clipped_decline_ref(k, p, k_bar, decline, sigma, alpha):
    """Decline of a certificate of k samples (k = 0: abstain) on radii clipped at 0."""
    r_bar = float(radius_ref(k_bar, p, sigma, alpha))
    r_k = max(float(radius_ref(k, p, sigma, alpha)), 0.0) if k >= 1 else 0.0
    drop = max(r_bar, 0.0) - r_k
    if decline == "rd":
        return drop / r_bar if r_bar > 0 else 0.0
    return drop


def clipped_declines_ref(ks, points, k_bar, decline, sigma, alpha):
    """:func:`clipped_decline_ref` of every k in ``ks`` (rows) at every p in ``points`` (columns).

    The same scipy operations, element by element, on arrays: one call for a whole matrix.
    """
    ks = np.asarray(ks, dtype=np.int64)[:, None]
    pts = np.asarray(points, dtype=np.float64)[None, :]
    r_bar = radius_ref(k_bar, pts, sigma, alpha)
    r_k = np.where(ks >= 1, np.maximum(radius_ref(np.maximum(ks, 1), pts, sigma, alpha), 0.0),
                   0.0)
    drop = np.maximum(r_bar, 0.0) - r_k
    if decline == "rd":
        return np.where(r_bar > 0, drop / np.where(r_bar > 0, r_bar, 1.0), 0.0)
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
    ks, which = np.unique(k_hat, return_inverse=True)
    decl = clipped_declines_ref(ks, pts, table.k_bar, table.decline, table.sigma, table.alpha)
    # One row per interval: the decline of its k_hat at each point, -inf outside it.
    inside = (pts[None, :] >= a_all[:, None]) & (pts[None, :] <= b_all[:, None])
    d = np.where(inside, decl[which.ravel()], -np.inf)
    j = np.argmax(d, axis=1)  # the worst point of each interval (the first, on ties)
    worst = d[np.arange(d.shape[0]), j] - table.U
    if not np.any(inside):
        return (-np.inf, None, None, None, None)
    i = int(np.argmax(worst))  # the first interval with the largest excess
    return (float(worst[i]), float(a_all[i]), float(b_all[i]), float(pts[j[i]]), int(k_hat[i]))


def prop2_bruteforce(table, points):
    """Prop. 2 by brute force over every grid-ended interval and every k < k_hat.

    For each interval ``[a, b]`` with both ends on the table's grid (``a <= b``) and each
    ``k = 0 .. k_hat(a, b) - 1``: the largest ``decline(k; p) - U`` over the ``points`` in
    ``[a, b]`` (scipy.stats declines on clipped radii; > 0: k breaks the bound there, as
    tightness needs). Every k, not only ``k_hat - 1``: one decline matrix over
    ``k = 0 .. max k_hat - 1``, so keep k_bar small.

    Returns (margin, a, b, k, k_hat): the smallest such maximum over all intervals and k,
    with where it is; margin <= 0 means that k meets the bound at every point checked in
    ``[a, b]``, so k_hat is not tight there. ``(inf, None, None, None, None)`` when every
    k_hat is 0.
    """
    pts = np.unique(np.asarray(points, dtype=np.float64))
    grid = np.asarray(table.p, dtype=np.float64)
    ia, ib = np.triu_indices(grid.size)
    k_hat = np.asarray(table.k_hat(grid[ia], grid[ib]))
    if k_hat.max() == 0:
        return (np.inf, None, None, None, None)
    excess = clipped_declines_ref(np.arange(int(k_hat.max())), pts, table.k_bar, table.decline,
                                  table.sigma, table.alpha) - table.U
    best = (np.inf, None, None, None, None)
    for i, j, kh in zip(ia, ib, k_hat, strict=True):
        if kh == 0:
            continue
        inside = (pts >= grid[i]) & (pts <= grid[j])
        worst_p = excess[:kh, inside].max(axis=1) if np.any(inside) else np.full(kh, -np.inf)
        k = int(np.argmin(worst_p))
        if worst_p[k] < best[0]:
            best = (float(worst_p[k]), float(grid[i]), float(grid[j]), k, int(kh))
    return best

# --- sampling (isskit.sampling) ---------------------------------------------

def _blake_seed(text):
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def noise_reference(shape, *, N, batch, seed, image_index, scheme="isskit-noise-v2"):
    """The float32 noise of one row, ``(N, *shape)``, coded from sampler.py's docstring.

    ``isskit-noise-v2``: blocks of 256 samples, block b one ``normal_`` on a CPU generator
    seeded with the first 8 bytes (little-endian, top bit cleared) of
    ``blake2b(b"isskit-noise-v2:<seed>:<index>:<b>")``, drawn whole. ``isskit-noise-v1``:
    one generator seeded with ``blake2b(b"isskit-noise-v1:<seed>:<index>")``, ``normal_`` on
    blocks of ``batch`` copies (the last one shorter).
    """
    import torch

    parts = []
    if scheme == "isskit-noise-v1":
        gen = torch.Generator().manual_seed(_blake_seed(f"{scheme}:{seed}:{image_index}"))
        for start in range(0, N, batch):
            z = torch.empty((min(batch, N - start), *shape), dtype=torch.float32)
            parts.append(z.normal_(generator=gen))
    else:
        for b in range(0, (N + 255) // 256):
            gen = torch.Generator().manual_seed(
                _blake_seed(f"{scheme}:{seed}:{image_index}:{b}"))
            z = torch.empty((256, *shape), dtype=torch.float32)
            parts.append(z.normal_(generator=gen))
    return torch.cat(parts)[:N]


def sample_row_reference(model, x, *, sigma, N, batch, seed, image_index,
                         scheme="isskit-noise-v2"):
    """One stream row, one forward pass per noisy copy (isskit.sampling's documented noise).

    The noise is :func:`noise_reference`'s, input ``torch.add(x, z, alpha=sigma)``. Then
    every copy is classified alone and the first maximal logit wins.

    Returns
    -------
    labels : ndarray of int64, shape (N,)
    margins : ndarray of float64, shape (N,)
        Top logit minus the runner-up, per copy: a batched forward pass may round
        differently from a single one, so labels are comparable where this is not tiny.
    """
    import torch

    z = noise_reference(tuple(x.shape), N=N, batch=batch, seed=seed,
                        image_index=image_index, scheme=scheme)
    labels, margins = [], []
    with torch.no_grad():
        noisy = torch.add(x, z, alpha=sigma)
        for j in range(N):
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


def ref_certify_image(labels, policy, sigma) -> dict:
    """One policy on one image's stream, read straight off DESIGN.md's policy table.

    ISS's k_hat comes from :func:`k_hat_ref` (psi by bisection on scipy's radius), never
    from isskit's tables. Raises :class:`RefTooFewSamples` when the stream is too short.
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
        k_hat = k_hat_ref(p_low, p_up, policy.k_bar, policy.U, policy.decline, sigma,
                          policy.alpha, policy.delta, policy.mapping)
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


def ref_replay(labels_2d, policy, sigma) -> dict:
    """:func:`ref_certify_image` for every row; lists per field."""
    out: dict[str, list] = {"prediction": [], "radius": [], "p_lower": [], "samples": [],
                            "k_hat": []}
    for row in labels_2d:
        res = ref_certify_image(list(row), policy, sigma)
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


# ---------------------------------------------------------------------------------------------
# decision policies (issue 10): twins of isskit.decision and its kernels in isskit.replay._kernels.
# Thresholds straight from their definitions (scipy.special.betaln, scipy.stats.binom); the
# stopping rules as the authors' code runs them, one draw or one stage at a time, over one
# image's label list, with the authors' equality tests and statsmodels' Clopper-Pearson
# formulas (beta.ppf for the lower end, beta.isf for the upper).
# ---------------------------------------------------------------------------------------------


def ref_p0(r, sigma) -> float:
    """Phi(r / sigma), from scipy.stats.norm."""
    return float(st.norm.cdf(r / sigma))


def _ref_kt_raw(p, log_c, n):
    """Smallest A >= p t with KT mixture log-likelihood ratio > log_c, per t; inf if none.

    Direct definition (DESIGN.md): log of the Beta(1/2, 1/2) mixture of A successes in t
    draws is betaln(A + 1/2, t - A + 1/2) - betaln(1/2, 1/2); it rises with A from p t on,
    so a bisection per t (all t at once) finds the smallest A.
    """
    from scipy.special import betaln

    t = np.arange(n, dtype=np.float64)

    def llr(a):
        return (betaln(a + 0.5, t - a + 0.5) - betaln(0.5, 0.5)
                - (a * math.log(p) + (t - a) * math.log(1 - p)))

    first = np.ceil(p * t)  # the smallest integer A with A >= p * t
    lo, hi = first - 1, t.copy()  # the condition is taken false at lo, true at hi
    while np.any(hi - lo > 1):
        mid = np.floor((lo + hi) / 2)
        ok = llr(mid) > log_c
        move = hi - lo > 1
        hi = np.where(move & ok, mid, hi)
        lo = np.where(move & ~ok, mid, lo)
    return np.where(llr(t) > log_c, hi, np.inf)


def _ref_union_raw(p, alpha, n):
    """DESIGN.md's union bound: tests at t = 3..26, then the first integer past 1.1**k."""
    out = np.full(n, np.inf)
    times = list(range(3, 27))
    k = 35  # 1.1**34 = 25.5: its first integer past, 26, is already tested
    while math.floor(1.1**k) + 1 < n:
        times.append(math.floor(1.1**k) + 1)
        k += 1
    for j, t in enumerate(times, start=1):
        if t < n:
            out[t] = st.binom.ppf(1 - 5 * alpha / ((j + 4) * (j + 5)), t, p) + 1
    return out


def ref_cs_thresholds(p0, alpha, n_max, method="kt", faithful=False):
    """(lo, hi) as int arrays of n_max; unreachable marked hi = t + 1, lo = -1."""
    if method == "kt":
        log_c = math.log(1 / (2 * alpha)) if faithful else math.log(1 / alpha)
        up, up_fail = _ref_kt_raw(p0, log_c, n_max), _ref_kt_raw(1 - p0, log_c, n_max)
    else:
        up, up_fail = _ref_union_raw(p0, alpha, n_max), _ref_union_raw(1 - p0, alpha, n_max)
    hi = np.minimum.accumulate(up[::-1])[::-1]
    hi_fail = np.minimum.accumulate(up_fail[::-1])[::-1]
    t = np.arange(n_max)
    lo = np.maximum.accumulate(t - hi_fail)
    hi = np.minimum(hi, t + 1).astype(np.int64)
    lo = np.maximum(lo, -1).astype(np.int64)
    return lo, hi


def ref_cs_decide(labels, true_label, lo, hi, n_max):
    """cs on one stream, one draw at a time (core.py certify): (decision, samples).

    Raises RefTooFewSamples when the stream ends before a decision.
    """
    A = 0
    for t in range(1, n_max):
        if t > len(labels):
            raise RefTooFewSamples(f"cs needs draw {t} > {len(labels)}")
        A += int(labels[t - 1]) == true_label
        if A == lo[t]:
            return 0, t
        if A == hi[t]:
            return 1, t
    if n_max > len(labels):
        raise RefTooFewSamples(f"cs needs {n_max} > {len(labels)}")
    return -1, n_max


def _ref_cp_low(count, nobs, alpha_2):
    return 0.0 if count == 0 else float(st.beta.ppf(alpha_2, count, nobs - count + 1))


def _ref_cp_up(count, nobs, alpha_2):
    return 1.0 if count == nobs else float(st.beta.isf(alpha_2, count + 1, nobs - count))


def ref_staged_decide(labels, true_label, policy, sigma):
    """staged on one stream (core.py certify_adaptive): (decision, samples)."""
    p0 = ref_p0(policy.r, sigma)
    K = len(policy.stages)
    alpha_2 = 0.5 * (policy.alpha * 2 / K)  # proportion_confint(alpha=alpha*2/len(ns))
    A = N = 0
    for n in policy.stages:
        if N + n > len(labels):
            raise RefTooFewSamples(f"staged needs {N + n} > {len(labels)}")
        for q in range(N, N + n):
            A += int(labels[q]) == true_label
        N += n
        if _ref_cp_low(A, N, alpha_2) > p0:
            return 1, N
        if _ref_cp_up(A, N, alpha_2) < p0:
            return 0, N
    return -1, N


def ref_adaptive_decide(labels, policy, sigma):
    """Adaptive sampling on one stream (SmoothEnsembleAdaptive.certify): (decision, samples, class).

    Stage i: mode of the next n0 labels (ties to the smallest), count of it in the next n_i.
    """
    K = len(policy.stages)
    pos = 0
    for i, n in enumerate(policy.stages):
        if pos + policy.n0 + n > len(labels):
            raise RefTooFewSamples(f"adaptive needs {pos + policy.n0 + n} > {len(labels)}")
        c, _ = ref_mode(labels[pos : pos + policy.n0])
        nA = ref_count(labels, c, pos + policy.n0, pos + policy.n0 + n)
        pos += policy.n0 + n
        p_lower = _ref_cp_low(nA, n, 0.5 * (2 * (policy.alpha / K)))
        if p_lower > 0.5 and sigma * float(st.norm.ppf(p_lower)) >= policy.r:
            return 1, pos, c
        if i < K - 1:
            upper = _ref_cp_up(nA, n, 0.5 * (2 * policy.beta / (K - 1)))
            if sigma * float(st.norm.ppf(upper)) < policy.r:
                return 0, pos, -1
    return 0, pos, -1


def ref_decision_law_bruteforce(decide, length, ps):
    """Law of ``decide`` over every 0/1 stream of ``length`` draws, for each p in ``ps``.

    ``decide(labels)`` -> (decision, samples, *rest) on a list of labels; each of the
    2**length streams is run once and weighted by its probability (each draw 1 with
    probability p). Returns, per p: P(certified), P(not certified), P(undecided), the
    expected samples, and P(certified with rest[0] == 0) (adaptive's certified class 0;
    0.0 when ``decide`` returns two values).
    """
    import itertools

    runs = []
    for seq in itertools.product((0, 1), repeat=length):
        res = decide(list(seq))
        runs.append((sum(seq), res[0], res[1], len(res) > 2 and res[0] == 1 and res[2] == 0))
    out = []
    for p in ps:
        law = {1: 0.0, 0: 0.0, -1: 0.0}
        mean = cert_zero = 0.0
        for ones, decision, samples, zero in runs:
            w = p**ones * (1 - p) ** (length - ones)
            law[decision] += w
            mean += w * samples
            cert_zero += w * zero
        out.append((law[1], law[0], law[-1], mean, cert_zero))
    return out


# ----------------------------------------------------------------- end of decision policies --


# budget policy and oracles (issue 11): twins of isskit.budget and isskit.studies.oracle.
# scipy.special / scipy.integrate only, no isskit; brute force over k and over allocations.
# ---------------------------------------------------------------------------------------------


def ref_radius(k, p, sigma, alpha) -> float:
    """R(k, p) = sigma * Phi^-1(Beta(alpha; p k, k - p k + 1)), -inf where p k = 0."""
    from scipy.special import betaincinv, ndtri

    a = p * k
    if a <= 0:
        return -math.inf
    return sigma * float(ndtri(betaincinv(a, k - a + 1, alpha)))


def ref_budget_gain(x, k0, k, sigma, alpha) -> float:
    """E[max(R(k, p), 0)] under the Jeffreys posterior Beta(x + 1/2, k0 - x + 1/2), by quad.

    In the quantile form ``E[f(p)] = int_0^1 f(Q(u)) du`` (Q the posterior's quantile), from
    the u where R(k, .) turns positive: the posterior may be as sharp as Beta(k0 + 1/2, 1/2)
    and quad then still sees a smooth integrand.
    """
    import warnings

    from scipy import integrate
    from scipy.optimize import brentq
    from scipy.special import betainc, betaincinv

    if k == 0 or not ref_radius(k, 1.0, sigma, alpha) > 0:
        return 0.0
    a, b = x + 0.5, k0 - x + 0.5
    p_star = brentq(lambda p: ref_radius(k, p, sigma, alpha), 0.5, 1.0, xtol=1e-15)
    u_star = float(betainc(a, b, p_star))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quad's roundoff notes near the tolerance
        value, _ = integrate.quad(
            lambda u: max(ref_radius(k, float(betaincinv(a, b, u)), sigma, alpha), 0.0),
            u_star, 1.0, epsabs=1e-12, epsrel=1e-11, limit=500,
        )
    return value


def ref_budget_k(x, k0, price, sigma, alpha, k_grid) -> tuple[int, float, dict]:
    """argmax over k in ``k_grid`` of gain - price * k, ties to the smallest k, by a loop.

    Returns the k, its objective and every k's objective (for near-tie checks).
    """
    values = {}
    best_k, best = 0, 0.0
    for k in sorted(int(v) for v in k_grid):
        v = ref_budget_gain(x, k0, k, sigma, alpha) - price * k if k > 0 else 0.0
        values[k] = v
        if v > best:
            best_k, best = k, v
    return best_k, best, values


def ref_budget_certify(labels, k0, k, alpha, sigma) -> dict:
    """The budget policy's certificate on one raw stream, given its estimation size k.

    Class: the pilot's mode; count over [k0, k0 + k); Cohen's bound; k = 0 abstains.
    """
    cls, x = ref_mode(labels[0:k0])
    if k == 0:
        return {"pilot": x, "prediction": -1, "radius": 0.0, "p_lower": math.nan,
                "samples": k0}
    k_A = ref_count(labels, cls, k0, k0 + k)
    p_lower = ref_cp_lower(k_A, k, alpha)
    certified = p_lower >= 0.5
    return {"pilot": x, "prediction": cls if certified else -1,
            "radius": sigma * float(st.norm.ppf(p_lower)) if certified else 0.0,
            "p_lower": p_lower, "samples": k0 + k}


def ref_npmle(pilot_counts, k0, support, iterations) -> np.ndarray:
    """EM for the prior on ``support`` maximising the binomial likelihood, one image at a time.

    Starts from the uniform prior and runs exactly ``iterations`` updates.
    """
    from scipy.stats import binom

    support = np.asarray(support, dtype=np.float64)
    lik = np.array([binom.pmf(x, k0, support) for x in pilot_counts])
    w = np.full(len(support), 1.0 / len(support))
    for _ in range(iterations):
        new = np.zeros(len(support))
        for row in lik:
            post = w * row
            new += post / post.sum()
        w = new / len(pilot_counts)
    return w


def ref_oracle_greedy(k_grid, gains, budget):
    """The oracle's greedy on marginal gains over each image's upper concave hull, by loops.

    ``gains[i][j]`` is image i's gain at ``k_grid[j]`` (0 where it cannot gain). Hull
    segments of all images in order of decreasing slope (ties: earlier vertex, then earlier
    image); a segment that does not fit is skipped and blocks its image's later ones.
    Returns (k per image, value, Lagrangian bound), sums over images (not means).
    """
    m = len(gains)
    segs = []
    for i in range(m):
        g = [float(v) for v in gains[i]]
        if not g[-1] > 0:
            continue
        hull: list[int] = []
        for j in range(len(k_grid)):
            while len(hull) >= 2:
                a, b = hull[-2], hull[-1]
                below = (g[b] - g[a]) * (k_grid[j] - k_grid[a]) <= (g[j] - g[a]) * (
                    k_grid[b] - k_grid[a])
                if below:  # b on or below the chord a -> j
                    hull.pop()
                else:
                    break
            hull.append(j)
        top = max(range(len(hull)), key=lambda v: (g[hull[v]], -v))
        for v in range(top):
            a, b = hull[v], hull[v + 1]
            dk = float(k_grid[b] - k_grid[a])
            segs.append((-(g[b] - g[a]) / dk, a, i, b, dk, g[b] - g[a]))
    segs.sort(key=lambda s: (s[0], s[1]))  # stable: image order on exact ties
    k = [0] * m
    spent = value = 0.0
    bound = None
    blocked = [False] * m
    total = budget * m
    for _, _, i, b, dk, dg in segs:
        if blocked[i]:
            continue
        if spent + dk <= total:
            spent += dk
            value += dg
            k[i] = int(k_grid[b])
        else:
            if bound is None:
                bound = value + dg * (total - spent) / dk
            blocked[i] = True
    return k, value, value if bound is None else bound


def ref_best_allocation(gains, k_grid, budget) -> float:
    """Brute force: the largest sum of gains over every allocation of grid sizes in budget."""
    import itertools

    m = len(gains)
    best = 0.0
    for combo in itertools.product(range(len(k_grid)), repeat=m):
        if sum(k_grid[j] for j in combo) <= budget * m:
            best = max(best, sum(gains[i][j] for i, j in enumerate(combo)))
    return best


def ref_two_stage(k0, k1, price, support, weight, sigma, alpha, k_grid):
    """The two-stage budget rule under a discrete prior, by loops (scipy.stats.binom only).

    Returns per first count x: (second?, k after the first pilot alone) and per pooled
    count z of k0 + k1: k after both; ties to the smallest k.
    """
    from scipy.stats import binom

    radius = {int(k): [max(ref_radius(int(k), p, sigma, alpha), 0.0) if k > 0 else 0.0
                       for p in support] for k in k_grid}

    def best(n, x):
        post = np.array([w * binom.pmf(x, n, p) for p, w in zip(support, weight, strict=True)])
        post = post / post.sum()
        k_best, v_best = 0, 0.0
        for k in sorted(radius):
            v = float(post @ np.array(radius[k])) - price * k
            if v > v_best:
                k_best, v_best = k, v
        return k_best, v_best, post

    second, k_one, k_two, v_two = [], [], [], []
    for z in range(k0 + k1 + 1):
        k, v, _ = best(k0 + k1, z)
        k_two.append(k)
        v_two.append(v)
    for x in range(k0 + 1):
        k, v, post = best(k0, x)
        k_one.append(k)
        worth = -price * k1
        for x1 in range(k1 + 1):
            pred = sum(q * binom.pmf(x1, k1, p) for q, p in zip(post, support, strict=True))
            worth += pred * v_two[x + x1]
        second.append(worth > v)
    return second, k_one, k_two


# ------------------------------------------------------------------------- end of budget --


# ---------------------------------------------------------------------------------------------
# online certification (issue 12): twins of DecisionPolicy.needs. On a stream prefix, the
# decision the policy takes there, or the least total number of samples before it can
# possibly decide, found by trying every later length (cs) or from the stage ends.
# ---------------------------------------------------------------------------------------------


def ref_staged_needs(labels, true_label, policy, sigma):
    """(decision, samples) of staged on the prefix, or the next stage end it needs (int)."""
    try:
        return ref_staged_decide(labels, true_label, policy, sigma)
    except RefTooFewSamples:
        return next(e for e in np.cumsum(policy.stages).tolist() if e > len(labels))


def ref_adaptive_needs(labels, policy, sigma):
    """(decision, samples, class) of adaptive on the prefix, or the next stage's end (int)."""
    try:
        return ref_adaptive_decide(labels, policy, sigma)
    except RefTooFewSamples:
        ends = np.cumsum([policy.n0 + n for n in policy.stages]).tolist()
        return next(e for e in ends if e > len(labels))


def ref_cs_needs(labels, true_label, lo, hi, n_max):
    """(decision, samples) of cs on the prefix, or the first draw that can decide (int).

    Past the prefix every continuation is tried at its extremes: all successes (the
    count reaches ``hi[u]`` soonest) and all failures (it falls to ``lo[u]`` soonest).
    """
    have = len(labels)
    A = 0
    for t in range(1, min(have, n_max - 1) + 1):
        A += int(labels[t - 1]) == true_label
        if A == lo[t]:
            return 0, t
        if A == hi[t]:
            return 1, t
    if have >= n_max:
        return -1, n_max
    for u in range(have + 1, n_max):
        if A + (u - have) >= hi[u] or A <= lo[u]:
            return u
    return n_max
