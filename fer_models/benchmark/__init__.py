"""The paper's three tables, run under honest protocols: ``fer-models benchmark``.

The paper (Zhang, Abdul-Rahman, Sabri) reports three tables: five models on MFER2013 (Table 1),
Mini-Xception + CBAM on FER2013 / SMFER2013 / MFER2013 (Table 2) and an attention ablation
(Table 3). This module runs the same grid and scores every cell under up to three protocols:

- ``usage``: train on ``Training``, select on ``PublicTest``, score once on ``PrivateTest``;
- ``dedup``: the same run scored on ``PrivateTest`` without the rows that have an exact or near
  duplicate in ``Training`` (mean absolute difference <= :data:`maskgen.audit.NEAR_MAD` grey
  levels, found exactly by :func:`maskgen.audit.near_pairs`); in a file with a ``source``
  column, a flagged row takes its masked / unmasked twins with it;
- ``paper``: a seeded random 80/10/10 split over rows, as the paper, for Tables 1 and 2. On
  MFER2013 it puts the masked and the unmasked copy of most faces on both sides, so
  ``paper - usage`` measures the leak.

A *run* is one training (model, dataset, split, seed) in its own folder under ``OUT/runs/``;
cells of different tables share runs. The grid resumes: a run with ``result.json`` is skipped
(after checking it was made with the same budget, recipe and data), an interrupted one
continues from its checkpoint. Finished results are also kept in a *records* file beside the
tables (``paper_tables.json``): run folders are large and often lost between working periods,
the records are small enough to commit, and a run found there with the same settings is not
trained again. :func:`render_tables` writes the markdown with the paper's
numbers beside ours; :func:`plot_tables` the picture.
"""

from __future__ import annotations

import fnmatch
import json
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fer_models.config import RECIPES, TrainConfig

DATASETS = ("fer2013", "smfer2013", "mfer2013")
TABLES = ("1", "2", "3")
PROTOCOLS = ("usage", "dedup", "paper")
TABLE1_MODELS = ("mini_xception", "mini_xception_cbam", "mobilenet_v2", "resnet18", "vit")
TABLE3_MODELS = ("mini_xception", "mini_xception_channel", "mini_xception_spatial", "mini_xception_cbam")
TABLE3_SEEDS = (0, 1, 2)

#: The paper's accuracies (%). It gives accuracy only in these tables: precision / recall / F1
#: cells show "n/g" (not given). Its Table 3 repeats Table 1's Mini-Xception (86.3, MFER2013)
#: and Table 2's FER2013 value (90.4) without naming a dataset; we run it on FER2013.
PAPER_ACCURACY: dict[str, dict[str, float]] = {
    "1": {"mini_xception_cbam": 91.5, "vit": 89.1, "resnet18": 87.2, "mini_xception": 86.3, "mobilenet_v2": 84.7},
    "2": {"fer2013": 90.4, "smfer2013": 89.2, "mfer2013": 91.5},
    "3": {"mini_xception": 86.3, "mini_xception_channel": 88.0, "mini_xception_spatial": 87.5,
          "mini_xception_cbam": 90.4},
}
#: The paper's sizes: parameters and "FLOPs" (multiply-adds, as it counts them); None: not given.
PAPER_COST: dict[str, tuple[float, float | None]] = {
    "mini_xception": (0.61e6, 28.3e6), "mini_xception_cbam": (0.68e6, 30.1e6), "mobilenet_v2": (2.23e6, None),
    "resnet18": (11.69e6, 98.7e6), "vit": (13.45e6, 102.3e6),
}


@dataclass(frozen=True)
class Budget:
    """Epochs per model (``"*"``: any other model), and a per-epoch step cap for smoke runs."""

    name: str
    epochs: dict[str, int]
    max_steps_per_epoch: int | None = None
    batch_size: int | None = None
    timing: bool = True
    amp: str | None = None
    note: str = ""

    def epochs_for(self, model: str) -> int:
        return self.epochs.get(model, self.epochs["*"])


#: ``cpu`` is sized so the whole grid (25 runs) fits about 4 hours of a 2-core machine with native
#: bf16 (AVX512-BF16); a 2-core AVX2-only CPU trains in float32 and needs about 3x that (results.md).
BUDGETS: dict[str, Budget] = {
    "smoke": Budget("smoke", {"*": 1}, max_steps_per_epoch=2, batch_size=16, timing=False, amp="none",
                    note="1 epoch of 2 steps: checks the machinery, not the models"),
    "cpu": Budget("cpu", {"*": 8},
                  note="what fits the 2-core development machine: 8 epochs for every model (about 4 hours for the "
                       "25 runs on a 2-core CPU with AVX512-BF16: 4-5 min for a FER2013 run of a Mini-Xception, "
                       "35 min for MobileNetV2 on MFER2013, whose depthwise convolutions train at about 215 images/s "
                       "there; a 2-core AVX2-only CPU trains in float32, 2.4x slower for the Mini-Xceptions, 2.7x "
                       "for MobileNetV2 and 7x for ViT: about 13 hours for the grid)"),
    "full": Budget("full", {"*": 100}, note="the paper's 100 epochs"),
}

#: Per-model changes to a recipe (recorded in each run's config). A transformer trained from
#: scratch needs AdamW, at DeiT's learning rate for our batch (5e-4 x 64 / 512): at 5e-4 the
#: ``vit`` stayed at chance (25 % train and PublicTest accuracy) for 5 MFER2013 epochs
#: (docs/results.md, "The paper's tables"). The paper recipe (Adam) is left as the paper has it.
MODEL_OVERRIDES: dict[str, dict[str, dict[str, Any]]] = {
    "default": {"vit": {"optimizer": "adamw", "lr": 6.25e-5, "weight_decay": 0.05}},
    "paper": {},
}


@dataclass(frozen=True)
class Run:
    """One training: ``model`` on ``dataset`` with ``split`` (``usage`` or ``paper``) and ``seed``."""

    model: str
    dataset: str
    split: str
    seed: int = 0

    @property
    def id(self) -> str:
        return f"{self.dataset}-{self.model}-{self.split}-s{self.seed}"


def table_runs(table: str) -> list[Run]:
    """The runs table ``table`` needs (in table order)."""
    if table == "1":
        return [Run(m, "mfer2013", split) for m in TABLE1_MODELS for split in ("usage", "paper")]
    if table == "2":
        return [Run("mini_xception_cbam", d, split) for d in DATASETS for split in ("usage", "paper")]
    if table == "3":
        return [Run(m, "fer2013", "usage", seed) for m in TABLE3_MODELS for seed in TABLE3_SEEDS]
    raise ValueError(f"unknown table {table!r}; expected one of {', '.join(TABLES)}")


def grid(tables: Iterable[str] = TABLES) -> list[Run]:
    """The distinct runs of ``tables``, cheapest datasets first (FER2013-sized before MFER2013)."""
    runs: list[Run] = []
    for table in tables:
        runs += [r for r in table_runs(table) if r not in runs]
    order = {"fer2013": 0, "smfer2013": 1, "mfer2013": 2}
    return sorted(runs, key=lambda r: (order[r.dataset], r.seed, TABLE1_MODELS.index(r.model)
                                       if r.model in TABLE1_MODELS else 9, r.model, r.split))


def datasets_needed(tables: Iterable[str]) -> list[str]:
    return sorted({r.dataset for r in grid(tables)}, key=DATASETS.index)


def run_config(run: Run, data_path: str, out: Path, budget: Budget, recipe: str) -> TrainConfig:
    """The :class:`TrainConfig` of ``run`` under ``budget`` and ``recipe``."""
    options: dict[str, Any] = {
        "model": run.model, "split": run.split, "seed": run.seed, "epochs": budget.epochs_for(run.model),
        "max_steps_per_epoch": budget.max_steps_per_epoch, "batch_size": budget.batch_size, "amp": budget.amp,
        "progress": False,
        **MODEL_OVERRIDES.get(recipe, {}).get(run.model, {}),
    }
    return TrainConfig.from_recipe(recipe, data=data_path, out=str(out / "runs" / run.id), **options)


# ---------------------------------------------------------------- de-duplicated test rows


def duplicate_test_rows(images: np.ndarray, groups: np.ndarray | None, train: np.ndarray, test: np.ndarray
                        ) -> np.ndarray:
    """(len(test),) bool: test rows with an exact or near duplicate among the train rows.

    Args:
        images: (N, 48, 48) uint8 of the whole file; ``groups``: (N,) source ids or None;
        train, test: row indices.

    In a file with sources (MFER2013) a flagged row flags every test row of its source, so the
    masked copy of a duplicated face goes too.
    """
    from maskgen.audit import NEAR_MAD, near_pairs

    qi, _, _ = near_pairs(images[test], images[train], NEAR_MAD)
    flagged = np.zeros(test.size, bool)
    flagged[qi] = True
    if groups is not None and flagged.any():
        flagged |= np.isin(groups[test], groups[test][flagged])
    return flagged


# ---------------------------------------------------------------- running the grid


@dataclass
class GridContext:
    """What a grid run knows: data paths and checksums, budget, recipe, output folder."""

    paths: dict[str, str]
    out: Path
    budget: Budget
    recipe: str
    command: str = ""
    sha256: dict[str, str] = field(default_factory=dict)
    build_ids: dict[str, str | None] = field(default_factory=dict)
    _data: dict[str, Any] = field(default_factory=dict)
    _duplicates: dict[str, np.ndarray] = field(default_factory=dict)

    def duplicates(self, dataset: str) -> tuple[np.ndarray, np.ndarray]:
        """(usage-split test rows, which of them have a duplicate in Training), found once per dataset."""
        from fer_models.data import split_indices

        data = self.data(dataset)
        subsets = split_indices(data, "usage")
        if dataset not in self._duplicates:
            self._duplicates[dataset] = duplicate_test_rows(data.images[:, 0].numpy(), data.groups,
                                                            subsets["train"], subsets["test"])
        return subsets["test"], self._duplicates[dataset]

    def checksum(self, dataset: str) -> str:
        if dataset not in self.sha256:
            from maskgen.io import file_sha256

            self.sha256[dataset] = file_sha256(self.paths[dataset])
        return self.sha256[dataset]

    def build(self, dataset: str) -> str | None:
        """The maskgen build id of ``dataset``'s file (None for a file maskgen did not make, e.g. FER2013)."""
        if dataset not in self.build_ids:
            from maskgen.io import dataset_build

            self.build_ids[dataset] = dataset_build(self.paths[dataset], self.checksum(dataset))
        return self.build_ids[dataset]

    def data(self, dataset: str) -> Any:
        """The loaded FerTensors of ``dataset`` (one dataset in memory at a time)."""
        if dataset not in self._data:
            from fer_models.data import load_dataset

            self._data.clear()
            self._data[dataset] = load_dataset(self.paths[dataset])
        return self._data[dataset]


def result_path(out: Path, run: Run) -> Path:
    return out / "runs" / run.id / "result.json"


#: config fields that do not change what a run computes (where it ran, how it reports)
_FREE_FIELDS = ("data", "out", "progress", "threads", "device", "eval_batch_size", "compile")


def _settings(config: TrainConfig) -> dict[str, Any]:
    return {k: v for k, v in asdict(config).items() if k not in _FREE_FIELDS}


def _identity(ctx: GridContext, run: Run) -> dict[str, Any]:
    """What must match for a run to be reused or continued: the run, budget, recipe, data and every setting."""
    config = run_config(run, ctx.paths[run.dataset], ctx.out, ctx.budget, ctx.recipe)
    return {"run": asdict(run), "budget": ctx.budget.name, "epochs": ctx.budget.epochs_for(run.model),
            "recipe": ctx.recipe, "data_sha256": ctx.checksum(run.dataset), "data_build": ctx.build(run.dataset),
            "config": _settings(config), "params": _param_count(run.model)}


def _param_count(model: str) -> int:
    """Parameters of ``model`` as registered now (a renamed architecture is not mistaken for the old one)."""
    from fer_models.models import create_model
    from fer_models.summary import count_params

    if model not in _PARAMS:
        _PARAMS[model] = count_params(create_model(model))
    return _PARAMS[model]


_PARAMS: dict[str, int] = {}


def _check_identity(path: Path, recorded: dict[str, Any], expected: dict[str, Any], same_bytes: bool = False) -> None:
    """ValueError unless ``recorded`` was made with the ``expected`` settings and data (:func:`same_data`;
    ``same_bytes``: the very same file, as a run continued from its checkpoint needs)."""
    recorded = dict(recorded)
    if isinstance(recorded.get("config"), dict):  # compare the settings that matter, whatever else was stored
        recorded["config"] = {k: recorded["config"].get(k) for k in expected["config"]}
    diff = [k for k, v in expected.items()
            if k in recorded and recorded[k] != v and k not in ("data_sha256", "data_build")]
    diff += [k for k in ("run", "budget", "epochs", "recipe", "data_sha256") if k not in recorded]
    same = recorded.get("data_sha256") == expected["data_sha256"] if same_bytes else same_data(recorded, expected)
    if not same:
        diff.append("data_sha256")
    if diff:
        detail = "; ".join(f"{k}: {recorded.get(k)!r} (now {expected[k]!r})" for k in sorted(set(diff)))
        raise ValueError(f"{path} was made with other settings ({detail}); use another --out or remove it")


def same_data(recorded: dict[str, Any], expected: dict[str, Any]) -> bool:
    """The same bytes, or another file of the same maskgen build recipe (same inputs, seed, options,
    maskgen and library versions; :func:`maskgen.io.dataset_build`), e.g. made on a CPU with other
    SIMD paths, which by the build's ``determinism`` statement differs at most by a gray level in a
    few pixels, except rows whose landmark decision sits on a rounding boundary."""
    if recorded.get("data_sha256") == expected["data_sha256"]:
        return True
    return expected.get("data_build") is not None and recorded.get("data_build") == expected["data_build"]


def load_result(ctx: GridContext, run: Run) -> dict[str, Any] | None:
    """The finished result of ``run``, or None; ValueError if it was made with other settings."""
    path = result_path(ctx.out, run)
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    _check_identity(path, result, _identity(ctx, run))
    return result


RECORDS_FORMAT = "fer-models benchmark records 1"


def load_records(path: Path | None) -> dict[str, dict[str, Any]]:
    """Run id -> finished result from a records file (empty if there is none)."""
    if path is None or not path.is_file():
        return {}
    try:
        records = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a benchmark records file ({exc})") from None
    if not isinstance(records, dict) or records.get("format") != RECORDS_FORMAT or not isinstance(records.get("runs"), dict):
        raise ValueError(f"{path}: not a benchmark records file (expected format {RECORDS_FORMAT!r}); "
                         "give another --records")
    return records["runs"]


def save_records(path: Path, results: dict[str, dict[str, Any]]) -> None:
    """Merge ``results`` into the records file at ``path`` (atomically; runs of other grids are kept)."""
    from maskgen.io import atomic_write

    runs = {**load_records(path), **{k: {f: v for f, v in r.items() if f != "wall_seconds"} for k, r in results.items()}}
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps({"format": RECORDS_FORMAT, "runs": dict(sorted(runs.items()))}, indent=1) + "\n")


def _scores(report: dict[str, Any]) -> dict[str, Any]:
    return {"n": report["n"], "accuracy": report["accuracy"], **{f"macro_{k}": v for k, v in report["macro"].items()}}


def execute_run(ctx: GridContext, run: Run) -> dict[str, Any]:
    """Train (or resume) ``run``, score it on its test rows (and de-duplicated ones), write result.json."""
    import torch

    from fer_models.metrics import classification_report
    from fer_models.train import CHECKPOINT_NAME, LOG_NAME, main as train_main
    from maskgen.io import atomic_write

    config = run_config(run, ctx.paths[run.dataset], ctx.out, ctx.budget, ctx.recipe)
    run_dir = Path(config.out)
    identity = _identity(ctx, run)
    started = run_dir / "run.json"  # what the run was started with: checked before continuing it
    resume = (run_dir / CHECKPOINT_NAME).is_file()
    if resume and started.is_file():
        _check_identity(started, json.loads(started.read_text()), identity, same_bytes=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(started) as tmp:
        tmp.write_text(json.dumps(identity, indent=2) + "\n")
    t0 = time.perf_counter()
    data = ctx.data(run.dataset)
    report = train_main(config, resume=resume, data=data)
    rows, preds = np.asarray(report["test_rows"]), np.asarray(report["test_preds"])
    labels = data.labels.numpy()
    scores = {"usage" if run.split == "usage" else "paper": _scores(report)}
    if run.split == "usage":
        test_rows, flagged = ctx.duplicates(run.dataset)
        if not np.array_equal(test_rows, rows):
            raise ValueError(f"{run.id}: the scored rows are not the usage split's PrivateTest rows")
        keep = ~flagged
        dedup = classification_report(labels[rows[keep]], preds[keep], report["class_names"])
        scores["dedup"] = {**_scores(dedup), "removed": int(flagged.sum())}
    log = [json.loads(line) for line in (run_dir / LOG_NAME).read_text().splitlines() if line.strip()]
    result = {
        **identity,
        "id": run.id, "command": ctx.command, "data": ctx.paths[run.dataset], "scores": scores,
        "train_rows": int(report.get("train_rows", 0)),
        "best_epoch": report["best_epoch"], "best_val_acc": report["best_val_acc"], "tta": report["tta"],
        "train_seconds": round(sum(r.get("train_seconds", 0.0) + r.get("val_seconds", 0.0) for r in log), 1),
        "images_per_s": round(statistics.median(r["images_per_s"] for r in log), 1) if log else None,
        "final_train_acc": log[-1]["train_acc"] if log else None,
        "resolved": {k: report[k] for k in ("device", "amp", "cpu_capability") if k in report},
        "torch_threads": torch.get_num_threads(),
    }
    path = result_path(ctx.out, run)
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    result["wall_seconds"] = time.perf_counter() - t0
    return result


def _eta(pending: Sequence[Run], done: dict[str, dict[str, Any]], ctx: GridContext) -> str:
    """Remaining time, from the measured seconds per epoch and training row of finished runs of each model
    (else their median) and the training rows of finished runs on each dataset (else their median).

    Only runs made on this kind of CPU and precision count when there are any (a model can train 5x
    slower on a CPU without native bf16); otherwise the estimate says where its rates come from.
    """
    if not pending:
        return "ETA 0.0 h"
    here = _machine_kind(ctx.budget)
    same = {k: r for k, r in done.items() if _run_kind(r) == here}
    rate: dict[str, float] = {}
    rows: dict[str, int] = {}
    for result in (same or done).values():
        if result.get("train_rows") and result.get("train_seconds"):
            rate.setdefault(result["run"]["model"], result["train_seconds"] / (result["epochs"] * result["train_rows"]))
            rows.setdefault(result["run"]["dataset"], result["train_rows"])
    if not rate:
        return "ETA unknown until a run finishes"
    fallback_rate, fallback_rows = statistics.median(rate.values()), statistics.median(rows.values())
    seconds = sum(ctx.budget.epochs_for(r.model) * rows.get(r.dataset, fallback_rows) * rate.get(r.model, fallback_rate)
                  for r in pending)
    if same:
        return f"ETA {seconds / 3600:.1f} h"
    kinds = sorted({_run_kind(r) for r in done.values()})
    return f"ETA {seconds / 3600:.1f} h at the speed of runs made on {', '.join(kinds)} (this machine: {here})"


def _run_kind(result: dict[str, Any]) -> str:
    """``cpu AVX2 / none``: device, CPU capability and precision a finished run trained with."""
    res = result.get("resolved", {})
    return f"{str(res.get('device', '?')).split(':')[0]} {res.get('cpu_capability', '?')} / {res.get('amp', '?')}"


def _machine_kind(budget: Budget) -> str:
    """The same for a run started here now (``--device auto``, the budget's precision)."""
    from fer_models.device import cpu_capability, resolve

    placement = resolve("auto", budget.amp or "auto")
    return f"{placement.device.type} {cpu_capability()} / {placement.amp}"


def run_grid(ctx: GridContext, tables: Iterable[str] = TABLES, echo: Callable[[str], None] = print,
             limit: int | None = None, records: Path | None = None, only: Sequence[str] = ()
             ) -> dict[str, dict[str, Any]]:
    """Run every run of ``tables`` not finished yet; return run id -> result.

    Args:
        limit: stop after this many new runs (the rest are left for a later call).
        only: train only the runs whose id matches one of these shell patterns (``fnmatch``),
            e.g. ``mfer2013-vit-*``; the others are left for a later call.
        records: a records file (:func:`save_records`): its runs made with the same settings
            count as finished; each new result is added to it as soon as it is made.
    """
    runs = grid(tables)
    recorded = load_records(records)
    done: dict[str, dict[str, Any]] = {}
    reused = other_bytes = 0
    for run in runs:  # check every finished run before training anything
        result = load_result(ctx, run)
        if result is None and run.id in recorded:
            try:
                _check_identity(records, recorded[run.id], _identity(ctx, run))
            except ValueError as exc:
                echo(f"not reused from the records: {exc}")
            else:
                result, reused = recorded[run.id], reused + 1
        if result is not None:
            done[run.id] = result
            other_bytes += result.get("data_sha256") != ctx.checksum(run.dataset)
    pending = [r for r in runs if r.id not in done]
    echo(f"benchmark: {len(runs)} runs, {len(done)} done" + (f" ({reused} from {records})" if reused else "")
         + (f" ({other_bytes} trained on another file of the same maskgen build)" if other_bytes else "")
         + f", {len(pending)} to run (budget {ctx.budget.name}, recipe {ctx.recipe}); {_eta(pending, done, ctx)}")
    if only:
        pending = [r for r in pending if any(fnmatch.fnmatchcase(r.id, pattern) for pattern in only)]
        echo(f"--only {' '.join(only)}: {len(pending)} of them now")
    if records is not None and done:
        save_records(records, done)  # results of run folders the records do not have yet
    for k, run in enumerate(pending):
        if limit is not None and k >= limit:
            break
        echo(f"[{len(done) + 1}/{len(runs)}] {run.id}: {ctx.budget.epochs_for(run.model)} epochs")
        result = execute_run(ctx, run)
        done[run.id] = result
        if records is not None:
            save_records(records, {run.id: result})
        left = pending[k + 1:]
        echo(f"[{len(done)}/{len(runs)}] {run.id} done in {result['wall_seconds'] / 60:.1f} min: "
             + ", ".join(f"{p} {s['accuracy']:.4f}" for p, s in result["scores"].items())
             + f"; {len(left)} left, {_eta(left, done, ctx)}")
    return done


# ---------------------------------------------------------------- model cost


def model_costs(models: Iterable[str], timing: bool = True) -> dict[str, dict[str, Any]]:
    """Parameters, multiply-adds and CPU batch-1 latency (float32, 1 thread) of each model."""
    import torch

    from fer_models.device import resolve
    from fer_models.summary import measure_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        costs = {}
        for name in models:
            cost = measure_model(name, timing=timing, latency_repeats=50, throughput_repeats=1, warmup=5,
                                 placement=resolve("cpu", "none"))
            costs[name] = {"params": cost.params, "macs": cost.macs, "latency_ms": cost.latency_ms}
        return costs
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------- tables


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _mean_std(values: Sequence[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


def _score(results: dict[str, dict[str, Any]], run: Run, protocol: str, key: str = "accuracy") -> float | None:
    result = results.get(run.id)
    if result is None:
        return None
    scores = result["scores"].get(protocol)
    return None if scores is None else scores[key]


def _cost_cells(model: str, costs: dict[str, dict[str, Any]]) -> str:
    cost = costs.get(model, {})
    params, macs = PAPER_COST.get(model, (None, None))
    def size(v: float) -> str:
        return f"{v / 1e3:.1f}k" if v < 1e6 else f"{v / 1e6:.2f}M"

    ours_p = size(cost["params"]) if "params" in cost else "-"
    ours_m = f"{cost['macs'] / 1e6:.1f}M" if "macs" in cost else "-"
    paper_p = size(params) if params else "n/g"
    paper_m = f"{macs / 1e6:.1f}M" if macs else "n/g"
    latency = f"{cost['latency_ms']:.2f}" if cost.get("latency_ms") else "-"
    return f"{ours_p} ({paper_p}) | {ours_m} ({paper_m}) | {latency}"


def _prf(results: dict[str, dict[str, Any]], run: Run, protocol: str = "usage") -> str:
    return " / ".join(_pct(_score(results, run, protocol, f"macro_{k}")) for k in ("precision", "recall", "f1"))


def _inflation(results: dict[str, dict[str, Any]], usage: Run, paper: Run) -> str:
    a, b = _score(results, paper, "paper"), _score(results, usage, "usage")
    return "-" if a is None or b is None else f"{100 * (a - b):+.1f}"


def render_tables(results: dict[str, dict[str, Any]], costs: dict[str, dict[str, Any]], meta: dict[str, Any],
                  tables: Iterable[str] = TABLES) -> str:
    """docs/paper_tables.md: each paper table with the paper's value beside ours in every cell."""
    tables = list(tables)
    budget: Budget = BUDGETS[meta["budget"]]
    lines = [
        "# The paper's tables, reproduced",
        "",
        "Written by `fer-models benchmark` (do not edit by hand; rerun the command). Paper: \"Masked Facial "
        "Expression Recognition with Attention Mechanism based on Mini_Xception Network\" (Zhang, "
        "Abdul-Rahman, Sabri). Its numbers are in brackets or in the *paper* column; it reports accuracy "
        "only, so its precision / recall / F1 are n/g (not given).",
        "",
        f"- Command: `{meta['command']}`",
        f"- Budget `{budget.name}`: {budget.note}; epochs per model: "
        + ", ".join(f"{m} {budget.epochs_for(m)}" for m in sorted({r.model for t in tables for r in table_runs(t)}))
        + f". Recipe `{meta['recipe']}`"
        + (f" (per-model changes: {json.dumps(MODEL_OVERRIDES.get(meta['recipe'], {}))})"
           if MODEL_OVERRIDES.get(meta["recipe"]) else "") + ".",
        "- Data (sha256): " + ", ".join(f"{d} `{s[:12]}`" for d, s in sorted(meta["sha256"].items())) + ".",
        f"- Machine: {meta['machine']}.",
        f"- Runs finished: {sum(r.id in results for r in grid(tables))} of {len(grid(tables))}; a `-` is a run "
        "not finished yet.",
        "",
        "Protocols: **usage** trains on `Training`, selects the checkpoint on `PublicTest` and scores once on "
        "`PrivateTest`; **dedup** is the same model scored on `PrivateTest` without the rows that have an exact "
        "or near duplicate in `Training` (and, in MFER2013, their masked / unmasked twins); **paper** is the "
        "paper's random 80/10/10 split over rows (its own training run), which on MFER2013 puts the masked "
        "and unmasked copy of a face on both sides. **leak** = paper - usage, in points. Accuracy, precision, "
        "recall and F1 in %; precision / recall / F1 are macro averages under `usage`. Parameters and "
        "multiply-adds (the paper's \"FLOPs\") ours (paper's); latency: batch 1, float32, 1 CPU thread, ms. "
        "The paper's Mini-Xceptions have about 10x our parameters (0.61M / 0.68M); the grid trains the 57k / 60k "
        "models (the `_paper`-sized ones cost 5x more per image; see docs/models.md).",
        "",
    ]
    if "1" in tables:
        lines += ["## Table 1: five models on MFER2013", "",
                  "| model | paper acc | usage acc | dedup acc | paper-split acc | leak | P / R / F1 (usage) "
                  "| params | multiply-adds | latency ms |",
                  "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
        for m in TABLE1_MODELS:
            u, p = Run(m, "mfer2013", "usage"), Run(m, "mfer2013", "paper")
            lines.append(f"| {m} | {PAPER_ACCURACY['1'][m]:.1f} | {_pct(_score(results, u, 'usage'))} "
                         f"| {_pct(_score(results, u, 'dedup'))} | {_pct(_score(results, p, 'paper'))} "
                         f"| {_inflation(results, u, p)} | {_prf(results, u)} | {_cost_cells(m, costs)} |")
        lines.append("")
    if "2" in tables:
        lines += ["## Table 2: Mini-Xception + CBAM on three datasets", "",
                  "| dataset | paper acc | usage acc | dedup acc | paper-split acc | leak | P / R / F1 (usage) |",
                  "|---|--:|--:|--:|--:|--:|--:|"]
        for d in DATASETS:
            u, p = Run("mini_xception_cbam", d, "usage"), Run("mini_xception_cbam", d, "paper")
            lines.append(f"| {d} | {PAPER_ACCURACY['2'][d]:.1f} | {_pct(_score(results, u, 'usage'))} "
                         f"| {_pct(_score(results, u, 'dedup'))} | {_pct(_score(results, p, 'paper'))} "
                         f"| {_inflation(results, u, p)} | {_prf(results, u)} |")
        lines.append("")
    if "3" in tables:
        lines += ["## Table 3: attention ablation on FER2013 (usage protocol, mean ± std over seeds "
                  + ", ".join(map(str, TABLE3_SEEDS)) + ")", "",
                  "| model | paper acc | paper gain | usage acc | gain over mini_xception | dedup acc "
                  "| macro F1 | params | multiply-adds | latency ms |",
                  "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
        base = [_score(results, Run("mini_xception", "fer2013", "usage", s), "usage") for s in TABLE3_SEEDS]
        for m in TABLE3_MODELS:
            runs = [Run(m, "fer2013", "usage", s) for s in TABLE3_SEEDS]
            acc = [a for a in (_score(results, r, "usage") for r in runs) if a is not None]
            dedup = [a for a in (_score(results, r, "dedup") for r in runs) if a is not None]
            f1 = [a for a in (_score(results, r, "usage", "macro_f1") for r in runs) if a is not None]
            gains = [a - b for a, b in zip((_score(results, r, "usage") for r in runs), base)
                     if a is not None and b is not None]
            paper_gain = PAPER_ACCURACY["3"][m] - PAPER_ACCURACY["3"]["mini_xception"]
            gain = "-" if m == "mini_xception" or not gains else (
                f"{100 * statistics.mean(gains):+.1f}" + (f" ± {100 * statistics.stdev(gains):.1f}"
                                                          if len(gains) > 1 else ""))
            lines.append(f"| {m} | {PAPER_ACCURACY['3'][m]:.1f} | {paper_gain:+.1f} | {_mean_std(acc)} | {gain} "
                         f"| {_mean_std(dedup)} | {_mean_std(f1)} | {_cost_cells(m, costs)} |")
        lines.append("")
    lines += _reading(results, tables)
    lines += ["## Every run", "",
              "| run | epochs | best epoch | final train acc | test rows | removed as duplicates | train min "
              "| img/s | device / precision (CPU) | data |", "|---|--:|--:|--:|--:|--:|--:|--:|---|---|"]
    starred = False
    for run in grid(tables):
        r = results.get(run.id)
        if r is None:
            lines.append(f"| {run.id} | {budget.epochs_for(run.model)} | - | - | - | - | - | - | not run yet | |")
            continue
        data = _data_cell(r, meta["sha256"].get(run.dataset))
        starred |= data.endswith("*")
        first = next(iter(r["scores"].values()))
        removed = r["scores"].get("dedup", {}).get("removed", "-")
        res = r.get("resolved", {})
        lines.append(f"| {run.id} | {r['epochs']} | {r['best_epoch']} | {_pct(r.get('final_train_acc'))} "
                     f"| {first['n']} | {removed} | {r['train_seconds'] / 60:.1f} | {r['images_per_s']} "
                     f"| {res.get('device', '?')} / {res.get('amp', '?')} ({res.get('cpu_capability', '?')}) "
                     f"| {data} |")
    if starred:
        lines += ["", "`*`: trained on another file of the same maskgen build recipe (same inputs, seed, options, "
                  "maskgen and library versions; build id in the records), e.g. made on a CPU with other SIMD "
                  "paths. By the build's determinism statement such files differ at most by a gray level in a few "
                  "pixels, except rows whose landmark decision sits on a rounding boundary (docs/results.md, "
                  "\"Determinism\")."]
    lines.append("")
    if meta.get("plot"):
        lines += [f"![accuracy per model and protocol]({meta['plot']})", ""]
    return "\n".join(lines)


def _data_cell(result: dict[str, Any], current: str | None) -> str:
    """The run's data checksum (12 hex digits), starred when it is not the file the tables name."""
    sha = str(result.get("data_sha256", "?"))
    return f"`{sha[:12]}`" + ("*" if current is not None and sha != current else "")


def _reading(results: dict[str, dict[str, Any]], tables: Sequence[str]) -> list[str]:
    """A short reading of the gaps, computed from the results (no number typed in)."""
    out = ["## Reading", ""]
    if "1" in tables or "2" in tables:
        leaks = []
        for m in TABLE1_MODELS:
            u, p = Run(m, "mfer2013", "usage"), Run(m, "mfer2013", "paper")
            a, b = _score(results, p, "paper"), _score(results, u, "usage")
            if a is not None and b is not None:
                leaks.append((m, 100 * (a - b)))
        if leaks:
            mean = statistics.mean(v for _, v in leaks)
            base = [v for s in TABLE3_SEEDS
                    if (v := _score(results, Run("mini_xception", "fer2013", "usage", s), "usage")) is not None]
            noise = 100 * statistics.stdev(base) if len(base) > 1 else 1.0
            fitted = [r["final_train_acc"] > r["scores"]["paper"]["accuracy"] for m in TABLE1_MODELS
                      if (r := results.get(Run(m, "mfer2013", "paper").id)) and r.get("final_train_acc") is not None]
            if abs(mean) <= noise:
                verdict = (f"on average {mean:+.1f}, within the seed-to-seed spread (± {noise:.1f})"
                           + (": no model has fitted its training faces yet (final training accuracy below its test "
                              "accuracy), so there is little for the twins to leak" if fitted and not any(fitted) else ""))
            elif mean > 0:
                verdict = ("on average the random split scores higher: a model that has seen a face unmasked "
                           "recognises its masked copy")
            else:
                verdict = "on average the random split scores lower at this budget"
            out.append("- **Leak on MFER2013** (paper split minus usage): "
                       + ", ".join(f"{v:+.1f} ({m})" for m, v in leaks) + f" points; {verdict}.")
        gaps = [(m, PAPER_ACCURACY["1"][m] - 100 * a) for m in TABLE1_MODELS
                if (a := _score(results, Run(m, "mfer2013", "paper"), "paper")) is not None]
        if gaps:
            out.append("- **Gap to the paper under its own split:** "
                       + ", ".join(f"{v:.1f} ({m})" for m, v in gaps)
                       + " points below the paper at this budget. The last table gives each run's final training "
                         "accuracy: a model that has not fitted its training faces shows less of the leak.")
        usage = {m: a for m in TABLE1_MODELS if (a := _score(results, Run(m, "mfer2013", "usage"), "usage")) is not None}
        if len(usage) > 1:
            ours = sorted(usage, key=lambda m: -usage[m])
            theirs = sorted(usage, key=lambda m: -PAPER_ACCURACY["1"][m])
            out.append("- **Ranking of the models** (Table 1, usage): " + " > ".join(ours)
                       + ("; the same order as the paper's." if ours == theirs else "; the paper's: " + " > ".join(theirs) + "."))
    dedup = [(r["id"], 100 * (r["scores"]["usage"]["accuracy"] - r["scores"]["dedup"]["accuracy"]))
             for r in results.values() if "dedup" in r.get("scores", {}) and "usage" in r["scores"]]
    if dedup:
        values = [v for _, v in dedup]
        out.append(f"- **Duplicates between Training and PrivateTest** add {statistics.mean(values):+.1f} points on "
                   f"average (usage minus dedup, {min(values):+.1f} to {max(values):+.1f} over {len(values)} runs)"
                   + (": a model scores higher on test faces it has seen in training." if statistics.mean(values) > 0
                      else ": at this budget the duplicated faces are no easier than the others."))
    if "2" in tables:
        fer = _score(results, Run("mini_xception_cbam", "fer2013", "usage"), "usage")
        smfer = _score(results, Run("mini_xception_cbam", "smfer2013", "usage"), "usage")
        if fer is not None and smfer is not None:
            paper_cost = PAPER_ACCURACY["2"]["fer2013"] - PAPER_ACCURACY["2"]["smfer2013"]
            out.append(f"- **What masks cost** (Table 2, usage): {100 * (fer - smfer):.1f} points from FER2013 to "
                       f"SMFER2013 (the paper: {paper_cost:.1f}).")
    if "3" in tables:
        base = [_score(results, Run("mini_xception", "fer2013", "usage", s), "usage") for s in TABLE3_SEEDS]
        spread = [v for v in base if v is not None]
        cbam = [_score(results, Run("mini_xception_cbam", "fer2013", "usage", s), "usage") for s in TABLE3_SEEDS]
        gains = [a - b for a, b in zip(cbam, base) if a is not None and b is not None]
        if len(spread) > 1 and gains:
            out.append(f"- **CBAM's gain** is {100 * statistics.mean(gains):+.1f} points over "
                       f"{len(gains)} seed(s) against the paper's +4.1; the seed-to-seed spread of Mini-Xception "
                       f"alone is ± {100 * statistics.stdev(spread):.1f}.")
    if len(out) == 2:
        out.append("- Nothing to read until runs finish.")
    return out + [""]


def _bars(ax: Any, labels: Sequence[str], series: dict[str, list[float | None]], paper: Sequence[float],
          title: str) -> None:
    """Grouped bars: one group per label, one bar per series (None: not run yet), then the paper's value."""
    width = 0.8 / (len(series) + 1)
    x = np.arange(len(labels))
    for k, (name, values) in enumerate(series.items()):
        at = x + (k - len(series) / 2) * width
        ax.bar(at, [100 * v if v is not None else 0 for v in values], width, label=name)
        for position, value in zip(at, values):
            if value is None:
                ax.text(position, 2, "not run yet", rotation=90, fontsize=5, ha="center", va="bottom", color="0.4")
    ax.bar(x + (len(series) / 2) * width, paper, width, label="paper (reported)", color="0.6", hatch="//")
    _frame(ax, labels, title)


def _frame(ax: Any, labels: Sequence[str], title: str) -> None:
    ax.set_xticks(np.arange(len(labels)), [name.replace("mini_xception", "mini_x") for name in labels], fontsize=7)
    ax.set_ylim(0, 118)
    ax.set_yticks(range(0, 101, 20))
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, ncol=2, loc="upper center", frameon=False)


def plot_tables(results: dict[str, dict[str, Any]], path: Path) -> Path | None:
    """The three tables as bar charts: ours under each protocol beside the paper's value (None: no run yet).

    Table 3 shows the mean over seeds with the seed-to-seed standard deviation as error bars and
    each seed as a dot.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fer_models.metrics import save_figure

    if not results:
        return None

    def protocols(runs: Sequence[tuple[Run, Run]]) -> dict[str, list[float | None]]:
        return {"usage": [_score(results, u, "usage") for u, _ in runs],
                "dedup": [_score(results, u, "dedup") for u, _ in runs],
                "paper split (ours)": [_score(results, p, "paper") for _, p in runs]}

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), dpi=110, gridspec_kw={"width_ratios": [5, 3, 4]})
    models = list(TABLE1_MODELS)
    _bars(axes[0], models, protocols([(Run(m, "mfer2013", "usage"), Run(m, "mfer2013", "paper")) for m in models]),
          [PAPER_ACCURACY["1"][m] for m in models], "Table 1: five models on MFER2013")
    axes[0].set_ylabel("test accuracy (%)")
    sets = list(DATASETS)
    _bars(axes[1], sets, protocols([(Run("mini_xception_cbam", d, "usage"), Run("mini_xception_cbam", d, "paper"))
                                    for d in sets]),
          [PAPER_ACCURACY["2"][d] for d in sets], "Table 2: Mini-Xception + CBAM")
    ax = axes[2]
    variants = list(TABLE3_MODELS)
    x = np.arange(len(variants))
    for k, m in enumerate(variants):
        seeds = [v for s in TABLE3_SEEDS if (v := _score(results, Run(m, "fer2013", "usage", s), "usage")) is not None]
        if seeds:
            std = statistics.stdev(seeds) if len(seeds) > 1 else 0.0
            ax.bar(k - 0.2, 100 * statistics.mean(seeds), 0.4, yerr=100 * std, capsize=3, color="C0",
                   label="usage, mean ± std over seeds" if k == 0 else None)
            ax.plot([k - 0.2] * len(seeds), [100 * v for v in seeds], "k.", markersize=4)
        else:
            ax.text(k - 0.2, 2, "not run yet", rotation=90, fontsize=5, ha="center", va="bottom", color="0.4")
    ax.bar(x + 0.2, [PAPER_ACCURACY["3"][m] for m in variants], 0.4, color="0.6", hatch="//", label="paper (reported)")
    _frame(ax, variants, "Table 3: attention ablation on FER2013")
    fig.tight_layout()
    return save_figure(fig, path)


def benchmark(paths: dict[str, str], out: str | Path, budget: str = "cpu", recipe: str = "default",
              tables: Iterable[str] = TABLES, write: str | Path | None = None, command: str = "",
              echo: Callable[[str], None] = print, limit: int | None = None,
              records: str | Path | None = None, only: Sequence[str] = ()) -> dict[str, Any]:
    """Run the grid (resuming), measure model cost, write the tables; returns what was written.

    Args:
        paths: dataset name (:data:`DATASETS`) -> FER2013-format CSV (plain or gzip).
        write: markdown file for the tables (default ``OUT/paper_tables.md``); the plot goes beside it.
        limit: train at most this many new runs in this call.
        records: the records file (default: ``write`` with the suffix ``.json``).
        only: train only runs whose id matches one of these patterns (:func:`run_grid`).

    Raises:
        ValueError: unknown budget, recipe or table, a missing dataset, or a finished run made with
            other settings.
    """
    from fer_models.summary import machine_description
    from maskgen.io import atomic_write

    tables = list(tables)
    for t in tables:
        if t not in TABLES:
            raise ValueError(f"unknown table {t!r}; expected one of {', '.join(TABLES)}")
    for pattern in only:
        if not any(fnmatch.fnmatchcase(r.id, pattern) for r in grid(tables)):
            raise ValueError(f"--only {pattern!r} matches no run of tables {','.join(tables)} (run ids look like "
                             f"{grid(tables)[0].id})")
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; expected one of {', '.join(BUDGETS)}")
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; expected one of {', '.join(RECIPES)}")
    missing = [d for d in datasets_needed(tables) if not paths.get(d)]
    if missing:
        raise ValueError(f"tables {','.join(tables)} need {', '.join(missing)}: give --{' --'.join(missing)} "
                         "(or --build)")
    for d in datasets_needed(tables):
        if not Path(paths[d]).is_file():
            raise ValueError(f"{d}: {paths[d]} is not a file (the benchmark takes FER2013-format CSVs)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = GridContext(paths=dict(paths), out=out, budget=BUDGETS[budget], recipe=recipe, command=command)
    for d in datasets_needed(tables):
        ctx.checksum(d)
    write_path = Path(write) if write is not None else out / "paper_tables.md"
    records_path = Path(records) if records is not None else write_path.with_suffix(".json")
    results = run_grid(ctx, tables, echo=echo, limit=limit, records=records_path, only=only)
    models = sorted({r.model for r in grid(tables)}, key=lambda m: (m not in TABLE1_MODELS, m))
    cost_path = out / f"costs-{'timed' if ctx.budget.timing else 'untimed'}.json"
    costs = json.loads(cost_path.read_text()) if cost_path.is_file() else {}
    costs = {m: c for m, c in costs.items() if c.get("params") == _param_count(m)}  # drop renamed architectures
    if set(models) - set(costs):
        costs.update(model_costs([m for m in models if m not in costs], timing=ctx.budget.timing))
        with atomic_write(cost_path) as tmp:
            tmp.write_text(json.dumps(costs, indent=2) + "\n")
    plot = plot_tables(results, write_path.with_suffix(".png"))
    meta = {"command": command, "budget": budget, "recipe": recipe, "sha256": ctx.sha256,
            "machine": machine_description(), "plot": plot.name if plot is not None else None}
    text = render_tables(results, costs, meta, tables)
    with atomic_write(write_path) as tmp:
        tmp.write_text(text)
    echo(f"wrote {write_path}" + (f" and {plot}" if plot is not None else ""))
    return {"results": results, "costs": costs, "path": write_path, "plot": plot, "records": records_path,
            "finished": sum(r.id in results for r in grid(tables)), "total": len(grid(tables))}


def build_datasets(fer: str | Path, out: Path, seed: int = 0, jobs: int | None = None,
                   echo: Callable[[str], None] = print) -> dict[str, str]:
    """SMFER2013 and MFER2013 made from ``fer`` with maskgen (seed ``seed``) under ``out/data``; reused if there."""
    from maskgen.mfer import build_mfer
    from maskgen.pipeline import BuildConfig
    from maskgen.smfer import build_smfer

    from maskgen.io import file_sha256, manifest_path

    folder = out / "data"
    folder.mkdir(parents=True, exist_ok=True)
    smfer, mfer = folder / f"smfer2013-seed{seed}.csv", folder / f"mfer2013-seed{seed}.csv"
    fer_sha = file_sha256(fer)
    for path, manifest, key in ((smfer, manifest_path(smfer), "input_sha256"), (mfer, manifest_path(mfer), "fer_sha256")):
        if path.is_file():
            made_from = json.loads(Path(manifest).read_text()).get(key) if Path(manifest).is_file() else None
            if made_from != fer_sha:
                raise ValueError(f"{path} was not built from {fer} (its manifest says {made_from!r}); "
                                 "use another --out or remove it")
    if not smfer.is_file():
        echo(f"building {smfer} (maskgen, seed {seed})")
        build_smfer(fer, smfer, config=BuildConfig(seed=seed), jobs=jobs)
    if not mfer.is_file():
        echo(f"building {mfer} (seed {seed})")
        build_mfer(fer, smfer, mfer, seed=seed)
    return {"fer2013": str(fer), "smfer2013": str(smfer), "mfer2013": str(mfer)}


__all__ = ["BUDGETS", "DATASETS", "PAPER_ACCURACY", "PAPER_COST", "PROTOCOLS", "Run", "benchmark",
           "build_datasets", "duplicate_test_rows", "grid", "load_records", "plot_tables", "render_tables", "run_grid",
           "same_data", "save_records", "table_runs"]
