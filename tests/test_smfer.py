"""build-smfer end to end: determinism across workers and runs, outputs, bad input, CLI."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import fer_csv_text
from maskgen.cli import main
from maskgen.dataset import read_fer_csv, write_fer_csv
from maskgen.demo import demo_table
from maskgen.parallel import chunk_ranges, gather_rows, map_chunks
from maskgen.pipeline import SIDECAR_COLUMNS, BuildConfig
from maskgen.smfer import build_smfer, default_output, expected_build_id, sidecar_paths

N_ROWS = 12


@pytest.fixture(scope="module")
def lfw_csv(tmp_path_factory) -> Path:
    """12 real faces (scikit-image's LFW crops at 48x48) in FER2013 format."""
    path = tmp_path_factory.mktemp("lfw") / "fer2013.csv"
    write_fer_csv(path, demo_table(N_ROWS))
    return path


@pytest.fixture(scope="module")
def built(lfw_csv: Path, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("builds")
    runs = {
        "j1": (1, 0, 5),   # (jobs, seed, chunk size)
        "j2": (2, 0, 3),
        "again": (1, 0, 12),
        "seed1": (1, 1, 5),
    }
    paths = {}
    for name, (jobs, seed, chunk) in runs.items():
        paths[name] = out / f"{name}.csv"
        build_smfer(lfw_csv, paths[name], config=BuildConfig(seed=seed), jobs=jobs, chunk_size=chunk, progress=False)
    return paths


def test_same_seed_is_byte_identical_for_any_jobs_and_chunking(built: dict[str, Path]) -> None:
    ref = built["j1"].read_bytes()
    assert built["j2"].read_bytes() == ref
    assert built["again"].read_bytes() == ref
    meta = [sidecar_paths(built[k])[0].read_bytes() for k in ("j1", "j2", "again")]
    assert meta[0] == meta[1] == meta[2]


def test_different_seed_gives_different_masks(built: dict[str, Path]) -> None:
    a, b = read_fer_csv(built["j1"]).images, read_fer_csv(built["seed1"]).images
    differing_rows = (a != b).reshape(len(a), -1).any(axis=1)
    assert differing_rows.sum() >= N_ROWS // 2


def test_output_keeps_rows_labels_usage_and_masks_every_face(lfw_csv: Path, built: dict[str, Path]) -> None:
    src, out = read_fer_csv(lfw_csv), read_fer_csv(built["j1"])
    assert len(out) == len(src) and out.columns == src.columns
    assert np.array_equal(out.emotion, src.emotion) and np.array_equal(out.usage, src.usage)
    changed = (out.images != src.images).reshape(len(src), -1).any(axis=1)
    assert changed.all(), "every face should carry a mask"
    # the lower half of the face changes much more than the upper half (mask over nose and mouth)
    diff = np.abs(out.images.astype(int) - src.images.astype(int))
    assert diff[:, 30:, :].mean() > 3 * diff[:, :16, :].mean()


def test_sidecar_and_manifest(built: dict[str, Path]) -> None:
    meta_path, manifest_path = sidecar_paths(built["j1"])
    with open(meta_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0].keys()) == SIDECAR_COLUMNS
    assert [int(r["row_id"]) for r in rows] == list(range(N_ROWS))
    assert all(r["status"].startswith("masked") and r["mask"] and r["landmark_source"] for r in rows)
    manifest = json.loads(manifest_path.read_text())
    assert manifest["seed"] == 0 and manifest["rows"] == N_ROWS
    assert sum(manifest["status_counts"].values()) == N_ROWS
    assert set(manifest["timings_s"]) >= {"read", "mask", "write", "total"}
    assert manifest["machine"]["numpy_simd"] and "byte-identical" in manifest["determinism"]


def test_manifest_names_the_build_and_its_bytes(built: dict[str, Path], tmp_path: Path) -> None:
    """Builds of one recipe share a build id whatever the workers; the id is read back only for these bytes."""
    from maskgen.io import build_id, dataset_build, file_sha256

    manifests = {k: json.loads(sidecar_paths(p)[1].read_text()) for k, p in built.items()}
    ids = {k: m["build_id"] for k, m in manifests.items()}
    assert ids["j1"] == ids["j2"] == ids["again"] != ids["seed1"]
    assert ids["j1"] == build_id(manifests["j1"]["build"])
    assert manifests["j1"]["build"]["inputs"]["input"]["sha256"] == manifests["j1"]["input_sha256"]
    assert manifests["j1"]["output_sha256"] == file_sha256(built["j1"])
    assert dataset_build(built["j1"]) == ids["j1"]
    # the same file edited after its build (or a manifest of other bytes) names no build
    copy = tmp_path / "j1.csv"
    copy.write_bytes(built["j1"].read_bytes())
    sidecar_paths(copy)[1].write_text(sidecar_paths(built["j1"])[1].read_text())
    assert dataset_build(copy) == ids["j1"]
    table = read_fer_csv(copy)
    images = table.images.copy()
    images[0, 0, 0] ^= 1  # one pixel, one gray level
    write_fer_csv(copy, table, images)
    assert dataset_build(copy) is None
    assert dataset_build(tmp_path / "no_manifest.csv") is None


def test_expected_build_id_names_the_build_before_it_is_made(lfw_csv: Path, built: dict[str, Path]) -> None:
    """What a build will record is known without building: an existing output with that id can be kept."""
    from maskgen.io import dataset_build

    assert expected_build_id(lfw_csv, BuildConfig(seed=0)) == dataset_build(built["j1"])
    assert expected_build_id(lfw_csv, BuildConfig(seed=1)) == dataset_build(built["seed1"])
    assert expected_build_id(lfw_csv, BuildConfig(seed=0, styles=("classic",))) == dataset_build(built["j1"])
    assert expected_build_id(lfw_csv, BuildConfig(seed=0, styles=("flat_hard",))) != dataset_build(built["j1"])


def test_default_output_names(tmp_path: Path) -> None:
    assert default_output(tmp_path / "fer2013.csv.gz") == tmp_path / "smfer2013.csv"
    assert default_output(tmp_path / "faces.csv") == tmp_path / "faces_masked.csv"
    assert sidecar_paths(tmp_path / "smfer2013.csv") == (tmp_path / "smfer2013.meta.csv",
                                                         tmp_path / "smfer2013.manifest.json")


def test_gather_rows_reassembles_out_of_order_chunks() -> None:
    def work(a: int, b: int):
        ids = np.arange(a, b)
        return ids, np.full((b - a, 2, 2), a, np.uint8), [{"row_id": int(i)} for i in ids]

    chunks = list(reversed(chunk_ranges(7, 3)))
    images, records = gather_rows(7, map_chunks(work, chunks, jobs=1), (2, 2))
    assert [r["row_id"] for r in records] == list(range(7))
    assert images[:, 0, 0].tolist() == [0, 0, 0, 3, 3, 3, 6]


def test_cli_bad_input_gives_one_line_error_and_no_output(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("emotion,pixels,Usage\n3," + "1 " * 100 + "1,Training\n")
    result = CliRunner().invoke(main, ["build-smfer", str(bad), "-o", str(tmp_path / "out.csv")])
    assert result.exit_code == 2
    assert "bad.csv, line 2: pixels: expected 2304 values" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_cli_unknown_mask_is_rejected_before_work(lfw_csv: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["build-smfer", str(lfw_csv), "-o", str(tmp_path / "o.csv"),
                                       "--masks", "surgical,nonexistent"])
    assert result.exit_code == 2 and "nonexistent" in result.output
    assert list(tmp_path.iterdir()) == []


def test_cli_builds_and_summarises(lfw_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    result = CliRunner().invoke(main, ["build-smfer", str(lfw_csv), "-o", str(out), "-j", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert f"wrote {out} ({N_ROWS} rows)" in result.output
    assert out.exists() and sidecar_paths(out)[0].exists() and sidecar_paths(out)[1].exists()


def test_interrupt_leaves_no_output(lfw_csv: Path, tmp_path: Path, monkeypatch) -> None:
    import maskgen.smfer as smfer

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(smfer, "mask_chunk", interrupted)
    result = CliRunner().invoke(main, ["build-smfer", str(lfw_csv), "-o", str(tmp_path / "o.csv"), "-j", "1"])
    assert result.exit_code == 130 and "interrupted" in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("quoted", [False, True])
def test_format_text_of_unmasked_rows_is_kept(tmp_path: Path, quoted: bool) -> None:
    """Rows whose image did not change are written byte-identical: a build that masks nothing
    (blank images, ``on_implausible="keep"``) reproduces its input file byte for byte."""
    images = np.zeros((3, 48, 48), np.uint8)
    text = fer_csv_text(images, [0, 1, 6], ["Training", "PublicTest", "PrivateTest"], newline="\r\n")
    if quoted:  # pixel field in quotes, as some FER2013 copies have it
        lines = text.split("\r\n")
        text = "\r\n".join([lines[0]] + [f'{ln.split(",")[0]},"{ln.split(",")[1]}",{ln.split(",")[2]}'
                                           for ln in lines[1:] if ln] + [""])
    src = tmp_path / "in.csv"
    src.write_bytes(text.encode())
    out = tmp_path / "out.csv"
    build_smfer(src, out, config=BuildConfig(on_implausible="keep"), jobs=1, progress=False)
    assert out.read_bytes() == src.read_bytes()


def test_api_registered_mask_reaches_workers(lfw_csv: Path, tmp_path: Path) -> None:
    """A mask registered through the Python API in this process is used by loky workers too."""
    import cv2

    from maskgen.masks import list_masks, register_mask, unregister_mask

    picture = np.zeros((160, 200, 4), np.uint8)
    cv2.ellipse(picture, (100, 80), (96, 76), 0, 0, 360, (200, 60, 60, 255), -1, cv2.LINE_AA)
    anchors = {"jaw_2": (12.0, 50.0), "jaw_14": (188.0, 50.0), "chin": (100.0, 150.0),
               "nose_bridge_1": (100.0, 8.0), "mouth_3": (100.0, 95.0)}
    register_mask("api_oval", picture, anchors)
    try:
        outs = []
        for jobs in (1, 2):
            out = tmp_path / f"j{jobs}.csv"
            report = build_smfer(lfw_csv, out, config=BuildConfig(masks=("api_oval", "surgical")), jobs=jobs,
                                 chunk_size=4, progress=False)
            assert report.status_counts["error"] == 0
            assert set(report.mask_counts) == {"api_oval", "surgical"}
            outs.append(out.read_bytes())
        assert outs[0] == outs[1]
        # a custom mask's content is not in the options: such a build names no recipe
        manifest = json.loads(sidecar_paths(out)[1].read_text())
        assert manifest["build"] is None and manifest["build_id"] is None and manifest["output_sha256"]
        from maskgen.io import dataset_build

        assert dataset_build(out) is None
    finally:
        if "api_oval" in list_masks():
            unregister_mask("api_oval")
