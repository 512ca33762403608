"""Base classifiers for sampling, each wrapped with its dataset normalisation.

Every model here is ``nn.Sequential(NormalizeLayer, network)``, the layout of Cohen et
al. (2019): Gaussian noise is added to the image in [0, 1] pixel units and the
normalisation is the classifier's first layer, so ``sigma`` and every certified radius
are in pixel units. Architectures:

``digits_cnn``
    The embedded default: a small CNN for the 8x8 UCI handwritten digits, trained with
    Gaussian noise augmentation by ``data/train_default.py`` (weights shipped in
    ``data/default_model/model.pt``).
``cifar_resnet20``, ``cifar_resnet110``
    The CIFAR ResNets of He et al. (2016, Sec. 4.2) with BasicBlocks, as in Cohen et
    al.'s ``archs/cifar_resnet.py`` (same parameter names, so their checkpoints load).
``resnet50``
    torchvision's ImageNet ResNet-50.

Checkpoints saved by Cohen et al.'s training code (a dict with ``arch`` and
``state_dict``, the network behind a normalisation layer and possibly ``DataParallel``,
so keys read ``1.conv1.weight`` or ``1.module.conv1.weight``) load as they are, and so
does a plain ``state_dict`` of the bare network. Any other model comes in through a
factory, :func:`load_factory`.

Never downloads weights, never prints, never touches a GPU (models are returned on the
CPU; :mod:`isskit.sampling` moves them). The networks themselves are in
:mod:`isskit.sampling.networks`; this module re-exports them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from isskit._data import data_file
from isskit._provenance import file_sha256
from isskit.sampling.networks import (
    NORMALIZATION,
    CifarResNet,
    DigitsCNN,
    NormalizeLayer,
    _resnet50,
)

__all__ = [
    "ARCHITECTURES",
    "ARCH_DATASET",
    "NORMALIZATION",
    "CifarResNet",
    "DigitsCNN",
    "LoadedModel",
    "NormalizeLayer",
    "build_model",
    "default_model",
    "load_checkpoint",
    "load_factory",
    "weights_sha256",
]

@dataclasses.dataclass(frozen=True)
class _Arch:
    build: Callable[[int], nn.Module]
    normalization: str  # key of NORMALIZATION
    num_classes: int
    about: str


_ARCHS: dict[str, _Arch] = {
    "digits_cnn": _Arch(DigitsCNN, "digits", 10, "small CNN for 8x8 UCI digits"),
    "cifar_resnet20": _Arch(lambda k: CifarResNet(20, k), "cifar10", 10, "CIFAR ResNet-20"),
    "cifar_resnet110": _Arch(lambda k: CifarResNet(110, k), "cifar10", 10, "CIFAR ResNet-110"),
    "resnet50": _Arch(_resnet50, "imagenet", 1000, "torchvision ImageNet ResNet-50"),
}

#: Names accepted by :func:`build_model` and :func:`load_checkpoint` (and ``--arch``).
ARCHITECTURES: tuple[str, ...] = tuple(_ARCHS)

#: The dataset each architecture's normalisation belongs to (its natural test set).
ARCH_DATASET: dict[str, str] = {name: a.normalization for name, a in _ARCHS.items()}


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedModel:
    """A classifier ready for sampling, with what the store records about it.

    Attributes
    ----------
    model : torch.nn.Module
        Maps a batch of images in [0, 1] pixel units to logits (normalisation included).
    num_classes : int or None
        Number of logits; ``None`` when unknown until a forward pass (factories).
    description : str
        Goes into the store's ``model`` attribute: architecture, classes and the
        checkpoint's SHA-256 (or the weights' SHA-256 for a factory).
    arch : str or None
        Architecture name, when built here.
    dataset : str or None
        The dataset whose normalisation the model carries (its natural test set).
    """

    model: nn.Module
    num_classes: int | None
    description: str
    arch: str | None = None
    dataset: str | None = None


def _arch(name: str) -> _Arch:
    if name not in _ARCHS:
        raise ValueError(f"arch ({name!r}) is not known; choose one of {', '.join(_ARCHS)}")
    return _ARCHS[name]


def build_model(arch: str, num_classes: int | None = None) -> nn.Sequential:
    """Return ``nn.Sequential(NormalizeLayer, network)`` with random weights, in eval mode.

    Parameters
    ----------
    arch : str
        One of :data:`ARCHITECTURES`.
    num_classes : int, optional
        Number of outputs; the architecture's usual count by default.
    """
    spec = _arch(arch)
    k = spec.num_classes if num_classes is None else int(num_classes)
    if k < 1:
        raise ValueError(f"num_classes ({num_classes}) must be >= 1")
    mean, std = NORMALIZATION[spec.normalization]
    return nn.Sequential(NormalizeLayer(mean, std), spec.build(k)).eval()


def _network_state(state: Mapping[str, torch.Tensor], arch: str, path: Path) -> dict:
    """Strip Cohen et al.'s wrapper prefixes; check what sits under the normalisation layer."""
    keys = list(state)
    if keys and all(k.startswith(("0.", "1.")) for k in keys) and any(
        k.startswith("1.") for k in keys
    ):
        # nn.Sequential(NormalizeLayer, network): "0." is the normalisation layer (empty
        # in Cohen et al.'s code; other forks register its mean and std as buffers).
        mean, std = NORMALIZATION[_ARCHS[arch].normalization]
        for k in keys:
            if not k.startswith("0."):
                continue
            leaf = k[2:]
            expected = {"means": mean, "mean": mean, "sds": std, "std": std}.get(leaf)
            if expected is None:
                raise ValueError(
                    f"checkpoint {path}: unexpected key {k!r} in the normalisation layer"
                )
            got = state[k].detach().float().flatten().tolist()
            if len(got) != len(expected) or any(
                abs(a - b) > 1e-6 for a, b in zip(got, expected, strict=True)
            ):
                raise ValueError(
                    f"checkpoint {path}: its normalisation layer has {leaf} = {got}, but "
                    f"{arch} expects {list(expected)}"
                )
        state = {k[2:]: v for k, v in state.items() if k.startswith("1.")}
    if state and all(k.startswith("module.") for k in state):  # DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def _mismatch_message(path: Path, arch: str, net: nn.Module, state: Mapping) -> str | None:
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs {arch} {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return None

    def few(items: list[str]) -> str:
        more = f" (and {len(items) - 4} more)" if len(items) > 4 else ""
        return ", ".join(items[:4]) + more

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys: {few(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {few(unexpected)}")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatches: {few(shapes)}")
    return f"checkpoint {path} does not fit arch {arch!r}: " + "; ".join(parts)


def load_checkpoint(path, arch: str | None = None, *, num_classes: int | None = None,
                    description: str | None = None) -> LoadedModel:
    """Load a checkpoint into its architecture, wrapped with the normalisation layer.

    Parameters
    ----------
    path : str or Path
        A file written by ``torch.save``: Cohen et al.'s ``{"arch": ..., "state_dict": ...}``
        (keys ``1.`` / ``1.module.`` prefixed), or a plain ``state_dict`` of the network
        (optionally ``module.`` prefixed). Read with ``weights_only=True``: no code runs.
    arch : str, optional
        One of :data:`ARCHITECTURES`. Defaults to the checkpoint's ``arch``; when both are
        given they must agree.
    num_classes : int, optional
        Defaults to the number of rows of the checkpoint's final layer ``fc.weight``.
    description : str, optional
        Replaces the leading words of the description (the checkpoint hash is kept).

    Returns
    -------
    LoadedModel
        On the CPU, in eval mode; the description ends with the file's SHA-256.

    Raises
    ------
    FileNotFoundError
        The file does not exist (the message names the path).
    ValueError
        Unknown or conflicting arch, an unreadable file, or weights that do not fit the
        architecture (the message shows a few missing, unexpected or mis-shaped keys).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist (or is not a file)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a bad or unsafe file
        # Some of torch's messages are bare pickle opcodes ("101"): name the type, and say
        # what a checkpoint is expected to be, so the user knows where to look.
        raise ValueError(
            f"checkpoint {path} could not be read by torch.load ({type(exc).__name__}: {exc});"
            " expected a file written by torch.save: a Cohen et al. checkpoint"
            " {'arch', 'state_dict'} or a plain state_dict"
        ) from exc
    ck_arch = None
    if isinstance(obj, Mapping) and "state_dict" in obj:
        ck_arch = obj.get("arch")
        state = obj["state_dict"]
    else:
        state = obj
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ValueError(
            f"checkpoint {path} holds neither a state_dict nor a dict with 'state_dict'"
        )
    if arch is None:
        if ck_arch is None:
            raise ValueError(f"checkpoint {path} names no 'arch'; give one of "
                             f"{', '.join(_ARCHS)}")
        arch = str(ck_arch)
    elif ck_arch is not None and str(ck_arch) != arch:
        raise ValueError(f"arch ({arch!r}) differs from the checkpoint's arch ({ck_arch!r}) "
                         f"in {path}")
    spec = _arch(arch)
    net_state = _network_state(state, arch, path)
    if num_classes is None and "fc.weight" in net_state:
        num_classes = int(net_state["fc.weight"].shape[0])
    model = build_model(arch, num_classes)
    problem = _mismatch_message(path, arch, model[1], net_state)
    if problem:
        raise ValueError(problem)
    model[1].load_state_dict(net_state, strict=True)
    k = model[1].fc.out_features
    sha = file_sha256(path)
    head = description or f"{arch} ({spec.about}), {k} classes, {spec.normalization} normalisation"
    return LoadedModel(
        model=model.eval(),
        num_classes=k,
        description=f"{head}; checkpoint sha256 {sha}",
        arch=arch,
        dataset=spec.normalization,
    )


def default_model() -> LoadedModel:
    """The embedded default: ``digits_cnn`` trained with Gaussian noise, sigma = 0.25.

    Weights from ``data/default_model/model.pt`` (written by ``data/train_default.py``;
    provenance and accuracies in ``data/default_model/README.md``).
    """
    return load_checkpoint(
        data_file("default_model/model.pt"),
        "digits_cnn",
        description="isskit embedded default: digits_cnn trained with Gaussian noise "
                    "sigma 0.25 on the UCI digits (data/train_default.py), 10 classes",
    )


def weights_sha256(model: nn.Module) -> str:
    """SHA-256 over a model's ``state_dict`` (names, dtypes, shapes and bytes, in order).

    Identifies a factory model's weights in the store, so that a resume with other
    weights is refused.
    """
    h = hashlib.sha256()
    for name, value in model.state_dict().items():
        t = value.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_factory(spec: str) -> LoadedModel:
    """Build a model from ``"package.module:factory"``.

    The factory is called with no arguments and returns either an ``nn.Module`` or a
    ``(module, num_classes)`` tuple. The module takes a batch of images in [0, 1] pixel
    units (noise is added there) and returns logits, so it must include its own
    normalisation. The module is importable from ``sys.path`` (add a folder with
    ``PYTHONPATH``); ``factory`` may be a dotted attribute path.

    Raises
    ------
    ValueError
        A malformed spec, a module or attribute that cannot be found, or a factory that
        returns something else.
    """
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ValueError(f"model ({spec!r}) must look like 'package.module:factory'")
    mod_name, attr = spec.split(":")
    try:
        obj = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ValueError(f"model ({spec!r}): cannot import {mod_name!r}: {exc}") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"model ({spec!r}): {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"model ({spec!r}): {attr!r} is not callable")
    made = obj()
    num_classes = None
    if isinstance(made, tuple) and len(made) == 2:
        made, num_classes = made
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"model ({spec!r}): factory returned num_classes "
                             f"({num_classes!r}); it must be an int >= 1")
    if not isinstance(made, nn.Module):
        raise ValueError(f"model ({spec!r}): factory returned {type(made).__name__}, "
                         "not an nn.Module or an (nn.Module, num_classes) tuple")
    made = made.eval()
    classes = f", {num_classes} classes" if num_classes is not None else ""
    return LoadedModel(
        model=made,
        num_classes=num_classes,
        description=f"factory {spec}{classes}; weights sha256 {weights_sha256(made)}",
    )
