"""``isskit verify``: check Propositions 1 and 2 for one ISS mapping table.

Parses options, calls :func:`isskit.psi.verify.verify`, prints "holds" or the worst
violation, and exits 0 when both hold, 1 when one is violated (2: bad input).
"""

from __future__ import annotations

import click

from isskit_cli._common import SAMPLE_SIZE, echo_json, library_errors, parse_numbers
from isskit_cli._options import psi_table_options

__all__ = ["verify"]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@psi_table_options(several=False)
@click.option("--fine", type=int, default=16, show_default=True,
              help="Points p_A checked inside every grid cell (besides the grid points).")
@click.option("--k0", type=SAMPLE_SIZE, default=None,
              help="Check Prop. 1 only on the Clopper-Pearson intervals a pilot of k0 samples "
                   "can produce (default: on every interval [p_low, p_up]).")
@click.option("--check-minimal", is_flag=True,
              help="Also scan every k below psi at every grid point, showing psi is the exact "
                   "minimum without assuming the decline is monotone in k (seconds for ad, "
                   "about a minute for rd).")
@click.pass_context
def verify(ctx, k_bar, U, decline, sigma, alpha, delta, mapping, as_json, fine, k0,
           check_minimal):
    """Check Props. 1 and 2 of Chen et al. for the table psi_iss, over the whole grid.

    Prop. 1 (bounded decline): for every interval [p_low, p_up] and every p_A in it,
    decline(k_hat; k_bar, p_A) <= U. Prop. 2 (tightness): for intervals with ends on the
    grid, k_hat - 1 breaks the bound somewhere in the interval. Every interval is
    covered exactly (its worst case has a closed form); p_A runs over the grid, --fine
    points inside each cell and the points where psi jumps.

    Prints "holds" or the worst violation (p_low, p_up, p_A, k_hat, decline - U).
    Exit status 0: holds; 1: violated; 2: bad input. Example (the paper's RD mapping
    breaks Prop. 1 next to p_A = 1/2; --mapping sup repairs it):

    \b
        isskit verify --k-bar 100000 --U 0.01 --decline rd --sigma 0.5
    """
    from isskit.psi.verify import verify as run_verify

    with library_errors():
        k_bars = parse_numbers(k_bar, "k_bar", integral_as_int=True)
        Us = parse_numbers(U, "U")
        if len(k_bars) != 1 or len(Us) != 1:
            raise ValueError(f"verify checks one table: --k-bar ({k_bar}) and --U ({U}) "
                             "take one value each")
        result = run_verify(k_bars[0], Us[0], decline, sigma, alpha, delta, mapping=mapping,
                            fine=fine, k0=k0, check_minimal=check_minimal,
                            progress=not as_json)
    if as_json:
        echo_json(result.to_dict())
    else:
        _report(result)
    ctx.exit(0 if result.holds else 1)


def _report(result) -> None:
    p = result.params
    click.echo(f"verify ({p['decline']}, k_bar={p['k_bar']}, U={p['U']:g}, sigma={p['sigma']:g}, "
               f"alpha={p['alpha']:g}, delta={p['delta']:g}, mapping={p['mapping']}; "
               f"intervals: {p['intervals']}; {result.n_points} p_A)")
    click.echo(f"Prop. 1 (bounded decline): {'holds' if result.prop1 else 'VIOLATED'}"
               f"  (max decline {result.max_decline:.6g}, U = {p['U']:g})")
    click.echo(f"Prop. 2 (tightness, grid ends): {'holds' if result.prop2 else 'VIOLATED'}")
    if result.minimal is not None:
        click.echo(f"psi minimal at every grid point: {'yes' if result.minimal else 'NO'}")
    for v in (result.worst_prop1, result.worst_prop2):
        if v is not None:
            click.echo(
                f"worst violation of Prop. {v.proposition}: p_low={v.p_low:.6g} "
                f"p_up={v.p_up:.6g} p_A={v.p_A:.6g} k_hat={v.k_hat} "
                f"decline-U={v.decline_minus_U:.6g} (R(k_bar, p_A)={v.r_bar:.6g})"
            )
    if result.worst_prop1 is not None:
        click.echo(f"  ({result.n_violations_prop1} of the p_A checked break Prop. 1)")
    click.echo("holds" if result.holds else "violated")
