"""ResNet-18 (He et al. 2016) for 48x48 grayscale faces, with two stems.

Four stages of two BasicBlocks (64/128/256/512 channels).

- ``resnet18``: the ImageNet stem (7x7/2 conv + 3x3/2 max-pool, total stride 4), as
  torchvision's ResNet-18 that the paper uses: the stages see 12, 6, 3 and 2 pixels.
  11,173,831 parameters and 94.3M multiply-adds with one input channel and 7 classes (the
  paper's 11.69M / 98.7M "FLOPs" are the same network with RGB input and 1000 classes).
- ``resnet18_cifar``: a 3x3/1 stem and no max-pool (as in CIFAR ResNets), so the stages see
  48, 24, 12 and 6 pixels: the same parameters (11,171,271) at 13x the cost (1,247M
  multiply-adds); more accurate on small faces, too slow to train on a CPU in the benchmark.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fer_models.models._registry import DEFAULT_NUM_CLASSES, check_int_list, check_positive_ints, register_model

RESNET18_LAYERS: tuple[int, ...] = (2, 2, 2, 2)
RESNET_WIDTHS: tuple[int, ...] = (64, 128, 256, 512)
#: ``imagenet``: 7x7/2 conv + 3x3/2 max-pool (torchvision's); ``cifar``: 3x3/1 conv, no pool.
STEMS = ("imagenet", "cifar")


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with identity (or 1x1/stride conv-BN) shortcut, ReLU after add."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.act(y + self.downsample(x))


class ResNet(nn.Module):
    """BasicBlock ResNet: float (N, in_chans, H, W) -> logits (N, num_classes); ``stem`` one of :data:`STEMS`."""

    def __init__(
        self,
        layers: Sequence[int] = RESNET18_LAYERS,
        widths: Sequence[int] = RESNET_WIDTHS,
        num_classes: int = DEFAULT_NUM_CLASSES,
        in_chans: int = 1,
        stem: str = "imagenet",
    ) -> None:
        super().__init__()
        layers, widths = check_int_list("layers", layers), check_int_list("widths", widths)
        check_positive_ints(num_classes=num_classes, in_chans=in_chans)
        if len(layers) != len(widths):
            raise ValueError(f"layers and widths must have the same length, got {len(layers)} and {len(widths)}")
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
        if stem == "imagenet":
            self.stem = nn.Sequential(
                nn.Conv2d(in_chans, widths[0], 7, 2, 3, bias=False),
                nn.BatchNorm2d(widths[0]),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1),
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False),
                nn.BatchNorm2d(widths[0]),
                nn.ReLU(inplace=True),
            )
        stages: list[nn.Module] = []
        in_ch = widths[0]
        for i, (n, w) in enumerate(zip(layers, widths)):
            blocks = [BasicBlock(in_ch, w, 1 if i == 0 else 2)]
            blocks += [BasicBlock(w, w) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            in_ch = w
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.stages(self.stem(x))).flatten(1))


@register_model
def resnet18(num_classes: int = DEFAULT_NUM_CLASSES, **kwargs) -> ResNet:
    """ResNet-18 with the ImageNet stem (the paper's baseline and its cost); ``layers`` / ``widths`` may be
    given (e.g. a tiny one for smoke runs)."""
    kwargs = {"layers": RESNET18_LAYERS, "widths": RESNET_WIDTHS, "stem": "imagenet", **kwargs}
    return ResNet(num_classes=num_classes, **kwargs)


@register_model
def resnet18_cifar(num_classes: int = DEFAULT_NUM_CLASSES, **kwargs) -> ResNet:
    """ResNet-18 with a 3x3/1 stem and no max-pool (13x the paper's cost at 48x48)."""
    kwargs = {"layers": RESNET18_LAYERS, "widths": RESNET_WIDTHS, "stem": "cifar", **kwargs}
    return ResNet(num_classes=num_classes, **kwargs)
