"""Tests for fer_models.layers: separable conv, channel / spatial attention, CBAM."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from fer_models.layers import (  # noqa: E402
    CBAM,
    CHANNEL_REDUCTION,
    MIN_HIDDEN_CHANNELS,
    ChannelAttention,
    SeparableConv2d,
    SpatialAttention,
    channel_hidden_width,
    make_attention,
    record_attention,
)

SHAPE = (2, 32, 11, 9)  # (N, C, H, W); non-square to catch H/W mix-ups


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(*SHAPE, generator=torch.Generator().manual_seed(0))


def _randomize(module: nn.Module, seed: int = 1) -> None:
    """Give every parameter clearly non-zero random values (default inits can be tiny)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)


def test_separable_conv_shape_and_params() -> None:
    conv = SeparableConv2d(8, 16, 3)
    y = conv(torch.randn(2, 8, 10, 7))
    assert y.shape == (2, 16, 10, 7)
    assert sum(p.numel() for p in conv.parameters()) == 3 * 3 * 8 + 8 * 16


def test_separable_conv_is_depthwise_then_pointwise() -> None:
    conv = SeparableConv2d(3, 5, 3)
    x = torch.randn(1, 3, 6, 6)
    # a depthwise filter only sees its own channel: zeroing channel 0 of the input
    # changes the depthwise output of channel 0 only
    dw = conv.depthwise(x)
    x2 = x.clone()
    x2[:, 0] = 0
    dw2 = conv.depthwise(x2)
    assert torch.allclose(dw[:, 1:], dw2[:, 1:])
    assert torch.allclose(conv(x), conv.pointwise(dw))


def test_separable_conv_rejects_even_kernel() -> None:
    with pytest.raises(ValueError, match="odd"):
        SeparableConv2d(4, 4, 2)


@pytest.mark.parametrize(
    ("channels", "expected"),
    [(128, 128 // CHANNEL_REDUCTION), (512, 32), (16, MIN_HIDDEN_CHANNELS), (2, 2)],
)
def test_channel_hidden_width(channels: int, expected: int) -> None:
    assert channel_hidden_width(channels) == expected


def test_channel_hidden_width_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        channel_hidden_width(0)
    with pytest.raises(ValueError):
        channel_hidden_width(16, reduction=0)


def test_channel_attention_matches_formula(x: torch.Tensor) -> None:
    ca = ChannelAttention(SHAPE[1])
    _randomize(ca)
    with record_attention(ca):
        y = ca(x)
    w1 = ca.fc1.weight.flatten(1)  # (hidden, C)
    w2 = ca.fc2.weight.flatten(1)  # (C, hidden)

    def mlp(v: torch.Tensor) -> torch.Tensor:  # (N, C) -> (N, C)
        return torch.relu(v @ w1.T) @ w2.T

    expected = torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.amax((2, 3))))
    assert ca.last_attention is not None
    assert ca.last_attention.shape == (SHAPE[0], SHAPE[1], 1, 1)
    assert torch.allclose(ca.last_attention.flatten(1), expected, atol=1e-6)
    assert torch.allclose(y, x * expected[:, :, None, None], atol=1e-6)


def test_spatial_attention_matches_formula(x: torch.Tensor) -> None:
    sa = SpatialAttention()
    _randomize(sa)
    with record_attention(sa):
        y = sa(x)
    pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
    expected = torch.sigmoid(nn.functional.conv2d(pooled, sa.conv.weight, sa.conv.bias, padding=3))
    assert sa.conv.kernel_size == (7, 7)
    assert sa.last_attention is not None
    assert sa.last_attention.shape == (SHAPE[0], 1, SHAPE[2], SHAPE[3])
    assert torch.allclose(sa.last_attention, expected, atol=1e-6)
    assert torch.allclose(y, x * expected, atol=1e-6)


def test_cbam_shape_maps_in_unit_interval(x: torch.Tensor) -> None:
    cbam = CBAM(SHAPE[1])
    _randomize(cbam)
    with record_attention(cbam):
        y = cbam(x * 10)  # large inputs push the gates towards 0 and 1
    assert y.shape == x.shape
    for att in (cbam.channel.last_attention, cbam.spatial.last_attention):
        assert att is not None
        assert torch.isfinite(att).all()
        assert att.min() >= 0 and att.max() <= 1
        assert att.std() > 0  # not a constant gate


def test_cbam_is_channel_then_spatial(x: torch.Tensor) -> None:
    cbam = CBAM(SHAPE[1])
    _randomize(cbam)
    with record_attention(cbam):
        assert torch.allclose(cbam(x), cbam.spatial(cbam.channel(x)))
    # the spatial map is computed from the channel-refined features, not from x
    assert torch.allclose(cbam.spatial.last_attention, cbam.spatial.attention(x * cbam.channel.last_attention))
    assert not torch.allclose(cbam.spatial.last_attention, cbam.spatial.attention(x), atol=1e-4)


def test_cbam_gradients_reach_attention_weights(x: torch.Tensor) -> None:
    cbam = CBAM(SHAPE[1])
    _randomize(cbam)
    x = x.requires_grad_()
    (cbam(x) ** 2).sum().backward()
    for name, p in cbam.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_channel_spatial_and_cbam_differ_as_intended(x: torch.Tensor) -> None:
    """Channel attention scales whole channels, spatial attention scales whole pixels,
    CBAM scales each (channel, pixel) by the product of both."""
    x = x.abs() + 0.5  # keep the ratio y / x well defined
    ca, sa, cbam = ChannelAttention(SHAPE[1]), SpatialAttention(), CBAM(SHAPE[1])
    _randomize(ca, 1)
    _randomize(sa, 2)
    _randomize(cbam, 3)

    r_ca = ca(x) / x  # (N, C, H, W)
    assert torch.allclose(r_ca, r_ca[:, :, :1, :1].expand_as(r_ca), atol=1e-6)  # same over space
    assert not torch.allclose(r_ca, r_ca[:, :1].expand_as(r_ca), atol=1e-3)  # varies over channels

    r_sa = sa(x) / x
    assert torch.allclose(r_sa, r_sa[:, :1].expand_as(r_sa), atol=1e-6)  # same over channels
    assert not torch.allclose(r_sa, r_sa[:, :, :1, :1].expand_as(r_sa), atol=1e-3)  # varies over space

    with record_attention(cbam):
        r_cbam = cbam(x) / x  # varies over both, and factorises
    assert not torch.allclose(r_cbam, r_cbam[:, :, :1, :1].expand_as(r_cbam), atol=1e-3)
    assert not torch.allclose(r_cbam, r_cbam[:, :1].expand_as(r_cbam), atol=1e-3)
    product = cbam.channel.last_attention * cbam.spatial.last_attention
    assert torch.allclose(r_cbam, product, atol=1e-5)


def test_attention_works_in_channels_last(x: torch.Tensor) -> None:
    cbam = CBAM(SHAPE[1])
    _randomize(cbam)
    y = cbam(x)
    y_cl = cbam.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    assert torch.allclose(y, y_cl, atol=1e-5)


def test_make_attention() -> None:
    assert isinstance(make_attention(None, 8), nn.Identity)
    assert isinstance(make_attention("channel", 8), ChannelAttention)
    assert isinstance(make_attention("spatial", 8), SpatialAttention)
    assert isinstance(make_attention("cbam", 8), CBAM)
    with pytest.raises(ValueError, match="unknown attention"):
        make_attention("se", 8)
