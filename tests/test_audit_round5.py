"""Audit round 5: OpenCV's log line on a truncated picture, --threads past the machine (torch crashed)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from conftest import fer_csv_text, random_faces


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def _folder(root: Path) -> Path:
    """split/class/*.png with one truncated picture among good ones."""
    for split in ("train", "val", "test"):
        for label in ("angry", "happy"):
            (root / split / label).mkdir(parents=True)
            for i, img in enumerate(random_faces(2, seed=len(split) + len(label))):
                cv2.imwrite(str(root / split / label / f"{i}.png"), img)
    bad = root / "train" / "angry" / "0.png"
    bad.write_bytes(bad.read_bytes()[:40])
    return root


def test_truncated_png_in_train_folder_is_one_line(tmp_path: Path) -> None:
    data = _folder(tmp_path / "faces")
    res = _run("-m", "fer_models", "train", "--data", "faces", "--out", "run", "--epochs", "1", "--threads", "1",
               cwd=tmp_path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert lines == [f"fer-models: error: cannot read image {Path('faces/train/angry/0.png')}"], res.stderr
    assert not (tmp_path / "run").exists() and data.is_dir()


def test_read_image_truncated_prints_nothing(tmp_path: Path) -> None:
    _folder(tmp_path / "f")
    code = ("import cv2\nfrom maskgen.io import read_image\nlevel = cv2.utils.logging.getLogLevel()\n"
            "try:\n    read_image('f/train/angry/0.png')\nexcept ValueError:\n    pass\n"
            "assert cv2.utils.logging.getLogLevel() == level\n")
    res = _run("-c", code, cwd=tmp_path)
    assert res.returncode == 0 and res.stderr == "", res.stderr


@pytest.mark.parametrize("threads", ["100000000", "99999999999999999999"])
def test_huge_threads_is_one_line(tmp_path: Path, threads: str) -> None:
    (tmp_path / "fer.csv").write_text(fer_csv_text(random_faces(12), [i % 7 for i in range(12)],
                                                   ["Training"] * 8 + ["PublicTest"] * 2 + ["PrivateTest"] * 2))
    res = _run("-m", "fer_models", "train", "--data", "fer.csv", "--out", "run", "--epochs", "1",
               "--model", "mini_xception", "--threads", threads, cwd=tmp_path)
    assert res.returncode == 2, (res.returncode, res.stderr[-500:])
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"fer-models: error: --threads {threads}: more than"), lines
    assert not (tmp_path / "run").exists()


def test_threads_refused_for_every_command(tmp_path: Path) -> None:
    for args in (["summary", "--no-timing"], ["evaluate", "--data", ".", "--weights", "fer2013"],
                 ["benchmark", "--out", "never"]):
        res = _run("-m", "fer_models", *args, "--threads", "100000", cwd=tmp_path)
        assert res.returncode == 2 and "--threads 100000: more than" in res.stderr, (res.returncode, res.stderr[-300:])
    assert not (tmp_path / "never").exists()


def test_train_config_refuses_huge_threads(tmp_path: Path) -> None:
    from fer_models.config import TrainConfig

    config = TrainConfig.from_recipe("paper", data=str(tmp_path / "x.csv"), out=str(tmp_path / "o"),
                                     model="mini_xception", threads=10 ** 8)
    with pytest.raises(ValueError, match="--threads 100000000"):
        config.validate()
