"""Offline replay: certification policies over stored label streams, no model, no GPU.

* :mod:`~isskit.replay.engine`: the stream index, the planner and :func:`replay`;
* :mod:`~isskit.replay._kernels` (numba) and :mod:`~isskit.replay._cbeta`: the compiled queries;
* :mod:`~isskit.replay.metrics`: ACR, certified accuracy, MAD, samples, speed-up;
* :mod:`~isskit.replay.plots`: the figures of a replay (needs the ``plot`` extra).
"""

from isskit.replay.engine import (
    DEFAULT_MAX_BYTES,
    PolicyResult,
    StreamIndex,
    build_index,
    cohen_log_paths,
    evaluate,
    export_cohen,
    index_blocks,
    load_results,
    replay,
    save_results,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "PolicyResult",
    "StreamIndex",
    "build_index",
    "cohen_log_paths",
    "evaluate",
    "export_cohen",
    "index_blocks",
    "load_results",
    "replay",
    "save_results",
]
