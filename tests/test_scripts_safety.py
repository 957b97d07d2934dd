"""The scripts in benchmarks/ and scripts/ follow the house rules: outputs checked against inputs before any work,
written atomically (never through a symlink), bad input ends with one line and exit 2 (maskgen.cli_errors.run_script).

Each test runs a script as a user would (``sys.executable SCRIPT ...``) on tiny inputs; every refusal comes before
the script's real work, so none of them trains, builds or measures anything.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import USAGE_CYCLE, fer_csv_text, random_faces

ROOT = Path(__file__).resolve().parent.parent
N = 40


def run(script: str, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def refused(done: subprocess.CompletedProcess, name: str, *words: str) -> None:
    """Exit 2, one line ``NAME: error: ...`` holding ``words``, no traceback."""
    err = done.stderr.strip()
    assert done.returncode == 2, (done.returncode, done.stdout[-500:], err[-2000:])
    assert "Traceback" not in err
    last = err.splitlines()[-1]
    assert last.startswith(f"{name}: error: "), err
    for word in words:
        assert word in last, last


@pytest.fixture
def fer(tmp_path: Path) -> Path:
    path = tmp_path / "fer.csv"
    path.write_text(fer_csv_text(random_faces(N), [i % 7 for i in range(N)],
                                 [USAGE_CYCLE[i % len(USAGE_CYCLE)] for i in range(N)]))
    return path


def test_cross_style_refuses_fer_inside_work(tmp_path, fer):
    work = tmp_path / "W"
    work.mkdir()
    subset = work / "fer2013_privatetest.csv"  # the very name of the subset file the script writes
    subset.write_bytes(fer.read_bytes())
    done = run("benchmarks/cross_style.py", "--fer", subset, "--work", work, "--styles", "classic",
               "--models", "fer2013", cwd=tmp_path)
    refused(done, "cross_style.py", "inside the --work folder")
    assert subset.read_bytes() == fer.read_bytes()
    assert sorted(p.name for p in work.iterdir()) == [subset.name]  # nothing built, nothing scored


def test_cross_style_refuses_unknown_model_and_bad_limit(tmp_path, fer):
    done = run("benchmarks/cross_style.py", "--fer", fer, "--work", tmp_path / "W", "--styles", "classic",
               "--models", "no_such_model", cwd=tmp_path)
    refused(done, "cross_style.py", "no_such_model", "neither shipped weights")
    done = run("benchmarks/cross_style.py", "--fer", fer, "--work", tmp_path / "W", "--styles", "classic",
               "--limit", "0", cwd=tmp_path)
    refused(done, "cross_style.py", "--limit")
    assert not (tmp_path / "W").exists()


def test_train_speed_refuses_json_symlink_before_measuring(tmp_path):
    victim = tmp_path / "victim.csv"
    victim.write_text("precious\n")
    (tmp_path / "vlink.json").symlink_to(victim.name)
    done = run("benchmarks/train_speed.py", "--models", "mini_xception", "--steps", "1", "--repeats", "1",
               "--warmup", "0", "--batch-size", "4", "--threads", "1", "--json", "vlink.json", cwd=tmp_path)
    refused(done, "train_speed.py", "vlink.json", "symlink")
    assert "CPU capability" not in done.stdout  # refused before the measurement
    assert victim.read_text() == "precious\n"
    refused(run("benchmarks/train_speed.py", "--steps", "0", cwd=tmp_path), "train_speed.py", "--steps")


def test_ferplus_scores_refuses_json_onto_votes(tmp_path, fer):
    smfer = tmp_path / "smfer.csv"
    smfer.write_bytes(fer.read_bytes())  # same rows, labels and Usage: what the script checks of a masked copy
    votes = tmp_path / "v2.csv"
    votes.write_text("neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"
                     + "".join(f"{10 if i % 2 else 0},{0 if i % 2 else 10},0,0,0,0,0,0,0,0\n" for i in range(N)))
    before = votes.read_bytes()
    done = run("benchmarks/ferplus_scores.py", "--fer", fer, "--smfer", smfer, "--votes", votes,
               "--models", "fer2013", "--json", votes, "--threads", "1", cwd=tmp_path)
    refused(done, "ferplus_scores.py", "--json", "--votes")
    assert votes.read_bytes() == before


def test_style_sheet_refuses_bad_styles_and_rows(tmp_path, fer):
    out = tmp_path / "sheet.png"
    for option in (["--styles", "bogus"], ["--styles", ",,"], ["-n", "0"]):
        done = run("scripts/style_sheet.py", fer, "-n", "1", *option, "-o", out, cwd=tmp_path)
        refused(done, "style_sheet.py")
        assert not out.exists()
    png_named = tmp_path / "faces.png"  # a CSV that happens to have an image's name
    png_named.write_bytes(fer.read_bytes())
    refused(run("scripts/style_sheet.py", png_named, "-n", "1", "-o", png_named, cwd=tmp_path),
            "style_sheet.py", "overwrite the input")
    assert png_named.read_bytes() == fer.read_bytes()


def test_determinism_and_folder_build_refuse_input_in_out(tmp_path, fer):
    out = tmp_path / "out"
    out.mkdir()
    inside = out / "input.csv"  # determinism.py writes the head of its input under this name
    inside.write_bytes(fer.read_bytes())
    refused(run("benchmarks/determinism.py", inside, "--out", out, "--rows", "5", "--modes", "native",
                cwd=tmp_path), "determinism.py", "inside the --out folder")
    refused(run("benchmarks/folder_build.py", inside, "--out", out, "--rows", "5", "--jobs", "1", cwd=tmp_path),
            "folder_build.py", "inside the --out folder")
    assert inside.read_bytes() == fer.read_bytes()  # neither truncated nor removed with its folder
    assert sorted(p.name for p in out.iterdir()) == ["input.csv"]


def test_mask_training_also_folder_is_an_input(tmp_path, fer):
    other = tmp_path / "elsewhere" / "twins"  # a finished run whose folder name is a run name
    (other / "test").mkdir(parents=True)
    (other / "test" / "metrics.json").write_text("{}")
    (other / "best.pt").write_bytes(b"")
    work, styles = tmp_path / "work", tmp_path / "styles"
    styles.mkdir()
    done = run("benchmarks/mask_training.py", "--fer", fer, "--smfer", fer, "--styles-dir", styles,
               "--work", work, "--runs", "twins", "--epochs", "1", "--also", other, cwd=tmp_path)
    refused(done, "mask_training.py", "'twins'")
    assert not work.exists()
    # its scores are cached under --work, never in the --also folder
    spec = importlib.util.spec_from_file_location("mask_training_script", ROOT / "benchmarks" / "mask_training.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    runs = module.also_runs([str(other)], ["distill"], work)
    folder, cache = runs["twins"]
    assert folder == other and cache.parent.parent == work / "also" and cache.name == "scores.json"


def test_bad_input_ends_with_one_line(tmp_path, fer):
    truncated = tmp_path / "truncated.csv"
    truncated.write_bytes(fer.read_bytes()[:30000])
    refused(run("benchmarks/mask_influence.py", "--fer", truncated, "--smfer", fer, "--model", "fer2013",
                cwd=tmp_path), "mask_influence.py", "truncated.csv")
    refused(run("benchmarks/weight_average.py", "--a", "fer2013", "--b", "fer2013", "--fer", fer, "--smfer", fer,
                "--multi", fer, "--unseen", fer, "--threads", "0", cwd=tmp_path), "weight_average.py", "--threads")
