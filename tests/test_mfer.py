"""Tests for maskgen.mfer: mixing, balancing counts, input checks, output format, determinism."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from maskgen.cli import main
from maskgen.dataset import read_fer_csv
from maskgen.io import build_id, dataset_build, file_sha256
from maskgen.mfer import build_mfer, check_inputs, default_output, manifest_path, select_rows
from conftest import fer_csv_text, random_faces

# (usage, label, count): Training has classes 0 (4 rows), 1 (2), 3 (3); PublicTest 0 (2), 1 (1);
# PrivateTest 0 (1), 2 (2).
LAYOUT = [("Training", 0, 4), ("Training", 1, 2), ("Training", 3, 3), ("PublicTest", 0, 2),
          ("PublicTest", 1, 1), ("PrivateTest", 0, 1), ("PrivateTest", 2, 2)]
UNCHANGED = (0,)  # row 0 (Training, class 0) was not masked by SMFER


def _layout() -> tuple[np.ndarray, np.ndarray]:
    labels = np.concatenate([[c] * k for _, c, k in LAYOUT]).astype(np.int64)
    usage = np.array(sum([[u] * k for u, _, k in LAYOUT], []), dtype=object)
    order = np.random.default_rng(1).permutation(labels.size)  # interleave rows
    return labels[order], usage[order]


def _masked_copy(images: np.ndarray, unchanged=UNCHANGED) -> np.ndarray:
    out = images.copy()
    out[:, 28:, 8:40] = 200  # a "mask" on the lower face
    for i in unchanged:
        out[i] = images[i]
    return out


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    labels, usage = _layout()
    images = random_faces(labels.size, seed=4)
    fer = tmp_path / "fer2013.csv"
    smfer = tmp_path / "smfer2013.csv"
    fer.write_text(fer_csv_text(images, labels, list(usage)))
    smfer.write_text(fer_csv_text(_masked_copy(images), labels, list(usage)))
    return fer, smfer


def _cells(source: np.ndarray, masked: np.ndarray, labels: np.ndarray, usage: np.ndarray) -> dict:
    cells: dict = {}
    for s, m in zip(source, masked):
        key = (usage[s], int(labels[s]), int(m))
        cells[key] = cells.get(key, 0) + 1
    return cells


def test_select_rows_pairs_equal_masked_and_unmasked():
    labels, usage = _layout()
    ok = np.ones(labels.size, bool)
    ok[list(UNCHANGED)] = False
    source, masked = select_rows(labels, usage, ok, balance="pairs")
    assert source.size == 2 * (labels.size - 1)
    assert 0 not in source.tolist()
    cells = _cells(source, masked, labels, usage)
    expected = {("Training", 0): 3, ("Training", 1): 2, ("Training", 3): 3, ("PublicTest", 0): 2,
                ("PublicTest", 1): 1, ("PrivateTest", 0): 1, ("PrivateTest", 2): 2}
    for (u, c), k in expected.items():
        assert cells[(u, c, 0)] == k and cells[(u, c, 1)] == k
    assert len(cells) == 2 * len(expected)
    # ordered by (source, masked)
    assert np.all(np.diff(source * 2 + masked) > 0)


def test_select_rows_none_keeps_every_unmasked_row():
    labels, usage = _layout()
    ok = np.ones(labels.size, bool)
    ok[list(UNCHANGED)] = False
    source, masked = select_rows(labels, usage, ok, balance="none")
    assert int((masked == 0).sum()) == labels.size
    assert int((masked == 1).sum()) == labels.size - 1
    assert source[masked == 1].tolist() == [i for i in range(labels.size) if i not in UNCHANGED]


@pytest.mark.parametrize("classes, training, public, private", [
    ("undersample", 2, 1, 1),   # smallest class per Usage (Training: class 1 has 2 sources)
    ("oversample", 3, 2, 2),    # largest class per Usage (Training 0 has 3 usable sources)
])
def test_select_rows_class_balancing(classes, training, public, private):
    labels, usage = _layout()
    ok = np.ones(labels.size, bool)
    ok[list(UNCHANGED)] = False
    source, masked = select_rows(labels, usage, ok, balance="pairs", classes=classes, seed=7)
    cells = _cells(source, masked, labels, usage)
    want = {"Training": (training, (0, 1, 3)), "PublicTest": (public, (0, 1)), "PrivateTest": (private, (0, 2))}
    for u, (k, classes_present) in want.items():
        for c in classes_present:
            assert cells[(u, c, 0)] == k and cells[(u, c, 1)] == k, (u, c)
    assert len(cells) == 2 * 7
    again = select_rows(labels, usage, ok, balance="pairs", classes=classes, seed=7)
    assert np.array_equal(again[0], source) and np.array_equal(again[1], masked)
    assert all(ok[s] for s in source)  # never a source without a masked copy in pairs mode
    if classes == "undersample":
        assert np.unique(np.stack([source, masked], 1), axis=0).shape[0] == source.size  # no repeats


def test_build_mfer_file(pair, tmp_path):
    fer_path, smfer_path = pair
    out = tmp_path / "mfer.csv"
    report = build_mfer(fer_path, smfer_path, out, seed=0)
    fer, smfer, mfer = read_fer_csv(fer_path), read_fer_csv(smfer_path), read_fer_csv(out)
    assert mfer.columns == ["emotion", "pixels", "Usage", "source", "masked"]
    assert len(mfer) == report.rows == 2 * (len(fer) - 1)
    source = np.array(mfer.extra["source"], dtype=np.int64)
    masked = np.array(mfer.extra["masked"], dtype=np.int64)
    assert np.array_equal(mfer.emotion, fer.emotion[source])
    assert np.array_equal(mfer.usage, fer.usage[source])
    assert np.array_equal(mfer.images[masked == 0], fer.images[source[masked == 0]])
    assert np.array_equal(mfer.images[masked == 1], smfer.images[source[masked == 1]])
    assert report.smfer_unchanged_rows == 1
    manifest = json.loads(manifest_path(out).read_text())
    assert manifest["balance"] == "pairs" and manifest["rows"] == report.rows
    assert manifest["counts"]["Training"]["angry"] == {"unmasked": 3, "masked": 3}
    assert manifest["smfer_unchanged_per_class"]["angry"] == 1
    assert "balance_rule" in manifest and manifest["fer_sha256"]
    # the inputs are named by their bytes here (no manifest beside them); the output by its sha256
    assert manifest["build"]["inputs"] == {"fer": {"sha256": manifest["fer_sha256"]},
                                           "smfer": {"sha256": manifest["smfer_sha256"]}}
    assert manifest["build"]["options"] == {"seed": 0, "balance": "pairs", "classes": "none"}
    assert manifest["output_sha256"] == file_sha256(out) and dataset_build(out) == manifest["build_id"]
    # an SMFER2013 that maskgen made is named by its build id: a rebuild on another CPU names the same recipe
    smfer_build = {"tool": "maskgen build-smfer", "options": {"seed": 0}}
    manifest_path(smfer_path).write_text(json.dumps({"build": smfer_build, "output_sha256": file_sha256(smfer_path)}))
    build_mfer(fer_path, smfer_path, out, seed=0)
    named = json.loads(manifest_path(out).read_text())["build"]["inputs"]["smfer"]
    assert named == {"build_id": build_id(smfer_build)}
    manifest_path(smfer_path).unlink()
    # deterministic
    first = out.read_bytes()
    build_mfer(fer_path, smfer_path, out, seed=0)
    assert out.read_bytes() == first
    assert not list(tmp_path.glob("*.part"))


def test_build_mfer_oversample_seed_changes_choice(pair, tmp_path):
    fer_path, smfer_path = pair
    a = build_mfer(fer_path, smfer_path, tmp_path / "a.csv", seed=0, classes="oversample")
    texts = {(tmp_path / "a.csv").read_text()}
    for seed in range(1, 6):
        build_mfer(fer_path, smfer_path, tmp_path / "b.csv", seed=seed, classes="oversample")
        texts.add((tmp_path / "b.csv").read_text())
    assert len(texts) > 1
    assert a.counts["PrivateTest"]["disgust"] == {"unmasked": 0, "masked": 0}
    assert a.counts["PrivateTest"]["fear"] == {"unmasked": 2, "masked": 2}


def _write(path: Path, images, labels, usage) -> Path:
    path.write_text(fer_csv_text(images, labels, usage))
    return path


def test_mismatched_inputs_are_rejected(tmp_path):
    images = random_faces(6, seed=1)
    labels = [0, 1, 2, 3, 4, 5]
    usage = ["Training"] * 4 + ["PublicTest", "PrivateTest"]
    fer = _write(tmp_path / "fer.csv", images, labels, usage)
    cases = {
        "row counts differ": (images[:5], labels[:5], usage[:5]),
        "labels differ in 1 row.*line 4": (images, [0, 1, 0, 3, 4, 5], usage),
        "Usage differs in 1 row.*line 7": (images, labels, usage[:5] + ["PublicTest"]),
        "has a Usage column but": (images, labels, None),
    }
    for k, (msg, (im, lab, us)) in enumerate(cases.items()):
        sm = _write(tmp_path / f"sm{k}.csv", _masked_copy(np.asarray(im), ()), lab, us)
        with pytest.raises(ValueError, match=msg):
            build_mfer(fer, sm, tmp_path / "out.csv")
        assert not (tmp_path / "out.csv").exists()
    mfer_like = tmp_path / "mfer_in.csv"
    mfer_like.write_text(fer_csv_text(images, labels, usage, extra={"source": [str(i) for i in range(6)]}))
    with pytest.raises(ValueError, match="already has column"):
        check_inputs(read_fer_csv(mfer_like), read_fer_csv(fer))
    with pytest.raises(ValueError, match="overwrite"):
        build_mfer(fer, fer, fer)
    with pytest.raises(ValueError, match="unknown balance"):
        build_mfer(fer, fer, tmp_path / "x.csv", balance="equal")


def test_cli_build_mfer(pair, tmp_path):
    fer_path, smfer_path = pair
    out = tmp_path / "cli.csv"
    result = CliRunner().invoke(main, ["build-mfer", str(fer_path), str(smfer_path), "-o", str(out),
                                       "--classes", "undersample"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and out.exists()
    bad = tmp_path / "bad.csv"
    bad.write_text(fer_csv_text(random_faces(3), [0, 1, 2], ["Training"] * 3))
    result = CliRunner().invoke(main, ["build-mfer", str(fer_path), str(bad), "-o", str(tmp_path / "o.csv")])
    assert result.exit_code == 2
    assert "row counts differ" in result.output


def test_default_output_names():
    assert default_output("/d/fer2013.csv.gz") == Path("/d/mfer2013.csv")
    assert default_output("x.csv") == Path("x_mfer.csv")
    assert manifest_path("/d/m.csv") == Path("/d/m.manifest.json")


# ---------------------------------------------------------------- #28 case 9: the roles of the two files
def _checksums(*paths: Path) -> dict[str, str]:
    return {str(p): file_sha256(p) for p in paths}


def _refused(args: list[str], *inputs: Path, match: str, out: Path) -> None:
    before = _checksums(*inputs)
    result = CliRunner().invoke(main, ["build-mfer", *map(str, args), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert match in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists() and not manifest_path(out).exists()
    assert _checksums(*inputs) == before


def test_same_file_or_same_bytes_is_refused(pair, tmp_path):
    """#28 case 9: build-mfer a.csv a.csv wrote an empty MFER2013 and exited 0."""
    fer, _ = pair
    out = tmp_path / "o.csv"
    _refused([fer, fer], fer, match="the same file", out=out)
    copy = tmp_path / "copy.csv"
    copy.write_bytes(fer.read_bytes())
    _refused([fer, copy], fer, copy, match="the same bytes", out=out)
    labels, usage = _layout()
    quoted = tmp_path / "quoted.csv"  # other bytes, the same images
    quoted.write_text(fer_csv_text(random_faces(labels.size, seed=4), labels, list(usage), quoted=True))
    _refused([fer, quoted], fer, quoted, match="the same images", out=out)


def test_swapped_files_are_refused_from_the_pixels(pair, tmp_path):
    """#28 case 9: build-mfer SMFER FER succeeded with the masked flag inverted on every row."""
    fer, smfer = pair
    _refused([smfer, fer], fer, smfer, match=f"swap them: maskgen build-mfer {fer} {smfer}", out=tmp_path / "o.csv")
    assert build_mfer(fer, smfer, tmp_path / "right.csv").rows > 0  # the right order still builds


def test_swapped_files_are_refused_from_the_manifest(tmp_path):
    """With a build-smfer manifest beside SMFER, its record decides (here too few rows differ for the pixels)."""
    labels, usage = _layout()
    images = random_faces(labels.size, seed=4)
    fer = _write(tmp_path / "fer.csv", images, labels, list(usage))
    smfer = _write(tmp_path / "smfer.csv", _masked_copy(images, unchanged=range(3, labels.size)), labels, list(usage))
    manifest_path(smfer).write_text(json.dumps({"tool": "maskgen build-smfer", "output_sha256": file_sha256(smfer),
                                                "input_sha256": file_sha256(fer)}))
    _refused([smfer, fer], fer, smfer, match=f"built from {fer}", out=tmp_path / "o.csv")
    assert build_mfer(fer, smfer, tmp_path / "right.csv").sources == 3
