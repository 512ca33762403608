"""Resuming a stream store: what an existing store must share with the run that reopens it.

Private to :mod:`isskit.store`. Never prints, never imports torch.
"""

from __future__ import annotations

import numpy as np

from isskit.store.schema import RUN_PARAMS, StoreMismatchError, _read_columns, _same, _short


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
