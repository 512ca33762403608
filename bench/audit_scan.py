"""Validity audit tables for docs/audit.md: exact failure probability over a p_A grid, and
Monte Carlo rates with Clopper-Pearson intervals at the p_A values where it matters.

For every policy and sigma: the exact failure probability (isskit.studies.audit.failure_probability)
on p_A = 0.5, 0.501, ..., 0.52 and then every 0.002 up to 1; its maximum, where, and at how
many grid points it exceeds alpha; the ratio max / alpha (the baseline: what a valid policy
may reach). Then, at sigma = 0.5, simulated rates over --trials images per p_A at the standard
p_A list and at each policy's worst p_A.

    python bench/audit_scan.py --trials 100000 > /tmp/audit.md

Takes about 15 minutes on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from isskit.policies import IAS, ISS, Cohen
from isskit.studies.audit import audit, failure_probability

GRID = np.unique(np.round(np.concatenate([np.arange(0.5, 0.52, 0.001),
                                          np.arange(0.52, 1.0000001, 0.002)]), 6))
STANDARD_P = (0.5, 0.51, 0.55, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999)


def policies():
    out = [Cohen(n0=100, n=100_000), IAS(n=100_000)]
    for k_bar in (100_000, 500_000):
        for decline in ("ad", "rd"):
            for U in (0.05, 0.1):
                for fresh in (False, True):
                    out.append(ISS(k_bar=k_bar, U=U, decline=decline, fresh=fresh))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=100_000)
    ap.add_argument("--sigmas", default="0.25,0.5,1.0")
    ap.add_argument("--seed", type=int, default=2022)
    args = ap.parse_args()
    sigmas = [float(s) for s in args.sigmas.split(",")]
    t0 = time.time()
    worst = {}
    print("## Exact failure probability over p_A in [0.5, 1]\n")
    print(f"Grid: {GRID.size} points (step 0.001 up to 0.52, then 0.002). alpha = 0.001.\n")
    print("| policy | sigma | max failure | max / alpha | at p_A | grid points above alpha "
          "| p_A range above alpha (p_A >= 0.52) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for policy in policies():
        for sigma in sigmas if isinstance(policy, ISS) else sigmas[:1]:
            f = np.array([failure_probability(policy, p, sigma) for p in GRID])
            i = int(np.argmax(f))
            above = GRID[f > policy.alpha * (1 + 1e-9)]
            interior = above[above >= 0.52]
            worst[(policy.name, sigma)] = (policy, float(GRID[i]))
            where = f"{interior.min():.3f}..{interior.max():.3f}" if interior.size else "-"
            sig = f"{sigma:g}" if isinstance(policy, ISS) else "any"
            print(f"| {policy.name} | {sig} | {f[i]:.3e} | {f[i] / policy.alpha:.2f} | "
                  f"{GRID[i]:.3f} | {above.size} | {where} |", flush=True)
    print(f"\n(exact scan: {time.time() - t0:.0f} s)\n", file=sys.stderr)

    print(f"\n## Simulated failure rates, {args.trials:,} images per p_A, sigma = 0.5\n")
    print("95% two-sided Clopper-Pearson intervals. `exact` from the same scan as above.\n")
    print("| policy | p_A | failures | rate | 95% CI | exact | rate / alpha | verdict |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for (name, sigma), (policy, p_worst) in worst.items():
        if sigma != 0.5 and isinstance(policy, ISS):
            continue
        ps = sorted(set(STANDARD_P) | {p_worst})
        for r in audit([policy], ps, trials=args.trials, sigma=0.5, seed=args.seed):
            verdict = "ok"
            if r.significant:
                verdict = "**above alpha (significant)**"
            elif r.exceeds_alpha:
                verdict = "above alpha (exact only)"
            mark = " (worst)" if r.p_A == p_worst else ""
            print(f"| {name} | {r.p_A:g}{mark} | {r.failures} | {r.rate:.2e} | "
                  f"[{r.ci_low:.2e}, {r.ci_high:.2e}] | {r.exact:.2e} | "
                  f"{r.rate / r.alpha:.2f} | {verdict} |", flush=True)
    print(f"\n(total: {time.time() - t0:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
