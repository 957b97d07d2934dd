"""Second audit round: refusals before any work, each one line naming the option, file or row (docs/safety.md).

1. build-smfer never writes the input's own sidecar or manifest (``smfer.csv -o smfer.csv.gz``);
2. a negative --seed is refused by every maskgen command and by the Python API;
3. -j/--jobs over MAX_JOBS_PER_CPU workers per CPU is refused, before any work;
4. --model-kw values a model cannot be built with are one short ValueError naming the argument;
5. fer-models explain: a sidecar without row_id, with a bad row_id or params, or truncated names file and line;
6. benchmarks/masks.py qa / recheck on a file that is not a sidecar name it and the missing column;
7. demo -n out of range names -n.

Every case is refused before any real work, so the file runs in seconds.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import USAGE_CYCLE, checksums, fer_csv_text, random_faces
from maskgen.cli import main as maskgen_cli

ROOT = Path(__file__).resolve().parents[1]


def write_fer(path: Path, n: int = 10, seed: int = 0) -> Path:
    path.write_text(fer_csv_text(random_faces(n, seed), [i % 7 for i in range(n)],
                                 [USAGE_CYCLE[i % len(USAGE_CYCLE)] for i in range(n)]))
    return path


def refused(result, *named: str) -> str:
    """Exit 2, no traceback, one error line (ours or click's) naming every one of ``named``; returns it."""
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert result.exit_code == 2, (result.exit_code, text, result.exception)
    assert "Traceback" not in text
    errors = [line for line in result.stderr.splitlines() if line.startswith(("maskgen: error:", "Error:"))]
    assert len(errors) == 1, result.stderr
    for name in named:
        assert name in errors[0], (name, errors[0])
    return errors[0]


def maskgen(*args: str | Path):
    return CliRunner().invoke(maskgen_cli, [str(a) for a in args])


# ------------------------------------------------------------------------------------------------ 1


def test_build_smfer_never_writes_the_inputs_sidecar_or_manifest(tmp_path: Path) -> None:
    """smfer.csv -o smfer.csv.gz: the output's sidecar and manifest names are the input's own."""
    src = write_fer(tmp_path / "smfer.csv")
    (tmp_path / "smfer.meta.csv").write_text("row_id,status\n0,masked\n")
    (tmp_path / "smfer.manifest.json").write_text('{"metadata": "' + str(tmp_path / "kept.meta.csv") + '"}\n')
    (tmp_path / "kept.meta.csv").write_text("row_id,status\n0,kept\n")
    before = checksums(tmp_path)
    line = refused(maskgen("build-smfer", src, "-o", tmp_path / "smfer.csv.gz", "-j", "1", "--quiet"),
                   "smfer.meta.csv", "input's sidecar")
    assert "overwrite" in line
    # the sidecar the input's manifest records, given as --metadata
    refused(maskgen("build-smfer", src, "-o", tmp_path / "other.csv", "--metadata", tmp_path / "kept.meta.csv",
                    "-j", "1", "--quiet"), "kept.meta.csv")
    # the manifest alone (no sidecar beside the input)
    (tmp_path / "smfer.meta.csv").unlink()
    before = checksums(tmp_path)
    refused(maskgen("build-smfer", src, "-o", tmp_path / "smfer.csv.gz", "-j", "1", "--quiet"),
            "smfer.manifest.json", "input's manifest")
    assert checksums(tmp_path) == before

    from maskgen.smfer import build_smfer

    with pytest.raises(ValueError, match="input's manifest"):
        build_smfer(src, tmp_path / "smfer.csv.gz", jobs=1, progress=False)
    assert checksums(tmp_path) == before


# ------------------------------------------------------------------------------------------------ 2


def test_negative_seed_is_refused_by_every_maskgen_command(tmp_path: Path) -> None:
    fer = write_fer(tmp_path / "fer.csv")
    smfer = write_fer(tmp_path / "smfer.csv", seed=1)
    from maskgen.io import write_image
    import numpy as np

    photo = write_image(tmp_path / "face.png", np.full((64, 64, 3), 128, np.uint8))
    before = checksums(tmp_path)
    for args in (["build-smfer", fer, "-o", tmp_path / "s.csv", "-j", "1", "--quiet"],
                 ["demo", "-o", tmp_path / "demo", "-n", "4", "-j", "1"],
                 ["mask-image", photo, "-o", tmp_path / "masked"],
                 ["preview", fer, "-o", tmp_path / "p.png"],
                 ["build-mfer", fer, smfer, "-o", tmp_path / "m.csv"],
                 ["audit", fer]):
        refused(maskgen(*args, "--seed", "-1"), "--seed")
    assert checksums(tmp_path) == before


def test_negative_seed_is_refused_by_the_python_api(tmp_path: Path) -> None:
    from maskgen.demo import run_demo
    from maskgen.pipeline import BuildConfig
    from maskgen.smfer import build_smfer

    fer = write_fer(tmp_path / "fer.csv")
    before = checksums(tmp_path)
    with pytest.raises(ValueError, match="seed must be a non-negative integer, got -1"):
        build_smfer(fer, tmp_path / "s.csv", config=BuildConfig(seed=-1), jobs=1, progress=False)
    with pytest.raises(ValueError, match="seed"):
        build_smfer(fer, tmp_path / "s.csv", config=BuildConfig(seed=1.5),  # type: ignore[arg-type]
                    jobs=1, progress=False)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        run_demo(tmp_path / "demo", rows=4, seed=-1, jobs=1)
    assert checksums(tmp_path) == before and not (tmp_path / "demo").exists()


# ------------------------------------------------------------------------------------------------ 3


@pytest.fixture
def two_cpus(monkeypatch: pytest.MonkeyPatch) -> int:
    import maskgen.parallel

    monkeypatch.setattr(maskgen.parallel, "default_jobs", lambda: 2)
    return 2


def test_too_many_jobs_are_refused_before_any_work(tmp_path: Path, two_cpus: int) -> None:
    from maskgen.parallel import MAX_JOBS_PER_CPU, check_jobs, map_chunks

    limit = MAX_JOBS_PER_CPU * two_cpus
    assert check_jobs(limit) == limit and check_jobs(0) == two_cpus and check_jobs(None) == two_cpus
    assert check_jobs(limit + 1, "sequential") == limit + 1  # starts no worker
    assert check_jobs(1000, "dask", "tcp://127.0.0.1:1") == 1000  # an existing cluster: its own workers
    ran = []
    for backend in ("loky", "threading", "dask"):
        with pytest.raises(ValueError, match=rf"--jobs {limit + 1}: .*{two_cpus} CPUs.*at most {limit}"):
            map_chunks(ran.append, [(1,), (2,)], jobs=limit + 1, backend=backend)  # refused when called
    assert ran == []

    fer = write_fer(tmp_path / "fer.csv")
    before = checksums(tmp_path)
    refused(maskgen("build-smfer", fer, "-o", tmp_path / "s.csv", "-j", str(limit + 1), "--quiet"),
            "--jobs", f"{two_cpus} CPUs")
    refused(maskgen("build-smfer", tmp_path, "-o", tmp_path.parent / "out-folder", "-j", str(limit + 1), "--quiet"),
            "--jobs")
    refused(maskgen("demo", "-o", tmp_path / "demo", "-n", "4", "-j", str(limit + 1)), "--jobs")
    refused(maskgen("build-smfer", fer, "-o", tmp_path / "s.csv", "-j", "-3", "--quiet"), "--jobs")
    assert checksums(tmp_path) == before and not (tmp_path.parent / "out-folder").exists()

    from maskgen.demo import run_demo
    from maskgen.smfer import build_smfer

    with pytest.raises(ValueError, match="--jobs"):
        build_smfer(fer, tmp_path / "s.csv", jobs=limit + 1, progress=False)
    with pytest.raises(ValueError, match="--jobs"):
        run_demo(tmp_path / "demo", rows=4, jobs=limit + 1)
    assert checksums(tmp_path) == before and not (tmp_path / "demo").exists()


# ------------------------------------------------------------------------------------------------ 4


@pytest.mark.parametrize("model, kwargs, named", [
    ("vit", {"embed_dim": "a"}, "embed_dim"),
    ("vit", {"num_heads": 0}, "num_heads"),
    ("vit", {"embed_dim": 0}, "embed_dim"),
    ("vit", {"depth": 1.5}, "depth"),
    ("vit", {"patch_size": 0}, "patch_size"),
    ("vit", {"patch_size": [12]}, "patch_size"),
    ("vit", {"img_size": None}, "img_size"),
    ("vit", {"mlp_ratio": "x" * 500}, "mlp_ratio"),
    ("vit", {"in_chans": 0}, "in_chans"),
    ("resnet18", {"widths": []}, "widths"),
    ("resnet18", {"layers": None}, "layers"),
    ("resnet18", {"widths": "abcd"}, "widths"),
    ("resnet18", {"widths": [0, 0, 0, 0]}, "widths"),
    ("mobilenet_v2", {"in_chans": 0}, "in_chans"),
    ("mini_xception", {"widths": []}, "widths"),
    ("mini_xception", {"widths": [1.5]}, "widths"),
    ("mini_xception", {"stem_width": "a"}, "stem_width"),
    ("mini_xception_cbam", {"attention": None}, "attention"),
])
def test_model_kwargs_a_model_cannot_use_are_one_short_value_error(model: str, kwargs: dict, named: str) -> None:
    pytest.importorskip("torch")
    from fer_models.models import check_model_kwargs

    with pytest.raises(ValueError) as info:
        check_model_kwargs(model, kwargs)
    message = str(info.value)
    assert named in message and model in message and "\n" not in message and len(message) < 200, message


def test_any_error_while_building_names_the_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model without checks of its own: whatever it raises becomes a ValueError naming the argument that fails."""
    pytest.importorskip("torch")
    from torch import nn

    from fer_models.models import _registry, check_model_kwargs

    def fragile(num_classes: int = 7, width: int = 4, depth: int = 1) -> nn.Module:
        return nn.Linear(width // depth, num_classes)  # depth=0: ZeroDivisionError

    monkeypatch.setitem(_registry._model_entrypoints, "fragile", fragile)
    check_model_kwargs("fragile", {"width": 8})
    with pytest.raises(ValueError, match=r"model 'fragile' cannot be built with depth=0: ZeroDivisionError"):
        check_model_kwargs("fragile", {"width": 8, "depth": 0})
    with pytest.raises(ValueError, match="takes no argument 'height'"):
        check_model_kwargs("fragile", {"height": 8})


def test_train_model_kw_vit_num_heads_zero_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from fer_models.cli import main as fer_cli

    fer = write_fer(tmp_path / "fer.csv")
    result = CliRunner().invoke(fer_cli, ["train", "--data", str(fer), "--out", str(tmp_path / "run"),
                                          "--model", "vit", "--model-kw", "num_heads=0"])
    assert result.exit_code == 2 and "Traceback" not in result.output, (result.output, result.exception)
    assert result.stderr.startswith("fer-models: error: --model-kw") and "num_heads" in result.stderr
    assert len(result.stderr.splitlines()) == 1 and not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------------ 5


def sidecar_rows(n: int = 4) -> list[list[str]]:
    params = json.dumps({"mask": "surgical", "fit": "correct"})
    return [[str(k), "masked", params] for k in range(n)]


def write_sidecar(path: Path, rows: list[list[str]], header: str = "row_id,status,params") -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header.split(","))
        w.writerows(rows)
    return path


def test_explain_sidecar_problems_name_the_file_and_line(tmp_path: Path) -> None:
    from fer_models.explain import read_sidecar_params

    masked = tmp_path / "smfer.csv"
    meta = tmp_path / "smfer.meta.csv"
    write_sidecar(meta, sidecar_rows())
    assert read_sidecar_params(masked, 4)[3] is not None
    cases = {
        "no row_id": ([r[1:] for r in sidecar_rows()], "status,params", "no row_id column"),
        "row_id 'x'": ([*sidecar_rows(2), ["x", "masked", "{}"], *sidecar_rows(4)[3:]], None, "line 4: row_id 'x'"),
        "bad params": ([*sidecar_rows(1), ["1", "masked", "{not json"], *sidecar_rows(4)[2:]], None,
                       "line 3: row_id 1"),
        "params not a dict": ([*sidecar_rows(3), ["3", "masked", "[1, 2]"]], None, "line 5: row_id 3"),
        "twice": ([*sidecar_rows(3), ["2", "kept", ""]], None, "line 5: row_id 2 given twice"),
        "truncated": (sidecar_rows(3), None, "3 rows for the 4 rows"),
    }
    for name, (rows, header, needle) in cases.items():
        write_sidecar(meta, rows, header or "row_id,status,params")
        with pytest.raises(ValueError) as info:
            read_sidecar_params(masked, 4)
        assert str(meta) in str(info.value) and needle in str(info.value), (name, str(info.value))


# ------------------------------------------------------------------------------------------------ 6


def run_script(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "masks.py"), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_masks_benchmark_on_a_file_that_is_not_a_sidecar(tmp_path: Path) -> None:
    fer = write_fer(tmp_path / "fer.csv")
    smfer = write_fer(tmp_path / "smfer.csv", seed=1)
    for args, column in ((["qa", fer], "status"), (["recheck", fer, smfer], "row_id")):
        done = run_script(*args, cwd=tmp_path)
        err = done.stderr.strip()
        assert done.returncode == 2 and "Traceback" not in err, (done.returncode, err[-2000:])
        assert len(err.splitlines()) == 1 and err.startswith("masks.py: error: ")
        assert str(fer) in err and column in err and "not a build-smfer sidecar" in err, err
    bad = write_sidecar(tmp_path / "s.meta.csv", [["0", "masked", "correct", "surgical", "yes", "", "", "", ""]],
                        "row_id,status,fit,mask,qa_passed,qa_nose_covered,qa_mouth_covered,qa_eyes_visible,"
                        "qa_chin_covered")
    done = run_script("qa", bad, cwd=tmp_path)
    assert done.returncode == 2 and "line 2: qa_passed 'yes'" in done.stderr and "Traceback" not in done.stderr


# ------------------------------------------------------------------------------------------------ 7


@pytest.mark.parametrize("rows", ["0", "101", "-1"])
def test_demo_rows_out_of_range_names_n(tmp_path: Path, rows: str) -> None:
    refused(maskgen("demo", "-o", tmp_path / "demo", "-n", rows, "-j", "1"), "-n")
    assert not (tmp_path / "demo").exists()
    from maskgen.demo import run_demo

    with pytest.raises(ValueError, match="-n/--rows must be an integer from 1 to 100"):
        run_demo(tmp_path / "demo", rows=int(rows), jobs=1)
    assert not (tmp_path / "demo").exists()
