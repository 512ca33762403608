"""Benchmark of the replay (issue 4): index build, a 1,000-policy sweep, the whole command.

    python bench/bench_replay.py                      # 10,000 images x 110,000 samples
    python bench/bench_replay.py --images 500         # a quick run while developing

Synthetic streams with a realistic p_A mix (isskit.studies.synthetic.realistic_p_A: p_A resampled
from the counts recovered from Cohen et al.'s CIFAR-10 sigma = 0.25 log), written once into
a store under --dir and reused. Prints, each with its ratio to a baseline measured in the
same run or to the issue's target:

(i)   reading the store once and building the index: samples/s (target >= 1e8), against
      just reading and decompressing the same blocks; peak memory (target <= 4 GB);
(ii)  the sweep of 1,000 policies over the index (target <= 10 s), against
      tests/reference.py doing the same work -- timed on random (policy, image) pairs and
      scaled linearly to all pairs (target >= 100x);
(iii) the whole ``isskit replay`` command for the sweep, store to netCDF and table
      (target <= 60 s wall).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "cli")]

from isskit.policies import IAS, ISS, Cohen  # noqa: E402
from isskit.store import open_store  # noqa: E402

SIGMA = 0.25
NUM_CLASSES = 10


def sweep(samples_per_image: int) -> list:
    """The 1,000 policies: ISS AD and RD, paper-faithful and fresh, over k_bar, U and k0;
    IAS and Cohen over n. Sized for streams of ``samples_per_image`` (110,000 in the issue)."""
    scale = samples_per_image / 110_000
    k_bars = [round(k * scale) for k in (20_000, 50_000, 100_000)]
    k0s = [max(1, round(k * scale)) for k in (200, 500, 1000, 2000, 5000, 10_000)]
    us = [0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4]
    out = [
        ISS(k_bar=kb, U=u, decline=d, k0=k0, fresh=f)
        for d in ("ad", "rd")
        for f in (False, True)
        for kb in k_bars
        for u in us
        for k0 in k0s
    ]
    ns = np.unique(np.linspace(1000 * scale, samples_per_image - 100 * scale, 68).astype(int))
    out += [IAS(n=int(n)) for n in ns]
    out += [Cohen(n0=max(1, int(100 * scale)), n=int(n) - max(1, int(100 * scale)))
            for n in ns]
    return out


def _toml(policies, path):
    lines = ["policies = ["] + [f'  "{p.name}",' for p in policies] + ["]"]
    Path(path).write_text("\n".join(lines) + "\n")


def generate(path: Path, n_images: int, samples_per_image: int) -> None:
    from isskit.studies.synthetic import realistic_p_A, write_synthetic_store

    rng = np.random.default_rng(2022)
    p_A = realistic_p_A(n_images, rng)
    predicted = rng.integers(0, NUM_CLASSES, n_images)
    # 10% wrong predictions, like a model with ~90% clean accuracy on the certified images
    wrong = rng.random(n_images) < 0.1
    true_label = np.where(wrong, (predicted + 1) % NUM_CLASSES, predicted)
    tmp = path.with_name(path.name + ".partial")
    write_synthetic_store(
        tmp,
        p_A,
        predicted=predicted,
        true_label=true_label,
        samples_per_image=samples_per_image,
        num_classes=NUM_CLASSES,
        sigma=SIGMA,
        seed=4,
        seconds_per_sample=2.0e-5,
        progress=True,
        max_bytes=64 << 20,
    )
    tmp.rename(path)


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _child_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--samples", type=int, default=110_000)
    ap.add_argument("--dir", type=Path, default=Path(os.environ.get("ISSKIT_BENCH_DIR",
                                                                    "/tmp/isskit-bench")))
    ap.add_argument("--ref-pairs", type=int, default=150,
                    help="random (policy, image) pairs the reference is timed on")
    ap.add_argument("--skip-cli", action="store_true")
    ap.add_argument("--generate-only", action="store_true")
    args = ap.parse_args()

    args.dir.mkdir(parents=True, exist_ok=True)
    store_path = args.dir / f"streams_{args.images}x{args.samples}.h5"
    if args.generate_only:
        generate(store_path, args.images, args.samples)
        return
    if not store_path.exists():
        print(f"generating {store_path} (once; reused by later runs)", flush=True)
        t = time.perf_counter()
        # in a child, so that this process's peak memory is the replay's alone
        subprocess.run([sys.executable, __file__, "--generate-only", "--images",
                        str(args.images), "--samples", str(args.samples), "--dir",
                        str(args.dir)], check=True)
        print(f"  generated in {time.perf_counter() - t:.0f} s", flush=True)
    policies = sweep(args.samples)
    n_pol = len(policies)
    size_gb = store_path.stat().st_size / 1e9

    from isskit.replay import DEFAULT_MAX_BYTES, build_index, evaluate, index_blocks, replay

    # compile (or load from numba's cache) outside the timings
    tiny = np.zeros((2, 130), np.uint16)
    evaluate(index_blocks([tiny], samples_per_image=130, num_classes=2, selection_sizes=[5]),
             Cohen(n0=5, n=100), SIGMA)

    store = open_store(store_path)
    n_img, N = store.n_images, store.samples_per_image
    total = n_img * N
    print(f"store: {n_img} images x {N} samples = {total:.3g} labels "
          f"({2 * total / 1e9:.2f} GB as uint16, {size_gb:.2f} GB on disk); "
          f"{n_pol} policies; {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} (other processes share them)")

    # ---- (i) read + index
    t = time.perf_counter()
    for _, _block in store.iter_chunks(max_bytes=DEFAULT_MAX_BYTES):
        pass
    t_read = time.perf_counter() - t
    refs = [p.default_reference(policies) for p in policies]
    every = list(dict.fromkeys([*policies, *refs]))
    tracemalloc.start()
    t = time.perf_counter()
    index = build_index(store, every)
    t_index = time.perf_counter() - t
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = _rss_gb()
    print("\n(i) read the streams once and build the index")
    print(f"  read + decompress only   {t_read:7.2f} s  {total / t_read:.3g} samples/s (baseline)")
    print(f"  read + build the index   {t_index:7.2f} s  {total / t_index:.3g} samples/s "
          f"= {t_read / t_index:.2f}x the baseline's rate; target 1e8/s: "
          f"{total / t_index / 1e8:.2f}x the target")
    print(f"  index: {index.nbytes / 1e9:.3f} GB ({index.bits.shape[0]} slots for {n_img} "
          f"images, {index.checkpoints.size} checkpoints)")
    print(f"  peak traced allocations {traced_peak / 1e9:.3f} GB; peak RSS of the process "
          f"{rss:.3f} GB (target <= 4 GB: {rss / 4:.2f} of it)")

    # ---- (ii) the sweep over the index
    from isskit.psi import psi_table

    t = time.perf_counter()
    for p in policies:
        if isinstance(p, ISS):
            psi_table(p.k_bar, p.U, p.decline, SIGMA, p.alpha, p.delta, mapping=p.mapping)
    t_psi = time.perf_counter() - t
    t = time.perf_counter()
    ds = replay(store, policies, index=index)
    t_sweep = time.perf_counter() - t

    from tests import reference as ref

    rng = np.random.default_rng(0)
    pairs = sorted(zip(rng.integers(0, n_pol, args.ref_pairs),
                       rng.integers(0, n_img, args.ref_pairs), strict=True), key=lambda x: x[1])
    rows = np.unique([i for _, i in pairs])
    labels = dict(zip(rows.tolist(), store.labels(rows=rows), strict=True))
    for k, _ in pairs:  # the reference's own psi grids, untimed like isskit's tables above
        if isinstance(policies[k], ISS):
            q = policies[k]
            ref.k_hat_ref(1.0, 1.0, q.k_bar, q.U, q.decline, SIGMA, q.alpha, q.delta, q.mapping)
    t = time.perf_counter()
    mismatches = 0
    for k, i in pairs:
        r = ref.ref_certify_image(labels[i].tolist(), policies[k], SIGMA)
        mismatches += int(r["prediction"] != ds.prediction.values[k, i]
                          or r["samples"] != ds.samples.values[k, i]
                          or abs(r["radius"] - ds.radius.values[k, i]) > 1e-12)
    t_ref_pairs = time.perf_counter() - t
    t_ref = t_ref_pairs / len(pairs) * n_pol * n_img
    print(f"\n(ii) {n_pol} policies x {n_img} images over the index")
    print(f"  psi tables ({sum(isinstance(p, ISS) for p in policies)} ISS policies): "
          f"{t_psi:.2f} s (cached per process)")
    print(f"  sweep (evaluate + metrics + Dataset): {t_sweep:.2f} s "
          f"({n_pol * n_img / t_sweep:.3g} policy-images/s); target 10 s: "
          f"{t_sweep / 10:.2f} of it; with the psi tables {t_sweep + t_psi:.2f} s")
    print(f"  tests/reference.py: {t_ref_pairs:.1f} s on {len(pairs)} random (policy, image) "
          f"pairs, scaled linearly to all {n_pol * n_img:.3g} pairs: {t_ref:.3g} s "
          f"(estimate); the sweep is {t_ref / t_sweep:.3g}x faster (target 100x); "
          f"{mismatches} mismatches on those pairs")
    ca0 = ds.certified_accuracy.values[:, 0]
    print(f"  sanity: ACR {ds.acr.values.min():.3f}..{ds.acr.values.max():.3f}, "
          f"CA(0) {ca0.min():.3f}..{ca0.max():.3f}, "
          f"mean samples {ds.mean_samples.values.min():.0f}..{ds.mean_samples.values.max():.0f}")
    store.close()
    del ds, index

    # ---- (iii) the whole command
    if args.skip_cli:
        return
    toml = args.dir / "sweep.toml"
    _toml(policies, toml)
    out = args.dir / "results.nc"
    table = args.dir / "table.txt"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'cli'}"}
    cmd = [sys.executable, "-m", "isskit_cli.main", "replay", str(store_path),
           "--policies-file", str(toml), "--out", str(out), "--no-progress"]
    t = time.perf_counter()
    with table.open("w") as f:
        subprocess.run(cmd, check=True, stdout=f, env=env)
    t_cli = time.perf_counter() - t
    print("\n(iii) the whole command, store to netCDF and table:")
    print("  isskit replay " + " ".join(cmd[4:]))
    print(f"  {t_cli:.1f} s wall (target 60 s: {t_cli / 60:.2f} of it); peak RSS "
          f"{_child_rss_gb():.2f} GB; netCDF {out.stat().st_size / 1e9:.2f} GB; "
          f"table {sum(1 for _ in table.open())} lines in {table}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
