"""``replay(..., oracle=True)``: each radius policy against IAS and both oracles.

The oracles (:mod:`isskit.studies.oracle`) need each image's true top-class probability
p_A and whether that class is the true label. Where they come from, in this order:

* ``"stored"``: the store's per-image column ``/extra/p_A`` (synthetic stores, and stores
  made by ``isskit import-log``, write it), the class it belongs to ``/extra/predicted``
  where stored (else the stream's most frequent label);
* ``"empirical"``: a sampled store knows no p_A; the frequency of the most frequent label
  over the whole stream (``N`` samples) stands in for it, and its class for the prediction.
  A store with partly drawn rows (written by ``isskit certify``) has no whole stream to
  take it from: refused, saying what is missing.

This module never prints and never imports torch.
"""

from __future__ import annotations

import numpy as np

from isskit.validate import ArgumentError

__all__: list[str] = []

#: Results variables added per policy (:data:`isskit.studies.oracle.COMPARISON_KEYS`).
DESCRIPTIONS = {
    "ias_acr_same_samples": "oracle comparison: IAS's expected ACR at the policy's mean samples",
    "oracle_blind_acr": "oracle comparison: the label-blind oracle's expected ACR there",
    "oracle_aware_acr": "oracle comparison: the label-aware oracle's expected ACR there",
    "share_blind": "oracle comparison: (ACR - IAS) / (blind oracle - IAS); NaN for "
                   "decision policies",
    "share_aware": "oracle comparison: (ACR - IAS) / (aware oracle - IAS); NaN for "
                   "decision policies",
}


def oracle_inputs(store, index, rows, true_label):
    """``(p_A, correct, source)`` for the replayed rows (see the module docstring)."""
    columns = getattr(store, "columns", {}) or {}
    if "p_A" in columns:
        p_A = np.asarray(columns["p_A"], dtype=np.float64)[rows]
        if "predicted" in columns:
            predicted = np.asarray(columns["predicted"], dtype=np.int64)[rows]
        else:
            predicted = np.asarray(index.top_class, dtype=np.int64)
        return p_A, predicted == true_label, "stored"
    n = int(store.samples_per_image)
    drawn = np.asarray(getattr(store, "drawn", np.full(len(store.complete), n)))[rows]
    if np.any(drawn < n):
        short = int(np.count_nonzero(drawn < n))
        raise ArgumentError(
            "oracle", "{name} needs each image's p_A: the store holds no /extra/p_A column "
            "(synthetic and imported stores do) and {short} of its {total} rows are drawn "
            "only in part (first: image {image}, {drawn} of {n} samples), so the whole "
            "stream's frequency cannot stand in for it",
            short=short, total=rows.size, image=int(np.asarray(store.image_index)[rows][
                np.flatnonzero(drawn < n)[0]]), drawn=int(drawn[drawn < n][0]), n=n)
    top = np.asarray(index.top_class, dtype=np.int64)
    return np.asarray(index.p_A_empirical, dtype=np.float64), top == true_label, "empirical"


def oracle_vars(mean_samples, acr, alpha, p_A, correct, sigma) -> dict:
    """The comparison per policy, as results variables along ``policy``."""
    from isskit.studies.oracle import compare_replayed

    got = compare_replayed(mean_samples, acr, alpha, p_A, correct, sigma=sigma)
    return {key: (("policy",), values) for key, values in got.items()}
