"""Time exact psi tables against the paper's reference approach, run in the same process.

The baseline is the paper's way of building psi (its reference code, Alg. 1): for each
grid point, scan k upward in steps of one batch (200 samples) until the decline is
within U, in plain Python with scalar SciPy calls. It is both slower and coarser (a
multiple of 200, not the exact minimum); the ratio printed is time(scan) / time(exact).

    python bench/bench_psi.py            # delta = 0.001 with the scan, delta = 0.0001 alone
    python bench/bench_psi.py --quick    # fewer repeats

Prints ms per table; the figures quoted in bench/RESULTS.md come from this script.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy.special import betaincinv, ndtri

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from isskit.psi import _cached_table, psi_exact

SIGMA, ALPHA = 0.5, 0.001
CASES = [  # (k_bar, decline, U): the paper's ISS-AD-*-0.05 and ISS-RD-*-0.01
    (100_000, "ad", 0.05),
    (500_000, "ad", 0.05),
    (100_000, "rd", 0.01),
    (500_000, "rd", 0.01),
]


def _radius(k, p):
    a = p * k
    return SIGMA * ndtri(betaincinv(a, k - a + 1.0, ALPHA)) if a > 0 else -math.inf


def scan_table(k_bar, decline, U, delta, batch=200):
    """The paper's approach: per grid point, k = batch, 2 batch, ... until decline <= U."""
    steps = round(1 / delta)
    out = []
    for i in range(steps // 2, steps + 1):  # the paper's grid starts at p = 0.5
        p = i / steps
        r_bar = _radius(k_bar, p)
        target = r_bar - U if decline == "ad" else (1 - U) * r_bar
        if not target > 0:
            out.append(0)
            continue
        k = batch
        while k < k_bar and _radius(k, p) < target:
            k += batch
        out.append(min(k, k_bar))
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
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args(argv)
    rep_exact = 5 if args.quick else 20
    rep_scan_ad, rep_scan_rd = (1, 1) if args.quick else (3, 1)

    print(f"psi tables, sigma={SIGMA}, alpha={ALPHA}; exact = isskit.psi (full table "
          f"p = 0..1, paper mapping), scan = paper's 200-step scan (grid p = 0.5..1)")
    print(f"{'k_bar':>7} {'decl':>4} {'U':>5} {'delta':>7} {'exact ms (best/med)':>20} "
          f"{'scan ms':>9} {'speed-up':>9}  check")
    for delta in (0.001, 0.0001):
        steps = round(1 / delta)
        grid = np.arange(steps + 1) / steps
        for k_bar, decline, U in CASES:
            def build(k_bar=k_bar, decline=decline, U=U, delta=delta):
                # bypass the cache: time the computation, not the lookup
                return _cached_table.__wrapped__(k_bar, U, decline, SIGMA, ALPHA, delta, "paper")

            best, med, _ = best_ms(build, rep_exact)
            line = f"{k_bar:>7} {decline:>4} {U:>5} {delta:>7} {best:>9.2f} / {med:>7.2f} "
            if delta == 0.001:
                reps = rep_scan_ad if decline == "ad" else rep_scan_rd
                scan_ms, _, scanned = best_ms(
                    lambda k_bar=k_bar, decline=decline, U=U, delta=delta: scan_table(
                        k_bar, decline, U, delta), reps)
                # the scan's answer is the exact psi rounded up to a multiple of 200
                exact = psi_exact(grid[steps // 2:], k_bar, U, decline, SIGMA, ALPHA)
                rounded = np.where(exact > 0, np.minimum(np.ceil(exact / 200) * 200, k_bar), 0)
                ok = np.array_equal(scanned, rounded)
                line += f"{scan_ms:>9.1f} {scan_ms / best:>8.0f}x  scan = ceil200(exact): {ok}"
            else:
                line += f"{'-':>9} {'-':>9}"
            print(line, flush=True)
    # the "sup" mapping adds psi on a few hundred points in the sign-change cells
    for k_bar, decline, U in CASES:
        best, med, _ = best_ms(lambda k_bar=k_bar, decline=decline, U=U: _cached_table.__wrapped__(
            k_bar, U, decline, SIGMA, ALPHA, 0.001, "sup"), rep_exact)
        print(f"{k_bar:>7} {decline:>4} {U:>5} {0.001:>7} {best:>9.2f} / {med:>7.2f}  "
              f"(mapping sup)")


if __name__ == "__main__":
    main()
