"""``isskit audit``: measure each policy's failure rate on streams with a known p_A.

Parses options, calls :func:`isskit.studies.audit.audit`, prints a table (radius policies,
then decision policies) or one JSON object. No statistics here.
"""

from __future__ import annotations

import math

import click

from isskit_cli._common import (
    SAMPLE_SIZE,
    echo_json,
    library_errors,
    parse_numbers,
    parse_policy_specs,
)

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
@click.option("--offsets", default="0,0.001,0.003,0.01", show_default=True,
              help="Decision policies: comma list of distances below p0 = Phi(r / sigma) at "
                   "which the stream's p is audited (0: p = p0, the hardest).")
@click.option("--decision-trials", type=SAMPLE_SIZE, default=0, show_default=True,
              help="Decision policies: simulated streams per policy and p next to the exact "
                   "law, as a check (0: none; a policy without an exact law is always "
                   "simulated, over at least 1e6 streams).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object on stdout and nothing else there.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="A progress bar on stderr.")
def audit(p_A, trials, policies, sigma, seed, confidence, offsets, decision_trials, as_json,
          progress):
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
    stream counts (docs/audit.md).

    A decision policy (adaptive, staged, cs) is audited at the hardest p instead: its
    stream's success probability (the true label's, or the top class's of a two-class
    stream for adaptive) is p0 = Phi(r / sigma) minus each of --offsets, and a false
    certification is a certificate for a class whose probability is at most p0. The rate is
    exact where the policy's thresholds make it computable (every adaptive, staged and cs
    policy), else simulated over at least 1e6 streams with a Clopper-Pearson interval. Example:

    \b
        isskit audit --p-A 0.5,0.9,0.99 --policy ISS-RD-10-0.05 --policy "ISS-RD-10-0.05 fresh=true"
        isskit audit --policy "cs r=0.5 method=kt,union" --policy "cs r=0.5 faithful=true"
    """
    from isskit.progress import progress_bar
    from isskit.studies.audit import DecisionAuditRow, default_policies
    from isskit.studies.audit import audit as run_audit

    with library_errors():
        ps = parse_numbers(p_A, "p_A")
        offs = parse_numbers(offsets, "offsets")
        chosen = parse_policy_specs(list(policies))[0] if policies else default_policies()
        n_decide = sum(q.question == "decision" for q in chosen)
        total = len(ps) * (len(chosen) - n_decide) + len(offs) * n_decide
        with progress_bar(total=total, desc="audit", unit="case", leave=False,
                          enabled=progress) as bar:
            rows = run_audit(chosen, ps, trials=trials, sigma=sigma, seed=seed,
                             confidence=confidence, progress=bar.update, offsets=offs,
                             decision_trials=decision_trials)
    decided = [r for r in rows if isinstance(r, DecisionAuditRow)]
    rows = [r for r in rows if not isinstance(r, DecisionAuditRow)]
    if as_json:
        doc = {
            "sigma": sigma, "seed": seed, "trials": trials, "confidence": confidence,
            "stream": "two-class: top class with probability p_A, runner-up otherwise",
            "rows": [r.to_dict() for r in rows],
            "violations": [
                {"policy": r.policy, "p_A": r.p_A, "exact": r.exact, "significant": r.significant}
                for r in rows if r.exceeds_alpha or r.significant
            ],
        }
        if decided:
            doc.update({
                "offsets": offs, "decision_trials": decision_trials,
                "decision_stream": "success (the true label, or adaptive's top class of a "
                                   "two-class stream) with probability p = p0 - offset",
                "decision_rows": [r.to_dict() for r in decided],
                "decision_violations": [
                    {"policy": r.policy, "p": r.p, "false_certification":
                     r.false_certification if r.exact else None, "rate": r.rate,
                     "significant": r.significant}
                    for r in decided if r.exceeds_alpha or r.significant
                ],
            })
        echo_json(doc)
        return
    if rows:
        _radius_table(rows, confidence)
    if decided:
        if rows:
            click.echo("")
        _decision_table(decided, confidence)


def _verdict(exceeds: bool, significant: bool) -> str:
    if exceeds:
        return "EXCEEDS alpha" + (" (significant)" if significant else " (exact)")
    return "EXCEEDS alpha (simulated)" if significant else "ok"


def _decision_table(rows, confidence):
    """False certifications of decision policies at p = p0 - offset (exact, then simulated)."""
    width = max(len(r.policy) for r in rows)
    ci = f"{round(100 * confidence, 3):g}% CI"
    click.echo(f"{'policy':<{width}}  {'validity':<13}  {'alpha':>6}  {'p0':>7}  {'p':>7}  "
               f"{'exact':>9}  {'/ alpha':>7}  {'failures':>9}  {'rate':>9}  {ci:>21}  "
               f"{'undecided':>9}  {'samples':>9}  verdict")
    for r in rows:
        exact = f"{r.false_certification:9.3e}" if r.exact else f"{'-':>9}"
        if r.trials:
            sim = f"{r.failures:>9d}  {r.rate:9.2e}  [{r.ci_low:9.2e}, {r.ci_high:9.2e}]"
        else:
            sim = f"{'-':>9}  {'-':>9}  {'-':>21}"
        click.echo(f"{r.policy:<{width}}  {r.validity:<13}  {r.alpha:6.4g}  {r.p0:7.5f}  "
                   f"{r.p:7.5f}  {exact}  {r.ratio:7.3f}  {sim}  {r.undecided:9.4f}  "
                   f"{r.mean_samples:9.0f}  {_verdict(r.exceeds_alpha, r.significant)}")
    click.echo("\nDecision policies: p is the success probability of the stream (p0 - offset); "
               "exact: P(certified a class of probability <= p0); / alpha: exact (else "
               "simulated) over alpha; undecided, samples: at p.")


def _radius_table(rows, confidence):
    width = max(len(r.policy) for r in rows)
    ci = f"{round(100 * confidence, 3):g}% CI"
    click.echo(f"{'policy':<{width}}  {'p_A':>6}  {'alpha':>6}  {'failures':>9}  "
               f"{'rate':>9}  {ci:>21}  {'exact':>9}  {'certified':>9}  {'samples':>9}  verdict")
    for r in rows:
        if r.trials:
            sim = f"{r.failures:>9d}  {r.rate:9.2e}  [{r.ci_low:9.2e}, {r.ci_high:9.2e}]"
        else:
            sim = f"{'-':>9}  {'-':>9}  {'-':>21}"
        verdict = _verdict(r.exceeds_alpha, r.significant)
        certified = f"{r.certified:9.4f}" if math.isfinite(r.certified) else f"{'-':>9}"
        samples = f"{r.mean_samples:9.0f}" if math.isfinite(r.mean_samples) else f"{'-':>9}"
        click.echo(f"{r.policy:<{width}}  {r.p_A:6.4g}  {r.alpha:6.4g}  {sim}  {r.exact:9.2e}  "
                   f"{certified}  {samples}  {verdict}")
