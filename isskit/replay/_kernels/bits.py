"""Bit vectors of one class over a stream, with rank directories; range counts from them.

A slot is the bit vector of ``labels == class`` of one image with the number of ones
before every 64-bit word, so the count of that class in any ``[a, b)`` is
``rank(b) - rank(a)``, at most 8 table look-ups each (:func:`count_ranges`).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from isskit.replay._kernels.options import _jit, _pjit

__all__: list[str] = []

#: Number of set bits of every byte.
_POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)

#: Bits per word of the rank directory (cum holds the ones before each word).
WORD_BITS = 64


def n_words(samples_per_image: int) -> int:
    """Words of the rank directory for a stream of ``samples_per_image``: ``ceil(n / 64)``."""
    return (int(samples_per_image) + WORD_BITS - 1) // WORD_BITS


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
