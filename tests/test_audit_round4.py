"""Audit round 4 (fer-models): FIFOs given where a file is read (refused naming the FIFO, never read or called a
missing file), a FIFO manifest beside an input CSV (blocked every command), a picture in an input folder that is
a symlink to the -o file (replaced), a folder named in bytes that are not UTF-8 (failed after the scoring), and
the same checks for evaluate / train image folders. Every case is refused before any model is loaded."""
from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import Unblock, error_line, fifo, fer_csv_text, random_faces
from fer_models.cli import main
from maskgen.io import write_image


one_error_line = partial(error_line, prog="fer-models")  # refused: exit 2, one "fer-models: error:" line


def run(*args):
    return CliRunner().invoke(main, [os.fsdecode(a) if isinstance(a, bytes) else str(a) for a in args])




def picture(path: Path, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_image(path, np.full((48, 48), value, np.uint8))


def faces_csv(path: Path, n: int = 14) -> Path:
    path.write_text(fer_csv_text(random_faces(n), [i % 7 for i in range(n)],
                                 ["Training", "PublicTest", "PrivateTest"] * (n // 3) + ["Training"] * (n % 3)))
    return path




CASES = ["evaluate --data", "evaluate --checkpoint", "predict input", "predict --onnx", "predict --checkpoint",
         "explain --data", "explain --masked", "export --check", "export --int8", "train --data", "train --twin",
         "train --labels", "train --init", "benchmark --beside", "predict manifest"]


@pytest.mark.parametrize("case", CASES)
def test_a_fifo_input_is_refused_naming_it(tmp_path: Path, case: str) -> None:
    csv = faces_csv(tmp_path / "faces.csv")
    out = tmp_path / "out"
    suffix = {"evaluate --checkpoint": ".pt", "predict --checkpoint": ".pt", "train --init": ".pt",
              "predict --onnx": ".onnx", "benchmark --beside": ".json", "predict manifest": ".json"}.get(case, ".csv")
    pipe = fifo(tmp_path / ("faces.manifest.json" if case == "predict manifest" else f"pipe{suffix}"))
    args = {
        "evaluate --data": ["evaluate", "--weights", "fer2013", "--data", pipe, "--out", out],
        "evaluate --checkpoint": ["evaluate", "--checkpoint", pipe, "--data", csv, "--out", out],
        "predict input": ["predict", pipe, "--weights", "fer2013", "-o", out / "p.csv"],
        "predict --onnx": ["predict", csv, "--onnx", pipe, "-o", out / "p.csv"],
        "predict --checkpoint": ["predict", csv, "--checkpoint", pipe, "-o", out / "p.csv"],
        "explain --data": ["explain", "--weights", "fer2013", "--data", pipe, "--masked", csv, "-o", out / "e.png"],
        "explain --masked": ["explain", "--weights", "fer2013", "--data", csv, "--masked", pipe, "-o", out / "e.png"],
        "export --check": ["export", "--weights", "fer2013", "--check", pipe, "-o", out / "m.onnx"],
        "export --int8": ["export", "--weights", "fer2013", "--int8", pipe, "-o", out / "m.onnx"],
        "train --data": ["train", "--data", pipe, "--out", out, "--epochs", "1"],
        "train --twin": ["train", "--data", csv, "--twin", pipe, "--out", out, "--epochs", "1"],
        "train --labels": ["train", "--data", csv, "--labels", f"ferplus={pipe}", "--out", out, "--epochs", "1"],
        "train --init": ["train", "--data", csv, "--init", pipe, "--out", out, "--epochs", "1"],
        "benchmark --beside": ["benchmark", "--fer", csv, "--beside", pipe, "--out", out, "--limit", "0"],
        "predict manifest": ["predict", csv, "--weights", "fer2013", "-o", out / "p.csv"],
    }[case]
    with Unblock(pipe) as guard:
        result = run(*args)
    assert not guard.fired, f"{case}: the command blocked reading the FIFO"
    one_error_line(result, pipe.name, "FIFO")
    assert not out.exists()


def test_explain_refuses_a_fifo_sidecar(tmp_path: Path) -> None:
    csv = faces_csv(tmp_path / "faces.csv")
    pipe = fifo(tmp_path / "faces.meta.csv")
    with Unblock(pipe) as guard:
        result = run("explain", "--weights", "fer2013", "--data", csv, "--masked", csv, "-o", tmp_path / "e.png")
    assert not guard.fired
    one_error_line(result, "faces.meta.csv", "FIFO")  # it said "the sidecar ... is needed", as if missing


def test_predict_o_never_replaces_a_file_a_symlinked_picture_points_to(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    picture(folder / "x.png")
    victim = tmp_path / "mine.csv"
    victim.write_text("my own notes\n")
    (folder / "y.png").symlink_to(victim)
    one_error_line(run("predict", folder, "--weights", "fer2013", "--aligned", "-o", victim), "mine.csv", "y.png")
    assert victim.read_text() == "my own notes\n"


def test_predict_refuses_a_folder_named_in_bytes_that_are_not_utf8_before_scoring(tmp_path: Path) -> None:
    folder = os.path.join(os.fsencode(tmp_path), b"bad\xff")
    picture(Path(os.fsdecode(folder)) / "x.png")
    out = tmp_path / "p.csv"
    line = one_error_line(run("predict", folder, "--weights", "fer2013", "--aligned", "-o", out), "UTF-8")
    assert "bad\\xff" in line and "model:" not in line
    assert not out.exists()


def _dataset(root: Path) -> Path:
    for split in ("train", "val", "test"):
        for label in ("happy", "sad"):
            picture(root / split / label / "a.png", 60 if label == "happy" else 200)
    return root


def test_evaluate_report_never_replaces_a_file_a_symlinked_picture_points_to(tmp_path: Path) -> None:
    data = _dataset(tmp_path / "ds")
    report = tmp_path / "rep"
    earlier = picture(report / "confusion.png", 9)  # an earlier report's picture, linked into the data set
    before = earlier.read_bytes()
    (data / "test" / "happy" / "c.png").symlink_to(earlier)
    one_error_line(run("evaluate", "--weights", "fer2013", "--data", data, "--out", report, "--device", "cpu"),
                   "confusion.png")
    assert earlier.read_bytes() == before and sorted(p.name for p in report.iterdir()) == ["confusion.png"]


def test_train_never_replaces_a_file_a_symlinked_picture_points_to(tmp_path: Path) -> None:
    data = _dataset(tmp_path / "ds")
    out = tmp_path / "run"
    log = out / "test" / "confusion.png"
    picture(log, 9)
    before = log.read_bytes()
    (data / "train" / "happy" / "c.png").symlink_to(log)
    one_error_line(run("train", "--data", data, "--out", out, "--epochs", "1", "--device", "cpu"), "confusion.png")
    assert log.read_bytes() == before
