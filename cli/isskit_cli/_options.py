"""Options several commands share, defined once.

``isskit psi`` and ``isskit verify`` take the same table parameters
(:func:`psi_table_options`).
"""

from __future__ import annotations

import click

__all__ = ["psi_table_options"]


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
