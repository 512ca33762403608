"""The store's own chunk reader: whole chunks, checksums verified, inflated in a thread pool.

zlib releases the GIL, so several threads inflate the chunks HDF5 hands over; every
chunk is inflated to its end so that its adler32 is checked. Used by
:meth:`isskit.store.StreamStore.iter_chunks` for stores with this package's own filters
(:func:`raw_chunks_readable`); any other store is read through HDF5.
"""

from __future__ import annotations

import os
import zlib

import h5py
import numpy as np

from isskit._tunables import MAX_INFLATE_THREADS

__all__: list[str] = []


def _default_threads() -> int:
    # Capped at 4: HDF5 hands over the compressed chunks in one thread, so more inflaters
    # would mostly wait for it.
    return max(1, min(MAX_INFLATE_THREADS, os.cpu_count() or 1))


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


def raw_chunks_readable(ds: h5py.Dataset) -> bool:
    """Whether ``ds``'s chunks can be inflated here: exactly one filter, deflate, one row each."""
    if ds.chunks is None or ds.chunks[0] != 1 or ds.dtype != np.dtype("<u2"):
        return False
    plist = ds.id.get_create_plist()
    return plist.get_nfilters() == 1 and plist.get_filter(0)[0] == h5py.h5z.FILTER_DEFLATE


def read_raw_rows(ds: h5py.Dataset, pool, start: int, stop: int, out: np.ndarray,
                  damaged) -> None:
    """Read rows ``start:stop`` of ``ds`` into ``out``, inflating chunks in ``pool`` (or here).

    HDF5 hands over the compressed chunks in this thread (h5py serialises its calls
    anyway); the pool, if any, inflates them in parallel. Only the chunks that hold
    ``out``'s prefix of each row are read, each inflated whole and checked
    (:func:`_inflate_into`). A chunk that fails raises ``damaged(row, c0, exc)``, the
    reader's error naming its row and the chunk's first sample ``c0``.
    """
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
                raise damaged(r, c0, exc) from None
    for r, c0, job in jobs:
        try:
            job.result()
        except zlib.error as exc:
            raise damaged(r, c0, exc) from None
