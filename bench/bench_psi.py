"""Time exact psi tables against the paper's reference approach, run in the same process.

Baseline: the paper's way of building psi (its reference code, ``generate_iss``): for each
grid point p = 0.5, 0.501, ..., 1, scan k upward in steps of one batch (200 samples) until
the radius reaches the target; for AD the scan starts from the previous grid point's
answer (psi_AD grows with p), for RD from 0. Plain Python, one scalar call per k, in two
variants: ``stats`` uses scipy.stats.beta.ppf and norm.ppf as the reference code does
(through statsmodels' proportion_confint), ``special`` the much cheaper
scipy.special.betaincinv and ndtri. The scan is also coarser (a multiple of 200, not the
exact minimum); the script checks it equals the exact psi rounded up to 200.

    python bench/bench_psi.py            # delta = 0.001 with both scans, delta = 0.0001 alone
    python bench/bench_psi.py --quick    # fewer repeats, no scipy.stats scan for RD

Prints ms per table and time(scan) / time(exact); bench/RESULTS.md quotes its output.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats
from scipy.special import betaincinv, ndtri

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from isskit.psi import psi_exact, psi_table

SIGMA, ALPHA = 0.5, 0.001
CASES = [  # (k_bar, decline, U): the paper's ISS-AD-*-0.05 and ISS-RD-*-0.01
    (100_000, "ad", 0.05),
    (500_000, "ad", 0.05),
    (100_000, "rd", 0.01),
    (500_000, "rd", 0.01),
]


def _radius_special(k, p):
    a = p * k
    return SIGMA * ndtri(betaincinv(a, k - a + 1.0, ALPHA))


def _radius_stats(k, p):
    a = p * k
    return SIGMA * stats.norm.ppf(stats.beta.ppf(ALPHA, a, k - a + 1.0))


def scan_table(k_bar, decline, U, delta, radius, batch=200):
    """The paper's approach: per grid point, k = batch, 2 batch, ... until R(k) >= target."""
    steps = round(1 / delta)
    out, start = [], batch
    for i in range(steps // 2, steps + 1):  # the paper's grid starts at p = 0.5
        p = i / steps
        r_bar = radius(k_bar, p)
        target = r_bar - U if decline == "ad" else (1 - U) * r_bar
        if not target > 0:
            out.append(0)
            continue
        k = start if decline == "ad" else batch
        while k < k_bar and radius(k, p) < target:
            k += batch
        k = min(k, k_bar)
        out.append(k)
        start = k
    return np.array(out)


def best_ms(fn, repeats):
    """Best and median wall ms over ``repeats`` calls, and the last call's result."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * min(times), 1e3 * statistics.median(times), result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats, no scipy.stats scan for RD (tens of seconds)")
    args = parser.parse_args(argv)
    rep_exact = 5 if args.quick else 20

    print(f"psi tables, sigma={SIGMA}, alpha={ALPHA}. exact: isskit.psi, full table p = 0..1, "
          "paper mapping, best / median of", rep_exact)
    print("scan: the paper's 200-step scan on p = 0.5..1 (one run each); x = scan / exact best")
    print(f"{'k_bar':>7} {'decl':>4} {'U':>5} {'delta':>7} {'exact ms':>17} "
          f"{'scan special ms':>15} {'x':>6} {'scan stats ms':>13} {'x':>6}  scan = ceil200(psi)")
    for delta in (0.001, 0.0001):
        steps = round(1 / delta)
        grid = np.arange(steps + 1) / steps
        for k_bar, decline, U in CASES:
            def build(k_bar=k_bar, decline=decline, U=U, delta=delta):
                # bypass the cache: time the computation, not the lookup
                return psi_table(k_bar, U, decline, SIGMA, ALPHA, delta, cache=False)

            best, med, _ = best_ms(build, rep_exact)
            line = f"{k_bar:>7} {decline:>4} {U:>5} {delta:>7} {best:>7.2f} / {med:>7.2f}"
            if delta != 0.001:
                print(line, flush=True)
                continue
            exact = psi_exact(grid[steps // 2:], k_bar, U, decline, SIGMA, ALPHA)
            rounded = np.where(exact > 0, np.minimum(np.ceil(exact / 200) * 200, k_bar), 0)
            checks = []
            for radius in (_radius_special, _radius_stats):
                if radius is _radius_stats and decline == "rd" and args.quick:
                    line += f" {'-':>13} {'-':>6}"
                    continue
                scan_ms, _, scanned = best_ms(
                    lambda k_bar=k_bar, decline=decline, U=U, delta=delta, radius=radius:
                    scan_table(k_bar, decline, U, delta, radius), 1)
                checks.append(bool(np.array_equal(scanned, rounded)))
                width = 15 if radius is _radius_special else 13
                line += f" {scan_ms:>{width}.1f} {scan_ms / best:>5.0f}x"
            print(line + f"  {all(checks)}", flush=True)
    # the "sup" mapping adds psi on a few hundred points in the sign-change cells
    for k_bar, decline, U in CASES:
        best, med, _ = best_ms(lambda k_bar=k_bar, decline=decline, U=U: psi_table(
            k_bar, U, decline, SIGMA, ALPHA, 0.001, mapping="sup", cache=False), rep_exact)
        print(f"{k_bar:>7} {decline:>4} {U:>5} {0.001:>7} {best:>7.2f} / {med:>7.2f}"
              "  (mapping sup)")


if __name__ == "__main__":
    main()
