"""The networks isskit builds itself, and the normalisation layer every model starts with.

``NormalizeLayer`` (the first layer of every model, as in Cohen et al. 2019), the embedded
default's ``DigitsCNN`` and the CIFAR ResNets of He et al. (2016, Sec. 4.2) with Cohen et
al.'s parameter names (so their checkpoints load); torchvision's ImageNet ResNet-50 is
built on request. :mod:`isskit.sampling.models` puts them together and loads weights.

Never downloads weights, never prints, never touches a GPU.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "NORMALIZATION",
    "CifarResNet",
    "DigitsCNN",
    "NormalizeLayer",
]

#: Per-channel (mean, std) of each dataset's pixels in [0, 1]. CIFAR-10 and ImageNet as
#: in Cohen et al.'s ``datasets.py``; digits computed by ``data/train_default.py`` over the
#: training split (pixel / 16), which checks that these constants still match.
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "digits": ((0.3055,), (0.3761,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


class NormalizeLayer(nn.Module):
    """Standardise each channel: ``(x - mean) / std``, the classifier's first layer.

    ``mean`` and ``std`` are non-persistent buffers: they follow the model to its device
    but stay out of the ``state_dict``, as in Cohen et al.'s checkpoints (whose
    normalisation layer holds plain tensor attributes, so it adds no keys either).

    Parameters
    ----------
    mean, std : sequence of float
        One value per input channel; every ``std`` must be > 0.
    """

    def __init__(self, mean, std):
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float32)
        std = torch.as_tensor(std, dtype=torch.float32)
        if mean.ndim != 1 or mean.shape != std.shape:
            raise ValueError(f"mean ({mean.tolist()}) and std ({std.tolist()}) must be "
                             "1-d and of one length (one value per channel)")
        if not bool((std > 0).all()):
            raise ValueError(f"std ({std.tolist()}) must be > 0 in every channel")
        self.register_buffer("mean", mean.view(-1, 1, 1), persistent=False)
        self.register_buffer("std", std.view(-1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise a batch ``(B, C, H, W)``."""
        return (x - self.mean) / self.std


class DigitsCNN(nn.Module):
    """The embedded default's network: three 3x3 convolutions and a linear layer, for 1x8x8.

    About 26,000 parameters; 8x8 -> 8x8 (16 channels) -> 4x4 (32) -> 2x2 (64) -> classes.

    Parameters
    ----------
    num_classes : int
        Number of outputs.
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.fc = nn.Linear(64 * 2 * 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch ``(B, 1, 8, 8)``."""
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        return self.fc(torch.flatten(x, 1))


class _BasicBlock(nn.Module):
    # Two 3x3 convolutions with batch norm; a 1x1 projection on the shortcut when the
    # shape changes. Attribute names follow Cohen et al.'s checkpoints (conv1, bn1, conv2,
    # bn2, downsample.0, downsample.1), since their keys must load unchanged.
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )
        else:
            self.downsample = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + shortcut)


class CifarResNet(nn.Module):
    """ResNet for 32x32 inputs (He et al. 2016, Sec. 4.2): depth = 6 n + 2, BasicBlocks.

    A 3x3 stem with 16 channels, three stages of ``n`` blocks with 16, 32 and 64 channels
    (the second and third start with stride 2), global average pooling, a linear layer.

    Parameters
    ----------
    depth : int
        6 n + 2: 20, 32, 44, 56, 110, ...
    num_classes : int
        Number of outputs.
    """

    def __init__(self, depth: int = 110, num_classes: int = 10):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth ({depth}) must be 6 n + 2 with n >= 1 (20, 56, 110, ...)")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        widths = (16, 32, 64)
        c_in = 16
        for stage, width in enumerate(widths, start=1):
            blocks = []
            for b in range(n):
                stride = 2 if (stage > 1 and b == 0) else 1
                blocks.append(_BasicBlock(c_in, width, stride))
                c_in = width
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch ``(B, 3, H, W)`` (32x32 for CIFAR)."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


def _resnet50(num_classes: int) -> nn.Module:
    import torchvision  # only this architecture needs it

    return torchvision.models.resnet50(weights=None, num_classes=num_classes)
