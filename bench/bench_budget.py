"""Benchmark: the budget policy replays at the speed of ISS (issue 11).

    python bench/bench_budget.py                    # 2,000 images x 60,000 samples
    python bench/bench_budget.py --images 300       # a quick run while developing

Synthetic streams with a realistic p_A mix (isskit.studies.synthetic.realistic_p_A), written
once into a store under --dir and reused. Both policies are replayed over the same stream
index (isskit.replay.build_index, built once for both) through isskit.replay.evaluate,
which plans (for ``budget B=``: fits the price over every image's pilot first), counts in
numba over the ranges the plan gives, and certifies:

* fresh ISS, ``iss decline=ad k_bar=50000 U=0.05 k0=300 fresh=true``, the baseline;
* ``budget B=<fresh ISS's mean samples> k0=300`` and ``budget price=<the price it implied>``.

Prints, per policy, the first call in this process (its tables built: psi for ISS, the
posterior gains for budget, and for ``B=`` the price solved) and the median of --repeat
warm calls taken in turn, each with its ratio to fresh ISS's in the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "cli")]

from isskit.policies import ISS, Budget  # noqa: E402
from isskit.replay import build_index, evaluate  # noqa: E402
from isskit.store import open_store  # noqa: E402

SIGMA = 0.5
NUM_CLASSES = 10
K0 = 300


def generate(path: Path, n_images: int, samples_per_image: int) -> None:
    from isskit.studies.synthetic import realistic_p_A, write_synthetic_store

    rng = np.random.default_rng(2022)
    source = "cohen2019__imagenet_resnet50_noise_0.50_test_sigma_0.50"
    p_A = realistic_p_A(n_images, rng, source)
    predicted = rng.integers(0, NUM_CLASSES, n_images)
    tmp = path.with_name(path.name + ".partial")
    write_synthetic_store(
        tmp,
        p_A,
        predicted=predicted,
        true_label=predicted,
        samples_per_image=samples_per_image,
        num_classes=NUM_CLASSES,
        sigma=SIGMA,
        seed=7,
    )
    os.replace(tmp, path)


def timed(index, policies, repeat, done=None):
    """Per policy: its result, its first call's time, and the median of ``repeat`` warm calls.

    The warm calls go round the policies in turn, so that a change in the machine's load
    during the run weighs on each alike.
    """
    out = []
    for policy in policies:
        if done and policy in done:  # its first call was made already
            out.append([*done[policy], []])
            continue
        t0 = time.perf_counter()
        res = evaluate(index, policy, SIGMA)
        out.append([res, time.perf_counter() - t0, []])
    for _ in range(repeat):
        for row, policy in zip(out, policies, strict=True):
            t0 = time.perf_counter()
            evaluate(index, policy, SIGMA)
            row[2].append(time.perf_counter() - t0)
    return [(res, first, float(np.median(warm))) for res, first, warm in out]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2_000)
    ap.add_argument("--samples", type=int, default=60_000)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/isskit-bench-budget"))
    args = ap.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    path = args.dir / f"streams-{args.images}x{args.samples}.h5"
    if not path.exists():
        t0 = time.perf_counter()
        generate(path, args.images, args.samples)
        print(f"wrote {path} in {time.perf_counter() - t0:.1f} s")

    iss = ISS(k_bar=50_000, U=0.05, decline="ad", k0=K0, fresh=True)
    with open_store(path) as store:
        t0 = time.perf_counter()
        index = build_index(store, [iss, Budget(price=0.0, k0=K0)])
        print(f"index: {args.images} images x {args.samples} samples, "
              f"{time.perf_counter() - t0:.2f} s (shared by every policy below)")
    x = index.mode_counts[:, index.column(K0)].astype(np.int64)
    t0 = time.perf_counter()
    res_iss = evaluate(index, iss, SIGMA)
    done = {iss: (res_iss, time.perf_counter() - t0)}
    B = float(np.mean(res_iss.samples))
    by_B = Budget(B=B, k0=K0)
    fitted = by_B.fit(x, sigma=SIGMA, samples_per_image=index.samples_per_image)
    policies = [iss, by_B, fitted]
    rows = [(p.name, *t) for p, t in zip(policies, timed(index, policies, args.repeat, done),
                                         strict=True)]
    _, _, first_iss, warm_iss = rows[0]
    print()
    print(f"| policy | mean samples | first call (s) | x fresh ISS | warm, median of "
          f"{args.repeat} (s) | x fresh ISS |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, res, first, warm in rows:
        print(f"| {name} | {np.mean(res.samples):,.0f} | {first:.3f} | {first / first_iss:.2f} "
              f"| {warm:.4f} | {warm / warm_iss:.2f} |")
    print(f"\nprice B = {B:,.0f} implied: {fitted.price!r}")


if __name__ == "__main__":
    main()
