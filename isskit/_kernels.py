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

from isskit import _cbeta

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
    rows = block.shape[0]
    n_cp = checkpoints.shape[0]
    for r in prange(rows):
        counts = np.zeros(num_classes, np.int64)
        bad[r] = -1
        q = 0
        for j in range(n_cp):
            stop = checkpoints[j]
            while q < stop:
                lab = np.int64(block[r, q])
                if lab >= num_classes:
                    if bad[r] < 0:
                        bad[r] = q
                else:
                    counts[lab] += 1
                q += 1
            best = 0
            best_count = counts[0]
            for c in range(1, num_classes):
                if counts[c] > best_count:
                    best = c
                    best_count = counts[c]
            modes[r, j] = best
            mode_counts[r, j] = best_count


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
    rows, n = block.shape
    nw = cum.shape[1] - 1
    full_words = n // 64
    for r in prange(rows):
        for s in range(row_slot_start[r], row_slot_start[r + 1]):
            c = slot_class[s]
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
    """Count of each image's slot class in ``[start, stop)``.

    Parameters
    ----------
    slot : ndarray of int64, shape (n,)
        Global slot of each image's chosen class (row of ``bits``); < 0 gives 0.
    start, stop : ndarray of int64, shape (n,)
        The count range; ``stop <= start`` gives 0. Callers check ``stop <= N``.
    bits, cum : ndarray
        The slots' bit vectors and rank directories (see :func:`pack_slots`).
    out : ndarray of int64, shape (n,)
        Out: the counts.
    """
    for i in prange(slot.shape[0]):
        s = slot[i]
        if s < 0 or stop[i] <= start[i]:
            out[i] = 0
        else:
            out[i] = _rank(bits, cum, s, stop[i]) - _rank(bits, cum, s, start[i])


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
