"""The tables as markdown (``docs/paper_tables.md``): every cell with the paper's value beside ours.

:func:`render_tables` turns finished results (run id -> result, as :mod:`fer_models.benchmark.runner`
writes them) and model costs into the markdown; the *Reading* section is computed from the results
(no number typed in): the leak on MFER2013, the gap to the paper, the ranking of the models, what
duplicates and masks cost, CBAM's gain against the seed-to-seed spread.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from fer_models.benchmark.spec import (
    BUDGETS, DATASETS, MODEL_OVERRIDES, PAPER_ACCURACY, PAPER_COST, TABLE1_MODELS, TABLE3_MODELS, TABLE3_SEEDS, TABLES,
    Budget, Run, grid, score, table_runs,
)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _mean_std(values: Sequence[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


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
    return " / ".join(_pct(score(results, run, protocol, f"macro_{k}")) for k in ("precision", "recall", "f1"))


def _inflation(results: dict[str, dict[str, Any]], usage: Run, paper: Run) -> str:
    a, b = score(results, paper, "paper"), score(results, usage, "usage")
    return "-" if a is None or b is None else f"{100 * (a - b):+.1f}"


def _gains(results: dict[str, dict[str, Any]], model: str, seeds: Sequence[int] = TABLE3_SEEDS) -> list[float]:
    """Table 3: ``model``'s usage accuracy minus mini_xception's, for each of ``seeds`` finished for both."""
    def acc(m: str, seed: int) -> float | None:
        return score(results, Run(m, "fer2013", "usage", seed), "usage")

    return [a - b for seed in seeds if (a := acc(model, seed)) is not None and (b := acc("mini_xception", seed)) is not None]


def _gain_text(model: str, gains: Sequence[float]) -> str:
    if model == "mini_xception" or not gains:
        return "-"
    return f"{100 * statistics.mean(gains):+.1f}" + (f" ± {100 * statistics.stdev(gains):.1f}" if len(gains) > 1 else "")


def render_tables(results: dict[str, dict[str, Any]], costs: dict[str, dict[str, Any]], meta: dict[str, Any],
                  tables: Iterable[str] = TABLES, beside: dict[str, dict[str, Any]] | None = None) -> str:
    """docs/paper_tables.md: each paper table with the paper's value beside ours in every cell.

    ``beside``: finished results of the same grid at another budget (a records file's runs); each
    table then gains that budget's usage accuracy and leak / gain columns, on the same runs, and the
    reading compares the two budgets.
    """
    tables = list(tables)
    budget: Budget = BUDGETS[meta["budget"]]
    other = beside_budget(beside, budget.name) if beside else None
    beside = beside or {}
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
        *([f"- Beside: the same runs at budget `{other.name}` ({other.note}; {meta.get('beside', 'records')}), in "
           f"the columns marked `{other.name}`: {sum(r.id in beside for r in grid(tables))} of its runs finished."]
          if other else []),
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
                  "| params | multiply-adds | latency ms |" + _leak_head(other),
                  "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|" + "--:|" * (2 if other else 0)]
        for m in TABLE1_MODELS:
            u, p = Run(m, "mfer2013", "usage"), Run(m, "mfer2013", "paper")
            lines.append(f"| {m} | {PAPER_ACCURACY['1'][m]:.1f} | {_pct(score(results, u, 'usage'))} "
                         f"| {_pct(score(results, u, 'dedup'))} | {_pct(score(results, p, 'paper'))} "
                         f"| {_inflation(results, u, p)} | {_prf(results, u)} | {_cost_cells(m, costs)} |"
                         + _leak_cells(other, beside, u, p))
        lines.append("")
    if "2" in tables:
        lines += ["## Table 2: Mini-Xception + CBAM on three datasets", "",
                  "| dataset | paper acc | usage acc | dedup acc | paper-split acc | leak | P / R / F1 (usage) |"
                  + _leak_head(other),
                  "|---|--:|--:|--:|--:|--:|--:|" + "--:|" * (2 if other else 0)]
        for d in DATASETS:
            u, p = Run("mini_xception_cbam", d, "usage"), Run("mini_xception_cbam", d, "paper")
            lines.append(f"| {d} | {PAPER_ACCURACY['2'][d]:.1f} | {_pct(score(results, u, 'usage'))} "
                         f"| {_pct(score(results, u, 'dedup'))} | {_pct(score(results, p, 'paper'))} "
                         f"| {_inflation(results, u, p)} | {_prf(results, u)} |" + _leak_cells(other, beside, u, p))
        lines.append("")
    if "3" in tables:
        finished = {tuple(s for s in TABLE3_SEEDS if score(results, Run(m, "fer2013", "usage", s), "usage") is not None)
                    for m in TABLE3_MODELS} - {()}   # the seeds of each model that has any
        seeds = ", ".join(map(str, TABLE3_SEEDS))
        if finished in ({tuple(TABLE3_SEEDS)}, set()):
            over = f"seeds {seeds}"
        elif len(finished) == 1:
            over = f"seeds {', '.join(map(str, next(iter(finished))))} (of {seeds}) so far"
        else:
            over = f"the seeds each model has finished so far (of {seeds})"
        lines += [f"## Table 3: attention ablation on FER2013 (usage protocol, mean ± std over {over})", "",
                  "| model | paper acc | paper gain | usage acc | gain over mini_xception | dedup acc "
                  "| macro F1 | params | multiply-adds | latency ms |"
                  + (f" usage acc, `{other.name}` (same seeds) | gain, `{other.name}` |" if other else ""),
                  "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|" + "--:|" * (2 if other else 0)]
        for m in TABLE3_MODELS:
            runs = [Run(m, "fer2013", "usage", s) for s in TABLE3_SEEDS]
            acc = [a for a in (score(results, r, "usage") for r in runs) if a is not None]
            dedup = [a for a in (score(results, r, "dedup") for r in runs) if a is not None]
            f1 = [a for a in (score(results, r, "usage", "macro_f1") for r in runs) if a is not None]
            paper_gain = PAPER_ACCURACY["3"][m] - PAPER_ACCURACY["3"]["mini_xception"]
            lines.append(f"| {m} | {PAPER_ACCURACY['3'][m]:.1f} | {paper_gain:+.1f} | {_mean_std(acc)} "
                         f"| {_gain_text(m, _gains(results, m))} "
                         f"| {_mean_std(dedup)} | {_mean_std(f1)} | {_cost_cells(m, costs)} |"
                         + (_gain_cells(m, results, beside) if other else ""))
        lines.append("")
    lines += _reading(results, tables)
    if other:
        lines[-1:-1] = _reading_beside(results, beside, budget, other, tables)
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


def beside_budget(beside: dict[str, dict[str, Any]], budget: str) -> Budget:
    """The budget of the runs in ``beside`` (a records file's runs): one budget, not ``budget``.

    Raises:
        ValueError: no runs, runs of several budgets, or of ``budget`` itself.
    """
    names = {str(r.get("budget")) for r in beside.values()}
    if not names:
        raise ValueError("--beside: the records hold no finished run")
    if len(names) > 1 or next(iter(names)) not in BUDGETS:
        raise ValueError(f"--beside: the records hold runs of budgets {', '.join(sorted(names))}; give records of one "
                         f"budget ({', '.join(BUDGETS)})")
    name = next(iter(names))
    if name == budget:
        raise ValueError(f"--beside: the records hold budget {name!r}, the budget of these tables; give another "
                         "budget's records")
    return BUDGETS[name]


def _leak_head(other: Budget | None) -> str:
    return f" usage acc, `{other.name}` | leak, `{other.name}` |" if other else ""


def _leak_cells(other: Budget | None, beside: dict[str, dict[str, Any]], usage: Run, paper: Run) -> str:
    if other is None:
        return ""
    return f" {_pct(score(beside, usage, 'usage'))} | {_inflation(beside, usage, paper)} |"


def _gain_cells(model: str, results: dict[str, dict[str, Any]], beside: dict[str, dict[str, Any]]) -> str:
    """Table 3's ``beside`` columns: accuracy and gain over mini_xception at the other budget, on the
    seeds finished here (``-`` until one is)."""
    seeds = [s for s in TABLE3_SEEDS if Run(model, "fer2013", "usage", s).id in results]
    acc = [a for s in seeds if (a := score(beside, Run(model, "fer2013", "usage", s), "usage")) is not None]
    return f" {_mean_std(acc)} | {_gain_text(model, _gains(beside, model, seeds))} |"


def _reading_beside(results: dict[str, dict[str, Any]], beside: dict[str, dict[str, Any]], budget: Budget,
                    other: Budget, tables: Sequence[str]) -> list[str]:
    """What changes between the two budgets, on the runs finished at both (computed, no number typed in)."""
    both = [r for r in grid(tables) if r.id in results and r.id in beside]
    if not both:
        return [f"- **Beside `{other.name}`:** no run is finished at both budgets yet."]
    moved = [(r.id, 100 * (score(results, r, r.split) - score(beside, r, r.split))) for r in both]
    out = [f"- **`{budget.name}` against `{other.name}`** (the same runs, each scored under its own split, here minus there): "
           + ", ".join(f"{v:+.1f} ({i})" for i, v in moved) + " points."]
    fitted = [(r.id, results[r.id].get("final_train_acc"), beside[r.id].get("final_train_acc")) for r in both]
    fitted = [(i, a, b) for i, a, b in fitted if a is not None and b is not None]
    if fitted:
        out.append("- **Final training accuracy** (augmented batches), here / there: "
                   + ", ".join(f"{100 * a:.1f} / {100 * b:.1f} ({i})" for i, a, b in fitted) + ".")
    if "3" in tables:
        for m in TABLE3_MODELS[1:]:
            seeds = [s for s in TABLE3_SEEDS if all(Run(x, "fer2013", "usage", s).id in d for x in ("mini_xception", m)
                                                     for d in (results, beside))]
            if not seeds:
                continue
            here, there = (100 * statistics.mean(_gains(d, m, seeds)) for d in (results, beside))
            paper = PAPER_ACCURACY["3"][m] - PAPER_ACCURACY["3"]["mini_xception"]
            out.append(f"- **{m}'s gain over mini_xception** on seed(s) {', '.join(map(str, seeds))}: "
                       f"{here:+.1f} points at `{budget.name}`, {there:+.1f} at `{other.name}` "
                       f"(the paper: {paper:+.1f}).")
    return out


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
            a, b = score(results, p, "paper"), score(results, u, "usage")
            if a is not None and b is not None:
                leaks.append((m, 100 * (a - b)))
        if leaks:
            mean = statistics.mean(v for _, v in leaks)
            base = [v for s in TABLE3_SEEDS
                    if (v := score(results, Run("mini_xception", "fer2013", "usage", s), "usage")) is not None]
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
                if (a := score(results, Run(m, "mfer2013", "paper"), "paper")) is not None]
        if gaps:
            out.append("- **Gap to the paper under its own split:** "
                       + ", ".join(f"{v:.1f} ({m})" for m, v in gaps)
                       + " points below the paper at this budget. The last table gives each run's final training "
                         "accuracy: a model that has not fitted its training faces shows less of the leak.")
        usage = {m: a for m in TABLE1_MODELS if (a := score(results, Run(m, "mfer2013", "usage"), "usage")) is not None}
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
        fer = score(results, Run("mini_xception_cbam", "fer2013", "usage"), "usage")
        smfer = score(results, Run("mini_xception_cbam", "smfer2013", "usage"), "usage")
        if fer is not None and smfer is not None:
            paper_cost = PAPER_ACCURACY["2"]["fer2013"] - PAPER_ACCURACY["2"]["smfer2013"]
            out.append(f"- **What masks cost** (Table 2, usage): {100 * (fer - smfer):.1f} points from FER2013 to "
                       f"SMFER2013 (the paper: {paper_cost:.1f}).")
    if "3" in tables:
        base = [score(results, Run("mini_xception", "fer2013", "usage", s), "usage") for s in TABLE3_SEEDS]
        spread = [v for v in base if v is not None]
        gains = _gains(results, "mini_xception_cbam")
        if len(spread) > 1 and gains:
            out.append(f"- **CBAM's gain** is {100 * statistics.mean(gains):+.1f} points over "
                       f"{len(gains)} seed(s) against the paper's +4.1; the seed-to-seed spread of Mini-Xception "
                       f"alone is ± {100 * statistics.stdev(spread):.1f}.")
        elif gains:
            out.append(f"- **CBAM's gain** is {100 * gains[0]:+.1f} points on one seed against the paper's +4.1; "
                       "one seed measures no seed-to-seed spread.")
    if len(out) == 2:
        out.append("- Nothing to read until runs finish.")
    return out + [""]


__all__ = ["beside_budget", "render_tables"]
