"""Writing a stream store: open it to create or resume it, write rows, mark them complete.

A row is marked complete only once it is written and flushed, so a killed or failed run
keeps every complete row and a rerun redoes the others. Creating a new empty store is
``_create``; what an existing store must share with the run that resumes it is
``_resume``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from isskit._provenance import make_attrs
from isskit.store._create import _check_labels, _create
from isskit.store._faults import StoreWriteError, _abandon, _space_needed, _write_error
from isskit.store._resume import _check_same_run, _widen
from isskit.store.lock import _WriterLock
from isskit.store.schema import (
    _MAX_CLASSES,
    SCHEMA_VERSION,
    StoreError,
    _check_attr_value,
    _check_columns,
    _int_array,
    _open_h5,
    _py,
    _read_drawn,
    _short,
    _validate,
)
from isskit.validate import check_positive_int, check_sigma

__all__ = [
    "StreamWriter",
    "open_for_writing",
]

# --------------------------------------------------------------------------------------
# writing


def open_for_writing(
    path,
    *,
    image_index: Sequence[int],
    true_label: Sequence[int],
    samples_per_image: int,
    attrs: dict,
    columns: dict | None = None,
    fsync: bool = False,
    extend: bool = False,
) -> StreamWriter:
    """Create a stream store, or reopen an existing one to resume it.

    Parameters
    ----------
    path : str or Path
        The store file. Its sidecar ``<path>.lock`` holds the writer lock.
    image_index : sequence of int
        Dataset index of each row, all distinct.
    true_label : sequence of int
        Ground-truth class of each row, in ``[0, num_classes)``.
    samples_per_image : int
        ``N``, the number of noisy copies (labels) per image.
    attrs : dict
        Root attrs: must hold ``sigma`` and ``num_classes``; should hold ``seed``,
        ``dataset``, ``model``, ``device``, ``torch_version``, ``batch_size``, ``noise``.
        Provenance (isskit version, creation time) is added by
        :func:`isskit._provenance.make_attrs`; ``None`` values are dropped.
    columns : dict of str to array, optional
        Further per-image numbers (one int or float per row), stored as ``/extra/<name>``:
        for example the true ``p_A`` of a synthetic store. Part of the run's identity:
        resuming with different columns is refused.
    fsync : bool, default False
        Also ``fsync`` after each row, so that complete rows survive a power loss (a killed
        process needs no fsync: its flushed writes are already with the kernel).
    extend : bool, default False
        Let an existing schema-2 store with fewer than ``samples_per_image`` samples per
        row grow to it (:func:`isskit.store._resume._widen`: rewritten wider under a
        temporary name, then renamed over itself; every row kept, complete rows then to be
        extended from their ``drawn``). A schema-1 store is refused.

    Returns
    -------
    StreamWriter

    Raises
    ------
    StoreMismatchError
        The store exists and any of :data:`RUN_PARAMS`, the image_index list or the true
        labels differ; the message names each with both values.
    StoreLockedError
        Another live process is writing the store.
    StoreError
        Bad arguments, or an existing file that is not a valid store.
    StoreWriteError
        The lock file or the new store could not be written (a full disk names the space
        to free); nothing is left behind.

    Warns
    -----
    StaleLockWarning
        The lock file of a writer that died was taken over.
    """
    path = Path(path)
    samples_per_image = check_positive_int(samples_per_image, "samples_per_image")
    if not isinstance(attrs, dict):
        raise StoreError(f"attrs ({attrs!r}) must be a dict")
    for key in ("sigma", "num_classes"):
        if attrs.get(key) is None:
            raise StoreError(f"attrs must hold {key!r}")
    sigma = check_sigma(attrs["sigma"])
    num_classes = check_positive_int(attrs["num_classes"], "num_classes")
    if num_classes > _MAX_CLASSES:
        raise StoreError(f"num_classes ({num_classes}) must be <= {_MAX_CLASSES} (uint16 labels)")
    image_index = _int_array(image_index, "image_index")
    true_label = _int_array(true_label, "true_label")
    if true_label.shape != image_index.shape:
        raise StoreError(
            f"true_label has {true_label.size} values but image_index has {image_index.size}"
        )
    uniq, counts = np.unique(image_index, return_counts=True)
    if np.any(counts > 1):
        raise StoreError(f"image_index repeats {_short(uniq[counts > 1])}")
    if true_label.size and (true_label.min() < 0 or true_label.max() >= num_classes):
        raise StoreError(
            f"true_label holds values outside [0, num_classes={num_classes}):"
            f" {_short(true_label[(true_label < 0) | (true_label >= num_classes)])}"
        )
    columns = _check_columns(columns, image_index.size)
    reserved = {"schema_version", "samples_per_image"} & set(attrs)
    if reserved:
        raise StoreError(f"attrs must not set {sorted(reserved)}: open_for_writing sets them")
    extra = {k: _check_attr_value(k, v) for k, v in attrs.items() if v is not None}
    extra.update(sigma=sigma, num_classes=num_classes)
    full = make_attrs(schema_version=SCHEMA_VERSION, samples_per_image=samples_per_image, **extra)

    if not path.parent.is_dir():
        raise StoreError(f"cannot write {path}: directory {path.parent} does not exist")
    lock = _WriterLock(path)
    try:
        # Leftovers of a creation that was killed before its rename; the lock says no
        # other process is creating this store now.
        for stale in path.parent.glob(f".{path.name}.tmp-*"):
            with contextlib.suppress(OSError):
                stale.unlink()
        if extend and path.exists():
            _widen(path, samples_per_image, full, image_index, true_label, columns)
        if not path.exists():
            try:
                _create(path, image_index, true_label, samples_per_image, full, columns)
            except (OSError, RuntimeError) as exc:  # h5py raises both for a failed write
                need, basis = _space_needed(image_index.size * samples_per_image, None)
                raise _write_error(exc, f"the new stream store {path}", path, need=need,
                                   basis=basis) from None
        # No chunk cache: a chunk goes to disk (or fails) inside the write that made it, so
        # after a failure none is left in memory for HDF5 to retry, and fail on, at close.
        f = _open_h5(path, "r+", rdcc_nbytes=0)
        try:
            stored = _validate(f, path)
            _check_same_run(path, f, stored, full, image_index, true_label, columns)
        except BaseException:
            f.close()
            raise
    except BaseException:
        lock.release()
        raise
    return StreamWriter(path, f, lock, fsync=fsync)


class StreamWriter:
    """Writes rows of a stream store; made by :func:`open_for_writing`.

    Every write marks its rows complete only after the labels are written and flushed,
    so a writer killed at any moment leaves no row marked complete that is not whole.
    A write that fails (:class:`StoreWriteError`) closes the writer at once, without
    writing anything more into the file, and releases the lock: the store keeps every
    row marked complete before, and reopening it resumes the others.
    """

    def __init__(self, path: Path, f: h5py.File, lock: _WriterLock, *, fsync: bool = False):
        self.path = path
        self._f = f
        self._lock = lock
        self._fsync = fsync
        self._failure: str | None = None
        self._labels = f["labels"]
        self._complete_ds = f["complete"]
        self._seconds = f["seconds"]
        self._complete = self._complete_ds[...]
        # A schema-1 store has no /drawn: it stays schema 1, and takes full rows only.
        self._drawn_ds = f["drawn"] if "drawn" in f else None
        self._drawn = _read_drawn(f, path)
        self.image_index = f["image_index"][...]
        self.true_label = f["true_label"][...]
        self.attrs = {k: _py(v) for k, v in f.attrs.items()}
        self.n_images, self.samples_per_image = self._labels.shape
        self.num_classes = int(self.attrs["num_classes"])

    # -- state
    @property
    def complete(self) -> np.ndarray:
        """Whether each row is complete (a copy)."""
        return self._complete.copy()

    @property
    def drawn(self) -> np.ndarray:
        """Samples drawn per row (meaningful where complete; a copy)."""
        return self._drawn.copy()

    @property
    def seconds(self) -> np.ndarray:
        """Wall seconds spent sampling each row, as stored (NaN where unknown; a copy)."""
        self._check_open()
        return self._seconds[...]

    def pending(self) -> np.ndarray:
        """Row indices not yet complete, in increasing order."""
        return np.flatnonzero(~self._complete)

    def read_row(self, i: int, stop: int) -> np.ndarray:
        """Labels ``[0, stop)`` of row ``i``, as written (to extend a row past ``drawn``)."""
        self._check_open()
        try:
            return self._labels[int(i), :int(stop)]
        except (OSError, RuntimeError) as exc:
            raise StoreError(f"cannot read row {i} of {self.path} (damaged?): {exc}") from None

    # -- writing
    def write_row(self, i: int, labels, seconds: float) -> None:
        """Write row ``i`` (``N`` labels in draw order) and mark it complete.

        Parameters
        ----------
        i : int
            Row index in ``[0, n_images)``.
        labels : array of int, shape (N,)
            Predicted labels, each in ``[0, num_classes)``.
        seconds : float
            Wall seconds spent sampling this row.
        """
        self.write_rows(i, np.asarray(labels)[None, ...], [seconds])

    def write_rows(self, start: int, labels, seconds) -> None:
        """Write consecutive rows ``start, start+1, ...`` and mark them complete together.

        Parameters
        ----------
        start : int
            First row index.
        labels : array of int, shape (rows, N)
            One row of labels per image.
        seconds : array of float, shape (rows,)
            Wall seconds spent sampling each row.
        """
        self._check_open()
        labels = np.asarray(labels)
        if labels.ndim != 2:
            raise StoreError(f"labels block must be 2-D (rows, N), got shape {labels.shape}")
        start = check_positive_int(start, "start", minimum=0)
        self.write_rows_at(np.arange(start, start + labels.shape[0]), labels, seconds)

    def write_rows_at(self, rows, labels, seconds, drawn=None) -> None:
        """Write the given rows (any distinct indices) and mark them complete together.

        Parameters
        ----------
        rows : array of int, shape (m,)
            Row indices, distinct.
        labels : array of int, shape (m, N)
            Labels of each row, in the order of ``rows``; past a row's ``drawn`` they are
            unused (write 0).
        seconds : array of float, shape (m,)
            Wall seconds spent sampling each row (NaN where unknown).
        drawn : array of int, shape (m,), optional
            Samples drawn for each row, in ``[0, N]``; ``N`` (full rows) by default, and
            the only value a schema-1 store takes.
        """
        self._check_open()
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return
        if rows.min() < 0 or rows.max() >= self.n_images:
            raise StoreError(f"row index outside [0, {self.n_images}): {_short(rows)}")
        if np.unique(rows).size != rows.size:
            raise StoreError(f"row indices repeat: {_short(rows)}")
        seconds = np.asarray(seconds, dtype=np.float64).reshape(-1)
        known = seconds[~np.isnan(seconds)]
        if seconds.shape != rows.shape or np.any(np.isinf(known)) or np.any(known < 0):
            raise StoreError(
                f"seconds must be {rows.size} finite values >= 0 (or NaN for unknown),"
                f" got {_short(seconds)}"
            )
        what = f"{self.path} row {int(rows[0])}" + (f"..{int(rows[-1])}" if rows.size > 1 else "")
        N = self.samples_per_image
        drawn = (np.full(rows.shape, N, np.int64) if drawn is None
                 else np.asarray(drawn, dtype=np.int64).reshape(-1))
        if drawn.shape != rows.shape or np.any(drawn < 0) or np.any(drawn > N):
            raise StoreError(f"{what}: drawn must be {rows.size} counts in [0, N={N}], got "
                             f"{_short(drawn)}")
        if self._drawn_ds is None and np.any(drawn != N):
            raise StoreError(f"{what}: {self.path} is a schema-1 store, which holds full rows "
                             f"only (drawn {_short(drawn)}, N = {N})")
        labels = _check_labels(labels, self.samples_per_image, self.num_classes, what)
        if labels.shape[0] != rows.size:
            raise StoreError(f"{what}: {labels.shape[0]} label rows for {rows.size} row indices")
        try:
            if np.any(self._complete[rows]):
                # Rewriting a complete row: unmark it first, so a kill mid-write cannot
                # leave the old mark on half-new labels.
                self._mark(rows, False)
            if np.all(np.diff(rows) == 1):
                self._labels[rows[0] : rows[-1] + 1] = labels
            else:
                for j, r in enumerate(rows):
                    self._labels[r] = labels[j]
            for j, r in enumerate(rows):
                self._seconds[r] = seconds[j]
                if self._drawn_ds is not None:
                    self._drawn_ds[r] = drawn[j]
            self._flush()
            self._mark(rows, True)
            self._drawn[rows] = drawn
        except (OSError, RuntimeError) as exc:  # disk full, quota, I/O error (h5py: either)
            raise self._fail(exc, what) from None

    def _mark(self, rows: np.ndarray, value: bool) -> None:
        """Set the complete flag of ``rows`` on disk, then (once flushed) in memory."""
        mask = self._complete.copy()
        mask[rows] = value
        lo, hi = int(rows.min()), int(rows.max()) + 1
        self._complete_ds[lo:hi] = mask[lo:hi]
        self._flush()
        self._complete = mask

    def _fail(self, exc: BaseException, what: str) -> StoreWriteError:
        """Close the file without writing more, release the lock; the error to raise."""
        done = int(self._complete.sum())
        N = self.samples_per_image
        rate = None
        if done:
            with contextlib.suppress(OSError):
                rate = self.path.stat().st_size / (done * N)
        need, basis = _space_needed((self.n_images - done) * N, rate)
        err = _write_error(exc, what, self.path, need=need, basis=basis)
        kept = (f"the {done} complete row(s) are kept; the other {self.n_images - done} are"
                " redone when the store is opened for writing again")
        err.args = (f"{err}; {kept}",)
        f, self._f = self._f, None
        _abandon(f)
        self._lock.release()
        self._failure = str(err)
        return err

    def _flush(self) -> None:
        self._f.flush()
        if self._fsync:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _check_open(self) -> None:
        if self._failure is not None:
            raise StoreError(f"the writer of {self.path} stopped after a failed write:"
                             f" {self._failure}")
        if self._f is None:
            raise StoreError(f"the writer of {self.path} is closed")

    # -- life cycle
    def close(self) -> None:
        """Flush, close the file and release the writer lock.

        Raises
        ------
        StoreWriteError
            The last flush failed; rows marked complete before are kept.
        """
        if self._f is None:
            return
        try:
            # Every write flushed already, so this normally writes nothing; done apart from
            # the close so that a failure can still abandon the file cleanly.
            self._flush()
            self._f.close()
        except (OSError, RuntimeError) as exc:
            raise self._fail(exc, f"{self.path} (closing it)") from None
        self._f = None
        self._lock.release()

    def __enter__(self) -> StreamWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        done = int(self._complete.sum())
        return (
            f"StreamWriter({str(self.path)!r}, {done}/{self.n_images} rows complete,"
            f" N={self.samples_per_image})"
        )
