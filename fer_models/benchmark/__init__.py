"""The paper's three tables, run under honest protocols: ``fer-models benchmark``.

The paper (Zhang, Abdul-Rahman, Sabri) reports three tables: five models on MFER2013 (Table 1),
Mini-Xception + CBAM on FER2013 / SMFER2013 / MFER2013 (Table 2) and an attention ablation
(Table 3). This package runs the same grid and scores every cell under up to three protocols
(``usage``, ``dedup``, ``paper``; :mod:`~fer_models.benchmark.runner` says what each means).
One job per module, imports one way (spec <- runner <- report / plot <- command):

- :mod:`~fer_models.benchmark.spec`: the grid spec: :class:`Run`, :class:`Budget` (``smoke``,
  ``cpu``, ``full``), which runs each table needs, a run's config, the paper's numbers;
- :mod:`~fer_models.benchmark.runner`: a run in its own resumable folder, its result, the records
  file, the grid one run after another or several at once in worker processes, the ETA;
- :mod:`~fer_models.benchmark.report`: the markdown tables and their reading;
- :mod:`~fer_models.benchmark.plot`: the bar charts;
- :mod:`~fer_models.benchmark.command`: :func:`benchmark`, what ``fer-models benchmark`` runs;
- :mod:`~fer_models.benchmark.datasets`: SMFER2013 / MFER2013 built from FER2013 (``--build``).

This module only re-exports their public names.
"""

from __future__ import annotations

from fer_models.benchmark.command import benchmark, check_request, output_files
from fer_models.benchmark.datasets import build_datasets
from fer_models.benchmark.plot import plot_tables
from fer_models.benchmark.report import render_tables
from fer_models.benchmark.runner import (
    RECORDS_FORMAT, GridContext, duplicate_test_rows, execute_run, load_records, load_result, model_costs,
    param_count, result_path, run_grid, same_data, save_records,
)
from fer_models.benchmark.spec import (
    BUDGETS, DATASETS, MODEL_OVERRIDES, PAPER_ACCURACY, PAPER_COST, PROTOCOLS, TABLE1_MODELS, TABLE3_MODELS,
    TABLE3_SEEDS, TABLES, Budget, Run, datasets_needed, grid, run_config, score, table_runs,
)

__all__ = ["BUDGETS", "DATASETS", "MODEL_OVERRIDES", "PAPER_ACCURACY", "PAPER_COST", "PROTOCOLS", "RECORDS_FORMAT",
           "TABLE1_MODELS", "TABLE3_MODELS", "TABLE3_SEEDS", "TABLES", "Budget", "GridContext", "Run", "benchmark",
           "check_request", "build_datasets", "datasets_needed", "duplicate_test_rows", "execute_run", "grid",
           "load_records", "load_result", "model_costs", "output_files", "param_count", "plot_tables",
           "render_tables", "result_path", "run_config", "run_grid", "same_data", "save_records", "score",
           "table_runs"]
