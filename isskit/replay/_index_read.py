"""Reading a store into a stream index: the policies' needs, a prefetch thread, the checks.

A policy whose selection or fixed budget exceeds the streams' length is refused here,
before reading.
"""

from __future__ import annotations

import contextlib
import queue
import threading

import numpy as np

from isskit._tunables import BLOCK_BYTES
from isskit.policies import parse_policies
from isskit.progress import progress_bar
from isskit.replay._index_build import index_blocks

__all__ = ["DEFAULT_MAX_BYTES", "build_index"]

#: Default size of one block of labels read while indexing (a few are held at once).
DEFAULT_MAX_BYTES = BLOCK_BYTES


def _selection_sizes(policies) -> list[int]:
    return sorted({p.selection_size for p in policies if p.question == "radius"})


def _range_schedules(policies) -> dict:
    """``selection_ranges -> (starts, width)`` of the decision policies that choose a class."""
    out = {}
    for p in policies:
        ranges = p.selection_ranges if p.question == "decision" else ()
        if ranges and ranges not in out:
            widths = {b - a for a, b in ranges}
            if len(widths) != 1:  # range_modes takes one width (adaptive's n0)
                raise ValueError(f"policy {p.name}: selection ranges of unequal widths")
            out[ranges] = (np.array([a for a, _ in ranges], np.int64), widths.pop())
    return out



def _prefetch(iterator, depth: int = 1):
    """Run ``iterator`` in a thread, ``depth`` items ahead.

    The store's reading and decompression then overlap the kernels, which release the GIL.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def work():
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("done", done))
        except BaseException as exc:  # handed to the consumer, re-raised there
            q.put(("error", exc))

    t = threading.Thread(target=work, name="isskit-prefetch", daemon=True)
    t.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "item":
                yield item
            elif kind == "error":
                raise item
            else:
                return
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                q.get_nowait()
        t.join(timeout=5)


def _store_blocks(store, rows, max_bytes, progress):
    """Blocks of the selected store rows, read in chunks of at most ``max_bytes``."""
    rows = np.asarray(rows, dtype=np.int64)
    all_rows = rows.size == store.n_images and np.array_equal(
        rows, np.arange(store.n_images)
    )
    bar = None
    if progress:
        bar = progress_bar(total=int(rows.size), desc="indexing streams", unit="image",
                           leave=False)
    try:
        for row_start, block in store.iter_chunks(max_bytes=max_bytes):
            stop = row_start + block.shape[0]
            if all_rows:
                sel = block
            else:
                take = rows[(rows >= row_start) & (rows < stop)] - row_start
                if take.size == 0:
                    continue
                sel = block[take]
            if bar is not None:
                bar.update(sel.shape[0])
            yield sel
    finally:
        if bar is not None:
            bar.close()


def build_index(store, policies, *, rows=None, max_bytes=DEFAULT_MAX_BYTES, progress=False):
    """Read a store once and build the index every policy in ``policies`` is answered from.

    Parameters
    ----------
    store : StreamStore
        An open store (:func:`isskit.store.open_store`).
    policies : sequence of Cohen, IAS or ISS
        The policies (their selection sizes become the index's checkpoints).
    rows : array_like of int, optional
        Store rows to index, increasing (default: all).
    max_bytes : int
        Bound on the labels of one block read into memory (at most three blocks are held
        at once: one being read by a thread, one waiting, one being indexed).
    progress : bool
        Show a progress bar on stderr.

    Returns
    -------
    StreamIndex
    """
    policies = parse_policies(policies)
    n = int(store.samples_per_image)
    rows = np.arange(store.n_images, dtype=np.int64) if rows is None else np.asarray(rows)
    _check_static_needs(policies, n, np.asarray(store.image_index)[rows[:1]])
    true_labels = None
    if any(getattr(p, "uses_true_label", False) for p in policies):
        true_labels = _true_labels(store, rows, policies)
    blocks = _prefetch(_store_blocks(store, rows, max_bytes, progress))
    return index_blocks(
        blocks,
        samples_per_image=n,
        num_classes=int(store.num_classes),
        selection_sizes=_selection_sizes(policies),
        image_ids=np.asarray(store.image_index)[rows],
        rows=rows,
        true_labels=true_labels,
        range_schedules=_range_schedules(policies),
    )


def _true_labels(store, rows, policies):
    """The true labels of ``rows``, which ``staged`` and ``cs`` test; refused if unknown."""
    from isskit.validate import ArgumentError

    labels = getattr(store, "true_label", None)
    labels = None if labels is None else np.asarray(labels, dtype=np.int64)[rows]
    if labels is None or np.any((labels < 0) | (labels >= int(store.num_classes))):
        names = ", ".join(p.name for p in policies if getattr(p, "uses_true_label", False))
        raise ArgumentError(
            "policies", "{policy} (in {name}) test(s) the true label, but the store holds no "
            "true label for every image; replay them on a store sampled with its labels, or "
            "use adaptive",
            policy=names)
    return labels


def _too_many(policy, image, need, n, n_bad=1, drawn=None):
    more = f" (and {n_bad - 1} more images)" if n_bad > 1 else ""
    held = (f"each stream holds {n} (N)" if drawn is None or drawn >= n else
            f"its stream holds {drawn} drawn samples (of N = {n})")
    return ValueError(
        f"policy {policy.name} needs {need} samples for image {image}{more}, but "
        f"{held}; sample more, or choose a smaller policy"
    )


def _check_static_needs(policies, n, first_image):
    """Policies whose selection or fixed budget exceeds N fail for every image: say so now."""
    img = int(first_image[0]) if len(first_image) else 0
    for p in policies:
        if p.static_need > n:
            raise _too_many(p, img, p.static_need, n)
