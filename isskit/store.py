"""The HDF5 stream store (schema version 1): every label the base classifier predicted.

Row ``i`` of ``/labels`` holds image ``image_index[i]``'s predicted labels for its ``N``
noisy copies, in draw order. The sampling stage writes rows through a
:class:`StreamWriter` (:func:`open_for_writing`), marking a row complete only once it is
fully written and flushed; everything offline reads through a :class:`StreamStore`
(:func:`open_store`). Per-rank stores of a multi-GPU run are joined by :func:`merge_stores`.

Layout (DESIGN.md, "Stream store")::

    /labels      (n_images, N) uint16, chunked along samples, compressed
    /image_index (n_images,) int64
    /true_label  (n_images,) int64
    /complete    (n_images,) bool
    /seconds     (n_images,) float64
    root attrs:  schema_version, isskit_version, created_at, sigma, num_classes,
                 samples_per_image, seed, dataset, model, device, torch_version,
                 batch_size, noise (and any further provenance)

This module never imports torch and never prints; every problem with a file is a
:class:`StoreError` (a ``ValueError``) naming the path and what is wrong.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import numbers
import os
import socket
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np

from isskit._progress import progress_bar
from isskit._provenance import file_sha256, make_attrs
from isskit._validate import OVERHEAD_BYTES, check_memory, check_positive_int, check_sigma

__all__ = [
    "RUN_PARAMS",
    "SCHEMA_VERSION",
    "StoreError",
    "StoreLockedError",
    "StoreMismatchError",
    "StreamStore",
    "StreamWriter",
    "merge_stores",
    "open_for_writing",
    "open_store",
]

#: The schema version this isskit writes, and the newest it reads.
SCHEMA_VERSION = 1

#: Root attrs that define a run: resuming a store with any of them different is refused,
#: since the rows already written would mix two different experiments.
RUN_PARAMS = ("sigma", "samples_per_image", "model", "seed", "dataset", "num_classes", "noise")

# Chunks are one image by up to _CHUNK_SAMPLES samples: a row is written on its own (a
# chunk shared by several rows would be decompressed and rewritten once per row, and its
# old copy left as dead space in the file), and a prefix of samples is read without
# decompressing the whole row. gzip level 1 without the byte shuffle won the measurements
# in bench/bench_store.py (docs/formats.md has the table): about 0.2 bytes per sample on a
# realistic p_A mix, where shuffle saved little space and halved the read speed, and
# higher gzip levels cost write time for a few per cent of space.
_CHUNK_SAMPLES = 1 << 17
_COMPRESSION = "gzip"
_COMPRESSION_LEVEL = 1

_DATASETS = {
    # name: (number of dimensions, dtype)
    "labels": (2, np.dtype(np.uint16)),
    "image_index": (1, np.dtype(np.int64)),
    "true_label": (1, np.dtype(np.int64)),
    "complete": (1, np.dtype(np.bool_)),
    "seconds": (1, np.dtype(np.float64)),
}
_REQUIRED_ATTRS = ("schema_version", "samples_per_image", "sigma", "num_classes")
_MAX_CLASSES = 1 << 16  # labels are uint16


class StoreError(ValueError):
    """A stream store is missing, damaged, foreign, too new, or used the wrong way."""


class StoreMismatchError(StoreError):
    """An existing store was made with different run parameters than the ones given."""


class StoreLockedError(StoreError):
    """Another process is writing the store."""


# --------------------------------------------------------------------------------------
# locking


class _WriterLock:
    """An exclusive ``flock`` on the sidecar file ``<store>.lock``.

    ``flock`` locks belong to the open file and die with the process, so a writer killed
    with SIGKILL leaves no lock behind (at most the file, which a later writer re-locks).
    """

    def __init__(self, store_path: Path):
        self.path = store_path.with_name(store_path.name + ".lock")
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise StoreError(f"cannot create the lock file {self.path}: {exc}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
                os.close(fd)
                if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise StoreLockedError(
                        f"{store_path} is being written by another process"
                        f" ({holder or 'holder unknown'}; lock file {self.path}); wait for it"
                        " to finish or stop it before writing this store"
                    ) from None
                raise StoreError(f"cannot lock {self.path}: {exc}") from None
            # A previous holder may have unlinked the file between our open and our flock:
            # then we hold a lock on a file nobody else will see. Start again.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._fd = fd
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd is None:
            return
        # Unlink while still holding the lock, so no one can lock the old file after us.
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


# --------------------------------------------------------------------------------------
# helpers


def _py(value):
    """An HDF5 attribute as a plain Python value (str, int, float, bool or list)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [_py(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _check_attr_value(name: str, value):
    if isinstance(value, str | bool | numbers.Integral | numbers.Real | np.generic):
        return value
    raise StoreError(
        f"attr {name!r} ({value!r}) must be a str, int, float or bool to be stored in HDF5"
    )


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, numbers.Real) and isinstance(b, numbers.Real):
        return float(a) == float(b)
    return a == b


def _short(arr: np.ndarray, k: int = 6) -> str:
    arr = np.asarray(arr)
    head = ", ".join(str(v) for v in arr[:k].tolist())
    return f"{arr.size} values [{head}{', ...' if arr.size > k else ''}]"


def _int_array(values, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise StoreError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise StoreError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _chunk_shape(samples_per_image: int) -> tuple[int, int]:
    return (1, min(samples_per_image, _CHUNK_SAMPLES))


def _create(
    path: Path, image_index, true_label, samples_per_image: int, attrs: dict, columns: dict
) -> None:
    """Write a new empty store, atomically: a temporary file renamed into place."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    n = image_index.size
    try:
        with h5py.File(tmp, "w", locking=False) as f:
            f.create_dataset(
                "labels",
                shape=(n, samples_per_image),
                dtype=np.uint16,
                chunks=_chunk_shape(samples_per_image) if n else None,
                compression=_COMPRESSION if n else None,
                compression_opts=_COMPRESSION_LEVEL if n else None,
                fillvalue=0,
            )
            # The small per-image datasets are contiguous and written in full now, so later
            # updates rewrite bytes in place and never change the file's structure.
            f.create_dataset("image_index", data=image_index)
            f.create_dataset("true_label", data=true_label)
            f.create_dataset("complete", data=np.zeros(n, dtype=bool))
            f.create_dataset("seconds", data=np.zeros(n, dtype=np.float64))
            if columns:
                extra = f.create_group("extra")
                for name, values in columns.items():
                    extra.create_dataset(name, data=values)
            for key, value in attrs.items():
                f.attrs[key] = value
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _open_h5(path: Path, mode: str) -> h5py.File:
    """Open ``path`` with h5py, turning every failure into a StoreError naming the problem."""
    if not path.exists():
        raise StoreError(f"stream store {path} does not exist")
    if path.is_dir():
        raise StoreError(f"stream store {path} is a directory, not a file")
    try:
        is_h5 = h5py.is_hdf5(path)
    except OSError as exc:
        raise StoreError(f"cannot read stream store {path}: {exc}") from None
    if not is_h5:
        raise StoreError(f"{path} is not an HDF5 file (no HDF5 signature), so not a stream store")
    try:
        # HDF5's own file locks are off: the sidecar lock keeps writers apart, and a reader
        # (isskit info on a running job) must not be refused, nor block the writer.
        return h5py.File(path, mode, locking=False)
    except OSError as exc:
        msg = str(exc)
        hint = " (truncated?)" if "truncated" in msg or "eof" in msg.lower() else " (damaged?)"
        raise StoreError(f"cannot open stream store {path}{hint}: {msg}") from None


def _validate(f: h5py.File, path: Path) -> dict:
    """Check a store's schema; return its root attrs as plain Python values."""
    attrs = {k: _py(v) for k, v in f.attrs.items()}
    missing = [name for name in _DATASETS if name not in f]
    if "schema_version" not in attrs and len(missing) == len(_DATASETS):
        raise StoreError(
            f"{path} is an HDF5 file but not an isskit stream store"
            f" (no schema_version attr and none of the datasets {', '.join(_DATASETS)})"
        )
    if missing:
        raise StoreError(f"stream store {path} lacks dataset(s) {', '.join(missing)}")
    absent = [a for a in _REQUIRED_ATTRS if a not in attrs]
    if absent:
        raise StoreError(f"stream store {path} lacks root attr(s) {', '.join(absent)}")
    version = attrs["schema_version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise StoreError(f"stream store {path}: schema_version ({version!r}) is not an integer")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"stream store {path} has schema version {version}, newer than the {SCHEMA_VERSION}"
            " this isskit reads; upgrade isskit"
        )
    if version < 1:
        raise StoreError(f"stream store {path}: schema_version ({version}) must be >= 1")
    for name, (rank, dtype) in _DATASETS.items():
        obj = f[name]
        if not isinstance(obj, h5py.Dataset):
            raise StoreError(f"stream store {path}: /{name} is a group, not a dataset")
        if obj.ndim != rank:
            raise StoreError(
                f"stream store {path}: /{name} has shape {obj.shape}, expected {rank} dimension(s)"
            )
        if obj.dtype != dtype:
            raise StoreError(
                f"stream store {path}: /{name} has dtype {obj.dtype}, expected {dtype}"
            )
    n, N = f["labels"].shape
    for name in ("image_index", "true_label", "complete", "seconds"):
        if f[name].shape != (n,):
            raise StoreError(
                f"stream store {path}: /{name} has shape {f[name].shape}, expected ({n},) to"
                f" match /labels {f['labels'].shape}"
            )
    if attrs["samples_per_image"] != N:
        raise StoreError(
            f"stream store {path}: attr samples_per_image ({attrs['samples_per_image']}) does"
            f" not match /labels' {N} columns"
        )
    k = attrs["num_classes"]
    if not isinstance(k, int) or not 1 <= k <= _MAX_CLASSES:
        raise StoreError(f"stream store {path}: num_classes ({k!r}) must be in [1, {_MAX_CLASSES}]")
    return attrs


def _check_columns(columns, n: int) -> dict:
    if columns is None:
        return {}
    if not isinstance(columns, dict):
        raise StoreError(f"columns ({columns!r}) must be a dict of name to array")
    out = {}
    for name, values in columns.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise StoreError(f"column name ({name!r}) must be an identifier")
        arr = np.asarray(values)
        if arr.shape != (n,) or arr.dtype.kind not in "iuf":
            raise StoreError(
                f"column {name} must hold {n} numbers (one per image), got shape {arr.shape}"
                f" and dtype {arr.dtype}"
            )
        out[name] = arr.astype(np.float64 if arr.dtype.kind == "f" else np.int64)
    return out


def _read_columns(f: h5py.File, path: Path) -> dict:
    if "extra" not in f:
        return {}
    group = f["extra"]
    n = f["labels"].shape[0]
    out = {}
    for name, obj in group.items():
        if not isinstance(obj, h5py.Dataset) or obj.shape != (n,) or obj.dtype.kind not in "iuf":
            raise StoreError(
                f"stream store {path}: /extra/{name} must be a ({n},) dataset of numbers"
            )
        out[name] = obj[...]
    return out


def _default_threads() -> int:
    # Capped at 4: HDF5 hands over the compressed chunks in one thread, so more inflaters
    # would mostly wait for it.
    return max(1, min(4, os.cpu_count() or 1))


def _inflate_into(raw: bytes, dest: np.ndarray) -> None:
    """Inflate one deflate-compressed chunk into ``dest`` (only as many bytes as it needs)."""
    need = 2 * dest.size
    data = zlib.decompressobj().decompress(raw, need)
    if len(data) < need:
        raise zlib.error(f"chunk inflated to {len(data)} bytes, expected at least {need}")
    dest[:] = np.frombuffer(data, dtype="<u2", count=dest.size)


def _check_labels(labels, N: int, num_classes: int, what: str,
                  first_row: int | None = None) -> np.ndarray:
    """Labels as uint16 if every one is a class; else a StoreError naming ``what``.

    With ``first_row`` (the row number of the block's first row), the message also names
    the first row holding a bad label.
    """
    arr = np.asarray(labels)
    if arr.shape[-1:] != (N,):
        raise StoreError(f"{what}: labels have shape {arr.shape}, expected {N} per row")
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
        if not path.exists():
            try:
                _create(path, image_index, true_label, samples_per_image, full, columns)
            except OSError as exc:
                raise StoreError(f"cannot create stream store {path}: {exc}") from None
        f = _open_h5(path, "r+")
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


class StreamWriter:
    """Writes rows of a stream store; made by :func:`open_for_writing`.

    Every write marks its rows complete only after the labels are written and flushed,
    so a writer killed at any moment leaves no row marked complete that is not whole.
    """

    def __init__(self, path: Path, f: h5py.File, lock: _WriterLock, *, fsync: bool = False):
        self.path = path
        self._f = f
        self._lock = lock
        self._fsync = fsync
        self._labels = f["labels"]
        self._complete_ds = f["complete"]
        self._seconds = f["seconds"]
        self._complete = self._complete_ds[...]
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

    def pending(self) -> np.ndarray:
        """Row indices not yet complete, in increasing order."""
        return np.flatnonzero(~self._complete)

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

    def write_rows_at(self, rows, labels, seconds) -> None:
        """Write the given rows (any distinct indices) and mark them complete together.

        Parameters
        ----------
        rows : array of int, shape (m,)
            Row indices, distinct.
        labels : array of int, shape (m, N)
            Labels of each row, in the order of ``rows``.
        seconds : array of float, shape (m,)
            Wall seconds spent sampling each row (NaN where unknown).
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
        labels = _check_labels(labels, self.samples_per_image, self.num_classes, what)
        if labels.shape[0] != rows.size:
            raise StoreError(f"{what}: {labels.shape[0]} label rows for {rows.size} row indices")
        try:
            if np.any(self._complete[rows]):
                # Rewriting a complete row: unmark it first, so a kill mid-write cannot
                # leave the old mark on half-new labels.
                self._complete[rows] = False
                self._store_complete(rows)
            if np.all(np.diff(rows) == 1):
                self._labels[rows[0] : rows[-1] + 1] = labels
            else:
                for j, r in enumerate(rows):
                    self._labels[r] = labels[j]
            for j, r in enumerate(rows):
                self._seconds[r] = seconds[j]
            self._flush()
            self._complete[rows] = True
            self._store_complete(rows)
        except OSError as exc:  # disk full, file gone, ...
            raise StoreError(f"cannot write {what}: {exc}") from None

    def _store_complete(self, rows: np.ndarray) -> None:
        lo, hi = int(rows.min()), int(rows.max()) + 1
        self._complete_ds[lo:hi] = self._complete[lo:hi]
        self._flush()

    def _flush(self) -> None:
        self._f.flush()
        if self._fsync:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _check_open(self) -> None:
        if self._f is None:
            raise StoreError(f"the writer of {self.path} is closed")

    # -- life cycle
    def close(self) -> None:
        """Flush, close the file and release the writer lock."""
        if self._f is not None:
            try:
                self._f.close()
            finally:
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


# --------------------------------------------------------------------------------------
# reading


def open_store(path) -> StreamStore:
    """Open a stream store read-only, after checking its schema.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    StreamStore

    Raises
    ------
    StoreError
        Missing file, not HDF5, truncated or damaged, an HDF5 file that is not a store,
        a newer schema version, or datasets with the wrong shapes or dtypes.
    """
    path = Path(path)
    f = _open_h5(path, "r")
    try:
        attrs = _validate(f, path)
        return StreamStore(path, f, attrs)
    except BaseException:
        f.close()
        raise


class StreamStore:
    """A stream store opened read-only; made by :func:`open_store`.

    The per-image arrays (``image_index``, ``true_label``, ``complete``, ``seconds``) are
    read at open, with the optional per-image ``columns`` (``/extra/<name>``, e.g. the
    true ``p_A`` of a synthetic store); labels are read lazily by :meth:`labels` and
    :meth:`iter_chunks`.
    """

    def __init__(self, path: Path, f: h5py.File, attrs: dict):
        self.path = path
        self._f = f
        self.attrs = attrs
        self._labels = f["labels"]
        self.n_images, self.samples_per_image = self._labels.shape
        try:
            self.image_index = f["image_index"][...]
            self.true_label = f["true_label"][...]
            self.complete = f["complete"][...]
            self.seconds = f["seconds"][...]
            self.columns = _read_columns(f, path)
        except OSError as exc:
            raise StoreError(f"cannot read stream store {path} (damaged?): {exc}") from None
        self.num_classes = int(attrs["num_classes"])
        self.sigma = float(attrs["sigma"])
        self.schema_version = int(attrs["schema_version"])

    # -- labels
    def labels(self, rows=slice(None), samples=slice(None)) -> np.ndarray:
        """Read labels of some rows and samples (only those are decompressed).

        Parameters
        ----------
        rows : int, slice or array of int, default all
            Rows to read (any order; an int gives a 1-D result).
        samples : int or slice, default all
            An int ``k`` reads the prefix ``[0, k)``; a slice reads that range.

        Returns
        -------
        ndarray of uint16, shape (rows, samples) (or (samples,) for an int row)
        """
        self._check_open()
        if isinstance(samples, numbers.Integral):
            k = int(samples)
            if not 0 <= k <= self.samples_per_image:
                raise StoreError(
                    f"samples ({k}) must be in [0, {self.samples_per_image}] for {self.path}"
                )
            samples = slice(0, k)
        if not isinstance(samples, slice):
            raise StoreError(f"samples ({samples!r}) must be an int (a prefix) or a slice")
        try:
            if isinstance(rows, numbers.Integral):
                r = int(rows)
                if not -self.n_images <= r < self.n_images:
                    raise StoreError(f"row {r} outside [0, {self.n_images}) in {self.path}")
                return self._labels[r % self.n_images, samples]
            if isinstance(rows, slice):
                return self._labels[rows, samples]
            idx = np.asarray(rows)
            if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
                raise StoreError(f"rows must be an int, a slice or a 1-D int array, got {rows!r}")
            if idx.size and (idx.min() < 0 or idx.max() >= self.n_images):
                raise StoreError(f"rows outside [0, {self.n_images}) in {self.path}")
            # h5py wants increasing, distinct indices: read those, then reorder.
            uniq, inverse = np.unique(idx, return_inverse=True)
            n_cols = len(range(*samples.indices(self.samples_per_image)))
            if uniq.size == 0:
                return np.empty((0, n_cols), dtype=np.uint16)
            return self._labels[uniq, samples][inverse]
        except OSError as exc:
            raise StoreError(f"cannot read labels of {self.path} (damaged?): {exc}") from None

    def rows_per_chunk(self, max_bytes: int = 64 << 20, samples: int | None = None) -> int:
        """Rows per block of :meth:`iter_chunks` for a memory bound of ``max_bytes``."""
        k = self.samples_per_image if samples is None else samples
        return max(1, int(max_bytes) // max(1, 2 * k))

    def iter_chunks(
        self,
        max_bytes: int = 64 << 20,
        *,
        samples: int | None = None,
        rows=None,
        threads: int | None = None,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(row_start, labels_block)`` over all rows, in blocks of bounded memory.

        Parameters
        ----------
        max_bytes : int, default 64 MiB
            Upper bound on one block's size (at least one row is always read).
        samples : int, optional
            Read only the prefix of this many samples of each row (only the chunks that
            hold it are decompressed).
        rows : slice, optional
            Restrict to a contiguous range of rows (default all).
        threads : int, optional
            Threads that inflate chunks (zlib releases the GIL): default the number of
            cores, at most 4. With 1, chunks are inflated in the calling thread, and only as far as
            the prefix of ``samples`` needs; 0 leaves all decompression to HDF5 (which
            inflates whole chunks). Stores whose filters are not this module's (gzip, no
            shuffle, one row per chunk) are always read through HDF5.

        Yields
        ------
        row_start : int
            Index of the block's first row.
        labels_block : ndarray of uint16, shape (block_rows, samples)
            A fresh array for each block, so a consumer may keep it.
        """
        self._check_open()
        max_bytes = check_positive_int(max_bytes, "max_bytes")
        k = self.samples_per_image if samples is None else int(samples)
        if not 0 <= k <= self.samples_per_image:
            raise StoreError(f"samples ({k}) must be in [0, {self.samples_per_image}]")
        lo, hi, step = (rows or slice(None)).indices(self.n_images)
        if step != 1:
            raise StoreError(f"rows ({rows!r}) must be a contiguous slice")
        if threads is None:
            threads = _default_threads()
        threads = check_positive_int(threads, "threads", minimum=0)
        block = self.rows_per_chunk(max_bytes, k)
        rows_read = min(block, max(hi - lo, 1))
        self._check_read_memory(2 * rows_read * k, rows_read, k, "uint16 labels, 2 bytes each")
        raw = threads >= 1 and k > 0 and hi > lo and self._raw_chunks_readable()
        pool = None
        if raw and threads > 1:
            pool = ThreadPoolExecutor(threads, thread_name_prefix="isskit-inflate")
        try:
            for start in range(lo, hi, block):
                stop = min(start + block, hi)
                out = np.empty((stop - start, k), dtype=np.uint16)
                try:
                    if raw:
                        self._read_raw(pool, start, stop, out)
                    elif k:
                        # read_direct decompresses straight into the block (no temporary).
                        self._labels.read_direct(
                            out, np.s_[start:stop, 0:k], np.s_[0 : stop - start]
                        )
                except (OSError, RuntimeError, zlib.error) as exc:
                    raise StoreError(
                        f"cannot read rows {start}..{stop} of {self.path} (damaged?): {exc}"
                    ) from None
                yield start, out
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def _check_read_memory(self, nbytes: int, rows: int, k: int, what: str) -> None:
        """Refuse a read of ``rows`` rows of ``k`` samples that needs more than memory holds.

        A store of 10^11 samples per row is a small file (its rows compress well, or were
        never written), but a block holds at least one whole row, 2 bytes per sample,
        and a reader needs more for what it computes from it.
        """
        name, value = (("samples_per_image", k) if k == self.samples_per_image
                       else ("samples", k))
        check_memory(nbytes + OVERHEAD_BYTES, name, value,
                     f"reading {rows:,} row(s) of {k:,} samples of {self.path}: {what}")

    def _raw_chunks_readable(self) -> bool:
        """Whether chunks can be inflated here: exactly one filter, deflate, one row each."""
        ds = self._labels
        if ds.chunks is None or ds.chunks[0] != 1 or ds.dtype != np.dtype("<u2"):
            return False
        plist = ds.id.get_create_plist()
        return plist.get_nfilters() == 1 and plist.get_filter(0)[0] == h5py.h5z.FILTER_DEFLATE

    def _read_raw(self, pool, start: int, stop: int, out: np.ndarray) -> None:
        """Read rows ``start:stop`` into ``out``, inflating chunks in ``pool`` (or here).

        HDF5 hands over the compressed chunks in this thread (h5py serialises its calls
        anyway); the pool, if any, inflates them in parallel.
        """
        ds = self._labels
        dsid = ds.id
        C = ds.chunks[1]
        k = out.shape[1]
        jobs = []
        for r in range(start, stop):
            for c0 in range(0, k, C):
                dest = out[r - start, c0 : min(c0 + C, k)]
                try:
                    mask, raw = dsid.read_direct_chunk((r, c0))
                except RuntimeError:
                    if dsid.get_chunk_info_by_coord((r, c0)).byte_offset is not None:
                        raise
                    dest[:] = ds.fillvalue  # a row never written: HDF5 would return the same
                    continue
                if mask:  # the filter was skipped for this chunk: let HDF5 read it
                    dest[:] = ds[r, c0 : c0 + dest.size]
                    continue
                if pool is None:
                    _inflate_into(raw, dest)
                else:
                    jobs.append(pool.submit(_inflate_into, raw, dest))
        for job in jobs:
            job.result()

    # -- summaries
    def seconds_per_sample(self) -> float:
        """Sampling seconds per sample over complete rows.

        NaN when no row is complete, or when a complete row's time is unknown (NaN).
        """
        done = self.complete
        n = int(done.sum()) * self.samples_per_image
        return float(self.seconds[done].sum() / n) if n else float("nan")

    def top_class_frequency(self, max_bytes: int = 16 << 20, *, progress: bool = False):
        """Empirical frequency of each row's most frequent label (NaN for incomplete rows).

        Parameters
        ----------
        max_bytes : int, default 16 MiB
            Labels are read in blocks of at most this size, so any store fits in memory.
        progress : bool, default False
            Show a tqdm progress bar on stderr.

        Returns
        -------
        ndarray of float, shape (n_images,)
        """
        out = np.full(self.n_images, np.nan)
        K, N = self.num_classes, self.samples_per_image
        # a block's uint16 labels, their offsets (int32 ones are copied to intp again inside
        # bincount) and its int64 counts, before any is made
        rows = min(self.rows_per_chunk(max_bytes), max(self.n_images, 1))
        per = 2 + (4 + 8 if rows * K < 2**31 else 8)
        self._check_read_memory(rows * (per * N + 8 * K), rows, N,
                                f"labels and their offsets, {per} bytes per sample, and counts")
        blocks = self.iter_chunks(max_bytes)
        if progress:
            per = self.rows_per_chunk(max_bytes)
            blocks = progress_bar(blocks, total=-(-self.n_images // per), unit="block",
                                  desc="reading")
        for start, block in blocks:
            b = block.shape[0]
            # One bincount over the whole block: label + K * row makes each row's counts
            # land in its own stretch of K bins.
            dtype = np.int32 if b * K < 2**31 else np.int64  # int32 halves the memory traffic
            offs = block.astype(dtype)
            offs += (K * np.arange(b, dtype=dtype))[:, None]
            counts = np.bincount(offs.ravel(), minlength=b * K).reshape(b, K)
            out[start : start + b] = counts.max(axis=1) / N
        out[~self.complete] = np.nan
        return out

    def sha256(self) -> str:
        """Hex SHA-256 of the file's bytes."""
        return file_sha256(self.path)

    def summary(self) -> dict:
        """What ``isskit info`` shows: sizes, completeness, run parameters, speed, provenance."""
        n_done = int(self.complete.sum())
        size = self.path.stat().st_size
        stored = n_done * self.samples_per_image
        a = self.attrs
        return {
            "path": str(self.path),
            "schema_version": self.schema_version,
            "n_images": self.n_images,
            "complete": n_done,
            "incomplete": self.n_images - n_done,
            "samples_per_image": self.samples_per_image,
            "sigma": self.sigma,
            "num_classes": self.num_classes,
            "model": a.get("model"),
            "dataset": a.get("dataset"),
            "device": a.get("device"),
            "seed": a.get("seed"),
            "noise": a.get("noise"),
            "seconds_per_sample": self.seconds_per_sample(),
            "created_at": a.get("created_at"),
            "isskit_version": a.get("isskit_version"),
            "file_bytes": size,
            "bytes_per_sample": size / stored if stored else float("nan"),
            "image_index_range": (
                [int(self.image_index.min()), int(self.image_index.max())]
                if self.n_images
                else None
            ),
            "attrs": dict(a),
        }

    # -- life cycle
    def _check_open(self) -> None:
        if self._f is None:
            raise StoreError(f"stream store {self.path} is closed")

    def close(self) -> None:
        """Close the file."""
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self) -> StreamStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"StreamStore({str(self.path)!r}, {int(self.complete.sum())}/{self.n_images} rows"
            f" complete, N={self.samples_per_image}, sigma={self.sigma})"
        )


# --------------------------------------------------------------------------------------
# merging

# Attrs that are naturally different between ranks of one run; merge keeps every value.
_PER_RANK = ("rank", "created_at", "device", "isskit_version", "torch_version", "batch_size")


def merge_stores(out_path, in_paths, *, max_bytes: int = 64 << 20, progress: bool = False) -> Path:
    """Join the per-rank stores of one run into a single store, rows sorted by image_index.

    Parameters
    ----------
    out_path : str or Path
        The merged store; must not exist yet.
    in_paths : sequence of str or Path
        The per-rank stores: same run parameters (:data:`RUN_PARAMS`), every row complete,
        no image index in two of them. If they carry ``rank`` and ``world_size`` attrs,
        every rank ``0 .. world_size-1`` must be there exactly once.
    max_bytes : int, default 64 MiB
        Memory bound of one copied block.
    progress : bool, default False
        Show a tqdm progress bar (images copied) on stderr.

    Returns
    -------
    Path
        ``out_path``.

    Raises
    ------
    StoreError
        Naming the image indices that are missing (incomplete rows, missing ranks) or
        doubled, or the run parameters that differ.
    """
    out_path = Path(out_path)
    in_paths = [Path(p) for p in in_paths]
    if not in_paths:
        raise StoreError("merge needs at least one input store")
    if out_path.exists():
        raise StoreError(f"merge output {out_path} already exists; refusing to overwrite it")
    if any(p.resolve() == out_path.resolve() for p in in_paths):
        raise StoreError(f"merge output {out_path} is also an input")
    with contextlib.ExitStack() as stack:
        stores = [stack.enter_context(open_store(p)) for p in in_paths]
        _check_mergeable(stores)
        first = stores[0]
        all_index = np.concatenate([s.image_index for s in stores])
        all_true = np.concatenate([s.true_label for s in stores])
        order = np.argsort(all_index, kind="stable")
        # out_row[j] = where row j of the concatenated inputs goes in the merged store.
        out_row = np.empty_like(order)
        out_row[order] = np.arange(order.size)

        attrs = {
            k: v for k, v in first.attrs.items() if k not in ("schema_version", "samples_per_image")
        }
        for key in _PER_RANK:
            values = [s.attrs.get(key) for s in stores]
            if any(not _same(v, values[0]) for v in values):
                attrs[key] = json.dumps(values)
        attrs.pop("rank", None)
        attrs.pop("world_size", None)
        attrs["merged_from"] = json.dumps(
            [
                {
                    "path": str(s.path),
                    "rank": s.attrs.get("rank"),
                    "n_images": s.n_images,
                    "created_at": s.attrs.get("created_at"),
                }
                for s in stores
            ]
        )
        attrs["ranks"] = len(stores)
        names = set(first.columns)
        if any(set(s.columns) != names for s in stores):
            raise StoreMismatchError(
                "cannot merge stores with different /extra columns: "
                + ", ".join(f"{s.path}: {sorted(s.columns)}" for s in stores)
            )
        columns = {name: np.concatenate([s.columns[name] for s in stores])[order] for name in names}
        attrs["created_at"] = None  # make_attrs stamps the merge time
        attrs["isskit_version"] = None
        try:
            with open_for_writing(
                out_path,
                image_index=all_index[order],
                true_label=all_true[order],
                samples_per_image=first.samples_per_image,
                attrs=attrs,
                columns=columns,
            ) as writer:
                bar = None
                if progress:
                    bar = progress_bar(total=order.size, unit="image", desc="merging")
                try:
                    offset = 0
                    for s in stores:
                        for start, block in s.iter_chunks(max_bytes):
                            # a bad label is the input's fault: name it, not the output
                            _check_labels(block, s.samples_per_image, s.num_classes,
                                          f"merge input {s.path}", first_row=start)
                            src = np.arange(start, start + block.shape[0])
                            dst = out_row[offset + src]
                            writer.write_rows_at(dst, block, s.seconds[src])
                            if bar is not None:
                                bar.update(src.size)
                        offset += s.n_images
                finally:
                    if bar is not None:
                        bar.close()
        except BaseException as exc:
            # Nothing half-merged is left behind: the output did not exist before (unless
            # another process made it meanwhile and holds its lock: that one is not ours).
            if not isinstance(exc, StoreLockedError):
                with contextlib.suppress(OSError):
                    out_path.unlink()
            raise
    return out_path


def _check_mergeable(stores: list[StreamStore]) -> None:
    first = stores[0]
    for s in stores[1:]:
        diffs = [
            f"{key}: {first.path} has {first.attrs.get(key)!r}, {s.path} has {s.attrs.get(key)!r}"
            for key in RUN_PARAMS
            if not _same(first.attrs.get(key), s.attrs.get(key))
        ]
        if diffs:
            raise StoreMismatchError(
                "cannot merge stores of different runs:\n  " + "\n  ".join(diffs)
            )
    problems = []
    for s in stores:
        if not s.complete.all():
            problems.append(
                f"{s.path} is incomplete: images {_short(s.image_index[~s.complete], 10)}"
                " are missing (resume that rank first)"
            )
    ranks = [s.attrs.get("rank") for s in stores]
    sizes = {s.attrs.get("world_size") for s in stores}
    if all(r is not None for r in ranks) and len(sizes) == 1 and None not in sizes:
        world = int(next(iter(sizes)))
        missing_ranks = sorted(set(range(world)) - set(ranks))
        if missing_ranks:
            problems.append(f"rank(s) {missing_ranks} of world_size {world} are missing")
        doubled = sorted({r for r in ranks if ranks.count(r) > 1})
        if doubled:
            problems.append(f"rank(s) {doubled} given more than once")
    all_index = np.concatenate([s.image_index for s in stores])
    uniq, counts = np.unique(all_index, return_counts=True)
    if np.any(counts > 1):
        doubled = uniq[counts > 1]
        where = [str(s.path) for s in stores if np.intersect1d(s.image_index, doubled).size]
        problems.append(f"images {_short(doubled, 10)} are doubled (in {', '.join(where)})")
    if problems:
        raise StoreError("cannot merge:\n  " + "\n  ".join(problems))
