"""Using a trained model: ONNX export, predict on photos / CSVs, attention maps (shipped weights, shipped faces)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("skimage")

from click.testing import CliRunner  # noqa: E402

from fer_models.cli import main as cli  # noqa: E402
from fer_models.export import MAX_ABS_DIFF, OnnxClassifier, export_onnx, quantize_int8, shipped_faces  # noqa: E402
from fer_models.predict import Scorer, format_records, predict_paths  # noqa: E402
from fer_models.pretrained import load_weights  # noqa: E402
from maskgen.cli_errors import EXIT_PARTIAL  # noqa: E402
from maskgen.dataset import EMOTIONS  # noqa: E402


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "fer2013.onnx"
    export_onnx(load_weights("fer2013"), path, source_sha256="test")
    return path


def test_export_matches_pytorch_on_256_real_faces(onnx_path: Path) -> None:
    import torch

    from fer_models.export import max_abs_diff

    faces = shipped_faces(256)
    assert faces.shape == (256, 48, 48) and len({f.tobytes() for f in faces}) == 256
    model = load_weights("fer2013").build_model()
    diff = max_abs_diff(model, onnx_path, faces)
    assert diff <= MAX_ABS_DIFF
    # the comparison is not vacuous: a perturbed model is caught
    with torch.no_grad():
        model.head.bias.add_(1e-2)
    assert max_abs_diff(model, onnx_path, faces[:8]) > MAX_ABS_DIFF


def test_export_folds_batchnorm_and_stores_preprocessing(onnx_path: Path) -> None:
    proto = onnx.load(str(onnx_path))
    assert not [n for n in proto.graph.node if n.op_type == "BatchNormalization"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["fer_models.class_names"]) == list(EMOTIONS)
    spec = json.loads(meta["fer_models.input"])
    assert spec["shape"] == ["batch", 1, 48, 48] and spec["scale"] == pytest.approx(2 / 255) and spec["offset"] == -1
    clf = OnnxClassifier(onnx_path)
    faces = shipped_faces(7)
    p1, p7 = clf.probabilities(faces[:1]), clf.probabilities(faces)  # dynamic batch
    assert p7.shape == (7, 7) and np.allclose(p7.sum(1), 1, atol=1e-5)
    assert np.allclose(p1[0], p7[0], atol=1e-5)


def test_int8_copy_runs_and_keeps_most_labels(onnx_path: Path, tmp_path: Path) -> None:
    faces = shipped_faces(256)
    q = quantize_int8(onnx_path, tmp_path / "m.int8.onnx", faces[:128])
    a, b = OnnxClassifier(onnx_path), OnnxClassifier(q)
    assert b.class_names == a.class_names
    agree = np.mean(a.logits(faces).argmax(1) == b.logits(faces).argmax(1))
    assert agree > 0.8, agree


def _astronaut(tmp_path: Path) -> Path:
    from skimage import data

    from maskgen.io import write_image

    return write_image(tmp_path / "astronaut.png", data.astronaut())


def test_predict_finds_the_astronaut_and_reports_a_flat_image(tmp_path: Path) -> None:
    from maskgen.io import write_image

    photo = _astronaut(tmp_path)
    flat = write_image(tmp_path / "flat.png", np.full((120, 160), 128, np.uint8))
    scorer = Scorer.from_checkpoint(load_weights("fer2013"))
    records = predict_paths([photo, flat], scorer, annotate=tmp_path / "ann", progress=False)
    faces = [r for r in records if r.file == str(photo)]
    assert len(faces) == 1 and faces[0].status == "ok"
    face = faces[0]
    assert face.label in EMOTIONS and sum(face.probabilities.values()) == pytest.approx(1, abs=1e-5)
    left, top, right, bottom = face.box
    assert 150 < (left + right) / 2 < 290 and 40 < (top + bottom) / 2 < 200  # her face, not elsewhere
    [none] = [r for r in records if r.file == str(flat)]
    assert none.status == "no_face" and none.label is None
    assert (tmp_path / "ann" / "astronaut.annotated.png").is_file()
    text = format_records(records, scorer.class_names)
    assert text.splitlines()[0].startswith("file,row,face,status") and "no_face" in text


def test_onnx_and_checkpoint_predict_alike_on_a_csv(tmp_path: Path, onnx_path: Path) -> None:
    from conftest import fer_csv_text

    faces = shipped_faces(40)
    csv_path = tmp_path / "faces.csv"
    csv_path.write_text(fer_csv_text(faces, [i % 7 for i in range(40)], ["PrivateTest"] * 40))
    a = predict_paths([csv_path], Scorer.from_checkpoint(load_weights("fer2013"), tta="none", amp="none"),
                      progress=False)
    b = predict_paths([csv_path], Scorer.from_onnx(onnx_path), progress=False)
    assert [r.row for r in a] == list(range(40)) and a[3].true_label == EMOTIONS[3]
    pa = np.array([[r.probabilities[n] for n in EMOTIONS] for r in a])
    pb = np.array([[r.probabilities[n] for n in EMOTIONS] for r in b])
    assert np.abs(pa - pb).max() < 1e-4


def test_cli_export_and_predict(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "m.onnx"
    result = runner.invoke(cli, ["export", "--weights", "fer2013", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "verified on 256 faces" in result.output
    photo = _astronaut(tmp_path)
    result = runner.invoke(cli, ["predict", str(photo), "--onnx", str(out), "--format", "jsonl", "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert len(rows) == 1 and rows[0]["status"] == "ok"
    result = runner.invoke(cli, ["predict", str(photo), "--onnx", str(out), "--weights", "fer2013"])
    assert result.exit_code != 0 and "one of" in result.output


def test_explain_draws_attention_and_measures_shares(tmp_path: Path) -> None:
    from fer_models.explain import attention_shares, explain_rows, plot_explanations, read_sidecar_params
    from maskgen.demo import demo_table
    from maskgen.dataset import write_fer_csv
    from maskgen.smfer import build_smfer

    fer_path = tmp_path / "lfw.csv"
    write_fer_csv(fer_path, demo_table(24))
    masked = tmp_path / "lfw_masked.csv"
    build_smfer(fer_path, masked, jobs=1, progress=False)
    from maskgen.dataset import read_fer_csv

    fer, smfer = read_fer_csv(fer_path), read_fer_csv(masked)
    params = read_sidecar_params(masked, len(fer))
    rows = [k for k, p in enumerate(params) if p is not None][:4]
    model = load_weights("mfer2013").build_model()
    explained = explain_rows(model, EMOTIONS, fer.images, smfer.images, fer.emotion, params, rows)
    e = explained["masked"][0]
    assert set(e.maps) == {"block 1", "block 2", "block 3", "block 4"}
    assert e.gradcam.shape == (48, 48) and 0 <= e.gradcam.min() and e.gradcam.max() == pytest.approx(1)
    assert 0 <= e.mask_share <= 1 and 0 <= e.eye_share <= 1
    assert plot_explanations(explained, tmp_path / "a.png").stat().st_size > 10_000
    shares = attention_shares(model, fer.images, smfer.images, params, rows)
    assert shares["masked"]["faces"] == 4 and 0.1 < shares["masked"]["mask_area"] < 0.7
    result = CliRunner().invoke(cli, ["explain", "--weights", "mfer2013", "--data", str(fer_path), "--masked",
                                      str(masked), "--subset", "all", "-n", "2", "-o", str(tmp_path / "b.png")])
    assert result.exit_code == 0, result.output
    assert "Grad-CAM in the mask region" in result.output and (tmp_path / "b.png").is_file()


def test_predict_one_bad_picture_is_one_row_and_the_rest_are_scored(tmp_path: Path) -> None:
    """#28 case 7: a 1x1 picture made predict exit 1 with nothing written; a decompression bomb gave a traceback."""
    import hashlib

    import cv2

    from maskgen.io import write_image
    from conftest import bomb_png

    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a_tiny.png"), np.zeros((1, 1), np.uint8))
    bomb_png(src / "b_bomb.png")
    _astronaut(src)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.iterdir()}
    scorer = Scorer(tuple(EMOTIONS), lambda faces: np.full((len(faces), 7), 1 / 7, np.float32), "uniform")
    records = predict_paths([src], scorer, progress=False)
    status = {Path(r.file).name: r.status for r in records}
    assert status == {"a_tiny.png": "error", "b_bomb.png": "too_large", "astronaut.png": "ok"}
    out = tmp_path / "p.csv"
    result = CliRunner().invoke(cli, ["predict", str(src), "--weights", "fer2013", "-o", str(out), "--no-progress"])
    assert result.exit_code == EXIT_PARTIAL, result.output  # written, and the exit status says some pictures failed
    text = out.read_text()
    assert "too_large" in text and ",error," in text and ",ok," in text
    assert "1 too large" in result.output and "1 failed" in result.output
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.iterdir()} == before


def _onnx_with_class_names(src: Path, dst: Path, value: str) -> Path:
    proto = onnx.load(str(src))
    for entry in proto.metadata_props:
        if entry.key == "fer_models.class_names":
            entry.value = value
    onnx.save(proto, str(dst))
    return dst


@pytest.mark.parametrize("kind, message", [
    ("random", "not a readable ONNX model"),
    ("truncated", "not a readable ONNX model"),
    ("empty", "not a readable ONNX model"),
    ("two-classes", "lists 2 classes but the model outputs 7 logits"),
    ("not-json", "class_names metadata is not a list of distinct names"),
])
def test_predict_with_a_bad_onnx_file_is_one_line(tmp_path: Path, onnx_path: Path, kind: str, message: str) -> None:
    """A random or truncated ONNX file, or metadata whose class list does not fit the model: exit 2, one line
    naming the file (no onnxruntime traceback, no wrong labels)."""
    bad = tmp_path / f"{kind}.onnx"
    data = onnx_path.read_bytes()
    if kind == "random":
        bad.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        bad.write_bytes(b"")
    else:
        _onnx_with_class_names(onnx_path, bad, json.dumps(["a", "b"]) if kind == "two-classes" else "[oops")
    faces = tmp_path / "faces.csv"
    faces.write_text("emotion,pixels\n0," + " ".join(["128"] * 48 * 48) + "\n")
    result = CliRunner().invoke(cli, ["predict", str(faces), "--onnx", str(bad), "--no-progress"])
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stderr == f"fer-models: error: {bad}: " + result.stderr.split(f"{bad}: ", 1)[1]
    assert message in result.stderr and result.stderr.count("\n") == 1 and "Traceback" not in result.output


def test_quantize_refuses_too_few_calibration_faces(onnx_path: Path, tmp_path: Path) -> None:
    from fer_models.export import MIN_CALIBRATION

    with pytest.raises(ValueError, match=f"at least {MIN_CALIBRATION} faces, got 3"):
        quantize_int8(onnx_path, tmp_path / "q.onnx", shipped_faces(3))
    assert not (tmp_path / "q.onnx").exists()


def test_export_int8_failure_leaves_no_float_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The float model is renamed into place only once the int8 copy exists: a failing int8 step leaves
    neither file (before, the float file stayed behind)."""
    import fer_models.export as export

    def broken(*args, **kwargs):
        raise ValueError("int8 step failed (simulated)")

    monkeypatch.setattr(export, "quantize_int8", broken)
    calib = tmp_path / "calib.csv"
    rows = ["emotion,pixels,Usage"] + [f"{i % 7}," + " ".join(["100"] * 48 * 48) + ",Training" for i in range(20)]
    calib.write_text("\n".join(rows) + "\n")
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(cli, ["export", "--weights", "fer2013", "-o", str(out), "--int8", str(calib),
                                      "--check", str(calib), "--check-rows", "4"])
    assert result.exit_code == 2 and "int8 step failed" in result.stderr, (result.output, result.exception)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.csv"]
