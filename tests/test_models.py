"""Tests for fer_models.models: registry, Mini-Xception family, baselines."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import fer_models  # noqa: E402
from fer_models.layers import CBAM, ChannelAttention, SpatialAttention, record_attention  # noqa: E402
from fer_models.models import create_model, is_model, list_models, register_model  # noqa: E402
from fer_models.models.mini_xception import (  # noqa: E402
    MINI_XCEPTION_WIDTHS,
    MiniXception,
    XceptionBlock,
    analytic_cost,
)
from fer_models.summary import count_flops, count_params  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
BATCH = (2, 1, 48, 48)
NUM_CLASSES = 7
#: Trainable parameters of the Keras reference mini_XCEPTION with 7 classes.
REFERENCE_PARAMS = 56_951
#: Its total in Keras' summary (trainable + BatchNorm moving statistics).
REFERENCE_TOTAL_PARAMS = 58_423
REQUIRED_NAMES = {
    "mini_xception",
    "mini_xception_channel",
    "mini_xception_spatial",
    "mini_xception_cbam",
    "mini_xception_paper",
    "mini_xception_cbam_paper",
    "mobilenet_v2",
    "resnet18",
    "vit",
}


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


# --- registry ---------------------------------------------------------------


def test_required_names_registered() -> None:
    names = list_models()
    assert REQUIRED_NAMES <= set(names)
    assert names == sorted(names)
    assert fer_models.list_models() == names
    assert all(is_model(n) for n in names)


def test_list_models_pattern() -> None:
    assert list_models("mini_xception*paper") == ["mini_xception_cbam_paper", "mini_xception_paper"]
    assert list_models("nope*") == []


def test_unknown_model_lists_known_names() -> None:
    with pytest.raises(ValueError, match="unknown model 'lenet'.*mini_xception"):
        create_model("lenet")


def test_duplicate_registration_rejected() -> None:
    def mini_xception(num_classes: int = 7) -> nn.Module:  # same name as a registered model
        return nn.Identity()

    with pytest.raises(ValueError, match="already registered"):
        register_model(mini_xception)


def test_create_model_validates_num_classes() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        create_model("mini_xception", num_classes=0)


def test_fixed_attention_variants_reject_attention_kwarg() -> None:
    with pytest.raises(TypeError, match="attention"):
        create_model("mini_xception_cbam", attention="channel")


def test_import_fer_models_does_not_import_torch() -> None:
    code = "import sys, fer_models, fer_models.cli, fer_models.summary; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env=_subprocess_env(), timeout=60)


# --- every registered model -------------------------------------------------


@pytest.mark.parametrize("name", list_models())
def test_forward_backward(name: str) -> None:
    torch.manual_seed(0)
    model = fer_models.create_model(name).train()
    x = torch.randn(*BATCH)
    y = model(x)
    assert y.shape == (BATCH[0], NUM_CLASSES)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()
    nn.functional.cross_entropy(y, torch.tensor([0, 3])).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient for {pname}"


@pytest.mark.parametrize("name", ["mini_xception", "mobilenet_v2", "resnet18", "vit"])
def test_num_classes_and_eval_mode(name: str) -> None:
    model = create_model(name, num_classes=3).eval()
    with torch.no_grad():
        y1 = model(torch.ones(1, 1, 48, 48))
        y2 = model(torch.ones(1, 1, 48, 48))
    assert y1.shape == (1, 3)
    assert torch.equal(y1, y2)  # eval mode is deterministic (no dropout, BN uses running stats)


# --- Mini-Xception -----------------------------------------------------------


def test_mini_xception_reference_param_count() -> None:
    model = fer_models.create_model("mini_xception")
    n = count_params(model)
    assert n == REFERENCE_PARAMS  # exact layer-by-layer match with the Keras reference's trainable parameters
    # Keras' "Total params: 58,423" adds the BatchNorm moving means / variances: ours hold as many
    stats = sum(b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var")))
    assert n + stats == REFERENCE_TOTAL_PARAMS


def test_mini_xception_feature_map_sizes() -> None:
    model = MiniXception()
    sizes = []
    h = model.stem(torch.zeros(1, 1, 48, 48))
    sizes.append(tuple(h.shape[1:]))
    for block in model.blocks:
        h = block(h)
        sizes.append(tuple(h.shape[1:]))
    assert sizes == [(8, 44, 44), (16, 22, 22), (32, 11, 11), (64, 6, 6), (128, 3, 3)]


@pytest.mark.parametrize("size", [22, 11])  # even and odd inputs
def test_shortcut_equals_strided_1x1_conv(size: int) -> None:
    """x[:, :, ::2, ::2] then a stride-1 1x1 conv computes Conv2d(k=1, stride=2)."""
    block = XceptionBlock(4, 8)
    x = torch.randn(3, 4, size, size)
    strided = nn.Conv2d(4, 8, 1, stride=2, bias=False)
    strided.weight.data.copy_(block.shortcut_conv.weight.data)
    ours = block.shortcut_conv(x[:, :, ::2, ::2])
    assert ours.shape == strided(x).shape
    assert torch.allclose(ours, strided(x), atol=1e-6)


def test_channels_last_backward_odd_batches_regression() -> None:
    """torch 2.13.0 CPU segfaults in the backward of a 1x1 stride-2 conv in channels_last
    for some batch sizes (3, 5, 7, 37); Mini-Xception's shortcut avoids that layer.
    Runs in a subprocess so a crash fails this test instead of killing pytest."""
    code = textwrap.dedent(
        """
        import torch
        from fer_models.models import create_model
        torch.manual_seed(0)
        model = create_model("mini_xception_cbam").train().to(memory_format=torch.channels_last)
        for batch in (3, 5, 7):
            x = torch.randn(batch, 1, 48, 48).to(memory_format=torch.channels_last)
            y = model(x)
            y.logsumexp(1).sum().backward()
            assert torch.isfinite(y).all()
        print("ok")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_subprocess_env(), timeout=180
    )
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "ok" in proc.stdout


def _attention_modules(model: nn.Module) -> tuple[int, int, int]:
    mods = list(model.modules())
    return (
        sum(isinstance(m, CBAM) for m in mods),
        sum(isinstance(m, ChannelAttention) for m in mods),
        sum(isinstance(m, SpatialAttention) for m in mods),
    )


def test_attention_variants_structure() -> None:
    n = len(MINI_XCEPTION_WIDTHS)
    assert _attention_modules(create_model("mini_xception")) == (0, 0, 0)
    assert _attention_modules(create_model("mini_xception_channel")) == (0, n, 0)
    assert _attention_modules(create_model("mini_xception_spatial")) == (0, 0, n)
    assert _attention_modules(create_model("mini_xception_cbam")) == (n, n, n)
    assert _attention_modules(create_model("mini_xception_cbam_paper")) == (n, n, n)
    # variants are configuration of one class
    assert create_model("mini_xception", attention="cbam").attention == "cbam"
    assert type(create_model("mini_xception_cbam")) is MiniXception


def test_attention_parameter_deltas_add_up() -> None:
    base = count_params(create_model("mini_xception"))
    channel = count_params(create_model("mini_xception_channel")) - base
    spatial = count_params(create_model("mini_xception_spatial")) - base
    cbam = count_params(create_model("mini_xception_cbam")) - base
    assert channel > 0 and spatial > 0
    assert cbam == channel + spatial
    assert spatial == len(MINI_XCEPTION_WIDTHS) * (2 * 7 * 7 + 1)  # one 7x7 conv 2 -> 1 per block


def test_cbam_sits_before_shortcut_add() -> None:
    """Zeroing the attention gate leaves only the shortcut branch."""
    block = XceptionBlock(8, 16, attention="cbam").eval()
    assert isinstance(block.attn, CBAM)
    x = torch.randn(2, 8, 12, 12)
    with torch.no_grad():
        block.attn.spatial.conv.weight.zero_()
        block.attn.spatial.conv.bias.fill_(-1e4)  # sigmoid -> 0
        y = block(x)
        shortcut = block.shortcut_bn(block.shortcut_conv(x[:, :, ::2, ::2]))
    assert torch.allclose(y, shortcut, atol=1e-6)


def test_attention_maps_recorded_after_forward() -> None:
    model = create_model("mini_xception_cbam").eval()
    with torch.no_grad():
        model(torch.randn(2, 1, 48, 48))
    assert all(b.attn.spatial.last_attention is None for b in model.blocks)  # kept only when asked
    with torch.no_grad(), record_attention(model):
        model(torch.randn(2, 1, 48, 48))
    sizes = [22, 11, 6, 3]
    for block, width, size in zip(model.blocks, MINI_XCEPTION_WIDTHS, sizes):
        ch, sp = block.attn.channel.last_attention, block.attn.spatial.last_attention
        assert ch.shape == (2, width, 1, 1) and sp.shape == (2, 1, size, size)
        assert 0 <= ch.min() and ch.max() <= 1 and 0 <= sp.min() and sp.max() <= 1


def test_custom_widths_and_validation() -> None:
    model = create_model("mini_xception", widths=(8, 16), stem_width=4)
    assert model(torch.zeros(1, 1, 48, 48)).shape == (1, 7)
    with pytest.raises(ValueError, match="widths"):
        MiniXception(widths=())
    with pytest.raises(ValueError, match="unknown attention"):
        MiniXception(attention="squeeze")


def test_input_size_upscales_inside_the_model() -> None:
    """input_size=64 resizes 48x48 faces bilinearly before the stem: same parameters, 64x64 maps."""
    torch.manual_seed(0)
    model = create_model("mini_xception_cbam", input_size=64).eval()
    plain = create_model("mini_xception_cbam").eval()
    assert count_params(model) == count_params(plain)
    x = torch.rand(2, 1, 48, 48)
    assert model.forward_features(x).shape[-2:] == (4, 4)  # 64 -> 60 -> 30 -> 15 -> 8 -> 4
    up = nn.functional.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
    plain.load_state_dict(model.state_dict())
    torch.testing.assert_close(model(x), plain(up))
    torch.testing.assert_close(model(up), plain(up))  # already 64x64: no second resize
    for bad in (4, 64.0, True, "64"):
        with pytest.raises(ValueError, match="input_size"):
            MiniXception(input_size=bad)


@pytest.mark.parametrize(
    ("widths", "stem_width", "attention"),
    [(MINI_XCEPTION_WIDTHS, 8, None), ((24, 40, 200), 16, "cbam"), ((8, 16, 32, 64), 4, "channel"),
     ((16, 32, 64, 128), 8, "spatial")],
)
def test_analytic_cost_matches_counters(widths, stem_width, attention) -> None:
    model = MiniXception(widths=widths, stem_width=stem_width, attention=attention)
    assert analytic_cost(widths, stem_width, attention) == (count_params(model), count_flops(model) // 2)


def test_paper_variants_near_paper_sizes() -> None:
    """The documented `_paper` choice (docs/models.md): within 3% of the paper's
    params and multiply-adds (the paper's "FLOPs" are multiply-adds)."""
    targets = {"mini_xception_paper": (0.61e6, 28.3e6), "mini_xception_cbam_paper": (0.68e6, 30.1e6)}
    for name, (params, macs) in targets.items():
        model = create_model(name)
        assert abs(count_params(model) / params - 1) < 0.03, name
        assert abs(count_flops(model) / 2 / macs - 1) < 0.03, name


# --- baselines ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [("mobilenet_v2", 2_232_263), ("resnet18", 11_173_831), ("resnet18_cifar", 11_171_271),
     ("vit", 13_602_823), ("vit_p6", 13_519_015)],
)
def test_baseline_param_counts(name: str, expected: int) -> None:
    """ImageNet layer sizes with a 1-channel input and 7 classes (see module docstrings)."""
    assert count_params(create_model(name)) == expected


@pytest.mark.parametrize(("name", "params", "macs"), [("resnet18", 11.69e6, 98.7e6), ("vit", 13.45e6, 102.3e6)])
def test_paper_cost_baselines_within_15_percent(name: str, params: float, macs: float) -> None:
    """The paper's ResNet-18 and ViT sizes (its "FLOPs" are multiply-adds): ours within 15 %."""
    model = create_model(name)
    assert abs(count_params(model) / params - 1) < 0.15, name
    assert abs(count_flops(model) / 2 / macs - 1) < 0.15, name


def test_cheap_and_costly_stems_differ_13x() -> None:
    """The CIFAR stem keeps the parameters but costs 13x the multiply-adds at 48x48."""
    ratio = count_flops(create_model("resnet18_cifar")) / count_flops(create_model("resnet18"))
    assert 12 < ratio < 14
    from fer_models.models.resnet import ResNet

    with pytest.raises(ValueError, match="stem"):
        ResNet(stem="tiny")


def test_vit_rejects_wrong_input_size() -> None:
    with pytest.raises(ValueError, match="48x48"):
        create_model("vit", embed_dim=24, depth=1, num_heads=2)(torch.zeros(1, 1, 32, 32))
