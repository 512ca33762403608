"""The store's own chunk inflater: whole chunks, checksums verified, in a thread pool.

zlib releases the GIL, so several threads inflate the chunks HDF5 hands over; every
chunk is inflated to its end so that its adler32 is checked.
"""

from __future__ import annotations

import os
import zlib

import numpy as np

from isskit._tunables import MAX_INFLATE_THREADS

__all__ = []

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
