"""Train the embedded default model: isskit's ``digits_cnn`` on the UCI digits, with noise.

    python data/train_default.py        # writes data/default_model/model.pt (~110 kB)

Gaussian noise augmentation as in Cohen et al. (2019): every training image gets fresh
noise x + sigma * N(0, I) in pixel units (pixels are the digits' 0..16 counts / 16),
sigma = 0.25, the noise level the default samples at. Deterministic: one CPU thread,
seeded generators, torch deterministic algorithms; on the same torch build it writes
the same bytes (the README records their SHA-256). Prints clean and noisy test accuracy.

The checkpoint is a dict like Cohen et al.'s: ``arch`` and the ``state_dict`` of
``nn.Sequential(NormalizeLayer, DigitsCNN)`` (keys ``1.conv1.weight``, ...), plus the
training settings; isskit loads it through the same path as any Cohen checkpoint.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from isskit.sampling.models import NORMALIZATION, build_model  # noqa: E402

OUT = REPO / "data" / "default_model" / "model.pt"
SIGMA_TRAIN = 0.25
EPOCHS = 120
BATCH = 64
LR = 3e-3
SEED = 0


def load_split(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    d = np.load(REPO / "data" / "digits" / "digits.npz")
    x = torch.from_numpy(d[f"{name}_images"].astype(np.float32) / 16.0).unsqueeze(1)
    y = torch.from_numpy(d[f"{name}_labels"].astype(np.int64))
    return x, y


@torch.no_grad()
def accuracy(model, x, y, sigma: float, draws: int, gen: torch.Generator) -> float:
    hits = 0
    for _ in range(draws):
        noisy = x + sigma * torch.randn(x.shape, generator=gen) if sigma > 0 else x
        hits += int((model(noisy).argmax(1) == y).sum())
    return hits / (draws * len(y))


def main() -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(SEED)
    x_train, y_train = load_split("train")
    x_test, y_test = load_split("test")

    mean, std = x_train.mean().item(), x_train.std(unbiased=False).item()
    (m0,), (s0,) = NORMALIZATION["digits"]
    if abs(mean - m0) > 5e-5 or abs(std - s0) > 5e-5:
        raise SystemExit(f"isskit.sampling.models.NORMALIZATION['digits'] ({m0}, {s0}) no longer "
                         f"matches the training split ({mean:.5f}, {std:.5f})")

    model = build_model("digits_cnn")
    gen = torch.Generator().manual_seed(SEED)
    opt = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=1e-4)
    steps = EPOCHS * -(-len(y_train) // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps)
    t0 = time.perf_counter()
    model.train()
    for _epoch in range(EPOCHS):
        order = torch.randperm(len(y_train), generator=gen)
        for start in range(0, len(order), BATCH):
            idx = order[start:start + BATCH]
            xb = x_train[idx] + SIGMA_TRAIN * torch.randn(x_train[idx].shape, generator=gen)
            loss = F.cross_entropy(model(xb), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    seconds = time.perf_counter() - t0

    eval_gen = torch.Generator().manual_seed(SEED + 1)
    acc = {
        "clean": accuracy(model, x_test, y_test, 0.0, 1, eval_gen),
        "sigma 0.25": accuracy(model, x_test, y_test, 0.25, 100, eval_gen),
        "sigma 0.50": accuracy(model, x_test, y_test, 0.50, 100, eval_gen),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "arch": "digits_cnn",
            "state_dict": model.state_dict(),
            "sigma_train": SIGMA_TRAIN,
            "epochs": EPOCHS,
            "seed": SEED,
            "torch_version": str(torch.__version__),
        },
        OUT,
    )
    digest = hashlib.sha256(OUT.read_bytes()).hexdigest()
    print(f"trained in {seconds:.1f} s; test accuracy (359 images): "
          + ", ".join(f"{k} {v:.4f}" for k, v in acc.items())
          + " (noisy: mean over 100 noise draws per image)")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes), sha256 {digest}")


if __name__ == "__main__":
    main()
