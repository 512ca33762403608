"""Reading a stream store: opened read-only, checked, labels in blocks of bounded memory.

The chunks are read and inflated by :mod:`._inflate`; the summaries (``isskit info``, the
top-class frequencies) are computed by :mod:`._summary`.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np

from isskit._provenance import file_sha256
from isskit._tunables import BLOCK_BYTES, SUMMARY_BLOCK_BYTES
from isskit.store import _summary
from isskit.store._inflate import _default_threads, raw_chunks_readable, read_raw_rows
from isskit.store.schema import (
    StoreError,
    _open_h5,
    _read_columns,
    _read_drawn,
    _short,
    _validate,
)
from isskit.validate import OVERHEAD_BYTES, check_memory, check_positive_int

__all__ = [
    "StreamStore",
    "open_store",
]

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
            #: Samples drawn per row (``N`` for a full row, and for every row of a schema-1
            #: store); samples past it are unused.
            self.drawn = _read_drawn(f, path)
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

    def rows_per_chunk(self, max_bytes: int = BLOCK_BYTES, samples: int | None = None) -> int:
        """Rows per block of :meth:`iter_chunks` for a memory bound of ``max_bytes``."""
        k = self.samples_per_image if samples is None else samples
        return max(1, int(max_bytes) // max(1, 2 * k))

    def iter_chunks(
        self,
        max_bytes: int = BLOCK_BYTES,
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
        return raw_chunks_readable(self._labels)

    def _read_raw(self, pool, start: int, stop: int, out: np.ndarray) -> None:
        """Read rows ``start:stop`` into ``out``, inflating chunks in ``pool`` (or here)."""
        read_raw_rows(self._labels, pool, start, stop, out,
                      lambda r, c0, exc: self._damaged(r, self._chunk_problem(c0, exc)))

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

    # -- summaries (isskit.store._summary)
    def seconds_per_sample(self) -> float:
        """Sampling seconds per sample over complete rows.

        NaN when no row is complete, or when a complete row's time is unknown (NaN).
        """
        return _summary.seconds_per_sample(self)

    def top_class_frequency(self, max_bytes: int = SUMMARY_BLOCK_BYTES, *,
                            progress: bool = False):
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
        return _summary.top_class_frequency(self, max_bytes, progress=progress)

    def sha256(self) -> str:
        """Hex SHA-256 of the file's bytes."""
        return file_sha256(self.path)

    def summary(self) -> dict:
        """What ``isskit info`` shows: sizes, completeness, run parameters, speed, provenance."""
        return _summary.summary(self)

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
