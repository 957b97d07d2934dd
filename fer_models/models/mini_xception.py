"""Mini-Xception (Arriaga et al. 2017) with optional channel / spatial / CBAM attention.

Architecture (reference: oarriaga/face_classification ``mini_XCEPTION``):

- stem: two 3x3 convs ("valid" padding, no bias) of ``stem_width`` (8) channels,
  each + BatchNorm + ReLU: 48x48 -> 44x44;
- four residual blocks of widths 16/32/64/128, each
  [separable 3x3 -> BN -> ReLU -> separable 3x3 -> BN -> 3x3/2 max-pool]
  (+ attention, if any) added to a shortcut [1x1/2 conv -> BN]:
  44 -> 22 -> 11 -> 6 -> 3;
- a 3x3 conv (with bias) to the classes and global average pooling -> logits.

With 7 classes this has 56,951 trainable parameters, like the Keras
reference (Keras reports 58,423 because it also counts BatchNorm running
statistics). There is no ReLU after the shortcut add, as in the reference.

Attention (``None | "channel" | "spatial" | "cbam"``) sits on the residual
branch after the max-pool, just before the shortcut add.

The shortcut's 1x1 stride-2 conv is computed as ``x[:, :, ::2, ::2]``
followed by a stride-1 1x1 conv: the same output (a 1x1 kernel with stride 2
only reads the even rows and columns), but it avoids a segfault in the
backward pass of 1x1/2 convolutions in channels_last on torch 2.13.0 CPU
(batch sizes 3, 5, 7, 37 crashed).
"""

from __future__ import annotations

from collections.abc import Sequence

import math

import torch
from torch import nn

from fer_models.layers import SPATIAL_KERNEL, SeparableConv2d, channel_hidden_width, make_attention
from fer_models.models._registry import DEFAULT_NUM_CLASSES, check_int_list, check_positive_ints, register_model

#: Block widths of the reference Mini-Xception.
MINI_XCEPTION_WIDTHS: tuple[int, ...] = (16, 32, 64, 128)
#: Stem width of the reference Mini-Xception.
MINI_XCEPTION_STEM_WIDTH = 8
#: Widths chosen to approach the paper's 0.61M params / 28.3M multiply-adds
#: (see docs/models.md for the search and the remaining gap).
PAPER_WIDTHS: tuple[int, ...] = (32, 64, 128, 608)
#: Grayscale input.
DEFAULT_IN_CHANS = 1
#: Max-pool of each block: 3x3, stride 2, padding 1 (Keras "same" sizes).
POOL_KERNEL = 3
#: largest ``input_size``: a 48x48 face upscaled more than 5x holds no more detail, and every activation
#: grows with its square (input_size=100000 asked the allocator for 480 GB)
MAX_INPUT_SIZE = 256
POOL_STRIDE = 2


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Sequential:
    """Unpadded ("valid") conv without bias, BatchNorm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class XceptionBlock(nn.Module):
    """Residual separable block: (N, in, H, W) -> (N, out, ceil(H/2), ceil(W/2))."""

    def __init__(self, in_channels: int, out_channels: int, attention: str | None = None) -> None:
        super().__init__()
        self.shortcut_conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.shortcut_bn = nn.BatchNorm2d(out_channels)
        self.sep1 = SeparableConv2d(in_channels, out_channels, 3)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)
        self.sep2 = SeparableConv2d(out_channels, out_channels, 3)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.pool = nn.MaxPool2d(POOL_KERNEL, POOL_STRIDE, padding=POOL_KERNEL // 2)
        self.attn = make_attention(attention, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # == Conv2d(k=1, stride=2)(x), without the channels_last backward crash.
        shortcut = self.shortcut_bn(self.shortcut_conv(x[:, :, ::POOL_STRIDE, ::POOL_STRIDE]))
        y = self.act(self.bn1(self.sep1(x)))
        y = self.pool(self.bn2(self.sep2(y)))
        return self.attn(y) + shortcut


class MiniXception(nn.Module):
    """Mini-Xception classifier: float (N, in_chans, H, W) -> logits (N, num_classes).

    Designed for 48x48 inputs (any H, W >= 5 works; ``input_size`` resizes every
    input to input_size x input_size first). ``widths`` sets the
    number and width of residual blocks; ``attention`` adds channel, spatial or
    CBAM attention to every block.
    """

    def __init__(
        self,
        num_classes: int = DEFAULT_NUM_CLASSES,
        in_chans: int = DEFAULT_IN_CHANS,
        widths: Sequence[int] = MINI_XCEPTION_WIDTHS,
        stem_width: int = MINI_XCEPTION_STEM_WIDTH,
        attention: str | None = None,
        input_size: int | None = None,
    ) -> None:
        super().__init__()
        widths = check_int_list("widths", widths)
        check_positive_ints(stem_width=stem_width, in_chans=in_chans, num_classes=num_classes)
        if input_size is not None and (isinstance(input_size, bool) or not isinstance(input_size, int)
                                       or not 5 <= input_size <= MAX_INPUT_SIZE):
            raise ValueError(f"input_size must be an int from 5 to {MAX_INPUT_SIZE} or None, got {input_size!r}")
        self.input_size = input_size  # None: the input's own size
        self.num_classes = num_classes
        self.attention = attention
        self.widths = widths
        self.stem = nn.Sequential(
            conv_bn_relu(in_chans, stem_width), conv_bn_relu(stem_width, stem_width)
        )
        blocks = []
        in_ch = stem_width
        for w in widths:
            blocks.append(XceptionBlock(in_ch, w, attention))
            in_ch = w
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Conv2d(in_ch, num_classes, 3, padding=1, bias=True)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_chans, H, W) -> last block's features (N, widths[-1], h, w)."""
        if self.input_size is not None and tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            x = nn.functional.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                                          align_corners=False)
        return self.blocks(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.head(self.forward_features(x))).flatten(1)


def analytic_cost(
    widths: Sequence[int] = MINI_XCEPTION_WIDTHS,
    stem_width: int = MINI_XCEPTION_STEM_WIDTH,
    attention: str | None = None,
    num_classes: int = DEFAULT_NUM_CLASSES,
    in_chans: int = DEFAULT_IN_CHANS,
    size: int = 48,
) -> tuple[int, int]:
    """Closed-form (trainable params, multiply-adds) of a MiniXception on a size x size image.

    Multiply-adds count convolutions only, like ``FlopCounterMode`` / 2. Used to
    search the ``_paper`` widths (docs/models.md) without building models.
    """
    k2 = 3 * 3
    params = k2 * in_chans * stem_width + k2 * stem_width * stem_width + 4 * stem_width
    h = size - 2
    macs = h * h * k2 * in_chans * stem_width
    h -= 2
    macs += h * h * k2 * stem_width * stem_width
    c_in = stem_width
    for w in widths:
        h_out = math.ceil(h / POOL_STRIDE)
        # shortcut 1x1 + BN, two separable convs + BN
        params += c_in * w + 2 * w + (k2 * c_in + c_in * w + 2 * w) + (k2 * w + w * w + 2 * w)
        macs += h_out * h_out * c_in * w + h * h * (k2 * c_in + c_in * w + k2 * w + w * w)
        if attention in ("channel", "cbam"):
            hidden = channel_hidden_width(w)
            params += 2 * w * hidden
            macs += 2 * 2 * w * hidden  # MLP on the avg- and max-pooled vectors
        if attention in ("spatial", "cbam"):
            params += 2 * SPATIAL_KERNEL**2 + 1
            macs += h_out * h_out * 2 * SPATIAL_KERNEL**2
        h, c_in = h_out, w
    params += k2 * c_in * num_classes + num_classes
    macs += h * h * k2 * c_in * num_classes
    return params, macs


def _mini_xception(num_classes: int, fixed_attention: str | None, paper: bool, **kwargs) -> MiniXception:
    if "attention" in kwargs:
        raise TypeError("this model fixes `attention`; use `mini_xception(attention=...)` instead")
    if paper:
        kwargs.setdefault("widths", PAPER_WIDTHS)
    return MiniXception(num_classes=num_classes, attention=fixed_attention, **kwargs)


@register_model
def mini_xception(num_classes: int = DEFAULT_NUM_CLASSES, **kwargs) -> MiniXception:
    """Reference Mini-Xception (56,951 params with 7 classes); accepts ``attention=``."""
    return MiniXception(num_classes=num_classes, **kwargs)


@register_model
def mini_xception_channel(num_classes: int = DEFAULT_NUM_CLASSES, **kwargs) -> MiniXception:
    """Mini-Xception with channel attention only in every block."""
    return _mini_xception(num_classes, "channel", False, **kwargs)


@register_model
def mini_xception_spatial(num_classes: int = DEFAULT_NUM_CLASSES, **kwargs) -> MiniXception:
    """Mini-Xception with spatial attention only in every block."""
    return _mini_xception(num_classes, "spatial", False, **kwargs)


@register_model
def mini_xception_cbam(num_classes: int = DEFAULT_NUM_CLASSES, **kwargs) -> MiniXception:
    """Mini-Xception with CBAM (channel then spatial) in every block."""
    return _mini_xception(num_classes, "cbam", False, **kwargs)


@register_model
def mini_xception_paper(num_classes: int = DEFAULT_NUM_CLASSES, **kwargs) -> MiniXception:
    """Mini-Xception widened towards the paper's 0.61M params / 28.3M multiply-adds."""
    return _mini_xception(num_classes, None, True, **kwargs)


@register_model
def mini_xception_cbam_paper(num_classes: int = DEFAULT_NUM_CLASSES, **kwargs) -> MiniXception:
    """``mini_xception_paper`` with CBAM (paper: 0.68M params / 30.1M FLOPs)."""
    return _mini_xception(num_classes, "cbam", True, **kwargs)
