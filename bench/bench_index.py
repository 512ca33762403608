"""Replay's index build with every chunk checked as it is read (issue 8), against the old reader.

    python bench/bench_index.py                  # 2,000 images x 100,000 samples
    python bench/bench_index.py --images 200     # a quick run while developing

Since issue 8 the store's reader inflates every chunk it reads to its end, so that zlib
checks the chunk's adler32 (before, it stopped once it had the bytes it needed, and never
saw a flipped bit), and refuses any label >= num_classes with one vectorised max per block.
This times ``isskit.replay.build_index`` (read, decompress, check, scan and pack: what
``isskit replay`` does before any policy is evaluated) in four modes, round by round in a
rotating order on the same store, and quotes the best round of each (the machine is shared),
with the CPU seconds the process spent (all threads): on a loaded machine wall times swing by
2x between rounds, while the CPU time a mode needs moves much less.

* checked: the reader as shipped (checksums and label range);
* checksums only: the label-range check switched off;
* range only: the old partial inflation, the label-range check on;
* unchecked (baseline): the reader before issue 8, rebuilt here only (partial inflation, no
  label-range check); the library no longer has it.

Synthetic streams with a realistic p_A mix (``isskit.studies.synthetic.realistic_p_A``, Cohen et
al.'s CIFAR-10 sigma = 0.25 log), written once under --dir and reused; the policies are
bench/bench_replay.py's sweep (1,000 policies, 78 checkpoints) sized for N. The file was
just written or read, so reads come from the page cache: the figures are decompression and
indexing speed, not disk speed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "cli"), str(REPO / "bench")]

from bench_replay import sweep  # noqa: E402

import isskit.store._inflate as store_mod  # noqa: E402  (the chunk reader's own binding is patched)
from isskit.policies import Cohen  # noqa: E402
from isskit.replay import DEFAULT_MAX_BYTES, build_index, evaluate, index_blocks  # noqa: E402
from isskit.store import StreamStore, open_store  # noqa: E402

NUM_CLASSES = 10


def _unchecked_inflate_into(raw: bytes, dest: np.ndarray, chunk_bytes: int) -> None:
    """The inflater before issue 8: only as many bytes as ``dest`` needs, no checksum."""
    need = 2 * dest.size
    data = zlib.decompressobj().decompress(raw, need)
    if len(data) < need:
        raise zlib.error(f"chunk inflated to {len(data)} bytes, expected at least {need}")
    dest[:] = np.frombuffer(data, dtype="<u2", count=dest.size)


@contextlib.contextmanager
def _reader(checksums: bool, label_range: bool):
    inflate, check = store_mod._inflate_into, StreamStore._check_label_range
    if not checksums:
        store_mod._inflate_into = _unchecked_inflate_into
    if not label_range:
        StreamStore._check_label_range = lambda self, block, rows, samples: None
    try:
        yield
    finally:
        store_mod._inflate_into, StreamStore._check_label_range = inflate, check


MODES = {
    "checked": (True, True),
    "checksums only": (True, False),
    "range only": (False, True),
    "unchecked (baseline)": (False, False),
}


def _generate(path: Path, n_images: int, samples_per_image: int) -> None:
    from isskit.studies.synthetic import realistic_p_A, write_synthetic_store

    rng = np.random.default_rng(2022)
    p_A = realistic_p_A(n_images, rng)
    predicted = rng.integers(0, NUM_CLASSES, n_images)
    tmp = path.with_name(path.name + ".partial")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    write_synthetic_store(
        tmp,
        p_A,
        predicted=predicted,
        true_label=predicted,
        samples_per_image=samples_per_image,
        num_classes=NUM_CLASSES,
        sigma=0.25,
        seed=8,
        seconds_per_sample=2.0e-5,
        max_bytes=64 << 20,
    )
    tmp.rename(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=Path(os.environ.get("ISSKIT_BENCH_DIR",
                                                                    "/tmp/isskit-bench")))
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    path = args.dir / f"index_{args.images}x{args.samples}.h5"
    if not path.exists():
        t = time.perf_counter()
        _generate(path, args.images, args.samples)
        print(f"generated {path} in {time.perf_counter() - t:.0f} s (reused by later runs)")

    policies = sweep(args.samples)
    every = list(dict.fromkeys([*policies, *(p.default_reference(policies) for p in policies)]))
    # numba compiles (or loads its cache) outside the timings
    tiny = np.zeros((2, 130), np.uint16)
    evaluate(index_blocks([tiny], samples_per_image=130, num_classes=2, selection_sizes=[5]),
             Cohen(n0=5, n=100), 0.25)

    with open_store(path) as s:
        total = s.n_images * s.samples_per_image
        print(f"store: {s.n_images} images x {s.samples_per_image:,} samples = {total:.3g}"
              f" labels, {path.stat().st_size / total:.3f} bytes/sample; {len(every)} policies"
              f" and references; {os.cpu_count()} cores, load average"
              f" {os.getloadavg()[0]:.2f} at the start")
        with _reader(False, False):
            reference = build_index(s, every)
        times: dict[str, list[float]] = {m: [] for m in MODES}
        cpu: dict[str, list[float]] = {m: [] for m in MODES}
        names = list(MODES)
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[: r % len(names)]:
                with _reader(*MODES[name]):
                    t, c = time.perf_counter(), time.process_time()
                    index = build_index(s, every)
                    times[name].append(time.perf_counter() - t)
                    cpu[name].append(time.process_time() - c)
                # Same store, same blocks: the arrays match exactly (same_as would copy the
                # bit vectors of every slot, gigabytes here).
                assert all(np.array_equal(getattr(index, a), getattr(reference, a))
                           for a in ("rows", "modes", "mode_counts", "slot", "bits", "cum")), name
        # What the label-range check costs on its own: one max per block, in memory.
        block = next(s.iter_chunks(DEFAULT_MAX_BYTES))[1]
        t_max = min(_time(lambda: block.max()) for _ in range(5))
    load_end = os.getloadavg()[0]

    base = min(times["unchecked (baseline)"])
    base_cpu = statistics.median(cpu["unchecked (baseline)"])
    print(f"\nbuild_index: samples/s, best of {args.rounds} rounds (median), and CPU seconds"
          " per 1e8 samples (median of the rounds)")
    for name in MODES:
        best, c = min(times[name]), statistics.median(cpu[name])
        print(f"  {name:<22}{total / best:10.3g} ({total / statistics.median(times[name]):.3g})"
              f"  rate / baseline's {base / best:.3f}   CPU {c / total * 1e8:6.3f} s"
              f" = {c / base_cpu:.3f} x baseline's")
    checked = total / min(times["checked"])
    print(f"  label-range max alone, one {block.nbytes >> 20} MiB block in memory:"
          f" {block.size / t_max:.3g} samples/s")
    print(f"  target >= 1e8 samples/s checked: {'met' if checked >= 1e8 else 'MISSED'}"
          f" ({checked / 1e8:.2f}x); load average {load_end:.2f} at the end")


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
