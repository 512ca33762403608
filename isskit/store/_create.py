"""Creating an empty stream store, atomically, and checking the labels written into one.

Private to :mod:`isskit.store`: the writer (:mod:`isskit.store.writer`) creates stores
through :func:`_create`; the writer and the merger check label blocks with
:func:`_check_labels`. Never prints, never imports torch.
"""

from __future__ import annotations

import contextlib
import os
import zlib
from pathlib import Path

import h5py
import numpy as np

from isskit.store._faults import _abandon
from isskit.store.schema import _COMPRESSION, _COMPRESSION_LEVEL, StoreError, _chunk_shape


def _create(
    path: Path, image_index, true_label, samples_per_image: int, attrs: dict, columns: dict,
    fill=None,
) -> None:
    """Write a new empty store, atomically: a temporary file renamed into place.

    ``fill``, if given, is called with the open temporary file before it is flushed and
    renamed (to copy the rows of a store being widened into it, :func:`_resume._widen`):
    whatever it writes appears under ``path`` with the rest, or not at all.

    Every chunk of ``/labels`` is written here, as a deflated chunk of zeros (27 bytes
    for 2,000 samples, 277 for 2^17: about 1 % of a written row, left as dead space once
    the row is written). The chunk index (an HDF5 B-tree) then holds every chunk from the
    start, and writing a row later only changes its index entry in place: no B-tree node
    is added, split or moved, which on a full disk could reach the disk in part and cut
    complete rows off the index.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    n = image_index.size
    f = None
    try:
        f = h5py.File(tmp, "w", locking=False)
        labels = f.create_dataset(
            "labels",
            shape=(n, samples_per_image),
            dtype=np.uint16,
            chunks=_chunk_shape(samples_per_image) if n else None,
            compression=_COMPRESSION if n else None,
            compression_opts=_COMPRESSION_LEVEL if n else None,
            fillvalue=0,
        )
        if n:
            C = labels.chunks[1]
            # Level 9, unlike the rows' level 1: written once per chunk, it only has to be
            # small. A zero chunk reads as the fill value HDF5 gives a chunk never written.
            zeros = zlib.compress(bytes(2 * C), 9)
            for r in range(n):
                for c0 in range(0, samples_per_image, C):
                    labels.id.write_direct_chunk((r, c0), zeros)
        # The small per-image datasets are contiguous and written in full now, so later
        # updates rewrite bytes in place and never change the file's structure.
        f.create_dataset("image_index", data=image_index)
        f.create_dataset("true_label", data=true_label)
        f.create_dataset("complete", data=np.zeros(n, dtype=bool))
        f.create_dataset("seconds", data=np.zeros(n, dtype=np.float64))
        f.create_dataset("drawn", data=np.zeros(n, dtype=np.int64))
        if columns:
            extra = f.create_group("extra")
            for name, values in columns.items():
                extra.create_dataset(name, data=values)
        for key, value in attrs.items():
            f.attrs[key] = value
        if fill is not None:
            fill(f)
        # Flushed before the close, so that a full disk fails here, where the file can
        # still be abandoned cleanly, and not inside close().
        f.flush()
        f.close()
        os.replace(tmp, path)
    except BaseException:
        if f is not None and f.id.valid:
            _abandon(f)
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _check_labels(labels, samples_per_image: int, num_classes: int, what: str,
                  first_row: int | None = None) -> np.ndarray:
    """Labels as uint16 if every one is a class; else a StoreError naming ``what``.

    With ``first_row`` (the row number of the block's first row), the message also names
    the first row holding a bad label.
    """
    arr = np.asarray(labels)
    if arr.shape[-1:] != (samples_per_image,):
        raise StoreError(
            f"{what}: labels have shape {arr.shape}, expected {samples_per_image} per row"
        )
    if not np.issubdtype(arr.dtype, np.integer):
        raise StoreError(f"{what}: labels must be integers, got dtype {arr.dtype}")
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= num_classes:
            bad = lo if lo < 0 else hi
            if first_row is not None and arr.ndim == 2:
                row = first_row + int(np.argmax(np.any((arr < 0) | (arr >= num_classes), 1)))
                what = f"{what}, row {row}"
            raise StoreError(f"{what}: label {bad} outside [0, num_classes={num_classes})")
    return arr.astype(np.uint16, copy=False)
