"""``fer-models benchmark``: the whole grid at --budget smoke on tiny generated data, resume, tables."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import USAGE_CYCLE, fer_csv_text, random_faces

pytest.importorskip("torch")

from fer_models import benchmark as bm  # noqa: E402
from fer_models.benchmark import runner, spec  # noqa: E402

N = 60


def _write_sets(tmp_path: Path) -> dict[str, str]:
    """FER2013 / SMFER2013 / MFER2013-shaped files: N rows, 2 PrivateTest rows copying Training rows."""
    faces = random_faces(N, seed=3)
    labels = [i % 7 for i in range(N)]
    usages = [USAGE_CYCLE[i % len(USAGE_CYCLE)] for i in range(N)]
    tests = [i for i, u in enumerate(usages) if u == "PrivateTest"]
    faces[tests[0]] = faces[0]
    faces[tests[1]] = faces[1]
    masked = faces.copy()
    masked[:, 28:] = 128  # a flat "mask" over the lower face
    paths = {}
    for name, imgs in (("fer2013", faces), ("smfer2013", masked)):
        path = tmp_path / f"{name}.csv"
        path.write_text(fer_csv_text(imgs, labels, usages))
        paths[name] = str(path)
    both = np.concatenate([faces, masked])
    extra = {"source": [str(i % N) for i in range(2 * N)], "masked": ["0"] * N + ["1"] * N}
    path = tmp_path / "mfer2013.csv"
    path.write_text(fer_csv_text(both, labels * 2, usages * 2, extra=extra))
    paths["mfer2013"] = str(path)
    return paths


def test_grid_covers_the_three_tables_with_shared_runs() -> None:
    runs = bm.grid()
    assert len(runs) == len(set(runs)) == 25  # 10 + 6 + 12, minus the 3 runs tables share
    assert all(r in runs for t in bm.TABLES for r in bm.table_runs(t))
    assert sum(r.model == "mini_xception" and r.dataset == "fer2013" for r in runs) == 3  # three seeds


def test_duplicate_test_rows_finds_copies_and_their_twins() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 48, 48), dtype=np.uint8)
    images[5] = images[0]                                  # exact copy of a training row
    images[6] = np.clip(images[1].astype(int) + 1, 0, 255)  # near copy (MAD <= 1)
    groups = np.array(["a", "b", "c", "d", "e", "x", "y", "x"], dtype=object)  # row 7 is row 5's twin
    flagged = bm.duplicate_test_rows(images, groups, np.arange(5), np.array([5, 6, 7]))
    assert flagged.tolist() == [True, True, True]
    flagged = bm.duplicate_test_rows(images, None, np.arange(5), np.array([5, 7]))
    assert flagged.tolist() == [True, False]


@pytest.fixture(scope="module")
def smoke_grid(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], Path, dict]:
    """The whole grid at --budget smoke, one run after another: (dataset paths, benchmark folder, what it wrote)."""
    tmp_path = tmp_path_factory.mktemp("smoke")
    paths = _write_sets(tmp_path)
    out = tmp_path / "bench"
    done = bm.benchmark(paths, out, budget="smoke", command="test", echo=lambda _: None)
    return paths, out, done


def _table_rows(markdown: str) -> list[str]:
    """The rows of the paper's three tables (not the per-run table, whose times vary between runs)."""
    tables = markdown.split("## Every run")[0]
    return [line for line in tables.splitlines() if line.startswith("| ")]


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def test_smoke_grid_writes_every_cell_and_resumes(smoke_grid: tuple, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    paths, out, done = smoke_grid
    lines: list[str] = []
    assert done["finished"] == done["total"] == 25
    text = done["path"].read_text()
    for run in bm.grid():
        assert f"| {run.id} |" in text and json.loads((out / "runs" / run.id / "result.json").read_text())
    # every cell of Table 1 holds the number its runs' results give (latency is untimed in smoke)
    for model in bm.TABLE1_MODELS:
        row = next(line for line in text.splitlines() if line.startswith(f"| {model} | {bm.PAPER_ACCURACY['1'][model]}"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        usage, paper = (json.loads((out / "runs" / f"mfer2013-{model}-{split}-s0" / "result.json").read_text())["scores"]
                        for split in ("usage", "paper"))
        u, d, p = usage["usage"]["accuracy"], usage["dedup"]["accuracy"], paper["paper"]["accuracy"]
        assert cells[1:6] == [f"{bm.PAPER_ACCURACY['1'][model]:.1f}", _pct(u), _pct(d), _pct(p),
                              f"{100 * (p - u):+.1f}"], row
        assert cells[6] == " / ".join(_pct(usage["usage"][f"macro_{k}"]) for k in ("precision", "recall", "f1")), row
        assert cells[9] == "-", row  # latency: not timed at --budget smoke
    assert "| fer2013 | 90.4 |" in text and "± " in text  # Table 2 row, Table 3 mean ± std
    dedup = json.loads((out / "runs" / "fer2013-mini_xception-usage-s0" / "result.json").read_text())
    assert dedup["scores"]["dedup"]["removed"] == 2
    assert dedup["scores"]["dedup"]["n"] == dedup["scores"]["usage"]["n"] - 2
    mfer = json.loads((out / "runs" / "mfer2013-mini_xception-usage-s0" / "result.json").read_text())
    assert mfer["scores"]["dedup"]["removed"] == 4  # the two copies and their masked twins
    assert done["plot"] is not None and done["plot"].is_file()

    # resume: nothing is trained again
    def fail(*_: object) -> None:
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(runner, "execute_run", fail)
    lines.clear()
    again = bm.benchmark(paths, out, budget="smoke", command="test", echo=lines.append)
    assert again["finished"] == 25
    assert lines[0].startswith("benchmark: 25 runs, 25 done, 0 to run (budget smoke, recipe default); ETA 0.0 h")
    # a finished run made with other settings is refused, not mixed in
    with pytest.raises(ValueError, match="other settings"):
        bm.benchmark(paths, out, budget="smoke", recipe="paper", command="test", echo=lines.append)

    # the run folders are lost: the records file beside the tables still has every finished run
    records = done["records"]
    assert records == out / "paper_tables.json" and set(bm.load_records(records)) == {r.id for r in bm.grid()}
    fresh = bm.benchmark(paths, tmp_path / "elsewhere", budget="smoke", command="test", echo=lines.append,
                         write=tmp_path / "tables.md", records=records)
    assert fresh["finished"] == 25 and "(25 from" in "\n".join(lines)
    def rows(markdown: str) -> list[str]:
        return [line for line in markdown.splitlines() if line.startswith("| ")]

    assert rows(fresh["path"].read_text()) == rows(text)  # the same tables, cell by cell
    assert _table_rows(text) and set(_table_rows(text)) <= set(rows(text))
    # ...but only for the same settings: a record made otherwise is trained again
    monkeypatch.undo()
    kept = bm.load_records(records)
    kept["fer2013-mini_xception-usage-s0"]["epochs"] = 3
    records.write_text(json.dumps({"format": bm.RECORDS_FORMAT, "runs": kept}))
    lines.clear()
    again = bm.benchmark(paths, tmp_path / "third", budget="smoke", command="test", echo=lines.append,
                         tables=["3"], limit=1, records=records)
    assert any("not reused from the records" in line and "epochs: 3" in line for line in lines)
    assert bm.load_records(records)["fer2013-mini_xception-usage-s0"]["epochs"] == 1  # replaced by the new run
    assert again["finished"] == 12
    records.write_text("[]")
    with pytest.raises(ValueError, match="not a benchmark records file"):
        bm.benchmark(paths, out, budget="smoke", command="test", echo=lines.append, records=records)


def test_smoke_budget_builds_the_large_baselines_tiny(smoke_grid: tuple) -> None:
    _, out, _ = smoke_grid
    for model, kwargs in spec.SMOKE_MODEL_KWARGS.items():
        result = json.loads((out / "runs" / f"mfer2013-{model}-usage-s0" / "result.json").read_text())
        assert result["config"]["model_kwargs"] == kwargs
        assert result["params"] == bm.param_count(model, kwargs) < 20_000 < bm.param_count(model)
    other = json.loads((out / "runs" / "fer2013-mini_xception-usage-s0" / "result.json").read_text())
    assert other["config"]["model_kwargs"] == {}
    # the tiny models are the smoke budget's: a run config of another budget builds the real ones
    run = bm.Run("vit", "mfer2013", "usage")
    assert bm.run_config(run, "x.csv", out, bm.BUDGETS["full"], "default").model_kwargs == {}
    assert bm.BUDGETS["full"].epochs_for("vit") == 100


def test_parallel_runs_give_the_same_tables(smoke_grid: tuple, tmp_path: Path) -> None:
    """--parallel 2: two runs at once in worker processes, each in its own folder; with the same torch threads
    per run as the serial grid, the same numbers as one by one."""
    paths, serial_out, serial = smoke_grid
    threads = json.loads((serial_out / "runs" / "fer2013-mini_xception-usage-s0" / "result.json").read_text())[
        "torch_threads"]
    out = tmp_path / "par"
    lines: list[str] = []
    done = bm.benchmark(paths, out, budget="smoke", tables=["2"], command="test", echo=lines.append, parallel=2,
                        threads=threads)
    assert done["finished"] == done["total"] == 6
    assert any(f"6 runs, 2 at once in worker processes with {threads} torch thread(s) each" in line
               for line in lines), lines
    for run in bm.grid(["2"]):
        ours = json.loads((out / "runs" / run.id / "result.json").read_text())
        theirs = json.loads((serial_out / "runs" / run.id / "result.json").read_text())
        assert ours["scores"] == theirs["scores"], run.id
        assert ours["torch_threads"] == theirs["torch_threads"] == threads
    assert set(bm.load_records(done["records"])) == {r.id for r in bm.grid(["2"])}
    plural = "s" if threads != 1 else ""
    assert f"{threads} intra-op thread{plural} per run, 2 runs at a time." in done["path"].read_text()

    def table2(markdown: str) -> list[str]:
        return [row for row in _table_rows(markdown) if row.split("|")[1].strip() in bm.DATASETS]

    assert len(table2(serial["path"].read_text())) == 3
    assert table2(done["path"].read_text()) == table2(serial["path"].read_text())
    with pytest.raises(ValueError, match="--parallel must be at least 1"):
        bm.benchmark(paths, out, budget="smoke", tables=["2"], parallel=0)


def test_interrupted_parallel_grid_resumes(smoke_grid: tuple, tmp_path: Path) -> None:
    """Ctrl-C while runs are in progress: the finished ones are recorded, the others train on the next call.
    Each worker has the torch threads of this process divided by --parallel."""
    import torch

    paths, serial_out, _ = smoke_grid
    out = tmp_path / "par"

    def interrupt(line: str) -> None:  # Ctrl-C in the parent as the first run finishes
        if " done in " in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        bm.benchmark(paths, out, budget="smoke", tables=["3"], only=["*-s0"], echo=interrupt, parallel=2)
    recorded = bm.load_records(out / "paper_tables.json")
    assert len(recorded) == 1
    left = len(list((out / "runs").glob("*/result.json")))  # the first, and the other if it beat the Ctrl-C
    lines: list[str] = []
    done = bm.benchmark(paths, out, budget="smoke", tables=["3"], only=["*-s0"], echo=lines.append, parallel=2)
    assert done["finished"] == 4 and lines[0].startswith(f"benchmark: 12 runs, {left} done, {12 - left} to run")
    assert any(f"*-s0: {4 - left} of them now" in line for line in lines)
    assert set(bm.load_records(out / "paper_tables.json")) == set(done["results"]) == {
        f"fer2013-{m}-usage-s0" for m in bm.TABLE3_MODELS}
    for run_id, result in done["results"].items():
        theirs = json.loads((serial_out / "runs" / run_id / "result.json").read_text())
        assert result["torch_threads"] == max(1, torch.get_num_threads() // 2)
        assert result["scores"].keys() == theirs["scores"].keys() and result["epochs"] == 1


def test_interrupted_run_continues_from_its_checkpoint(tmp_path: Path) -> None:
    paths = _write_sets(tmp_path)
    out = tmp_path / "bench"
    ctx = bm.GridContext(paths=paths, out=out, budget=bm.Budget("t", {"*": 2}, max_steps_per_epoch=1, batch_size=8,
                                                                    timing=False), recipe="default")
    run = bm.Run("mini_xception", "fer2013", "usage", 0)
    from fer_models.train import main as train_main

    config = bm.run_config(run, paths["fer2013"], out, ctx.budget, "default")
    assert train_main(config, stop_after=1) == {"stopped_after": 1}  # as an interruption after epoch 1
    result = bm.execute_run(ctx, run)
    log = (out / "runs" / run.id / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in log] == [1, 2]
    assert result["epochs"] == 2 and "dedup" in result["scores"]


def test_missing_dataset_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="need mfer2013"):
        bm.benchmark({"fer2013": "x.csv"}, tmp_path, budget="smoke", tables=["1"])


def test_cli_checks_its_options(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from fer_models.cli import main as cli

    runner = CliRunner()
    result = runner.invoke(cli, ["benchmark", "--build", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "--build needs --fer" in result.output
    paths = _write_sets(tmp_path)
    result = runner.invoke(cli, ["benchmark", "--fer", paths["fer2013"], "--out", str(tmp_path / "b"), "--tables", "9"])
    assert result.exit_code != 0 and "unknown table" in result.output
    result = runner.invoke(cli, ["benchmark", "--fer", paths["fer2013"], "--out", str(tmp_path / "b"), "--tables", "3",
                                 "--only", "mfer2013-*"])
    assert result.exit_code != 0 and "matches no run of tables 3" in result.output

    result = runner.invoke(cli, ["benchmark", "--fer", paths["fer2013"], "--out", str(tmp_path / "b"), "--tables", "1"])
    assert result.exit_code != 0 and "need mfer2013" in result.output
    # --limit 0 writes the (empty) tables without training anything
    result = runner.invoke(cli, ["benchmark", "--fer", paths["fer2013"], "--out", str(tmp_path / "b"), "--tables", "3",
                                 "--budget", "smoke", "--limit", "0"])
    assert result.exit_code == 0, result.output
    assert "0 of 12 runs finished" in result.output
    assert "| fer2013-mini_xception-usage-s0 | 1 | - |" in (tmp_path / "b" / "paper_tables.md").read_text()
    result = runner.invoke(cli, ["benchmark", "--fer", paths["fer2013"], "--out", str(tmp_path / "b"), "--tables", "3",
                                 "--budget", "smoke", "--limit", "0", "--parallel", "0"])
    assert result.exit_code != 0 and "--parallel" in result.output
    # --help says what each budget and --parallel do; measured times are the docs' (docs/training.md)
    text = " ".join(runner.invoke(cli, ["benchmark", "--help"]).output.split())
    assert "full: the paper's 100 epochs" in text and "--parallel" in text and "docs/training.md" in text
    assert "the same --threads gives the same tables whatever --parallel" in text
    assert not any(word in text for word in ("hour", "AVX", "images/s", "2-core")), text


def test_only_trains_the_matching_runs(tmp_path: Path) -> None:
    paths = _write_sets(tmp_path)
    lines: list[str] = []
    done = bm.benchmark(paths, tmp_path / "bench", budget="smoke", tables=["3"], only=["*-mini_xception_cbam-*", "*-s2"],
                        command="test", echo=lines.append)
    trained = {k for k in done["results"]}
    assert trained == {f"fer2013-mini_xception_cbam-usage-s{s}" for s in (0, 1, 2)} | {
        f"fer2013-{m}-usage-s2" for m in bm.TABLE3_MODELS}
    assert any("6 of them now" in line for line in lines) and done["finished"] == 6


def test_records_of_another_file_of_the_same_build_are_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A maskgen build remade on a CPU with other SIMD paths differs by a gray level here and there: its
    records still count (same build id, marked in the tables); another build, or an edited file, does not."""
    from maskgen.dataset import read_fer_csv, write_fer_csv
    from maskgen.io import build_id, file_sha256, manifest_path

    paths = _write_sets(tmp_path)
    smfer = Path(paths["smfer2013"])
    build = {"tool": "maskgen build-smfer", "version": "0", "options": {"seed": 0}, "inputs": {}}

    def write_manifest(recipe: dict) -> None:
        manifest_path(smfer).write_text(json.dumps({"build": recipe, "build_id": build_id(recipe),
                                                    "output_sha256": file_sha256(smfer)}))

    write_manifest(build)
    records = tmp_path / "records.json"
    lines: list[str] = []
    first = bm.benchmark(paths, tmp_path / "a", budget="smoke", command="test", echo=lines.append, tables=["2"],
                         only=["smfer2013-*"], records=records)
    assert {r for r in first["results"] if r.startswith("smfer2013")} == {"smfer2013-mini_xception_cbam-usage-s0",
                                                                       "smfer2013-mini_xception_cbam-paper-s0"}
    assert all(r["data_build"] == build_id(build) for k, r in bm.load_records(records).items() if k.startswith("smfer"))
    old_sha = file_sha256(smfer)

    # the same build on another CPU: one pixel one gray level off, its own manifest with the same recipe
    table = read_fer_csv(smfer)
    images = table.images.copy()
    images[5, 10, 10] ^= 1
    write_fer_csv(smfer, table, images)
    write_manifest(build)

    def fail(*_: object) -> None:
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(runner, "execute_run", fail)
    lines.clear()
    again = bm.benchmark(paths, tmp_path / "b", budget="smoke", command="test", echo=lines.append, tables=["2"],
                         only=["smfer2013-*"], records=records, write=tmp_path / "tables.md")
    assert "2 trained on another file of the same maskgen build" in "\n".join(lines)
    text = again["path"].read_text()
    assert f"| `{old_sha[:12]}`* |" in text and "same maskgen build" in text

    # another recipe (or bytes the manifest does not name) is not the same data: trained again
    for recipe in ({**build, "options": {"seed": 1}}, None):
        if recipe is None:
            write_manifest(build)
            smfer.write_text(smfer.read_text().replace("\n", "\r\n"))  # edited after its build
        else:
            write_manifest(recipe)
        lines.clear()
        with pytest.raises(AssertionError, match="trained again"):
            bm.benchmark(paths, tmp_path / "c", budget="smoke", command="test", echo=lines.append, tables=["2"],
                         only=["smfer2013-*"], records=records, write=tmp_path / "tables.md")
        assert sum("not reused from the records" in line and "data_sha256" in line for line in lines) == 2


def test_eta_uses_runs_made_on_this_kind_of_machine(tmp_path: Path) -> None:
    """A grid resumed on another CPU must not promise the old machine's speed."""
    from fer_models.device import cpu_capability, resolve

    ctx = bm.GridContext(paths={}, out=tmp_path, budget=bm.BUDGETS["cpu"], recipe="default")
    pending = [bm.Run("mini_xception", "fer2013", "usage")]  # 8 epochs

    def finished(seconds: float, resolved: dict[str, str]) -> dict:
        return {"run": {"model": "mini_xception", "dataset": "fer2013"}, "epochs": 8, "train_rows": 100,
                "train_seconds": seconds, "resolved": resolved}

    elsewhere = finished(3600.0, {"device": "cpu", "cpu_capability": "OTHER", "amp": "bf16"})
    eta = runner._eta(pending, {"a": elsewhere}, ctx)
    assert eta.startswith("ETA 1.0 h at the speed of runs made on cpu OTHER / bf16 (this machine: cpu ")
    here = finished(7200.0, {"device": resolve("auto", "auto").device.type, "cpu_capability": cpu_capability(),
                             "amp": resolve("auto", "auto").amp})
    assert runner._eta(pending, {"a": elsewhere, "b": here}, ctx) == "ETA 2.0 h"  # only this machine's runs count
    assert runner._eta([], {"a": elsewhere}, ctx) == "ETA 0.0 h"


def test_a_run_continues_only_on_the_same_bytes() -> None:
    """A finished run counts for another file of its build; an interrupted one continues only on its own file."""
    expected = {"run": {}, "budget": "cpu", "epochs": 8, "recipe": "default", "data_sha256": "new", "data_build": "b",
                "config": {}, "params": 1}
    rebuilt = {**expected, "data_sha256": "old"}
    runner._check_identity(Path("r.json"), rebuilt, expected)
    with pytest.raises(ValueError, match="data_sha256: 'old'"):
        runner._check_identity(Path("run.json"), rebuilt, expected, same_bytes=True)
    with pytest.raises(ValueError, match="other settings"):
        runner._check_identity(Path("r.json"), {**rebuilt, "data_build": "other"}, expected)
    with pytest.raises(ValueError, match="other settings"):  # no build id now: bytes only
        runner._check_identity(Path("r.json"), rebuilt, {**expected, "data_build": None})


def test_records_from_before_a_new_training_setting_still_match(tmp_path: Path) -> None:
    """A result recorded before a TrainConfig field existed had that field's default (the rule for new fields)."""
    from fer_models.config import recipe_value

    expected = {"run": {"id": "x"}, "budget": "smoke", "epochs": 1, "recipe": "default", "data_sha256": "a",
                "data_build": None, "config": {"model": "mini_xception", "twin": None, "mask_prob": 0.5}}
    assert recipe_value("default", "mask_prob") == 0.5
    old = {**expected, "config": {"model": "mini_xception"}}  # written before twin / mask_prob existed
    runner._check_identity(tmp_path / "result.json", old, expected)
    changed = {**expected, "config": {"model": "mini_xception", "twin": None, "mask_prob": 0.7}}
    with pytest.raises(ValueError, match="other settings"):
        runner._check_identity(tmp_path / "result.json", old, changed)


def _result(run: spec.Run, budget: str, accuracy: float, train_acc: float) -> dict:
    """A finished run's result as the runner records it (only what the tables read)."""
    scores = {run.split: {"accuracy": accuracy, "macro_f1": accuracy - 0.05, "macro_precision": accuracy,
                          "macro_recall": accuracy - 0.1, "n": 3589}}
    if run.split == "usage":
        scores["dedup"] = {**scores["usage"], "accuracy": accuracy - 0.01, "n": 3290, "removed": 299}
    return {"id": run.id, "budget": budget, "epochs": spec.BUDGETS[budget].epochs_for(run.model), "best_epoch": 5,
            "final_train_acc": train_acc, "train_seconds": 60.0, "images_per_s": 1000.0, "scores": scores,
            "resolved": {"device": "cpu", "amp": "bf16", "cpu_capability": "AVX2"}, "data_sha256": "a" * 64}


def test_tables_show_another_budget_beside() -> None:
    """--beside: the other budget's accuracy and CBAM gain on the same seeds, and a reading of both budgets."""
    from fer_models.benchmark.report import beside_budget, render_tables

    def run(model: str, seed: int = 0) -> spec.Run:
        return spec.Run(model, "fer2013", "usage", seed)

    full = {r["id"]: r for r in (_result(run("mini_xception"), "full", 0.663, 0.657),
                              _result(run("mini_xception_cbam"), "full", 0.669, 0.661))}
    cpu = {r["id"]: r for r in (_result(run("mini_xception", s), "cpu", a, 0.54) for s, a in ((0, 0.583), (1, 0.59)))}
    cpu |= {r["id"]: r for r in (_result(run("mini_xception_cbam", s), "cpu", a, 0.52) for s, a in ((0, 0.558), (1, 0.6)))}
    meta = {"command": "c", "budget": "full", "recipe": "default", "sha256": {"fer2013": "a" * 64}, "machine": "m",
            "plot": None, "beside": "`cpu.json`"}
    text = render_tables(full, {}, meta, ["3"], beside=cpu)
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in text.splitlines() if line.startswith("| mini_xc")}
    # seed 0 only (the seeds finished at `full`): 55.8, gain 55.8 - 58.3
    assert rows["mini_xception_cbam"][-2:] == ["55.8", "-2.5 |"], rows["mini_xception_cbam"]
    assert rows["mini_xception"][-2:] == ["58.3", "- |"]
    assert rows["mini_xception_channel"][-2:] == ["-", "- |"]  # not finished here: nothing to compare
    assert "usage acc, `cpu` (same seeds) | gain, `cpu` |" in text
    assert "+8.0 (fer2013-mini_xception-usage-s0), +11.1 (fer2013-mini_xception_cbam-usage-s0)" in text
    assert "mini_xception_cbam's gain over mini_xception** on seed(s) 0: +0.6 points at `full`, -2.5 at `cpu`" in text
    assert "CBAM's gain** is +0.6 points on one seed" in text
    # the header names the seeds finished: none / all of them, the same ones for every model, or not
    every = {r["id"]: r for m in spec.TABLE3_MODELS for s in spec.TABLE3_SEEDS
             for r in (_result(run(m, s), "cpu", 0.58, 0.5),)}
    cpu_meta = {**meta, "budget": "cpu"}
    assert "mean ± std over seeds 0, 1, 2)" in render_tables(every, {}, cpu_meta, ["3"])
    assert "mean ± std over seeds 0, 1, 2)" in render_tables({}, {}, cpu_meta, ["3"])
    two = {k: r for k, r in every.items() if not k.endswith("-s2")}
    assert "mean ± std over seeds 0, 1 (of 0, 1, 2) so far)" in render_tables(two, {}, cpu_meta, ["3"])
    assert "mean ± std over seeds 0 (of 0, 1, 2) so far)" in text   # two models, seed 0 each; two not run
    uneven = two | {k: r for k, r in every.items() if k.endswith("mini_xception-usage-s2")}
    assert "over the seeds each model has finished so far (of 0, 1, 2))" in render_tables(uneven, {}, cpu_meta, ["3"])
    # without beside: the same tables, no extra columns
    plain = render_tables(full, {}, meta, ["3"])
    assert "`cpu`" not in plain and "| mini_xception_cbam | 90.4 | +4.1 | 66.9 | +0.6 |" in plain
    with pytest.raises(ValueError, match="the budget of these tables"):
        beside_budget(full, "full")
    with pytest.raises(ValueError, match="several budgets|budgets cpu, full"):
        beside_budget({**full, "x": {**cpu[run("mini_xception").id], "id": "x"}}, "smoke")
    with pytest.raises(ValueError, match="no finished run"):
        beside_budget({}, "full")


def test_beside_is_never_written(tmp_path: Path) -> None:
    """--beside is an input: naming the grid's own records (given or default) is refused before any work."""
    from click.testing import CliRunner

    from fer_models.benchmark.runner import save_records
    from fer_models.cli import main as cli

    paths = _write_sets(tmp_path)
    records = tmp_path / "b" / "paper_tables.json"
    records.parent.mkdir()
    save_records(records, {"x": _result(spec.Run("mini_xception", "fer2013", "usage"), "cpu", 0.5, 0.5)})
    before = records.read_bytes()
    runner = CliRunner()
    for extra in ([], ["--records", str(records)]):
        result = runner.invoke(cli, ["benchmark", "--fer", paths["fer2013"], "--out", str(tmp_path / "b"), "--tables",
                                     "3", "--budget", "smoke", "--limit", "0", "--beside", str(records), *extra])
        assert result.exit_code == 2, result.output
        assert "--beside" in result.output and "Traceback" not in result.output
    assert records.read_bytes() == before and not (tmp_path / "b" / "paper_tables.md").exists()
    other = tmp_path / "cpu.json"
    other.write_bytes(before)
    result = runner.invoke(cli, ["benchmark", "--fer", paths["fer2013"], "--out", str(tmp_path / "b"), "--tables", "3",
                                 "--budget", "smoke", "--limit", "0", "--beside", str(other)])
    assert result.exit_code == 0, result.output
    assert other.read_bytes() == before and "usage acc, `cpu`" in (tmp_path / "b" / "paper_tables.md").read_text()
