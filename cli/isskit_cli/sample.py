"""``isskit sample``: run a model on N noisy copies of each image and store every label.

Thin layer over :func:`isskit.sampling.sample_to_store`: parses and checks options, loads
the model and the images, reports. torch is imported only when the command runs, so
``isskit --help`` and the other commands never pay for it.

Exit status: 0 done; 2 bad input (bad option values, a missing or mismatched
checkpoint, a missing dataset folder, an unwritable output folder, an existing file at
--out that is not a store to resume, or a store made with other parameters; an N or an
index list larger than memory holds); 1 a failure while running (another process writing
the store, a full disk, an error inside torch). A full disk names the store and the space
to free; the rows already complete are kept and the same command resumes.

Every option keeps its meaning after ``torchrun ... -m isskit_cli.main sample``: torchrun's
own parser takes an unambiguous abbreviation of one of its options anywhere on the line,
and stops at an ambiguous one, so every option here has a spelling that is no
abbreviation of a launcher's (``--max`` is, of ``--max-restarts``: ``--max-index`` is not;
tests/test_cli_sample.py runs every option through torchrun's parser).
"""

from __future__ import annotations

from pathlib import Path

import click

from isskit_cli._common import SAMPLE_SIZE, echo_json, library_errors
from isskit_cli._options import (
    check_model_options,
    check_run_values,
    check_store_out,
    load_model_data,
    merge_command,
    model_options,
    on_ranks,
    parse_indices,
    run_options,
    store_run_errors,
)

__all__ = ["sample"]

#: Defaults that apply to the embedded default model only (it was trained at sigma 0.25).
DEFAULT_N = 10_000


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@model_options
@click.option("--N", "N", metavar="N", type=SAMPLE_SIZE,
              help=f"Noisy copies per image (the stream length), e.g. 100000 or 1e5. Required "
                   f"except for the embedded default model ({DEFAULT_N}).")
@run_options
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="The stream store (HDF5). An existing one with the same parameters is "
                   "resumed; under torchrun each rank writes OUT.rank<r>.h5.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress bar on stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def sample(model_spec, arch, checkpoint, dataset, data_root, sigma, N, batch, skip,
           max_index, indices, seed, device, amp, channels_last, num_classes, out, progress,
           as_json):
    """Run a model on N noisy copies of each image; store every predicted label.

    With no model or dataset options it samples the embedded default: a small CNN
    trained with Gaussian noise (sigma 0.25) on the UCI handwritten digits, over the 359
    digits test images, at sigma 0.25 and N 10000.

    Noise is x + sigma * N(0, I) in pixel units, before the model's normalisation, drawn
    in fixed blocks, each from a generator seeded by (seed, dataset index, block): a row
    is reproducible bit for bit on the same device type, whatever --batch. Killed and
    rerun with the same
    options, it resumes where it stopped. On an existing store of a smaller N (or one
    isskit certify drew in part) it extends every row to --N, with the labels a store
    sampled to --N from the start would hold. Under torchrun each rank samples every
    world_size-th image into OUT.rank<r>.h5; join them with isskit merge.

    \b
    Examples:
      isskit sample --out streams.h5
      isskit sample --arch cifar_resnet110 --checkpoint ckpt.pth.tar
          --data-root ~/data/cifar10 --sigma 0.25 --N 100000 --skip 20 --out c.h5
      torchrun --nproc_per_node 4 -m isskit_cli.main sample --N 100000 --max-index 500
          --out streams.h5
    """
    indices = parse_indices(indices)
    is_default, sigma = check_model_options(model_spec, arch, checkpoint, indices, skip,
                                            max_index, sigma)
    if N is None:
        if not is_default:
            raise click.UsageError("--N is required with --model or --checkpoint")
        N = DEFAULT_N

    from isskit import require_extra
    from isskit.validate import check_sample_size

    with library_errors():
        require_extra("torch", "torch", "isskit sample")

    with store_run_errors():
        check_store_out(out)
        check_run_values(sigma=sigma, batch=batch, seed=seed, skip=skip, max_index=max_index)
        check_sample_size(N, "N")
        from isskit.sampling import check_row_memory

        check_row_memory(N)  # up front: before the model and the images are loaded
        result = _run(model_spec, arch, checkpoint, dataset, data_root, sigma, N, batch,
                      skip, max_index, indices, seed, device, amp, channels_last,
                      num_classes, out, progress)
    if result is None:  # not rank 0
        return
    if as_json:
        echo_json(result)
        return
    for r in result["ranks"]:
        click.echo(
            f"{r['path']}: {r['rows_sampled']} images sampled, {r['rows_skipped']} already "
            f"complete, of {r['n_images']}; N = {N}, sigma = {sigma}; "
            f"{r['samples_per_second']:,.0f} samples/s on {r['device']}"
        )
    if len(result["ranks"]) > 1:
        click.echo("join the rank stores with:  " + result["merge_command"])


def _run(model_spec, arch, checkpoint, dataset, data_root, sigma, N, batch, skip, max_index,
         indices, seed, device, amp, channels_last, num_classes, out, progress):
    import dataclasses

    from isskit import sampling

    md = load_model_data(model_spec, arch, checkpoint, dataset, data_root, num_classes,
                         skip=skip, max_index=max_index, indices=indices)

    def work(rank, world, dev):
        run = sampling.sample_to_store(
            md.loaded.model,
            md.data.dataset,
            out,
            sigma=sigma,
            samples_per_image=N,
            batch=batch,
            seed=seed,
            indices=md.selected,
            device=dev,
            amp=amp,
            channels_last=channels_last,
            progress=progress,
            model_description=md.loaded.description,
            dataset_name=md.data.name,
            num_classes=md.num_classes,
            rank=rank,
            world_size=world,
        )
        return {k: (str(v) if isinstance(v, Path) else v)
                for k, v in dataclasses.asdict(run).items()}

    ranks = on_ranks(device, work)
    if ranks is None:  # not rank 0
        return None
    result = {"out": str(out), "sigma": sigma, "N": N, "seed": seed, "batch": batch,
              "model": md.loaded.description, "dataset": md.data.name, "ranks": ranks}
    if len(ranks) > 1:
        result["merge_command"] = merge_command(out, len(ranks))
    return result
