"""Decision policies: is this image certified at the radius r? (DESIGN.md, "Policies").

A radius policy returns the radius it can certify; a decision policy answers one question,
"is the smoothed prediction robust at radius ``r``?", with certified (1), not certified
(0) or undecided (-1), and the samples it consumed. It stops as soon as the answer is
clear, so it needs far fewer samples than a radius certificate. Three families:

=========================================  =====================  ===========  =============
policy                                     observations           stops        validity
=========================================  =====================  ===========  =============
``Adaptive(r, n0, stages, alpha, beta)``   fresh selection of     after each   alpha-split
(Horvath et al., ICLR 2022)                ``n0``, then the       stage
                                           stage's own ``n_i``
``Staged(r, stages, alpha)``               ``1[label == true]``   after each   alpha-split
(Voracek 2024's baseline)                  pooled over stages     stage
``CS(r, method, alpha, n_max)``            ``1[label == true]``   after any    anytime-valid
(Voracek 2024)                             one at a time          draw
=========================================  =====================  ===========  =============

Names: ``r`` the radius asked about, ``sigma`` the noise level (given at evaluation, it is
the store's), ``p0 = Phi(r / sigma)`` the class probability that radius needs (Cohen et
al.: radius ``sigma Phi^-1(p)``), ``alpha`` the failure probability, ``beta`` adaptive's
early-stopping error, ``n0`` adaptive's selection size, ``stages`` the sample sizes of the
stages, ``n_max`` the draw at which ``cs`` gives up.

The authors' code is the definition wherever DESIGN.md's summary is unclear; where this
module had to choose between them (threshold search, unreachable markers, adaptive's
abstentions, ``faithful``), ``docs/decisions.md`` says so, section "Where the authors'
code and DESIGN.md differ".

Evaluation is over plain arrays: the bit vector of ``labels == true label`` with its rank
directory (the layout of :func:`isskit.replay._kernels.pack_slots`) for ``cs`` and ``staged``, the
raw label block, or the per-stage classes and counts taken from an index, for ``Adaptive``.
Each entry point accepts one policy (arrays of shape (n,)) or a list of them ((P, n)).

This module never prints, never reads a store and never imports click.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from isskit.policies._decide import StageThresholds
from isskit.policies.adaptive import Adaptive, _adaptive_thresholds
from isskit.policies.base import DecisionPolicy
from isskit.policies.cs import CS, CS_METHODS, CSThresholds, cs_thresholds
from isskit.policies.staged import Staged, _staged_thresholds
from isskit.replay import _kernels
from isskit.validate import check_positive_int

__all__ = [
    "CERTIFIED",
    "CS",
    "CS_METHODS",
    "NEED_MORE",
    "NOT_CERTIFIED",
    "UNDECIDED",
    "Adaptive",
    "CSThresholds",
    "DecisionPolicy",
    "Decisions",
    "StageThresholds",
    "Staged",
    "adaptive_ranges",
    "cs_thresholds",
    "decide_adaptive",
    "decide_adaptive_counts",
    "decide_cs",
    "decide_staged",
]

#: Decision codes (the results' ``decision`` variable, DESIGN.md "Results").
CERTIFIED = _kernels._CERTIFIED
NOT_CERTIFIED = _kernels._NOT_CERTIFIED
UNDECIDED = _kernels._UNDECIDED
#: Online only (``online=True``): the stream prefix is too short to decide, and ``samples``
#: is the least total number of samples the policy needs before it can (DESIGN.md: a policy
#: evaluated on a prefix decides or answers with the samples it needs). Never in results.
NEED_MORE = _kernels._NEED_MORE


# --------------------------------------------------------------------------- evaluation


class Decisions(NamedTuple):
    """What decision policies answer per image: shape (n,) for one policy, (P, n) for several.

    Attributes
    ----------
    decision : ndarray of int8
        :data:`CERTIFIED`, :data:`NOT_CERTIFIED`, :data:`UNDECIDED` (and :data:`NEED_MORE`
        online).
    samples : ndarray of int64
        Samples consumed (online, for NEED_MORE: the least total the policy needs).
    prediction : ndarray of int64 or None
        Adaptive only: the class certified, -1 where not certified. ``cs`` and ``staged``
        test the true label, so certified means correct (None).
    """

    decision: np.ndarray
    samples: np.ndarray
    prediction: np.ndarray | None = None


def _as_policies(policies, cls):
    single = isinstance(policies, cls)
    items = [policies] if single else list(policies)
    for p in items:
        if not isinstance(p, cls):
            raise ValueError(f"policy ({p!r}) must be a {cls.__name__} policy")
    if not items:
        raise ValueError(f"no {cls.__name__} policy given")
    return items, single


def _drawn(drawn, n: int, limit: int) -> np.ndarray:
    d = np.asarray(drawn)
    if d.dtype.kind not in "iu":
        raise ValueError(f"drawn ({drawn!r}) must be an integer or integer array")
    d = np.broadcast_to(d.astype(np.int64), (n,)).copy() if d.ndim == 0 else d.astype(np.int64)
    if d.shape != (n,):
        raise ValueError(f"drawn must hold one count per image ({n}), got shape {d.shape}")
    bad = (d < 0) | (d > limit)
    if np.any(bad):
        raise ValueError(f"drawn ({d[bad][0]}) must be in [0, {limit}] (image {np.argmax(bad)})")
    return d


def _check_index(bits, cum, slot, n_images):
    bits = np.asarray(bits)
    cum = np.asarray(cum)
    if bits.dtype != np.uint8 or bits.ndim != 2 or cum.dtype != np.int32 or cum.ndim != 2 \
            or bits.shape[0] != cum.shape[0] or bits.shape[1] != 8 * (cum.shape[1] - 1):
        raise ValueError(
            "bits (uint8, (slots, 8 w)) and cum (int32, (slots, w + 1)) must be an index of "
            f"isskit.replay._kernels.pack_slots, got {bits.dtype} {bits.shape} and {cum.dtype} "
            f"{cum.shape}"
        )
    if slot is None:
        slot = np.arange(bits.shape[0] if n_images is None else n_images, dtype=np.int64)
    slot = np.asarray(slot, dtype=np.int64)
    if slot.ndim != 1 or np.any((slot < 0) | (slot >= bits.shape[0])):
        raise ValueError(f"slot must give each image a row of bits in [0, {bits.shape[0]})")
    return np.ascontiguousarray(bits), np.ascontiguousarray(cum), slot


def _stream_bits(labels, true_label: int):
    """The bit vector of one stream's ``labels == true_label`` and its rank directory.

    The layout :func:`decide_cs` and :func:`decide_staged` read
    (:func:`isskit.replay._kernels.pack_slots`), for a policy asked about one stream
    prefix online (:meth:`isskit.policies.DecisionPolicy.needs`).
    """
    block = np.ascontiguousarray(np.asarray(labels).reshape(1, -1), dtype=np.uint16)
    nw = _kernels.n_words(block.shape[1])
    bits = np.zeros((1, 8 * nw), np.uint8)
    cum = np.zeros((1, nw + 1), np.int32)
    _kernels.pack_slots(block, np.array([0, 1], np.int64), np.array([true_label], np.int64),
                        bits, cum)
    return bits, cum


def _too_short(policy, image, need, have, n_bad):
    more = f" (and {n_bad - 1} more images)" if n_bad > 1 else ""
    holds = "does not hold them" if have is None else f"holds {have}"
    return ValueError(
        f"policy {policy.name} needs {need} samples for image {image}{more}, but its stream "
        f"{holds}; sample more, or choose a smaller policy"
    )


def _finish(policies, single, decision, samples, prediction, drawn, online, image_ids):
    if not online:
        for b, p in enumerate(policies):
            short = np.flatnonzero(decision[b] == NEED_MORE)
            if short.size:
                i = int(short[0])
                image = i if image_ids is None else image_ids[i]
                have = None if drawn is None else int(drawn[i])
                raise _too_short(p, image, int(samples[b, i]), have, short.size)
    if single:
        return Decisions(decision[0], samples[0], None if prediction is None else prediction[0])
    return Decisions(decision, samples, prediction)


def decide_cs(bits, cum, policies, sigma, *, drawn, slot=None, online=False,
              image_ids=None) -> Decisions:
    """Replay ``cs`` policies over the bit vectors of each image's true label.

    The stopping time is found without visiting every draw: from count A after t draws,
    the count after u draws lies in ``[A, A + u - t]``, so no threshold can be crossed
    before ``min(next_hi[t - A], next_lo[A])`` (:class:`CSThresholds`); and a stream that
    has not stopped can reach ``lo`` only on a failure and ``hi`` only on a success. So it
    moves from one draw that can stop it to the next with a select and a rank query on the
    bit vector (:func:`isskit.replay._kernels._cs_one`); 64-draw words of the wrong kind are
    skipped by their popcount, unread.

    Parameters
    ----------
    bits, cum : ndarray
        uint8 bit vectors and int32 rank directories (:func:`isskit.replay._kernels.pack_slots`)
        of ``labels == true label``.
    policies : CS or sequence of CS
    sigma : float
        Noise level of the streams.
    drawn : int or ndarray of int64, shape (n,)
        Draws each stream holds (the store's ``/drawn``, or N).
    slot : ndarray of int64, shape (n,), optional
        Row of ``bits`` of each image's true label; default ``arange(len(bits))``.
    online : bool
        Return :data:`NEED_MORE` with the samples needed where a stream is too short,
        instead of raising.
    image_ids : array_like, optional
        Image names for error messages (default: positions).

    Returns
    -------
    Decisions
        ``decision`` and ``samples``.

    Raises
    ------
    ValueError
        Bad parameters, or (unless ``online``) a stream too short for a decision, naming
        the image and the numbers.
    """
    policies, single = _as_policies(policies, CS)
    bits, cum, slot = _check_index(bits, cum, slot, None)
    n = slot.size
    drawn = _drawn(drawn, n, 64 * (cum.shape[1] - 1))
    sets = [p.thresholds(sigma) for p in policies]
    width = max(s.n_max for s in sets) + 1
    B = len(sets)
    lo = np.full((B, width), -1, np.int32)
    hi = np.empty((B, width), np.int32)
    next_hi = np.empty((B, width), np.int32)
    next_lo = np.empty((B, width), np.int32)
    for b, s in enumerate(sets):
        m = s.n_max
        lo[b, :m], hi[b, :m] = s.lo, s.hi
        next_hi[b, : m + 1], next_lo[b, : m + 1] = s.next_hi, s.next_lo
    n_max = np.array([s.n_max for s in sets], dtype=np.int64)
    decision = np.empty((B, n), np.int8)
    samples = np.empty((B, n), np.int64)
    _kernels.cs_decide(bits, cum, slot, drawn, n_max, lo, hi, next_hi, next_lo, decision,
                       samples)
    return _finish(policies, single, decision, samples, None, drawn, online, image_ids)


def _stack(rows, dtype, fill) -> np.ndarray:
    K = max(len(r) for r in rows)
    out = np.full((len(rows), K), fill, dtype=dtype)
    for b, r in enumerate(rows):
        out[b, : len(r)] = r
    return out


def decide_staged(bits, cum, policies, sigma, *, drawn, slot=None, online=False,
                  image_ids=None) -> Decisions:
    """Replay ``staged`` policies over the bit vectors of each image's true label.

    The pooled count after each stage is one rank query. Parameters and returns as
    :func:`decide_cs`, with :class:`Staged` policies.
    """
    policies, single = _as_policies(policies, Staged)
    bits, cum, slot = _check_index(bits, cum, slot, None)
    n = slot.size
    drawn = _drawn(drawn, n, 64 * (cum.shape[1] - 1))
    th = _staged_thresholds(policies, sigma)
    ends = _stack([t.ends for t in th], np.int64, 0)
    cert = _stack([t.cert_min for t in th], np.int64, 0)
    rej = _stack([t.stop_max for t in th], np.int64, -1)
    n_stages = np.array([len(t.ends) for t in th], dtype=np.int64)
    decision = np.empty((len(th), n), np.int8)
    samples = np.empty((len(th), n), np.int64)
    _kernels.staged_decide(bits, cum, slot, drawn, ends, n_stages, cert, rej, decision,
                           samples)
    return _finish(policies, single, decision, samples, None, drawn, online, image_ids)


def _labels(labels_block, num_classes, drawn):
    block = np.asarray(labels_block)
    if block.ndim != 2 or block.dtype != np.uint16:
        raise ValueError(
            f"labels_block must be a 2-D uint16 array (images, samples), got {block.dtype} "
            f"{block.shape}"
        )
    block = np.ascontiguousarray(block)
    if num_classes is None:
        num_classes = int(block.max()) + 1 if block.size else 1
    num_classes = check_positive_int(num_classes, "num_classes")
    d = _drawn(block.shape[1] if drawn is None else drawn, block.shape[0], block.shape[1])
    return block, num_classes, d


def _schedule(policy) -> tuple[int, tuple[int, ...]]:
    return policy.n0, policy.stages


def adaptive_ranges(labels_block, n0, stages, *, num_classes=None, drawn=None):
    """Per image and stage: the class adaptive sampling chooses and its fresh count.

    The class is the most frequent label of stage j's selection range (ties to the smallest
    label, :func:`isskit.replay._kernels.range_modes`); the count is over stage j's estimation
    range, from the raw labels (:func:`isskit.replay._kernels.range_counts`). An index that holds
    the selection modes and a bit vector for each class chosen can give the counts instead
    (:func:`isskit.replay._kernels.count_ranges`), then :func:`decide_adaptive_counts` decides.

    Parameters
    ----------
    labels_block : ndarray of uint16, shape (n, N)
    n0 : int
    stages : tuple of int
        The schedule (every :class:`Adaptive` with the same ``n0`` and ``stages`` shares it).
    num_classes : int, optional
        Labels must be below it; default the largest label + 1.
    drawn : int or ndarray, optional
        Draws each row holds (default N): ranges past them get -1.

    Returns
    -------
    classes, counts : ndarray of int64, shape (n, K)
        -1 where the row does not hold the range.
    """
    block, num_classes, d = _labels(labels_block, num_classes, drawn)
    sched = Adaptive(r=1.0, n0=n0, stages=stages)
    sel = np.array([a for a, _ in sched.selection_ranges], dtype=np.int64)
    est = np.array(sched.estimation_ranges, dtype=np.int64)
    n, K = block.shape[0], len(sched.stages)
    classes = np.empty((n, K), np.int64)
    mode_counts = np.empty((n, K), np.int64)
    bad = np.empty(n, np.int64)
    _kernels.range_modes(block, sel, sched.n0, d, num_classes, classes, mode_counts, bad)
    if np.any(bad >= 0):
        r = int(np.argmax(bad >= 0))
        raise ValueError(
            f"row {r} holds label {int(block[r, bad[r]])} at sample {int(bad[r])}, "
            f"not below num_classes ({num_classes})"
        )
    counts = np.empty((n, K), np.int64)
    _kernels.range_counts(block, classes, np.ascontiguousarray(est[:, 0]),
                          np.ascontiguousarray(est[:, 1]), d, counts)
    return classes, counts


def decide_adaptive_counts(classes, counts, policies, sigma, *, drawn=None, online=False,
                           image_ids=None) -> Decisions:
    """Decide :class:`Adaptive` policies of one schedule from per-stage classes and counts.

    Parameters
    ----------
    classes, counts : ndarray of int64, shape (n, K)
        From :func:`adaptive_ranges` (or an index); -1 where the stream does not hold them.
    policies : Adaptive or sequence of Adaptive
        All with the schedule (``n0``, ``stages``) the counts were taken for.
    sigma : float
    drawn : int or ndarray, optional
        Draws each stream holds, for error messages only.
    online, image_ids :
        As in :func:`decide_cs`.

    Returns
    -------
    Decisions
        ``decision``, ``samples`` and ``prediction`` (the certified class, -1 otherwise).
    """
    policies, single = _as_policies(policies, Adaptive)
    classes = np.ascontiguousarray(classes, dtype=np.int64)
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    scheds = {_schedule(p) for p in policies}
    if len(scheds) != 1:
        raise ValueError(f"policies mix schedules {sorted(scheds)}; pass one schedule at a time")
    K = len(policies[0].stages)
    if classes.ndim != 2 or classes.shape != counts.shape or classes.shape[1] != K:
        raise ValueError(
            f"classes and counts must have shape (images, {K}), got {classes.shape} and "
            f"{counts.shape}"
        )
    n = classes.shape[0]
    th = _adaptive_thresholds(policies, sigma)
    ends = np.stack([t.ends for t in th])
    cert = np.stack([t.cert_min for t in th])
    stop = np.stack([t.stop_max for t in th])
    n_stages = np.full(len(th), K, dtype=np.int64)
    decision = np.empty((len(th), n), np.int8)
    samples = np.empty((len(th), n), np.int64)
    prediction = np.empty((len(th), n), np.int64)
    _kernels.adaptive_decide(classes, counts, ends, n_stages, cert, stop, decision, samples,
                             prediction)
    if drawn is not None:
        drawn = _drawn(drawn, n, np.iinfo(np.int64).max)
    return _finish(policies, single, decision, samples, prediction, drawn, online, image_ids)


def decide_adaptive(labels_block, policies, sigma, *, num_classes=None, drawn=None,
                    online=False, image_ids=None) -> Decisions:
    """Replay :class:`Adaptive` policies over raw label streams.

    Policies are grouped by schedule (``n0``, ``stages``); each schedule's selection modes
    and counts are computed once (:func:`adaptive_ranges`) and shared by its policies.

    Parameters
    ----------
    labels_block : ndarray of uint16, shape (n, N)
        One stream per row.
    policies : Adaptive or sequence of Adaptive
    sigma : float
    num_classes : int, optional
        Labels must be below it; default the largest label + 1.
    drawn : int or ndarray, optional
        Draws each row holds, default N.
    online, image_ids :
        As in :func:`decide_cs`.

    Returns
    -------
    Decisions
        ``decision``, ``samples`` and ``prediction`` (the certified class, -1 otherwise).
    """
    policies, single = _as_policies(policies, Adaptive)
    block, num_classes, d = _labels(labels_block, num_classes, drawn)
    n = block.shape[0]
    decision = np.empty((len(policies), n), np.int8)
    samples = np.empty((len(policies), n), np.int64)
    prediction = np.empty((len(policies), n), np.int64)
    groups: dict = {}
    for b, p in enumerate(policies):
        groups.setdefault(_schedule(p), []).append(b)
    for (n0, stages), members in groups.items():
        classes, counts = adaptive_ranges(block, n0, stages, num_classes=num_classes, drawn=d)
        res = decide_adaptive_counts(classes, counts, [policies[b] for b in members], sigma,
                                     drawn=d, online=True)
        decision[members], samples[members], prediction[members] = res
    return _finish(policies, single, decision, samples, prediction, d, online, image_ids)
