"""``isskit info STORE.h5``: what a user wants to know first about a stream store.

Reads the store through :mod:`isskit.store` only; never writes to it.
"""

from __future__ import annotations

import itertools
import math

import click
import numpy as np

from isskit_cli._common import echo_json, library_errors

__all__ = ["HIST_EDGES", "info"]

#: Bin edges of the top-class frequency histogram. Most images of a good smoothed model
#: sit near 1 (see data/published/README.md), so the bins narrow towards 1, and a last
#: bin holds the rows whose labels all agree (frequency exactly 1).
HIST_EDGES = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0)


def _histogram(freq: np.ndarray) -> dict:
    done = freq[~np.isnan(freq)]
    below_one = done[done < 1.0]
    counts, _ = np.histogram(below_one, bins=np.asarray(HIST_EDGES))
    labels = [f"[{lo:g}, {hi:g})" for lo, hi in itertools.pairwise(HIST_EDGES)]
    return {
        "bins": [*labels, "= 1"],
        "counts": [*counts.tolist(), int(np.sum(done == 1.0))],
        "mean": float(done.mean()) if done.size else float("nan"),
        "median": float(np.median(done)) if done.size else float("nan"),
    }


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _samples_line(summary) -> str:
    """N, and what the complete rows hold where some were drawn short (isskit certify)."""
    line = f"{summary['samples_per_image']:,} per image (N)"
    d = summary["drawn"]
    if d["rows_below_N"]:
        line += (f"; drawn {d['min']:,} to {d['max']:,} (median {d['median']:,.0f}), "
                 f"{d['rows_below_N']} complete rows below N")
    return line


def _fmt(value, spec: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "unknown"
    return format(value, spec)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("store", type=click.Path(dir_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object on stdout instead of text, and nothing else there.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress bar on stderr while the labels are read.")
def info(store: str, as_json: bool, progress: bool) -> None:
    """Describe the stream store STORE (made by isskit sample, import-log or merge).

    Prints the number of images (complete and incomplete), samples per image, sigma,
    classes, model, dataset, device, sampling seconds per sample, creation time, file
    size and bytes per stored sample, and a histogram of each complete image's
    empirical top-class frequency (read in blocks, so any store fits in memory).
    Never writes to STORE. Examples:

    \b
        isskit info streams.h5
        isskit info streams.h5 --json > streams.json
    """
    from isskit.store import open_store

    with library_errors(), open_store(store) as s:
        summary = s.summary()
        summary["top_class_frequency"] = _histogram(s.top_class_frequency(progress=progress))
    if as_json:
        echo_json(summary)
        return
    hist = summary["top_class_frequency"]
    rows = [
        ("store", summary["path"]),
        ("schema", f"version {summary['schema_version']}, isskit {summary['isskit_version']}"),
        ("created", _fmt(summary["created_at"])),
        (
            "images",
            f"{summary['n_images']} ({summary['complete']} complete,"
            f" {summary['incomplete']} incomplete)",
        ),
        ("samples", _samples_line(summary)),
        ("sigma", _fmt(summary["sigma"], "g")),
        ("classes", str(summary["num_classes"])),
        ("model", _fmt(summary["model"])),
        ("dataset", _fmt(summary["dataset"])),
        ("device", _fmt(summary["device"])),
        ("seed", _fmt(summary["seed"])),
        ("time", f"{_fmt(summary['seconds_per_sample'], '.3g')} s per sample"),
        (
            "size",
            f"{_size(summary['file_bytes'])},"
            f" {_fmt(summary['bytes_per_sample'], '.3f')} bytes per stored sample",
        ),
    ]
    for key, value in rows:
        click.echo(f"{key:<9}{value}")
    click.echo(
        f"top-class frequency over complete images (mean {_fmt(hist['mean'], '.4f')},"
        f" median {_fmt(hist['median'], '.4f')}):"
    )
    peak = max(hist["counts"]) or 1
    for label, count in zip(hist["bins"], hist["counts"], strict=True):
        bar = "#" * round(40 * count / peak)
        click.echo(f"  {label:>14} {count:>8}  {bar}")
