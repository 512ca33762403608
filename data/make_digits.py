"""Write data/digits/digits.npz: the UCI optical handwritten digits with a fixed split.

The images come from the copy that scikit-learn ships inside its package
(``sklearn.datasets.load_digits``: no download). scikit-learn is used here only;
isskit itself never imports it and reads the .npz this script writes.

    python data/make_digits.py          # rewrites data/digits/digits.npz

The split is stratified and seeded (numpy PCG64, seed 0): in every class, the
first 20% of a random permutation (rounded) go to the test split. The result
does not depend on scikit-learn's random state, only on NumPy's generator.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

OUT = Path(__file__).resolve().parent / "digits" / "digits.npz"
TEST_FRACTION = 0.2
SEED = 0


def main() -> None:
    bunch = load_digits()
    images = bunch.images
    # Pixels are integer counts of "on" pixels in 4x4 blocks, 0..16; keep them exact.
    if not (np.all(images == np.round(images)) and images.min() >= 0 and images.max() <= 16):
        raise SystemExit("unexpected pixel values in sklearn's digits")
    images = images.astype(np.uint8)
    labels = bunch.target.astype(np.uint8)

    rng = np.random.default_rng(SEED)
    test = np.zeros(len(labels), dtype=bool)
    for c in range(10):
        members = np.flatnonzero(labels == c)
        picked = rng.permutation(members)[: round(TEST_FRACTION * len(members))]
        test[picked] = True
    train_idx = np.flatnonzero(~test)
    test_idx = np.flatnonzero(test)

    OUT.parent.mkdir(parents=True, exist_ok=True)
    # Plain np.savez (no compression): fixed bytes for the same arrays, and tiny anyway.
    np.savez(
        OUT,
        train_images=images[train_idx],
        train_labels=labels[train_idx],
        test_images=images[test_idx],
        test_labels=labels[test_idx],
        train_source_index=train_idx.astype(np.int64),
        test_source_index=test_idx.astype(np.int64),
    )
    digest = hashlib.sha256(OUT.read_bytes()).hexdigest()
    print(f"wrote {OUT}: {len(train_idx)} train, {len(test_idx)} test images; sha256 {digest}")


if __name__ == "__main__":
    main()
