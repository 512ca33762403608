"""``isskit merge OUT.h5 IN.h5...``: join the per-rank stores of a multi-GPU run.

All checks (same run, nothing missing or doubled) live in :func:`isskit.store.merge_stores`.
"""

from __future__ import annotations

import click

from isskit_cli._common import (
    check_output_file,
    check_overwrites,
    echo_json,
    library_errors,
    writing,
)

__all__ = ["merge"]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("out", type=click.Path(dir_okay=False, path_type=str))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object on stdout instead of text, and nothing else there.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress bar on stderr while the labels are copied.")
def merge(out: str, inputs: tuple[str, ...], as_json: bool, progress: bool) -> None:
    """Merge the per-rank stream stores INPUTS... into OUT, rows sorted by image index.

    The inputs must come from one run (same sigma, N, model, seed, dataset, classes,
    noise), hold disjoint image indices and be complete; otherwise nothing is written
    and the message names the differing parameters or the missing or doubled images.
    OUT must not exist; it appears only when complete (a failed or killed merge leaves
    none, and a rerun starts afresh). Labels are copied in blocks, so stores larger than
    memory merge.
    Example, after a two-GPU run (torchrun --nproc_per_node 2 -m isskit_cli.main sample
    ... --out run.h5 writes one store per rank):

    \b
        isskit merge run.h5 run.rank0.h5 run.rank1.h5
    """
    from isskit.store import merge_stores, open_store

    check_output_file(out, "OUT")
    check_overwrites([("OUT", out)], [("one of the INPUTS", p) for p in inputs], stores=True)
    with library_errors():
        with writing("OUT", out):
            path = merge_stores(out, inputs, progress=progress)
        with open_store(path) as s:
            summary = s.summary()
    if as_json:
        echo_json({"out": str(path), "inputs": list(inputs), **summary})
        return
    click.echo(
        f"merged {len(inputs)} store(s) into {path}: {summary['n_images']} images x"
        f" {summary['samples_per_image']:,} samples, all complete"
    )
