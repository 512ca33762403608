"""isskit's limits and tunables, in one place.

Every module takes these from here, so that a limit (the uint16 labels) is stated once and a
tunable (block sizes, thread counts) is changed in one line. The measurements behind the
values are in bench/RESULTS.md and docs/formats.md.
"""

from __future__ import annotations

__all__: list[str] = []

#: Labels are stored as uint16: at most this many classes.
MAX_CLASSES = 1 << 16

#: Samples per chunk of a store's /labels (one image per chunk; bench/bench_store.py).
CHUNK_SAMPLES = 1 << 17
#: Compression of /labels: gzip level 1 without shuffle won bench/bench_store.py.
COMPRESSION = "gzip"
COMPRESSION_LEVEL = 1

#: Bound on one block of labels read into memory (replay's index, merge, sampling writes).
BLOCK_BYTES = 64 << 20
#: Smaller blocks for summaries (isskit info's top-class frequency).
SUMMARY_BLOCK_BYTES = 16 << 20
#: Most threads that inflate chunks: HDF5 hands chunks over in one thread, so more wait.
MAX_INFLATE_THREADS = 4
#: Policy-images per replay kernel call (bounds the temporary arrays to about 250 MB).
BATCH_CELLS = 2_000_000
