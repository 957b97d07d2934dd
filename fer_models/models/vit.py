"""A small Vision Transformer (Dosovitskiy et al. 2021) for 48x48 grayscale faces.

Learned position embeddings, 6 pre-norm encoder blocks of width 432 with 6 heads and MLP
ratio 4. The paper gives its ViT's size (13.45M parameters, 102.3M "FLOPs") but no layer
sizes, so depth and width are ours, sized to its parameters; the patch grid sets the cost:

- ``vit``: 12x24 patches (4 rows x 2 columns, 8 tokens) and a mean-pooled head:
  13,602,823 parameters, 108.8M multiply-adds: the paper's cost.
- ``vit_p6``: 6x6 patches (an 8x8 grid, 64 tokens + a class token) and a class-token head:
  13,519,015 parameters at 8x that cost (896M multiply-adds).

Attention is written out (``q @ k^T``, softmax, ``@ v``) so FLOP counters see it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fer_models.models._registry import DEFAULT_NUM_CLASSES, check_int_list, check_positive_ints, register_model

IMG_SIZE = 48
PATCH_SIZE = 6
#: Patch (height, width) of ``vit``: a 4x2 grid of 48x48.
PAPER_COST_PATCH = (12, 24)
POOLS = ("cls", "mean")
EMBED_DIM = 432
DEPTH = 6
NUM_HEADS = 6
MLP_RATIO = 4.0
#: Std of the truncated-normal init of embeddings and linear weights (as timm).
INIT_STD = 0.02


class Attention(nn.Module):
    """Multi-head self-attention: (N, T, D) -> (N, T, D)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (N, heads, T, head_dim)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(n, t, d))


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """ViT classifier: float (N, in_chans, img_size, img_size) -> logits (N, num_classes)."""

    def __init__(
        self,
        num_classes: int = DEFAULT_NUM_CLASSES,
        in_chans: int = 1,
        img_size: int = IMG_SIZE,
        patch_size: int | tuple[int, int] = PATCH_SIZE,
        embed_dim: int = EMBED_DIM,
        depth: int = DEPTH,
        num_heads: int = NUM_HEADS,
        mlp_ratio: float = MLP_RATIO,
        pool: str = "cls",
    ) -> None:
        super().__init__()
        check_positive_ints(num_classes=num_classes, in_chans=in_chans, img_size=img_size, embed_dim=embed_dim,
                            depth=depth, num_heads=num_heads)
        if isinstance(patch_size, int) and not isinstance(patch_size, bool):
            check_positive_ints(patch_size=patch_size)
            patch_size = (patch_size, patch_size)
        ph, pw = check_int_list("patch_size", patch_size, length=2)
        if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, (int, float)) or not math.isfinite(mlp_ratio) \
                or int(embed_dim * mlp_ratio) < 1:
            raise ValueError(f"mlp_ratio must be a positive number (embed_dim x mlp_ratio >= 1), got {mlp_ratio!r:.40}")
        if img_size % ph or img_size % pw:
            raise ValueError(f"img_size {img_size} is not divisible by patch_size {(ph, pw)}")
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self.img_size = img_size
        self.pool = pool
        num_patches = (img_size // ph) * (img_size // pw)
        self.patch_embed = nn.Conv2d(in_chans, embed_dim, (ph, pw), stride=(ph, pw))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if pool == "cls" else None
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + (pool == "cls"), embed_dim))
        self.blocks = nn.Sequential(
            *[EncoderBlock(embed_dim, num_heads, mlp_ratio) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=INIT_STD)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=INIT_STD)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=INIT_STD)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(
                f"expected {self.img_size}x{self.img_size} input, got {tuple(x.shape[-2:])}"
            )
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)  # (N, T, D)
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        encoded = self.norm(self.blocks(tokens + self.pos_embed))
        return self.head(encoded[:, 0] if self.pool == "cls" else encoded.mean(1))


@register_model
def vit(num_classes: int = DEFAULT_NUM_CLASSES, **kwargs) -> VisionTransformer:
    """ViT at the paper's cost: 12x24 patches (8 tokens), mean-pooled head, width 432, depth 6, 6 heads."""
    kwargs = {"patch_size": PAPER_COST_PATCH, "pool": "mean", **kwargs}
    return VisionTransformer(num_classes=num_classes, **kwargs)


@register_model
def vit_p6(num_classes: int = DEFAULT_NUM_CLASSES, **kwargs) -> VisionTransformer:
    """ViT with 6x6 patches (64 tokens + class token), width 432, depth 6, 6 heads (8x the paper's cost)."""
    return VisionTransformer(num_classes=num_classes, **kwargs)
