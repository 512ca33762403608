"""The class a policy chooses: modes of stream prefixes and ranges, counts in raw ranges."""

from __future__ import annotations

import numpy as np
from numba import prange

from isskit.replay._kernels.bits import _pack_row
from isskit.replay._kernels.options import _jit, _pjit

__all__: list[str] = []


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
def range_modes(block, starts, width, drawn, num_classes, modes, mode_counts, bad):
    """Most frequent label of each range ``block[r, a:a + width]`` for ``a`` in ``starts``.

    Adaptive sampling chooses its class afresh before every stage, on a range that is not a
    prefix, so the prefix modes of :func:`scan_modes` do not serve. The histogram is kept
    between ranges and cleared by walking the range again (O(width), not O(num_classes));
    the running best gives ties to the smallest label.

    Parameters
    ----------
    block : ndarray of uint16, shape (rows, N)
    starts : ndarray of int64, shape (K,)
    width : int
        Range length (adaptive's ``n0``).
    drawn : ndarray of int64, shape (rows,)
        Draws each row holds: a range past them gets mode and count -1.
    num_classes : int
    modes, mode_counts : ndarray of int64, shape (rows, K)
        Out.
    bad : ndarray of int64, shape (rows,)
        Out: position of the first label >= num_classes met, or -1.
    """
    for r in prange(block.shape[0]):
        counts = np.zeros(num_classes, np.int64)
        bad[r] = -1
        for j in range(starts.shape[0]):
            a = starts[j]
            if a + width > drawn[r]:
                modes[r, j] = -1
                mode_counts[r, j] = -1
                continue
            best = num_classes
            best_count = 0
            for q in range(a, a + width):
                lab = np.int64(block[r, q])
                if lab >= num_classes:
                    if bad[r] < 0:
                        bad[r] = q
                    continue
                v = counts[lab] + 1
                counts[lab] = v
                if v > best_count or (v == best_count and lab < best):
                    best = lab
                    best_count = v
            for q in range(a, a + width):
                lab = np.int64(block[r, q])
                if lab < num_classes:
                    counts[lab] = 0
            modes[r, j] = best if best_count > 0 else -1
            mode_counts[r, j] = best_count if best_count > 0 else -1


@_pjit
def range_counts(block, classes, starts, stops, drawn, out):
    """Count of ``classes[r, j]`` in ``block[r, starts[j]:stops[j]]``; -1 where unavailable.

    Unavailable: the class is < 0 or the range ends past ``drawn[r]``.
    """
    for r in prange(block.shape[0]):
        for j in range(starts.shape[0]):
            c = classes[r, j]
            if c < 0 or stops[j] > drawn[r]:
                out[r, j] = -1
                continue
            n = 0
            for q in range(starts[j], stops[j]):
                if block[r, q] == c:
                    n += 1
            out[r, j] = n
