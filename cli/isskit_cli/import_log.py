"""``isskit import-log``: turn a published Cohen-format certification log into streams.

Parses options, calls :func:`isskit.logs.import_log`, prints what it recovered. No
statistics here.
"""

from __future__ import annotations

import click

from isskit_cli._common import (
    SAMPLE_SIZE,
    check_output_file,
    check_overwrites,
    echo_json,
    library_errors,
    parse_numbers,
    writing,
)

__all__ = ["import_log"]


@click.command("import-log", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("log", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False, writable=True),
              help="The stream store to write (STORE.h5).")
@click.option("--n", "n", default="100000", show_default=True, metavar="N[,N...]",
              help="Estimation sample size n of the logged certification; a comma list "
                   "is tried in order.")
@click.option("--alpha", type=float, default=None,
              help="One-sided alpha of the logged certification, checked against every row. "
                   "Default: detected (the first of 0.001, 0.01, 0.05, 0.1 that fits).")
@click.option("--sigma", type=float, default=None,
              help="Certification sigma. Default: from the file name (..._sigma_0.50).")
@click.option("--N", "samples_per_image", type=SAMPLE_SIZE, default=None, metavar="N",
              help="Samples per image in the store, N. Default n + 100 (the log's own "
                   "CERTIFY, n0 = 100). ISS with k_bar needs k_bar + k0.")
@click.option("--samples", "samples_alias", type=SAMPLE_SIZE, default=None, metavar="N",
              help="The older name of --N (give one of the two).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the synthetic streams (row i is seeded by (seed, idx)).")
@click.option("--other", type=click.Choice(["uniform", "runner_up"]), default="uniform",
              show_default=True,
              help="Where the non-top labels go: uniform over the other classes, or all to "
                   "one runner-up class.")
@click.option("--num-classes", type=int, default=None,
              help="Classes. Default: from the file name (cifar10: 10, imagenet: 1000).")
@click.option("--abstain", type=click.Choice(["auto", "mid", "uniform", "bound"]),
              default="auto", show_default=True,
              help="p_A of abstained rows, which only bound the count: mid = kA_max/2n, "
                   "uniform = drawn on [0, kA_max/n], bound = kA_max/n; auto = mid, or bound "
                   "with --other runner_up.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object on stdout and nothing else there.")
def import_log(
    log, out, n, alpha, sigma, samples_per_image, samples_alias, seed, other, num_classes,
    abstain, as_json
):
    """Import a Cohen-format certification LOG as a synthetic stream store.

    LOG is tab-separated with the header "idx label predict radius correct time", as
    written by Cohen et al.'s certify.py. For every row the command recovers the range of
    integer top-class counts out of n whose certified radius prints as the logged one,
    detects (or checks) alpha, and writes one i.i.d. label stream per row: the logged
    prediction with probability p_A = (range midpoint) / n, the rest spread over the other
    classes. Wrong predictions keep their true label; abstentions get p_A by --abstain.
    See docs/reproduce.md. Example:

    \b
        isskit import-log cohen2019__imagenet_resnet50_noise_0.50_test_sigma_0.50 \\
            --out imagenet_050.h5 --N 505000
        isskit replay imagenet_050.h5 --policy ISS-AD-50-0.05 --policy IAS-50
    """
    if samples_alias is not None:
        if samples_per_image is not None and samples_per_image != samples_alias:
            raise click.UsageError(f"give --N or its older name --samples, not both "
                                   f"({samples_per_image} and {samples_alias})")
        samples_per_image = samples_alias
    # errors about N name the option as typed
    typed = {"samples_per_image": "--samples"} if samples_alias is not None else None
    from isskit.logs import import_log as run_import

    check_output_file(out, "--out")
    check_overwrites([("--out", out)], [("the input LOG", log)], stores=True)
    with library_errors(typed):
        ns = parse_numbers(n, "n", integral_as_int=True)
        with writing("--out", out):
            result = run_import(
                log,
                out,
                n=ns,
                alpha=alpha,
                sigma=sigma,
                samples_per_image=samples_per_image,
                seed=seed,
                other=other,
                num_classes=num_classes,
                abstain=abstain,
                progress=not as_json,
            )
    summary = result.summary()
    if as_json:
        echo_json(summary)
        return
    fits = ", ".join(f"n={f['n']} alpha={f['alpha']:g}" for f in summary["fits"])
    click.echo(f"{summary['log']}: {summary['rows']} rows ({summary['abstained']} abstained, "
               f"{summary['wrong']} wrong), radius format {summary['radius_format']!r}")
    click.echo(f"fits every row: {fits}; recovered at n={summary['n']}, "
               f"alpha={summary['alpha']:g} (count ranges at most "
               f"{summary['max_range_width']} wide)")
    deciles = "  ".join(f"{k} {v:.4f}" for k, v in summary["p_A_deciles"].items())
    click.echo(f"p_A deciles (certified rows): {deciles}")
    click.echo(f"wrote {summary['store']}: {summary['rows']} streams x "
               f"{summary['samples_per_image']} samples, sigma={summary['sigma']:g}, "
               f"{summary['num_classes']} classes, abstentions by rule {summary['abstain_rule']!r}")
