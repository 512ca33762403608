"""Test images for sampling: the embedded digits, CIFAR-10 and ImageNet from local folders.

Every dataset yields ``(image, label)`` with the image a float32 tensor ``(C, H, W)`` in
[0, 1] pixel units, the space where :mod:`isskit.sampling` adds noise (normalisation is
the model's first layer, :mod:`isskit.sampling.models`). Transforms follow Cohen et al.'s
``datasets.py``: CIFAR-10 test images as they are (``ToTensor``); ImageNet validation
images resized to 256, centre-cropped to 224.

Never downloads: a folder that is not there is an error naming it.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import torch

from isskit._data import data_file

__all__ = ["DATASETS", "DigitsDataset", "LoadedDataset", "load_dataset"]

#: Names accepted by :func:`load_dataset` (and ``isskit sample --dataset``).
DATASETS: tuple[str, ...] = ("digits", "cifar10", "imagenet")


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedDataset:
    """A dataset ready for sampling, with what the store records about it.

    Attributes
    ----------
    dataset : torch.utils.data.Dataset
        ``dataset[i]`` is ``(image, label)``; ``len(dataset)`` images.
    name : str
        Goes into the store's ``dataset`` attribute (e.g. ``"cifar10 test"``).
    num_classes : int
        Number of classes.
    """

    dataset: torch.utils.data.Dataset
    name: str
    num_classes: int


class DigitsDataset(torch.utils.data.Dataset):
    """The UCI optical handwritten digits shipped in ``data/digits/digits.npz``.

    Images are 1x8x8, pixel = count of "on" pixels in a 4x4 block / 16, so in [0, 1].
    The split is fixed by ``data/make_digits.py`` (359 test, 1438 train images).

    Parameters
    ----------
    split : {"test", "train"}
        Which part of the fixed split.
    """

    def __init__(self, split: str = "test"):
        if split not in ("test", "train"):
            raise ValueError(f"split ({split!r}) must be 'test' or 'train'")
        with np.load(data_file("digits/digits.npz")) as d:
            images = d[f"{split}_images"]
            labels = d[f"{split}_labels"]
        self.images = torch.from_numpy(images.astype(np.float32) / 16.0).unsqueeze(1)
        #: Labels as a list, like torchvision's datasets (read without loading images).
        self.targets = [int(v) for v in labels]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], self.targets[i]


def _require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise FileNotFoundError(f"{what} folder {path} does not exist")


def load_dataset(name: str = "digits", root=None, *, allow_partial: bool = False) -> LoadedDataset:
    """Return a test set by name.

    Parameters
    ----------
    name : {"digits", "cifar10", "imagenet"}
        ``digits``: the embedded default (its test split). ``cifar10``: the test batch
        of torchvision's CIFAR-10 layout under ``root`` (``root/cifar-10-batches-py``).
        ``imagenet``: an ImageFolder of the validation set, ``root/val`` if that exists,
        else ``root`` itself (one sub-folder per class, sorted names = class indices).
    root : str or Path, optional
        The folder for ``cifar10`` and ``imagenet``; not used by ``digits``.
    allow_partial : bool, default False
        Accept an ``imagenet`` folder whose class folders are ImageNet synsets
        (``n01440764``, ...) but not all 1000 of them. Refused by default: the class index
        is the position among the folders present, which is the ImageNet index (the
        model's output) only when all 1000 are there, so true labels would be wrong.

    Raises
    ------
    FileNotFoundError
        The folder (or the CIFAR-10 files in it) is not there; the message names it.
    ValueError
        An unknown name, a missing ``root``, or (without ``allow_partial``) an ImageNet
        folder with some but not all of the 1000 synsets.
    """
    if name not in DATASETS:
        raise ValueError(f"dataset ({name!r}) is not known; choose one of {', '.join(DATASETS)}")
    if name == "digits":
        return LoadedDataset(DigitsDataset("test"), "digits test (UCI optical digits)", 10)
    if root is None:
        raise ValueError(f"dataset {name!r} needs a data root folder (--data-root)")
    root = Path(root)
    _require_dir(root, f"{name} data root")
    from torchvision import datasets, transforms  # only the real datasets need it

    if name == "cifar10":
        try:
            data = datasets.CIFAR10(root, train=False, download=False,
                                    transform=transforms.ToTensor())
        except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted."
            raise FileNotFoundError(
                f"CIFAR-10 test data not found under {root} (expected torchvision's layout, "
                f"{root / 'cifar-10-batches-py'}/test_batch): {exc}"
            ) from exc
        return LoadedDataset(data, "cifar10 test", 10)
    folder = root / "val" if (root / "val").is_dir() else root
    transform = transforms.Compose(
        [transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor()]
    )
    try:
        data = datasets.ImageFolder(str(folder), transform=transform)
    except (FileNotFoundError, RuntimeError) as exc:
        raise FileNotFoundError(f"no ImageNet class folders with images in {folder}: "
                                f"{exc}") from exc
    synsets = [c for c in data.classes if _SYNSET.fullmatch(c)]
    if synsets and len(synsets) != 1000 and not allow_partial:
        raise ValueError(
            f"{folder} holds {len(data.classes)} class folders, {len(synsets)} of them ImageNet "
            "synsets, not all 1000: class indices come from the sorted folder names, so the true "
            "labels would not be the model's ImageNet indices. Point --data-root at the full "
            "validation set and choose images with --indices, --skip or --max"
        )
    return LoadedDataset(data, "imagenet val", len(data.classes))


#: ImageNet's class folder names: WordNet noun synset ids.
_SYNSET = re.compile(r"n\d{8}")
