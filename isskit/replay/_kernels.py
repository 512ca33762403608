"""Numba kernels of the replay: the per-image stream index and the queries policies make.

Arrays in, arrays out: no I/O, no SciPy calls, no xarray, no policy objects. Every kernel is
parallel over images (``prange``) and has a slow obvious twin in ``tests/reference.py``.
All jit options are set once, here (:data:`_OPTIONS`): cached, no fastmath (the certificate
compares ``p_lower >= 0.5`` exactly, and the radius must match SciPy to 1e-12), GIL released
so a reader thread can decompress the next block of the store meanwhile.

The index (built by :mod:`isskit.replay` from one pass over the store) holds, per image:

* for each *checkpoint* ``m`` (every selection size a policy uses -- Cohen's ``n0``, IAS's
  ``n``, ISS's ``k0`` -- and the stream length ``N``): the most frequent label of
  ``labels[0:m]`` (ties to the smallest label) and its count, from :func:`scan_modes`;
* for each distinct class that some checkpoint chose (a *slot*; usually one per image, more
  where the pilot's top class is unstable): a bit vector of ``labels == class`` with the
  number of ones before every 64-bit word, from :func:`pack_slots`. The count of that class
  in any ``[a, b)`` is then ``rank(b) - rank(a)``, at most 8 table look-ups each
  (:func:`count_ranges`), exactly, whatever the class's frequency. Memory: 3/16 byte per
  sample per slot, about 21 KB for an image of 110,000 samples.

So every class a policy can choose is counted in O(1), and no class outside the index is
ever needed: the chosen class of every policy is the mode of one of its checkpoints.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from isskit.replay import _cbeta

__all__: list[str] = []

#: The one place jit options are set (njit implies nopython). boundscheck off: every index
#: below is derived from array shapes; error_model "numpy": no exception machinery in the
#: inner loops.
_OPTIONS = {
    "nogil": True,
    "cache": True,
    "fastmath": False,
    "boundscheck": False,
    "error_model": "numpy",
}


def _jit(fn):
    return numba.njit(**_OPTIONS)(fn)


def _pjit(fn):
    return numba.njit(parallel=True, **_OPTIONS)(fn)


#: Number of set bits of every byte.
_POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)

#: Bits per word of the rank directory (cum holds the ones before each word).
WORD_BITS = 64


def n_words(n_samples: int) -> int:
    """Words of the rank directory for a stream of ``n_samples``: ``ceil(n / 64)``."""
    return (int(n_samples) + WORD_BITS - 1) // WORD_BITS


@_jit
def _count_one(block, r, q, counts, lane, bad):
    lab = np.int64(block[r, q])
    if lab >= counts.shape[1]:
        if bad[r] < 0:
            bad[r] = q
    else:
        counts[lane, lab] += 1


@_jit
def _scan_row(block, r, checkpoints, counts, modes, mode_counts, bad):
    """Modes of the prefixes of row r (see :func:`scan_modes`).

    ``counts`` (4, num_classes) is scratch: four histograms filled in turn, because in a
    stream that is mostly one label each increment would otherwise wait for the previous
    one to the same counter (a 4x slower dependency chain).
    """
    counts[:, :] = 0
    bad[r] = -1
    num_classes = counts.shape[1]
    q = 0
    for j in range(checkpoints.shape[0]):
        stop = checkpoints[j]
        while q + 4 <= stop:
            l0 = np.int64(block[r, q])
            l1 = np.int64(block[r, q + 1])
            l2 = np.int64(block[r, q + 2])
            l3 = np.int64(block[r, q + 3])
            if max(max(l0, l1), max(l2, l3)) < num_classes:
                counts[0, l0] += 1
                counts[1, l1] += 1
                counts[2, l2] += 1
                counts[3, l3] += 1
            else:
                for t in range(4):
                    _count_one(block, r, q + t, counts, t, bad)
            q += 4
        while q < stop:
            _count_one(block, r, q, counts, 0, bad)
            q += 1
        best = 0
        best_count = counts[0, 0] + counts[1, 0] + counts[2, 0] + counts[3, 0]
        for c in range(1, num_classes):
            total = counts[0, c] + counts[1, c] + counts[2, c] + counts[3, c]
            if total > best_count:
                best = c
                best_count = total
        modes[r, j] = best
        mode_counts[r, j] = best_count


@_jit
def _pack_row(block, r, c, bits, cum, s):
    """Bit vector of ``block[r] == c`` and its rank directory into row s of bits, cum."""
    n = block.shape[1]
    nw = cum.shape[1] - 1
    full_words = n // 64
    total = 0
    for w in range(nw):
        cum[s, w] = total
        base = w * 64
        for y in range(8):
            v = 0
            q0 = base + 8 * y
            if w < full_words:
                for b in range(8):
                    if block[r, q0 + b] == c:
                        v |= 1 << b
            else:
                for b in range(8):
                    if q0 + b < n and block[r, q0 + b] == c:
                        v |= 1 << b
            bits[s, 8 * w + y] = v
            total += _POP8[v]
    cum[s, nw] = total


@_pjit
def scan_modes(block, checkpoints, num_classes, modes, mode_counts, bad):
    """Mode and its count of every prefix ``block[r, 0:m]`` for ``m`` in ``checkpoints``.

    Parameters
    ----------
    block : ndarray of uint16, shape (rows, N)
        Labels, one stream per row.
    checkpoints : ndarray of int64, shape (n_cp,)
        Prefix lengths, strictly increasing, each in [1, N].
    num_classes : int
        Labels must be below this.
    modes, mode_counts : ndarray of int64, shape (rows, n_cp)
        Out: the most frequent label of each prefix (ties to the smallest) and its count.
    bad : ndarray of int64, shape (rows,)
        Out: position of the first label >= num_classes in the scanned prefix, or -1.
    """
    for r in prange(block.shape[0]):
        counts = np.zeros((4, num_classes), np.int64)
        _scan_row(block, r, checkpoints, counts, modes, mode_counts, bad)


@_pjit
def scan_and_pack(block, checkpoints, num_classes, primary_col, modes, mode_counts, bad,
                  bits, cum):
    """:func:`scan_modes`, then each row's bit vector for its mode at ``primary_col``.

    The row is packed right after it is scanned, while it is still in cache; the classes
    other checkpoints choose (rare) are packed afterwards by :func:`pack_slots`.

    Parameters
    ----------
    block, checkpoints, num_classes, modes, mode_counts, bad :
        As in :func:`scan_modes`.
    primary_col : int
        Checkpoint whose mode gets row r's bit vector in row r of ``bits`` and ``cum``.
    bits : ndarray of uint8, shape (rows, 8 * n_words(N))
    cum : ndarray of int32, shape (rows, n_words(N) + 1)
        Out: as in :func:`pack_slots`.
    """
    for r in prange(block.shape[0]):
        counts = np.zeros((4, num_classes), np.int64)
        _scan_row(block, r, checkpoints, counts, modes, mode_counts, bad)
        _pack_row(block, r, modes[r, primary_col], bits, cum, r)


@_pjit
def pack_slots(block, row_slot_start, slot_class, bits, cum):
    """Bit vectors of ``block[r] == class`` with their rank directory, one per slot.

    Parameters
    ----------
    block : ndarray of uint16, shape (rows, N)
        Labels.
    row_slot_start : ndarray of int64, shape (rows + 1,)
        Slots of row ``r`` are ``row_slot_start[r]:row_slot_start[r + 1]`` (local to block).
    slot_class : ndarray of int64, shape (n_slots,)
        The class each slot marks.
    bits : ndarray of uint8, shape (n_slots, 8 * n_words(N))
        Out: bit ``q`` (byte ``q >> 3``, bit ``q & 7``, least significant first) is set when
        ``block[r, q] == class``; bits past N are 0.
    cum : ndarray of int32, shape (n_slots, n_words(N) + 1)
        Out: ``cum[s, w]`` = set bits before bit ``64 w``.
    """
    for r in prange(block.shape[0]):
        for s in range(row_slot_start[r], row_slot_start[r + 1]):
            _pack_row(block, r, slot_class[s], bits, cum, s)


@_jit
def _rank(bits, cum, s, b):
    """Set bits of slot ``s`` before position ``b``."""
    w = b >> 6
    out = np.int64(cum[s, w])
    end = b >> 3
    for y in range(8 * w, end):
        out += _POP8[bits[s, y]]
    rem = b & 7
    if rem:
        out += _POP8[bits[s, end] & ((1 << rem) - 1)]
    return out


@_pjit
def count_ranges(slot, start, stop, bits, cum, out):
    """Count of each cell's slot class in ``[start, stop)``, for a batch of policies.

    Parameters
    ----------
    slot : ndarray of int64, shape (B, n)
        Global slot of the chosen class (row of ``bits``) per policy and image; < 0 gives 0.
    start, stop : ndarray of int64, shape (B, n)
        The count range; ``stop <= start`` gives 0. Callers check ``stop <= N``.
    bits, cum : ndarray
        The slots' bit vectors and rank directories (see :func:`pack_slots`).
    out : ndarray of int64, shape (B, n)
        Out: the counts.
    """
    # Image-major: all policies of one image in a row, while its bit vectors are in cache.
    B = slot.shape[0]
    for i in prange(slot.shape[1]):
        for b in range(B):
            s = slot[b, i]
            if s < 0 or stop[b, i] <= start[b, i]:
                out[b, i] = 0
            else:
                out[b, i] = _rank(bits, cum, s, stop[b, i]) - _rank(bits, cum, s, start[b, i])


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
