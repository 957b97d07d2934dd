"""Tests for fer_models.metrics: exact values on hand-made cases, report files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

from fer_models.metrics import (  # noqa: E402
    classification_report, confusion_matrix, format_report, write_report,
)

NAMES = ("a", "b", "c")
# true:  0 0 1 1 2 2
# pred:  0 1 1 1 2 0
Y_TRUE = np.array([0, 0, 1, 1, 2, 2])
Y_PRED = np.array([0, 1, 1, 1, 2, 0])


def test_confusion_matrix_exact() -> None:
    cm = confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert cm.dtype == np.int64


def test_report_exact_values() -> None:
    r = classification_report(Y_TRUE, Y_PRED, NAMES)
    # worked by hand: a: P 1/2 R 1/2; b: P 2/3 R 1; c: P 1 R 1/2
    f1 = {"a": 0.5, "b": 0.8, "c": 2 / 3}
    assert r["n"] == 6
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["per_class"]["a"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert r["per_class"]["b"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert r["per_class"]["c"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert r["macro"]["precision"] == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)
    assert r["macro"]["recall"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert r["macro"]["f1"] == pytest.approx(sum(f1.values()) / 3)
    assert r["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    json.dumps(r)  # JSON-ready


def test_absent_class_counts_as_zero_in_macro() -> None:
    # class c never occurs and is never predicted: it scores 0 and still counts in the macro mean
    r = classification_report(np.array([0, 1]), np.array([0, 1]), NAMES)
    assert r["accuracy"] == 1.0
    assert r["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert r["macro"]["f1"] == pytest.approx(2 / 3)
    assert r["weighted"]["f1"] == pytest.approx(1.0)


def test_input_validation() -> None:
    with pytest.raises(ValueError, match="length"):
        classification_report(np.array([0, 1]), np.array([0]), NAMES)
    with pytest.raises(ValueError, match="outside"):
        classification_report(np.array([0, 3]), np.array([0, 1]), NAMES)
    with pytest.raises(ValueError, match="no samples"):
        confusion_matrix(np.array([], int), np.array([], int), 3)


def test_format_and_write_report(tmp_path: Path) -> None:
    r = classification_report(Y_TRUE, Y_PRED, NAMES)
    text = format_report(r, "title")
    assert text.splitlines()[0] == "title"
    assert "macro avg" in text and "0.6667" in text
    paths = write_report(r, tmp_path / "rep", "t", extra={"checkpoint": "x.pt"})
    loaded = json.loads(paths["json"].read_text())
    assert loaded["checkpoint"] == "x.pt" and loaded["accuracy"] == pytest.approx(4 / 6)
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths["txt"].read_text().startswith("t\n")
    assert not list((tmp_path / "rep").glob("*.part"))


def test_style_gap_is_each_unseen_style_against_the_mean_of_the_seen() -> None:
    from fer_models.metrics import style_gap

    acc = {"classic": 0.60, "flat_hard": 0.56, "patterned": 0.58, "rigid_homography": 0.53, "jittered": 0.57}
    gap = style_gap(acc, ["classic", "flat_hard", "patterned", "classic"])  # a repeated name counts once
    assert gap["reference"] == pytest.approx(0.58)
    assert gap["gaps"] == pytest.approx({"rigid_homography": -0.05, "jittered": -0.01})
    assert gap["mean_unseen"] == pytest.approx(-0.03) and gap["worst_unseen"] == pytest.approx(-0.05)
    assert gap["worst_style"] == "rigid_homography"
    every = style_gap(acc, list(acc))  # nothing unseen: no gap to report
    assert every["gaps"] == {} and every["mean_unseen"] is None and every["worst_style"] is None
    with pytest.raises(ValueError, match="no accuracy for the seen style"):
        style_gap(acc, ["classic", "feathered_halo"])
    with pytest.raises(ValueError, match="at least one seen style"):
        style_gap(acc, [])
