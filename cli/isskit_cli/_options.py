"""Options several commands share, defined once, and what they resolve to.

``isskit psi`` and ``isskit verify`` take the same table parameters
(:func:`psi_table_options`). ``isskit sample`` and ``isskit certify`` take the same model,
data and run options (:func:`model_options`, :func:`run_options`), load the model and the
images the same way (:func:`load_model_data`), report the library's errors alike
(:func:`store_run_errors`) and run on torchrun's ranks alike (:func:`on_ranks`). torch is
imported only inside the functions that run a command, never at import.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import click

from isskit_cli._common import check_output_file, notes, usage_error

__all__ = [
    "DEFAULT_SIGMA",
    "ModelData",
    "check_model_options",
    "check_run_values",
    "check_store_out",
    "load_model_data",
    "merge_command",
    "model_options",
    "on_ranks",
    "own_store",
    "parse_indices",
    "psi_table_options",
    "run_options",
    "store_run_errors",
]


def psi_table_options(f=None, *, several: bool = True):
    """The options ``isskit psi`` and ``isskit verify`` share (the table's parameters).

    ``several``: ``--k-bar`` and ``--U`` take comma lists (psi plots several tables;
    verify checks one). Use as ``@psi_table_options`` or ``@psi_table_options(several=False)``.
    """
    if f is None:
        return lambda g: psi_table_options(g, several=several)
    lists = " A comma list draws several (with --plot)." if several else ""
    options = [
        click.option("--k-bar", "k_bar", required=True, metavar="K",
                     help="Desired sample size k_bar, e.g. 100000 or 1e5." + lists),
        click.option("--U", "U", required=True, metavar="U",
                     help="Maximum decline U: a radius for ad (e.g. 0.05), a fraction in "
                          "(0, 1) for rd (e.g. 0.01)." + lists),
        click.option("--decline", type=click.Choice(["ad", "rd"], case_sensitive=False),
                     required=True, help="Absolute (ad) or relative (rd) radius decline."),
        click.option("--sigma", type=float, required=True,
                     help="Noise level sigma of the smoothed classifier, e.g. 0.5."),
        click.option("--alpha", type=float, default=0.001, show_default=True,
                     help="Failure probability alpha of the certificate."),
        click.option("--delta", type=float, default=0.001, show_default=True,
                     help="Grid step of the table; 1/delta must be an integer."),
        click.option("--mapping", type=click.Choice(["paper", "sup"]), default="paper",
                     show_default=True,
                     help="paper: Eq. 6 as published. sup: k_hat is the largest psi over "
                          "the interval (keeps Prop. 1 for rd; see docs/mapping.md)."),
        click.option("--json", "as_json", is_flag=True,
                     help="Print one JSON object on stdout and nothing else there."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


# --- the model and data of `isskit sample` and `isskit certify` --------------------------

#: Defaults that apply to the embedded default model only (it was trained at sigma 0.25).
DEFAULT_SIGMA = 0.25

#: Bytes per selected index while ``--indices`` is expanded (a Python int in a list,
#: about 40, then its int64 copy): what a range such as 0:10**13 is checked against
#: before it is made.
_BYTES_PER_INDEX = 48
#: Indices are int64 (and seed their rows' noise): a longer one is refused, not overflowed.
_INDEX_MAX = 2**63 - 1


def parse_indices(text: str | None) -> list[int] | None:
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


def model_options(f):
    """The model, data and sigma options of ``sample`` and ``certify`` (before ``--N``)."""
    options = [
        click.option("--model", "model_spec", metavar="PKG.MOD:FACTORY",
                     help="Any model: a factory called with no arguments that returns an "
                          "nn.Module, or a (module, num_classes) tuple. The module maps images "
                          "in [0, 1] pixel units to logits (normalisation included)."),
        click.option("--arch", type=click.Choice(["digits_cnn", "cifar_resnet20",
                                                  "cifar_resnet110", "resnet50"]),
                     help="Architecture of --checkpoint (default: the checkpoint's own "
                          "'arch')."),
        click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path),
                     help="Weights: a checkpoint of Cohen et al.'s training code ({'arch', "
                          "'state_dict'}) or a plain state_dict."),
        click.option("--dataset", type=click.Choice(["digits", "cifar10", "imagenet"]),
                     help="Test images: digits (embedded), cifar10 (torchvision's layout "
                          "under --data-root), imagenet (--data-root/val as an image folder). "
                          "Default: the architecture's dataset, digits otherwise."),
        click.option("--data-root", type=click.Path(path_type=Path),
                     help="Folder of cifar10 or imagenet."),
        click.option("--sigma", type=float,
                     help=f"Noise level in pixel units (> 0). Required except for the "
                          f"embedded default model ({DEFAULT_SIGMA})."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def run_options(f):
    """The batching, image selection, seed and device options of ``sample`` and ``certify``.

    Every spelling survives torchrun's own parser (``--max`` aside, whose launcher-safe
    spelling is ``--max-index``; tests/test_cli_sample.py and test_cli_certify.py check).
    """
    options = [
        click.option("--batch", type=int, default=400, show_default=True,
                     help="Copies per forward pass (the noise does not depend on it, except "
                          "in stores of the earlier isskit-noise-v1 scheme, resumed with their "
                          "own)."),
        click.option("--skip", type=int, default=1, show_default=True,
                     help="Take every K-th image of the dataset (as Cohen et al.'s "
                          "certify.py)."),
        click.option("--max", "--max-index", "max_index", type=int, metavar="M",
                     help="Stop before dataset index M (certify.py's --max). Under torchrun "
                          "write --max-index: torchrun takes --max for its own "
                          "--max-restarts."),
        click.option("--indices", metavar="LIST",
                     help="Explicit dataset indices instead of --skip/--max: '3,8,20:30'."),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Base seed; image i's noise is seeded by a hash of (seed, i)."),
        click.option("--device", help="cpu, cuda, cuda:1, ... (default: CUDA when present)."),
        click.option("--bf16", "--amp", "amp", is_flag=True,
                     help="Run the model under bf16 autocast (GPUs; changes the labels, so it "
                          "is part of the store's model attribute)."),
        click.option("--channels-last", is_flag=True,
                     help="Channels-last memory format (GPUs)."),
        click.option("--num-classes", type=int,
                     help="Number of classes, checked against the model's logits."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def check_model_options(model_spec, arch, checkpoint, indices, skip, max_index,
                        sigma) -> tuple[bool, float]:
    """The combinations of model and selection options that exclude each other; --sigma.

    Returns
    -------
    is_default : bool
        Whether the run is on the embedded default model (no --model, no --checkpoint).
    sigma : float
        --sigma, or the embedded default's :data:`DEFAULT_SIGMA` (required otherwise).
    """
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
    return is_default, sigma


def check_run_values(*, sigma, batch, seed, skip, max_index) -> None:
    """The library's range checks of the values every sampling command takes."""
    from isskit.validate import check_positive_int, check_sigma

    check_sigma(sigma)
    check_positive_int(batch, "batch")
    check_positive_int(seed, "seed", minimum=0)
    check_positive_int(skip, "skip")
    if max_index is not None:
        check_positive_int(max_index, "max_index", minimum=1)


def own_store(out: Path) -> Path:
    """The store this process writes for --out: ``out``, or its rank's under torchrun."""
    from isskit.sampling import distributed_env, rank_path

    rank, world, _ = distributed_env()
    return rank_path(out, rank) if world > 1 else Path(out)


def check_store_out(out: Path) -> None:
    """Refuse an --out that is a folder, or an existing file that is not a store to resume.

    Checked before anything runs: a file in the way is the user's to move (exit status 2),
    not a failure while sampling. Under torchrun the files written are the ranks' own.
    """
    check_output_file(out, "--out")
    if out.is_dir():
        raise click.BadParameter(f"{out} is a folder, not a store file", param_hint="--out")
    from isskit.store import StoreError, open_store

    path = own_store(out)
    if not path.exists():
        return
    try:
        with open_store(path):  # a reader: a live writer's lock is for the writer to meet
            pass
    except StoreError as exc:
        raise click.BadParameter(f"{path} exists and is not a stream store to resume ({exc}); "
                                 "move it away or choose another --out",
                                 param_hint="--out") from None


@contextlib.contextmanager
def store_run_errors() -> Iterator[None]:
    """Library errors of a sampling run, as ``sample`` and ``certify`` report them.

    A store of other parameters, a bad value, a missing file: exit status 2. Another
    process writing the store, a full disk (resumable), a damaged file, a failure inside
    torch, memory: exit status 1 (docs/cli.md, "Exit status and messages").
    """
    from isskit.store import StoreError, StoreLockedError, StoreMismatchError, StoreWriteError

    try:
        with notes():
            yield
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


@dataclasses.dataclass(frozen=True)
class ModelData:
    """The model and the images a sampling command runs on.

    Attributes
    ----------
    loaded : isskit.sampling.models.LoadedModel
        The model, its description and classes.
    data : isskit.sampling.datasets.LoadedDataset
        The dataset and its name.
    selected : ndarray of int64
        The dataset indices to run.
    num_classes : int or None
        --num-classes, else the model's own count.
    """

    loaded: object
    data: object
    selected: object
    num_classes: int | None


def load_model_data(model_spec, arch, checkpoint, dataset, data_root, num_classes, *, skip,
                    max_index, indices) -> ModelData:
    """Load the model (factory, checkpoint or the embedded default) and select the images."""
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
    return ModelData(loaded, data, selected,
                     num_classes if num_classes is not None else loaded.num_classes)


def on_ranks(device, work):
    """Run ``work(rank, world, device)`` on every torchrun rank; rank 0 gets every summary.

    Joins torchrun's process group when there is one (gloo on the CPU, NCCL on GPUs), and
    leaves it whatever happens.

    Returns
    -------
    list or None
        The ranks' summaries (picklable objects) in rank order on rank 0; None elsewhere.
    """
    from isskit import sampling

    rank, world, dev = sampling.init_distributed(device)
    try:
        summary = work(rank, world, dev)
        ranks = [summary]
        if world > 1:
            import torch.distributed as dist

            ranks = [None] * world
            dist.all_gather_object(ranks, summary)
    finally:
        if world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
    return ranks if rank == 0 else None


def merge_command(out, world: int) -> str:
    """The ``isskit merge`` line that joins the rank stores of ``out``."""
    from isskit import sampling

    paths = " ".join(str(sampling.rank_path(out, r)) for r in range(world))
    return f"isskit merge {out} {paths}"
