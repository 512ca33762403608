"""Replay certification policies over stored label streams, offline: no model, no GPU.

Three layers (DESIGN.md): :mod:`isskit.replay._kernels` (numba, arrays only) answers counting
queries; :mod:`isskit.replay.index` reads the store once into a
:class:`~isskit.replay.index.StreamIndex`; :mod:`isskit.replay.planner` plans, counts and
certifies each policy over it (:func:`evaluate`); this module labels the results as one
``xarray.Dataset`` (:func:`replay`,
layout in DESIGN.md "Results", coordinates and files in :mod:`isskit.replay.results`); the
CLI prints and plots.

Per image and policy (DESIGN.md, "Policies"): the class chosen is the most frequent label of
the selection range (ties to the smallest label), ``k_A`` its count over the count range of
``k`` samples, ``p_lower = Beta(alpha; k_A, k - k_A + 1)`` (0 when ``k_A = 0``), the
prediction is that class if ``p_lower >= 0.5`` (exactly) and -1 (abstain) otherwise, and
the radius ``sigma * Phi^-1(p_lower)`` (0 when abstaining). ISS with ``k_hat = 0`` abstains
after its pilot with ``p_lower`` NaN (no estimate is made). A policy that needs more samples
than a stream holds is a ``ValueError`` naming the image and the numbers: never truncated.

This module never prints (progress bars go to stderr, on request) and never imports torch.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import numpy as np

from isskit._provenance import make_attrs
from isskit._tunables import BATCH_CELLS
from isskit.policies import RadiusPolicy, parse_policies
from isskit.progress import progress_bar
from isskit.replay import _kernels
from isskit.replay._oracle import oracle_inputs, oracle_vars
from isskit.replay._reference import unfit_references
from isskit.replay.decisions import certified_at_r, evaluate_decisions
from isskit.replay.index import _check_static_needs, build_index
from isskit.replay.metrics import (
    acr,
    certified_accuracy,
    est_minutes,
    mad,
    mean_samples,
    speedup,
    total_samples,
)

# the planner's names, re-exported: isskit certify and the kernel tests use them from here
from isskit.replay.planner import (  # noqa: F401
    _COUNT_FIELDS,
    PolicyResult,
    _certify,
    _count_batch,
    _cp_lower,
    _Planner,
    evaluate,
)
from isskit.replay.results import _default_grid, _describe, _policy_coords
from isskit.validate import ArgumentError

#: Decision codes of the results' ``decision`` (isskit.decision's, which imports replay).
D_CERTIFIED = _kernels._CERTIFIED
D_UNDECIDED = _kernels._UNDECIDED

__all__ = [
    "PolicyResult",
    "evaluate",
    "replay",
]


def _stack_policies(policies, is_decision, row_of, res, deciders, index, sigma, true_label,
                    ids):
    """Per (policy, image) arrays in policy order.

    Radius rows from ``res``, decision rows from
    :func:`isskit.replay.decisions.evaluate_decisions`; what does not apply to a kind is NaN
    (``radius``, ``p_lower``) or -1 (``k_hat``, ``decision``).
    """
    P, n = len(policies), index.rows.size
    out = {
        "prediction": np.full((P, n), -1, np.int64),
        "radius": np.full((P, n), np.nan),
        "p_lower": np.full((P, n), np.nan),
        "samples": np.empty((P, n), np.int64),
        "k_hat": np.full((P, n), -1, np.int64),
        "decision": np.full((P, n), D_UNDECIDED, np.int8),
    }
    radius_at = np.flatnonzero(~is_decision)
    src = np.array([row_of[policies[i]] for i in radius_at], dtype=np.int64)
    for f in ("prediction", "radius", "p_lower", "samples", "k_hat"):
        out[f][radius_at] = res[f][src]
    if deciders:
        at = np.flatnonzero(is_decision)
        out["decision"][at], out["samples"][at], out["prediction"][at] = evaluate_decisions(
            index, deciders, sigma, true_label, image_ids=ids)
    return out


#: Policy-images per kernel call in :func:`replay` (bounds the temporary arrays to ~250 MB).
_BATCH_CELLS = BATCH_CELLS


def replay(
    store,
    policies,
    *,
    reference=None,
    seconds_per_sample=None,
    radius_grid=None,
    allow_incomplete=False,
    progress=False,
    index=None,
    oracle=False,
):
    """Replay certification policies over a stream store.

    Parameters
    ----------
    store : str, Path or StreamStore
        The store (a path is opened with :func:`isskit.store.open_store`).
    policies : str, policy, or sequence of them
        Policies or specs (:func:`isskit.policies.parse_policy_spec`); specs expand to grids.
    reference : str or policy, optional
        One policy every policy's MAD and speed-up are measured against. Default: per policy
        :func:`isskit.replay.metrics.default_reference` (``IAS(k_bar, alpha)``).
    seconds_per_sample : float, optional
        Seconds per sample for the estimated runtime; default the store's measured rate.
    radius_grid : array_like of float, optional
        Radii of the certified accuracy; default 0, 0.25, ... up to the largest radius.
    allow_incomplete : bool
        Replay the complete rows of a store with incomplete rows (the number left out is in
        the attrs ``n_images_left_out``) instead of refusing it.
    progress : bool
        Show progress bars on stderr.
    index : StreamIndex, optional
        A prebuilt index of this store for (at least) these policies and references.
    oracle : bool
        Also compare each radius policy, at its own mean samples, with IAS and both
        oracles (:func:`isskit.studies.oracle.compare_replayed`): variables
        ``ias_acr_same_samples``, ``oracle_blind_acr``, ``oracle_aware_acr``,
        ``share_blind``, ``share_aware`` (NaN for decision policies) and the attr
        ``p_source`` (``"stored"``: the store's ``/extra/p_A``; ``"empirical"``: the
        whole stream's top-class frequency stands in for p_A).

    Returns
    -------
    xarray.Dataset
        Dims ``policy``, ``image``, ``radius_grid``; see DESIGN.md "Results" and docs/replay.md.

    Raises
    ------
    ValueError
        On a bad policy or argument, incomplete rows without ``allow_incomplete``, or a
        policy needing more samples than a stream holds.
    """
    import xarray as xr

    if isinstance(store, str | Path):
        from isskit.store import open_store

        with contextlib.ExitStack() as stack:
            opened = open_store(store)
            if hasattr(opened, "close"):
                stack.callback(opened.close)
            return replay(
                opened,
                policies,
                reference=reference,
                seconds_per_sample=seconds_per_sample,
                radius_grid=radius_grid,
                allow_incomplete=allow_incomplete,
                progress=progress,
                index=index,
                oracle=oracle,
            )

    policies = parse_policies(policies)
    if not policies:
        raise ValueError("policies ([]) must name at least one policy")
    if reference is None:
        references = [p.default_reference(policies) for p in policies]
    else:
        ref = parse_policies(reference)
        if len(ref) != 1:
            raise ArgumentError("reference", "{name} ({value!r}) must name exactly one policy",
                                value=reference)
        if not isinstance(ref[0], RadiusPolicy):
            raise ArgumentError("reference", "{name} ({value!r}) must be a radius policy "
                                "(speed-ups are measured against a certificate)",
                                value=ref[0].name)
        references = [ref[0]] * len(policies)
    is_decision = np.array([p.question == "decision" for p in policies], dtype=bool)
    deciders = [p for p, d in zip(policies, is_decision, strict=True) if d]
    # the radius policies and every reference (decision policies' references are radius)
    every = list(dict.fromkeys([*(p for p in policies if p.question == "radius"),
                                *references]))
    sigma = float(store.sigma)
    n = int(store.samples_per_image)
    complete = np.asarray(store.complete, dtype=bool)
    rows = np.flatnonzero(complete)
    left_out = int(complete.size - rows.size)
    image_index = np.asarray(store.image_index, dtype=np.int64)
    if left_out and not allow_incomplete:
        first = int(np.flatnonzero(~complete)[0])
        raise ArgumentError(
            "allow_incomplete", "{left_out} of {rows_all} rows of the store are incomplete "
            "(first: row {first}, image {image}); finish sampling, or set {name} to replay "
            "the {done} complete rows", left_out=left_out, rows_all=complete.size, first=first,
            image=int(image_index[first]), done=rows.size,
        )
    if rows.size == 0:
        raise ValueError(f"the store has no complete row (of {complete.size}) to replay")
    if seconds_per_sample is None:
        # NaN where the store does not know its sampling time (a synthetic store): the
        # estimated runtime is then NaN too, not an error.
        seconds_per_sample = float(store.seconds_per_sample())
        sps_source = "store" if math.isfinite(seconds_per_sample) else "unknown"
    else:
        sps_source = "given"
        if isinstance(seconds_per_sample, bool) or not isinstance(
            seconds_per_sample, int | float | np.integer | np.floating
        ):
            raise ValueError(f"seconds_per_sample ({seconds_per_sample!r}) must be a number")
        seconds_per_sample = float(seconds_per_sample)
        if not (math.isfinite(seconds_per_sample) and seconds_per_sample >= 0):
            raise ValueError(
                f"seconds_per_sample ({seconds_per_sample}) must be a finite number >= 0"
            )
    ids = image_index[rows]
    _check_static_needs(policies, n, ids[:1])
    for p, r in zip(policies, references, strict=True):
        try:
            _check_static_needs([r], n, ids[:1])
        except ValueError as exc:
            raise ArgumentError(
                "reference", "{error} (it is the reference of {policy}; choose one that fits "
                "with {name})", error=str(exc), policy=p.name,
            ) from None
    drawn = np.asarray(store.drawn, np.int64)[rows] if hasattr(store, "drawn") else None
    unfit = set() if reference is not None else unfit_references(policies, references, drawn,
                                                                 ids)
    every = [p for p in every if p not in unfit]
    if index is None:
        index = build_index(store, [*every, *deciders], rows=rows, progress=progress)
    elif not np.array_equal(index.rows, rows):
        raise ValueError("index was built over other rows than the store's complete rows")

    n_img = rows.size
    shape = (len(every), n_img)
    res = {f: np.empty(shape, np.int64) for f in _COUNT_FIELDS}
    planner = _Planner(index, sigma, ids, drawn=drawn)
    per = max(1, _BATCH_CELLS // max(1, n_img))
    starts = range(0, len(every), per)
    if progress:
        starts = progress_bar(starts, desc="replaying policies", unit="batch", leave=False)
    for b0 in starts:
        _count_batch(index, planner, every[b0 : b0 + per],
                     out={f: res[f][b0 : b0 + per] for f in _COUNT_FIELDS})
    prediction, radius, p_lower = _certify(res.pop("chosen"), res.pop("k_A"), res.pop("k"),
                                           [p.alpha for p in every], sigma)
    res.update(prediction=prediction, radius=radius, p_lower=p_lower)
    row_of = {p: i for i, p in enumerate(every)}
    # a reference left unevaluated (it does not fit partly drawn rows) reads as row 0 here
    # and its metrics are NaN below
    fits = np.array([r in row_of for r in references], dtype=bool)
    ref_rows = np.array([row_of.get(r, 0) for r in references], dtype=np.int64)
    if not every:
        res = {f: np.zeros((1, n_img), res[f].dtype) for f in res}
    ref_radius = res["radius"][ref_rows]
    ref_samples = res["samples"][ref_rows]
    nan_unfit = np.where(fits, 1.0, np.nan)
    true_label = np.asarray(store.true_label, dtype=np.int64)[rows]
    stacked = _stack_policies(policies, is_decision, row_of, res, deciders, index, sigma,
                              true_label, ids)
    radius_rows = ~is_decision
    if radius_grid is None:
        grid = _default_grid(stacked["radius"][radius_rows])
    else:
        grid = np.asarray(radius_grid, dtype=np.float64).reshape(-1)
        if grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid < 0):
            raise ArgumentError("radius_grid", "{name} ({value}) must hold finite radii >= 0",
                                value=grid.tolist())
        if not radius_rows.any():
            raise ArgumentError(
                "radius_grid", "{name} ({value}) applies to radius policies, but every policy "
                "given is a decision policy ({names}): each answers at its own r",
                value=grid.tolist(), names=", ".join(p.name for p in deciders))

    r = np.array([getattr(p, "r", np.nan) if d else np.nan
                  for p, d in zip(policies, is_decision, strict=True)], dtype=np.float64)
    dec = stacked["decision"]
    correct = (stacked["prediction"] == true_label) & (stacked["prediction"] >= 0)
    ca_at_r = np.where(is_decision, np.mean((dec == D_CERTIFIED) & correct, axis=-1), np.nan)
    undecided = np.where(is_decision, np.mean(dec == D_UNDECIDED, axis=-1), np.nan)
    ref_ca_at_r = np.where(
        is_decision,
        certified_at_r(res["prediction"][ref_rows], ref_radius, true_label,
                       np.nan_to_num(r, nan=np.inf)),
        np.nan)
    nan_dec = np.where(is_decision, np.nan, 1.0)  # radius metrics do not apply to deciders

    pol = ("policy",)
    pim = ("policy", "image")
    coords = {"policy": [p.name for p in policies], "image": rows, "radius_grid": grid}
    fitted = [planner.fitted.get(p, p) for p in policies]
    for key, values in _policy_coords(policies, references, fitted).items():
        coords[key] = (pol, values)
    data = {
        "prediction": (pim, stacked["prediction"]),
        "radius": (pim, stacked["radius"]),
        "p_lower": (pim, stacked["p_lower"]),
        "samples": (pim, stacked["samples"]),
        "k_hat": (pim, stacked["k_hat"]),
        "decision": (pim, dec),
        "true_label": (("image",), true_label),
        "image_index": (("image",), ids),
        "p_A_empirical": (("image",), index.p_A_empirical),
        "top_class": (("image",), index.top_class),
        "acr": (pol, nan_dec * acr(stacked["prediction"], np.nan_to_num(stacked["radius"]),
                                   true_label)),
        "mad": (pol, nan_unfit * nan_dec * mad(np.nan_to_num(stacked["radius"]),
                                               ref_radius)),
        "mean_samples": (pol, mean_samples(stacked["samples"])),
        "total_samples": (pol, total_samples(stacked["samples"])),
        "est_minutes": (pol, est_minutes(stacked["samples"], seconds_per_sample)),
        "speedup": (pol, nan_unfit * speedup(stacked["samples"], ref_samples)),
        "certified_accuracy": (
            ("policy", "radius_grid"),
            nan_dec[:, None] * certified_accuracy(stacked["prediction"],
                                                  np.nan_to_num(stacked["radius"]),
                                                  true_label, grid),
        ),
        "certified_accuracy_at_r": (pol, ca_at_r),
        "undecided": (pol, undecided),
        "reference_certified_accuracy_at_r": (pol, nan_unfit * ref_ca_at_r),
    }
    p_source = None
    if oracle:
        p_A, correct_top, p_source = oracle_inputs(store, index, rows, true_label)
        data.update(oracle_vars(data["mean_samples"][1], data["acr"][1],
                                [p.alpha for p in policies], p_A, correct_top, sigma))
    path = getattr(store, "path", None)
    sha = store.sha256() if hasattr(store, "sha256") else None
    attrs = make_attrs(
        store_path=None if path is None else str(path),
        store_sha256=sha,
        sigma=sigma,
        num_classes=int(store.num_classes),
        samples_per_image=n,
        seconds_per_sample=seconds_per_sample,
        seconds_per_sample_source=sps_source,
        n_images=int(rows.size),
        n_images_left_out=left_out,
        **({} if p_source is None else {"p_source": p_source}),
    )
    ds = xr.Dataset(data, coords=coords, attrs=attrs)
    _describe(ds)
    return ds
