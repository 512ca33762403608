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

from isskit_cli._common import (
    SAMPLE_SIZE,
    check_output_file,
    echo_json,
    library_errors,
    notes,
    usage_error,
)

__all__ = ["sample"]

#: Defaults that apply to the embedded default model only (it was trained at sigma 0.25).
DEFAULT_SIGMA = 0.25
DEFAULT_N = 10_000

#: Bytes per selected index while ``--indices`` is expanded (a Python int in a list,
#: about 40, then its int64 copy): what a range such as 0:10**13 is checked against
#: before it is made.
_BYTES_PER_INDEX = 48
#: Indices are int64 (and seed their rows' noise): a longer one is refused, not overflowed.
_INDEX_MAX = 2**63 - 1


def _parse_indices(text: str | None) -> list[int] | None:
    """``"0,5,7"`` and ``"10:20"`` / ``"0:100:5"`` (Python ranges) and mixes of them.

    The ranges are sized before they are expanded, against the memory left.
    """
    if text is None:
        return None
    from isskit.validate import check_memory

    parts: list[range] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            bounds = [int(v) for v in part.split(":")]
            if len(bounds) not in (1, 2, 3) or (len(bounds) == 1 and ":" in part):
                raise ValueError
            parts.append(range(*bounds) if len(bounds) > 1 else range(bounds[0], bounds[0] + 1))
        except ValueError:
            raise click.BadParameter(
                f"{part!r} is not an index or a start:stop[:step] range", param_hint="--indices"
            ) from None
        if any(abs(b) > _INDEX_MAX for b in bounds):
            raise click.BadParameter(f"{part!r}: an index must be below 2**63",
                                     param_hint="--indices")
    count = sum(len(r) for r in parts)
    if not count:
        raise click.BadParameter(f"{text!r} selects no image", param_hint="--indices")
    try:
        check_memory(count * _BYTES_PER_INDEX, "indices", text,
                     f"{count:,} indices, {_BYTES_PER_INDEX} bytes each while listed")
    except ValueError as exc:
        raise usage_error(exc) from None
    return [i for r in parts for i in r]


def _check_out(out: Path) -> None:
    """Refuse an --out that is a folder, or an existing file that is not a store to resume.

    Checked before anything runs: a file in the way is the user's to move (exit status 2),
    not a failure while sampling. Under torchrun the files written are the ranks' own.
    """
    check_output_file(out, "--out")
    if out.is_dir():
        raise click.BadParameter(f"{out} is a folder, not a store file", param_hint="--out")
    from isskit.sampling import distributed_env, rank_path
    from isskit.store import StoreError, open_store

    rank, world, _ = distributed_env()
    path = rank_path(out, rank) if world > 1 else out
    if not path.exists():
        return
    try:
        with open_store(path):  # a reader: a live writer's lock is for the writer to meet
            pass
    except StoreError as exc:
        raise click.BadParameter(f"{path} exists and is not a stream store to resume ({exc}); "
                                 "move it away or choose another --out",
                                 param_hint="--out") from None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", "model_spec", metavar="PKG.MOD:FACTORY",
              help="Any model: a factory called with no arguments that returns an "
                   "nn.Module, or a (module, num_classes) tuple. The module maps images in "
                   "[0, 1] pixel units to logits (normalisation included).")
@click.option("--arch", type=click.Choice(["digits_cnn", "cifar_resnet20", "cifar_resnet110",
                                           "resnet50"]),
              help="Architecture of --checkpoint (default: the checkpoint's own 'arch').")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path),
              help="Weights: a checkpoint of Cohen et al.'s training code ({'arch', "
                   "'state_dict'}) or a plain state_dict.")
@click.option("--dataset", type=click.Choice(["digits", "cifar10", "imagenet"]),
              help="Test images: digits (embedded), cifar10 (torchvision's layout under "
                   "--data-root), imagenet (--data-root/val as an image folder). Default: "
                   "the architecture's dataset, digits otherwise.")
@click.option("--data-root", type=click.Path(path_type=Path),
              help="Folder of cifar10 or imagenet.")
@click.option("--sigma", type=float,
              help=f"Noise level in pixel units (> 0). Required except for the embedded "
                   f"default model ({DEFAULT_SIGMA}).")
@click.option("--N", "N", metavar="N", type=SAMPLE_SIZE,
              help=f"Noisy copies per image (the stream length), e.g. 100000 or 1e5. Required "
                   f"except for the embedded default model ({DEFAULT_N}).")
@click.option("--batch", type=int, default=400, show_default=True,
              help="Copies per forward pass (the noise does not depend on it, except in "
                   "stores of the earlier isskit-noise-v1 scheme, resumed with their own).")
@click.option("--skip", type=int, default=1, show_default=True,
              help="Take every K-th image of the dataset (as Cohen et al.'s certify.py).")
@click.option("--max", "--max-index", "max_index", type=int, metavar="M",
              help="Stop before dataset index M (certify.py's --max). Under torchrun write "
                   "--max-index: torchrun takes --max for its own --max-restarts.")
@click.option("--indices", metavar="LIST",
              help="Explicit dataset indices instead of --skip/--max: '3,8,20:30'.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Base seed; image i's noise is seeded by a hash of (seed, i).")
@click.option("--device", help="cpu, cuda, cuda:1, ... (default: CUDA when present).")
@click.option("--bf16", "--amp", "amp", is_flag=True,
              help="Run the model under bf16 autocast (GPUs; changes the labels, so it is "
                   "part of the store's model attribute).")
@click.option("--channels-last", is_flag=True, help="Channels-last memory format (GPUs).")
@click.option("--num-classes", type=int,
              help="Number of classes, checked against the model's logits.")
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
    indices = _parse_indices(indices)
    if model_spec and (arch or checkpoint):
        raise click.UsageError("give either --model or --arch/--checkpoint, not both")
    if arch and not checkpoint:
        raise click.UsageError("--arch needs --checkpoint (the weights to load)")
    if indices is not None and (skip != 1 or max_index is not None):
        raise click.UsageError("--indices excludes --skip and --max/--max-index")
    is_default = not (model_spec or checkpoint)
    if sigma is None:
        if not is_default:
            raise click.UsageError("--sigma is required with --model or --checkpoint")
        sigma = DEFAULT_SIGMA
    if N is None:
        if not is_default:
            raise click.UsageError("--N is required with --model or --checkpoint")
        N = DEFAULT_N

    from isskit import require_extra
    from isskit.store import StoreError, StoreLockedError, StoreMismatchError, StoreWriteError
    from isskit.validate import check_positive_int, check_sample_size, check_sigma

    with library_errors():
        require_extra("torch", "torch", "isskit sample")

    try:
        _check_out(out)
        check_sigma(sigma)
        check_sample_size(N, "N")
        check_positive_int(batch, "batch")
        check_positive_int(seed, "seed", minimum=0)
        check_positive_int(skip, "skip")
        if max_index is not None:
            check_positive_int(max_index, "max_index", minimum=1)
        from isskit.sampling import check_row_memory

        check_row_memory(N)  # up front: before the model and the images are loaded
        with notes():
            result = _run(model_spec, arch, checkpoint, dataset, data_root, sigma, N, batch,
                          skip, max_index, indices, seed, device, amp, channels_last,
                          num_classes, out, progress)
    except StoreWriteError as exc:  # a full disk: runtime, and resumable
        raise click.ClickException(f"{exc}; then run the same command again") from None
    except StoreLockedError as exc:
        raise click.ClickException(str(exc)) from None
    except StoreMismatchError as exc:
        raise usage_error(exc) from None
    except StoreError as exc:  # a damaged existing file, a failed write: runtime
        raise click.ClickException(str(exc)) from None
    except ValueError as exc:
        raise usage_error(exc) from None
    except FileNotFoundError as exc:
        raise click.UsageError(str(exc)) from None
    except MemoryError as exc:
        raise click.ClickException(f"out of memory while sampling: {exc}") from None
    except (OSError, RuntimeError) as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
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
    from isskit.sampling import datasets, models

    if model_spec:
        loaded = models.load_factory(model_spec)
    elif checkpoint:
        loaded = models.load_checkpoint(checkpoint, arch, num_classes=num_classes)
    else:
        loaded = models.default_model()
    if dataset is None:
        dataset = loaded.dataset or "digits"
    data = datasets.load_dataset(dataset, data_root)
    selected = sampling.select_indices(len(data.dataset), skip=skip, max_index=max_index,
                                       indices=indices)

    rank, world, dev = sampling.init_distributed(device)
    try:
        run = sampling.sample_to_store(
            loaded.model, data.dataset, out, sigma=sigma, N=N, batch=batch, seed=seed,
            indices=selected, device=dev, amp=amp, channels_last=channels_last,
            progress=progress, model_description=loaded.description, dataset_name=data.name,
            num_classes=num_classes if num_classes is not None else loaded.num_classes,
            rank=rank, world_size=world,
        )
        summary = {k: (str(v) if isinstance(v, Path) else v)
                   for k, v in dataclasses.asdict(run).items()}
        ranks = [summary]
        if world > 1:
            import torch.distributed as dist

            ranks = [None] * world
            dist.all_gather_object(ranks, summary)
    finally:
        if world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
    if rank != 0:
        return None
    result = {"out": str(out), "sigma": sigma, "N": N, "seed": seed, "batch": batch,
              "model": loaded.description, "dataset": data.name, "ranks": ranks}
    if world > 1:
        paths = " ".join(str(sampling.rank_path(out, r)) for r in range(world))
        result["merge_command"] = f"isskit merge {out} {paths}"
    return result
