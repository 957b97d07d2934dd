"""maskgen.folders: image-folder datasets in and out, list files, resume after an interruption."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("skimage")

from maskgen import folders  # noqa: E402
from maskgen.cli import main  # noqa: E402
from maskgen.dataset import EMOTIONS  # noqa: E402
from maskgen.demo import demo_table  # noqa: E402
from maskgen.folders import build_folder, path_key, scan_folder  # noqa: E402
from maskgen.pipeline import BuildConfig, mask_face  # noqa: E402

N = 10


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """scikit-image's LFW crops (48x48 gray) as an ImageFolder tree: split/class/name.png."""
    root = tmp_path_factory.mktemp("folder") / "fer"
    table = demo_table(N)
    for i, img in enumerate(table.images):
        split = "train" if i < 7 else "test"
        path = root / split / EMOTIONS[i % 7] / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), img)
    return root


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and p.name != "smfer.manifest.json"}


def test_folder_build_masks_every_crop_like_the_csv_path(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = build_folder(image_folder, out, jobs=2, chunk_size=3, progress=False)
    assert report.images == N and report.status_counts.get("masked", 0) + report.status_counts.get(
        "masked_implausible", 0) == N
    items = scan_folder(image_folder)
    assert [i.split for i in items].count("train") == 7 and items[0].label in EMOTIONS
    rows = list(csv.DictReader(open(out / "smfer.meta.csv")))
    assert [r["path"] for r in rows] == [i.path for i in items]
    assert {r["label"] for r in rows} <= set(EMOTIONS) and rows[0]["split"] in ("test", "train")
    for item in items:  # each picture is masked exactly as mask_face masks it with the path's key
        src = cv2.imread(str(image_folder / item.path), cv2.IMREAD_UNCHANGED)
        expected = mask_face(src, path_key(item.path), BuildConfig()).image
        assert np.array_equal(cv2.imread(str(out / item.path), cv2.IMREAD_UNCHANGED), expected), item.path
    manifest = json.loads((out / "smfer.manifest.json").read_text())
    assert manifest["images"] == N and manifest["mode"] == "crop"
    assert not (out / folders.STATE_NAME).exists() and not (out / folders.PARTIAL_NAME).exists()


def test_same_output_for_any_jobs_and_chunks(image_folder: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    build_folder(image_folder, a, jobs=1, chunk_size=100, progress=False)
    build_folder(image_folder, b, jobs=2, chunk_size=2, progress=False)
    assert tree_bytes(a) == tree_bytes(b)


def test_resume_after_an_interruption_gives_the_same_folder(image_folder: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    straight = tmp_path / "straight"
    build_folder(image_folder, straight, jobs=1, chunk_size=3, progress=False)
    real = folders.map_chunks

    def interrupted(*args, **kw):  # two chunks finish, then Ctrl-C
        for k, result in enumerate(real(*args, **kw)):
            if k == 2:
                raise KeyboardInterrupt
            yield result

    monkeypatch.setattr(folders, "map_chunks", interrupted)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        build_folder(image_folder, out, jobs=1, chunk_size=3, progress=False)
    assert (out / folders.STATE_NAME).exists() and not (out / "smfer.meta.csv").exists()
    monkeypatch.setattr(folders, "map_chunks", real)
    with pytest.raises(ValueError, match="--resume"):
        build_folder(image_folder, out, jobs=1, chunk_size=3, progress=False)
    with pytest.raises(ValueError, match="different configuration"):
        build_folder(image_folder, out, config=BuildConfig(seed=1), jobs=1, chunk_size=3, progress=False, resume=True)
    report = build_folder(image_folder, out, jobs=1, chunk_size=3, progress=False, resume=True)
    assert report.resumed == 6 and tree_bytes(out) == tree_bytes(straight)


def test_list_file_and_bad_inputs(image_folder: Path, tmp_path: Path) -> None:
    items = scan_folder(image_folder)
    listing = tmp_path / "list.csv"
    listing.write_text("path,label\n" + "".join(f"{i.path},{i.label}\n" for i in items[:3]))
    out = tmp_path / "listed"
    assert build_folder(image_folder, out, list_file=listing, jobs=1, progress=False).images == 3
    bad = tmp_path / "bad.csv"
    bad.write_text(f"path,label\n{items[0].path},x\nmissing.png,y\n")
    with pytest.raises(ValueError, match="bad.csv, line 3: .*missing.png not found"):
        build_folder(image_folder, tmp_path / "o2", list_file=bad, progress=False)
    with pytest.raises(ValueError, match="inside it"):
        build_folder(image_folder, image_folder / "out", progress=False)


def test_cli_folder_and_photo_mode(image_folder: Path, tmp_path: Path) -> None:
    from skimage import data

    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "astronaut.jpg"), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(photos / "flat.png"), np.full((64, 64), 128, np.uint8))
    out = tmp_path / "photos_out"
    result = CliRunner().invoke(main, ["build-smfer", str(photos), "-o", str(out), "--photo", "--quiet", "-j", "1"])
    assert result.exit_code == 0, result.output
    rows = {r["path"]: r for r in csv.DictReader(open(out / "smfer.meta.csv"))}
    assert rows["flat.png"]["status"] == "no_face" and int(rows["astronaut.jpg"]["faces"]) >= 1
    no_out = CliRunner().invoke(main, ["build-smfer", str(image_folder), "--quiet"])
    assert no_out.exit_code == 2 and "-o OUT_DIR" in no_out.output


def test_fer_models_trains_on_the_folder_maskgen_writes(image_folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from fer_models.cli import main as fer_models_cli
    from fer_models.data import load_image_folder

    out = tmp_path / "masked"
    build_folder(image_folder, out, jobs=1, progress=False)
    data = load_image_folder(out)
    assert tuple(data.images.shape) == (N, 1, 48, 48)
    items = scan_folder(out)  # rows in path order, labels from the class folders
    assert data.labels.tolist() == [EMOTIONS.index(i.label) for i in items]
    assert np.array_equal(data.images[0, 0].numpy(), cv2.imread(str(out / items[0].path), cv2.IMREAD_UNCHANGED))
    assert set(data.usage) == {"Training", "PrivateTest"}
    # no PublicTest folder here: the usage split needs one, the grouped / paper splits do not
    result = CliRunner().invoke(fer_models_cli, ["train", "--data", str(out), "--out", str(tmp_path / "run"), "--split", "paper",
                                                "--model", "mini_xception", "--epochs", "1", "--batch-size", "4",
                                                "--max-steps-per-epoch", "2", "--no-progress", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "test" / "metrics.json").is_file()
    (image_folder / "train" / "bogus").mkdir(exist_ok=True)
    cv2.imwrite(str(image_folder / "train" / "bogus" / "x.png"), np.zeros((48, 48), np.uint8))
    try:
        with pytest.raises(ValueError, match="class folder 'bogus' is not an expression"):
            load_image_folder(image_folder)
    finally:
        (image_folder / "train" / "bogus" / "x.png").unlink()
        (image_folder / "train" / "bogus").rmdir()


def test_mfer_style_mix_of_a_folder(image_folder: Path, tmp_path: Path) -> None:
    masked = tmp_path / "masked"
    build_folder(image_folder, masked, jobs=1, progress=False)
    mix = tmp_path / "mix"
    result = CliRunner().invoke(main, ["build-mfer", str(image_folder), str(masked), "-o", str(mix)])
    assert result.exit_code == 0, result.output
    index = list(csv.DictReader(open(mix / folders.MFER_INDEX_NAME)))
    assert len(index) == 2 * N and sum(int(r["masked"]) for r in index) == N
    for r in index:
        origin = (masked if r["masked"] == "1" else image_folder) / r["source"]
        assert (mix / r["path"]).read_bytes() == origin.read_bytes()
    pytest.importorskip("torch")
    from fer_models.data import load_image_folder, split_indices

    data = load_image_folder(mix)
    assert len(data) == 2 * N and len(set(data.groups)) == N
    s = split_indices(data, "grouped", seed=0)  # a face and its twin stay on one side
    side_of_row = {int(i): name for name in ("train", "val", "test") for i in s[name]}
    by_group: dict[str, set[str]] = {}
    for i, g in enumerate(data.groups):
        by_group.setdefault(g, set()).add(side_of_row[i])
    assert len(by_group) == N and all(len(v) == 1 for v in by_group.values())
    with pytest.raises(ValueError, match="not a finished folder build"):
        folders.build_mfer_folder(image_folder, tmp_path / "nothing", tmp_path / "mix2")


@pytest.mark.parametrize("mode", ["crop", "photo"])
def test_bad_pictures_are_status_rows_in_both_modes(tmp_path: Path, mode: str) -> None:
    """#28 case 7: a decompression bomb (either mode) or a 1x1 picture (photo mode) stopped the whole build."""
    from conftest import bomb_png, checksums

    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a_tiny.png"), np.zeros((1, 1), np.uint8))
    bomb_png(src / "b_bomb.png")
    cv2.imwrite(str(src / "c_face.png"), demo_table(1).images[0])
    before = checksums(src)
    report = build_folder(src, tmp_path / "out", mode=mode, jobs=1, backend="sequential", progress=False)
    rows = {r["path"]: r for r in csv.DictReader(open(tmp_path / "out" / "smfer.meta.csv"))}
    assert rows["b_bomb.png"]["status"] == "too_large" and "too large" in rows["b_bomb.png"]["error"]
    assert rows["a_tiny.png"]["status"] == "error"
    assert report.images == 3 and checksums(src) == before


def test_resume_refuses_a_picture_replaced_under_its_name(image_folder: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """#28: --resume compared names, splits and labels only: a picture replaced by other bytes under
    its name was mixed silently into the resumed build. Now refused (exit 2, one line naming it),
    with the output folder and the inputs byte-identical; a build recorded without checksums (an
    older maskgen) is refused too, and so is a finished build whose pictures changed."""
    import shutil

    from conftest import checksums

    src = tmp_path / "in"
    shutil.copytree(image_folder, src)
    real = folders.map_chunks

    def interrupted(*args, **kw):  # two chunks finish, then Ctrl-C (as the resume test above)
        for k, result in enumerate(real(*args, **kw)):
            if k == 2:
                raise KeyboardInterrupt
            yield result

    monkeypatch.setattr(folders, "map_chunks", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        build_folder(src, out, jobs=1, chunk_size=3, progress=False)
    monkeypatch.setattr(folders, "map_chunks", real)
    state = json.loads((out / folders.STATE_NAME).read_text())
    assert len(state["contents_sha256"]) == 64 and len(state[folders.PICTURE_SUMS_KEY]) == N

    victim = src / scan_folder(src)[0].path  # masked before the interruption: same name, other bytes
    cv2.imwrite(str(victim), 255 - cv2.imread(str(victim), cv2.IMREAD_UNCHANGED))
    resume = ["build-smfer", str(src), "-o", str(out), "--resume", "--quiet", "-j", "1"]
    before_in, before_out = checksums(src), checksums(out)
    result = CliRunner().invoke(main, resume)
    assert result.exit_code == 2 and "Traceback" not in result.output, (result.output, result.exception)
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("maskgen: error: --resume: ")
    assert str(victim) in result.stderr and "start a new build" in result.stderr
    assert checksums(src) == before_in and checksums(out) == before_out

    # a state file from an older maskgen (no checksums): refused, nothing touched
    del state["contents_sha256"], state[folders.PICTURE_SUMS_KEY]
    (out / folders.STATE_NAME).write_text(json.dumps(state))
    before_out = checksums(out)
    with pytest.raises(ValueError, match="older maskgen.*start a new build"):
        build_folder(src, out, jobs=1, chunk_size=3, progress=False, resume=True)
    assert checksums(src) == before_in and checksums(out) == before_out

    # a finished build: its manifest keeps the one digest
    done = tmp_path / "done"
    build_folder(src, done, jobs=1, chunk_size=3, progress=False)
    kept = json.loads((done / "smfer.manifest.json").read_text())
    assert len(kept["contents_sha256"]) == 64 and folders.PICTURE_SUMS_KEY not in kept
    build_folder(src, done, jobs=1, chunk_size=3, progress=False, resume=True)  # unchanged: nothing to do
    cv2.imwrite(str(victim), cv2.imread(str(image_folder / victim.relative_to(src)), cv2.IMREAD_UNCHANGED))
    before_in, before_out = checksums(src), checksums(done)
    with pytest.raises(ValueError, match="other contents.*start a new build"):
        build_folder(src, done, jobs=1, chunk_size=3, progress=False, resume=True)
    assert checksums(src) == before_in and checksums(done) == before_out
