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

A failed write (a full disk, a quota, an I/O error) is a :class:`StoreWriteError` (an
``OSError``) naming the file and the space to free. It never damages what was written
before: the chunk index of ``/labels`` is built in full when the store is created, so a
later write only changes metadata in place and a row's new chunk is referenced only once
it is on disk; after a failure nothing more is written to the file (see :func:`_abandon`).
Rows marked complete stay whole and readable, and reopening the store resumes it.

This module never imports torch and never prints; every problem with a file is a
:class:`StoreError` (a ``ValueError``) naming the path and what is wrong, except the
write failures above. A lock file left by a killed writer is taken over with a
:class:`StaleLockWarning`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import numbers
import os
import re
import shutil
import socket
import tempfile
import warnings
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np

from isskit._atomic import atomic_path
from isskit._progress import progress_bar
from isskit._provenance import file_sha256, make_attrs
from isskit._validate import OVERHEAD_BYTES, check_memory, check_positive_int, check_sigma

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


class StoreWriteError(OSError):
    """Writing a store or its lock file failed: a full disk, a quota, an I/O error.

    An ``OSError``, not a :class:`StoreError`: nothing was wrong with the input, and the
    same call succeeds once the cause is gone. Rows marked complete before the failure
    stay complete and whole; reopening the store resumes it. ``errno`` (``None`` where
    neither the system nor HDF5 named one) and ``filename`` are set; the message names
    the file and, on a full disk, the space to free.
    """

    def __init__(self, message: str, *, errno: int | None = None, filename=None):
        super().__init__(message)
        self.errno = errno
        self.filename = None if filename is None else str(filename)

    def __str__(self) -> str:
        # OSError would print "[Errno N] strerror: filename"; the message already says more.
        return self.args[0]


class StaleLockWarning(UserWarning):
    """The lock file of a writer that is gone (killed, crashed) was taken over."""


# --------------------------------------------------------------------------------------
# locking


class _WriterLock:
    """An exclusive ``flock`` on the sidecar file ``<store>.lock``, which names its holder.

    ``flock`` locks belong to the open file and die with the process, so a writer killed
    with SIGKILL leaves no lock behind, only the file with its ``pid N on HOST`` line. A
    later writer locks that file again and takes it over with a :class:`StaleLockWarning`
    naming the old pid; a live holder still refuses it (:class:`StoreLockedError`).
    """

    def __init__(self, store_path: Path):
        self.path = store_path.with_name(store_path.name + ".lock")
        self._fd = None
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
        try:
            previous = os.pread(fd, 200, 0).decode(errors="replace").strip()
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        except OSError as exc:
            # A full disk fails here first: writing the store could not succeed either.
            self.release()
            raise _write_error(exc, f"the lock file {self.path}", self.path) from None
        if previous:
            _warn_stale(self.path, previous)

    def release(self) -> None:
        if self._fd is None:
            return
        # Unlink while still holding the lock, so no one can lock the old file after us.
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def _warn_stale(path: Path, previous: str) -> None:
    """Note that the lock file ``path``, left with the line ``previous``, is taken over.

    Only a holder that died leaves its line behind (a writer that closes unlinks the
    file), so the lock is stale whatever the line says; the note says whether its pid is
    known to be gone (same host, no such process) so a user can tell a crash from a pid
    that was reused.
    """
    m = re.fullmatch(r"pid (\d+) on (\S+)", previous)
    if m is None:
        who, gone = repr(previous), False
    else:
        pid, host = int(m[1]), m[2]
        who, gone = f"pid {pid} on {host}", host == socket.gethostname() and not _alive(pid)
    warnings.warn(
        f"taking over stale lock left by {who}{' (that process is gone)' if gone else ''};"
        f" lock file {path}",
        StaleLockWarning,
        stacklevel=4,
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, and belongs to someone else
        return True
    return True


# --------------------------------------------------------------------------------------
# write failures


#: HDF5 reports a failed system call inside its message ("..., errno = 28, error message =
#: 'No space left on device', ..."), with no errno of its own on the Python exception.
_HDF5_ERRNO = re.compile(r"errno = (\d+)")
_RAW_BYTES_PER_SAMPLE = 2  # uint16 labels before compression: the most a sample can take
_SLACK_BYTES = 1_000_000  # asked for on top of an estimate: HDF5's metadata, estimation error


def _write_error(exc: BaseException, what: str, path: Path, *,
                 need: float | None = None, basis: str = "") -> StoreWriteError:
    """The :class:`StoreWriteError` for a failed write of ``what`` (in the file ``path``).

    The reason is the system's (errno) without HDF5's internal trace (addresses, buffer
    pointers, timestamps), which says nothing to a user. On a full disk or quota the
    message adds what to free: what ``need`` (the bytes still to write; ``basis`` says
    how they were estimated) exceeds the free space by, plus a margin.
    """
    code = exc.errno if isinstance(exc, OSError) and exc.errno else None
    if code is None:
        m = _HDF5_ERRNO.search(str(exc))
        code = int(m[1]) if m else None
    if code:
        reason = os.strerror(code)
    else:
        # h5py's message is "what failed (HDF5's details)": keep the first part.
        reason = str(exc).split(" (", 1)[0] or type(exc).__name__
    msg = f"cannot write {what}: {reason}"
    if code in (errno.ENOSPC, errno.EDQUOT):
        folder = path.absolute().parent
        try:
            free = shutil.disk_usage(folder).free
            now = f"{_size(free)} free now"
        except OSError:
            free, now = 0, "free space unknown"
        if need:
            more = max(need - free, 0) + _SLACK_BYTES
            msg += f"; free at least {_size(more, up=True)} in {folder} ({now}{basis})"
        else:
            msg += f"; free space in {folder} ({now})"
    return StoreWriteError(msg, errno=code, filename=path)


def _space_needed(samples: int, bytes_per_sample: float | None) -> tuple[float, str]:
    """Bytes to free for ``samples`` more samples, and how that was estimated.

    At the rate of the rows written so far when there are any, else at the uncompressed
    size (labels compress to well under that, so this asks for more than will be used).
    """
    if bytes_per_sample:
        return samples * bytes_per_sample, (
            f"; {samples:,} samples still to write at the {bytes_per_sample:.2g} bytes per"
            " sample of the rows written so far")
    return samples * _RAW_BYTES_PER_SAMPLE, (
        f"; {samples:,} samples to write at up to {_RAW_BYTES_PER_SAMPLE} bytes per sample")


def _size(nbytes: float, *, up: bool = False) -> str:
    """``nbytes`` in B, kB, MB, GB or TB (one decimal); ``up`` rounds up, for "at least"."""
    value, unit = max(float(nbytes), 0.0), "B"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            break
        value /= 1000
    if unit == "B":
        return f"{np.ceil(value) if up else round(value):.0f} B"
    return f"{np.ceil(value * 10) / 10 if up else value:.1f} {unit}"


def _abandon(f: h5py.File) -> None:
    """Close ``f`` after a failed write without writing anything more into its file.

    HDF5 still holds what the failed write changed (dirty metadata, chunks in its cache)
    and flushes it when the file closes: onto a full disk that fails again, half of it
    may land on the good data, and a failed close leaves h5py's objects half closed (they
    crash the interpreter when garbage-collected). So the file descriptor under HDF5 is
    first pointed at a scratch file in memory; the close writes there and succeeds, and
    the file on disk keeps what its last successful flush left, in which every row marked
    complete is whole. (A reader of the same file in this process shares HDF5's
    descriptor and sees the scratch file from now on; isskit never holds one next to a
    writer.)
    """
    with contextlib.suppress(Exception):
        fd = f.id.get_vfd_handle()
        if hasattr(os, "memfd_create"):
            scratch = os.memfd_create("isskit-abandoned-write")
            os.dup2(scratch, fd)
            os.close(scratch)
        else:  # pragma: no cover - not Linux
            with tempfile.TemporaryFile() as tmp:
                os.dup2(tmp.fileno(), fd)
    with contextlib.suppress(Exception):
        f.close()


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
    """Write a new empty store, atomically: a temporary file renamed into place.

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
        if columns:
            extra = f.create_group("extra")
            for name, values in columns.items():
                extra.create_dataset(name, data=values)
        for key, value in attrs.items():
            f.attrs[key] = value
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


def _open_h5(path: Path, mode: str, **kw) -> h5py.File:
    """Open ``path`` with h5py, turning every failure into a StoreError naming the problem.

    ``kw`` goes to :class:`h5py.File` (the writer turns HDF5's chunk cache off).
    """
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
        return h5py.File(path, mode, locking=False, **kw)
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
    _check_attrs(attrs, path)
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
    return attrs


def _check_attrs(attrs: dict, path: Path) -> None:
    """Refuse numeric root attrs that make no sense, naming the attr, its value and the file.

    Read code turns these into numbers (``float(sigma)``, ``int(num_classes)``), where a
    bad value would fail with a message that names neither the attr nor the file, or,
    worse, not fail.
    """

    def bad(name: str, rule: str) -> StoreError:
        return StoreError(f"stream store {path}: root attr {name} ({attrs[name]!r}) {rule}")

    def is_int(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    try:
        check_sigma(attrs["sigma"])
    except ValueError:
        raise bad("sigma", "must be a finite number > 0") from None
    if not is_int(attrs["num_classes"]) or not 1 <= attrs["num_classes"] <= _MAX_CLASSES:
        raise bad("num_classes", f"must be an integer in [1, {_MAX_CLASSES}] (uint16 labels)")
    if not is_int(attrs["samples_per_image"]) or attrs["samples_per_image"] < 0:
        raise bad("samples_per_image", "must be an integer >= 0")
    if "seed" in attrs and not is_int(attrs["seed"]):
        raise bad("seed", "must be an integer")


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


def _inflate_into(raw: bytes, dest: np.ndarray, chunk_bytes: int) -> None:
    """Inflate one whole deflate-compressed chunk, check it, and copy its head into ``dest``.

    The chunk is inflated to its end even when ``dest`` (a prefix) needs less of it: only
    there does zlib compare the stream's adler32 with what it inflated, so stopping early
    would hand back labels that a flipped bit has changed. The chunk must inflate to exactly
    ``chunk_bytes`` (HDF5 stores edge chunks whole) with nothing after the stream's end.
    Raises ``zlib.error`` saying what is wrong.
    """
    d = zlib.decompressobj()
    data = d.decompress(raw, chunk_bytes)
    if not d.eof:
        # With the output full, zlib may stop before the stream's last code and its adler32;
        # what is left may finish the stream, but must not inflate to one byte more.
        if d.decompress(d.unconsumed_tail, 1):
            raise zlib.error(f"chunk inflates to more than the {chunk_bytes} bytes of a chunk")
        if not d.eof:
            raise zlib.error(
                f"chunk's deflate stream ends early (after {len(data)} of {chunk_bytes} bytes,"
                " no adler32 checksum): truncated"
            )
    if d.unused_data:
        raise zlib.error(f"{len(d.unused_data)} stray bytes after the chunk's deflate stream")
    if len(data) != chunk_bytes:
        raise zlib.error(f"chunk inflated to {len(data)} bytes, expected {chunk_bytes}")
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
                self._mark(rows, False)
            if np.all(np.diff(rows) == 1):
                self._labels[rows[0] : rows[-1] + 1] = labels
            else:
                for j, r in enumerate(rows):
                    self._labels[r] = labels[j]
            for j, r in enumerate(rows):
                self._seconds[r] = seconds[j]
            self._flush()
            self._mark(rows, True)
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
        a newer schema version, datasets with the wrong shapes or dtypes, a numeric root
        attr that makes no sense (naming it, its value and the file), or a true label,
        image index or sampling time no writer makes (naming the dataset, row and file).
        Labels are checked later, as they are read.
    """
    path = Path(path)
    f = _open_h5(path, "r")
    try:
        attrs = _validate(f, path)
        return StreamStore(path, f, attrs)
    except BaseException:
        f.close()
        raise


def is_stream_store(path) -> bool:
    """Whether ``path`` is a file that holds, or may hold, a stream store.

    True for an HDF5 file with a ``schema_version`` root attr and a ``/labels`` dataset
    (valid or not), and for a file with the HDF5 signature that does not open (a store
    too damaged to tell). Writers of other outputs (results, tables, figures) use it to
    never replace one: a store can hold days of sampling.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    bool
        False for a missing file, a folder, or any other file (a netCDF results file too).
    """
    path = Path(path)
    if not path.is_file():
        return False
    try:
        if not h5py.is_hdf5(path):
            return False
        with h5py.File(path, "r", locking=False) as f:
            return "schema_version" in f.attrs and "labels" in f
    except OSError:
        return True


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
        self._check_per_image()

    def _check_per_image(self) -> None:
        """Refuse per-image values no writer makes, naming the dataset, row and file.

        A true label out of range would be scored (ACR, ``--export-cohen``) as a class that
        does not exist, and a doubled image_index would count one image twice.
        """
        K = self.num_classes

        def refuse(name: str, bad: np.ndarray, rule: str) -> None:
            rows = np.flatnonzero(bad)
            if rows.size == 0:
                return
            r = int(rows[0])
            more = f" (and {rows.size - 1} more rows)" if rows.size > 1 else ""
            value = getattr(self, name)[r]
            raise StoreError(
                f"stream store {self.path} is damaged: /{name} of row {r} (image"
                f" {int(self.image_index[r])}) is {value.item()!r}{more}; {rule}"
            )

        refuse("true_label", (self.true_label < 0) | (self.true_label >= K),
               f"true labels must be in [0, num_classes={K})")
        # NaN is a time not measured (synthetic stores); anything else must be a real time.
        refuse("seconds", np.isinf(self.seconds) | (self.seconds < 0),
               "sampling seconds must be finite and >= 0 (NaN for unknown)")
        order = np.argsort(self.image_index, kind="stable")
        doubled = np.flatnonzero(np.diff(self.image_index[order]) == 0)
        if doubled.size:
            first, again = sorted(int(v) for v in order[doubled[0] : doubled[0] + 2])
            raise StoreError(
                f"stream store {self.path} is damaged: /image_index repeats image"
                f" {int(self.image_index[first])} (rows {first} and {again}"
                + (f", and {doubled.size - 1} more repeats" if doubled.size > 1 else "")
                + "); every row must be a different image"
            )

    # -- labels
    def labels(self, rows=slice(None), samples=slice(None)) -> np.ndarray:
        """Read labels of some rows and samples (only the chunks that hold them are inflated).

        Parameters
        ----------
        rows : int, slice or array of int, default all
            Rows to read (any order; an int gives a 1-D result).
        samples : int or slice, default all
            An int ``k`` reads the prefix ``[0, k)``; a slice reads that range.

        Returns
        -------
        ndarray of uint16, shape (rows, samples) (or (samples,) for an int row)

        Raises
        ------
        StoreError
            A damaged chunk or a label >= ``num_classes``, naming the file, row and image.
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
        cols = range(*samples.indices(self.samples_per_image))
        if isinstance(rows, numbers.Integral):
            r = int(rows)
            if not -self.n_images <= r < self.n_images:
                raise StoreError(f"row {r} outside [0, {self.n_images}) in {self.path}")
            read = np.array([r % self.n_images])
        elif isinstance(rows, slice):
            read = np.arange(*rows.indices(self.n_images))
        else:
            idx = np.asarray(rows)
            if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
                raise StoreError(f"rows must be an int, a slice or a 1-D int array, got {rows!r}")
            if idx.size and (idx.min() < 0 or idx.max() >= self.n_images):
                raise StoreError(f"rows outside [0, {self.n_images}) in {self.path}")
            # h5py wants increasing, distinct indices: read those, then reorder.
            read, inverse = np.unique(idx, return_inverse=True)
        # HDF5 inflates whole chunks, so zlib checks each chunk's adler32 on this path too.
        try:
            if read.size == 0:
                out = np.empty((0, len(cols)), dtype=np.uint16)
            elif isinstance(rows, numbers.Integral):
                out = self._labels[int(read[0]), samples]
            elif isinstance(rows, slice):
                out = self._labels[rows, samples]
            else:
                out = self._labels[read, samples]
        except (OSError, RuntimeError) as exc:
            raise self._find_damage(read.tolist(), samples, exc) from None
        self._check_label_range(out, read, cols)
        if isinstance(rows, numbers.Integral | slice) or read.size == 0:
            return out
        return out[inverse]

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
            cores, at most 4. With 1, chunks are inflated in the calling thread; 0 leaves
            all decompression to HDF5. Either way every chunk read is inflated whole and
            its checksum checked. Stores whose filters are not this module's (gzip, no
            shuffle, one row per chunk) are always read through HDF5.

        Yields
        ------
        row_start : int
            Index of the block's first row.
        labels_block : ndarray of uint16, shape (block_rows, samples)
            A fresh array for each block, so a consumer may keep it. Every label is
            below ``num_classes``.

        Raises
        ------
        StoreError
            A damaged chunk (its zlib checksum or size is wrong) or a label >=
            ``num_classes``: the message names the file, the row and its image.
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
                if raw:
                    self._read_raw(pool, start, stop, out)
                elif k:
                    try:
                        # read_direct decompresses straight into the block (no temporary).
                        self._labels.read_direct(
                            out, np.s_[start:stop, 0:k], np.s_[0 : stop - start]
                        )
                    except (OSError, RuntimeError) as exc:
                        raise self._find_damage(range(start, stop), slice(0, k), exc) from None
                self._check_label_range(out, range(start, stop), range(k))
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
        anyway); the pool, if any, inflates them in parallel. Only the chunks that hold
        ``out``'s prefix of each row are read, each inflated whole and checked
        (:func:`_inflate_into`). A chunk that fails is a StoreError naming its row.
        """
        ds = self._labels
        dsid = ds.id
        C = ds.chunks[1]
        chunk_bytes = 2 * C  # one row of C uint16 labels; edge chunks are stored whole
        k = out.shape[1]
        jobs = []
        for r in range(start, stop):
            for c0 in range(0, k, C):
                dest = out[r - start, c0 : min(c0 + C, k)]
                try:
                    try:
                        mask, raw = dsid.read_direct_chunk((r, c0))
                    except RuntimeError:
                        if dsid.get_chunk_info_by_coord((r, c0)).byte_offset is not None:
                            raise
                        dest[:] = ds.fillvalue  # a row never written: HDF5 returns the same
                        continue
                    if mask:  # the filter was skipped for this chunk: let HDF5 read it
                        dest[:] = ds[r, c0 : c0 + dest.size]
                    elif pool is None:
                        _inflate_into(raw, dest, chunk_bytes)
                    else:
                        jobs.append((r, c0, pool.submit(_inflate_into, raw, dest, chunk_bytes)))
                except (OSError, RuntimeError, zlib.error) as exc:
                    raise self._damaged(r, self._chunk_problem(c0, exc)) from None
        for r, c0, job in jobs:
            try:
                job.result()
            except zlib.error as exc:
                raise self._damaged(r, self._chunk_problem(c0, exc)) from None

    # -- checks of what is read
    def _chunk_problem(self, c0: int, exc: Exception) -> str:
        c1 = min(c0 + self._labels.chunks[1], self.samples_per_image)
        return f"its compressed chunk of samples {c0}..{c1} does not read back intact ({exc})"

    def _damaged(self, row: int, why: str) -> StoreError:
        return StoreError(
            f"stream store {self.path} is damaged: /labels row {row}"
            f" (image {int(self.image_index[row])}): {why}"
        )

    def _find_damage(self, rows, samples: slice, exc: Exception) -> StoreError:
        """The error for an HDF5 read of ``rows`` that failed: find the row, one by one.

        HDF5 says only that a filter failed somewhere in the selection; users need the row.
        """
        for r in rows:
            try:
                self._labels[r, samples]
            except (OSError, RuntimeError) as row_exc:
                return self._damaged(r, f"HDF5 cannot read it back ({row_exc})")
        return StoreError(f"cannot read /labels rows {_short(np.asarray(rows))} of {self.path}"
                          f" (damaged?): {exc}")

    def _check_label_range(self, block: np.ndarray, rows, samples) -> None:
        """Refuse labels >= num_classes, naming the first one's row and sample.

        One vectorised max per block (uint16 reads at several GB/s): every reader of the
        labels (replay's index, info's histogram, merge) gets only labels below
        ``num_classes``, so none of them can count a label into another class's (or
        another row's) bin.
        """
        if block.size == 0 or int(block.max()) < self.num_classes:
            return
        block = block.reshape(-1, block.shape[-1])  # a single row (labels(int)) too
        i, q = (int(v) for v in np.argwhere(block >= self.num_classes)[0])
        label = int(block[i, q])
        raise self._damaged(
            rows[i],
            f"label {label} at sample {samples[q]} is not below num_classes ({self.num_classes})",
        )

    # -- summaries
    def seconds_per_sample(self) -> float:
        """Sampling seconds per sample over complete rows.

        NaN when no row is complete, or when a complete row's time is unknown (NaN).
        """
        done = self.complete
        n = int(done.sum()) * self.samples_per_image
        return float(self.seconds[done].sum() / n) if n else float("nan")

    def top_class_frequency(self, max_bytes: int = 16 << 20, *, progress: bool = False):
        """Empirical frequency of each row's most frequent label.

        NaN for incomplete rows, and for every row of a store of ``N = 0`` samples (no
        label, so no frequency).

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
        if N == 0:
            return out
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
            # land in its own stretch of K bins (iter_chunks refuses labels >= K, which
            # would land in the next row's).
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
        The merged store; must not exist yet. It is built under a temporary name in the
        same folder (:func:`isskit._atomic.atomic_path`) and renamed into place only when
        every row is copied, so a merge that fails or is killed leaves no ``out_path``, and
        its temporary is removed by the next merge into ``out_path``.
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
    if any(p.resolve() == out_path.resolve() for p in in_paths):
        raise StoreError(f"merge output {out_path} is also an input")
    if os.path.lexists(out_path):
        raise StoreError(f"merge output {out_path} already exists; refusing to overwrite it")
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
        # Built under a temporary name and renamed only when whole: a merge that fails or
        # is killed leaves no half-merged OUT (that --allow-incomplete would replay) and
        # nothing a rerun would refuse as "already exists".
        with atomic_path(out_path, overwrite=False) as tmp:
            with open_for_writing(
                tmp,
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
