"""``fer-models benchmark`` as a function: check the request, run the grid, measure the models, write the tables.

:func:`benchmark` is the one entry point the command line calls: it checks the tables, budget,
recipe and data, runs the grid (:func:`fer_models.benchmark.runner.run_grid`, resuming, optionally
several runs at once), measures each model's cost once per output folder, and writes the markdown
(:mod:`~fer_models.benchmark.report`) and the plot (:mod:`~fer_models.benchmark.plot`).
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from fer_models.benchmark.plot import plot_tables
from fer_models.benchmark.report import beside_budget, render_tables
from fer_models.benchmark.runner import (GridContext, load_records, model_costs, param_count, run_grid,
                                         run_threads)
from fer_models.benchmark.spec import BUDGETS, TABLE1_MODELS, TABLES, datasets_needed, grid
from fer_models.config import RECIPES


def output_files(out: str | Path, write: str | Path | None = None,
                 records: str | Path | None = None) -> dict[str, Path]:
    """The files the benchmark writes besides its run folders, by the option that names them: ``--write``
    (default ``OUT/paper_tables.md``), ``--records`` (default: ``--write`` with ``.json``), ``the plot``
    (``--write`` with ``.png``).

    Raises:
        ValueError: two of them would be one file (``--write tables.json`` with no ``--records``, say).
    """
    write_path = Path(write) if write is not None else Path(out) / "paper_tables.md"
    files = {"--write": write_path,
             "--records": Path(records) if records is not None else write_path.with_suffix(".json"),
             "the plot": write_path.with_suffix(".png")}
    seen: dict[Path, str] = {}
    for role, path in files.items():
        first = seen.setdefault(path.resolve(), role)
        if first != role:
            why = "the plot is --write with .png" if role == "the plot" else "--records defaults to --write with .json"
            raise ValueError(f"{first} and {role} would both be {path} ({why}): the tables, the records and the "
                             "plot need three files; give --write a .md name or --records its own file")
    return files


def check_request(out: str | Path, budget: str, recipe: str, tables: Sequence[str], *,
                  write: str | Path | None = None, records: str | Path | None = None, only: Sequence[str] = (),
                  parallel: int = 1, threads: int | None = None, beside: str | Path | None = None
                  ) -> tuple[dict[str, Path], dict[str, dict[str, Any]] | None]:
    """Everything about a request that can be checked before any work (before ``--build`` too): tables,
    patterns, budget, recipe, counts, the output files (:func:`output_files`), the records and ``beside``
    files' contents. Returns the output files and ``beside``'s runs (None without it).

    Raises:
        ValueError: naming the option and what is wrong.
    """
    if not tables:
        raise ValueError(f"--tables: no table given; expected some of {', '.join(TABLES)}")
    for t in tables:
        if t not in TABLES:
            raise ValueError(f"unknown table {t!r}; expected one of {', '.join(TABLES)}")
    for pattern in only:
        if not any(fnmatch.fnmatchcase(r.id, pattern) for r in grid(tables)):
            raise ValueError(f"--only {pattern!r} matches no run of tables {','.join(tables)} (run ids look like "
                             f"{grid(tables)[0].id})")
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; expected one of {', '.join(BUDGETS)}")
    if parallel < 1:
        raise ValueError(f"--parallel must be at least 1, got {parallel}")
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; expected one of {', '.join(RECIPES)}")
    files = output_files(out, write, records)
    write_path, records_path = files["--write"], files["--records"]
    beside_runs = None
    if beside is not None:
        if not Path(beside).is_file():
            raise ValueError(f"--beside {beside}: not a file (give a benchmark records file)")
        if Path(beside).resolve() in (write_path.resolve(), records_path.resolve()):
            raise ValueError(f"--beside {beside} is this grid's own records or tables file, which the benchmark "
                             "writes; give the other budget's records file")
        beside_runs = load_records(Path(beside), "--beside")
        beside_budget(beside_runs, budget)
    load_records(records_path)  # a broken records file stops the command now, not after the grid
    return files, beside_runs


def benchmark(paths: dict[str, str], out: str | Path, budget: str = "cpu", recipe: str = "default",
              tables: Iterable[str] = TABLES, write: str | Path | None = None, command: str = "",
              echo: Callable[[str], None] = print, limit: int | None = None,
              records: str | Path | None = None, only: Sequence[str] = (), parallel: int = 1,
              threads: int | None = None, beside: str | Path | None = None) -> dict[str, Any]:
    """Run the grid (resuming), measure model cost, write the tables; returns what was written.

    Args:
        paths: dataset name (:data:`DATASETS`) -> FER2013-format CSV (plain or gzip).
        write: markdown file for the tables (default ``OUT/paper_tables.md``); the plot goes beside it.
        limit: train at most this many new runs in this call.
        records: the records file (default: ``write`` with the suffix ``.json``).
        only: train only runs whose id matches one of these patterns (:func:`run_grid`).
        parallel: train this many runs at once, in worker processes (:func:`run_grid`).
        threads: torch threads of each run (default: this process's, divided by ``parallel``).
            On a CPU the last bits of a run depend on its thread count: the same ``threads``
            gives the same tables whatever ``parallel`` is.
        beside: a records file of the same grid at another budget: its cells are shown beside these
            (:func:`~fer_models.benchmark.report.render_tables`); read only.

    Raises:
        ValueError: unknown budget, recipe or table, a missing dataset, ``parallel`` < 1, a finished
            run made with other settings, or ``beside`` records of no other single budget.
    """
    from fer_models.summary import machine_description
    from maskgen.io import atomic_write

    tables = list(tables)
    files, beside_runs = check_request(out, budget, recipe, tables, write=write, records=records, only=only,
                                       parallel=parallel, threads=threads, beside=beside)
    write_path, records_path = files["--write"], files["--records"]
    missing = [d for d in datasets_needed(tables) if not paths.get(d)]
    if missing:
        raise ValueError(f"tables {','.join(tables)} need {', '.join(missing)}: give --{' --'.join(missing)} "
                         "(or --build)")
    for d in datasets_needed(tables):
        if not Path(paths[d]).is_file():
            raise ValueError(f"{d}: {paths[d]} is not a file (the benchmark takes FER2013-format CSVs)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = GridContext(paths=dict(paths), out=out, budget=BUDGETS[budget], recipe=recipe, command=command,
                      threads=threads)
    for d in datasets_needed(tables):
        ctx.checksum(d)
    results = run_grid(ctx, tables, echo=echo, limit=limit, records=records_path, only=only,
                       parallel=parallel)
    models = sorted({r.model for r in grid(tables)}, key=lambda m: (m not in TABLE1_MODELS, m))
    cost_path = out / f"costs-{'timed' if ctx.budget.timing else 'untimed'}.json"
    try:
        costs = json.loads(cost_path.read_text()) if cost_path.is_file() else {}
        costs = costs if isinstance(costs, dict) and all(isinstance(c, dict) for c in costs.values()) else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        costs = {}  # a cache: a damaged one is measured again and replaced
    costs = {m: c for m, c in costs.items() if c.get("params") == param_count(m)}  # drop renamed architectures
    if set(models) - set(costs):
        costs.update(model_costs([m for m in models if m not in costs], timing=ctx.budget.timing))
        with atomic_write(cost_path) as tmp:
            tmp.write_text(json.dumps(costs, indent=2) + "\n")
    plot = plot_tables(results, files["the plot"])
    machine = machine_description(run_threads(threads, parallel)) + (
        f" per run, {parallel} runs at a time" if parallel > 1 else "")
    meta = {"command": command, "budget": budget, "recipe": recipe, "sha256": ctx.sha256,
            "machine": machine, "plot": plot.name if plot is not None else None,
            "beside": f"`{beside}`"}
    text = render_tables(results, costs, meta, tables, beside=beside_runs)
    with atomic_write(write_path) as tmp:
        tmp.write_text(text)
    echo(f"wrote {write_path}" + (f" and {plot}" if plot is not None else ""))
    return {"results": results, "costs": costs, "path": write_path, "plot": plot, "records": records_path,
            "finished": sum(r.id in results for r in grid(tables)), "total": len(grid(tables))}


__all__ = ["benchmark", "check_request", "output_files"]
