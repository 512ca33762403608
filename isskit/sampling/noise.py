"""The noise of the sampling stage: its schemes, their seeds, and a store's ``noise`` attr.

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
draw, and a row can be extended past the samples drawn
(:class:`isskit.sampling._samplers._BlockSampler` draws it).

Stores made before (``isskit-noise-v1``, :data:`NOISE_SCHEME_V1`) seeded one generator per
image with :func:`noise_seed` ``(seed, image_index)`` and drew ``batch`` samples per
``normal_`` call, so their noise depends on the batch too; they stay readable and are
resumed only with that scheme and batch (:func:`stored_noise_scheme` reads the store's
``noise`` attribute), and never extended past their ``N``. The scheme, with everything it
depends on, is the store's ``noise`` attribute (:func:`noise_description`), and a resume
with any other value is refused by the store.

This module imports no torch: it only names and seeds the noise.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from isskit.validate import check_positive_int

__all__ = [
    "NOISE_BLOCK",
    "NOISE_SCHEME",
    "NOISE_SCHEME_V1",
    "block_seed",
    "noise_description",
    "noise_scheme_of",
    "noise_seed",
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


def _check_extension(out, samples_per_image: int, scheme: str) -> None:
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
    if samples_per_image > old:
        raise StoreMismatchError(
            f"{out} was sampled with {NOISE_SCHEME_V1}, whose noise depends on the batch: "
            f"its rows cannot be extended past N = {old} to N = {samples_per_image}; sample "
            "into a new store (another --out)"
        )
