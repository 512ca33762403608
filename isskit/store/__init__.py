"""The HDF5 stream store (schema version 2): every label the base classifier predicted.

One module per job: :mod:`~isskit.store.schema` (layout and checks), :mod:`~isskit.store.writer`
(open for writing, write rows; a new store's creation in ``_create``, the checks of a
resume in ``_resume``), :mod:`~isskit.store.lock` (the writer lock),
:mod:`~isskit.store.reader` (read-only access, with the chunk inflater beside it in
``_inflate``), :mod:`~isskit.store.merge` (joining per-rank stores), ``_faults`` (failed writes).

Row ``i`` of ``/labels`` holds image ``image_index[i]``'s predicted labels for its ``N``
noisy copies, in draw order. The sampling stage writes rows through a
:class:`StreamWriter` (:func:`open_for_writing`), marking a row complete only once it is
fully written and flushed; everything offline reads through a :class:`StreamStore`
(:func:`open_store`). Per-rank stores of a multi-GPU run are joined by :func:`merge_stores`.

Layout (DESIGN.md, "Stream store")::

    /labels      (n_images, N) uint16, chunked along samples, compressed
    /drawn       (n_images,) int64  samples drawn per row (<= N); schema 1: read as N
    /image_index (n_images,) int64
    /true_label  (n_images,) int64
    /complete    (n_images,) bool
    /seconds     (n_images,) float64
    root attrs:  schema_version, isskit_version, created_at, sigma, num_classes,
                 samples_per_image, seed, dataset, model, device, torch_version,
                 batch_size, noise (and any further provenance)

A failed write (a full disk, a quota, an I/O error) is a :class:`StoreWriteError` (an
``OSError``) naming the file and the space to free. It never damages what was written
before: the chunk index of ``/labels`` is built in full when the store is created, so a
later write only changes metadata in place and a row's new chunk is referenced only once
it is on disk; after a failure nothing more is written to the file (see :func:`_abandon`).
Rows marked complete stay whole and readable, and reopening the store resumes it.

This package never imports torch and never prints; every problem with a file is a
:class:`StoreError` (a ``ValueError``) naming the path and what is wrong, except the
write failures above. A lock file left by a killed writer is taken over with a
:class:`StaleLockWarning`.
"""

from isskit.store._faults import StoreWriteError
from isskit.store.lock import StaleLockWarning
from isskit.store.merge import merge_stores
from isskit.store.reader import StreamStore, open_store
from isskit.store.schema import (
    RUN_PARAMS,
    SCHEMA_VERSION,
    StoreError,
    StoreLockedError,
    StoreMismatchError,
    is_stream_store,
)
from isskit.store.writer import StreamWriter, open_for_writing

__all__ = [
    "RUN_PARAMS",
    "SCHEMA_VERSION",
    "StaleLockWarning",
    "StoreError",
    "StoreLockedError",
    "StoreMismatchError",
    "StoreWriteError",
    "StreamStore",
    "StreamWriter",
    "is_stream_store",
    "merge_stores",
    "open_for_writing",
    "open_store",
]
