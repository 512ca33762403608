"""Stream store: bytes on disk per sample, and read speed against uncompressed baselines.

Streams with a realistic p_A mix (isskit.studies.synthetic.realistic_p_A, default Cohen et al.'s
CIFAR-10 sigma = 0.25 model) and N = 100,000 samples per image are written

1. with several chunk / filter options straight through h5py (bytes per sample, write
   and read speed), to show why the store uses what it uses;
2. as a real store (isskit.studies.synthetic.write_synthetic_store), then read back with
   StreamStore.iter_chunks (threaded inflation and plain HDF5), against two baselines
   measured in the same run: an uncompressed HDF5 dataset of the same shape, and
   np.fromfile of the raw uint16 bytes. All files were just written, so they are read
   from the page cache: the figures are decompression speed, not disk speed.

Run:  .venv/bin/python bench/bench_store.py [--images 500] [--N 100000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from isskit.store import open_store
from isskit.store._inflate import _default_threads
from isskit.studies.synthetic import (
    DEFAULT_SOURCE,
    realistic_p_A,
    synthetic_labels,
    write_synthetic_store,
)

OPTIONS = [
    # name, h5py create_dataset keywords (chunks given as a function of N)
    ("gzip-1, (1, N)  [chosen]", dict(compression="gzip", compression_opts=1)),
    ("gzip-4, (1, N)", dict(compression="gzip", compression_opts=4)),
    ("gzip-1 + shuffle, (1, N)", dict(compression="gzip", compression_opts=1, shuffle=True)),
    ("gzip-4 + shuffle, (1, N)", dict(compression="gzip", compression_opts=4, shuffle=True)),
    ("lzf, (1, N)", dict(compression="lzf")),
    ("lzf + shuffle, (1, N)", dict(compression="lzf", shuffle=True)),
    ("gzip-1, (1, 16384)", dict(compression="gzip", compression_opts=1, chunk=16384)),
    ("gzip-1, (8, N)", dict(compression="gzip", compression_opts=1, rows=8)),
    ("none (contiguous)", dict()),
]


def _best(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--N", type=int, default=100_000)
    ap.add_argument("--source", default=DEFAULT_SOURCE)
    ap.add_argument("--other", default="uniform", choices=["uniform", "runner_up"])
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n, N = args.images, args.N
    rng = np.random.default_rng(args.seed)
    p_A = realistic_p_A(n, rng, args.source)
    K = args.classes
    pred = rng.integers(0, K, n)
    print(
        f"{n} images x {N:,} samples, p_A from {args.source}"
        f" ({K} classes, other classes: {args.other})"
    )
    print(
        "p_A deciles: "
        + " ".join(f"{q:.3f}" for q in np.quantile(p_A, [0.1, 0.3, 0.5, 0.7, 0.9]))
        + f"; mean {p_A.mean():.3f}"
    )

    t = time.perf_counter()
    labels = synthetic_labels(p_A, N, predicted=pred, num_classes=K, rng=rng, other=args.other)
    gen = time.perf_counter() - t
    print(f"synthetic_labels: {labels.size / gen / 1e6:.0f} M samples/s")
    size = labels.size

    with tempfile.TemporaryDirectory(dir=os.environ.get("ISSKIT_BENCH_TMP")) as tmp:
        tmp = Path(tmp)
        print()
        print(f"{'layout and filter':<28}{'bytes/sample':>13}{'write Ms/s':>12}{'read Ms/s':>11}")
        for name, kw in OPTIONS:
            kw = dict(kw)
            chunk, rows = kw.pop("chunk", N), kw.pop("rows", 1)
            if kw:
                kw["chunks"] = (rows, min(chunk, N))
            path = tmp / "opt.h5"

            def write(path=path, kw=kw, labels=labels):
                with h5py.File(path, "w") as f:
                    f.create_dataset("labels", data=labels, **kw)

            tw = _best(write, 1)
            nbytes = path.stat().st_size

            def read(path=path):
                with h5py.File(path, "r") as f:
                    f["labels"][...]

            tr = _best(read, args.repeat)
            print(
                f"{name:<28}{nbytes / size:>13.3f}{size / tw / 1e6:>12.0f}{size / tr / 1e6:>11.0f}"
            )

        # The real store, and the baselines.
        store = tmp / "store.h5"
        t = time.perf_counter()
        write_synthetic_store(
            store,
            p_A,
            predicted=pred,
            true_label=pred,
            samples_per_image=N,
            num_classes=K,
            sigma=0.25,
            seed=args.seed,
            other=args.other,
        )
        tw = time.perf_counter() - t
        raw = tmp / "raw.u16"
        labels.tofile(raw)
        plain = tmp / "plain.h5"
        with h5py.File(plain, "w") as f:
            f.create_dataset("labels", data=labels)
        del labels

        with open_store(store) as s:
            bps = store.stat().st_size / (s.n_images * s.samples_per_image)

            def chunks(threads, samples=None, s=s):
                for _ in s.iter_chunks(64 << 20, threads=threads, samples=samples):
                    pass

            t_thr = _best(lambda: chunks(4), args.repeat)
            t_def = _best(lambda: chunks(None), args.repeat)
            t_one = _best(lambda: chunks(1), args.repeat)
            t_h5 = _best(lambda: chunks(0), args.repeat)
            k = N // 10
            t_pre = _best(lambda: chunks(None, k), args.repeat)
            t_pre_h5 = _best(lambda: chunks(0, k), args.repeat)

        def read_plain():
            with h5py.File(plain, "r") as f:
                f["labels"][...]

        t_plain = _best(read_plain, args.repeat)
        t_raw = _best(lambda: np.fromfile(raw, dtype=np.uint16), args.repeat)
        print()
        print(
            f"store file (write_synthetic_store): {bps:.3f} bytes/sample,"
            f" written at {size / tw / 1e6:.0f} M samples/s (generation included)"
        )
        print(f"read, samples/s (best of {args.repeat}; page cache):")
        rows = [
            (f"iter_chunks, default ({_default_threads()} thread(s))", t_def),
            ("iter_chunks, 4 inflate threads", t_thr),
            ("iter_chunks, inflate in caller (threads=1)", t_one),
            ("iter_chunks, HDF5 only (threads=0)", t_h5),
            ("baseline: uncompressed HDF5 dataset", t_plain),
            ("baseline: np.fromfile raw uint16", t_raw),
        ]
        for name, tt in rows:
            print(f"  {name:<40}{size / tt / 1e6:>8.0f} M/s   default / this {tt / t_def:.2f}")
        print(f"  {'iter_chunks, prefix of N/10 samples':<40}{n * k / t_pre / 1e6:>8.0f} M/s")
        print(f"  {'  same prefix, HDF5 only (threads=0)':<40}{n * k / t_pre_h5 / 1e6:>8.0f} M/s")
        print(
            f"  (this machine: {os.cpu_count()} cores, load average"
            f" {os.getloadavg()[0]:.1f} at the end)"
        )
        ok = bps <= 0.5
        print(
            f"\nbytes/sample <= 0.5: {'yes' if ok else 'NO'};"
            f" iter_chunks >= 100 M samples/s: {'yes' if size / t_def >= 1e8 else 'NO'}"
        )


if __name__ == "__main__":
    main()
