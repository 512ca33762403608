"""Count recovery: vectorised bisection (isskit.logs.recover_counts) against a per-count scan.

The baseline scans, for one row at a time, every count that certifies (about 49,500 of them
at n = 100,000), computing and printing each radius (one vectorised SciPy call per row, then
formatting), and keeps the counts that print the logged text. It is run on the first --rows
certified rows of the log and extrapolated per row; both must give the same ranges there.

    python bench/recover_counts.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from isskit.logs import read_cohen_log, recover_counts
from isskit.stats import certified_radius, cp_lower

REPO = Path(__file__).resolve().parents[1]
LOG = "salman2019__cifar10_cohen-resnet110_noise_0.50_test_sigma_0.50"  # 10,000 rows, alpha 0.001


def scan(log, rows, n, alpha, sigma):
    k = np.arange(1, n + 1)
    pl = cp_lower(k, n, alpha)
    cert = pl >= 0.5
    k, r = k[cert], certified_radius(pl[cert], sigma)
    out = []
    for i in rows:
        text = log.radius_text[i]
        hits = k[np.array([format(x, log.radius_format) == text for x in r])]
        out.append((hits.min(), hits.max()))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20)
    args = ap.parse_args()
    log = read_cohen_log(REPO / "data" / "published" / "certify-logs" / LOG)
    n, alpha, sigma = 100_000, 0.001, 0.5
    t0 = time.perf_counter()
    ranges = recover_counts(log, n=n, alpha=alpha, sigma=sigma)
    t_fast = time.perf_counter() - t0
    rows = np.flatnonzero(~log.abstained)[: args.rows]
    t0 = time.perf_counter()
    ref = scan(log, rows, n, alpha, sigma)
    t_scan = (time.perf_counter() - t0) / rows.size * len(log)
    assert [(ranges.kA_min[i], ranges.kA_max[i]) for i in rows] == ref, "ranges differ"
    print(f"{LOG}: {len(log)} rows, n = {n}, alpha = {alpha}")
    print(f"recover_counts (bisection, all rows): {t_fast:.2f} s")
    print(f"per-count scan (extrapolated from {rows.size} rows): {t_scan:.0f} s")
    print(f"ratio scan / bisection: {t_scan / t_fast:.0f}x (same ranges on the rows scanned)")


if __name__ == "__main__":
    main()
