"""The row samplers: noisy copies through the model, in batches, one per noise scheme.

:class:`_BlockSampler` (:data:`~isskit.sampling.noise.NOISE_SCHEME`) packs pieces of rows
of any images into forward passes; :class:`_RowSampler` keeps the earlier, batch-dependent
scheme to resume its stores; :func:`_sampler` picks the one of a scheme. Private to
:mod:`isskit.sampling` (the sampling driver and ``certify`` use them).

Never prints; no allocation per batch.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from isskit.sampling.noise import (
    NOISE_BLOCK,
    NOISE_SCHEME,
    NOISE_SCHEME_V1,
    block_seed,
    noise_seed,
)

_NO_CONTEXT = contextlib.nullcontext()


class _RowSampler:
    """Rows under the earlier scheme (:data:`NOISE_SCHEME_V1`), kept to resume its stores.

    One generator per row, ``batch`` samples per draw; buffers preallocated.
    """

    def __init__(
        self, model, shape, *, sigma, samples_per_image, batch, dev, amp, channels_last, seed=0
    ):
        self.model, self.sigma, self.N, self.batch, self.dev = (
            model,
            sigma,
            samples_per_image,
            batch,
            dev,
        )
        self.amp, self.seed = amp, seed
        size = min(batch, samples_per_image)
        # Noise is always drawn into a contiguous NCHW buffer, so that the values and
        # their positions do not depend on the memory format the model runs in.
        self.noise = torch.empty((size, *shape), dtype=torch.float32, device=dev)
        self.inp = None
        if channels_last and len(shape) == 3:
            self.inp = torch.empty_like(self.noise, memory_format=torch.channels_last)
        # argmax lands here on the device; the host sees the row once, at its end.
        self.labels = torch.empty(samples_per_image, dtype=torch.int64, device=dev)
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

    def __init__(
        self, model, shape, *, sigma, seed, batch, dev, amp, channels_last, samples_per_image=None
    ):
        self.model, self.sigma, self.seed, self.batch, self.dev = model, sigma, seed, batch, dev
        self.amp, self.N = amp, samples_per_image
        size = batch if samples_per_image is None else min(batch, samples_per_image)
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
        self.labels = (
            None
            if samples_per_image is None
            else torch.empty(samples_per_image, dtype=torch.int64, device=dev)
        )

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


def _sampler(scheme, model, shape, **kw):
    """The row sampler of a noise scheme."""
    if scheme == NOISE_SCHEME_V1:
        return _RowSampler(model, shape, **kw)
    if scheme != NOISE_SCHEME:
        raise ValueError(f"noise scheme ({scheme!r}) is not one of {NOISE_SCHEME!r}, "
                         f"{NOISE_SCHEME_V1!r}")
    return _BlockSampler(model, shape, **kw)
