"""The stream index: everything the policies need from a store, read in one pass.

:func:`build_index` reads the selected rows of a store in blocks (a prefetch thread reads
and decompresses the next block while the kernels index this one) and
:func:`index_blocks` turns blocks of whole streams into a :class:`StreamIndex`: per image
the mode of every selection prefix and, for the classes chosen, bit vectors with rank
directories that :mod:`isskit.replay._kernels` answers range counts from. A policy whose
selection or fixed budget exceeds the streams' length is refused here, before reading.

This module never prints (progress bars go to stderr, on request) and never imports torch.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from dataclasses import dataclass, field

import numpy as np

from isskit._tunables import BLOCK_BYTES
from isskit.policies import parse_policies
from isskit.progress import progress_bar
from isskit.replay import _kernels

__all__ = [
    "DEFAULT_MAX_BYTES",
    "StreamIndex",
    "build_index",
    "index_blocks",
]

#: Default size of one block of labels read while indexing (a few are held at once).
DEFAULT_MAX_BYTES = BLOCK_BYTES


@dataclass
class StreamIndex:
    """Everything the policies need from a store, read in one pass (:mod:`isskit.replay._kernels`).

    Attributes
    ----------
    n_samples : int
        Samples per stream, N.
    num_classes : int
        Labels are below this.
    rows : ndarray of int64, shape (n,)
        Store rows indexed, in order.
    checkpoints : ndarray of int64, shape (n_cp,)
        Prefix lengths m whose mode is known (selection sizes and N), increasing.
    modes, mode_counts : ndarray of int64, shape (n, n_cp)
        Most frequent label of ``labels[0:m]`` (ties to the smallest) and its count.
    slot : ndarray of int64, shape (n, n_cp)
        Row of ``bits``/``cum`` marking that label, -1 where the checkpoint is N only.
        (Numbering depends on how the store was read in blocks; what a slot holds does not:
        compare indexes with :meth:`same_as`.)
    bits, cum : ndarray
        Bit vectors and rank directories of the slots.
    true_slot : ndarray of int64, shape (n,), or None
        Slot of each image's true label (decision policies that test it: ``staged``,
        ``cs``); None when the index was built without true labels.
    range_modes, range_slots : dict
        Per schedule of selection ranges (key: the policies' ``selection_ranges``), arrays
        of shape (n, K): the most frequent label of each range (ties to the smallest; -1
        where the stream does not hold it) and the slot marking it (-1 likewise).
    """

    n_samples: int
    num_classes: int
    rows: np.ndarray
    checkpoints: np.ndarray
    modes: np.ndarray
    mode_counts: np.ndarray
    slot: np.ndarray
    bits: np.ndarray
    cum: np.ndarray
    true_slot: np.ndarray | None = None
    range_modes: dict = field(default_factory=dict)
    range_slots: dict = field(default_factory=dict)

    def column(self, m: int) -> int:
        """Index of checkpoint ``m``; ValueError if the index was not built for it."""
        j = int(np.searchsorted(self.checkpoints, m))
        if j >= self.checkpoints.size or self.checkpoints[j] != m:
            raise ValueError(
                f"selection size ({m}) is not in this index (built for "
                f"{self.checkpoints.tolist()}); rebuild it with the policy"
            )
        return j

    def same_as(self, other: StreamIndex) -> bool:
        """Whether two indexes hold the same information (slot numbering aside)."""
        if not all(
            np.array_equal(getattr(self, a), getattr(other, a))
            for a in ("rows", "checkpoints", "modes", "mode_counts")
        ) or not np.array_equal(self.slot < 0, other.slot < 0):
            return False
        has = self.slot >= 0
        return bool(
            np.array_equal(self.bits[self.slot[has]], other.bits[other.slot[has]])
            and np.array_equal(self.cum[self.slot[has]], other.cum[other.slot[has]])
        )

    @property
    def top_class(self) -> np.ndarray:
        """Most frequent label of each whole stream."""
        return self.modes[:, self.column(self.n_samples)]

    @property
    def p_A_empirical(self) -> np.ndarray:
        """Frequency of the most frequent label of each whole stream."""
        return self.mode_counts[:, self.column(self.n_samples)] / self.n_samples

    @property
    def nbytes(self) -> int:
        """Memory held by the index arrays."""
        return sum(
            a.nbytes
            for a in (self.rows, self.checkpoints, self.modes, self.mode_counts, self.slot,
                      self.bits, self.cum)
        )


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


def _wanted_slots(wanted, primary_class, first):
    """Slots of the classes ``wanted`` (rows, W) (-1: none) of one block.

    A class equal to the row's primary class (slot = row) reuses it; the others get one new
    slot per distinct (row, class), numbered from ``first``, row by row. Returns the slots
    (rows, W), ``row_start`` (rows + 1,) and the class of each new slot, for
    :func:`isskit.replay._kernels.pack_slots`.
    """
    rows, W = wanted.shape
    slots = np.full((rows, W), -1, np.int64)
    row_of = np.broadcast_to(np.arange(rows, dtype=np.int64)[:, None], (rows, W))
    if primary_class is not None:
        same = (wanted == primary_class[:, None]) & (wanted >= 0)
        slots[same] = row_of[same]
    else:
        same = np.zeros((rows, W), bool)
    new = (wanted >= 0) & ~same
    width = max(int(wanted.max()) + 1, 1) if wanted.size else 1
    keys = row_of[new] * width + wanted[new]
    uniq, inv = np.unique(keys, return_inverse=True)
    slots[new] = first + inv.reshape(-1)
    row_start = np.searchsorted(uniq // width, np.arange(rows + 1), side="left")
    return slots, row_start.astype(np.int64), (uniq % width).astype(np.int64)


def _slots_of_block(modes, need_slot, primary):
    """Slots of a block of rows.

    Row r's first slot is r (its class at checkpoint ``primary``); the other classes chosen
    at checkpoints that need a slot come after the block's rows,
    ``row_extra[r]:row_extra[r + 1]``.

    Returns ``local`` (slot of each row and checkpoint, -1 where none is needed),
    ``row_extra`` and ``extra_class`` (the class of each extra slot).
    """
    rows, n_cp = modes.shape
    local = np.full((rows, n_cp), -1, dtype=np.int64)
    cols = np.flatnonzero(need_slot)
    if primary < 0 or rows == 0:
        return local, np.zeros(rows + 1, np.int64), np.zeros(0, np.int64)
    m = modes[:, cols]
    same = m == modes[:, primary][:, None]
    sub = np.where(same, np.arange(rows)[:, None], -1)
    counts = np.zeros(rows, np.int64)
    extra_class: list[int] = []
    for r in np.flatnonzero(~same.all(axis=1)):  # rare: the pilot's class is unstable
        classes = np.unique(m[r][~same[r]])
        first = rows + len(extra_class)
        extra_class.extend(classes.tolist())
        counts[r] = classes.size
        for c_i, c in enumerate(classes):
            sub[r][m[r] == c] = first + c_i
    local[:, cols] = sub
    row_extra = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return local, row_extra, np.array(extra_class, dtype=np.int64)


def index_blocks(
    blocks, *, n_samples, num_classes, selection_sizes, image_ids=None, rows=None,
    true_labels=None, range_schedules=None,
) -> StreamIndex:
    """Build a :class:`StreamIndex` from blocks of whole streams (the array-level core).

    Parameters
    ----------
    blocks : iterable of ndarray of uint16, shape (rows_b, n_samples)
        Consecutive blocks of the streams to index, in row order.
    n_samples : int
        Samples per stream, N.
    num_classes : int
        Labels must be below this.
    selection_sizes : iterable of int
        Prefix lengths whose mode the policies choose their class from, each in [1, N].
    image_ids : ndarray of int, optional
        Dataset index of each indexed row, for error messages.
    rows : ndarray of int, optional
        Store row of each indexed row (default 0, 1, ...).
    true_labels : ndarray of int, optional
        True label of each indexed row: the index then holds a slot of it
        (:attr:`StreamIndex.true_slot`).
    range_schedules : dict, optional
        ``key -> (starts, width)``: the modes of ``labels[a:a + width]`` for ``a`` in
        ``starts`` and a slot of each (:attr:`StreamIndex.range_modes`, ``range_slots``).

    Returns
    -------
    StreamIndex

    Raises
    ------
    ValueError
        If a label is >= num_classes, or a selection size is out of [1, N].
    """
    n_samples = int(n_samples)
    num_classes = int(num_classes)
    sizes = sorted({int(m) for m in selection_sizes})
    for m in sizes:
        if not 1 <= m <= n_samples:
            raise ValueError(f"selection size ({m}) must be in [1, {n_samples}] (N)")
    cps = np.array(sorted(set(sizes) | {n_samples}), dtype=np.int64)
    need_slot = np.isin(cps, np.array(sizes, dtype=np.int64))
    # the class chosen at the largest selection size gets every row's first slot
    primary = int(np.flatnonzero(need_slot)[-1]) if need_slot.any() else -1
    nw = _kernels.n_words(n_samples)
    modes_l, counts_l, slot_l, bits_l, cum_l = [], [], [], [], []
    schedules = dict(range_schedules or {})
    if true_labels is not None:
        true_labels = np.asarray(true_labels, dtype=np.int64)
    true_l: list = []
    range_l: dict = {key: ([], []) for key in schedules}
    n_done = 0
    n_slots = 0
    for block in blocks:
        block = np.ascontiguousarray(block, dtype=np.uint16)
        if block.ndim != 2 or block.shape[1] != n_samples:
            raise ValueError(f"label block shape ({block.shape}) must be (rows, {n_samples})")
        r = block.shape[0]
        modes = np.empty((r, cps.size), np.int64)
        counts = np.empty((r, cps.size), np.int64)
        bad = np.empty(r, np.int64)
        bits = np.empty((r if primary >= 0 else 0, 8 * nw), np.uint8)
        cum = np.empty((bits.shape[0], nw + 1), np.int32)
        if primary >= 0:
            _kernels.scan_and_pack(block, cps, num_classes, primary, modes, counts, bad,
                                   bits, cum)
        else:
            _kernels.scan_modes(block, cps, num_classes, modes, counts, bad)
        if np.any(bad >= 0):
            i = int(np.flatnonzero(bad >= 0)[0])
            q = int(bad[i])
            row = n_done + i if rows is None else int(rows[n_done + i])
            img = "" if image_ids is None else f", image {int(image_ids[n_done + i])}"
            raise ValueError(
                f"label ({int(block[i, q])}) at sample {q} of store row {row}{img} "
                f"is not below num_classes ({num_classes})"
            )
        local, row_extra, extra_class = _slots_of_block(modes, need_slot, primary)
        if extra_class.size:
            xbits = np.empty((extra_class.size, 8 * nw), np.uint8)
            xcum = np.empty((extra_class.size, nw + 1), np.int32)
            _kernels.pack_slots(block, row_extra, extra_class, xbits, xcum)
            bits = np.concatenate([bits, xbits])
            cum = np.concatenate([cum, xcum])
        # decision policies: the true label and the classes of their selection ranges
        wanted = []
        if true_labels is not None:
            wanted.append(true_labels[n_done : n_done + r, None])
        for starts, width in schedules.values():
            rm = np.empty((r, starts.size), np.int64)
            rc = np.empty((r, starts.size), np.int64)
            _kernels.range_modes(block, starts, width, np.full(r, n_samples, np.int64),
                                 num_classes, rm, rc, bad)
            wanted.append(rm)
        if wanted:
            want = np.concatenate(wanted, axis=1)
            w_slot, w_start, w_class = _wanted_slots(
                want, modes[:, primary] if primary >= 0 else None, bits.shape[0])
            if w_class.size:
                xbits = np.empty((w_class.size, 8 * nw), np.uint8)
                xcum = np.empty((w_class.size, nw + 1), np.int32)
                _kernels.pack_slots(block, w_start, w_class, xbits, xcum)
                bits = np.concatenate([bits, xbits])
                cum = np.concatenate([cum, xcum])
            w_slot = np.where(w_slot >= 0, w_slot + n_slots, -1)
            c = 0
            if true_labels is not None:
                true_l.append(w_slot[:, 0])
                c = 1
            for key, (starts, _) in schedules.items():
                k = starts.size
                range_l[key][0].append(want[:, c : c + k])
                range_l[key][1].append(w_slot[:, c : c + k])
                c += k
        modes_l.append(modes)
        counts_l.append(counts)
        slot_l.append(np.where(local >= 0, local + n_slots, -1))
        bits_l.append(bits)
        cum_l.append(cum)
        n_done += r
        n_slots += bits.shape[0]

    def cat(parts, shape, dtype):
        return np.concatenate(parts) if parts else np.zeros(shape, dtype)

    return StreamIndex(
        n_samples=n_samples,
        num_classes=num_classes,
        rows=np.arange(n_done, dtype=np.int64) if rows is None else np.asarray(rows, np.int64),
        checkpoints=cps,
        modes=cat(modes_l, (0, cps.size), np.int64),
        mode_counts=cat(counts_l, (0, cps.size), np.int64),
        slot=cat(slot_l, (0, cps.size), np.int64),
        bits=cat(bits_l, (0, 8 * nw), np.uint8),
        cum=cat(cum_l, (0, nw + 1), np.int32),
        true_slot=None if true_labels is None else cat(true_l, (0,), np.int64),
        range_modes={key: cat(v[0], (0, schedules[key][0].size), np.int64)
                     for key, v in range_l.items()},
        range_slots={key: cat(v[1], (0, schedules[key][0].size), np.int64)
                     for key, v in range_l.items()},
    )


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
        n_samples=n,
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
