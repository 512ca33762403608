"""Offline replay: certification policies over stored label streams, no model, no GPU.

* :mod:`~isskit.replay.index`: the stream index, read from a store in one pass;
* :mod:`~isskit.replay.planner`: plans, counts and certificates, :func:`evaluate`;
* :mod:`~isskit.replay.engine`: :func:`replay`, the results Dataset;
* :mod:`~isskit.replay.results`: coordinates, netCDF files and Cohen-format logs of the results;
* :mod:`~isskit.replay._kernels` (numba) and :mod:`~isskit.replay._cbeta`: the compiled queries;
* :mod:`~isskit.replay.metrics`: ACR, certified accuracy, MAD, samples, speed-up;
* :mod:`~isskit.replay.plots`: the figures of a replay (needs the ``plot`` extra).
"""

from isskit.replay.engine import PolicyResult, evaluate, replay
from isskit.replay.index import DEFAULT_MAX_BYTES, StreamIndex, build_index, index_blocks
from isskit.replay.results import (
    cohen_log_paths,
    decision_policies,
    export_cohen,
    load_results,
    save_results,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "PolicyResult",
    "StreamIndex",
    "build_index",
    "cohen_log_paths",
    "decision_policies",
    "evaluate",
    "export_cohen",
    "index_blocks",
    "load_results",
    "replay",
    "save_results",
]
