"""fer_models.labels: FER+ vote rules, file validation, and training on FER+ labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fer_models.labels import (FERPLUS_CLASSES, FERPLUS_TO_FER2013, VOTE_COLUMNS, ferplus_targets,
                               majority_as_fer2013, parse_labels_option, read_ferplus_votes)
from maskgen.dataset import EMOTIONS

HEADER = "index,Usage,image_name," + ",".join(VOTE_COLUMNS)


def write_votes(path: Path, votes: np.ndarray) -> Path:
    lines = [HEADER] + [f"{i},Training,fer{i:07d}.png," + ",".join(map(str, v)) for i, v in enumerate(votes)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_rules() -> None:
    v = np.array([
        [6, 0, 1, 1, 0, 2, 0, 0, 0, 0],  # neutral majority; single votes dropped -> 6 of 8
        [4, 4, 0, 0, 0, 0, 0, 0, 2, 0],  # tie: no majority, usable as soft
        [0, 0, 0, 0, 0, 0, 0, 0, 3, 7],  # not a face: dropped
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # no votes
        [0, 0, 0, 0, 0, 0, 0, 5, 5, 0],  # contempt tied with unknown: dropped
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1],  # every vote single: nothing left
    ])
    t = ferplus_targets(v)
    assert t.majority.tolist() == [0, -1, -1, -1, -1, -1]
    assert t.keep_soft.tolist() == [True, True, False, False, False, False]
    np.testing.assert_allclose(t.soft[0], [6 / 8, 0, 0, 0, 0, 2 / 8, 0, 0])
    np.testing.assert_allclose(t.soft[1], [0.5, 0.5, 0, 0, 0, 0, 0, 0])
    assert t.not_face.tolist() == [False, False, True, False, False, False]
    assert len(FERPLUS_CLASSES) == 8


def test_file_validation(tmp_path: Path) -> None:
    votes = np.zeros((3, 10), dtype=int)
    votes[:, 0] = 10
    good = write_votes(tmp_path / "v.csv", votes)
    assert read_ferplus_votes(good, 3).shape == (3, 10)
    with pytest.raises(ValueError, match="3 vote rows for a data file of 4 rows"):
        read_ferplus_votes(good, 4)
    bad = tmp_path / "bad.csv"
    bad.write_text(good.read_text().replace("2,Training,fer0000002.png,10", "2,Training,fer0000002.png,x"))
    with pytest.raises(ValueError, match=r"line 4: neutral: expected a vote count \(0 to 1,000,000\), found 'x'"):
        read_ferplus_votes(bad, 3)
    order = tmp_path / "order.csv"
    order.write_text(good.read_text().replace("\n1,", "\n7,"))
    with pytest.raises(ValueError, match="line 3: index '7', expected 1"):
        read_ferplus_votes(order, 3)
    cols = tmp_path / "cols.csv"
    cols.write_text("index,neutral\n0,1\n")
    with pytest.raises(ValueError, match="missing column"):
        read_ferplus_votes(cols, 1)
    with pytest.raises(ValueError, match="ferplus=VOTES.csv"):
        parse_labels_option("votes.csv")


@pytest.mark.parametrize("cell, found", [("1" + "0" * 23, "1" + "0" * 23), ("\u00b2", "\u00b2"),
                                         ("-1", "-1"), ("2000000", "2000000"), ("1.5", "1.5"), ("", "")])
def test_vote_cells_that_are_not_counts_name_file_line_and_value(tmp_path: Path, cell: str, found: str) -> None:
    """A vote of 10^23 (int64 overflow), a superscript two (str.isdigit says yes, int() says no), a
    negative or absurd count, an empty cell (a truncated row reads as empty cells, once counted as 0):
    one ValueError naming the file, the line, the column and the cell."""
    votes = np.zeros((2, 10), dtype=int)
    good = write_votes(tmp_path / "v.csv", votes).read_text()
    bad = tmp_path / "bad.csv"
    bad.write_text(good.replace("1,Training,fer0000001.png,0", f"1,Training,fer0000001.png,{cell}"), encoding="utf-8")
    with pytest.raises(ValueError, match=f"^{bad}, line 3: neutral: expected a vote count .*found {found!r}$"):
        read_ferplus_votes(bad, 2)


@pytest.mark.parametrize("content", [bytes(range(256)) * 8, b"", b"\x00\x01\x02"])
def test_unreadable_votes_file_names_the_file(tmp_path: Path, content: bytes) -> None:
    """Random bytes (a UTF-8 decode error in pandas), an empty file: the message names the file."""
    path = tmp_path / "votes.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"^{path}: ") as info:
        read_ferplus_votes(path, 3)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("mode", ["majority", "soft"])
def test_train_on_ferplus_labels(tmp_path: Path, mode: str) -> None:
    pytest.importorskip("torch")
    from conftest import train_config as config, write_train_csv as write_csv

    from fer_models.train import load_checkpoint, main

    n = 84
    csv = write_csv(tmp_path / "toy.csv", n)
    rng = np.random.default_rng(0)
    votes = np.zeros((n, 10), dtype=int)
    for i in range(n):  # FER+ label = FER2013 label mapped, plus noise votes
        votes[i, [6, 5, 4, 1, 3, 2, 0][i % 7]] = 7
        votes[i, rng.integers(0, 8)] += 3
    votes[::10] = [0, 0, 0, 0, 0, 0, 0, 0, 2, 8]  # not faces
    path = write_votes(tmp_path / "votes.csv", votes)
    out = tmp_path / "run"
    report = main(config(csv, out, recipe="default", epochs=1, max_steps_per_epoch=2, labels=f"ferplus={path}",
                         label_mode=mode))
    keep = ferplus_targets(votes).majority >= 0
    test_rows = np.arange(n)[np.arange(n) % 6 == 5]
    assert report["n"] == int(keep[test_rows].sum())
    assert list(report["per_class"]) == list(FERPLUS_CLASSES)
    state = load_checkpoint(out / "best.pt")
    assert state.class_names == list(FERPLUS_CLASSES) and state.config["num_classes"] == 8


def test_majority_as_fer2013_maps_names_and_leaves_out_contempt_and_no_majority() -> None:
    """Each FER+ emotion lands on the FER2013 class of the same meaning; contempt and rows without a
    majority (ties, not a face, no votes) come out -1."""
    v = np.zeros((11, 10), dtype=int)
    for i in range(8):  # row i: 8 votes for FER+ class i, 2 for unknown
        v[i, i], v[i, 8] = 8, 2
    v[8] = [4, 4, 0, 0, 0, 0, 0, 0, 2, 0]   # tie: no majority
    v[9] = [0, 0, 0, 0, 0, 0, 0, 0, 3, 7]   # not a face
    # row 10: no votes
    fer = majority_as_fer2013(ferplus_targets(v).majority)
    names = ["neutral", "happy", "surprise", "sad", "angry", "disgust", "fear"]
    assert fer.tolist() == [EMOTIONS.index(n) for n in names] + [-1, -1, -1, -1]
    assert sorted(FERPLUS_TO_FER2013.values()) == sorted(EMOTIONS) and "contempt" not in FERPLUS_TO_FER2013
    assert majority_as_fer2013(np.zeros(0, dtype=int)).shape == (0,)
    with pytest.raises(ValueError, match="-1..7"):
        majority_as_fer2013(np.array([8]))
