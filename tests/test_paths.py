"""maskgen.paths: one layer for every command's inputs and outputs (issue #28, data-loss cases 1-6).

Every refusal here happens before any work (no landmark detection, no model), and after each one
every input, and every file that was there before, is byte-identical (checked with checksums).
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from maskgen.cli import main as maskgen_main
from maskgen.io import atomic_write
from maskgen.paths import (
    Output,
    PathError,
    check_outputs,
    check_targets,
    check_write_target,
    describe,
    normalize_entry,
    read_list,
    walk,
)
from tests.conftest import fer_csv_text, random_faces

SUFFIXES = (".png", ".jpg")


# ---------------------------------------------------------------- helpers
def snapshot(*roots: Path) -> dict[str, str]:
    """Everything under ``roots`` (files, links, FIFOs, folders), each as its checksum or kind."""
    out: dict[str, str] = {}
    for root in roots:
        for p in sorted([root, *root.rglob("*")]) if root.is_dir() and not root.is_symlink() else [root]:
            mode = os.lstat(p).st_mode
            if stat.S_ISLNK(mode):
                out[str(p)] = "link -> " + os.readlink(p)
            elif stat.S_ISFIFO(mode):
                out[str(p)] = "fifo"
            elif stat.S_ISDIR(mode):
                out[str(p)] = "dir"
            else:
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def picture(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), random_faces(1, seed)[0])
    return path


def run_maskgen(*args: str | Path):
    return CliRunner().invoke(maskgen_main, [str(a) for a in args])


def refused(result, *needles: str) -> str:
    """The command exited 2 with one error line naming every needle."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.output.splitlines() if "error" in line]
    assert len(lines) == 1, result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture
def ds(tmp_path: Path) -> Path:
    """A small picture folder ``ds`` (two pictures) beside a ``victim`` folder."""
    root = tmp_path / "ds"
    picture(root / "a.png", 1)
    picture(root / "sub" / "b.png", 2)
    picture(tmp_path / "victim" / "t.png", 3)
    return root


# ---------------------------------------------------------------- the walker and list files
def test_walk_is_one_walker_for_files_and_folders(ds: Path) -> None:
    (ds / "notes.txt").write_text("not a picture")
    found = walk([ds, ds / "a.png"], SUFFIXES)
    assert [f.rel for f in found] == ["a.png", "sub/b.png"]  # a.png given twice under one name: kept once
    assert all(f.resolved.is_absolute() and f.root == ds.resolve() for f in found)
    assert [f.rel for f in walk([ds], SUFFIXES, exclude=[ds / "sub"])] == ["a.png"]
    with pytest.raises(FileNotFoundError, match="nope"):
        walk([ds / "nope"], SUFFIXES)
    from fer_models.predict import expand_inputs
    from maskgen.folders import scan_folder
    from maskgen.photo import expand_paths

    assert [r.as_posix() for _, r in expand_paths([ds])] == [i.path for i in scan_folder(ds)] == \
        [r.as_posix() for _, r in expand_inputs([ds])]


@pytest.mark.parametrize("entry, expected", [
    ("a.png", "a.png"), ("./a.png", "a.png"), ("sub//b.png", "sub/b.png"), ("sub/../a.png", "a.png"),
    ("sub\\b.png", "sub/b.png"), ("/abs/t.png", None), ("../victim/t.png", None), ("sub/../../x.png", None),
    ("C:/x.png", None), ("\\\\host\\share\\x.png", None), ("..", None),
])
def test_list_entries_are_normalized_inside_their_root(entry: str, expected: str | None) -> None:
    assert normalize_entry(entry) == expected


def test_same_entry_twice_in_a_list_is_refused(ds: Path, tmp_path: Path) -> None:
    """``./a.png`` and ``a.png`` are one item: listing both is refused (not processed twice)."""
    listing = tmp_path / "L.csv"
    listing.write_text("path\na.png\n./a.png\n")
    with pytest.raises(PathError, match=r"L.csv, line 3: a.png listed twice \(./a.png is a.png\) \(first on line 2\)"):
        read_list(listing, ds, SUFFIXES)
    listing.write_text("path,label\n./sub/b.png,x\n")
    assert [(e.rel, e.line, e.row["label"]) for e in read_list(listing, ds, SUFFIXES)] == [("sub/b.png", 2, "x")]


# ---------------------------------------------------------------- case 1: --list escapes its root
@pytest.mark.parametrize("kind", ["absolute input", "absolute victim", "dotdot victim"])
@pytest.mark.parametrize("nested_out", [False, True])
def test_case1_list_paths_escaping_the_root_are_refused(ds: Path, tmp_path: Path, kind: str, nested_out: bool) -> None:
    entry = {"absolute input": str((ds / "a.png").resolve()),
             "absolute victim": str((tmp_path / "victim" / "t.png").resolve()),
             "dotdot victim": "../victim/t.png"}[kind]
    listing = tmp_path / "L.csv"
    listing.write_text(f"path\nsub/b.png\n{entry}\n")
    out = tmp_path / "x" / "y" / "out" if nested_out else tmp_path / "out"
    before = snapshot(tmp_path)
    result = run_maskgen("build-smfer", ds, "-o", out, "--list", listing, "--quiet", "-j", "1")
    refused(result, "L.csv", "line 3", entry)
    assert snapshot(tmp_path) == before  # nothing written anywhere, inputs byte-identical
    assert not out.exists()


# ---------------------------------------------------------------- case 2: input folder inside the output folder
def test_case2_input_folder_inside_the_output_folder_is_refused(tmp_path: Path) -> None:
    nest = tmp_path / "nest"
    picture(nest / "a" / "x.png", 1)
    picture(nest / "a" / "a" / "x.png", 2)
    before = snapshot(tmp_path)
    refused(run_maskgen("build-smfer", nest / "a", "-o", nest, "--quiet", "-j", "1"), str(nest / "a"), str(nest))
    refused(run_maskgen("build-smfer", nest, "-o", nest / "a", "--quiet", "-j", "1"), "inside")  # the reverse
    refused(run_maskgen("build-smfer", nest, "-o", nest, "--quiet", "-j", "1"), "overwrite")  # the same folder
    assert snapshot(tmp_path) == before


def test_an_output_folder_that_is_a_link_to_the_input_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    picture(src / "x.png")
    (tmp_path / "link").symlink_to(src, target_is_directory=True)
    before = snapshot(tmp_path)
    refused(run_maskgen("build-smfer", src, "-o", tmp_path / "link", "--quiet"), "link")
    assert snapshot(tmp_path) == before


def test_list_file_inside_the_output_folder_is_refused(ds: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    listing = out / "L.csv"
    listing.write_text("path\na.png\n")
    before = snapshot(tmp_path)
    refused(run_maskgen("build-smfer", ds, "-o", out, "--list", listing, "--quiet"), "--list", "L.csv")
    assert snapshot(tmp_path) == before


def test_folder_build_never_replaces_a_file_outside_a_build_of_its_own(ds: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    picture(out / "sub" / "b.png", 8)  # the user's own picture, where the build would write
    before = snapshot(tmp_path)
    refused(run_maskgen("build-smfer", ds, "-o", out, "--quiet"), "b.png", "not written by this tool")
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------- case 3: --metadata and the manifest
@pytest.fixture
def fer_csv(tmp_path: Path) -> Path:
    path = tmp_path / "in.csv"
    path.write_text(fer_csv_text(random_faces(3), [0, 1, 2], ["Training"] * 3))
    return path


@pytest.mark.parametrize("input_name, args, needles", [
    ("in.csv", ["-o", "o.csv", "--metadata", "in.csv"], ["--metadata", "in.csv", "overwrite"]),  # sidecar onto input
    ("in.csv", ["-o", "o.csv", "--metadata", "o.csv"], ["--metadata", "o.csv", "both name"]),  # sidecar onto output
    ("in.csv", ["-o", "o.csv", "--metadata", "o.manifest.json"], ["manifest", "both name"]),  # ... onto the manifest
    ("in.csv", ["-o", "in.csv"], ["-o", "overwrite"]),
    ("o.manifest.json", ["-o", "o.csv"], ["manifest", "overwrite"]),  # the manifest's name is the input's
    ("o.meta.csv", ["-o", "o.csv"], ["sidecar", "overwrite"]),  # so is the default sidecar's
])
def test_case3_metadata_and_manifest_are_checked_against_inputs_and_outputs(
        fer_csv: Path, tmp_path: Path, input_name: str, args: list[str], needles: list[str]) -> None:
    src = fer_csv.rename(tmp_path / input_name)
    before = snapshot(tmp_path)
    refused(run_maskgen("build-smfer", src, *[str(tmp_path / a) if not a.startswith("-") else a for a in args],
                        "--quiet", "-j", "1"), *needles)
    assert snapshot(tmp_path) == before


def test_a_hard_link_to_the_input_is_the_input(fer_csv: Path, tmp_path: Path) -> None:
    os.link(fer_csv, tmp_path / "same.csv")
    before = snapshot(tmp_path)
    refused(run_maskgen("build-smfer", fer_csv, "-o", tmp_path / "same.csv", "--quiet"), "overwrite")
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------- case 4: mask-image
@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    """A photo with a face (so that the code before #28 did write, and overwrite): BGR, 256x256."""
    data = pytest.importorskip("skimage.data")
    return cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (256, 256), interpolation=cv2.INTER_AREA)


def test_case4_mask_image_into_its_own_folder_is_refused(tmp_path: Path, astronaut: np.ndarray) -> None:
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    cv2.imwrite(str(photos / "x.png"), astronaut)
    cv2.imwrite(str(photos / "sub" / "y.png"), astronaut[:, ::-1])
    before = snapshot(tmp_path)
    refused(run_maskgen("mask-image", photos, "-o", photos), "overwrite")
    refused(run_maskgen("mask-image", photos / "x.png", "-o", photos), "inside the -o folder")
    refused(run_maskgen("mask-image", photos, "-o", photos / "sub"), "inside the input folder")
    assert snapshot(tmp_path) == before


def test_case4_two_inputs_with_one_name_are_refused(tmp_path: Path, astronaut: np.ndarray) -> None:
    a, b = tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"
    for path, image in ((a, astronaut), (b, astronaut[:, ::-1])):
        path.parent.mkdir()
        cv2.imwrite(str(path), image)
    before = snapshot(tmp_path)
    line = refused(run_maskgen("mask-image", a, b, "-o", tmp_path / "out"), "would both write")
    assert str(a) in line and str(b) in line and "x.png" in line
    refused(run_maskgen("mask-image", tmp_path / "a", tmp_path / "b", "-o", tmp_path / "out"), "would both write")
    assert snapshot(tmp_path) == before and not (tmp_path / "out").exists()


def test_mask_image_never_replaces_a_file_it_did_not_make(tmp_path: Path, astronaut: np.ndarray) -> None:
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    cv2.imwrite(str(photos / "x.png"), astronaut)
    mine = picture(out / "x.png", 4)  # the user's own picture, with the name mask-image would write
    before = snapshot(tmp_path)
    refused(run_maskgen("mask-image", photos, "-o", out), "x.png", "not written by this tool")
    assert snapshot(tmp_path) == before
    mine.unlink()
    from maskgen.photo import MASKED_RECORD

    assert run_maskgen("mask-image", photos, "-o", out).exit_code == 0
    assert list(json.loads((out / MASKED_RECORD).read_text())["files"]) == ["x.png"]
    assert run_maskgen("mask-image", photos, "-o", out).exit_code == 0  # a rerun replaces its own output


# ---------------------------------------------------------------- case 5: predict --annotate
def _fake_scorer():
    from fer_models.predict import Scorer

    return Scorer(("calm", "happy"), lambda faces: np.tile(np.float32([0.25, 0.75]), (len(faces), 1)), "fake")


def test_case5_annotate_into_an_input_folder_is_refused(ds: Path, tmp_path: Path) -> None:
    from fer_models.cli import main as fer_main

    before = snapshot(tmp_path)
    for annotate in (ds, ds / "sub", tmp_path):  # the input folder, inside it, holding it
        result = CliRunner().invoke(fer_main, ["predict", str(ds), "--annotate", str(annotate),
                                               "--weights", "no-such-weights"])  # refused before any model loads
        assert result.exit_code != 0 and "--annotate" in result.output, result.output
        assert "no-such-weights" not in result.output
    from fer_models.predict import predict_paths

    with pytest.raises(PathError, match="inside the input folder"):
        predict_paths([ds], _fake_scorer(), aligned=True, annotate=ds / "sub", progress=False)
    assert snapshot(tmp_path) == before


def test_case5_annotate_never_replaces_a_file_it_did_not_make(ds: Path, tmp_path: Path) -> None:
    from fer_models.predict import predict_paths

    ann = tmp_path / "ann"
    mine = picture(ann / "a.annotated.png", 9)  # the user's own file, with the name predict would write
    before = snapshot(tmp_path)
    with pytest.raises(PathError, match="a.annotated.png exists and was not written by this tool"):
        predict_paths([ds], _fake_scorer(), aligned=True, annotate=ann, progress=False)
    assert snapshot(tmp_path) == before
    mine.unlink()
    from fer_models.predict import ANNOTATED_RECORD

    records = predict_paths([ds], _fake_scorer(), aligned=True, annotate=ann, progress=False)
    assert [r.label for r in records] == ["happy", "happy"]
    record = json.loads((ann / ANNOTATED_RECORD).read_text())
    assert sorted(record["files"]) == ["a.annotated.png", "sub/b.annotated.png"]
    predict_paths([ds], _fake_scorer(), aligned=True, annotate=ann, progress=False)  # a rerun replaces its own files
    picture(ann / "a.annotated.png", 7)  # ... but not one the user changed since
    changed = snapshot(tmp_path)
    with pytest.raises(PathError, match="not written by this tool"):
        predict_paths([ds], _fake_scorer(), aligned=True, annotate=ann, progress=False)
    assert snapshot(tmp_path) == changed


def test_predict_output_is_checked_before_the_model_loads(ds: Path, tmp_path: Path) -> None:
    from fer_models.predict import check_predict_outputs

    before = snapshot(tmp_path)
    with pytest.raises(PathError, match="overwrite"):
        check_predict_outputs([ds / "a.png"], output=ds / "a.png")
    with pytest.raises(PathError, match="inside the input folder"):
        check_predict_outputs([ds], output=ds / "predictions.csv")  # a rerun would read it as an input
    with pytest.raises(PathError, match="one of the --annotate pictures"):
        check_predict_outputs([ds], output=tmp_path / "ann" / "a.annotated.png", annotate=tmp_path / "ann")
    a, b = picture(tmp_path / "p" / "x.png", 1), picture(tmp_path / "q" / "x.png", 2)
    with pytest.raises(PathError, match="would both write"):
        check_predict_outputs([a, b], annotate=tmp_path / "ann")
    assert {k: v for k, v in snapshot(tmp_path).items() if k in before} == before


# ---------------------------------------------------------------- case 6: outputs that are not regular files
def _special(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"special.{kind}"
    if kind == "symlink":
        (tmp_path / "elsewhere.csv").write_text("keep me\n")
        path.symlink_to(tmp_path / "elsewhere.csv")
    elif kind == "dangling":
        path.symlink_to(tmp_path / "nowhere.csv")
    else:
        os.mkfifo(path)
    return path


@pytest.mark.parametrize("kind", ["symlink", "dangling", "fifo"])
def test_case6_atomic_write_never_replaces_a_special_file(tmp_path: Path, kind: str) -> None:
    path = _special(tmp_path, kind)
    before = snapshot(tmp_path)
    with pytest.raises(PathError, match=f"{path.name} is a (symlink|FIFO)"):
        with atomic_write(path) as tmp:
            tmp.write_text("x")
    assert snapshot(tmp_path) == before  # the link / FIFO is still there, no temporary file left


def test_case6_a_special_file_appearing_during_the_write_is_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    with pytest.raises(PathError, match="is a FIFO"):
        with atomic_write(path) as tmp:
            tmp.write_text("x")
            os.mkfifo(path)
    assert describe(path) == "a FIFO" and list(tmp_path.iterdir()) == [path]


def test_case6_devices_and_folders_are_refused() -> None:
    assert describe(os.devnull) == "a character device"
    with pytest.raises(PathError, match="is a character device"):
        check_write_target(os.devnull, "-o")
    with pytest.raises(PathError, match="is a folder"):
        check_write_target(Path.cwd(), "-o")


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
@pytest.mark.parametrize("role", ["-o", "--metadata"])
def test_case6_build_smfer_refuses_special_outputs_before_any_work(fer_csv: Path, tmp_path: Path, kind: str,
                                                                   role: str) -> None:
    path = _special(tmp_path, kind)
    args = ["build-smfer", fer_csv, "-o", path if role == "-o" else tmp_path / "o.csv", "--quiet"]
    if role == "--metadata":
        args += ["--metadata", path]
    before = snapshot(tmp_path)
    refused(run_maskgen(*args), role, path.name, "symlink" if kind == "symlink" else "FIFO")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_case6_folder_outputs_refuse_special_files_among_their_targets(ds: Path, tmp_path: Path, kind: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    special = _special(tmp_path, kind)
    os.rename(special, out / "a.png")  # the picture mask-image / build-smfer would write
    before = snapshot(tmp_path)
    refused(run_maskgen("mask-image", ds, "-o", out), "a.png", "symlink" if kind == "symlink" else "FIFO")
    refused(run_maskgen("build-smfer", ds, "-o", out, "--quiet"), "a.png")
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------- the checks themselves
def test_check_outputs_between_outputs(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("x")
    inputs = [("input", tmp_path / "in.csv")]
    check_outputs(inputs, [Output("-o", tmp_path / "o.csv"), Output("--annotate", tmp_path / "ann", folder=True),
                           Output("report", tmp_path / "ann" / "r.csv")])  # a file in an output folder: fine
    with pytest.raises(PathError, match="overlap"):
        check_outputs(inputs, [Output("--out", tmp_path / "a", folder=True), Output("--annotate", tmp_path / "a" / "b",
                                                                                      folder=True)])
    (tmp_path / "file").write_text("x")
    with pytest.raises(PathError, match="is a regular file, not a folder"):
        check_outputs(inputs, [Output("--out", tmp_path / "file", folder=True)])


def test_check_targets(tmp_path: Path) -> None:
    a = picture(tmp_path / "a" / "x.png")
    check_targets([(a, tmp_path / "o" / "x.png"), (a, tmp_path / "o" / "x.png")])  # one source twice: no clash
    with pytest.raises(PathError, match="is the input"):
        check_targets([(a, a)])
    (tmp_path / "o").mkdir()
    picture(tmp_path / "o" / "x.png", 5)
    check_targets([(a, tmp_path / "o" / "x.png")])  # replacing an earlier output is the caller's call
    with pytest.raises(PathError, match="not written by this tool"):
        check_targets([(a, tmp_path / "o" / "x.png")], may_replace=lambda p: False)
