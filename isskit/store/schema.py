"""The stream store's schema (version 2): layout, root attrs, and the checks a file must pass.

Version 2 adds ``/drawn`` (n_images,) int64: the samples actually drawn for each row
(``isskit certify`` draws only what its policies need; the rest of the row is unused).
A version-1 store (no ``/drawn``) reads as full rows, ``drawn = N``, and is never
rewritten to version 2: its writer only writes full rows.

``/complete`` marks a row whose first ``drawn`` samples are written and flushed, whatever
``N`` is: a complete row with ``drawn < N`` (drawn by ``isskit certify``, or left by
widening a store to a larger ``N``, :mod:`isskit.store._resume`) is extended from
``drawn`` by the next sampler; one being rewritten is unmarked first, so a kill then
leaves it incomplete, and it is redrawn whole (the same noise, the same labels).

Every other module of :mod:`isskit.store` reads and writes through these definitions;
every problem with a file is a :class:`StoreError` (a ``ValueError``) naming the path.
"""

from __future__ import annotations

import numbers
from pathlib import Path

import h5py
import numpy as np

from isskit._tunables import CHUNK_SAMPLES, COMPRESSION, COMPRESSION_LEVEL, MAX_CLASSES
from isskit.validate import check_sigma

__all__ = [
    "RUN_PARAMS",
    "SCHEMA_VERSION",
    "StoreError",
    "StoreLockedError",
    "StoreMismatchError",
    "is_stream_store",
]

#: The schema version this isskit writes, and the newest it reads.
SCHEMA_VERSION = 2

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
_CHUNK_SAMPLES = CHUNK_SAMPLES
_COMPRESSION = COMPRESSION
_COMPRESSION_LEVEL = COMPRESSION_LEVEL

_DATASETS = {
    # name: (number of dimensions, dtype)
    "labels": (2, np.dtype(np.uint16)),
    "image_index": (1, np.dtype(np.int64)),
    "true_label": (1, np.dtype(np.int64)),
    "complete": (1, np.dtype(np.bool_)),
    "seconds": (1, np.dtype(np.float64)),
}
#: Datasets new in a schema version: (name, (number of dimensions, dtype), version).
_DATASETS_SINCE = {"drawn": ((1, np.dtype(np.int64)), 2)}
_REQUIRED_ATTRS = ("schema_version", "samples_per_image", "sigma", "num_classes")
_MAX_CLASSES = MAX_CLASSES


class StoreError(ValueError):
    """A stream store is missing, damaged, foreign, too new, or used the wrong way."""


class StoreMismatchError(StoreError):
    """An existing store was made with different run parameters than the ones given."""


class StoreLockedError(StoreError):
    """Another process is writing the store."""


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
    layout = dict(_DATASETS)
    for name, (spec, since) in _DATASETS_SINCE.items():
        if version >= since:
            if name not in f:
                raise StoreError(f"stream store {path} (schema version {version}) lacks "
                                 f"dataset {name}")
            layout[name] = spec
    for name, (rank, dtype) in layout.items():
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
    for name in ("image_index", "true_label", "complete", "seconds", "drawn"):
        if name not in layout:
            continue
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


def _read_drawn(f: h5py.File, path: Path) -> np.ndarray:
    """``/drawn`` of a validated store (``N`` per row for version 1), each in ``[0, N]``."""
    n, N = f["labels"].shape
    if "drawn" not in f:
        return np.full(n, N, dtype=np.int64)
    drawn = f["drawn"][...]
    bad = np.flatnonzero((drawn < 0) | (drawn > N))
    if bad.size:
        r = int(bad[0])
        raise StoreError(f"stream store {path} is damaged: /drawn of row {r} is "
                         f"{int(drawn[r])}, outside [0, N={N}]")
    return drawn


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
