"""``isskit replay``: certification policies replayed over a stream store, as a table.

Parses and checks the options, calls :func:`isskit.replay.replay`, prints the paper's
Table 1 layout (or one JSON object), and writes the optional outputs. The heavy imports
(numba kernels, xarray, matplotlib) happen inside the command, so ``--help`` stays light.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import click

from isskit_cli._common import (
    check_output_dir,
    check_output_file,
    check_overwrites,
    echo_json,
    library_errors,
    parse_numbers,
    parse_policy_specs,
    writing,
)

__all__ = ["replay"]

_EPILOG = """\b
Policy SPEC: a kind and key=value pairs, a comma list expanding to the grid,
  "iss decline=ad k_bar=1e5 U=0.05,0.1 k0=1000"   (k0 defaults to k_bar/100)
  "ias n=26000,50000"     "cohen n0=100 n=100000"
or the paper's shorthand, numbers in units of 10,000 samples:
  ISS-AD-10-0.05 (k_bar=100000, U=0.05)   ISS-RD-50-0.01   IAS-2.6 (n=26000)   Cohen-10
  "budget B=26000 k0=300"   "budget price=1e-6 k0=300"   (replay reports the price a B implied)
ISS keys: k_bar U decline k0 delta alpha fresh mapping; IAS: n alpha; Cohen: n0 n alpha;
budget: k0 price B alpha k_max.
Decision policies ("certified at r?"; tuples written 1000/10000):
  "adaptive r=0.25,0.5 stages=1000/10000/125000"   "cs r=0.5 method=kt,union"   "staged r=0.5"
adaptive keys: r n0 stages alpha beta; staged: r stages alpha; cs: r method alpha n_max faithful.

\b
Examples:
  isskit replay streams.h5 --policy ISS-AD-10-0.05 --policy IAS-10 --policy IAS-2.6
  isskit replay streams.h5 -p "iss decline=ad,rd k_bar=1e5 U=0.01,0.05,0.1" \\
      -p "ias n=1e4,2e4,5e4,1e5" --out results.nc --plot figs/ --export-cohen logs/
"""


def _radii(text):
    if text is None:
        return None
    items = [t for t in text.split(",") if t.strip()]  # a trailing comma is harmless
    if not items:
        raise click.BadParameter(f"{text!r} names no radius", param_hint="--radii")
    with library_errors():  # a bad entry is said with --radii
        return parse_numbers(",".join(items), "radii")


def _fmt(x, spec):
    """``format(x, spec)``; NaN (unknown) as "-" and inf as "inf", padded to the width."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        text = "inf" if x is not None and x == math.inf else "-"
        return text.rjust(int(re.match(r"\d*", spec).group() or 0))
    return format(x, spec)


def _table_radii(grid, limit=10):
    """At most ``limit`` evenly spread radii of the grid for the printed table."""
    if grid.size <= limit:
        return list(range(grid.size))
    step = math.ceil(grid.size / limit)
    return list(range(0, grid.size, step))


def _decision_table(ds) -> str:
    """The decision policies' block: r, CA(r), the reference's CA(r), undecided, samples."""
    import numpy as np

    from isskit.replay import decision_policies

    rows = np.flatnonzero(decision_policies(ds))
    width = max([len("Policy")] + [len(str(ds.policy.values[i])) for i in rows])
    vwidth = max([len("Validity")] + [len(str(ds.validity.values[i])) for i in rows])
    head = (f"{'Policy':<{width}}  {'Validity':<{vwidth}}  {'r':>5}  {'CA(r)':>6}  "
            f"{'Ref CA(r)':>9}  {'Undecided':>9}  {'Avg samples':>11}  {'Time (min)':>10}  "
            f"{'Speed-up':>8}")
    lines = [head, "-" * len(head)]
    for i in rows:
        lines.append(
            f"{ds.policy.values[i]!s:<{width}}  {ds.validity.values[i]!s:<{vwidth}}  "
            f"{float(ds.r[i]):5.2f}  {100 * float(ds.certified_accuracy_at_r[i]):6.1f}  "
            f"{100 * float(ds.reference_certified_accuracy_at_r[i]):9.1f}  "
            f"{100 * float(ds.undecided[i]):9.1f}  "
            f"{_fmt(float(ds.mean_samples[i]), '11.0f')}  "
            f"{_fmt(float(ds.est_minutes[i]), '10.1f')}  {_fmt(float(ds.speedup[i]), '7.2f')}x"
        )
    return "\n".join(lines)


def _table(ds) -> str:
    import numpy as np

    from isskit.replay import decision_policies

    radius_rows = np.flatnonzero(~decision_policies(ds))
    cols = _table_radii(ds.radius_grid.values)
    radii = ds.radius_grid.values[cols]
    width = max([len("Policy")] + [len(str(p)) for p in ds.policy.values])
    vwidth = max([len("Validity")] + [len(str(v)) for v in ds.validity.values])
    head = (
        f"{'Policy':<{width}}  {'Validity':<{vwidth}}  {'Avg samples':>11}  "
        f"{'Time (min)':>10}  {'Speed-up':>8}  "
        f"{'MAD':>6}  {'ACR':>6}  " + "  ".join(f"{r:>6.2f}" for r in radii)
    )
    lines = [head, "-" * len(head)]
    for i in radius_rows:
        name = ds.policy.values[i]
        ca = ds.certified_accuracy.values[i, cols] * 100
        lines.append(
            f"{name!s:<{width}}  {ds.validity.values[i]!s:<{vwidth}}  "
            f"{_fmt(float(ds.mean_samples[i]), '11.0f')}  "
            f"{_fmt(float(ds.est_minutes[i]), '10.1f')}  {_fmt(float(ds.speedup[i]), '7.2f')}x  "
            f"{_fmt(float(ds.mad[i]), '6.3f')}  {float(ds.acr[i]):6.3f}  "
            + "  ".join(f"{v:6.1f}" for v in ca)
        )
    return "\n".join(lines)


#: Per-policy keys of ``--oracle`` (isskit.studies.oracle.COMPARISON_KEYS), in print order.
_ORACLE_KEYS = ("ias_acr_same_samples", "oracle_blind_acr", "oracle_aware_acr",
                "share_blind", "share_aware")

_P_SOURCES = {
    "stored": "p_A: the true value stored per image (/extra/p_A)",
    "empirical": "p_A: not stored; the empirical frequency of the top class over the whole "
                 "stream stands in for it",
}


def _oracle_table(ds) -> str:
    """The ``--oracle`` block: each radius policy against IAS and both oracles."""
    import numpy as np

    from isskit.replay import decision_policies

    rows = np.flatnonzero(~decision_policies(ds))
    width = max([len("Policy")] + [len(str(ds.policy.values[i])) for i in rows])
    head = (f"{'Policy':<{width}}  {'Avg samples':>11}  {'ACR':>6}  {'IAS ACR':>7}  "
            f"{'Blind':>6}  {'Aware':>6}  {'Share blind':>11}  {'Share aware':>11}")
    lines = [head, "-" * len(head)]
    for i in rows:
        lines.append(
            f"{ds.policy.values[i]!s:<{width}}  {_fmt(float(ds.mean_samples[i]), '11.0f')}  "
            f"{float(ds.acr[i]):6.3f}  {_fmt(float(ds.ias_acr_same_samples[i]), '7.3f')}  "
            f"{_fmt(float(ds.oracle_blind_acr[i]), '6.3f')}  "
            f"{_fmt(float(ds.oracle_aware_acr[i]), '6.3f')}  "
            f"{_fmt(100 * float(ds.share_blind[i]), '10.1f')}%  "
            f"{_fmt(100 * float(ds.share_aware[i]), '10.1f')}%"
        )
    return "\n".join(lines)


def _oracle_row(ds, i, decision) -> dict:
    if "share_blind" not in ds:
        return {}
    # decision policies have no ACR to compare: null, not a number
    return {key: None if decision else float(ds[key][i]) for key in _ORACLE_KEYS}


def _summary(ds, policies, extra) -> dict:
    """The ``--json`` object; ``policies`` are the objects replayed, in ``ds.policy`` order."""
    import numpy as np

    from isskit.replay import decision_policies

    rows = []
    decision = decision_policies(ds)
    for i, (name, policy) in enumerate(zip(ds.policy.values, policies, strict=True)):
        row = {}
        if decision[i]:
            row = {
                "r": float(ds.r[i]),
                "certified_accuracy_at_r": float(ds.certified_accuracy_at_r[i]),
                "undecided": float(ds.undecided[i]),
                "reference_certified_accuracy_at_r":
                    float(ds.reference_certified_accuracy_at_r[i]),
            }
        rows.append(
            {
                "name": str(name),
                "params": policy.params(),
                "validity": policy.validity,
                "reference": str(ds.reference.values[i]),
                "acr": float(ds.acr[i]),
                "mad": float(ds.mad[i]),
                "mean_samples": float(ds.mean_samples[i]),
                "total_samples": int(ds.total_samples[i]),
                "est_minutes": float(ds.est_minutes[i]),
                "speedup": float(ds.speedup[i]),
                "certified_accuracy": [float(v) for v in ds.certified_accuracy.values[i]],
                **({"price": float(ds.price[i])} if "price" in ds.coords else {}),
                **_oracle_row(ds, i, decision[i]),
                **row,
            }
        )
    a = ds.attrs
    return {
        "store": a.get("store_path"),
        "store_sha256": a.get("store_sha256"),
        "n_images": int(ds.sizes["image"]),
        "n_images_left_out": int(a.get("n_images_left_out", 0)),
        "sigma": float(a["sigma"]),
        "samples_per_image": int(a["samples_per_image"]),
        "seconds_per_sample": float(a["seconds_per_sample"]),
        "seconds_per_sample_source": a.get("seconds_per_sample_source"),
        "radius_grid": np.asarray(ds.radius_grid.values).tolist(),
        "policies": rows,
        **({"p_source": a["p_source"]} if "p_source" in a else {}),
        **extra,
    }


@click.command("replay", epilog=_EPILOG)
@click.argument("store", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--policy", "-p", "specs", multiple=True, metavar="SPEC",
              help="A policy or a grid of them (see below). Repeatable.")
@click.option("--policies-file", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML file: policies = [SPEC, ...] and/or [[policy]] tables.")
@click.option("--reference", metavar="SPEC", default=None,
              help="One policy to measure MAD and speed-up against "
                   "(default per policy: IAS at its k_bar; for decision policies "
                   "Cohen n0=100 n=100000; see docs/replay.md).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the results Dataset to this netCDF file.")
@click.option("--seconds-per-sample", type=float, default=None,
              help="Seconds per sample for the time estimate (default: the store's "
                   "measured rate), e.g. to model another GPU.")
@click.option("--radii", metavar="R,R,...", default=None,
              help="Radii of the certified accuracy (default 0, 0.25, ... past the "
                   "largest radius).")
@click.option("--export-cohen", type=click.Path(file_okay=False, path_type=Path),
              help="Write one Cohen-format log (idx label predict radius correct time) "
                   "per policy into this directory.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write figures (ACR against time, certified accuracy, k_hat against p_A) "
                   "into this directory.")
@click.option("--allow-incomplete", is_flag=True,
              help="Replay the complete rows of a store with incomplete rows.")
@click.option("--oracle", is_flag=True,
              help="Compare each radius policy, at its own mean samples, with IAS and the "
                   "label-blind and label-aware oracles (docs/oracle.md).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object (per policy: name, params, acr, mad, "
                   "mean_samples, est_minutes, ...) instead of the table.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress bars on stderr.")
def replay(store, specs, policies_file, reference, out, seconds_per_sample, radii,
           export_cohen, plot_dir, allow_incomplete, oracle, as_json, progress):
    """Replay certification policies over the label streams in STORE.

    Every policy (ISS, IAS, Cohen's CERTIFY, whole grids of them) is answered from one
    pass over the stored labels: no model runs. Prints, per policy, the paper's Table 1:
    average samples per image, estimated time, speed-up and MAD against the reference,
    ACR, and certified accuracy (%) at radii.
    """
    from isskit.policies import load_policy_file, parse_policies
    from isskit.replay import decision_policies

    policies, _ = parse_policy_specs(list(specs))
    if reference is not None:
        parse_policy_specs([reference], "--reference")
    with library_errors():
        if policies_file is not None:
            policies += load_policy_file(policies_file)
        policies = parse_policies(policies)
    if not policies:
        raise click.UsageError("name at least one policy: --policy SPEC or --policies-file F")
    if seconds_per_sample is not None and not (
        math.isfinite(seconds_per_sample) and seconds_per_sample >= 0
    ):
        raise click.BadParameter(f"{seconds_per_sample} must be a finite number >= 0, "
                                 "e.g. 0.002",
                                 param_hint="--seconds-per-sample")
    grid = _radii(radii)
    check_output_file(out, "--out")
    check_output_dir(export_cohen, "--export-cohen")
    check_output_dir(plot_dir, "--plot")
    if plot_dir is not None:
        from isskit import require_extra

        with library_errors():  # before the replay, not after it
            require_extra("matplotlib", "plot", "--plot")

    from isskit.replay import cohen_log_paths, save_results
    from isskit.replay import export_cohen as _export_cohen
    from isskit.replay import replay as _replay
    from isskit.replay.plots import FIGURES

    outputs = [("--out", out)]
    if export_cohen is not None:
        names = [policy.name for policy in policies]
        outputs += [("--export-cohen", f) for f in cohen_log_paths(names, export_cohen)]
    if plot_dir is not None:
        outputs += [("--plot", plot_dir / name) for name in FIGURES]
    check_overwrites(outputs, [("the input STORE", store),
                               ("the --policies-file", policies_file)])

    with library_errors({"radius_grid": "--radii", "policies": "--policy",
                         "oracle": "--oracle"}):
        ds = _replay(store, policies, reference=reference,
                     seconds_per_sample=seconds_per_sample, radius_grid=grid,
                     allow_incomplete=allow_incomplete, progress=progress, oracle=oracle)
    extra: dict = {}
    if out is not None:
        with writing("--out", out):
            extra["out"] = str(save_results(ds, out))
    if export_cohen is not None:
        with writing("--export-cohen", export_cohen):
            extra["export_cohen"] = [str(p) for p in _export_cohen(ds, export_cohen)]
    if plot_dir is not None:
        from isskit.replay.plots import plot_all

        with writing("--plot", plot_dir):
            extra["plots"] = [str(p) for p in plot_all(ds, plot_dir)]

    left = int(ds.attrs.get("n_images_left_out", 0))
    if as_json:
        echo_json(_summary(ds, policies, extra))
        return
    a = ds.attrs
    sps = float(a["seconds_per_sample"])
    click.echo(
        f"{a.get('store_path')}: {ds.sizes['image']} images x {a['samples_per_image']} samples, "
        f"sigma = {float(a['sigma']):g}, "
        + (f"{sps * 1e3:.4g} ms per sample ({a['seconds_per_sample_source']})"
           if math.isfinite(sps) else "sampling time unknown")
    )
    if left:
        click.echo(f"{left} incomplete rows left out (--allow-incomplete)")
    decision = decision_policies(ds)
    if not decision.all():
        click.echo()
        click.echo(_table(ds))
        click.echo()
        refs = sorted(set(map(str, ds.reference.values[~decision])))
        click.echo("MAD and speed-up against " + ", ".join(refs) + "; certified accuracy in %.")
    if oracle and not decision.all():
        click.echo()
        click.echo("Against IAS and the oracles at each policy's own mean samples (expected "
                   "ACR; shares of each oracle's gain over IAS):")
        click.echo(_oracle_table(ds))
        click.echo(_P_SOURCES[ds.attrs["p_source"]] + ".")
    if decision.any():
        click.echo()
        click.echo(_decision_table(ds))
        click.echo()
        refs = sorted(set(map(str, ds.reference.values[decision])))
        click.echo("Decision policies: certified accuracy at r (%: certified and correct), "
                   "undecided (%); Ref CA(r) and speed-up against " + ", ".join(refs)
                   + " (certified at r when its radius >= r).")
    for key, label in (("out", "results"), ("export_cohen", "Cohen-format logs"),
                       ("plots", "figures")):
        if key in extra:
            value = extra[key]
            click.echo(f"{label}: " + (value if isinstance(value, str) else
                                       f"{len(value)} files in "
                                       f"{Path(value[0]).parent if value else '-'}"))
