"""Which images a run samples, and the checks of the model's classes against them.

The selection options, a rank's share under torchrun, and the model's classes against the
dataset's true labels (``isskit sample`` and ``isskit certify`` alike).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from isskit._tunables import MAX_CLASSES
from isskit.sampling.device import rank_path
from isskit.validate import ArgumentError, check_positive_int

__all__ = ["select_indices"]


def select_indices(n_images: int, *, skip: int = 1, max_index: int | None = None,
                   indices: Sequence[int] | None = None) -> np.ndarray:
    """Dataset indices to sample, chosen like Cohen et al.'s ``certify.py`` or given.

    Parameters
    ----------
    n_images : int
        ``len(dataset)``.
    skip : int
        Take every ``skip``-th image: indices ``0, skip, 2 skip, ...``.
    max_index : int, optional
        Stop before dataset index ``max_index`` (``certify.py``'s ``--max``: its loop
        breaks at ``i == max``, so this bounds the index, not the count of images).
    indices : sequence of int, optional
        Explicit dataset indices, sampled in the order given; excludes ``skip`` and
        ``max_index``.

    Returns
    -------
    numpy.ndarray
        int64 indices, unique, each in ``[0, n_images)``.
    """
    skip = check_positive_int(skip, "skip")
    if indices is not None:
        if skip != 1 or max_index is not None:
            raise ValueError("indices exclude skip and max: give one way of choosing images")
        out = np.asarray(list(indices), dtype=np.int64)
        if out.ndim != 1 or out.size == 0:
            raise ValueError(f"indices ({list(indices)!r}) must be a non-empty list")
        bad = out[(out < 0) | (out >= n_images)]
        if bad.size:
            raise ArgumentError("indices", "{name} ({bad}) out of range: the dataset has "
                                "{n} images (0 .. {last})", bad=bad[:5].tolist(), n=n_images,
                                last=n_images - 1)
        if np.unique(out).size != out.size:
            raise ValueError("indices must not repeat an image")
        return out
    stop = n_images
    if max_index is not None:
        stop = min(n_images, check_positive_int(max_index, "max_index", minimum=1))
    out = np.arange(0, stop, skip, dtype=np.int64)
    if out.size == 0:
        raise ValueError(f"no image selected (dataset of {n_images}, skip {skip}, "
                         f"max {max_index})")
    return out


def _true_labels(dataset, indices: np.ndarray) -> np.ndarray:
    targets = getattr(dataset, "targets", None)
    if targets is not None and len(targets) == len(dataset):
        return np.asarray([int(targets[i]) for i in indices], dtype=np.int64)
    return np.asarray([int(dataset[int(i)][1]) for i in indices], dtype=np.int64)


def _shard(dataset, indices, rank: int, world_size: int, out):
    """The dataset indices of one rank, its store path and their true labels (sample, certify)."""
    selected = select_indices(len(dataset), indices=indices)
    if world_size > 1:
        selected = selected[rank::world_size]
        out = rank_path(out, rank)
        if selected.size == 0:
            raise ValueError(f"rank {rank} of {world_size} has no image: select at least "
                             f"{world_size} images")
    return selected, Path(out), _true_labels(dataset, selected)


def _check_classes(k: int, num_classes, labels_true) -> None:
    """The model's k logits against --num-classes, the uint16 labels and the true labels."""
    if num_classes is not None and int(num_classes) != k:
        raise ArgumentError("num_classes", "{name} ({value}) differs from the model's {k} "
                            "logits", value=num_classes, k=k)
    if k > MAX_CLASSES:
        raise ValueError(f"the model has {k} classes; labels are stored as uint16 "
                         f"(<= {MAX_CLASSES})")
    if labels_true.min() < 0 or labels_true.max() >= k:
        raise ValueError(f"true labels ({labels_true.min()} .. {labels_true.max()}) do not "
                         f"fit the model's {k} classes: does the model fit the dataset?")
