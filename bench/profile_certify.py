"""Where online certification spends its time: certify_to_store under cProfile.

    python bench/profile_certify.py [--images 16] [--policy "adaptive r=0.25" ...] [--top 18]

On the embedded default (digits_cnn, sigma 0.25, CPU): one warm-up call, two timed calls
(wall seconds and samples drawn printed, the baseline being the same call's forward passes
in the profile below), then one call under cProfile, sorted by cumulative time. It explains
the figures of bench_certify.py (fixed costs of the store, policy evaluation against the
model's forward passes); it sets no target.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from bench_sampling import _Images  # noqa: E402

from isskit.sampling.certify import certify_to_store  # noqa: E402
from isskit.sampling.datasets import load_dataset  # noqa: E402
from isskit.sampling.models import default_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--policy", "-p", action="append", help="default: adaptive r=0.25")
    ap.add_argument("--top", type=int, default=18, help="profile lines printed")
    args = ap.parse_args()
    policies = args.policy or ["adaptive r=0.25"]
    digits = load_dataset("digits").dataset
    model = default_model().model.eval()
    data = _Images([digits[i][0] for i in range(args.images)])
    kw = dict(policies=policies, sigma=0.25, progress=False, num_classes=10)
    with tempfile.TemporaryDirectory() as tmp:
        certify_to_store(model, _Images([digits[0][0]]), Path(tmp) / "warm.h5", **kw)
        for r in range(2):
            t0 = time.perf_counter()
            run = certify_to_store(model, data, Path(tmp) / f"c{r}.h5", **kw)
            print(f"{args.images} images, {policies}: {time.perf_counter() - t0:.3f} s, "
                  f"{int(run.drawn.sum()):,} samples drawn")
        prof = cProfile.Profile()
        prof.enable()
        certify_to_store(model, data, Path(tmp) / "p.h5", **kw)
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
