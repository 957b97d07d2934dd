"""maskgen.fits: fit probabilities validated once (check_fit_probs), before any work, by every command."""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from maskgen.fits import FITS, check_fit_probs


def checksums(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_check_fit_probs_accepts_and_refuses() -> None:
    assert check_fit_probs(None) == {"correct": 1.0}
    assert check_fit_probs({"correct": 3, "chin_only": 0}) == {"correct": 3.0, "chin_only": 0.0}
    for bad, match in [({"wrong": 1}, "unknown fit 'wrong'; valid: " + ", ".join(FITS)),
                       ({"correct": 0}, "sum to > 0"), ({"correct": 0, "chin_only": 0}, "sum to > 0"),
                       ({"correct": -1, "chin_only": 2}, ">= 0"), ({"correct": math.nan}, "finite"),
                       ({"correct": math.inf}, "finite"), ({"correct": "x"}, "not a number"), ({}, "no fit")]:
        with pytest.raises(ValueError, match=match):
            check_fit_probs(bad)


def test_library_builds_refuse_bad_fits_before_work() -> None:
    from maskgen.pipeline import BuildConfig, resolve_masks

    with pytest.raises(ValueError, match="unknown fit"):
        resolve_masks(BuildConfig(fit_probs={"wrong": 1}))


@pytest.fixture
def inputs(tmp_path: Path, small_fer: Path) -> Path:
    """tmp_path/in: a FER2013-format CSV and a folder with one picture."""
    folder = tmp_path / "in" / "pics"
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / "a.png"), np.full((48, 48), 128, np.uint8))
    small_fer.rename(tmp_path / "in" / "fer.csv")
    return tmp_path / "in"


COMMANDS = {
    "build-smfer csv": lambda i, o: ["build-smfer", str(i / "fer.csv"), "-o", str(o / "s.csv"), "--quiet"],
    "build-smfer folder": lambda i, o: ["build-smfer", str(i / "pics"), "-o", str(o / "s"), "--quiet"],
    "preview": lambda i, o: ["preview", str(i / "fer.csv"), "-o", str(o / "p.png")],
    "mask-image": lambda i, o: ["mask-image", str(i / "pics"), "-o", str(o / "m")],
}


@pytest.mark.parametrize("fit", ["wrong=1", "correct=0", "correct=-1,chin_only=1", "correct=nan", "correct=inf",
                                 "correct=1,correct=0"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_refuses_bad_fits_before_work(inputs: Path, tmp_path: Path, command: str, fit: str) -> None:
    """#28 case 8: --fit wrong=1 or correct=0 exited 0 with every row unmasked (preview: "0 failed QA")."""
    from maskgen.cli import main

    out = tmp_path / "out"
    out.mkdir()
    before = checksums(inputs)
    result = CliRunner().invoke(main, [*COMMANDS[command](inputs, out), "--fit", fit])
    assert result.exit_code == 2, result.output
    assert "--fit" in result.output
    if fit == "wrong=1":
        assert "valid: correct, nose_exposed, chin_only" in result.output
    assert list(out.iterdir()) == [] and checksums(inputs) == before
