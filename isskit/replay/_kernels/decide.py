"""Stopping rules of the decision policies over one image's stream: cs, staged, adaptive.

Decision codes (isskit.decision): 1 certified, 0 not certified, -1 undecided, and -2 "the
stream prefix is too short to decide", with ``samples`` the least total it needs. Python
wrappers, thresholds and checks live in :mod:`isskit.decision`.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from isskit.replay._kernels.bits import _rank
from isskit.replay._kernels.options import _jit, _pjit

__all__: list[str] = []

_CERTIFIED = 1
_NOT_CERTIFIED = 0
_UNDECIDED = -1
_NEED_MORE = -2

#: Images per block of :func:`cs_decide` (their bit vectors and one threshold set fit in L2).
_IMAGE_BLOCK = 32

#: Index of the lowest set bit of every byte (8 for 0).
_LOW8 = np.array([(i & -i).bit_length() - 1 if i else 8 for i in range(256)], dtype=np.int64)


@_jit
def _byte(bits, s, y, want):
    """Byte y of slot s with the wanted bits set (the bits themselves, or their complement)."""
    v = np.int64(bits[s, y])
    return v if want == 1 else 255 - v


@_jit
def _wanted_before(cum, s, w, want):
    """Wanted bits (ones, or zeros) of slot s before word w."""
    c = np.int64(cum[s, w])
    return c if want == 1 else 64 * w - c


@_jit
def _next_bit(bits, cum, s, q, stop, want):
    """First bit position in ``[q, stop)`` of slot s that is ``want`` (0 or 1); stop if none.

    The word holding q is read byte by byte from q; the next few words are tested by their
    popcount (a word of 0 ones holds no one, of 64 no zero) and skipped unread; farther on,
    a bisection over the words' cumulative counts finds the first word that holds one.
    Padding past the stream's end reads as zeros: callers keep ``stop`` within the stream.
    """
    if q >= stop:
        return stop
    w = q >> 6
    y = q >> 3
    v = _byte(bits, s, y, want) & ((255 << (q & 7)) & 255)
    while True:
        if v != 0:
            return min(8 * y + _LOW8[v], stop)
        y += 1
        if y >= 8 * (w + 1) or 8 * y >= stop:
            break
        v = _byte(bits, s, y, want)
    w += 1
    last_w = (stop - 1) >> 6
    if w > last_w:
        return stop
    k = _wanted_before(cum, s, w, want) + 1  # the first wanted bit from word w is the k-th
    if _wanted_before(cum, s, last_w + 1, want) < k:
        return stop
    hi_w = last_w
    if _wanted_before(cum, s, min(w + 4, last_w) + 1, want) >= k:
        hi_w = min(w + 4, last_w)  # near: the usual case next to a threshold
    while w < hi_w:
        mid = (w + hi_w) >> 1
        if _wanted_before(cum, s, mid + 1, want) >= k:
            hi_w = mid
        else:
            w = mid + 1
    for y in range(8 * w, 8 * w + 8):
        v = _byte(bits, s, y, want)
        if v != 0:
            return min(8 * y + _LOW8[v], stop)
    return stop  # pragma: no cover - the counts above guarantee a hit


@_jit
def _cs_one(bits, cum, s, have, m, lo, hi, next_hi, next_lo):
    """Stopping time of one stream (slot s, ``have`` draws) under one set of cs thresholds.

    Two facts let the search skip draws. From A successes after t draws the count after u
    draws lies in [A, A + u - t], so the stream cannot certify before ``next_hi[t - A]`` nor
    fail before ``next_lo[A]`` (:class:`isskit.decision.CSThresholds`); that is the
    popcount bound of every word in between. And since the thresholds are monotone and
    ``lo`` rises by at most one a draw, a stream that has not stopped can fall to ``lo`` only
    on a failure and reach ``hi`` only on a success. So from the earlier bound to the later
    one only draws of one kind can stop the stream, and the first of them is one select
    query (:func:`_next_bit`); the count there is one rank query. Returns (code, samples);
    for code -2 the samples are the least total the stream needs before it can stop (all
    successes or all failures from its last draw on).
    """
    last = min(m - 1, have)  # the last draw that can be tested
    t = 0
    a = 0
    while True:
        b_hi = next_hi[t - a]
        b_lo = next_lo[a]
        if t == 0 or b_lo == b_hi:  # at t = 0 nothing was tested yet: no parity argument
            u = min(b_lo, b_hi)
        elif b_lo < b_hi:  # before b_hi only a failure can stop the stream
            u = 1 + _next_bit(bits, cum, s, b_lo - 1, min(b_hi - 1, last), 0)
        else:
            u = 1 + _next_bit(bits, cum, s, b_hi - 1, min(b_lo - 1, last), 1)
        if u > last:
            break
        a = _rank(bits, cum, s, u)
        t = u
        # the authors test the lower threshold first
        if a <= lo[t]:
            return _NOT_CERTIFIED, t
        if a >= hi[t]:
            return _CERTIFIED, t
    if last == m - 1:
        return (_UNDECIDED, m) if have >= m else (_NEED_MORE, m)
    a = _rank(bits, cum, s, have)
    return _NEED_MORE, min(next_hi[have - a], next_lo[a], m)


@_pjit
def cs_decide(bits, cum, slot, drawn, n_max, lo, hi, next_hi, next_lo, decision, samples):
    """Stopping times of ``cs`` for a batch of threshold sets over every image.

    Parameters
    ----------
    bits, cum : ndarray
        Bit vectors and rank directories (see :func:`pack_slots`).
    slot : ndarray of int64, shape (n,)
        Row of ``bits`` marking each image's true label.
    drawn : ndarray of int64, shape (n,)
        Draws each stream holds.
    n_max : ndarray of int64, shape (B,)
        Each set's n_max.
    lo, hi, next_hi, next_lo : ndarray of int32, shape (B, L)
        Each set's thresholds and skip tables, ``L >= n_max + 1``.
    decision : ndarray of int8, shape (B, n)
    samples : ndarray of int64, shape (B, n)
        Out: code and samples consumed (or needed, for code -2).
    """
    # One parallel region over blocks of images; inside a block, policy after policy, so a
    # set's tables (16 bytes a draw) serve the whole block while they are in cache.
    n = slot.shape[0]
    for g in prange((n + _IMAGE_BLOCK - 1) // _IMAGE_BLOCK):
        first = g * _IMAGE_BLOCK
        stop = min(first + _IMAGE_BLOCK, n)
        for b in range(n_max.shape[0]):
            for i in range(first, stop):
                code, used = _cs_one(bits, cum, slot[i], drawn[i], n_max[b], lo[b], hi[b],
                                     next_hi[b], next_lo[b])
                decision[b, i] = code
                samples[b, i] = used


@_pjit
def staged_decide(bits, cum, slot, drawn, ends, n_stages, cert_min, rej_max, decision,
                  samples):
    """``staged`` over pooled prefixes: the count after each stage is one rank query.

    Parameters
    ----------
    bits, cum, slot, drawn :
        As in :func:`cs_decide`.
    ends : ndarray of int64, shape (B, K)
        Cumulative stage ends ``n_1 + ... + n_j`` per policy (padded past ``n_stages``).
    n_stages : ndarray of int64, shape (B,)
    cert_min, rej_max : ndarray of int64, shape (B, K)
        Certified when the count reaches ``cert_min``, not certified when it is at most
        ``rej_max`` (tested in that order, as the authors do).
    decision, samples :
        Out, as in :func:`cs_decide`.
    """
    B = ends.shape[0]
    for i in prange(slot.shape[0]):
        s = slot[i]
        for b in range(B):
            code = _UNDECIDED
            used = ends[b, n_stages[b] - 1]
            for j in range(n_stages[b]):
                e = ends[b, j]
                if e > drawn[i]:
                    code = _NEED_MORE
                    used = e
                    break
                a = _rank(bits, cum, s, e)
                if a >= cert_min[b, j]:
                    code = _CERTIFIED
                    used = e
                    break
                if a <= rej_max[b, j]:
                    code = _NOT_CERTIFIED
                    used = e
                    break
            decision[b, i] = code
            samples[b, i] = used


@_pjit
def adaptive_decide(classes, counts, ends, n_stages, cert_min, stop_max, decision, samples,
                    prediction):
    """Adaptive sampling from the per-stage chosen class and its count (fresh each stage).

    Parameters
    ----------
    classes, counts : ndarray of int64, shape (n, K)
        Class chosen on stage j's selection range and its count on stage j's estimation
        range (-1 where the stream does not hold them), from :func:`range_modes` and
        :func:`range_counts` or :func:`count_ranges`.
    ends : ndarray of int64, shape (B, K)
        Samples consumed once stage j is done, ``sum_{i <= j} (n0 + n_i)``.
    n_stages : ndarray of int64, shape (B,)
    cert_min, stop_max : ndarray of int64, shape (B, K)
        Certified when the count reaches ``cert_min``; before the last stage, not
        certified (early stop) when it is at most ``stop_max``.
    decision, samples, prediction : ndarray, shape (B, n)
        Out: code, samples consumed (or needed) and the certified class (-1 otherwise).
    """
    B = ends.shape[0]
    for i in prange(classes.shape[0]):
        for b in range(B):
            K = n_stages[b]
            code = _NOT_CERTIFIED
            used = ends[b, K - 1]
            pred = -1
            for j in range(K):
                if classes[i, j] < 0 or counts[i, j] < 0:
                    code = _NEED_MORE
                    used = ends[b, j]
                    break
                if counts[i, j] >= cert_min[b, j]:
                    code = _CERTIFIED
                    used = ends[b, j]
                    pred = classes[i, j]
                    break
                if j < K - 1 and counts[i, j] <= stop_max[b, j]:
                    used = ends[b, j]
                    break
            decision[b, i] = code
            samples[b, i] = used
            prediction[b, i] = pred
