"""Clopper-Pearson lower bounds of a sweep: distinct (k_A, k) pairs, bounds, gathered back.

The one kernel here that calls SciPy's compiled code: ``betaincinv`` of Boost, through
:mod:`isskit.replay._cbeta` (resolved and self-tested at import), so the bounds are bit
for bit those of :func:`isskit.stats.cp_lower`.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from isskit.replay import _cbeta
from isskit.replay._kernels.options import _jit, _pjit

__all__: list[str] = []

#: Odd multiplier spreading the sample sizes k over the hash table (k_A varies fastest).
_K_SPREAD = 1_000_003


@_jit
def _insert(table, keys, key, h, mask):
    """Index of ``key`` in ``keys`` found from slot h of ``table``, or -1 with its free slot."""
    while True:
        t = table[h]
        if t < 0:
            return -1, h
        if keys[t] == key:
            return t, h
        h = (h + 1) & mask


@_jit
def unique_pairs(k_A, k, inverse):
    """Distinct ``(k_A, k)`` pairs, by open addressing (a sort would cost 10x more).

    Parameters
    ----------
    k_A, k : ndarray of int64, shape (n,)
        Counts and sample sizes, ``0 <= k_A, k < 2**31``.
    inverse : ndarray of int64, shape (n,)
        Out: index of each pair among the distinct ones.

    Returns
    -------
    ndarray of int64, shape (m, 2)
        The distinct pairs ``(k_A, k)``, in order of first appearance.
    """
    n = k_A.shape[0]
    cap = 1024
    while cap < 2 * n and cap < 1 << 23:  # few re-placements for large n, little memory
        cap *= 2
    mask = cap - 1
    table = np.full(cap, -1, np.int64)
    keys = np.empty(cap // 2, np.int64)  # k * 2**31 + k_A, distinct
    m = 0
    for i in range(n):
        key = k[i] * 2147483648 + k_A[i]
        # Pairs of one k fall in one contiguous run of the table (cache friendly); runs of
        # different k start at scattered places. k * _K_SPREAD < 2**63 for k < 2**31.
        h = (k[i] * _K_SPREAD + k_A[i]) & mask
        t, h = _insert(table, keys, key, h, mask)
        if t >= 0:
            inverse[i] = t
            continue
        if m == keys.shape[0]:  # half full: double, and re-place every key
            cap *= 2
            mask = cap - 1
            table = np.full(cap, -1, np.int64)
            grown = np.empty(cap // 2, np.int64)
            grown[:m] = keys[:m]
            keys = grown
            for u in range(m):
                kk = keys[u] // 2147483648
                _, g = _insert(table, keys, keys[u], (kk * _K_SPREAD + keys[u] - kk *
                                                      2147483648) & mask, mask)
                table[g] = u
            _, h = _insert(table, keys, key, (k[i] * _K_SPREAD + k_A[i]) & mask, mask)
        table[h] = m
        keys[m] = key
        inverse[i] = m
        m += 1
    out = np.empty((m, 2), np.int64)
    for u in range(m):
        out[u, 1] = keys[u] // 2147483648
        out[u, 0] = keys[u] - out[u, 1] * 2147483648
    return out


@_pjit
def _cp_lower_kernel(k_A, k, alpha, out):
    for i in prange(k_A.shape[0]):
        a = k_A[i]
        if k[i] <= 0:
            out[i] = np.nan
        elif a <= 0:
            out[i] = 0.0
        else:
            out[i] = _cbeta.betaincinv(np.float64(a), np.float64(k[i] - a + 1), alpha)


def cp_lower_many(k_A, k, alpha, out):
    """One-sided Clopper-Pearson lower bounds ``Beta(alpha; k_A, k - k_A + 1)`` in parallel.

    0 where ``k_A = 0``; NaN where ``k = 0`` (no estimate was made). Bit for bit
    ``isskit.stats.cp_lower``; needs ``_cbeta.AVAILABLE``.

    Parameters
    ----------
    k_A, k : ndarray of int64, shape (n,)
        Counts and sample sizes, ``0 <= k_A <= k``.
    alpha : float
        One-sided failure probability.
    out : ndarray of float64, shape (n,)
        Out: the bounds.
    """
    if not _cbeta.AVAILABLE:  # pragma: no cover - checked by the caller
        raise RuntimeError(f"compiled betaincinv unavailable: {_cbeta.REASON}")
    _cp_lower_kernel(k_A, k, float(alpha), out)


@_pjit
def gather(values, index, out):
    """``out[i] = values[index[i]]``, in parallel (a sweep gathers ~10^7 bounds)."""
    for i in prange(index.shape[0]):
        out[i] = values[index[i]]
