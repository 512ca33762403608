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
    parse_floats,
    writing,
)

__all__ = ["parse_list", "psi", "shared_options"]

#: p_A values the command prints (the paper's Fig. 6 spans 0.5..1).
SHOW_P = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0)


def shared_options(f=None, *, several: bool = True):
    """The options ``isskit psi`` and ``isskit verify`` share (the table's parameters).

    ``several``: ``--k-bar`` and ``--U`` take comma lists (psi plots several tables;
    verify checks one). Use as ``@shared_options`` or ``@shared_options(several=False)``.
    """
    if f is None:
        return lambda g: shared_options(g, several=several)
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


def parse_list(text: str, name: str) -> list[float]:
    """A comma list of numbers, integral ones as int; ValueError naming the bad entry."""
    # k_bar = 100000 parses to 100000.0; the library accepts integral floats as ints
    return [int(v) if v.is_integer() else v for v in parse_floats(text, name)]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@shared_options
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
        k_bars = parse_list(k_bar, "k_bar")
        Us = parse_list(U, "U")
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
            _plot(tables, plot)

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


def _plot(tables, path) -> None:
    """Draw the sample size against p_A on [0.5, 1], one line per table."""
    import matplotlib

    from isskit._atomic import atomic_path

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5), constrained_layout=True)
    for t in tables:
        # psi spans 0 (abstain) to k_bar and climbs steeply near p_A = 1, so a linear axis
        # shows one spike; on a log axis the abstaining points (k = 0) are left out.
        sel = (t.p >= 0.5) & (t.k > 0)
        ax.plot(t.p[sel], t.k[sel], label=f"k_bar={t.k_bar}, U={t.U:g}")
    t0 = tables[0]
    ax.set_yscale("log")
    ax.grid(True, which="major", alpha=0.3)
    ax.set_xlabel("p_A")
    ax.set_ylabel("sample size k = psi(p_A), log scale")
    ax.set_title(f"ISS mapping ({t0.decline.upper()}, sigma={t0.sigma:g}, alpha={t0.alpha:g})")
    ax.legend(fontsize="small")
    try:
        with atomic_path(path) as tmp:  # the temporary keeps the suffix: same format
            fig.savefig(tmp, dpi=120)
    finally:
        plt.close(fig)
