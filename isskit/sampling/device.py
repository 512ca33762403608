"""Where the sampling runs: the torch device, torchrun's ranks, memory checks, the model.

:func:`resolve_device` and :func:`init_distributed` choose the device (one GPU per rank
under torchrun), :func:`rank_path` names a rank's store, :func:`check_row_memory` refuses
an ``N`` whose row cannot be held before any store exists, and the private helpers put the
model on its device (``_prepare``), run it once on a clean image (``_probe``) and wait for
queued kernels before a clock is read (``_sync``), for the sampler and ``certify`` alike.

Never prints, never downloads.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from isskit._renamed import renamed as _renamed
from isskit.validate import OVERHEAD_BYTES, ArgumentError, check_memory

__all__ = [
    "check_row_memory",
    "distributed_env",
    "init_distributed",
    "rank_path",
    "resolve_device",
]

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


#: Host bytes per sample of one row in flight: the int64 argmax labels (on the CPU, or
#: copied there from the GPU), their uint16 copy, and that copy stacked into the block
#: the store writes (:class:`_RowSampler`, :class:`_RowGroups`).
_HOST_BYTES_PER_SAMPLE = 8 + 2 + 2
#: Device bytes per sample: the int64 argmax labels of the row stay on the GPU.
_DEVICE_BYTES_PER_SAMPLE = 8


@_renamed(N="samples_per_image")
def check_row_memory(samples_per_image: int, name: str = "N", dev: torch.device | None = None,
                     noise_bytes: int = 0, rows: int = 0) -> None:
    """Refuse ``N`` before any store exists if one row of it cannot be held in memory.

    A row is sampled whole before it is written: the host holds
    ``_HOST_BYTES_PER_SAMPLE = 12`` bytes per sample; on a CUDA ``dev`` the GPU holds 8
    per sample and the ``noise_bytes`` of the noise buffer, checked against its free
    memory (the model's weights and activations come on top: this bounds from below).
    ``name`` is the argument N came from, for the message. ``rows``: rows of uint16 labels
    held in host memory besides it (``isskit certify`` keeps a window of rows).

    Raises
    ------
    ValueError
        Naming ``name`` and ``N``, the memory needed and the memory available.
    """
    held = f" and {rows} more rows of uint16 labels" if rows else ""
    check_memory(
        (_HOST_BYTES_PER_SAMPLE + 2 * rows) * samples_per_image + OVERHEAD_BYTES,
        name,
        samples_per_image,
        f"one row of labels in host memory, {_HOST_BYTES_PER_SAMPLE} bytes per sample{held}",
    )
    if dev is not None and dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        check_memory(
            _DEVICE_BYTES_PER_SAMPLE * samples_per_image + noise_bytes,
            name,
            samples_per_image,
            f"one row of labels, {_DEVICE_BYTES_PER_SAMPLE} bytes per sample, and the noise batch",
            free=free,
            memory=f"{dev} memory",
        )


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


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"{dev} ({torch.cuda.get_device_name(dev)})"
    return str(dev)
