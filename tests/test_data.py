"""Tests for fer_models.data: CSV -> tensors, splits, batched augmentation, class weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fer_models.data import (  # noqa: E402
    AugmentConfig, augment_batch, class_weights, load_fer_tensors, sample_affine, split_indices, to_float,
)

SIDE = 48
USAGE_CYCLE = ("Training", "Training", "Training", "PublicTest", "PrivateTest")


def write_csv(path: Path, n: int, *, usage: bool = True, source: bool = False, seed: int = 0) -> Path:
    """A FER2013-format CSV of n random 48x48 images, labels i % 7 (and Usage / source columns)."""
    rng = np.random.default_rng(seed)
    header = ["emotion", "pixels"] + (["Usage"] if usage else []) + (["source"] if source else [])
    lines = [",".join(header)]
    for i in range(n):
        fields = [str(i % 7), " ".join(map(str, rng.integers(0, 256, SIDE * SIDE)))]
        if usage:
            fields.append(USAGE_CYCLE[i % len(USAGE_CYCLE)])
        if source:
            fields.append(str(i // 3))  # three rows per source face (FER2013 row id)
        lines.append(",".join(fields))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_load_shapes_and_dtypes(tmp_path: Path) -> None:
    data = load_fer_tensors(write_csv(tmp_path / "a.csv", 20))
    assert data.images.shape == (20, 1, SIDE, SIDE) and data.images.dtype == torch.uint8
    assert data.labels.dtype == torch.int64 and data.labels.tolist() == [i % 7 for i in range(20)]
    x, y = data.subset(np.array([3, 1]))
    assert x.shape == (2, 1, SIDE, SIDE) and y.tolist() == [3, 1]


def test_usage_split(tmp_path: Path) -> None:
    data = load_fer_tensors(write_csv(tmp_path / "a.csv", 25))
    s = split_indices(data, "usage")
    assert s["train"].tolist() == [i for i in range(25) if i % 5 < 3]
    assert s["val"].tolist() == [i for i in range(25) if i % 5 == 3]
    assert s["test"].tolist() == [i for i in range(25) if i % 5 == 4]
    assert s["all"].tolist() == list(range(25))


def test_usage_split_needs_usage_column(tmp_path: Path) -> None:
    data = load_fer_tensors(write_csv(tmp_path / "a.csv", 10, usage=False))
    with pytest.raises(ValueError, match="Usage"):
        split_indices(data, "usage")
    with pytest.raises(ValueError, match="unknown split"):
        split_indices(data, "nope")


def test_paper_split_partitions_and_is_seeded(tmp_path: Path) -> None:
    data = load_fer_tensors(write_csv(tmp_path / "a.csv", 50, usage=False))
    s = split_indices(data, "paper", seed=1)
    assert (len(s["train"]), len(s["val"]), len(s["test"])) == (40, 5, 5)
    joined = np.sort(np.concatenate([s["train"], s["val"], s["test"]]))
    assert joined.tolist() == list(range(50))
    again = split_indices(data, "paper", seed=1)
    other = split_indices(data, "paper", seed=2)
    assert all(np.array_equal(s[k], again[k]) for k in s)
    assert not np.array_equal(s["test"], other["test"])


def test_grouped_split_keeps_groups_together(tmp_path: Path) -> None:
    data = load_fer_tensors(write_csv(tmp_path / "a.csv", 90, source=True))
    s = split_indices(data, "grouped", seed=0)
    groups = {k: set(data.groups[s[k]].tolist()) for k in ("train", "val", "test")}
    assert not (groups["train"] & groups["val"] or groups["train"] & groups["test"] or groups["val"] & groups["test"])
    assert sum(len(s[k]) for k in ("train", "val", "test")) == 90
    assert (len(groups["train"]), len(groups["val"]), len(groups["test"])) == (24, 3, 3)
    # without a source column every row is its own group: still a seeded 80/10/10 partition
    plain = split_indices(load_fer_tensors(write_csv(tmp_path / "b.csv", 20)), "grouped", seed=0)
    assert (len(plain["train"]), len(plain["val"]), len(plain["test"])) == (16, 2, 2)


def test_usage_split_rejects_empty_subset(tmp_path: Path) -> None:
    data = load_fer_tensors(write_csv(tmp_path / "a.csv", 3))  # Training rows only
    with pytest.raises(ValueError, match="PublicTest"):
        split_indices(data, "usage")


def test_to_float_range() -> None:
    x = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2)
    assert to_float(x).tolist() == [[[[-1.0, 1.0]]]]
    with pytest.raises(TypeError):
        to_float(x.float())


def test_augment_seeded_shape_dtype() -> None:
    x = to_float(torch.randint(0, 256, (8, 1, SIDE, SIDE), dtype=torch.uint8))
    cfg = AugmentConfig(20.0, 0.1, 0.1, True)
    a = augment_batch(x, cfg, torch.Generator().manual_seed(3))
    b = augment_batch(x, cfg, torch.Generator().manual_seed(3))
    c = augment_batch(x, cfg, torch.Generator().manual_seed(4))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.allclose(a, x)
    x64 = x.double()
    assert augment_batch(x64, cfg, torch.Generator().manual_seed(3)).dtype == torch.float64


def test_augment_identity_and_flip() -> None:
    x = torch.rand(6, 1, SIDE, SIDE)
    ident = augment_batch(x, AugmentConfig(0, 0, 0, False), torch.Generator().manual_seed(0))
    assert torch.allclose(ident, x, atol=1e-5)
    flipped = augment_batch(x, AugmentConfig(0, 0, 0, True), torch.Generator().manual_seed(0))
    per_image = [torch.allclose(f, o, atol=1e-5) or torch.allclose(f, o.flip(-1), atol=1e-5)
                 for f, o in zip(flipped, x)]
    assert all(per_image)
    n_flipped = sum(torch.allclose(f, o.flip(-1), atol=1e-5) for f, o in zip(flipped, x))
    assert 0 < n_flipped < 6  # 1/2 probability each, seed 0 gives a mix


def test_augment_bounds_and_border_replication() -> None:
    # a constant image stays constant under any transform when borders are replicated
    x = torch.full((16, 1, SIDE, SIDE), 0.25)
    y = augment_batch(x, AugmentConfig(20.0, 0.1, 0.1, True), torch.Generator().manual_seed(0))
    assert torch.allclose(y, x, atol=1e-5)
    theta = sample_affine(1000, AugmentConfig(20.0, 0.1, 0.1, True), torch.Generator().manual_seed(0))
    lin = theta[:, :, :2]
    det = torch.linalg.det(lin).abs()  # 1 / zoom^2
    assert det.min() >= 1 / 1.1**2 - 1e-4 and det.max() <= 1 / 0.9**2 + 1e-4


def test_augment_translation_direction() -> None:
    # a bright vertical line at column 20, shifted by +10% of the width -> about column 24.8
    x = torch.zeros(1, 1, SIDE, SIDE)
    x[..., 20] = 1.0
    g = torch.Generator().manual_seed(0)
    theta = sample_affine(1, AugmentConfig(0, 0.1, 0, False), g)
    shift_x = -theta[0, 0, 2].item() * SIDE / 2  # pixels, output = input moved by this
    y = augment_batch(x, AugmentConfig(0, 0.1, 0, False), torch.Generator().manual_seed(0))
    col = (y[0, 0].sum(0) * torch.arange(SIDE)).sum() / y[0, 0].sum()
    assert abs(col.item() - (20 + shift_x)) < 0.05


def test_augment_rejects_uint8() -> None:
    with pytest.raises(ValueError):
        augment_batch(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), AugmentConfig(20.0, 0.1, 0.1, True), torch.Generator())


def test_class_weights_balanced() -> None:
    w = class_weights(torch.tensor([0, 0, 0, 1]), num_classes=3)
    # n / (k_present * count): 4 / (2 * 3), 4 / (2 * 1), absent -> 0
    assert torch.allclose(w, torch.tensor([4 / 6, 2.0, 0.0]))
