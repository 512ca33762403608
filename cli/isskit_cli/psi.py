"""``isskit psi``: compute the ISS mapping, print it at a few p_A, save it, plot it.

Parses options, calls :func:`isskit.psi.psi_table`, writes output. No maths here;
matplotlib is imported only when ``--plot`` is given.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import click

from isskit_cli._common import (
    check_output_file,
    check_overwrites,
    echo_json,
    library_errors,
    parse_numbers,
    writing,
)
from isskit_cli._options import psi_table_options

__all__ = ["psi"]

#: p_A values the command prints (the paper's Fig. 6 spans 0.5..1).
SHOW_P = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@psi_table_options
@click.option("--out", type=click.Path(dir_okay=False, writable=True),
              help="Write the table: columns p,k for every grid point (.csv; .npz also works).")
@click.option("--plot", type=click.Path(dir_okay=False, writable=True),
              help="Draw k against p_A for every --k-bar and --U given (the paper's Fig. 6, "
                   "upper), e.g. fig.png.")
def psi(k_bar, U, decline, sigma, alpha, delta, mapping, as_json, out, plot):
    """Compute the ISS mapping psi: the sample size k that keeps the decline within U.

    psi(p_A) is the smallest integer k whose expected radius R(k, p_A) is within U of
    R(k_bar, p_A) (absolute, ad) or within the fraction U of it (relative, rd); 0 where
    that target radius is <= 0 (ISS abstains). The table holds psi on the grid
    p = 0, delta, ..., 1 (paper Alg. 1).

    Prints k at a few p_A. --out writes a plain CSV with columns p,k for every grid point
    and its parameters beside it in <out>.json (a .npz --out holds both). Examples: the paper's
    ISS-AD-10-0.05 at sigma = 0.5, and Fig. 6 (upper) for two budgets and two U:

    \b
        isskit psi --k-bar 100000 --U 0.05 --decline ad --sigma 0.5 --out table.csv
        isskit psi --k-bar 1e5,5e5 --U 0.01,0.05 --decline rd --sigma 0.5 --plot fig6.png
    """
    from isskit.psi import psi_table, table_files

    check_output_file(out, "--out")
    check_output_file(plot, "--plot")
    if plot:
        _check_plot_format(plot)
    check_overwrites([*(("--out", f) for f in (table_files(out) if out else ())),
                      ("--plot", plot)])
    with library_errors():
        k_bars = parse_numbers(k_bar, "k_bar", integral_as_int=True)
        Us = parse_numbers(U, "U")
        combos = list(itertools.product(k_bars, Us))
        if out and len(combos) > 1:
            raise ValueError(
                f"--out writes one table; got {len(k_bars)} k_bar x {len(Us)} U values"
            )
        tables = [psi_table(kb, u, decline, sigma, alpha, delta, mapping=mapping)
                  for kb, u in combos]
    if out:
        with writing("--out", out):
            tables[0].save(out)
    if plot:
        with writing("--plot", plot):
            from isskit.psi.plots import plot_psi

            plot_psi(tables, plot)

    rows = [{"p": p, "k": [int(t.psi_iss(p)) for t in tables]} for p in SHOW_P]
    if as_json:
        echo_json({
            "tables": [{**t.params(), "k_at": {str(p): int(t.psi_iss(p)) for p in SHOW_P}}
                       for t in tables],
            "out": out,
            "plot": plot,
        })
        return
    t0 = tables[0]
    click.echo(f"psi ({t0.decline}, sigma={t0.sigma:g}, alpha={t0.alpha:g}, "
               f"delta={t0.delta:g}, mapping={t0.mapping})")
    heads = [f"k_bar={t.k_bar} U={t.U:g}" for t in tables]
    widths = [max(len(h), 8) for h in heads]
    click.echo(f"{'p_A':>7}  " + "  ".join(h.rjust(w) for h, w in zip(heads, widths, strict=True)))
    for row in rows:
        cells = "  ".join(str(k).rjust(w) for k, w in zip(row["k"], widths, strict=True))
        click.echo(f"{row['p']:>7g}  {cells}")
    if out:
        click.echo(f"table ({t0.p.size} grid points) written to {out}")
    if plot:
        click.echo(f"plot written to {plot}")


def _check_plot_format(path) -> None:
    """Refuse a --plot file whose suffix matplotlib cannot write, before any work."""
    from isskit import require_extra

    with library_errors():
        require_extra("matplotlib", "plot", "--plot")
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in formats:
        raise click.BadParameter(
            f"{path}: name a file ending in a format matplotlib writes "
            f"({', '.join('.' + f for f in sorted(formats))})",
            param_hint="--plot",
        )


