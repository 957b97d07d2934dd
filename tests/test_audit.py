"""Tests for maskgen.audit: exact twin / duplicate counts on a constructed file; near_pairs = brute force."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import fer_csv_text
from maskgen.audit import audit, audit_split, duplicate_summary, exact_groups, format_audit, near_pairs, thumbnails
from maskgen.cli import main
from maskgen.dataset import read_fer_csv


def _base(k: int) -> np.ndarray:
    """Independent random images with values in 10..240 (so +-3 never clips)."""
    return np.random.default_rng(100 + k).integers(10, 241, size=(48, 48), dtype=np.uint8)


def _mask(img: np.ndarray) -> np.ndarray:
    out = img.copy()
    out[24:] = 200
    return out


def _checker_plus_one(img: np.ndarray) -> np.ndarray:
    """Half of the pixels + 1: MAD 0.5 to ``img``, not identical."""
    out = img.astype(np.int16)
    out[(np.indices(img.shape).sum(0) % 2) == 0] += 1
    return out.astype(np.uint8)


B = [_base(k) for k in range(6)]
# (usage, source, masked, label, image)
ROWS = [
    ("Training", 0, 0, 0, B[0]),                       # r0
    ("Training", 0, 1, 0, _mask(B[0])),                # r1
    ("Training", 1, 0, 1, B[1]),                       # r2
    ("PrivateTest", 1, 1, 1, _mask(B[1])),             # r3: twin of r2 (test in train)
    ("PrivateTest", 2, 0, 3, B[0]),                    # r4: exact duplicate of r0, other label
    ("PrivateTest", 3, 0, 2, _checker_plus_one(B[2])),  # r5: near (MAD 0.5) r6 (train) and r10 (val)
    ("Training", 4, 0, 2, B[2]),                       # r6
    ("PrivateTest", 5, 0, 4, B[3]),                    # r7: twin of r8 (test in val)
    ("PublicTest", 5, 1, 4, _mask(B[3])),              # r8
    ("PublicTest", 6, 0, 5, B[4]),                     # r9
    ("PublicTest", 7, 0, 2, B[2]),                     # r10: exact duplicate of r6 (val in train)
    ("Training", 8, 0, 6, B[5]),                       # r11
    ("PrivateTest", 9, 0, 5, (B[4] + 3).astype(np.uint8)),  # r12: MAD 3 to r9 (val)
]


@pytest.fixture
def mfer_file(tmp_path: Path) -> Path:
    path = tmp_path / "mfer.csv"
    images = np.stack([r[4] for r in ROWS])
    path.write_text(fer_csv_text(images, [r[3] for r in ROWS], [r[0] for r in ROWS],
                                 extra={"source": [str(r[1]) for r in ROWS], "masked": [str(r[2]) for r in ROWS]}))
    return path


def test_usage_split_counts_are_exact(mfer_file):
    table = read_fer_csv(mfer_file)
    rep = audit_split(table, "usage", near_threshold=2.0)
    assert rep["sizes"] == {"train": 5, "val": 3, "test": 5}
    leaks = rep["leaks"]
    assert {k: leaks["test_in_train"][k] for k in ("twin", "exact", "near", "any")} == \
        {"twin": 1, "exact": 1, "near": 2, "any": 3}
    assert {k: leaks["val_in_train"][k] for k in ("twin", "exact", "near", "any")} == \
        {"twin": 0, "exact": 1, "near": 1, "any": 1}
    assert {k: leaks["test_in_val"][k] for k in ("twin", "exact", "near", "any")} == \
        {"twin": 1, "exact": 0, "near": 1, "any": 2}
    assert leaks["test_in_train"]["twin_share"] == pytest.approx(0.2)
    counts = rep["counts"]
    assert counts["train"]["angry"] == {"unmasked": 1, "masked": 1}
    assert counts["test"]["disgust"] == {"unmasked": 0, "masked": 1}
    assert counts["val"]["surprise"] == {"unmasked": 1, "masked": 0}
    assert sum(v["unmasked"] + v["masked"] for side in counts.values() for v in side.values()) == len(ROWS)
    # a larger threshold also catches r12 (MAD exactly 3) against r9
    wider = audit_split(table, "usage", near_threshold=3.0)
    assert wider["leaks"]["test_in_val"]["near"] == 2
    assert audit_split(table, "usage", near_threshold=2.999)["leaks"]["test_in_val"]["near"] == 1


def test_duplicate_summary(mfer_file):
    table = read_fer_csv(mfer_file)
    assert duplicate_summary(table) == {"duplicate_groups": 2, "rows_in_duplicate_groups": 4,
                                        "groups_with_conflicting_labels": 1}
    groups = exact_groups(table.images)
    assert groups[0] == groups[4] and groups[6] == groups[10] and len(set(groups.tolist())) == len(ROWS) - 2


def test_twins_paper_vs_grouped(tmp_path):
    """Every face unmasked + masked: the paper split leaks about 80% of test rows, grouped none."""
    rng = np.random.default_rng(0)
    n_src = 300
    faces = rng.integers(0, 256, size=(n_src, 48, 48), dtype=np.uint8)
    images = np.concatenate([faces, np.stack([_mask(f) for f in faces])])
    source = np.concatenate([np.arange(n_src)] * 2)
    path = tmp_path / "pairs.csv"
    path.write_text(fer_csv_text(images, source % 7, None,
                                 extra={"source": [str(s) for s in source],
                                        "masked": ["0"] * n_src + ["1"] * n_src}))
    result = audit(read_fer_csv(path), ("paper", "grouped"), seed=1)
    paper = result["splits"]["paper"]
    test = paper["sizes"]["test"]
    # exact: count test rows whose source is in train by hand
    from maskgen.splits import make_split
    split = make_split("paper", {"source": source}, seed=1)
    expected = int(np.isin(source[split["test"]], source[split["train"]]).sum())
    assert paper["leaks"]["test_in_train"]["twin"] == expected
    assert 0.6 < expected / test < 0.95
    assert paper["leaks"]["test_in_train"]["exact"] == 0
    grouped = result["splits"]["grouped"]["leaks"]
    assert all(grouped[k]["twin"] == 0 for k in grouped)
    assert "usage" not in result["splits"]
    assert "paper (seed 1, 80/10/10)" in format_audit(result)


@pytest.mark.parametrize("threshold", [0.0, 0.5, 2.0, 6.0])
def test_near_pairs_equals_brute_force(threshold):
    rng = np.random.default_rng(3)
    # low-contrast images: many share the same global mean, so the candidate steps matter
    base = rng.integers(100, 110, size=(40, 48, 48)).astype(np.int16)
    query = np.concatenate([base[:20] + rng.integers(-4, 5, size=(20, 48, 48)), base[20:25]])
    ref = np.concatenate([base, base[:10] + rng.integers(-1, 2, size=(10, 48, 48))])
    query, ref = query.astype(np.uint8), ref.astype(np.uint8)
    i, j, d = near_pairs(query, ref, threshold)
    full = np.abs(query.reshape(len(query), 1, -1).astype(np.int64) - ref.reshape(1, len(ref), -1)).mean(-1)
    bi, bj = np.nonzero(full <= threshold)
    assert np.array_equal(i, bi) and np.array_equal(j, bj)
    assert np.allclose(d, full[bi, bj])


def test_thumbnail_bound_and_errors():
    rng = np.random.default_rng(5)
    a, b = rng.integers(0, 256, size=(2, 10, 48, 48), dtype=np.uint8)
    full = np.abs(a.astype(int) - b.astype(int)).reshape(10, -1).mean(1)
    thumb = np.abs(thumbnails(a) - thumbnails(b)).mean(1)
    assert np.all(thumb <= full + 1e-4)
    with pytest.raises(ValueError, match="threshold"):
        near_pairs(a, b, -1.0)
    empty = near_pairs(a[:0], b, 1.0)
    assert all(x.size == 0 for x in empty)


def test_cli_audit(mfer_file, tmp_path):
    out = tmp_path / "audit.json"
    result = CliRunner().invoke(main, ["audit", str(mfer_file), "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "test_in_train" in result.output and "split: usage" in result.output
    data = json.loads(out.read_text())
    assert set(data["splits"]) == {"usage", "paper", "grouped"}
    assert data["splits"]["usage"]["leaks"]["test_in_train"]["twin"] == 1
    result = CliRunner().invoke(main, ["audit", str(mfer_file), "--split", "grouped", "--json", "-"])
    assert result.exit_code == 0
    assert list(json.loads(result.output)["splits"]) == ["grouped"]
    bad = tmp_path / "bad.csv"
    bad.write_text("emotion,pixels\n9,1 2 3\n")
    result = CliRunner().invoke(main, ["audit", str(bad)])
    assert result.exit_code == 2 and "line 2" in result.output


@pytest.mark.parametrize("args, masked, message", [
    (["--near-threshold", "nan"], None, "--near-threshold must be a finite number"),
    (["--near-threshold", "inf"], None, "--near-threshold must be a finite number"),
    (["--near-threshold", "-1"], None, "--near-threshold must be a finite number"),
    ([], "2", "line 5: column 'masked' must be 0 or 1, got 2"),
    ([], "-1", "line 5: column 'masked' must be 0 or 1, got -1"),
])
def test_cli_audit_refuses_doubtful_input(mfer_file, tmp_path, args, masked, message):
    """#28: audit accepted masked=2 (counted as masked) and a NaN threshold (no near duplicate ever)."""
    data = mfer_file
    if masked is not None:
        data = tmp_path / "edited.csv"
        images = np.stack([r[4] for r in ROWS])
        flags = [str(r[2]) for r in ROWS]
        flags[3] = masked
        data.write_text(fer_csv_text(images, [r[3] for r in ROWS], [r[0] for r in ROWS],
                                     extra={"source": [str(r[1]) for r in ROWS], "masked": flags}))
    before = data.read_bytes()
    out = tmp_path / "audit.json"
    result = CliRunner().invoke(main, ["audit", str(data), *args, "--json", str(out)])
    assert result.exit_code == 2, result.output
    assert message in result.output and not out.exists() and data.read_bytes() == before
    with pytest.raises(ValueError, match="threshold"):
        near_pairs(np.stack(B[:2]), np.stack(B[2:4]), float("nan"))
