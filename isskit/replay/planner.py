"""The planner of a replay: each radius policy's count ranges, counts and certificates.

:class:`_Planner` asks a policy for its plan once per distinct selection count (after
:meth:`~isskit.policies.RadiusPolicy.fit`, which lets a policy see every image's selection
count first), checks it against what the streams hold, and :func:`_count_batch` counts a
batch of policies' classes in one numba call; :func:`_certify` turns the counts into
Cohen's bounds, predictions and radii (``isskit certify`` calls it too, so that online and
offline certificates are the same code). :func:`evaluate` runs one policy over an index.
:mod:`isskit.replay.engine` assembles a replay's results from these.

This module never prints and never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isskit.policies import CountPlan, RadiusPolicy
from isskit.replay import _cbeta, _kernels
from isskit.replay.index import StreamIndex, _check_static_needs, _too_many
from isskit.stats import certified_radius, cp_lower

__all__ = ["PolicyResult", "evaluate"]


def _cp_lower(k_A, k, alpha):
    """One-sided CP lower bounds, row b at ``alpha[b]``; NaN where k = 0 (no estimate).

    ``k_A`` and ``k`` of shape (B, n), ``alpha`` of shape (B,). Bit for bit
    :func:`isskit.stats.cp_lower`. Each distinct ``(k_A, k, alpha)`` is computed once: a
    Beta quantile costs 1 to 5 us, and a sweep repeats pairs often (images whose counts
    agree, policies that land on the same sample size).
    """
    k_A = np.ascontiguousarray(k_A, dtype=np.int64)
    k = np.ascontiguousarray(k, dtype=np.int64)
    alpha = np.ascontiguousarray(alpha, dtype=np.float64).reshape(-1)
    out = np.empty(k_A.shape, np.float64)
    for a in np.unique(alpha):
        rows = np.flatnonzero(alpha == a)
        whole = rows.size == alpha.size
        ka = k_A.reshape(-1) if whole else k_A[rows].reshape(-1)
        kk = k.reshape(-1) if whole else k[rows].reshape(-1)
        inv = np.empty(ka.size, np.int64)
        pairs = _kernels.unique_pairs(ka, kk, inv)
        pk_A = np.ascontiguousarray(pairs[:, 0])
        pk = np.ascontiguousarray(pairs[:, 1])
        vals = np.empty(pk.size, np.float64)
        if _cbeta.AVAILABLE:
            _kernels.cp_lower_many(pk_A, pk, a, vals)
        else:  # pragma: no cover - only where SciPy's symbol could not be resolved
            ok = pk > 0
            vals[~ok] = np.nan
            vals[ok] = cp_lower(pk_A[ok], pk[ok], a)
        if whole:
            _kernels.gather(vals, inv, out.reshape(-1))
        else:
            got = np.empty(inv.size, np.float64)
            _kernels.gather(vals, inv, got)
            out[rows] = got.reshape(rows.size, -1)
    return out


class _Planner:
    """Per policy, the count range of every image: where it starts, how long, what it costs.

    A policy's plan depends on its selection count alone (:meth:`RadiusPolicy.plan`), and a
    selection of m samples has at most m + 1 distinct counts: each policy is asked once per
    distinct count of its checkpoint, and the answers are spread back over the images.
    """

    def __init__(self, index: StreamIndex, sigma: float, image_ids, drawn=None):
        self.index = index
        # samples drawn per image (schema 2): a plan past them is refused like one past N
        self.drawn = None if drawn is None else np.asarray(drawn, np.int64)
        self.sigma = float(sigma)
        self.ids = index.rows if image_ids is None else np.asarray(image_ids)
        self._distinct: dict = {}
        #: policy -> the policy it planned with (:meth:`RadiusPolicy.fit`: itself for most)
        self.fitted: dict = {}
        # per checkpoint, contiguous over images
        self.slot_T = np.ascontiguousarray(index.slot.T)
        self.modes_T = np.ascontiguousarray(index.modes.T)

    def _counts(self, j):
        if j not in self._distinct:
            uniq, inv = np.unique(self.index.mode_counts[:, j], return_inverse=True)
            self._distinct[j] = (uniq.astype(np.int64), inv.reshape(-1))
        return self._distinct[j]

    def plan(self, policy):
        """(column j, start, k, samples, k_hat), arrays of shape (n,) or scalars."""
        n = self.index.samples_per_image
        if not isinstance(policy, RadiusPolicy):
            raise ValueError(f"policy ({policy!r}) is not a radius policy")
        _check_static_needs([policy], n, self.ids[:1])
        j = self.index.column(policy.selection_size)
        given = policy
        # a policy whose rule depends on the whole set (a mean budget) sees every image's
        # selection count first, and plans with the per-image policy it implies
        # (rows of isskit certify hold `drawn` samples: the fit may spend what every row holds)
        holds = n if self.drawn is None else int(min(n, self.drawn.min(initial=n)))
        policy = policy.fit(self.index.mode_counts[:, j].astype(np.int64), sigma=self.sigma,
                            samples_per_image=holds)
        self.fitted[given] = policy
        if policy.fixed_samples:
            plan = policy.plan(self.index.mode_counts[:0, j], sigma=self.sigma)
            self._check_drawn(policy, policy.samples_consumed(plan))
            return j, plan.start, plan.k, policy.samples_consumed(plan), plan.k_hat
        x, inv = self._counts(j)
        plan = policy.plan(x, sigma=self.sigma)
        start, k, k_hat = (np.broadcast_to(np.asarray(v, np.int64), x.shape)[inv]
                           for v in (plan.start, plan.k, plan.k_hat))
        samples = policy.samples_consumed(CountPlan(start, k))
        over = start + k > n
        if np.any(over):
            i = int(np.flatnonzero(over)[0])
            raise _too_many(policy, int(self.ids[i]), int(start[i] + k[i]), n,
                            int(over.sum()))
        self._check_drawn(policy, samples)
        return j, start, k, samples, k_hat

    def _check_drawn(self, policy, samples):
        if self.drawn is None:
            return
        over = np.broadcast_to(samples, self.drawn.shape) > self.drawn
        if np.any(over):
            i = int(np.flatnonzero(over)[0])
            raise _too_many(policy, int(self.ids[i]),
                            int(np.broadcast_to(samples, over.shape)[i]),
                            self.index.samples_per_image, int(over.sum()), drawn=int(self.drawn[i]))


def _count_batch(index, planner, policies, out=None):
    """Plan a batch of policies and count their classes: one kernel call for all of them.

    Fills (or returns) ``chosen`` (the class each policy chose per image), ``k_A`` (its
    count over the count range of ``k`` samples), ``k``, ``samples`` and ``k_hat``, each of
    shape (B, n); ``out`` may hold views to write them into.
    """
    B, n_img = len(policies), index.rows.size
    if out is None:
        out = {f: np.empty((B, n_img), np.int64) for f in _COUNT_FIELDS}
    slot = np.empty((B, n_img), np.int64)
    start = np.empty((B, n_img), np.int64)
    chosen, k, samples, k_hat = out["chosen"], out["k"], out["samples"], out["k_hat"]
    for b, p in enumerate(policies):
        j, start[b], k[b], samples[b], k_hat[b] = planner.plan(p)
        slot[b] = planner.slot_T[j]
        chosen[b] = planner.modes_T[j]
    _kernels.count_ranges(slot, start, start + k, index.bits, index.cum, out["k_A"])
    return out


_COUNT_FIELDS = ("chosen", "k_A", "k", "samples", "k_hat")


def _certify(chosen, k_A, k, alpha, sigma):
    """p_lower, prediction (-1 abstains; in place of ``chosen``) and radius of each cell."""
    p_lower = _cp_lower(k_A, k, alpha)
    certified = p_lower >= 0.5  # NaN (no estimate) compares False: abstain
    chosen[~certified] = -1
    radius = np.zeros(p_lower.shape, np.float64)
    radius[certified] = certified_radius(p_lower[certified], sigma)
    return chosen, radius, p_lower


@dataclass(frozen=True)
class PolicyResult:
    """One radius policy replayed over every stream of an index (:func:`evaluate`).

    Attributes
    ----------
    prediction : ndarray of int64
        The class certified, -1 for an abstention.
    radius : ndarray of float64
        ``sigma * Phi^-1(p_lower)``, 0 when abstaining.
    p_lower : ndarray of float64
        One-sided Clopper-Pearson bound; NaN where no estimate was made (``k = 0``).
    samples : ndarray of int64
        Samples consumed.
    k_hat : ndarray of int64
        The input-specific sample size (-1 for policies whose size is fixed).
    """

    prediction: np.ndarray
    radius: np.ndarray
    p_lower: np.ndarray
    samples: np.ndarray
    k_hat: np.ndarray


def evaluate(index: StreamIndex, policy, sigma, *, image_ids=None) -> PolicyResult:
    """Replay one policy over every stream of an index.

    Parameters
    ----------
    index : StreamIndex
        Built for (at least) this policy's selection size.
    policy : RadiusPolicy
        The policy.
    sigma : float
        Noise level of the store (for the radius and ISS's mapping psi).
    image_ids : ndarray of int, optional
        Dataset index of each indexed row, for error messages (default: the rows).

    Returns
    -------
    PolicyResult
        Arrays of shape (n,).

    Raises
    ------
    ValueError
        If the policy needs more samples than a stream holds for some image.
    """
    c = _count_batch(index, _Planner(index, sigma, image_ids), [policy])
    prediction, radius, p_lower = _certify(c["chosen"], c["k_A"], c["k"], [policy.alpha], sigma)
    return PolicyResult(prediction=prediction[0], radius=radius[0], p_lower=p_lower[0],
                        samples=c["samples"][0], k_hat=c["k_hat"][0])
