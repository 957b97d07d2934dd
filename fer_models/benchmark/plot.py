"""The tables as a picture: ours under each protocol beside the paper's value (matplotlib, lazily)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fer_models.benchmark.spec import DATASETS, PAPER_ACCURACY, TABLE1_MODELS, TABLE3_MODELS, TABLE3_SEEDS, Run, score


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
        return {"usage": [score(results, u, "usage") for u, _ in runs],
                "dedup": [score(results, u, "dedup") for u, _ in runs],
                "paper split (ours)": [score(results, p, "paper") for _, p in runs]}

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
        seeds = [v for s in TABLE3_SEEDS if (v := score(results, Run(m, "fer2013", "usage", s), "usage")) is not None]
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


__all__ = ["plot_tables"]
