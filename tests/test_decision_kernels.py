"""Decision-policy kernels against their slow twins in tests/reference.py, image by image.

Marked ``kernels``: CI runs these once jitted and once with NUMBA_DISABLE_JIT=1, so streams
are short (a few thousand draws, a few dozen images), except one small run at the defaults.
Decision and samples consumed must be identical; adaptive's certified class too.
"""

from __future__ import annotations

import numpy as np
import pytest

from isskit.decision import (
    CERTIFIED,
    NEED_MORE,
    UNDECIDED,
    adaptive_ranges,
    decide_adaptive,
    decide_adaptive_counts,
    decide_cs,
    decide_staged,
)
from isskit.policies import CS, Adaptive, Staged, cs_thresholds
from isskit.replay import _kernels
from tests import reference as ref

pytestmark = pytest.mark.kernels

C = 10
SIGMA = 0.5


def _index(labels, classes):
    """Bit vectors of ``labels[i] == classes[i]`` (one slot per row), via pack_slots."""
    n, N = labels.shape
    nw = _kernels.n_words(N)
    bits = np.zeros((n, 8 * nw), np.uint8)
    cum = np.zeros((n, nw + 1), np.int32)
    _kernels.pack_slots(labels, np.arange(n + 1, dtype=np.int64),
                        np.asarray(classes, np.int64), bits, cum)
    return bits, cum


def _stream(rng, p_true, true, n):
    """``true`` with probability p_true, else uniform over the other classes."""
    others = np.array([c for c in range(C) if c != true])
    out = rng.choice(others, n)
    out[rng.random(n) < p_true] = true
    return out.astype(np.uint16)


def _streams(p0s, n, seed):
    """Streams around each p0 (at, just off and far from it), plus all-in and all-out rows."""
    rng = np.random.default_rng(seed)
    rows, true = [], []
    ps = [0.0, 1.0, 0.5, 0.3, 0.97]
    for p0 in p0s:
        ps += [p0, p0, p0 - 0.01, p0 + 0.01, p0 - 0.05, p0 + 0.05, min(p0 + 0.2, 1.0)]
    for p in ps:
        y = int(rng.integers(C))
        rows.append(_stream(rng, p, y, n))
        true.append(y)
    return np.stack(rows), np.array(true)


def _check(policies, labels, true, got, twin, drawn=None):
    for b, pol in enumerate(policies):
        for i in range(labels.shape[0]):
            row = list(labels[i] if drawn is None else labels[i, : drawn[i]])
            want = twin(pol, row, int(true[i]))
            have = tuple(int(g[b, i]) for g in got)
            assert have == want[: len(have)], (pol.name, i, have, want)


# --------------------------------------------------------------------------- cs

CS_POLICIES = [
    CS(r=0.25, n_max=2500),
    CS(r=0.25, n_max=2500, faithful=True),
    CS(r=0.25, method="union", n_max=2500),
    CS(r=0.6, alpha=0.05, n_max=2500),
    CS(r=0.6, alpha=0.05, method="union", n_max=2500),
    CS(r=0.1, alpha=0.3, n_max=1800, faithful=True),
    CS(r=0.1, alpha=0.6, n_max=1800, faithful=True),  # log(1/alpha/2) < 0: hi[0] = 0
    CS(r=1.2, alpha=0.01, n_max=2999),
    CS(r=0.05, alpha=0.2, method="union", n_max=7),
]


def _cs_twin(pol, row, y):
    th = ref.ref_cs_thresholds(ref.ref_p0(pol.r, SIGMA), pol.alpha, pol.n_max, pol.method,
                               pol.faithful)
    return ref.ref_cs_decide(row, y, *th, pol.n_max)


def test_cs_matches_twin():
    p0s = sorted({ref.ref_p0(p.r, SIGMA) for p in CS_POLICIES})
    labels, true = _streams(p0s, 3000, seed=1)
    bits, cum = _index(labels, true)
    got = decide_cs(bits, cum, CS_POLICIES, SIGMA, drawn=3000)
    _check(CS_POLICIES, labels, true, got[:2], _cs_twin)
    # the streams cover every outcome
    assert {CERTIFIED, 0, UNDECIDED} <= set(np.unique(got.decision).tolist())


def test_cs_single_policy_shape_and_thresholds_twin():
    pol = CS_POLICIES[0]
    th = pol.thresholds(SIGMA)
    lo, hi = ref.ref_cs_thresholds(ref.ref_p0(pol.r, SIGMA), pol.alpha, pol.n_max)
    assert np.array_equal(th.lo, lo) and np.array_equal(th.hi, hi)
    labels, true = _streams([th.p0], 2600, seed=2)
    bits, cum = _index(labels, true)
    res = decide_cs(bits, cum, pol, SIGMA, drawn=2600)
    assert res.decision.shape == (labels.shape[0],) and res.prediction is None


def test_cs_stream_boundaries():
    """A row drawn to exactly its stopping time replays the same; one draw less cannot."""
    pol = CS(r=0.25, alpha=0.05, n_max=2000)
    labels, true = _streams([ref.ref_p0(pol.r, SIGMA)], 2000, seed=3)
    bits, cum = _index(labels, true)
    full = decide_cs(bits, cum, pol, SIGMA, drawn=2000)
    exact = decide_cs(bits, cum, pol, SIGMA, drawn=full.samples)
    assert np.array_equal(exact.decision, full.decision)
    assert np.array_equal(exact.samples, full.samples)
    short = decide_cs(bits, cum, pol, SIGMA, drawn=full.samples - 1, online=True)
    assert np.all(short.decision == NEED_MORE)
    assert np.all((short.samples > full.samples - 1) & (short.samples <= full.samples))
    for i in range(labels.shape[0]):
        with pytest.raises(ref.RefTooFewSamples):
            _cs_twin(pol, list(labels[i, : full.samples[i] - 1]), int(true[i]))
    with pytest.raises(ValueError, match=r"needs \d+ samples for image 0 \(and \d+ more"):
        decide_cs(bits, cum, pol, SIGMA, drawn=full.samples - 1)


def test_cs_online_loop_reaches_the_replayed_decision():
    """Drawing what NEED_MORE asks for, again and again, ends at the full-stream answer."""
    pol = CS(r=0.25, alpha=0.01, n_max=2500)
    labels, true = _streams([ref.ref_p0(pol.r, SIGMA)], 2500, seed=4)
    bits, cum = _index(labels, true)
    full = decide_cs(bits, cum, pol, SIGMA, drawn=2500)
    drawn = np.zeros(labels.shape[0], np.int64)
    for _ in range(10_000):
        res = decide_cs(bits, cum, pol, SIGMA, drawn=drawn, online=True)
        need = res.decision == NEED_MORE
        if not need.any():
            break
        assert np.all(res.samples[need] > drawn[need])
        drawn[need] = res.samples[need]
    assert np.array_equal(res.decision, full.decision)
    assert np.array_equal(res.samples, full.samples)
    assert np.array_equal(drawn, np.maximum(drawn, 0)) and np.all(drawn <= full.samples)


def test_cs_at_the_defaults():
    """Default n_max (131,100): a few long streams at and near p0."""
    policies = [CS(r=0.25), CS(r=0.25, method="union"), CS(r=0.25, faithful=True)]
    p0 = ref.ref_p0(0.25, SIGMA)
    rng = np.random.default_rng(5)
    ps = [p0, p0 + 0.004, 1.0]
    labels = np.stack([_stream(rng, p, 3, 131_100) for p in ps])
    true = np.full(len(ps), 3)
    bits, cum = _index(labels, true)
    got = decide_cs(bits, cum, policies, SIGMA, drawn=131_100)
    _check(policies, labels, true, got[:2], _cs_twin)


# --------------------------------------------------------------------------- staged

STAGED_POLICIES = [
    Staged(r=0.25, stages=(50, 200, 800, 1500)),
    Staged(r=0.25, stages=(50, 200, 800, 1500), alpha=0.2),
    Staged(r=0.6, stages=(10, 2540), alpha=0.01),
    Staged(r=0.05, stages=(7,), alpha=0.45),
    Staged(r=1.0, stages=(100, 1000, 1400)),
]


def _staged_twin(pol, row, y):
    return ref.ref_staged_decide(row, y, pol, SIGMA)


def test_staged_matches_twin():
    p0s = sorted({ref.ref_p0(p.r, SIGMA) for p in STAGED_POLICIES})
    labels, true = _streams(p0s, 2600, seed=6)
    bits, cum = _index(labels, true)
    got = decide_staged(bits, cum, STAGED_POLICIES, SIGMA, drawn=2600)
    _check(STAGED_POLICIES, labels, true, got[:2], _staged_twin)
    assert {CERTIFIED, 0, UNDECIDED} <= set(np.unique(got.decision).tolist())


def test_staged_stream_boundaries():
    pol = STAGED_POLICIES[1]
    labels, true = _streams([ref.ref_p0(pol.r, SIGMA)], 2550, seed=7)
    bits, cum = _index(labels, true)
    full = decide_staged(bits, cum, pol, SIGMA, drawn=2550)
    exact = decide_staged(bits, cum, pol, SIGMA, drawn=full.samples)
    assert np.array_equal(exact.decision, full.decision)
    short = decide_staged(bits, cum, pol, SIGMA, drawn=full.samples - 1, online=True)
    assert np.all(short.decision == NEED_MORE) and np.array_equal(short.samples, full.samples)
    with pytest.raises(ValueError, match="needs"):
        decide_staged(bits, cum, pol, SIGMA, drawn=2549)


# --------------------------------------------------------------------------- adaptive

ADAPTIVE_POLICIES = [
    Adaptive(r=0.25, n0=20, stages=(100, 400, 1500)),
    Adaptive(r=0.25, n0=20, stages=(100, 400, 1500), alpha=0.2, beta=0.3),
    Adaptive(r=0.6, n0=20, stages=(100, 400, 1500), alpha=0.01, beta=0.05),
    Adaptive(r=0.1, n0=7, stages=(30, 2000), alpha=0.3, beta=0.4),
    Adaptive(r=0.4, n0=1, stages=(500,)),
]


def _adaptive_twin(pol, row, y):
    return ref.ref_adaptive_decide(row, pol, SIGMA)


def _adaptive_streams():
    p0s = sorted({ref.ref_p0(p.r, SIGMA) for p in ADAPTIVE_POLICIES})
    labels, true = _streams(p0s, 2100, seed=8)
    extra = []
    # exact ties in every even-length selection: the larger label comes first, the smaller wins
    extra.append(np.tile(np.array([7, 2], np.uint16), 1050))
    # two-class stream near 1/2 whose selection ties often
    rng = np.random.default_rng(9)
    extra.append(np.where(rng.random(2100) < 0.5, 4, 1).astype(np.uint16))
    # the class changes between stages: 5 for the first 600 draws, then 8
    extra.append(np.concatenate([np.full(600, 5), np.full(1500, 8)]).astype(np.uint16))
    # the largest label throughout
    extra.append(np.full(2100, C - 1, np.uint16))
    labels = np.concatenate([labels, np.stack(extra)])
    return labels, np.concatenate([true, [2, 1, 8, C - 1]])


def test_adaptive_matches_twin():
    labels, true = _adaptive_streams()
    got = decide_adaptive(labels, ADAPTIVE_POLICIES, SIGMA, num_classes=C)
    _check(ADAPTIVE_POLICIES, labels, true, got, _adaptive_twin)
    assert {CERTIFIED, 0} <= set(np.unique(got.decision).tolist())
    assert UNDECIDED not in got.decision  # adaptive always ends certified or not


def test_adaptive_ties_go_to_the_smallest_label():
    labels = np.tile(np.array([7, 2], np.uint16), 1050)[None, :]
    classes, counts = adaptive_ranges(labels, 20, (100, 400, 1500), num_classes=C)
    assert classes.tolist() == [[2, 2, 2]]
    assert counts.tolist() == [[50, 200, 750]]


def test_adaptive_from_the_index_equals_raw_labels():
    """Counts from bit vectors of the chosen classes (count_ranges) give the same decisions."""
    labels, _ = _adaptive_streams()
    n, N = labels.shape
    pols = ADAPTIVE_POLICIES[:3]  # one schedule
    classes, counts = adaptive_ranges(labels, pols[0].n0, pols[0].stages, num_classes=C)
    # one slot per (row, class): slot r * C + c
    nw = _kernels.n_words(N)
    bits = np.zeros((n * C, 8 * nw), np.uint8)
    cum = np.zeros((n * C, nw + 1), np.int32)
    _kernels.pack_slots(labels, np.arange(0, n * C + 1, C, dtype=np.int64),
                        np.tile(np.arange(C, dtype=np.int64), n), bits, cum)
    est = np.array(pols[0].estimation_ranges)
    K = est.shape[0]
    slot = (np.arange(n)[None, :] * C + classes.T).astype(np.int64)
    start = np.ascontiguousarray(np.broadcast_to(est[:, :1], (K, n)), dtype=np.int64)
    stop = np.ascontiguousarray(np.broadcast_to(est[:, 1:], (K, n)), dtype=np.int64)
    from_index = np.empty((K, n), np.int64)
    _kernels.count_ranges(slot, start, stop, bits, cum, from_index)
    assert np.array_equal(from_index.T, counts)
    a = decide_adaptive_counts(classes, from_index.T, pols, SIGMA)
    b = decide_adaptive(labels, pols, SIGMA, num_classes=C)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y)


def test_adaptive_stream_boundaries():
    labels, true = _adaptive_streams()
    pol = ADAPTIVE_POLICIES[1]
    full = decide_adaptive(labels, pol, SIGMA, num_classes=C)
    exact = decide_adaptive(labels, pol, SIGMA, num_classes=C, drawn=full.samples)
    for x, y in zip(full, exact, strict=True):
        assert np.array_equal(x, y)
    short = decide_adaptive(labels, pol, SIGMA, num_classes=C, drawn=full.samples - 1,
                            online=True)
    assert np.all(short.decision == NEED_MORE) and np.array_equal(short.samples, full.samples)
    _check([pol], labels, true, [a[None] for a in full], _adaptive_twin, drawn=full.samples)
    first = int(np.argmax(full.samples > 1000))  # the first image 1000 draws cannot decide
    need = int(pol.stage_ends[np.searchsorted(pol.stage_ends, 1000)])
    with pytest.raises(ValueError, match=rf"needs {need} samples for image {first + 3} \(and"):
        decide_adaptive(labels, pol, SIGMA, num_classes=C, drawn=1000,
                        image_ids=np.arange(labels.shape[0]) + 3)


def test_staged_and_adaptive_at_the_defaults():
    rng = np.random.default_rng(10)
    p0 = ref.ref_p0(0.25, SIGMA)
    ps = [p0, p0 + 0.003, p0 - 0.003, 0.999, 0.55]
    labels = np.stack([_stream(rng, p, 6, 136_300) for p in ps])
    true = np.full(len(ps), 6)
    staged = [Staged(r=0.25), Staged(r=0.5, alpha=0.01)]
    bits, cum = _index(labels, true)
    _check(staged, labels, true, decide_staged(bits, cum, staged, SIGMA, drawn=136_300)[:2],
           _staged_twin)
    adaptive = [Adaptive(r=0.25), Adaptive(r=0.5, beta=0.01)]
    _check(adaptive, labels, true, decide_adaptive(labels, adaptive, SIGMA, num_classes=C),
           _adaptive_twin)


def test_kt_walk_matches_direct_search_at_full_length():
    """The authors' walk (kernel) and DESIGN.md's smallest-A definition (betaln bisection)."""
    for p0, alpha, faithful in [(0.6914624612740131, 0.001, False), (0.99, 0.05, True)]:
        th = cs_thresholds(p0, alpha, 131_100, "kt", faithful)
        lo, hi = ref.ref_cs_thresholds(p0, alpha, 131_100, "kt", faithful)
        assert np.array_equal(th.hi, hi) and np.array_equal(th.lo, lo)


def test_next_bit_is_a_select_query():
    """_next_bit against a scan, over dense, sparse and empty bit vectors of odd length."""
    rng = np.random.default_rng(13)
    N = 64 * 37 + 11
    rows = [rng.random(N) < d for d in (0.0, 1.0, 0.5, 0.002, 0.998, 0.03)]
    x = np.stack(rows).astype(np.uint16)
    bits, cum = _index(x, np.ones(len(rows), np.int64))
    for s, row in enumerate(rows):
        for q, stop in [(0, N), (1, N), (63, 64), (64, 65), (5, 700), (N - 1, N), (200, 200),
                        *zip(rng.integers(0, N, 40), rng.integers(0, N + 1, 40), strict=True)]:
            for want in (0, 1):
                hit = np.flatnonzero(row[q:stop] == bool(want))
                expect = q + int(hit[0]) if q < stop and hit.size else max(stop, q)
                got = _kernels._next_bit(bits, cum, s, int(q), int(stop), want)
                assert got == (expect if q < stop else stop), (s, q, stop, want)
