"""ResNet-18 (He et al. 2016) for 48x48 grayscale faces.

Four stages of two BasicBlocks (64/128/256/512 channels). The ImageNet stem
(7x7/2 conv + 3x3/2 max-pool, total stride 4) would shrink a 48x48 face to
12x12 before the first block; for small inputs the stem is a 3x3/1 conv and
no max-pool (as in CIFAR ResNets), so the stages see 48, 24, 12, 6 pixels.
11,171,271 parameters with 7 classes and one input channel (the paper's
11.69M is the ImageNet model with 1000 classes and RGB input).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fer_models.models._registry import DEFAULT_NUM_CLASSES, register_model

RESNET18_LAYERS: tuple[int, ...] = (2, 2, 2, 2)
RESNET_WIDTHS: tuple[int, ...] = (64, 128, 256, 512)


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
    """BasicBlock ResNet with a small-input stem: float (N, in_chans, H, W) -> logits (N, num_classes)."""

    def __init__(
        self,
        layers: Sequence[int] = RESNET18_LAYERS,
        widths: Sequence[int] = RESNET_WIDTHS,
        num_classes: int = DEFAULT_NUM_CLASSES,
        in_chans: int = 1,
    ) -> None:
        super().__init__()
        if len(layers) != len(widths):
            raise ValueError("layers and widths must have the same length")
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
    """ResNet-18 with a 3x3/1 stem and no max-pool, for 48x48 inputs."""
    return ResNet(RESNET18_LAYERS, RESNET_WIDTHS, num_classes=num_classes, **kwargs)
