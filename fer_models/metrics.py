"""Classification metrics (pure functions over label arrays), reports and confusion-matrix plots.

Everything here takes integer label arrays ``y_true`` / ``y_pred`` of shape (n,)
with values in ``0..num_classes-1`` and returns plain Python / numpy data; the
only file I/O is in :func:`write_report` and :func:`plot_confusion`.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix as _sk_confusion_matrix
from sklearn.metrics import precision_recall_fscore_support

from maskgen.dataset import EMOTIONS
from maskgen.io import atomic_write

#: Report file names written by :func:`write_report` (prefix + suffix).
REPORT_JSON, REPORT_TXT, REPORT_PNG = "metrics.json", "metrics.txt", "confusion.png"
#: Characters per line of the confusion-matrix plot title.
TITLE_WIDTH = 60


def _check_labels(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true).astype(np.int64, copy=False).reshape(-1)
    y_pred = np.asarray(y_pred).astype(np.int64, copy=False).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {y_true.size} vs {y_pred.size}")
    if y_true.size == 0:
        raise ValueError("no samples to score")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.min() < 0 or y.max() >= num_classes:
            raise ValueError(f"{name} has labels outside 0..{num_classes - 1}")
    return y_true, y_pred


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = len(EMOTIONS)) -> np.ndarray:
    """(num_classes, num_classes) int64 counts; row = true class, column = predicted class."""
    y_true, y_pred = _check_labels(y_true, y_pred, num_classes)
    return _sk_confusion_matrix(y_true, y_pred, labels=np.arange(num_classes)).astype(np.int64)


def classification_report(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str] = EMOTIONS
) -> dict[str, Any]:
    """Accuracy, per-class and macro precision / recall / F1, and the confusion matrix.

    Macro averages are unweighted means over all ``len(class_names)`` classes; a class with
    no predictions (or no samples) scores 0 precision (recall) rather than raising.

    Returns a JSON-ready dict: ``n``, ``accuracy``, ``macro`` {precision, recall, f1},
    ``weighted`` {precision, recall, f1}, ``per_class`` {name: {precision, recall, f1,
    support}}, ``confusion`` (list of rows, true x predicted), ``class_names``.
    """
    k = len(class_names)
    y_true, y_pred = _check_labels(y_true, y_pred, k)
    labels = np.arange(k)
    p, r, f, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    weights = support / support.sum()
    return {
        "n": int(y_true.size),
        "accuracy": float(np.mean(y_true == y_pred)),
        "macro": {"precision": float(p.mean()), "recall": float(r.mean()), "f1": float(f.mean())},
        "weighted": {
            "precision": float(weights @ p), "recall": float(weights @ r), "f1": float(weights @ f),
        },
        "per_class": {
            name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(support[i])}
            for i, name in enumerate(class_names)
        },
        "confusion": confusion_matrix(y_true, y_pred, k).tolist(),
        "class_names": list(class_names),
    }


def format_report(report: dict[str, Any], title: str = "") -> str:
    """Readable fixed-width table of a :func:`classification_report` dict."""
    lines = [title] if title else []
    lines.append(f"{'class':<12} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}")
    for name, row in report["per_class"].items():
        lines.append(
            f"{name:<12} {row['precision']:9.4f} {row['recall']:9.4f} {row['f1']:9.4f} {row['support']:8d}"
        )
    for avg in ("macro", "weighted"):
        row = report[avg]
        lines.append(f"{avg + ' avg':<12} {row['precision']:9.4f} {row['recall']:9.4f} {row['f1']:9.4f} {report['n']:8d}")
    lines.append(f"{'accuracy':<12} {report['accuracy']:9.4f} {'':>9} {'':>9} {report['n']:8d}")
    names = report["class_names"]
    width = max(7, max(len(n) for n in names))
    lines.append("")
    lines.append("confusion (rows: true, columns: predicted)")
    lines.append(" " * 10 + " ".join(f"{n[:width]:>{width}}" for n in names))
    for name, row in zip(names, report["confusion"]):
        lines.append(f"{name:<10}" + " ".join(f"{v:>{width}d}" for v in row))
    return "\n".join(lines)


def plot_confusion(
    confusion: np.ndarray, class_names: Sequence[str], path: str | os.PathLike, title: str = ""
) -> Path:
    """Save a row-normalised confusion-matrix heat map (counts written in the cells) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(confusion, dtype=np.int64)
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape, np.float64), where=rows > 0)
    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=100)
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(textwrap.fill(title, TITLE_WIDTH), fontsize=9)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{cm[i, j]}\n{frac[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if frac[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    return save_figure(fig, path)


def save_figure(fig: Any, path: str | os.PathLike) -> Path:
    """Lay out ``fig``, write it as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def report_files(out_dir: str | os.PathLike) -> dict[str, Path]:
    """The files :func:`write_report` writes in ``out_dir``, by kind (json, txt, png)."""
    out = Path(out_dir)
    return {"json": out / REPORT_JSON, "txt": out / REPORT_TXT, "png": out / REPORT_PNG}


def write_report(report: dict[str, Any], out_dir: str | os.PathLike, title: str = "",
                 extra: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write ``metrics.json`` (report + ``extra``), ``metrics.txt`` and ``confusion.png`` to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = report_files(out)
    with atomic_write(paths["json"]) as tmp:
        tmp.write_text(json.dumps({**(extra or {}), **report}, indent=2) + "\n")
    with atomic_write(paths["txt"]) as tmp:
        tmp.write_text(format_report(report, title) + "\n")
    plot_confusion(np.asarray(report["confusion"]), report["class_names"], paths["png"], title)
    return paths


def style_gap(accuracy: dict[str, float], seen: Sequence[str]) -> dict[str, Any]:
    """The cross-style protocol's gap on the same faces: each unseen style's accuracy minus the seen styles'.

    ``accuracy``: mask style -> accuracy on the same faces; ``seen``: the styles the model trained on
    (the reference is their mean). Returns ``reference`` (that mean), ``gaps`` (unseen style -> gap),
    ``mean_unseen`` / ``worst_unseen`` (the mean and the lowest gap; None without an unseen style)
    and ``worst_style``.

    Raises:
        ValueError: no seen style, or a seen style without an accuracy.
    """
    seen = list(dict.fromkeys(seen))
    if not seen:
        raise ValueError("style_gap needs at least one seen style")
    missing = [s for s in seen if s not in accuracy]
    if missing:
        raise ValueError(f"no accuracy for the seen style(s) {', '.join(missing)}")
    reference = float(np.mean([accuracy[s] for s in seen]))
    gaps = {s: float(a) - reference for s, a in accuracy.items() if s not in seen}
    worst = min(gaps, key=gaps.__getitem__) if gaps else None
    return {"reference": reference, "gaps": gaps, "mean_unseen": float(np.mean(list(gaps.values()))) if gaps else None,
            "worst_unseen": gaps[worst] if worst is not None else None, "worst_style": worst}
