"""Building a :class:`StreamIndex` from blocks of whole streams: modes, slots, bit vectors.

The array-level core of :mod:`isskit.replay.index`: no store, no policy objects.
"""

from __future__ import annotations

import numpy as np

from isskit._renamed import renamed as _renamed
from isskit.replay import _kernels
from isskit.replay._stream_index import StreamIndex

__all__ = ["index_blocks"]


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


@_renamed(n_samples="samples_per_image")
def index_blocks(
    blocks, *, samples_per_image, num_classes, selection_sizes, image_ids=None, rows=None,
    true_labels=None, range_schedules=None,
) -> StreamIndex:
    """Build a :class:`StreamIndex` from blocks of whole streams (the array-level core).

    Parameters
    ----------
    blocks : iterable of ndarray of uint16, shape (rows_b, samples_per_image)
        Consecutive blocks of the streams to index, in row order.
    samples_per_image : int
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
    samples_per_image = int(samples_per_image)
    num_classes = int(num_classes)
    sizes = sorted({int(m) for m in selection_sizes})
    for m in sizes:
        if not 1 <= m <= samples_per_image:
            raise ValueError(f"selection size ({m}) must be in [1, {samples_per_image}] (N)")
    cps = np.array(sorted(set(sizes) | {samples_per_image}), dtype=np.int64)
    need_slot = np.isin(cps, np.array(sizes, dtype=np.int64))
    # the class chosen at the largest selection size gets every row's first slot
    primary = int(np.flatnonzero(need_slot)[-1]) if need_slot.any() else -1
    nw = _kernels.n_words(samples_per_image)
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
        if block.ndim != 2 or block.shape[1] != samples_per_image:
            raise ValueError(
                f"label block shape ({block.shape}) must be (rows, {samples_per_image})"
            )
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
            _kernels.range_modes(block, starts, width, np.full(r, samples_per_image, np.int64),
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
        samples_per_image=samples_per_image,
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
