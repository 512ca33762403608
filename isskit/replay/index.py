"""The stream index: everything the policies need from a store, read in one pass.

:func:`build_index` reads the selected rows of a store in blocks (a prefetch thread reads
and decompresses the next block while the kernels index this one) and
:func:`index_blocks` turns blocks of whole streams into a :class:`StreamIndex`: per image
the mode of every selection prefix and, for the classes chosen, bit vectors with rank
directories that :mod:`isskit.replay._kernels` answers range counts from. A policy whose
selection or fixed budget exceeds the streams' length is refused here, before reading.

This module never prints (progress bars go to stderr, on request) and never imports torch.

One module per job: :mod:`._stream_index` (the index and its queries),
:mod:`._index_build` (blocks of streams to an index, the array core) and
:mod:`._index_read` (a store to an index: the policies' needs, prefetching, checks); this
module is their public face.
"""

from __future__ import annotations

from isskit.replay._index_build import index_blocks
from isskit.replay._index_read import DEFAULT_MAX_BYTES, build_index
from isskit.replay._index_read import _check_static_needs as _check_static_needs
from isskit.replay._index_read import _too_many as _too_many
from isskit.replay._stream_index import StreamIndex

# _check_static_needs and _too_many are private to the package: isskit.replay.engine checks
# each image's needs with them.

__all__ = [
    "DEFAULT_MAX_BYTES",
    "StreamIndex",
    "build_index",
    "index_blocks",
]
