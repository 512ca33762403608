"""The sampling stage: run a base classifier on N noisy copies of each image, store the labels.

For image ``x`` (pixels in [0, 1]) and noise level ``sigma``, row ``i`` of the store holds
``argmax_c f(x + sigma * z_j)_c`` for ``j = 0 .. N-1`` in draw order, ``z_j ~ N(0, I)``
drawn in the model's input space before normalisation (Cohen et al. 2019: the
normalisation is the model's first layer, :mod:`isskit.sampling.models`). Every policy that
:mod:`isskit.replay` evaluates reads prefixes and ranges of these rows.

The noise (scheme ``isskit-noise-v2``, fixed blocks seeded by (seed, image index,
block)) is :mod:`isskit.sampling.noise`; the model runs through the row samplers of
``_samplers`` on the device :mod:`isskit.sampling.device` chooses. bf16 autocast changes
the classifier, so the precision is part of the ``model`` attribute.

Work is never lost: a row is written, flushed and only then marked complete
(:mod:`isskit.store`); a rerun of the same command skips complete rows. Rows that take
less than a quarter of a second are written in groups of about that much work, so a
kill loses at most that (they are redone on resume, to the same bytes). Under ``torchrun``
each rank samples every ``world_size``-th selected image into its own store,
``OUT.rank<r>.h5``; ``isskit merge`` joins them.

Never prints (the progress bar goes to stderr through tqdm and can be switched off);
never downloads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from isskit._renamed import renamed as _renamed
from isskit._tunables import BLOCK_BYTES
from isskit.progress import progress_bar
from isskit.sampling._samplers import _sampler
from isskit.sampling.device import (
    _device_name,
    _prepare,
    _probe,
    _sync,
    check_row_memory,
    resolve_device,
)
from isskit.sampling.images import _check_classes, _shard
from isskit.sampling.noise import (
    NOISE_BLOCK,
    NOISE_SCHEME,
    NOISE_SCHEME_V1,
    _check_extension,
    noise_description,
    stored_noise_scheme,
)
from isskit.store import StoreWriteError, open_for_writing
from isskit.validate import (
    check_positive_int,
    check_sample_size,
    check_sigma,
)

__all__ = [
    "SampleRun",
    "sample_row",
    "sample_to_store",
]


class _RowGroups:
    """Finished rows on their way to the store, written together once they hold enough work.

    A row that took ``max_seconds`` or more is written at once; faster rows are gathered
    until they add up to that, so that the store's per-write cost (two flushes and three
    small writes) does not weigh on a small model whose rows take milliseconds. A kill
    loses at most ``max_seconds`` of sampling; rows are never marked complete before
    they are written (the store marks them after flushing).
    """

    def __init__(self, writer, max_seconds: float = 0.25, max_bytes: int = BLOCK_BYTES):
        self.writer, self.max_seconds, self.max_bytes = writer, max_seconds, max_bytes
        self.rows, self.labels, self.seconds = [], [], []

    def add(self, row: int, labels: np.ndarray, seconds: float) -> None:
        self.rows.append(row)
        self.labels.append(labels)
        self.seconds.append(seconds)
        if (sum(self.seconds) >= self.max_seconds
                or len(self.rows) * labels.nbytes >= self.max_bytes):
            self.flush()

    def flush(self) -> None:
        if self.rows:
            rows, labels, seconds = self.rows, self.labels, self.seconds
            self.rows, self.labels, self.seconds = [], [], []
            self.writer.write_rows_at(np.asarray(rows), np.stack(labels), np.asarray(seconds))


@_renamed(N="samples_per_image")
def sample_row(model, x, *, sigma: float, samples_per_image: int, batch: int = 400, seed: int = 0,
               image_index: int, device=None, amp: bool = False,
               channels_last: bool = False, scheme: str = NOISE_SCHEME) -> np.ndarray:
    """One row: the labels of N noisy copies of image ``x``, as :func:`sample_to_store` stores.

    Parameters
    ----------
    model : torch.nn.Module
        Maps images in pixel units to logits (normalisation included).
    x : torch.Tensor
        One image ``(C, H, W)`` in [0, 1].
    sigma, N, batch, seed, image_index, device, amp, channels_last
        As in :func:`sample_to_store`; ``image_index`` is the dataset index the noise is
        keyed to.
    scheme : str
        The noise scheme, :data:`NOISE_SCHEME` or (as old stores) :data:`NOISE_SCHEME_V1`.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` uint16 labels in draw order.
    """
    sigma = check_sigma(sigma)
    samples_per_image = check_sample_size(samples_per_image, "N")
    batch = check_positive_int(batch, "batch")
    dev = resolve_device(device)
    model = _prepare(model, dev, channels_last)
    with torch.inference_mode():
        sampler = _sampler(
            scheme,
            model,
            tuple(x.shape),
            sigma=sigma,
            samples_per_image=samples_per_image,
            batch=batch,
            dev=dev,
            amp=amp,
            channels_last=channels_last,
            seed=seed,
        )
        labels = sampler.row(x, image_index)
    return labels


@dataclasses.dataclass(frozen=True)
class SampleRun:
    """What one call of :func:`sample_to_store` did.

    Attributes
    ----------
    path : pathlib.Path
        The store written (``OUT.rank<r>.h5`` under torchrun).
    n_images : int
        Rows in that store.
    rows_sampled : int
        Rows sampled by this call.
    rows_skipped : int
        Rows already complete when the call began (a resumed run).
    seconds : float
        Wall seconds spent sampling, summed over the rows of this call.
    samples_per_second : float
        ``rows_sampled * N / seconds`` (0 when nothing was sampled).
    device : str
        The device sampled on.
    rank, world_size : int
        This process's place under torchrun; 0 and 1 otherwise.
    """

    path: Path
    n_images: int
    rows_sampled: int
    rows_skipped: int
    seconds: float
    samples_per_second: float
    device: str
    rank: int = 0
    world_size: int = 1


@_renamed(N="samples_per_image")
def sample_to_store(model, dataset, out, *, sigma: float, samples_per_image: int, batch: int = 400,
                    seed: int = 0, indices: Sequence[int] | None = None, device=None,
                    amp: bool = False, channels_last: bool = False, progress: bool = True,
                    model_description: str | None = None, dataset_name: str | None = None,
                    num_classes: int | None = None, rank: int = 0,
                    world_size: int = 1) -> SampleRun:
    """Sample every selected image N times and write the labels to a stream store.

    Creates ``out`` or resumes it: rows already complete are skipped, the others are
    (re)done from their first sample; complete rows of fewer than N samples (drawn by
    ``isskit certify``) are extended to N. An existing schema-2 store of a smaller N is
    widened to N first, and its rows extended the same way: the labels are those of a
    store sampled to N from the start. Parameters that define the streams (sigma, seed,
    model, dataset, classes, noise, images; N where it is smaller than the store's, or
    the store is schema 1 or of the batch-dependent noise) must match an existing store,
    which refuses otherwise (:class:`isskit.store.StoreMismatchError`).

    Parameters
    ----------
    model : torch.nn.Module
        Maps a batch of images in [0, 1] pixel units to logits; normalisation included
        (:mod:`isskit.sampling.models`).
    dataset : torch.utils.data.Dataset
        ``dataset[i] == (image, label)``, image a float tensor ``(C, H, W)`` in [0, 1].
    out : str or Path
        The store (HDF5).
    sigma : float
        Noise level, > 0, in pixel units.
    samples_per_image : int
        Samples per image (the stream length).
    batch : int
        Noisy copies per forward pass. Part of the noise derivation only for stores of
        the earlier scheme (see the module docstring), which keep it when resumed.
    seed : int
        Base seed (>= 0); block ``b`` of image ``i`` is seeded by ``block_seed(seed, i, b)``.
    indices : sequence of int, optional
        Dataset indices to sample (:func:`select_indices`); all images by default.
    device : str or torch.device, optional
        Defaults to CUDA when present, else the CPU.
    amp : bool
        Run the model under bf16 autocast (fast on recent GPUs; changes the labels).
    channels_last : bool
        Run the model in channels-last memory format (faster convolutions on GPUs).
    progress : bool
        Show a tqdm bar on stderr: samples done, samples/s, ETA, images done.
    model_description : str, optional
        The store's ``model`` attribute (include the checkpoint hash); the precision is
        appended. Defaults to the model's class name.
    dataset_name : str, optional
        The store's ``dataset`` attribute; defaults to the dataset's class name.
    num_classes : int, optional
        Number of logits; found by one forward pass when not given (and checked when given).
    rank, world_size : int
        Under torchrun: this rank samples ``indices[rank::world_size]`` into
        :func:`rank_path` ``(out, rank)``.

    Returns
    -------
    SampleRun

    Raises
    ------
    ValueError
        Bad sigma, N, batch, seed or indices; a model that does not fit the dataset;
        labels outside the model's classes.
    isskit.store.StoreError
        The store exists with other parameters, or another process is writing it.
    isskit.store.StoreWriteError
        A write failed (a full disk names the space to free): the rows marked complete
        are kept, and the same call resumes once the cause is gone.
    """
    sigma = check_sigma(sigma)
    samples_per_image = check_sample_size(samples_per_image, "N")
    batch = check_positive_int(batch, "batch")
    seed = check_positive_int(seed, "seed", minimum=0)
    world_size = check_positive_int(world_size, "world_size")
    rank = check_positive_int(rank, "rank", minimum=0)
    if rank >= world_size:
        raise ValueError(f"rank ({rank}) must be < world_size ({world_size})")
    dev = resolve_device(device)
    selected, out, labels_true = _shard(dataset, indices, rank, world_size, out)

    model = _prepare(model, dev, channels_last)
    x0 = dataset[int(selected[0])][0]
    scheme = stored_noise_scheme(out)
    _check_extension(out, samples_per_image, scheme)
    # before the store exists, so a refused N leaves nothing behind
    pixels = 4 * int(np.prod(x0.shape))
    noise_bytes = (pixels * min(batch, samples_per_image) * (2 if channels_last else 1) if scheme ==
                   NOISE_SCHEME_V1 else pixels * (NOISE_BLOCK + min(batch, samples_per_image)))
    check_row_memory(samples_per_image, dev=dev, noise_bytes=noise_bytes)
    k = _probe(model, x0, dev, amp)
    _check_classes(k, num_classes, labels_true)

    precision = "bf16 autocast" if amp else "float32"
    description = model_description or type(model).__name__
    # The store stamps provenance (isskit version, creation time) and N itself.
    attrs = dict(
        sigma=sigma,
        num_classes=k,
        seed=seed,
        dataset=dataset_name or type(dataset).__name__,
        model=f"{description}; precision {precision}",
        device=_device_name(dev),
        torch_version=str(torch.__version__),  # TorchVersion, a str subclass h5py rejects
        batch_size=batch,
        noise=noise_description(batch, dev.type, scheme),
    )
    if world_size > 1:  # lets isskit merge check that every rank is there exactly once
        attrs.update(rank=rank, world_size=world_size)

    seconds = 0.0
    # A schema-2 store of a smaller N grows to N (extend): its rows are then extended
    # like the rows certify drew in part.
    with open_for_writing(out, image_index=selected, true_label=labels_true,
                          samples_per_image=samples_per_image, attrs=attrs, extend=True) as writer:
        # Rows ``isskit certify`` drew in part are extended to N from where they stop,
        # under this scheme their first samples are those a full row would have.
        drawn = np.where(writer.complete, writer.drawn, 0)
        pending = [int(r) for r in np.flatnonzero(drawn < samples_per_image)]
        skipped = len(selected) - len(pending)
        bar = progress_bar(
            total=int((samples_per_image - drawn).sum()),
            unit="sample",
            unit_scale=True,
            smoothing=0.1,
            enabled=progress and rank == 0,
            desc=f"sampling {out.name}" + (f" (rank 0 of {world_size})" if world_size > 1 else ""),
        )
        groups = _RowGroups(writer)
        with bar, torch.inference_mode():
            sampler = _sampler(
                scheme,
                model,
                tuple(x0.shape),
                sigma=sigma,
                samples_per_image=samples_per_image,
                batch=batch,
                dev=dev,
                amp=amp,
                channels_last=channels_last,
                seed=seed,
            )
            try:
                for done, row in enumerate(pending, start=1):
                    image_index = int(selected[row])
                    x = dataset[image_index][0]
                    _sync(dev)
                    t0 = time.perf_counter()
                    start = int(drawn[row])
                    labels = sampler.row(x, image_index, bar, start=start)
                    if start:
                        labels = np.concatenate([writer.read_row(row, start), labels])
                    _sync(dev)
                    dt = time.perf_counter() - t0
                    groups.add(row, labels, dt)
                    seconds += dt
                    bar.set_postfix_str(f"images {skipped + done}/{len(selected)}",
                                        refresh=False)
            except StoreWriteError:
                raise  # the writer closed itself: the rows it had not written are redone
            except BaseException:
                # Rows sampled before an error or Ctrl-C are whole: keep them.
                with contextlib.suppress(Exception):
                    groups.flush()
                raise
            groups.flush()
    return SampleRun(
        path=out,
        n_images=len(selected),
        rows_sampled=len(pending),
        rows_skipped=skipped,
        seconds=seconds,
        samples_per_second=(float((samples_per_image - drawn).sum()) / seconds)
        if seconds > 0
        else 0.0,
        device=str(dev),
        rank=rank,
        world_size=world_size,
    )
