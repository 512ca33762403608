"""The replay kernels against their slow twins in tests/reference.py: exactly.

Marked ``kernels``: CI runs these once jitted and once with NUMBA_DISABLE_JIT=1, so the
streams are small (a few dozen images of a few thousand samples).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as st

from isskit.policies import IAS, ISS, Cohen
from isskit.replay import _cbeta, _kernels
from isskit.replay.engine import _cp_lower, evaluate
from isskit.replay.index import index_blocks
from isskit.stats import cp_lower
from tests import reference as ref

pytestmark = pytest.mark.kernels

N = 2400
C = 10
SIGMA = 0.5


def _stream(rng, p_top, top, n=N, num_classes=C):
    """A stream whose label is ``top`` with probability p_top, else uniform over the rest."""
    others = np.array([c for c in range(num_classes) if c != top])
    out = rng.choice(others, n)
    out[rng.random(n) < p_top] = top
    return out.astype(np.uint16)


def _streams(seed=0, n=N):
    rng = np.random.default_rng(seed)
    rows = []
    for p in (1.0, 1.0, 0.9995, 0.999, 0.99, 0.95, 0.9, 0.8, 0.7, 0.6, 0.55, 0.52, 0.5, 0.45,
              0.3, 0.2, 0.12):
        rows.append(_stream(rng, p, int(rng.integers(C)), n))
    # Exact ties: two classes alternating, the larger one first (ties go to the smaller).
    rows.append(np.tile(np.array([7, 2], np.uint16), n // 2))
    # A tie in every even prefix between 0 and 9 on top of a 50/50 stream.
    rows.append(np.tile(np.array([9, 0], np.uint16), n // 2))
    # A near-1/2 stream: half one class, the rest spread (p_lower near 1/2 at large k).
    half = np.full(n, 4, np.uint16)
    half[rng.permutation(n)[: n // 2 - 30]] = rng.integers(5, C, n // 2 - 30)
    rows.append(half)
    # All one class, the largest label.
    rows.append(np.full(n, C - 1, np.uint16))
    # Pilot top class differs from the stream's top class.
    flip = _stream(rng, 0.7, 3, n)
    flip[:200] = 6
    rows.append(flip)
    return np.stack(rows)


LABELS = _streams()
TRUE = np.array([int(np.bincount(r, minlength=C).argmax()) for r in LABELS])
TRUE[::5] = (TRUE[::5] + 1) % C  # some wrong predictions too


POLICIES = [
    IAS(n=300),
    IAS(n=N),
    IAS(n=1, alpha=0.4),
    Cohen(n0=20, n=1000),
    Cohen(n0=1, n=N - 1, alpha=0.01),
    ISS(k_bar=2000, U=0.05, decline="ad", k0=100, delta=0.01),
    ISS(k_bar=2000, U=0.05, decline="ad", k0=100, delta=0.01, fresh=True),
    ISS(k_bar=1500, U=0.3, decline="rd", k0=30, delta=0.02, alpha=0.01),
    ISS(k_bar=1500, U=0.3, decline="rd", k0=30, delta=0.02, alpha=0.01, fresh=True),
    ISS(k_bar=2000, U=0.2, decline="ad", k0=400, delta=0.01),
    ISS(k_bar=1500, U=0.3, decline="rd", k0=30, delta=0.02, mapping="sup"),
]


def _index(labels, policies, blocks=(7, 19)):
    parts = np.split(labels, list(blocks))
    return index_blocks(parts, samples_per_image=labels.shape[1], num_classes=C,
                        selection_sizes=[p.selection_size for p in policies])


def test_scan_modes_matches_loops_including_ties():
    cps = np.array([1, 2, 3, 20, 99, 100, 1000, N - 1, N], np.int64)
    modes = np.empty((len(LABELS), cps.size), np.int64)
    counts = np.empty_like(modes)
    bad = np.empty(len(LABELS), np.int64)
    _kernels.scan_modes(LABELS, cps, C, modes, counts, bad)
    assert np.all(bad == -1)
    for i, row in enumerate(LABELS):
        for j, m in enumerate(cps):
            assert (modes[i, j], counts[i, j]) == ref.ref_mode(row[:m]), (i, m)
    # the alternating rows really tie, and the smaller label wins
    j100 = cps.tolist().index(100)
    assert modes[-5, j100] == 2 and counts[-5, j100] == 50
    assert modes[-4, j100] == 0 and counts[-4, j100] == 50


def test_scan_modes_flags_labels_out_of_range():
    block = np.zeros((3, 50), np.uint16)
    block[1, 17] = C
    block[1, 30] = C + 5
    block[2, 49] = 65535  # in the tail after the last group of four
    modes = np.empty((3, 1), np.int64)
    bad = np.empty(3, np.int64)
    _kernels.scan_modes(block, np.array([50]), C, modes, np.empty_like(modes), bad)
    assert bad.tolist() == [-1, 17, 49]
    assert modes[:, 0].tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match=r"label \(10\) at sample 17 of store row 1"):
        index_blocks([block], samples_per_image=50, num_classes=C, selection_sizes=[50])


@pytest.mark.parametrize("n", [N, 64 * 5, 64 * 5 + 7, 13])
def test_rank_counts_match_loops(n):
    rng = np.random.default_rng(n)
    labels = LABELS[:, :n].copy()
    idx = index_blocks([labels[:3], labels[3:]], samples_per_image=n, num_classes=C,
                       selection_sizes=sorted({1, min(n, 7), n}))
    m = idx.rows.size * 40
    img = rng.integers(0, idx.rows.size, m)
    col = rng.integers(0, idx.checkpoints.size, m)
    a = rng.integers(0, n + 1, m)
    b = rng.integers(0, n + 1, m)
    a[:20], b[:20] = 0, n  # whole stream
    a[20:40] = b[20:40]  # empty ranges
    start, stop = np.minimum(a, b), np.maximum(a, b)
    slot = idx.slot[img, col]
    out = np.empty(m, np.int64)
    shape = (4, m // 4)  # a batch of 4 "policies"
    _kernels.count_ranges(slot.reshape(shape), start.reshape(shape), stop.reshape(shape),
                          idx.bits, idx.cum, out.reshape(shape))
    for t in range(m):
        want = ref.ref_count(labels[img[t]], int(idx.modes[img[t], col[t]]), start[t], stop[t])
        assert out[t] == (want if slot[t] >= 0 else 0), t


def test_index_is_the_same_in_any_blocking():
    one = _index(LABELS, POLICIES, blocks=())
    many = _index(LABELS, POLICIES, blocks=(1, 2, 3, 10))
    assert one.same_as(many) and many.same_as(one)
    # one slot per image, and extra ones where a checkpoint chose another class
    assert one.bits.shape[0] > LABELS.shape[0]
    changed = _index(LABELS[::-1], POLICIES)
    assert not one.same_as(changed)
    # every slot row is the bit vector of its class, by a loop
    for i in range(LABELS.shape[0]):
        for j in np.flatnonzero(one.slot[i] >= 0):
            s = one.slot[i, j]
            marks = LABELS[i] == one.modes[i, j]
            packed = np.packbits(marks, bitorder="little")
            np.testing.assert_array_equal(one.bits[s, : packed.size], packed)
            assert one.cum[s, -1] == marks.sum()


def test_cp_lower_rows_is_bitwise_stats():
    rng = np.random.default_rng(3)
    k = rng.integers(1, 200_000, (2, 150))
    k_A = rng.integers(0, k + 1)
    k_A[:, :10] = k[:, :10]
    k_A[:, 10:20] = 0
    got = _cp_lower(k_A, k, [0.001, 0.05])
    np.testing.assert_array_equal(got[0], cp_lower(k_A[0], k[0], 0.001))
    np.testing.assert_array_equal(got[1], cp_lower(k_A[1], k[1], 0.05))
    assert np.isnan(_cp_lower(np.array([[0]]), np.array([[0]]), [0.001])[0, 0])
    assert _cbeta.AVAILABLE, _cbeta.REASON
    want = [ref.ref_cp_lower(a, n, 0.05) for a, n in zip(k_A[1, :50], k[1, :50], strict=True)]
    np.testing.assert_array_equal(got[1, :50], want)


def test_unique_pairs_against_a_set():
    rng = np.random.default_rng(11)
    k = rng.choice([0, 1, 7, 1000, 99_999, 2**31 - 1], 3000)
    k_A = np.clip(rng.integers(0, 20, 3000) + (k > 5) * (k - 20), 0, k)
    inv = np.empty(k.size, np.int64)
    pairs = _kernels.unique_pairs(k_A, k, inv)
    want = list(dict.fromkeys(zip(k_A.tolist(), k.tolist(), strict=True)))
    assert [tuple(p) for p in pairs.tolist()] == want  # first-appearance order, no repeats
    np.testing.assert_array_equal(pairs[inv, 0], k_A)
    np.testing.assert_array_equal(pairs[inv, 1], k)
    assert _kernels.unique_pairs(k[:0], k[:0], inv[:0]).shape == (0, 2)
    # many distinct pairs: the table grows (and re-places its keys) several times
    k = rng.integers(1, 10**6, 6000)
    k_A = rng.integers(0, k + 1)
    k, k_A = np.concatenate([k, k[::-1]]), np.concatenate([k_A, k_A[::-1]])
    inv = np.empty(k.size, np.int64)
    pairs = _kernels.unique_pairs(k_A, k, inv)
    assert len(pairs) == len(set(zip(k_A.tolist(), k.tolist(), strict=True))) > 5900
    np.testing.assert_array_equal(pairs[inv], np.stack([k_A, k], axis=1))


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_policy_matches_reference(policy):
    idx = _index(LABELS, POLICIES)
    got = evaluate(idx, policy, SIGMA)
    want = ref.ref_replay(LABELS, policy, SIGMA)
    np.testing.assert_array_equal(got.prediction, want["prediction"])
    np.testing.assert_array_equal(got.samples, want["samples"])
    np.testing.assert_array_equal(got.k_hat, want["k_hat"])
    np.testing.assert_allclose(got.radius, want["radius"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.p_lower, want["p_lower"], rtol=0, atol=1e-15)


def test_cases_the_streams_cover():
    """The streams above do reach the cases they are meant to: ties, k_hat = 0, abstentions."""
    idx = _index(LABELS, POLICIES)
    iss = evaluate(idx, POLICIES[5], SIGMA)
    assert np.any(iss.k_hat == 0) and np.any(iss.k_hat > POLICIES[5].k0)
    assert np.any(iss.k_hat < POLICIES[5].k0) and np.any(iss.k_hat > 0)
    assert np.all(iss.samples[iss.k_hat == 0] == POLICIES[5].k0)
    ias = evaluate(idx, IAS(n=N), SIGMA)
    assert np.any(ias.prediction == -1) and np.any(ias.prediction >= 0)
    # p_lower close to 1/2 on the near-1/2 stream, on either side
    assert abs(ias.p_lower[-3] - 0.5) < 0.05
    # all one class: k_A = k, so p_lower = alpha^(1/k) in closed form
    assert ias.p_lower[-2] == pytest.approx(0.001 ** (1 / N), rel=1e-14)
    assert ias.radius[-2] == pytest.approx(SIGMA * st.norm.ppf(0.001 ** (1 / N)), abs=1e-12)
    # the flipped stream: pilot class 6 for ISS with k0 = 100, stream top class 3
    assert idx.modes[-1, idx.column(100)] == 6 and idx.top_class[-1] == 3


@pytest.mark.parametrize(
    "policy",
    [
        IAS(n=N + 1),
        Cohen(n0=100, n=N),
        ISS(k_bar=5000, U=0.01, decline="ad", k0=100, delta=0.01),
        ISS(k_bar=2000, U=0.01, decline="ad", k0=1000, delta=0.01, fresh=True),
    ],
    ids=lambda p: p.name,
)
def test_streams_too_short_are_errors_naming_the_image(policy):
    short = LABELS[:, :N]
    sizes = [p.selection_size for p in POLICIES if p.selection_size <= N]
    if policy.selection_size <= N:
        sizes.append(policy.selection_size)
    idx = index_blocks([short], samples_per_image=N, num_classes=C, selection_sizes=sizes)
    ids = np.arange(100, 100 + short.shape[0])
    with pytest.raises(ValueError, match=rf"policy {policy.name} needs (\d+) samples for image"
                       rf" (\d+).*holds {N} \(N\)") as info:
        evaluate(idx, policy, SIGMA, image_ids=ids)
    # the reference agrees that this image is too short, and the numbers are right
    import re

    need, image = map(int, re.search(r"needs (\d+) samples for image (\d+)", str(info.value))
                      .groups())
    assert need > N
    with pytest.raises(ref.RefTooFewSamples):
        ref.ref_certify_image(list(short[image - 100]), policy, SIGMA)
    for i in range(image - 100):  # every earlier image fits
        ref.ref_certify_image(list(short[i]), policy, SIGMA)
