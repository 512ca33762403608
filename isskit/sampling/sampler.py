"""The sampling stage: run a base classifier on N noisy copies of each image, store the labels.

For image ``x`` (pixels in [0, 1]) and noise level ``sigma``, row ``i`` of the store holds
``argmax_c f(x + sigma * z_j)_c`` for ``j = 0 .. N-1`` in draw order, ``z_j ~ N(0, I)``
drawn in the model's input space before normalisation (Cohen et al. 2019: the
normalisation is the model's first layer, :mod:`isskit.sampling.models`). Every policy that
:mod:`isskit.replay` evaluates reads prefixes and ranges of these rows.

Noise, exactly (so a row can be redone bit-for-bit on the same device type), scheme
``isskit-noise-v2`` (:data:`NOISE_SCHEME`), the one new stores get:

* the samples of a row are cut into fixed blocks of :data:`NOISE_BLOCK` samples; block
  ``b`` (samples ``b * NOISE_BLOCK`` up to the next block) is one
  ``Tensor.normal_(generator=g)`` on a float32 ``(NOISE_BLOCK, C, H, W)`` buffer, ``g`` a
  ``torch.Generator`` on the sampling device seeded with :func:`block_seed`
  ``(seed, image_index, b)``: the first 8 bytes (little-endian) of
  ``blake2b(b"isskit-noise-v2:<seed>:<image_index>:<b>", digest_size=8)``, top bit
  cleared; a block is always drawn whole, and only the samples asked for are used;
* ``torch.add(x, z, alpha=sigma)`` is the model input.

The noise of sample t of image i is then a function of (seed, i, t, device type) alone:
model batches may hold pieces of several images and any batch size without changing a
draw, and a row can be extended past the samples drawn (:class:`_BlockSampler`).

Stores made before (``isskit-noise-v1``, :data:`NOISE_SCHEME_V1`) seeded one generator per
image with :func:`noise_seed` ``(seed, image_index)`` and drew ``batch`` samples per
``normal_`` call, so their noise depends on the batch too; they stay readable and are
resumed only with that scheme and batch (:func:`sample_to_store` reads the store's
``noise`` attribute). The scheme, with everything it depends on, is the store's ``noise``
attribute, and a resume with any other value is refused by the store. bf16 autocast
changes the classifier, so the precision is part of the ``model`` attribute.

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
import hashlib
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from isskit._tunables import BLOCK_BYTES, MAX_CLASSES
from isskit.progress import progress_bar
from isskit.store import StoreWriteError, open_for_writing
from isskit.validate import (
    OVERHEAD_BYTES,
    ArgumentError,
    check_memory,
    check_positive_int,
    check_sample_size,
    check_sigma,
)

__all__ = [
    "NOISE_BLOCK",
    "NOISE_SCHEME",
    "NOISE_SCHEME_V1",
    "SampleRun",
    "block_seed",
    "check_row_memory",
    "distributed_env",
    "init_distributed",
    "noise_description",
    "noise_seed",
    "rank_path",
    "resolve_device",
    "sample_row",
    "sample_to_store",
    "select_indices",
    "stored_noise_scheme",
]

#: Version tag of the noise new stores get, hashed into every block's seed.
NOISE_SCHEME = "isskit-noise-v2"
#: The earlier, batch-dependent scheme: read, and resumed only with itself.
NOISE_SCHEME_V1 = "isskit-noise-v1"
#: Samples per noise block of :data:`NOISE_SCHEME`. Part of the scheme (changing it
#: changes every stream). 256 keeps a block's buffer small on ImageNet (154 MB) while a
#: partly used block, drawn whole, costs little against the model's forward passes.
NOISE_BLOCK = 256


def _hash_seed(text: str) -> int:
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def noise_seed(seed: int, image_index: int) -> int:
    """Seed of one image's generator under the earlier scheme, :data:`NOISE_SCHEME_V1`.

    ``blake2b(f"isskit-noise-v1:{seed}:{image_index}", digest_size=8)`` read little-endian,
    top bit cleared (a valid seed for every torch generator). Hashing, rather than, say,
    ``seed + image_index``, keeps the streams of different images and seeds unrelated.
    """
    seed = check_positive_int(seed, "seed", minimum=0)
    image_index = check_positive_int(image_index, "image_index", minimum=0)
    return _hash_seed(f"{NOISE_SCHEME_V1}:{seed}:{image_index}")


def block_seed(seed: int, image_index: int, block: int) -> int:
    """Seed of noise block ``block`` of one image under :data:`NOISE_SCHEME`.

    ``blake2b(f"isskit-noise-v2:{seed}:{image_index}:{block}", digest_size=8)`` read
    little-endian, top bit cleared: blocks, images and seeds get unrelated streams.
    """
    seed = check_positive_int(seed, "seed", minimum=0)
    image_index = check_positive_int(image_index, "image_index", minimum=0)
    block = check_positive_int(block, "block", minimum=0)
    return _hash_seed(f"{NOISE_SCHEME}:{seed}:{image_index}:{block}")


def noise_description(batch: int, device_type: str, scheme: str = NOISE_SCHEME) -> str:
    """The store's ``noise`` attribute: everything the noise of a row depends on.

    ``batch`` enters only the earlier scheme (:data:`NOISE_SCHEME_V1`), whose draws it cut.
    """
    if scheme == NOISE_SCHEME_V1:
        return (
            f"{NOISE_SCHEME_V1}: x + sigma * z in input (pixel) space, z float32 standard "
            f"normal from Tensor.normal_ on a torch.Generator(device={device_type!r}) seeded "
            f"with isskit.sampling.noise_seed(seed, image_index), drawn {batch} samples at a "
            "time in draw order"
        )
    if scheme != NOISE_SCHEME:
        raise ValueError(f"noise scheme ({scheme!r}) is not one of {NOISE_SCHEME!r}, "
                         f"{NOISE_SCHEME_V1!r}")
    return (
        f"{NOISE_SCHEME}: x + sigma * z in input (pixel) space, z float32 standard normal "
        f"drawn in blocks of {NOISE_BLOCK} samples, block b by one Tensor.normal_ on a "
        f"torch.Generator(device={device_type!r}) seeded with "
        "isskit.sampling.block_seed(seed, image_index, b), whatever the batch"
    )


def noise_scheme_of(description) -> str | None:
    """The scheme named by a store's ``noise`` attribute (None for an unknown one)."""
    if not isinstance(description, str):
        return None
    for scheme in (NOISE_SCHEME, NOISE_SCHEME_V1):
        if description.startswith(scheme + ":"):
            return scheme
    return None


def resolve_device(device=None, local_rank: int = 0) -> torch.device:
    """The sampling device: ``device`` if given, else CUDA when present, else the CPU.

    Under torchrun a bare ``"cuda"`` (or no device) means ``cuda:<local_rank>``.

    Raises
    ------
    ValueError
        An unknown device string, or CUDA asked for where there is none.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ArgumentError("device", "{name} ({device!r}) is not a torch device: {exc}",
                            device=device, exc=exc) from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ArgumentError("device", "{name} ({device!r}) asks for CUDA, but torch sees no "
                                "CUDA GPU", device=device)
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
        if dev.index >= torch.cuda.device_count():
            raise ArgumentError("device", "{name} ({dev}) does not exist: torch sees {count} "
                                "CUDA GPU(s)", dev=str(dev), count=torch.cuda.device_count())
    return dev


def _sync(dev: torch.device) -> None:
    # Kernels are queued asynchronously: a clock read without this would time the queue.
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elif dev.type == "mps":
        torch.mps.synchronize()


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


def distributed_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment; ``(0, 1, 0)`` outside it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK ({rank}) and WORLD_SIZE ({world}) from the environment "
                         "are inconsistent")
    return rank, world, local


def init_distributed(device=None) -> tuple[int, int, torch.device]:
    """Join torchrun's process group if there is one; return ``(rank, world_size, device)``.

    NCCL on CUDA, gloo on the CPU; each rank uses ``cuda:<LOCAL_RANK>`` unless ``device``
    names a GPU. Outside torchrun (``WORLD_SIZE`` unset or 1) no group is created.
    The caller destroys the group (``torch.distributed.destroy_process_group``).
    """
    _, world, local = distributed_env()
    dev = resolve_device(device, local_rank=local)
    if world == 1:
        return 0, 1, dev
    import torch.distributed as dist

    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), dev


def rank_path(out, rank: int) -> Path:
    """The store a rank writes: ``streams.h5`` -> ``streams.rank3.h5``."""
    out = Path(out)
    suffix = out.suffix or ".h5"
    return out.with_name(f"{out.stem if out.suffix else out.name}.rank{rank}{suffix}")


_NO_CONTEXT = contextlib.nullcontext()

#: Host bytes per sample of one row in flight: the int64 argmax labels (on the CPU, or
#: copied there from the GPU), their uint16 copy, and that copy stacked into the block
#: the store writes (:class:`_RowSampler`, :class:`_RowGroups`).
_HOST_BYTES_PER_SAMPLE = 8 + 2 + 2
#: Device bytes per sample: the int64 argmax labels of the row stay on the GPU.
_DEVICE_BYTES_PER_SAMPLE = 8


def check_row_memory(N: int, name: str = "N", dev: torch.device | None = None,
                     noise_bytes: int = 0) -> None:
    """Refuse ``N`` before any store exists if one row of it cannot be held in memory.

    A row is sampled whole before it is written: the host holds
    ``_HOST_BYTES_PER_SAMPLE = 12`` bytes per sample; on a CUDA ``dev`` the GPU holds 8
    per sample and the ``noise_bytes`` of the noise buffer, checked against its free
    memory (the model's weights and activations come on top: this bounds from below).
    ``name`` is the argument N came from, for the message.

    Raises
    ------
    ValueError
        Naming ``name`` and ``N``, the memory needed and the memory available.
    """
    check_memory(_HOST_BYTES_PER_SAMPLE * N + OVERHEAD_BYTES, name, N,
                 f"one row of labels in host memory, {_HOST_BYTES_PER_SAMPLE} bytes per sample")
    if dev is not None and dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        check_memory(_DEVICE_BYTES_PER_SAMPLE * N + noise_bytes, name, N,
                     f"one row of labels, {_DEVICE_BYTES_PER_SAMPLE} bytes per sample, and the "
                     "noise batch", free=free, memory=f"{dev} memory")


class _RowSampler:
    """Rows under the earlier scheme (:data:`NOISE_SCHEME_V1`), kept to resume its stores.

    One generator per row, ``batch`` samples per draw; buffers preallocated.
    """

    def __init__(self, model, shape, *, sigma, N, batch, dev, amp, channels_last, seed=0):
        self.model, self.sigma, self.N, self.batch, self.dev = model, sigma, N, batch, dev
        self.amp, self.seed = amp, seed
        size = min(batch, N)
        # Noise is always drawn into a contiguous NCHW buffer, so that the values and
        # their positions do not depend on the memory format the model runs in.
        self.noise = torch.empty((size, *shape), dtype=torch.float32, device=dev)
        self.inp = None
        if channels_last and len(shape) == 3:
            self.inp = torch.empty_like(self.noise, memory_format=torch.channels_last)
        # argmax lands here on the device; the host sees the row once, at its end.
        self.labels = torch.empty(N, dtype=torch.int64, device=dev)
        self.gen = torch.Generator(device=dev)

    def row(self, x: torch.Tensor, image_index: int, bar=None, start: int = 0) -> np.ndarray:
        if start:
            raise ValueError(f"rows of {NOISE_SCHEME_V1} stores cannot be extended (start "
                             f"{start}): their noise depends on the batch")
        x = x.to(self.dev, dtype=torch.float32, non_blocking=True)
        self.gen.manual_seed(noise_seed(self.seed, image_index))
        # autocast is entered once per row, not per batch: entering it costs microseconds
        # that a small model's batch would notice.
        with torch.autocast(self.dev.type, dtype=torch.bfloat16) if self.amp else _NO_CONTEXT:
            for start in range(0, self.N, self.batch):
                b = min(self.batch, self.N - start)
                z = self.noise[:b]
                z.normal_(generator=self.gen)
                inp = torch.add(x, z, alpha=self.sigma,
                                out=z if self.inp is None else self.inp[:b])
                torch.argmax(self.model(inp), dim=1, out=self.labels[start:start + b])
                if bar is not None:
                    bar.update(b)
        return self.labels.cpu().numpy().astype(np.uint16)


class _BlockSampler:
    """Runs the model on pieces of rows under :data:`NOISE_SCHEME`, packed into batches.

    A piece is samples ``[t0, t1)`` of one image; :meth:`run` packs any pieces, of any
    images, into forward passes of ``batch`` samples, so that a policy that draws little
    at a time still keeps the model busy. The noise of each sample comes from its block
    (module docstring), drawn whole into one buffer; the last block drawn is kept, so a
    piece that continues it (the next batch, the next request of a policy) does not draw
    it again. Buffers are preallocated: no allocation per batch.
    """

    def __init__(self, model, shape, *, sigma, seed, batch, dev, amp, channels_last, N=None):
        self.model, self.sigma, self.seed, self.batch, self.dev = model, sigma, seed, batch, dev
        self.amp, self.N = amp, N
        size = batch if N is None else min(batch, N)
        # Noise is drawn into a contiguous NCHW block, so that the values and their
        # positions do not depend on the memory format the model runs in.
        self.block = torch.empty((NOISE_BLOCK, *shape), dtype=torch.float32, device=dev)
        fmt = (torch.channels_last if channels_last and len(shape) == 3
               else torch.contiguous_format)
        self.inp = torch.empty((size, *shape), dtype=torch.float32, device=dev,
                               memory_format=fmt)
        self.out = torch.empty(size, dtype=torch.int64, device=dev)
        self.gen = torch.Generator(device=dev)
        self._held = None  # (image_index, block) now in self.block
        self.labels = None if N is None else torch.empty(N, dtype=torch.int64, device=dev)

    def _fill(self, x, image_index: int, t0: int, t1: int, at: int) -> None:
        """Model inputs of samples [t0, t1) of one image into ``inp[at:]``."""
        B = NOISE_BLOCK
        for b in range(t0 // B, (t1 - 1) // B + 1):
            if self._held != (image_index, b):
                self.gen.manual_seed(block_seed(self.seed, image_index, b))
                self.block.normal_(generator=self.gen)
                self._held = (image_index, b)
            lo, hi = max(t0, b * B) - b * B, min(t1, (b + 1) * B) - b * B
            torch.add(x, self.block[lo:hi], alpha=self.sigma,
                      out=self.inp[at:at + hi - lo])
            at += hi - lo

    def _forward(self, n: int, pieces) -> None:
        torch.argmax(self.model(self.inp[:n]), dim=1, out=self.out[:n])
        for dest, d0, at, k in pieces:
            dest[d0:d0 + k].copy_(self.out[at:at + k])

    def run(self, requests, bar=None) -> None:
        """Label every requested piece, in batches of ``batch`` samples.

        Parameters
        ----------
        requests : iterable of (x, image_index, t0, t1, dest)
            ``x`` the image on the device (float32), ``dest`` an int64 device tensor of
            ``t1 - t0`` elements that receives the labels of samples ``[t0, t1)``.
        bar : tqdm, optional
            Advanced by the samples labelled.
        """
        fill, pieces = 0, []
        with torch.autocast(self.dev.type, dtype=torch.bfloat16) if self.amp else _NO_CONTEXT:
            for x, image_index, t0, t1, dest in requests:
                t = t0
                while t < t1:
                    n = min(t1 - t, self.batch - fill)
                    self._fill(x, image_index, t, t + n, fill)
                    pieces.append((dest, t - t0, fill, n))
                    fill += n
                    t += n
                    if fill == self.batch:
                        self._forward(fill, pieces)
                        fill, pieces = 0, []
                    if bar is not None:
                        bar.update(n)
            if fill:
                self._forward(fill, pieces)

    def row(self, x: torch.Tensor, image_index: int, bar=None, start: int = 0) -> np.ndarray:
        """Labels of samples ``[start, N)`` of one image, as uint16 on the host."""
        x = x.to(self.dev, dtype=torch.float32, non_blocking=True)
        dest = self.labels[start:self.N]
        self.run([(x, image_index, start, self.N, dest)], bar)
        return dest.cpu().numpy().astype(np.uint16)


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


def _prepare(model, dev, channels_last):
    model = model.to(dev).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _probe(model, x, dev, amp) -> int:
    """Run one clean image; return the number of logits (and fail early and clearly)."""
    try:
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16,
                                                    enabled=amp):
            out = model(x.unsqueeze(0).to(dev, dtype=torch.float32))
    except RuntimeError as exc:
        raise ValueError(f"the model fails on an image of shape {tuple(x.shape)} from the "
                         f"dataset (does the model fit the dataset?): {exc}") from exc
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 1:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the model must return logits of shape (batch, classes); it "
                         f"returned {shape}")
    return int(out.shape[1])


def sample_row(model, x, *, sigma: float, N: int, batch: int = 400, seed: int = 0,
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
    N = check_sample_size(N, "N")
    batch = check_positive_int(batch, "batch")
    dev = resolve_device(device)
    model = _prepare(model, dev, channels_last)
    with torch.inference_mode():
        sampler = _sampler(scheme, model, tuple(x.shape), sigma=sigma, N=N, batch=batch,
                           dev=dev, amp=amp, channels_last=channels_last, seed=seed)
        labels = sampler.row(x, image_index)
    return labels


def _sampler(scheme, model, shape, **kw):
    """The row sampler of a noise scheme."""
    if scheme == NOISE_SCHEME_V1:
        return _RowSampler(model, shape, **kw)
    if scheme != NOISE_SCHEME:
        raise ValueError(f"noise scheme ({scheme!r}) is not one of {NOISE_SCHEME!r}, "
                         f"{NOISE_SCHEME_V1!r}")
    return _BlockSampler(model, shape, **kw)


def stored_noise_scheme(out) -> str:
    """The noise scheme to sample ``out`` with: its own if it exists, else the current one.

    An existing store keeps the scheme it was made with (an :data:`NOISE_SCHEME_V1` store
    is resumed with it). For anything else (no store, not a store, a ``noise`` attribute
    naming no known scheme) this is the current scheme, and the writer's own checks
    refuse what does not match it.
    """
    out = Path(out)
    if not out.is_file():
        return NOISE_SCHEME
    from isskit.store import StoreError, open_store

    try:
        with open_store(out) as store:
            noise = store.attrs.get("noise")
    except StoreError:
        return NOISE_SCHEME  # not a store: the writer says what is wrong with it
    return noise_scheme_of(noise) or NOISE_SCHEME


def _check_extension(out, N: int, scheme: str) -> None:
    """Refuse to extend the rows of an :data:`NOISE_SCHEME_V1` store past its ``N``.

    Their noise depends on the batch, so samples past ``N`` cannot be the ones a row of
    the new ``N`` would have drawn. Other stores are widened by the writer
    (``open_for_writing(..., extend=True)``), which refuses schema-1 stores itself.
    """
    if scheme != NOISE_SCHEME_V1 or not Path(out).is_file():
        return
    from isskit.store import StoreError, StoreMismatchError, open_store

    try:
        with open_store(out) as store:
            old = store.samples_per_image
    except StoreError:
        return  # the writer says what is wrong with it
    if N > old:
        raise StoreMismatchError(
            f"{out} was sampled with {NOISE_SCHEME_V1}, whose noise depends on the batch: "
            f"its rows cannot be extended past N = {old} to N = {N}; sample into a new "
            "store (another --out)")


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


def _true_labels(dataset, indices: np.ndarray) -> np.ndarray:
    targets = getattr(dataset, "targets", None)
    if targets is not None and len(targets) == len(dataset):
        return np.asarray([int(targets[i]) for i in indices], dtype=np.int64)
    return np.asarray([int(dataset[int(i)][1]) for i in indices], dtype=np.int64)


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"{dev} ({torch.cuda.get_device_name(dev)})"
    return str(dev)


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


def sample_to_store(model, dataset, out, *, sigma: float, N: int, batch: int = 400,
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
    N : int
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
    N = check_sample_size(N, "N")
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
    _check_extension(out, N, scheme)
    # before the store exists, so a refused N leaves nothing behind
    pixels = 4 * int(np.prod(x0.shape))
    noise_bytes = (pixels * min(batch, N) * (2 if channels_last else 1) if scheme ==
                   NOISE_SCHEME_V1 else pixels * (NOISE_BLOCK + min(batch, N)))
    check_row_memory(N, dev=dev, noise_bytes=noise_bytes)
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
                          samples_per_image=N, attrs=attrs, extend=True) as writer:
        # Rows ``isskit certify`` drew in part are extended to N from where they stop,
        # under this scheme their first samples are those a full row would have.
        drawn = np.where(writer.complete, writer.drawn, 0)
        pending = [int(r) for r in np.flatnonzero(drawn < N)]
        skipped = len(selected) - len(pending)
        bar = progress_bar(
            total=int((N - drawn).sum()), unit="sample", unit_scale=True, smoothing=0.1,
            enabled=progress and rank == 0,
            desc=f"sampling {out.name}" + (f" (rank 0 of {world_size})" if world_size > 1
                                           else ""),
        )
        groups = _RowGroups(writer)
        with bar, torch.inference_mode():
            sampler = _sampler(scheme, model, tuple(x0.shape), sigma=sigma, N=N,
                               batch=batch, dev=dev, amp=amp, channels_last=channels_last,
                               seed=seed)
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
        samples_per_second=(float((N - drawn).sum()) / seconds) if seconds > 0 else 0.0,
        device=str(dev),
        rank=rank,
        world_size=world_size,
    )
