"""Shared building blocks: depthwise-separable conv, channel / spatial attention, CBAM.

All modules take and return float tensors of shape (N, C, H, W) (NCHW logical
order; channels_last memory format works too). Inside :func:`record_attention`,
attention modules keep the last attention map they computed (detached) in
``last_attention`` so tests and visualisations can inspect it without hooks;
outside it they keep nothing (a training step captured in a CUDA graph must not
hand tensors of the graph's memory pool to Python).

References: Chollet 2017 (Xception, separable convolutions); Woo et al. 2018
(CBAM: Convolutional Block Attention Module).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch
from torch import nn

#: Channel-attention MLP reduction ratio (Woo et al. 2018).
CHANNEL_REDUCTION = 16
#: Smallest hidden width of the channel-attention MLP, so that narrow layers
#: (e.g. 16 channels / 16 = 1 unit) keep a usable bottleneck.
MIN_HIDDEN_CHANNELS = 4
#: Kernel size of the spatial-attention convolution (Woo et al. 2018).
SPATIAL_KERNEL = 7

AttentionKind = Literal["channel", "spatial", "cbam"]
#: Accepted values of the ``attention`` option of blocks and models.
ATTENTION_KINDS: tuple[str, ...] = ("channel", "spatial", "cbam")


class SeparableConv2d(nn.Module):
    """Depthwise k x k conv (one filter per input channel) then pointwise 1 x 1 conv.

    Same layer as Keras ``SeparableConv2D(out, k, padding="same",
    use_bias=False)`` with depth multiplier 1: ``k*k*in + in*out`` weights.
    Input (N, in_channels, H, W) -> output (N, out_channels, H', W') with
    H' = ceil(H / stride).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.depthwise = nn.Conv2d(
            in_channels,
            in_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            groups=in_channels,
            bias=False,
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


def channel_hidden_width(
    channels: int, reduction: int = CHANNEL_REDUCTION, min_hidden: int = MIN_HIDDEN_CHANNELS
) -> int:
    """Hidden width of the channel-attention MLP: ``channels // reduction``,
    at least ``min_hidden`` and at most ``channels``."""
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    if reduction < 1:
        raise ValueError(f"reduction must be >= 1, got {reduction}")
    return min(channels, max(channels // reduction, min_hidden))


class _Recording(nn.Module):
    """An attention module that keeps its last map in ``last_attention`` while ``record`` is on."""

    record = False

    def _keep(self, att: torch.Tensor) -> None:
        if self.record:
            self.last_attention = att.detach()


@contextlib.contextmanager
def record_attention(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, every attention module of ``model`` keeps its last map in ``last_attention``."""
    modules = [m for m in model.modules() if isinstance(m, _Recording)]
    for m in modules:
        m.record = True
    try:
        yield model
    finally:
        for m in modules:
            m.record = False


class ChannelAttention(_Recording):
    """Channel attention: ``x * sigmoid(MLP(avgpool(x)) + MLP(maxpool(x)))``.

    The MLP (C -> C/r -> C, ReLU between, no biases, as timm's ``ChannelAttn``)
    is shared by the average- and max-pooled descriptors. Input and output
    (N, C, H, W); ``last_attention`` holds the (N, C, 1, 1) map in [0, 1].
    """

    def __init__(
        self,
        channels: int,
        reduction: int = CHANNEL_REDUCTION,
        min_hidden: int = MIN_HIDDEN_CHANNELS,
    ) -> None:
        super().__init__()
        hidden = channel_hidden_width(channels, reduction, min_hidden)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)
        self.last_attention: torch.Tensor | None = None

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> channel weights (N, C, 1, 1) in [0, 1]."""
        avg = x.mean(dim=(2, 3), keepdim=True)
        mx = x.amax(dim=(2, 3), keepdim=True)
        logits = self.fc2(self.act(self.fc1(avg))) + self.fc2(self.act(self.fc1(mx)))
        return torch.sigmoid(logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        att = self.attention(x)
        self._keep(att)
        return x * att


class SpatialAttention(_Recording):
    """Spatial attention: ``x * sigmoid(conv7x7([mean_c(x); max_c(x)]))``.

    Input and output (N, C, H, W); ``last_attention`` holds the (N, 1, H, W)
    map in [0, 1].
    """

    def __init__(self, kernel_size: int = SPATIAL_KERNEL) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=True)
        self.last_attention: torch.Tensor | None = None

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> spatial weights (N, 1, H, W) in [0, 1]."""
        avg = x.mean(dim=1, keepdim=True)
        mx = x.amax(dim=1, keepdim=True)
        return torch.sigmoid(self.conv(torch.cat([avg, mx], dim=1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        att = self.attention(x)
        self._keep(att)
        return x * att


class CBAM(nn.Module):
    """Convolutional Block Attention Module: channel attention, then spatial.

    Input and output (N, C, H, W). ``channel.last_attention`` and
    ``spatial.last_attention`` hold the last maps.
    """

    def __init__(
        self,
        channels: int,
        reduction: int = CHANNEL_REDUCTION,
        spatial_kernel: int = SPATIAL_KERNEL,
        min_hidden: int = MIN_HIDDEN_CHANNELS,
    ) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction, min_hidden)
        self.spatial = SpatialAttention(spatial_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


def make_attention(kind: str | None, channels: int) -> nn.Module:
    """Attention module for ``kind`` in ``None | "channel" | "spatial" | "cbam"``.

    ``None`` gives ``nn.Identity()`` (no parameters, no cost).
    """
    if kind is None:
        return nn.Identity()
    if kind == "channel":
        return ChannelAttention(channels)
    if kind == "spatial":
        return SpatialAttention()
    if kind == "cbam":
        return CBAM(channels)
    raise ValueError(f"unknown attention {kind!r}; expected None or one of {ATTENTION_KINDS}")
