"""Online certification: does drawing lazily save wall time in proportion to the samples?

    python bench/bench_certify.py [--quick] [--device cpu|cuda] [--only default|resnet110]

For each model (the embedded default on its digits, and a CIFAR-10 ResNet-110 with random
weights on 3x32x32 images), on the same few images, in one run, interleaved round by round
(the order rotating) so that load from other processes hits every method alike, measures
the wall time of :func:`isskit.sampling.certify.certify_to_store` (the library call behind
``isskit certify``, so loading the model is not timed) with

* an ISS policy (``ISS-AD-10-0.05`` on the default),
* a decision policy (``adaptive r=0.25``) where the library takes decision policies,
* Cohen's CERTIFY (``cohen n0=100 n=100000`` on the default), the baseline,

and of :func:`isskit.sampling.sample_to_store` drawing Cohen's ``n0 + n`` for every image.

Prints, per policy, the samples drawn and the fastest round's wall time; the ratio of its
time to Cohen's against the ratio of their samples (target: within 10%, i.e. the lazy
draws keep the model as busy as full rows do); and certify's samples/s on Cohen against
``sample_to_store``'s (target: within 10%). On the CPU the ResNet-110 runs a smaller
Cohen (``n = 1000``) and ISS (``k_bar = 1000``): at about 200 samples/s on two cores the
published sizes would take hours; the comparison is the same.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_sampling import _Images  # noqa: E402  (the same in-memory dataset)

from isskit.sampling import sample_to_store  # noqa: E402
from isskit.sampling.certify import certify_to_store  # noqa: E402
from isskit.sampling.datasets import load_dataset  # noqa: E402
from isskit.sampling.models import build_model, default_model  # noqa: E402

SIGMA = 0.25
BATCH = 400


def _certify(model, data, tmp, policy, device):
    out = Path(tmp) / f"c-{time.perf_counter_ns()}.h5"
    t0 = time.perf_counter()
    run = certify_to_store(model, data, out, policies=[policy], sigma=SIGMA, batch=BATCH,
                           device=device, progress=False, num_classes=10)
    dt = time.perf_counter() - t0
    out.unlink()
    return dt, int(run.drawn.sum())


def _sample(model, data, tmp, N, device):
    out = Path(tmp) / f"s-{time.perf_counter_ns()}.h5"
    t0 = time.perf_counter()
    sample_to_store(model, data, out, sigma=SIGMA, samples_per_image=N, batch=BATCH, device=device,
                    progress=False, num_classes=10)
    dt = time.perf_counter() - t0
    out.unlink()
    return dt, len(data) * N


def run(name, model, images, *, iss, decision, cohen, N, rounds, device):
    """Time every method ``rounds`` times, interleaved; print and return the figures."""
    model = model.eval()
    data = _Images(images)
    methods = {"iss": iss, "decision": decision, "cohen": cohen}
    with tempfile.TemporaryDirectory() as tmp:
        # warm-up (oneDNN or cuDNN pick their kernels on the first calls); a policy the
        # library refuses is left out, and said so
        _sample(model, _Images(images[:1]), tmp, min(N, 2 * BATCH), device)
        for key, policy in list(methods.items()):
            try:
                certify_to_store(model, _Images(images[:1]), Path(tmp) / f"w-{key}.h5",
                                 policies=[policy], sigma=SIGMA, batch=BATCH, device=device,
                                 progress=False, num_classes=10, max_samples=None)
            except ValueError as exc:
                print(f"  {policy}: pending ({exc})")
                del methods[key]
        calls = {k: (lambda p=p: _certify(model, data, tmp, p, device))
                 for k, p in methods.items()}
        calls["sample"] = lambda: _sample(model, data, tmp, N, device)
        times = {k: [] for k in calls}
        drawn = {}
        order = list(calls)
        for r in range(rounds):
            for k in order[r % len(order):] + order[:r % len(order)]:
                dt, samples = calls[k]()
                times[k].append(dt)
                drawn[k] = samples  # the same every round: the noise is seeded
    best = {k: min(v) for k, v in times.items()}
    print(f"{name}: {len(images)} images, sigma {SIGMA}, batch {BATCH}, {rounds} rounds, "
          f"device {device}, torch threads {torch.get_num_threads()}")
    labels = {"sample": f"sample_to_store N={N:,}", **methods}
    for k in calls:
        rounds_text = ", ".join(f"{t:.2f}" for t in times[k])
        print(f"  {labels[k]:<34} {drawn[k]:>11,} samples  {best[k]:8.2f} s  "
              f"{drawn[k] / best[k]:>10,.0f} samples/s   (rounds, s: {rounds_text})")
    figures = {}
    for k in ("iss", "decision"):
        if k in methods:
            t_ratio = best[k] / best["cohen"]
            s_ratio = drawn[k] / drawn["cohen"]
            figures[k] = t_ratio / s_ratio - 1
            print(f"  {methods[k]} / {cohen}: time {t_ratio:.3f}, samples {s_ratio:.3f}: "
                  f"time per sample {100 * figures[k]:+.1f}% of Cohen's (target within 10%)")
    rate = (drawn["cohen"] / best["cohen"]) / (drawn["sample"] / best["sample"])
    figures["rate"] = rate - 1
    print(f"  certify ({cohen}) samples/s / sample_to_store's: {rate:.3f} "
          f"({100 * (rate - 1):+.1f}%, target within 10%)")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images, samples, rounds")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--only", choices=["default", "resnet110"], help="one model only")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, device {args.device}")
    gpu = args.device.startswith("cuda")
    if args.only != "resnet110":
        digits = load_dataset("digits").dataset
        n_img = 4 if args.quick else 16
        n = 20_000 if args.quick else 100_000
        run("embedded default (digits_cnn, 1x8x8)", default_model().model,
            [digits[i][0] for i in range(n_img)],
            iss="ISS-AD-2-0.05" if args.quick else "ISS-AD-10-0.05",
            decision="adaptive r=0.25", cohen=f"cohen n0=100 n={n}", N=100 + n,
            rounds=2 if args.quick else 3, device=args.device)
    if args.only != "default":
        # random weights: the labels' spread is the network's, and timing is all we need
        n = 100_000 if gpu else (200 if args.quick else 1000)
        n_img = 8 if gpu else (1 if args.quick else 2)
        run("CIFAR-10 ResNet-110 (random weights, 3x32x32)", build_model("cifar_resnet110"),
            [torch.rand(3, 32, 32) for _ in range(n_img)],
            iss=f"iss decline=ad k_bar={n} U=0.05 k0=100",
            decision="adaptive r=0.25 stages=" + ("1000/10000/100000" if gpu else "200/500/900"),
            cohen=f"cohen n0=100 n={n}", N=100 + n, rounds=2, device=args.device)


if __name__ == "__main__":
    main()
