"""Resuming a stream store: what an existing store must share with the run that reopens it.

:func:`_check_same_run` refuses a store made with other run parameters. :func:`_widen`
lets a schema-2 store grow along samples (``isskit sample --N`` past the store's ``N``):
the store is rewritten with the wider ``/labels`` under a temporary name and renamed over
the old one, so a kill at any moment leaves the old store or the wide one, both whole.
Every row keeps its labels, ``/drawn``, ``/seconds`` and ``complete`` mark; complete
rows then hold fewer than the new ``N`` samples, and the sampler extends them from
``drawn`` (a row is complete when its first ``drawn`` samples are written and flushed,
whatever ``N`` is).

Private to :mod:`isskit.store`. Never prints, never imports torch.
"""

from __future__ import annotations

import numpy as np

from isskit.store._create import _create
from isskit.store._faults import _space_needed, _write_error
from isskit.store.schema import (
    RUN_PARAMS,
    StoreMismatchError,
    _open_h5,
    _py,
    _read_columns,
    _read_drawn,
    _same,
    _short,
    _validate,
)


def _check_same_run(path, f, stored: dict, given: dict, image_index, true_label, columns) -> None:
    diffs = []
    for key in RUN_PARAMS:
        a, b = stored.get(key), given.get(key)
        if not _same(a, b):
            diffs.append(f"{key}: stored {a!r}, given {b!r}")
    old_index = f["image_index"][...]
    if not np.array_equal(old_index, image_index):
        diffs.append(f"image_index: stored {_short(old_index)}, given {_short(image_index)}")
    else:
        old_true = f["true_label"][...]
        if not np.array_equal(old_true, true_label):
            diffs.append(f"true_label: stored {_short(old_true)}, given {_short(true_label)}")
    old_columns = _read_columns(f, path)
    for name in sorted(set(old_columns) | set(columns)):
        a, b = old_columns.get(name), columns.get(name)
        if a is None or b is None or not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
            fmt = lambda v: "none" if v is None else _short(v)  # noqa: E731
            diffs.append(f"column {name}: stored {fmt(a)}, given {fmt(b)}")
    if diffs:
        raise StoreMismatchError(
            f"{path} was made with different run parameters; refusing to resume or"
            " overwrite it (use another --out, or delete it):\n  " + "\n  ".join(diffs)
        )


def _widen(path, samples_per_image: int, given: dict, image_index, true_label,
           columns) -> bool:
    """Grow an existing store to ``samples_per_image`` samples per row; True if it did.

    The caller holds the writer lock. A store at least as wide is left alone (the run's
    checks then judge it); a narrower one must be schema 2 (schema 1 holds full rows
    only) and match the run in everything but ``samples_per_image``, else
    :class:`StoreMismatchError`, with nothing changed.
    """
    f = _open_h5(path, "r")
    try:
        stored = _validate(f, path)
        old = int(stored["samples_per_image"])
        if old >= samples_per_image:
            return False
        if "drawn" not in f:
            raise StoreMismatchError(
                f"{path} is a schema-1 store, which holds full rows of N = {old} only: it "
                f"cannot be extended to N = {samples_per_image}; sample into a new store "
                "(another --out), or keep N = " + str(old))
        _check_same_run(path, f, stored, {**given, "samples_per_image": old}, image_index,
                        true_label, columns)
        complete = f["complete"][...]
        drawn = np.where(complete, _read_drawn(f, path), 0)
        seconds = f["seconds"][...]
        attrs = {k: _py(v) for k, v in f.attrs.items()}
        attrs["samples_per_image"] = samples_per_image
        old_labels = f["labels"]

        def fill(new):
            labels = new["labels"]
            for r in np.flatnonzero(drawn):
                labels[r, :drawn[r]] = old_labels[r, :drawn[r]]
            new["complete"][...] = complete
            new["drawn"][...] = drawn
            new["seconds"][...] = seconds

        try:
            _create(path, image_index, true_label, samples_per_image, attrs,
                    _read_columns(f, path), fill=fill)
        except (OSError, RuntimeError) as exc:  # h5py raises both for a failed write
            need, basis = _space_needed(image_index.size * samples_per_image, None)
            raise _write_error(exc, f"the store {path} widened to N = {samples_per_image}",
                               path, need=need, basis=basis) from None
    finally:
        f.close()
    return True
