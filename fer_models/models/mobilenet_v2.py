"""MobileNetV2 (Sandler et al. 2018) for 48x48 grayscale faces.

Same layers as the ImageNet model (inverted residual settings, width 1.0,
1280-channel last conv; 2,232,263 parameters with 7 classes and one input
channel, the paper's 2.23M), with one change for small inputs: the stem conv
has stride 1 instead of 2, so a 48x48 face ends as a 3x3 map (total stride 16)
rather than 2x2.
"""

from __future__ import annotations

import torch
from torch import nn

from fer_models.models._registry import DEFAULT_NUM_CLASSES, check_positive_ints, register_model

#: (expansion t, out channels c, repeats n, first stride s), as in the paper.
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
LAST_CHANNELS = 1280
#: Stem stride for 48x48 inputs (ImageNet model: 2).
SMALL_INPUT_STEM_STRIDE = 1
DROPOUT = 0.2


def conv_bn_relu6(
    in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """Padded conv (no bias) + BatchNorm + ReLU6."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """1x1 expand -> 3x3 depthwise (stride) -> 1x1 linear project; identity add if shapes match."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_relu6(in_channels, hidden, 1))
        layers += [
            conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.use_residual else y


class MobileNetV2(nn.Module):
    """MobileNetV2: float (N, in_chans, H, W) -> logits (N, num_classes)."""

    def __init__(
        self,
        num_classes: int = DEFAULT_NUM_CLASSES,
        in_chans: int = 1,
        stem_stride: int = SMALL_INPUT_STEM_STRIDE,
        dropout: float = DROPOUT,
    ) -> None:
        super().__init__()
        check_positive_ints(num_classes=num_classes, in_chans=in_chans, stem_stride=stem_stride)
        layers: list[nn.Module] = [conv_bn_relu6(in_chans, STEM_CHANNELS, 3, stem_stride)]
        in_ch = STEM_CHANNELS
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            for i in range(n):
                layers.append(InvertedResidual(in_ch, c, s if i == 0 else 1, t))
                in_ch = c
        layers.append(conv_bn_relu6(in_ch, LAST_CHANNELS, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(LAST_CHANNELS, num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's initialisation."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


@register_model
def mobilenet_v2(num_classes: int = DEFAULT_NUM_CLASSES, **kwargs) -> MobileNetV2:
    """MobileNetV2 width 1.0, stem stride 1 for 48x48 inputs."""
    return MobileNetV2(num_classes=num_classes, **kwargs)
