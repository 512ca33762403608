"""What a store holds, summarised: sampling speed, top-class frequencies, ``isskit info``.

Functions of an open :class:`~isskit.store.StreamStore` (its methods of the same names call
them); labels are read through the store's checked :meth:`~isskit.store.StreamStore.iter_chunks`.
"""

from __future__ import annotations

import numpy as np

from isskit._tunables import SUMMARY_BLOCK_BYTES
from isskit.progress import progress_bar

__all__: list[str] = []


def seconds_per_sample(store) -> float:
    """Sampling seconds per sample over complete rows: :meth:`StreamStore.seconds_per_sample`.

    Per sample *drawn* (``/drawn``): a row of ``isskit certify`` holds fewer than ``N``.
    """
    done = store.complete
    n = int(np.asarray(store.drawn)[done].sum())
    return float(store.seconds[done].sum() / n) if n else float("nan")


def top_class_frequency(store, max_bytes: int = SUMMARY_BLOCK_BYTES, *,
                        progress: bool = False):
    """Frequency of each row's most frequent label: :meth:`StreamStore.top_class_frequency`."""
    out = np.full(store.n_images, np.nan)
    K, N = store.num_classes, store.samples_per_image
    if N == 0:
        return out
    # a block's uint16 labels, their offsets (int32 ones are copied to intp again inside
    # bincount) and its int64 counts, before any is made
    rows = min(store.rows_per_chunk(max_bytes), max(store.n_images, 1))
    per = 2 + (4 + 8 if rows * K < 2**31 else 8)
    store._check_read_memory(rows * (per * N + 8 * K), rows, N,
                             f"labels and their offsets, {per} bytes per sample, and counts")
    blocks = store.iter_chunks(max_bytes)
    if progress:
        per = store.rows_per_chunk(max_bytes)
        blocks = progress_bar(blocks, total=-(-store.n_images // per), unit="block",
                              desc="reading")
    for start, block in blocks:
        b = block.shape[0]
        # One bincount over the whole block: label + K * row makes each row's counts
        # land in its own stretch of K bins (iter_chunks refuses labels >= K, which
        # would land in the next row's).
        dtype = np.int32 if b * K < 2**31 else np.int64  # int32 halves the memory traffic
        offs = block.astype(dtype)
        offs += (K * np.arange(b, dtype=dtype))[:, None]
        drawn = np.asarray(store.drawn[start : start + b], np.int64)
        short = drawn < N
        if short.any():
            # a row of isskit certify holds only its first `drawn` labels: the rest (zeros)
            # goes to one extra bin past every row's, and the frequency is over `drawn`
            offs[np.arange(N)[None, :] >= drawn[:, None]] = b * K
        counts = np.bincount(offs.ravel(), minlength=b * K + 1)[: b * K].reshape(b, K)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + b] = counts.max(axis=1) / drawn
    out[~store.complete] = np.nan
    return out


def summary(store) -> dict:
    """What ``isskit info`` shows: sizes, completeness, run parameters, speed, provenance."""
    n_done = int(store.complete.sum())
    size = store.path.stat().st_size
    drawn = np.asarray(store.drawn)[store.complete]
    stored = int(drawn.sum())  # isskit certify's rows hold fewer than N
    a = store.attrs
    return {
        "path": str(store.path),
        "schema_version": store.schema_version,
        "n_images": store.n_images,
        "complete": n_done,
        "incomplete": store.n_images - n_done,
        "samples_per_image": store.samples_per_image,
        "drawn": {  # samples drawn per complete row (N for every row of a sampled store)
            "total": stored,
            "min": int(drawn.min()) if drawn.size else None,
            "median": float(np.median(drawn)) if drawn.size else None,
            "max": int(drawn.max()) if drawn.size else None,
            "rows_below_N": int((drawn < store.samples_per_image).sum()),
        },
        "sigma": store.sigma,
        "num_classes": store.num_classes,
        "model": a.get("model"),
        "dataset": a.get("dataset"),
        "device": a.get("device"),
        "seed": a.get("seed"),
        "noise": a.get("noise"),
        "seconds_per_sample": store.seconds_per_sample(),
        "created_at": a.get("created_at"),
        "isskit_version": a.get("isskit_version"),
        "file_bytes": size,
        "bytes_per_sample": size / stored if stored else float("nan"),
        "image_index_range": (
            [int(store.image_index.min()), int(store.image_index.max())]
            if store.n_images
            else None
        ),
        "attrs": dict(a),
    }

