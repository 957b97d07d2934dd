"""Scoring a model: test-time augmentation, batched prediction on the device, evaluation of a saved run.

Prediction keeps every batch's scores on the device and copies them to the host once, at the
end (no per-batch synchronisation).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fer_models.config import TTA_CHOICES, TrainConfig
from fer_models.data import FerTensors, load_dataset, split_indices, to_float
from fer_models.device import Placement, keep_freed_memory, resolve
from fer_models.checkpoint import load_model
from fer_models.engine import prepare
from fer_models.labels import ferplus_targets, parse_labels_option, read_ferplus_votes


def tta_views(x: torch.Tensor, tta: str) -> list[torch.Tensor]:
    """The views averaged at test time: ``none`` [x]; ``flip`` x and its mirror; ``ten`` those two
    and each shifted by 2 pixels up, down, left and right (border pixels repeated)."""
    if tta == "none":
        return [x]
    views = [x, x.flip(-1)]
    if tta == "ten":
        h, w = x.shape[-2:]
        padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate")
        shifts = [(0, 2), (4, 2), (2, 0), (2, 4)]
        shifted = [padded[..., dy:dy + h, dx:dx + w] for dy, dx in shifts]
        views += shifted + [v.flip(-1) for v in shifted]
    return views


@torch.inference_mode()
def predict(
    model: nn.Module, images: torch.Tensor, batch_size: int = 256, channels_last: bool = True,
    amp: str | None = None, placement: Placement | None = None, tta: str = "none",
) -> torch.Tensor:
    """Scores (N, num_classes) float32 on the CPU for uint8 images (N, 1, 48, 48), model in eval mode.

    Without TTA these are the logits; with TTA, the log of the softmax averaged over the views.
    ``placement`` (device + precision) defaults to the CPU with ``amp`` (``none`` if not given).
    The model must already be on ``placement.device``. Scores stay on the device until the end.
    """
    placement = placement or resolve("cpu", amp or "none")
    model.eval()
    out = []
    for start in range(0, int(images.shape[0]), batch_size):
        x = to_float(images[start:start + batch_size].to(placement.device, non_blocking=True))
        views = tta_views(x, tta)
        with placement.autocast():
            scores = [model(prepare(v, channels_last)).float() for v in views]
        if tta == "none":
            out.append(scores[0])
        else:
            probs = torch.stack([s.softmax(1) for s in scores]).mean(0)
            out.append(probs.clamp_min(1e-12).log())
    return torch.cat(out).cpu() if out else torch.zeros(0, 0)


def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    criterion: nn.Module | None = None,
    batch_size: int = 256,
    channels_last: bool = True,
    amp: str | None = None,
    placement: Placement | None = None,
    tta: str = "none",
) -> dict[str, Any]:
    """Loss (if ``criterion``), accuracy and predictions (N,) int64 numpy on a labelled set."""
    logits = predict(model, images, batch_size, channels_last, amp, placement, tta)
    labels = labels.cpu()
    preds = logits.argmax(1)
    result: dict[str, Any] = {"acc": float((preds == labels).float().mean()), "preds": preds.numpy()}
    if criterion is not None:  # a CPU criterion: the scores are on the CPU
        result["loss"] = float(criterion(logits, labels))
    return result


def ferplus_data(config: TrainConfig, data: FerTensors, subsets: dict[str, np.ndarray]
                  ) -> tuple[FerTensors, dict[str, np.ndarray], torch.Tensor | None]:
    """Swap FER2013 labels for FER+ ones (see :mod:`fer_models.labels`) and drop unusable rows.

    Training keeps rows with a majority label (``majority``) or usable votes (``soft``); val and
    test keep rows with a majority label. Returns the data, the filtered subsets and the soft
    targets (N, 8) float32 for ``soft`` (else None).
    """
    _, votes_path = parse_labels_option(config.labels)  # type: ignore[arg-type]
    if data.path.is_dir():
        raise ValueError(f"FER+ votes are aligned with FER2013's row order; {data.path} is an image folder "
                         "(use a FER2013-format CSV with --labels)")
    fp = ferplus_targets(read_ferplus_votes(votes_path, len(data)))
    keep_eval = fp.majority >= 0
    keep_train = fp.keep_soft if config.label_mode == "soft" else keep_eval
    data = dataclasses.replace(data, labels=torch.from_numpy(np.where(keep_eval, fp.majority, 0)))
    out = {name: rows[(keep_train if name == "train" else keep_eval)[rows]] for name, rows in subsets.items()}
    for name in ("train", "val", "test"):
        if out[name].size == 0:
            raise ValueError(f"{votes_path}: no {name} rows keep a FER+ label")
    soft = torch.from_numpy(fp.soft) if config.label_mode == "soft" else None
    return data, out, soft


# ---------------------------------------------------------------- evaluation of a saved run


def evaluate_checkpoint(checkpoint: str | os.PathLike, data: str | os.PathLike, split: str | None = None,
                        subset: str = "test", out: str | os.PathLike | None = None, batch_size: int = 256,
                        amp: str = "auto", device: str = "auto", tta: str | None = None) -> dict[str, Any]:
    """Score a checkpoint on a subset of any FER2013-format CSV; write metrics.json/.txt and confusion.png.

    ``split`` defaults to the checkpoint's own split (and its seed is reused for the random
    ones); ``tta`` to the checkpoint's recipe; ``device`` / ``amp`` are resolved for this
    machine (:mod:`fer_models.device`); ``out`` defaults to
    ``<checkpoint dir>/eval-<csv name>-<split>-<subset>``.
    Returns the report dict (see :func:`fer_models.metrics.classification_report`).
    """
    from fer_models.data import folder_inputs
    from fer_models.metrics import classification_report, report_files, write_report

    from maskgen.cli_errors import check_output_paths
    from maskgen.paths import Output

    placement = resolve(device, amp)
    model, ckpt = load_model(checkpoint, placement)
    config = ckpt.train_config()
    split = split or config.split
    tta = tta or config.tta
    if tta not in TTA_CHOICES:
        raise ValueError(f"tta must be one of {TTA_CHOICES}, got {tta!r}")
    name = Path(data).name.split(".")[0]
    out = Path(out) if out is not None else Path(checkpoint).parent / f"eval-{name}-{split}-{subset}"
    # before the scoring: no report file is an input, lies in an input folder, or is a folder / link / FIFO
    check_output_paths([("--checkpoint", checkpoint), ("--data", data), *folder_inputs("--data", data)],
                       [Output("the report's " + path.name, path) for path in report_files(out).values()])
    keep_freed_memory()
    tensors = load_dataset(data)
    if subset == "all":
        rows = np.arange(len(tensors))
    else:
        try:
            rows = split_indices(tensors, split, config.seed)[subset]
        except ValueError as exc:
            raise ValueError(f"{exc} (or score every row with --subset all)") from None
    if rows.size == 0:
        raise ValueError(f"{data}: subset {subset!r} of split {split!r} is empty")
    if config.labels is not None:  # a FER+ model: score against FER+ majority labels of these rows
        tensors, kept, _ = ferplus_data(dataclasses.replace(config, label_mode="majority"), tensors,
                                         {"train": rows, "val": rows, "test": rows})
        rows = kept["test"]
    x, y = tensors.subset(rows)
    result = evaluate(model, x, y, None, batch_size, config.channels_last, placement=placement, tta=tta)
    report = classification_report(y.numpy(), result["preds"], ckpt.class_names)
    title = (f"{config.model} ({Path(checkpoint).name}, epoch {ckpt.epoch}) on {Path(data).name} "
             f"[{split}/{subset}]" + ("" if tta == "none" else f", TTA {tta}"))
    extra = {"checkpoint": str(checkpoint), "data": str(data), "split": split, "subset": subset,
             "model": config.model, "trained_on": config.data, "tta": tta, **placement.record()}
    paths = write_report(report, out, title, extra)
    return {**extra, **report, "paths": {k: str(v) for k, v in paths.items()}}


