"""Merging the per-rank stores of one multi-GPU run into one store, rows by image index."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np

from isskit._atomic import atomic_path
from isskit._tunables import BLOCK_BYTES
from isskit.progress import progress_bar
from isskit.store._create import _check_labels
from isskit.store.reader import StreamStore, open_store
from isskit.store.schema import RUN_PARAMS, StoreError, StoreMismatchError, _same, _short
from isskit.store.writer import open_for_writing

__all__ = [
    "merge_stores",
]

# --------------------------------------------------------------------------------------
# merging

# Attrs that are naturally different between ranks of one run; merge keeps every value.
_PER_RANK = ("rank", "created_at", "device", "isskit_version", "torch_version", "batch_size")


def merge_stores(out_path, in_paths, *, max_bytes: int = BLOCK_BYTES,
                 progress: bool = False) -> Path:
    """Join the per-rank stores of one run into a single store, rows sorted by image_index.

    Parameters
    ----------
    out_path : str or Path
        The merged store; must not exist yet. It is built under a temporary name in the
        same folder (:func:`isskit._atomic.atomic_path`) and renamed into place only when
        every row is copied, so a merge that fails or is killed leaves no ``out_path``, and
        its temporary is removed by the next merge into ``out_path``.
    in_paths : sequence of str or Path
        The per-rank stores: same run parameters (:data:`RUN_PARAMS`), every row complete,
        no image index in two of them. If they carry ``rank`` and ``world_size`` attrs,
        every rank ``0 .. world_size-1`` must be there exactly once.
    max_bytes : int, default 64 MiB
        Memory bound of one copied block.
    progress : bool, default False
        Show a tqdm progress bar (images copied) on stderr.

    Returns
    -------
    Path
        ``out_path``.

    Raises
    ------
    StoreError
        Naming the image indices that are missing (incomplete rows, missing ranks) or
        doubled, or the run parameters that differ.
    """
    out_path = Path(out_path)
    in_paths = [Path(p) for p in in_paths]
    if not in_paths:
        raise StoreError("merge needs at least one input store")
    if any(p.resolve() == out_path.resolve() for p in in_paths):
        raise StoreError(f"merge output {out_path} is also an input")
    if os.path.lexists(out_path):
        raise StoreError(f"merge output {out_path} already exists; refusing to overwrite it")
    with contextlib.ExitStack() as stack:
        stores = [stack.enter_context(open_store(p)) for p in in_paths]
        _check_mergeable(stores)
        first = stores[0]
        all_index = np.concatenate([s.image_index for s in stores])
        all_true = np.concatenate([s.true_label for s in stores])
        order = np.argsort(all_index, kind="stable")
        # out_row[j] = where row j of the concatenated inputs goes in the merged store.
        out_row = np.empty_like(order)
        out_row[order] = np.arange(order.size)

        attrs = {
            k: v for k, v in first.attrs.items() if k not in ("schema_version", "samples_per_image")
        }
        for key in _PER_RANK:
            values = [s.attrs.get(key) for s in stores]
            if any(not _same(v, values[0]) for v in values):
                attrs[key] = json.dumps(values)
        attrs.pop("rank", None)
        attrs.pop("world_size", None)
        attrs["merged_from"] = json.dumps(
            [
                {
                    "path": str(s.path),
                    "rank": s.attrs.get("rank"),
                    "n_images": s.n_images,
                    "created_at": s.attrs.get("created_at"),
                }
                for s in stores
            ]
        )
        attrs["ranks"] = len(stores)
        names = set(first.columns)
        if any(set(s.columns) != names for s in stores):
            raise StoreMismatchError(
                "cannot merge stores with different /extra columns: "
                + ", ".join(f"{s.path}: {sorted(s.columns)}" for s in stores)
            )
        columns = {name: np.concatenate([s.columns[name] for s in stores])[order] for name in names}
        attrs["created_at"] = None  # make_attrs stamps the merge time
        attrs["isskit_version"] = None
        # Built under a temporary name and renamed only when whole: a merge that fails or
        # is killed leaves no half-merged OUT (that --allow-incomplete would replay) and
        # nothing a rerun would refuse as "already exists".
        with atomic_path(out_path, overwrite=False) as tmp:
            with open_for_writing(
                tmp,
                image_index=all_index[order],
                true_label=all_true[order],
                samples_per_image=first.samples_per_image,
                attrs=attrs,
                columns=columns,
            ) as writer:
                bar = None
                if progress:
                    bar = progress_bar(total=order.size, unit="image", desc="merging")
                try:
                    offset = 0
                    for s in stores:
                        for start, block in s.iter_chunks(max_bytes):
                            # a bad label is the input's fault: name it, not the output
                            _check_labels(block, s.samples_per_image, s.num_classes,
                                          f"merge input {s.path}", first_row=start)
                            src = np.arange(start, start + block.shape[0])
                            dst = out_row[offset + src]
                            writer.write_rows_at(dst, block, s.seconds[src], drawn=s.drawn[src])
                            if bar is not None:
                                bar.update(src.size)
                        offset += s.n_images
                finally:
                    if bar is not None:
                        bar.close()
    return out_path


def _check_mergeable(stores: list[StreamStore]) -> None:
    first = stores[0]
    for s in stores[1:]:
        diffs = [
            f"{key}: {first.path} has {first.attrs.get(key)!r}, {s.path} has {s.attrs.get(key)!r}"
            for key in RUN_PARAMS
            if not _same(first.attrs.get(key), s.attrs.get(key))
        ]
        if diffs:
            raise StoreMismatchError(
                "cannot merge stores of different runs:\n  " + "\n  ".join(diffs)
            )
    problems = []
    for s in stores:
        if not s.complete.all():
            problems.append(
                f"{s.path} is incomplete: images {_short(s.image_index[~s.complete], 10)}"
                " are missing (resume that rank first)"
            )
    ranks = [s.attrs.get("rank") for s in stores]
    sizes = {s.attrs.get("world_size") for s in stores}
    if all(r is not None for r in ranks) and len(sizes) == 1 and None not in sizes:
        world = int(next(iter(sizes)))
        missing_ranks = sorted(set(range(world)) - set(ranks))
        if missing_ranks:
            problems.append(f"rank(s) {missing_ranks} of world_size {world} are missing")
        doubled = sorted({r for r in ranks if ranks.count(r) > 1})
        if doubled:
            problems.append(f"rank(s) {doubled} given more than once")
    all_index = np.concatenate([s.image_index for s in stores])
    uniq, counts = np.unique(all_index, return_counts=True)
    if np.any(counts > 1):
        doubled = uniq[counts > 1]
        where = [str(s.path) for s in stores if np.intersect1d(s.image_index, doubled).size]
        problems.append(f"images {_short(doubled, 10)} are doubled (in {', '.join(where)})")
    if problems:
        raise StoreError("cannot merge:\n  " + "\n  ".join(problems))
