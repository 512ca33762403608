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


# ---------------------------------------------------------------------------------------------
# budget policy and oracles (issue 11): twins of isskit.budget and isskit.oracle.
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
