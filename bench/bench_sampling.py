"""Sampling throughput: isskit's sampling against bare forward passes and Cohen's loop.

    python bench/bench_sampling.py [--quick]

For each model (the embedded default digits_cnn on its test images, and a CIFAR-10
ResNet-110 with random weights on 3x32x32 images) at batch 400, on the CPU, measures in
one run, interleaved round by round so that load from other processes hits all three alike:

(a) bare forward passes: ``model(batch)`` over the same number of batches of the same
    size, on one pre-drawn noisy batch (no noise drawing, no argmax, no storing);
(b) isskit: :func:`isskit.sampling.sample_to_store` into a fresh HDF5 store (noise,
    forward, argmax, store writing and flushing included);
(-) for reference, forward passes plus drawing the noise (the floor of any sampler);
(c) Cohen et al.'s loop structure (``core.py``'s ``_sample_noise``): per batch, repeat the
    image, ``randn_like`` noise times sigma, forward, argmax, copy to the host, count.

Prints samples/s (fastest round), the overhead of (b) over (a) (target <= 10%) and
the ratio (b) / (c) (target >= 1).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from isskit.sampling import sample_to_store  # noqa: E402
from isskit.sampling.datasets import load_dataset  # noqa: E402
from isskit.sampling.models import build_model, default_model  # noqa: E402

SIGMA = 0.25
BATCH = 400


class _Images(torch.utils.data.Dataset):
    def __init__(self, images):
        self.images = images
        self.targets = [0] * len(images)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], 0


def bare(model, images, N):
    x = images[0]
    batch = (x + SIGMA * torch.randn((BATCH, *x.shape))).contiguous()
    sizes = [min(BATCH, N - s) for s in range(0, N, BATCH)]
    with torch.inference_mode():
        t0 = time.perf_counter()
        for _ in images:
            for b in sizes:
                model(batch[:b])
        return time.perf_counter() - t0


def noise_floor(model, images, N):
    # What any sampler must do besides the forward pass: draw the noise and add the image.
    # Not a target, a reference: it shows how much of (b)'s overhead is the noise itself.
    buf = torch.empty((BATCH, *images[0].shape))
    gen = torch.Generator()
    sizes = [min(BATCH, N - s) for s in range(0, N, BATCH)]
    with torch.inference_mode():
        t0 = time.perf_counter()
        for x in images:
            for b in sizes:
                z = buf[:b].normal_(generator=gen)
                model(torch.add(x, z, alpha=SIGMA, out=z))
        return time.perf_counter() - t0


def isskit(model, images, N, tmp):
    out = Path(tmp) / f"bench-{time.perf_counter_ns()}.h5"
    t0 = time.perf_counter()
    sample_to_store(model, _Images(images), out, sigma=SIGMA, samples_per_image=N, batch=BATCH,
                    progress=False, device="cpu")
    return time.perf_counter() - t0


def cohen(model, images, N, num_classes):
    t0 = time.perf_counter()
    with torch.no_grad():
        for x in images:
            counts = np.zeros(num_classes, dtype=int)
            remaining = N
            while remaining > 0:
                b = min(BATCH, remaining)
                remaining -= b
                batch = x.repeat((b, 1, 1, 1))
                noise = torch.randn_like(batch) * SIGMA
                predictions = model(batch + noise).argmax(1)
                counts += np.bincount(predictions.cpu().numpy(), minlength=num_classes)
    return time.perf_counter() - t0


def run(name, model, images, N, rounds, num_classes):
    model = model.eval()
    total = len(images) * N
    times = {"bare": [], "floor": [], "isskit": [], "cohen": []}
    with tempfile.TemporaryDirectory() as tmp:
        # warm-up: oneDNN picks and caches its kernels on the first calls
        isskit(model, images[:1], min(N, 2 * BATCH), tmp)
        methods = {
            "bare": lambda: bare(model, images, N),
            "floor": lambda: noise_floor(model, images, N),
            "isskit": lambda: isskit(model, images, N, tmp),
            "cohen": lambda: cohen(model, images, N, num_classes),
        }
        order = list(methods)
        for r in range(rounds):
            # The order rotates from round to round, so that no method always runs first
            # (or last) after the same neighbour.
            for k in order[r % len(order):] + order[:r % len(order)]:
                times[k].append(methods[k]())
    # The fastest round: on a shared machine, slower rounds measure the neighbours.
    rate = {k: total / min(v) for k, v in times.items()}
    print(f"{name}: {len(images)} images x N={N}, batch {BATCH}, {rounds} rounds, "
          f"torch threads {torch.get_num_threads()}")
    for k, label in (("bare", "(a) bare forward"), ("floor", "    forward + noise"),
                     ("isskit", "(b) isskit sample"), ("cohen", "(c) Cohen loop")):
        runs = ", ".join(f"{total / t:,.0f}" for t in times[k])
        print(f"  {label:<20} {rate[k]:>10,.0f} samples/s   (rounds: {runs})")
    overhead = rate["bare"] / rate["isskit"] - 1
    print(f"  overhead of isskit over bare forward: {100 * overhead:+.1f}%  (target <= 10%);"
          f" of which drawing the noise: {100 * (rate['bare'] / rate['floor'] - 1):+.1f}%")
    print(f"  isskit / Cohen loop: {rate['isskit'] / rate['cohen']:.3f}  (target >= 1)")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and rounds")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--only", choices=["default", "resnet110"], help="one model only")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, CPU")

    if args.only != "resnet110":
        bench_default(args)
    if args.only != "default":
        bench_resnet(args)


def bench_default(args):
    digits = load_dataset("digits").dataset
    n_img = 6 if args.quick else 40
    images = [digits[i][0] for i in range(n_img)]
    run("embedded default (digits_cnn, 1x8x8)", default_model().model, images,
        N=10_000, rounds=3 if args.quick else 7, num_classes=10)



def bench_resnet(args):
    resnet = build_model("cifar_resnet110")
    cifar_like = [torch.rand(3, 32, 32) for _ in range(2)]
    run("CIFAR-10 ResNet-110 (random weights, 3x32x32)", resnet, cifar_like,
        N=800 if args.quick else 1200, rounds=2 if args.quick else 3, num_classes=10)


if __name__ == "__main__":
    main()
