"""Sampling: run a base classifier on noisy copies of each image, store every label.

* :mod:`~isskit.sampling.sampler`: the sampling loop (``sample_to_store``);
* :mod:`~isskit.sampling.images`: image selection, ranks' shares, the classes check;
* :mod:`~isskit.sampling.noise`: the noise schemes, their seeds, a store's ``noise`` attr;
* :mod:`~isskit.sampling.device`: the device, torch.distributed ranks, memory checks;
* ``_samplers``: the row samplers that run the model on noisy copies, per noise scheme;
* :mod:`~isskit.sampling.certify`: online certification (``certify_to_store``);
* :mod:`~isskit.sampling.models`: the embedded default, architectures, checkpoints (the
  networks themselves in :mod:`~isskit.sampling.networks`);
* :mod:`~isskit.sampling.datasets`: the embedded digits, CIFAR-10, ImageNet folders.

Needs the ``torch`` extra (``pip install 'isskit[torch]'``).
"""

from isskit.sampling.device import (
    check_row_memory,
    distributed_env,
    init_distributed,
    rank_path,
    resolve_device,
)
from isskit.sampling.images import select_indices
from isskit.sampling.noise import (
    NOISE_BLOCK,
    NOISE_SCHEME,
    NOISE_SCHEME_V1,
    block_seed,
    noise_description,
    noise_seed,
    stored_noise_scheme,
)
from isskit.sampling.sampler import SampleRun, sample_row, sample_to_store

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
