"""Sampling: run a base classifier on noisy copies of each image, store every label.

* :mod:`~isskit.sampling.sampler`: the sampling loop, its noise scheme, torch.distributed;
* :mod:`~isskit.sampling.models`: the embedded default, architectures, checkpoints (the
  networks themselves in :mod:`~isskit.sampling.networks`);
* :mod:`~isskit.sampling.datasets`: the embedded digits, CIFAR-10, ImageNet folders.

Needs the ``torch`` extra (``pip install 'isskit[torch]'``).
"""

from isskit.sampling.sampler import (
    NOISE_BLOCK,
    NOISE_SCHEME,
    NOISE_SCHEME_V1,
    SampleRun,
    block_seed,
    check_row_memory,
    distributed_env,
    init_distributed,
    noise_description,
    noise_seed,
    rank_path,
    resolve_device,
    sample_row,
    sample_to_store,
    select_indices,
    stored_noise_scheme,
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
