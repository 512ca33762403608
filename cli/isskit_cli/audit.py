"""``isskit audit``: measure each policy's failure rate on streams with a known p_A.

Parses options, calls :func:`isskit.studies.audit.audit`, prints a table or one JSON object. No
statistics here.
"""

from __future__ import annotations

import click

from isskit_cli._common import SAMPLE_SIZE, echo_json, library_errors, parse_numbers

__all__ = ["audit"]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--p-A", "p_A", default="0.5,0.55,0.6,0.7,0.8,0.9,0.95,0.99,0.995,0.999",
              show_default=True, help="Comma list of true top-class probabilities p_A.")
@click.option("--trials", type=SAMPLE_SIZE, default=100_000, show_default=True,
              help="Simulated images per policy and p_A, e.g. 1e6 (0: exact probabilities "
                   "only).")
@click.option("--policy", "policies", multiple=True, metavar="SPEC",
              help="Policy spec, repeatable ('ISS-AD-10-0.05', 'iss decline=rd k_bar=1e5 "
                   "U=0.05 fresh=true,false', 'cohen n0=100 n=100000', 'IAS-10'). Default: "
                   "Cohen-10, ISS-AD-10-0.05 and ISS-AD-10-0.05-fresh.")
@click.option("--sigma", type=float, default=0.5, show_default=True,
              help="Noise level sigma of the ISS mapping psi.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--confidence", type=float, default=0.95, show_default=True,
              help="Level of the Clopper-Pearson interval on each failure rate.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object on stdout and nothing else there.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="A progress bar on stderr.")
def audit(p_A, trials, policies, sigma, seed, confidence, as_json, progress):
    """Measure how often each policy certifies a bound above the true p_A.

    The stream is two-class: the top class with probability p_A, the runner-up otherwise.
    A failure is a certified image (p_lower >= 1/2) whose bound exceeds the true
    probability of the class the policy chose; a valid policy fails at most alpha of the
    time. For each policy and p_A the command reports the simulated failure rate with its
    Clopper-Pearson interval and the exact failure probability (a sum over pilot counts),
    and flags where either is above alpha.

    Simulation draws counts, not streams: the pilot count is Binomial(k0, p_A), the count
    over [0, k_hat) of the reused pilot is pilot + Binomial(k_hat - k0, p) or a
    hypergeometric draw from the pilot, which is exactly what a replay over an i.i.d.
    stream counts (docs/audit.md). Example:

    \b
        isskit audit --p-A 0.5,0.9,0.99 --policy ISS-RD-10-0.05 --policy "ISS-RD-10-0.05 fresh=true"
    """
    import numpy as np

    from isskit.policies import parse_policies
    from isskit.progress import progress_bar
    from isskit.studies.audit import audit as run_audit
    from isskit.studies.audit import default_policies

    with library_errors():
        ps = parse_numbers(p_A, "p_A")
        chosen = parse_policies(list(policies)) if policies else default_policies()
        with progress_bar(total=len(ps) * len(chosen), desc="audit", unit="case",
                          leave=False, enabled=progress) as bar:
            rows = run_audit(chosen, ps, trials=trials, sigma=sigma, seed=seed,
                             confidence=confidence, progress=bar.update)
    if as_json:
        echo_json({
            "sigma": sigma, "seed": seed, "trials": trials, "confidence": confidence,
            "stream": "two-class: top class with probability p_A, runner-up otherwise",
            "rows": [r.to_dict() for r in rows],
            "violations": [
                {"policy": r.policy, "p_A": r.p_A, "exact": r.exact, "significant": r.significant}
                for r in rows if r.exceeds_alpha or r.significant
            ],
        })
        return
    width = max(len(r.policy) for r in rows)
    ci = f"{round(100 * confidence, 3):g}% CI"
    click.echo(f"{'policy':<{width}}  {'p_A':>6}  {'alpha':>6}  {'failures':>9}  "
               f"{'rate':>9}  {ci:>21}  {'exact':>9}  {'certified':>9}  {'samples':>9}  verdict")
    for r in rows:
        if r.trials:
            sim = f"{r.failures:>9d}  {r.rate:9.2e}  [{r.ci_low:9.2e}, {r.ci_high:9.2e}]"
        else:
            sim = f"{'-':>9}  {'-':>9}  {'-':>21}"
        verdict = "ok"
        if r.exceeds_alpha:
            verdict = "EXCEEDS alpha" + (" (significant)" if r.significant else " (exact)")
        elif r.significant:
            verdict = "EXCEEDS alpha (simulated)"
        certified = f"{r.certified:9.4f}" if np.isfinite(r.certified) else f"{'-':>9}"
        samples = f"{r.mean_samples:9.0f}" if np.isfinite(r.mean_samples) else f"{'-':>9}"
        click.echo(f"{r.policy:<{width}}  {r.p_A:6.4g}  {r.alpha:6.4g}  {sim}  {r.exact:9.2e}  "
                   f"{certified}  {samples}  {verdict}")
