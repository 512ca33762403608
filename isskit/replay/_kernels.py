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


# ---------------------------------------------------------------------------------------------
# Decision policies (issue 10): the confidence-sequence thresholds, the stopping rules of
# ``cs``, ``staged`` and ``adaptive`` over one image's stream, and the exact audit's dynamic
# programme. Python wrappers, thresholds and checks live in :mod:`isskit.decision`.
#
# Decision codes (isskit.decision): 1 certified, 0 not certified, -1 undecided, and -2 "the
# stream prefix is too short to decide", with ``samples`` the least total it needs.
# ---------------------------------------------------------------------------------------------

_CERTIFIED = 1
_NOT_CERTIFIED = 0
_UNDECIDED = -1
_NEED_MORE = -2

#: Images per block of :func:`cs_decide` (their bit vectors and one threshold set fit in L2).
_IMAGE_BLOCK = 32


@_jit
def kt_upper_raw(p, log_c, out):
    """Per draw count t, the KT upper threshold of Voracek's ``thresholds.py`` (not monotone).

    ``out[t]`` is the smallest count ``A >= p t`` whose Beta(1/2, 1/2) mixture likelihood
    ratio against Bernoulli(p) exceeds ``exp(log_c)``, and ``A + len(out)`` where no count
    does. Computed as the authors do (``get_upper_threshold``): one walk that carries the
    log mixture probability of the current (count, length) along -- a success turns into a
    failure by the predictive ratio, a new draw is a failure -- and starts each length's
    search at the previous length's threshold. Same floating-point operations in the same
    order, so the same integers, including at near-ties (tested against a direct
    ``betaln`` search in ``tests/reference.py``).
    """
    n = out.shape[0]
    lp = np.log(p)
    lq = np.log(1.0 - p)
    a = 0
    t = 0
    log_q = 0.0
    while t < n:
        log_p = a * lp + (t - a) * lq
        if log_q - log_p > log_c and a >= p * t:
            out[t] = a
            q = (a + 0.5) / (t + 1)
            log_q += np.log(1.0 - q)
            t += 1
        elif a != t:
            q = (a + 0.5) / t
            log_q = log_q - np.log(1.0 - q) + np.log(q)
            a += 1
        else:
            out[t] = a + n
            q = (a + 0.5) / (t + 1)
            log_q += np.log(1.0 - q)
            t += 1


@_jit
def cs_tables(up, up_fail, lo, hi, next_hi, next_lo):
    """Monotone cs thresholds and their skip tables from the raw upper thresholds.

    ``hi`` is the running minimum from the right of ``up`` (``thresholds.py``'s ``cumin``),
    ``lo[t]`` the running maximum of ``t - `` that of ``up_fail``; then unreachable entries
    are written ``hi[t] = t + 1``, ``lo[t] = -1``. ``next_hi[f]`` (``f = 0 .. n``) is the
    first ``t >= 1`` with ``t - hi[t] >= f`` and ``next_lo[a]`` the first ``t >= 1`` with
    ``lo[t] >= a``, ``n`` where there is none (see :class:`isskit.decision.CSThresholds`).
    """
    n = up.shape[0]
    m = up[n - 1]
    m_fail = up_fail[n - 1]
    for t in range(n - 1, -1, -1):
        m = min(m, up[t])
        m_fail = min(m_fail, up_fail[t])
        hi[t] = min(m, t + 1)
        lo[t] = t - m_fail
    best = lo[0]
    for t in range(n):
        best = max(best, lo[t])
        lo[t] = max(best, -1)
    next_hi[:] = n
    next_lo[:] = n
    slack = -1  # max of t - hi[t] so far (>= -1 everywhere)
    reach = -1  # max of lo[t] so far
    for t in range(1, n):
        g = t - hi[t]
        while slack < g:
            slack += 1
            next_hi[slack] = t
        while reach < lo[t]:
            reach += 1
            next_lo[reach] = t


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


#: Probability below which a count is dropped from the audit's dynamic programme.
_NEGLIGIBLE = 1e-300


@_jit
def cs_band_dp(lo, hi, n_max, p, out):
    """Exact law of a cs decision on an i.i.d. Bernoulli(p) stream, over the undecided band.

    The undecided counts after t draws lie strictly between ``lo[t]`` and ``hi[t]``; their
    probabilities advance one draw at a time (``P'(A) = (1 - p) P(A) + p P(A - 1)``), and
    the mass that reaches a threshold is absorbed (the lower one first, as the stopping
    rule tests it). The band is O(sqrt(t)) wide, so the whole law costs O(n_max^1.5).
    Counts of probability below 1e-300 at the band's ends are dropped (at most about
    n_max * 1e-300 in all).

    ``out`` (float64, shape (4,)): P(certified), P(not certified), P(undecided) and the
    expected samples consumed.
    """
    w = np.zeros(n_max + 2, np.float64)
    w[0] = 1.0
    first = 0  # the band of live counts is [first, last]
    last = 0
    cert = 0.0
    rej = 0.0
    mean = 0.0
    q = 1.0 - p
    for t in range(1, n_max):
        # one more draw: new[A] = q old[A] + p old[A - 1], walking down to reuse w in place
        w[last + 1] = p * w[last]
        for a in range(last, first, -1):
            w[a] = q * w[a] + p * w[a - 1]
        w[first] = q * w[first]
        last += 1
        low = lo[t]
        high = hi[t]
        stopped = 0.0
        while first <= last and first <= low:
            rej += w[first]
            stopped += w[first]
            w[first] = 0.0
            first += 1
        while last >= first and last >= high:
            cert += w[last]
            stopped += w[last]
            w[last] = 0.0
            last -= 1
        mean += t * stopped
        # Counts whose probability underflows carry nothing (< 1e-300 each) but would cost
        # subnormal arithmetic on every later draw: the band ends at the last live value.
        while first < last and w[first] < _NEGLIGIBLE:
            w[first] = 0.0
            first += 1
        while last > first and w[last] < _NEGLIGIBLE:
            w[last] = 0.0
            last -= 1
        if first > last:
            break
    live = 0.0
    for a in range(first, last + 1):
        live += w[a]
    out[0] = cert
    out[1] = rej
    out[2] = live
    out[3] = mean + n_max * live
