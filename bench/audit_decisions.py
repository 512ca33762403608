"""Exact false-certification probability of the decision policies at p = p0 and below.

    python bench/audit_decisions.py > decision_audit.md     # the tables of docs/audit.md
    python bench/audit_decisions.py --faithful-scan         # KT at 1/alpha and 1/(2 alpha)

For each policy at its defaults (DESIGN.md: adaptive n0 = 100, stages 1000/10000/125000,
beta = 0.0001; staged 100/1000/10000/120000; cs n_max = 131,100), sigma = 0.5, radii with
``r / sigma`` = 0.25, 0.5, 1, 2 (``p0`` = 0.599, 0.691, 0.841, 0.977) and alpha = 0.001,
0.01, 0.05: ``isskit.studies.decision_audit.audit_decisions`` at ``p = p0 - offset``, offsets 0,
0.001, 0.003, 0.01. Prints markdown: the worst rate of each policy (always at p0) over
alpha. ``--faithful-scan``: KT's rate at p0 / alpha, at the authors' level 1 / (2 alpha)
and at 1 / alpha, for p0 near 1/2 (the hardest for KT), alpha up to 0.4 and n_max 131,100
and 10^6.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "cli")]

from isskit.policies import CS, Adaptive, Staged  # noqa: E402
from isskit.policies._decide import _p0  # noqa: E402
from isskit.studies.decision_audit import (  # noqa: E402
    DEFAULT_OFFSETS,
    audit_decisions,
    false_certification,
)

SIGMA = 0.5
RADII = (0.125, 0.25, 0.5, 1.0)
ALPHAS = (0.001, 0.01, 0.05)


def policies(r, alpha):
    return [CS(r=r, alpha=alpha), CS(r=r, alpha=alpha, faithful=True),
            CS(r=r, alpha=alpha, method="union"), Staged(r=r, alpha=alpha),
            Adaptive(r=r, alpha=alpha)]


def faithful_scan():
    print("| r / sigma | p0 | alpha | n_max | KT at 1/alpha: rate / alpha | "
          "faithful (1/(2 alpha)): rate / alpha | faithful / KT |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for rs in (0.01, 0.05, 0.25):
        p0 = _p0(rs, 1.0)
        for alpha in (0.001, 0.05, 0.2, 0.4):
            for n_max in (131_100, 1_000_000) if alpha == 0.001 else (131_100,):
                kt, fa = (false_certification(CS(r=rs, alpha=alpha, n_max=n_max, faithful=f),
                                              p0, 1.0) / alpha for f in (False, True))
                print(f"| {rs:g} | {p0:.4f} | {alpha:g} | {n_max:,} | {kt:.3f} | {fa:.3f} | "
                      f"{fa / kt:.2f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faithful-scan", action="store_true")
    if ap.parse_args().faithful_scan:
        faithful_scan()
        return
    t0 = time.perf_counter()
    rows = []
    for alpha in ALPHAS:
        for r in RADII:
            rows += audit_decisions(policies(r, alpha), SIGMA, DEFAULT_OFFSETS)
    print(f"sigma = {SIGMA}; p = p0 - offset for offsets {DEFAULT_OFFSETS}; "
          f"{time.perf_counter() - t0:.0f} s\n")
    print("| policy | validity | alpha | r / sigma | p0 | rate at p0 | / alpha | "
          "at p0 - 0.001 | p0 - 0.003 | p0 - 0.01 | undecided at p0 | mean samples at p0 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    by = {}
    for row in rows:
        by.setdefault((row.policy, row.alpha), []).append(row)
    for (name, alpha), rs in by.items():
        rs = sorted(rs, key=lambda x: -x.p)
        top = rs[0]
        kind = name.split("-r=")[0]
        print(f"| {kind} | {top.validity} | {alpha:g} | {top.r / SIGMA:g} | {top.p0:.4f} | "
              f"{top.false_certification:.3e} | {top.ratio:.3f} | "
              + " | ".join(f"{x.false_certification:.3e}" for x in rs[1:])
              + f" | {top.undecided:.4f} | {top.mean_samples:,.0f} |")
    worst = {}
    for row in rows:
        key = (row.policy.split("-r=")[0], row.validity, row.alpha)
        if row.ratio > worst.get(key, (-1.0,))[0]:
            worst[key] = (row.ratio, row.r / SIGMA)
    print("\n| policy | validity | alpha | worst rate / alpha | at r / sigma |")
    print("| --- | --- | --- | --- | --- |")
    for (kind, validity, alpha), (ratio, rs) in worst.items():
        print(f"| {kind} | {validity} | {alpha:g} | {ratio:.3f} | {rs:g} |")


if __name__ == "__main__":
    main()
