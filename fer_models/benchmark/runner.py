"""Running the grid: one resumable run folder per run, its result and the records file.

A *run* (:class:`~fer_models.benchmark.spec.Run`) trains in its own folder under ``OUT/runs/``
and is scored under up to three protocols:

- ``usage``: train on ``Training``, select on ``PublicTest``, score once on ``PrivateTest``;
- ``dedup``: the same run scored on ``PrivateTest`` without the rows that have an exact or near
  duplicate in ``Training`` (mean absolute difference <= :data:`maskgen.audit.NEAR_MAD` grey
  levels, found exactly by :func:`maskgen.audit.near_pairs`); in a file with a ``source``
  column, a flagged row takes its masked / unmasked twins with it;
- ``paper``: a seeded random 80/10/10 split over rows, as the paper, for Tables 1 and 2. On
  MFER2013 it puts the masked and the unmasked copy of most faces on both sides, so
  ``paper - usage`` measures the leak.

The grid resumes: a run with ``result.json`` is skipped (after checking it was made with the same
budget, recipe, data and settings), an interrupted one continues from its checkpoint. Finished
results are also kept in a *records* file beside the tables (``paper_tables.json``): run folders
are large and often lost between working periods, the records are small enough to commit, and a
run found there with the same settings is not trained again.

:func:`run_grid` trains the pending runs one after another, or ``parallel`` at once in as many
spawned worker processes (each run still in its own folder; the parent merges results and
records). A run's result does not depend on how many run beside it: each is seeded from its own
config and trains in a fresh process state.
"""

from __future__ import annotations

import fnmatch
import json
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fer_models.config import TrainConfig, recipe_value
from fer_models.benchmark.spec import TABLES, Budget, Run, grid, run_config

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


@dataclass
class GridContext:
    """What a grid run knows: data paths and checksums, budget, recipe, output folder, torch threads per run
    (None: this process's; on a CPU the last bits of a run depend on it, see :func:`run_grid`)."""

    paths: dict[str, str]
    out: Path
    budget: Budget
    recipe: str
    command: str = ""
    threads: int | None = None
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
_FREE_FIELDS = ("data", "out", "progress", "threads", "device", "eval_batch_size", "compile", "cuda_graph")


def _settings(config: TrainConfig) -> dict[str, Any]:
    return {k: v for k, v in asdict(config).items() if k not in _FREE_FIELDS}


def _identity(ctx: GridContext, run: Run) -> dict[str, Any]:
    """What must match for a run to be reused or continued: the run, budget, recipe, data and every setting."""
    config = run_config(run, ctx.paths[run.dataset], ctx.out, ctx.budget, ctx.recipe)
    return {"run": asdict(run), "budget": ctx.budget.name, "epochs": ctx.budget.epochs_for(run.model),
            "recipe": ctx.recipe, "data_sha256": ctx.checksum(run.dataset), "data_build": ctx.build(run.dataset),
            "config": _settings(config), "params": param_count(run.model, config.model_kwargs)}


def param_count(model: str, model_kwargs: dict[str, Any] | None = None) -> int:
    """Parameters of ``model`` (built with ``model_kwargs``) as registered now (a renamed architecture is
    not mistaken for the old one)."""
    from fer_models.models import create_model
    from fer_models.summary import count_params

    key = (model, json.dumps(model_kwargs or {}, sort_keys=True))
    if key not in _PARAMS:
        _PARAMS[key] = count_params(create_model(model, **(model_kwargs or {})))
    return _PARAMS[key]


_PARAMS: dict[tuple[str, str], int] = {}


def _check_identity(path: Path, recorded: dict[str, Any], expected: dict[str, Any], same_bytes: bool = False) -> None:
    """ValueError unless ``recorded`` was made with the ``expected`` settings and data (:func:`same_data`;
    ``same_bytes``: the very same file, as a run continued from its checkpoint needs)."""
    recorded = dict(recorded)
    if isinstance(recorded.get("config"), dict):  # compare the settings that matter, whatever else was stored;
        # a setting added to TrainConfig after the run was recorded had its default then (that is the rule
        # for new fields: the default keeps the old behaviour)
        recorded["config"] = {k: recorded["config"][k] if k in recorded["config"] else recipe_value("default", k)
                              for k in expected["config"]}
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
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a run's result ({exc}); remove it and the run is scored again") from None
    if not isinstance(result, dict):
        raise ValueError(f"{path}: not a run's result (a JSON object); remove it and the run is scored again")
    _check_identity(path, result, _identity(ctx, run))
    return result


RECORDS_FORMAT = "fer-models benchmark records 1"


def load_records(path: Path | None, option: str = "--records") -> dict[str, dict[str, Any]]:
    """Run id -> finished result from a records file (empty if there is none).

    Raises:
        ValueError: naming ``option`` and the file: not UTF-8 JSON, not a records file, or a run entry
            without its budget and scores (each an accuracy).
    """
    if path is None or not path.is_file():
        return {}
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{option} {path}: not a benchmark records file ({exc})") from None
    if not isinstance(records, dict) or records.get("format") != RECORDS_FORMAT or not isinstance(records.get("runs"), dict):
        raise ValueError(f"{option} {path}: not a benchmark records file (expected format {RECORDS_FORMAT!r})")
    for run_id, entry in records["runs"].items():
        scores = entry.get("scores") if isinstance(entry, dict) else None
        if (not isinstance(entry.get("budget") if isinstance(entry, dict) else None, str)
                or not isinstance(scores, dict) or not scores
                or not all(isinstance(v, dict) and isinstance(v.get("accuracy"), (int, float)) for v in scores.values())):
            raise ValueError(f"{option} {path}: run {run_id!r} is not a finished run's record (it needs a budget "
                             "and scores, each with an accuracy)")
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
    if ctx.threads is not None:
        config = replace(config, threads=ctx.threads)
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


def _eta(pending: Sequence[Run], done: dict[str, dict[str, Any]], ctx: GridContext, parallel: int = 1) -> str:
    """Remaining time, from the measured seconds per epoch and training row of finished runs of each model
    (else their median) and the training rows of finished runs on each dataset (else their median),
    divided by the runs trained at once (``parallel``; a run's measured seconds are its wall time, so
    runs that shared the machine count at the speed they had).

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
                  for r in pending) / max(1, min(parallel, len(pending)))
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
             limit: int | None = None, records: Path | None = None, only: Sequence[str] = (), parallel: int = 1
             ) -> dict[str, dict[str, Any]]:
    """Run every run of ``tables`` not finished yet; return run id -> result.

    Args:
        limit: stop after this many new runs (the rest are left for a later call).
        only: train only the runs whose id matches one of these shell patterns (``fnmatch``),
            e.g. ``mfer2013-vit-*``; the others are left for a later call.
        records: a records file (:func:`save_records`): its runs made with the same settings
            count as finished; each new result is added to it as soon as it is made.
        parallel: train this many runs at once, each in a spawned worker process with
            ``ctx.threads`` torch threads, by default ``max(1, torch threads // parallel)``
            (:func:`_run_parallel`); 1: one after another in this process.

    A run's result does not depend on ``parallel`` or on the order runs finish in: each is seeded
    from its own config and trains in a fresh model and optimizer state. On a CPU it does depend,
    in its last bits, on its torch thread count (sums split over threads add in another order),
    so tables made with the same ``ctx.threads`` are identical whatever ``parallel`` is.
    """
    if parallel < 1:
        raise ValueError(f"parallel must be >= 1, got {parallel}")
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
         + f", {len(pending)} to run (budget {ctx.budget.name}, recipe {ctx.recipe}"
         + (f", {parallel} at once" if parallel > 1 else "") + f"); {_eta(pending, done, ctx, parallel)}")
    if only:
        pending = [r for r in pending if any(fnmatch.fnmatchcase(r.id, pattern) for pattern in only)]
        echo(f"--only {' '.join(only)}: {len(pending)} of them now")
    if records is not None and done:
        save_records(records, done)  # results of run folders the records do not have yet
    todo = pending if limit is None else pending[:limit]

    def finished(run: Run, result: dict[str, Any]) -> None:
        done[run.id] = result
        if records is not None:
            save_records(records, {run.id: result})
        left = [r for r in pending if r.id not in done]
        echo(f"[{len(done)}/{len(runs)}] {run.id} done in {result['wall_seconds'] / 60:.1f} min: "
             + ", ".join(f"{p} {s['accuracy']:.4f}" for p, s in result["scores"].items())
             + f"; {len(left)} left, {_eta(left, done, ctx, parallel)}")

    if parallel > 1 and len(todo) > 1:
        _run_parallel(ctx, todo, parallel, finished, echo, total=len(runs), done=len(done))
        return done
    for run in todo:
        echo(f"[{len(done) + 1}/{len(runs)}] {run.id}: {ctx.budget.epochs_for(run.model)} epochs")
        finished(run, execute_run(ctx, run))
    return done


# ---------------------------------------------------------------- runs at once, in worker processes

#: The grid context of this worker process (set once by :func:`_worker_start`; its dataset cache lives on).
_WORKER_CTX: list[GridContext] = []


def run_threads(threads: int | None, parallel: int) -> int | None:
    """Torch threads of each run: ``threads`` if given; with ``parallel`` > 1, this process's divided by
    ``parallel`` (at least 1); else None (one run at a time in this process, its own thread count)."""
    import torch

    if threads is not None or parallel <= 1:
        return threads
    return max(1, torch.get_num_threads() // parallel)


def _worker_start(ctx: GridContext, threads: int) -> None:
    """Initializer of a worker process: its torch threads, its context; Ctrl-C ignored while idle."""
    import signal

    import torch

    torch.set_num_threads(threads)
    _WORKER_CTX[:] = [ctx]
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _worker_run(run: Run) -> dict[str, Any]:
    """Train ``run`` in a worker process; Ctrl-C (SIGINT) interrupts it as it would the parent."""
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return execute_run(_WORKER_CTX[0], run)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_parallel(ctx: GridContext, todo: Sequence[Run], parallel: int,
                  finished: Callable[[Run, dict[str, Any]], None], echo: Callable[[str], None],
                  total: int, done: int) -> None:
    """Train ``todo`` ``parallel`` at a time in spawned worker processes, in grid order.

    Each run is :func:`execute_run` in a worker (its own run folder, resumable as any run); the
    parent hands out one run per idle worker (no run is queued ahead, so an interruption stops no
    more than the runs in progress) and passes every result to ``finished`` as it comes, which
    merges it into the records. A failed run stops handing out new ones; the runs in progress
    finish and are recorded, then the first error is raised. Ctrl-C (SIGINT to the parent, or to
    the whole process group from a terminal) interrupts every run in progress: each continues
    from its last finished epoch on the next call.
    """
    import multiprocessing
    import os
    import signal
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

    workers = min(parallel, len(todo))
    threads = run_threads(ctx.threads, parallel)
    spawn = multiprocessing.get_context("spawn")
    others = set(multiprocessing.active_children())  # children not of this pool are left alone
    spec = replace(ctx, threads=threads, _data={}, _duplicates={})  # without this process's caches
    queue = list(todo)
    running: dict[Future[dict[str, Any]], Run] = {}
    error: BaseException | None = None
    echo(f"{len(todo)} runs, {workers} at once in worker processes with {threads} torch thread(s) each")
    executor = ProcessPoolExecutor(workers, mp_context=spawn, initializer=_worker_start, initargs=(spec, threads))
    try:
        while running or (queue and error is None):
            while queue and error is None and len(running) < workers:
                run = queue.pop(0)
                running[executor.submit(_worker_run, run)] = run
                echo(f"[{done + len(running)}/{total}] {run.id}: {ctx.budget.epochs_for(run.model)} epochs "
                     f"(worker, {len(running)} running)")
            ready, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in ready:
                run = running.pop(future)
                try:
                    result = future.result()
                except Exception as exc:  # the others finish; the first error is raised after them
                    echo(f"{run.id} failed: {exc}" + ("; finishing the runs in progress" if running else ""))
                    error = error or exc
                    continue
                done += 1
                finished(run, result)
    except KeyboardInterrupt:
        for worker in set(multiprocessing.active_children()) - others:
            try:  # from a terminal the workers have the SIGINT already; after `kill -INT PARENT` they need it
                os.kill(worker.pid, signal.SIGINT)
            except (ProcessLookupError, TypeError):
                pass
        echo(f"interrupted: {len(running)} run(s) in progress stopped; each continues from its last finished "
             "epoch on the next call")
        raise
    finally:  # nothing is queued ahead: waits for the runs in progress to finish (or stop, after Ctrl-C)
        executor.shutdown(wait=True, cancel_futures=True)
    if error is not None:
        raise error


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


__all__ = ["GridContext", "RECORDS_FORMAT", "duplicate_test_rows", "execute_run", "load_records", "load_result",
           "model_costs", "param_count", "result_path", "run_grid", "same_data", "save_records"]
