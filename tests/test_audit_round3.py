"""Audit round 3 (maskgen): build-mfer and build-smfer on folders check every file they write, audit --json
never writes the input's sidecar, names that are not UTF-8, FIFOs where a file is read, mask-spec fields of
the wrong type, builds that mask nothing, and a few messages. Every case runs in about a second: most are
refused before any landmark detection."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import Unblock, error_line, fifo, USAGE_CYCLE, fer_csv_text, random_faces
from maskgen import folders
from maskgen.cli import main
from maskgen.io import write_image


def tree(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (links not followed), by relative path; a symlink by its target."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(root))] = "-> " + os.readlink(p)
        elif p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


one_error_line = partial(error_line, prog="maskgen")  # refused: exit 2, one "maskgen: error:" line


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def picture(path: Path, value: int = 128, size: int = 48) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_image(path, np.full((size, size), value, np.uint8))


def fake_build(src: Path, masked: Path, statuses: dict[str, str], contents_of: Path | None = None) -> None:
    """A finished folder build of ``src`` made by hand (no landmark detection): the pictures, a sidecar with
    ``statuses``, and a manifest recording the contents digest of ``contents_of`` (default ``src``)."""
    for rel in statuses:
        picture(masked / rel, 7)
    with open(masked / folders.META_NAME, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=folders.FOLDER_SIDECAR_COLUMNS, restval="")
        writer.writeheader()
        writer.writerows({"path": rel, "status": st} for rel, st in statuses.items())
    items = [folders.FolderItem(rel) for rel in statuses]
    digest = folders._contents_digest(folders._picture_sums(contents_of or src, items))
    (masked / folders.MANIFEST_NAME).write_text(json.dumps({"tool": "maskgen build-smfer (folder)",
                                                             "contents_sha256": digest}))


@pytest.fixture
def mfer_inputs(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "src"
    for rel in ("train/happy/000.png", "train/sad/001.png"):
        picture(src / rel)
    masked = tmp_path / "out1"
    fake_build(src, masked, {"train/happy/000.png": "masked", "train/sad/001.png": "masked"})
    return src, masked


# ------------------------------------------------------------------------------------------ 1. build-mfer (folders)
def test_build_mfer_folder_never_replaces_a_users_file(mfer_inputs, tmp_path: Path) -> None:
    src, masked = mfer_inputs
    mf = tmp_path / "mf"
    picture(mf / "train/happy/000.png", 1)
    before = tree(tmp_path)
    one_error_line(run("build-mfer", src, masked, "-o", mf), "000.png", "not written by this tool")
    assert tree(tmp_path) == before
    (mf / "train/happy/000.png").unlink()
    (mf / "mfer.index.csv").write_text("mine\n")
    before = tree(tmp_path)
    one_error_line(run("build-mfer", src, masked, "-o", mf), "mfer.index.csv")
    assert tree(tmp_path) == before
    (mf / "mfer.index.csv").unlink()
    for _ in range(2):  # its own files are replaced on a rerun (the folder's record)
        result = run("build-mfer", src, masked, "-o", mf)
        assert result.exit_code == 0, result.output
    assert (mf / "train/happy/000__masked.png").is_file() and (mf / folders.MFER_RECORD).is_file()


def test_build_mfer_folder_never_writes_into_its_input_through_a_symlink(mfer_inputs, tmp_path: Path) -> None:
    src, masked = mfer_inputs
    mf = tmp_path / "mf"
    mf.mkdir()
    (mf / "train").symlink_to(Path("..") / "src" / "train")
    before = tree(tmp_path)
    one_error_line(run("build-mfer", src, masked, "-o", mf), "input folder")
    assert tree(tmp_path) == before


def test_build_mfer_folder_refuses_a_picture_named_like_a_masked_twin(tmp_path: Path) -> None:
    src, masked = tmp_path / "src", tmp_path / "out1"
    picture(src / "a.png")
    picture(src / "a__masked.png", 9)
    fake_build(src, masked, {"a.png": "masked", "a__masked.png": "masked"})
    before = tree(tmp_path)
    one_error_line(run("build-mfer", src, masked, "-o", tmp_path / "mf"), "a__masked.png", "masked twin")
    assert tree(tmp_path) == before


def test_build_mfer_folder_refuses_a_build_that_masked_nothing(tmp_path: Path) -> None:
    src, masked = tmp_path / "src", tmp_path / "out1"
    picture(src / "a.png")
    fake_build(src, masked, {"a.png": "no_face"})
    one_error_line(run("build-mfer", src, masked, "-o", tmp_path / "mf"), "masked none", "no_face")
    assert not (tmp_path / "mf").exists()


def test_build_mfer_folder_refuses_a_build_of_another_folder(tmp_path: Path) -> None:
    src, other, masked = tmp_path / "src", tmp_path / "other", tmp_path / "out1"
    picture(src / "a.png", 100)
    picture(other / "a.png", 200)  # same name, other bytes
    fake_build(src, masked, {"a.png": "masked"}, contents_of=other)
    one_error_line(run("build-mfer", src, masked, "-o", tmp_path / "mf"), "contents_sha256", str(src))
    assert not (tmp_path / "mf").exists()
    assert run("build-mfer", other, masked, "-o", tmp_path / "mf").exit_code == 0


# ------------------------------------------------------------------------------------------ 2. build-smfer (folder)
@pytest.mark.parametrize("name", [folders.META_NAME, folders.STATE_NAME, folders.PARTIAL_NAME])
def test_build_smfer_folder_never_replaces_its_users_build_file(tmp_path: Path, name: str) -> None:
    src, out = tmp_path / "src", tmp_path / "o"
    picture(src / "a.png")
    out.mkdir()
    (out / name).write_text("mine\n")
    before = tree(tmp_path)
    one_error_line(run("build-smfer", src, "-o", out, "--quiet"), name)
    assert tree(tmp_path) == before


def test_build_smfer_folder_refuses_a_symlinked_build_file_before_any_work(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "o"
    picture(src / "a.png")
    out.mkdir()
    (out / folders.MANIFEST_NAME).symlink_to(tmp_path / "elsewhere.json")  # refused only after the pictures
    before = tree(tmp_path)
    one_error_line(run("build-smfer", src, "-o", out, "--quiet"), folders.MANIFEST_NAME, "symlink")
    assert tree(tmp_path) == before  # no picture written


def test_build_smfer_folder_names_a_corrupt_state_file(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "o"
    picture(src / "a.png")
    out.mkdir()
    (out / folders.STATE_NAME).write_text("")
    before = tree(tmp_path)
    one_error_line(run("build-smfer", src, "-o", out, "--quiet", "--resume"), folders.STATE_NAME)
    assert tree(tmp_path) == before


# ------------------------------------------------------------------------------------------ 3. audit --json
@pytest.mark.parametrize("companion", ["sm.meta.csv", "sm.manifest.json"])
def test_audit_json_never_writes_the_inputs_sidecar_or_manifest(tmp_path: Path, companion: str) -> None:
    n = 5
    (tmp_path / "sm.csv").write_text(fer_csv_text(random_faces(n), [i % 7 for i in range(n)],
                                                  [USAGE_CYCLE[i % 5] for i in range(n)]))
    (tmp_path / companion).write_text("the input's own\n")
    before = tree(tmp_path)
    one_error_line(run("audit", tmp_path / "sm.csv", "--json", tmp_path / companion), companion)
    assert tree(tmp_path) == before


# ------------------------------------------------------------------------------------------ 4. names not UTF-8
SCRIPT = r"""
import json, os, sys
from pathlib import Path
from click.testing import CliRunner
from maskgen.cli import main
from maskgen.io import read_image
root = Path(sys.argv[1])
bad = root / "src8" / os.fsdecode(b"bad\xff.png")
out = {"shape": list(read_image(bad).shape)}
for name, args in (("mask_image", ["mask-image", str(root / "src8"), "-o", str(root / "x")]),
                   ("build_smfer", ["build-smfer", str(root / "src8"), "-o", str(root / "o"), "--quiet"])):
    r = CliRunner().invoke(main, args)
    out[name] = [r.exit_code, r.output]
print(json.dumps(out))
"""


def test_a_picture_name_that_is_not_utf8(tmp_path: Path) -> None:
    """cv2.imread(str(path)) segfaulted on such a name: read in a child process, so the old code fails the test
    instead of killing it."""
    (tmp_path / "src8").mkdir()
    raw = os.path.join(os.fsencode(tmp_path / "src8"), b"bad\xff.png")
    try:
        with open(raw, "wb") as fh:
            fh.write(picture(tmp_path / "ok.png").read_bytes())
    except OSError:
        pytest.skip("this file system takes no such name")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["shape"] == [48, 48]
    for name in ("mask_image", "build_smfer"):
        code, output = found[name]
        assert code == 2 and output.count("\n") == 1, (name, output)
        assert "src8" in output and "bad\\xff.png" in output and "UTF-8" in output, (name, output)
    assert not (tmp_path / "x").exists() and not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------ 5. FIFOs, records




@pytest.mark.parametrize("case", ["mask-image record", "demo record", "--list", "--mask-spec"])
def test_a_fifo_is_refused_not_read(tmp_path: Path, case: str) -> None:
    photo = picture(tmp_path / "photos" / "face.png", size=64)
    if case == "mask-image record":
        pipe, args = fifo(tmp_path / "x" / ".maskgen-mask-image.json"), ["mask-image", photo, "-o", tmp_path / "x"]
    elif case == "demo record":
        pipe, args = fifo(tmp_path / "d" / ".maskgen-demo.json"), ["demo", "-o", tmp_path / "d", "-n", "2"]
    elif case == "--list":
        pipe = fifo(tmp_path / "list.csv")
        args = ["build-smfer", tmp_path / "photos", "--list", pipe, "-o", tmp_path / "o", "--quiet"]
    else:
        pipe, args = fifo(tmp_path / "spec.json"), ["mask-image", photo, "--mask-spec", tmp_path / "spec.json",
                                                     "-o", tmp_path / "x"]
    with Unblock(pipe) as guard:
        result = run(*args)
    assert not guard.fired, f"{case}: the command blocked reading the FIFO"
    one_error_line(result, pipe.name, "FIFO")


def test_a_symlinked_record_is_refused_before_any_work(tmp_path: Path) -> None:
    photo = picture(tmp_path / "photos" / "face.png", size=64)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / ".maskgen-mask-image.json").symlink_to(tmp_path / "nowhere.json")
    one_error_line(run("mask-image", photo, "-o", tmp_path / "x"), ".maskgen-mask-image.json", "symlink")


# ------------------------------------------------------------------------------------------ 6. mask-spec fields
@pytest.mark.parametrize("field, value", [("image", 5), ("image", None), ("colors", 5), ("patterns", 5),
                                          ("name", [1])])
def test_a_mask_spec_field_of_the_wrong_type(tmp_path: Path, field: str, value) -> None:
    from maskgen.masks import _builtin_dir

    spec = json.loads((_builtin_dir() / "surgical.json").read_text())
    shutil.copy(_builtin_dir() / "surgical.png", tmp_path / "surgical.png")
    spec["name"] = "mine"
    spec[field] = value
    (tmp_path / "mine.json").write_text(json.dumps(spec))
    photo = picture(tmp_path / "photos" / "face.png", size=64)
    one_error_line(run("mask-image", photo, "--mask-spec", tmp_path / "mine.json", "-o", tmp_path / "x"),
                   "mine.json", repr(field))


# ------------------------------------------------------------------------------------------ 7. nothing masked
def test_build_smfer_warns_when_it_masked_nothing(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for k in range(2):
        picture(src / f"{k}.png", size=64)  # plain gray: no face
    result = run("build-smfer", src, "-o", tmp_path / "o", "--photo", "--quiet", "--backend", "sequential")
    assert result.exit_code == 0, result.output
    assert "maskgen: warning: none of the 2 pictures was masked" in result.output and "no_face" in result.output
    n = 3
    (tmp_path / "fer.csv").write_text(fer_csv_text(np.zeros((n, 48, 48), np.uint8), [0] * n, ["Training"] * n))
    result = run("build-smfer", tmp_path / "fer.csv", "-o", tmp_path / "sm.csv", "--quiet", "--backend", "sequential",
                 "--on-implausible", "keep")
    assert result.exit_code == 0, result.output
    assert "maskgen: warning: none of the 3 rows was masked" in result.output


# ------------------------------------------------------------------------------------------ 8. messages
@pytest.mark.parametrize("content", [None, "notes.txt"])
def test_mask_image_on_a_folder_without_pictures(tmp_path: Path, content: str | None) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    if content:
        (empty / content).write_text("no picture here\n")
    one_error_line(run("mask-image", empty, "-o", tmp_path / "x"), str(empty), "no pictures")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("value", [",", "surgical,,cloth"])
def test_masks_with_an_empty_name_is_refused(tmp_path: Path, value: str) -> None:
    photo = picture(tmp_path / "photos" / "face.png", size=64)
    result = run("mask-image", photo, "--masks", value, "-o", tmp_path / "x")
    assert result.exit_code == 2 and "--masks" in result.output and "empty mask name" in result.output, result.output
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("args", [["build-smfer", "{pipe}", "-o", "o.csv"],
                                  ["build-smfer", "{csv}", "-o", "o.csv", "--landmarks", "{pipe}"],
                                  ["mask-image", "{pipe}", "-o", "out"]])
def test_a_fifo_input_is_named_as_such_not_as_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       args: list[str]) -> None:
    """A FIFO given as the input CSV, the landmarks or a picture was reported as 'no such file' / 'not found'."""
    from maskgen.cli import main as maskgen_main

    monkeypatch.chdir(tmp_path)
    pipe = fifo(tmp_path / "pipe.csv")
    csv = tmp_path / "fer.csv"
    csv.write_text(fer_csv_text(random_faces(4), [0, 1, 2, 3], ["Training"] * 4))
    with Unblock(pipe) as guard:
        result = CliRunner().invoke(maskgen_main, [a.format(pipe=pipe, csv=csv) for a in args])
    assert not guard.fired
    assert result.exit_code == 2 and "not a regular file" in result.output, result.output
    assert "no such file" not in result.output and "not found" not in result.output
