"""Decision policies over a stream index: adaptive, staged and cs in one replay.

:func:`evaluate_decisions` answers every decision policy of a replay from the
:class:`~isskit.replay.index.StreamIndex` the radius policies use too: ``staged`` and
``cs`` from the bit vector of each image's true label (:attr:`StreamIndex.true_slot`),
``adaptive`` from the modes of its selection ranges (:attr:`StreamIndex.range_modes`,
taken during the index pass) and their counts over its estimation ranges
(:func:`isskit.replay._kernels.count_ranges`). The rules are those of
:mod:`isskit.decision`, called here, never repeated.

Per policy: ``r`` (a coordinate), ``certified_accuracy_at_r`` (certified and correct, over
the images), ``undecided`` (the share of -1) and the same for the reference, Cohen's
CERTIFY by default, counted certified at ``r`` when its radius is ``>= r`` and its prediction
correct (the rule of the decision policies, not the strict ``>`` of CA on a grid).

This module never prints and never imports torch.
"""

from __future__ import annotations

import numpy as np

from isskit import decision as D
from isskit.policies import CS, Adaptive, Staged
from isskit.replay import _kernels

__all__ = ["certified_at_r", "evaluate_decisions"]


def evaluate_decisions(index, policies, sigma, true_label, *, image_ids=None):
    """Every decision policy over every stream of an index.

    Parameters
    ----------
    index : StreamIndex
        Built for these policies (:func:`isskit.replay.index.build_index`: the true labels
        for ``staged`` and ``cs``, the selection ranges of each ``adaptive`` schedule).
    policies : sequence of DecisionPolicy
    sigma : float
        Noise level of the streams.
    true_label : ndarray of int64, shape (n,)
        True label of each indexed image (the class ``staged`` and ``cs`` certify).
    image_ids : ndarray of int, optional
        Dataset index of each image, for error messages.

    Returns
    -------
    decision : ndarray of int8, shape (P, n)
        1 certified, 0 not, -1 undecided.
    samples : ndarray of int64, shape (P, n)
    prediction : ndarray of int64, shape (P, n)
        The class certified, -1 where not certified.

    Raises
    ------
    ValueError
        A stream too short for a decision (naming the image), or an index built without
        what a policy needs.
    """
    n = index.rows.size
    P = len(policies)
    decision = np.empty((P, n), np.int8)
    samples = np.empty((P, n), np.int64)
    prediction = np.empty((P, n), np.int64)
    true_label = np.asarray(true_label, dtype=np.int64)
    drawn = np.full(n, index.samples_per_image, np.int64)
    ids = index.rows if image_ids is None else np.asarray(image_ids)
    groups: dict = {}
    for b, p in enumerate(policies):
        key = ("adaptive", p.selection_ranges) if isinstance(p, Adaptive) else type(p)
        groups.setdefault(key, []).append(b)
    for key, members in groups.items():
        group = [policies[b] for b in members]
        if key in (CS, Staged):
            if index.true_slot is None:
                raise ValueError("index was built without true labels; rebuild it with "
                                 f"{group[0].name}")
            decide = D.decide_cs if key is CS else D.decide_staged
            res = decide(index.bits, index.cum, group, sigma, drawn=drawn,
                         slot=index.true_slot, image_ids=ids)
            pred = np.where(res.decision == D.CERTIFIED, true_label, -1)
        elif isinstance(key, tuple):
            classes, counts = _adaptive_counts(index, group[0])
            res = D.decide_adaptive_counts(classes, counts, group, sigma, drawn=drawn,
                                           image_ids=ids)
            pred = res.prediction
        else:
            raise ValueError(f"policy {group[0].name} is not a decision policy replay knows")
        decision[members], samples[members], prediction[members] = (
            res.decision, res.samples, pred)
    return decision, samples, prediction


def _adaptive_counts(index, policy):
    """Per image and stage: adaptive's class and its count over the stage's estimation."""
    key = policy.selection_ranges
    if key not in index.range_modes:
        raise ValueError(f"index was built without the selection ranges of {policy.name}; "
                         "rebuild it with the policy")
    classes = np.ascontiguousarray(index.range_modes[key])
    slots = np.ascontiguousarray(index.range_slots[key].T)
    est = np.array(policy.estimation_ranges, dtype=np.int64)
    n = classes.shape[0]
    start = np.ascontiguousarray(np.broadcast_to(est[:, :1], slots.shape))
    stop = np.ascontiguousarray(np.broadcast_to(est[:, 1:], slots.shape))
    counts = np.empty(slots.shape, np.int64)
    _kernels.count_ranges(slots, start, np.minimum(stop, index.samples_per_image), index.bits,
                          index.cum, counts)
    held = (stop <= index.samples_per_image) & (slots >= 0)
    counts = np.where(held, counts, -1).T
    classes = np.where(held.T, classes, -1)
    return np.ascontiguousarray(classes.reshape(n, -1)), np.ascontiguousarray(counts)


def certified_at_r(prediction, radius, true_label, r):
    """Certified accuracy of a radius policy at ``r``: correct with radius ``>= r``.

    Parameters
    ----------
    prediction, radius : ndarray, shape (P, n)
    true_label : ndarray, shape (n,)
    r : ndarray of float, shape (P,)

    Returns
    -------
    ndarray of float64, shape (P,)
    """
    ok = (prediction == true_label) & (prediction >= 0) & (radius >= np.asarray(r)[:, None])
    return np.mean(ok, axis=-1)
