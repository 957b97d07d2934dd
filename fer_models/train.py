"""Train and evaluate FER models on FER2013-format CSVs (torchvision-reference shape).

``main(config)`` loads the CSV once into uint8 tensors, trains with the paper's
recipe (Adam, lr 1e-3, x0.1 every 30 epochs, batch 64, 100 epochs, class-weighted
cross-entropy, rotation/shift/zoom/flip augmentation), keeps the best checkpoint by
validation accuracy, saves a resumable checkpoint atomically after every epoch and
finally scores the best model on the test subset.

Speed on CPU comes from: batched augmentation on tensors (no per-image Python),
channels_last memory format, bf16 autocast, and optionally ``torch.compile``.

Run directory layout (``config.out``)::

    checkpoint.pt   last epoch, resumable (model, optimizer, scheduler, epoch, config, RNG)
    best.pt         best validation accuracy so far (same format)
    log.jsonl       one JSON object per epoch (loss, accuracy, lr, images/s, ...)
    config.json     the run's configuration
    test/           metrics.json, metrics.txt, confusion.png of best.pt on the test subset

Determinism: the model is initialised from ``torch.manual_seed(seed)``; the shuffling
and augmentation of epoch ``e`` come from a generator seeded by ``(seed, e)``, so a run
resumed from the checkpoint of epoch ``e`` continues exactly as if never interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fer_models.data import (
    AugmentConfig, FerTensors, augment_batch, class_weights, load_fer_tensors, split_indices, to_float,
)
from maskgen.dataset import EMOTIONS, atomic_write

#: Bump when the checkpoint dict changes incompatibly.
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME, BEST_NAME, LOG_NAME, CONFIG_NAME, TEST_DIR = (
    "checkpoint.pt", "best.pt", "log.jsonl", "config.json", "test",
)
#: Config fields that may differ between a run and its ``--resume``.
RESUME_MUTABLE = frozenset({"epochs", "threads", "progress", "eval_batch_size", "compile"})
AMP_CHOICES = ("bf16", "none")


@dataclass
class TrainConfig:
    """Everything that defines a training run (defaults: the paper's recipe).

    ``lr_step`` is in epochs (StepLR ``step_size``). ``amp="bf16"`` runs forward and
    backward under CPU bf16 autocast (weights and optimizer stay float32).
    """

    data: str
    out: str
    model: str = "mini_xception_cbam"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    num_classes: int = len(EMOTIONS)
    split: str = "usage"
    seed: int = 0
    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_step: int = 30
    lr_gamma: float = 0.1
    class_weighted: bool = True
    augment: bool = True
    rotation_deg: float = 20.0
    translate: float = 0.1
    scale: float = 0.1
    hflip: bool = True
    channels_last: bool = True
    amp: str = "bf16"
    compile: bool = False
    threads: int | None = None
    eval_batch_size: int = 256
    max_steps_per_epoch: int | None = None
    progress: bool = True

    def validate(self) -> None:
        """Raise ValueError on an impossible setting."""
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1 or self.lr_step < 1:
            raise ValueError("epochs, batch_size, eval_batch_size and lr_step must be >= 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if self.amp not in AMP_CHOICES:
            raise ValueError(f"amp must be one of {AMP_CHOICES}, got {self.amp!r}")
        if self.threads is not None and self.threads < 1:
            raise ValueError("threads must be >= 1")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ValueError("max_steps_per_epoch must be >= 1")
        from fer_models import list_models

        if self.model not in list_models():
            raise ValueError(f"unknown model {self.model!r}; known models: {', '.join(list_models())}")

    def augment_config(self) -> AugmentConfig:
        return AugmentConfig(self.rotation_deg, self.translate, self.scale, self.hflip)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator for epoch ``epoch``'s shuffling and augmentation, seeded by (seed, epoch)."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def build_model(config: TrainConfig) -> nn.Module:
    """Create ``config.model`` (registry) with ``config.model_kwargs``, in float32."""
    from fer_models import create_model

    return create_model(config.model, num_classes=config.num_classes, **config.model_kwargs)


def _prepare(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _autocast(amp: str) -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp == "bf16")


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: TrainConfig,
    generator: torch.Generator,
    on_step: Callable[[int, float], None] | None = None,
) -> dict[str, float]:
    """One pass over a shuffled training set (incomplete last batch dropped).

    Args:
        images: (N, 1, 48, 48) uint8; labels: (N,) int64.
        generator: source of this epoch's order and augmentation.
        on_step: called after each step with (batch size, loss).
    Returns:
        ``loss`` (mean), ``acc`` (on augmented batches), ``images``, ``seconds``, ``images_per_s``.
    """
    model.train()
    n = int(labels.shape[0])
    bs = min(config.batch_size, n)
    steps = n // bs
    if config.max_steps_per_epoch is not None:
        steps = min(steps, config.max_steps_per_epoch)
    order = torch.randperm(n, generator=generator)
    aug = config.augment_config()
    total_loss, correct, seen = 0.0, 0, 0
    start = time.perf_counter()
    for step in range(steps):
        idx = order[step * bs:(step + 1) * bs]
        x = to_float(images[idx])
        if config.augment:
            x = augment_batch(x, aug, generator)
        x = _prepare(x, config.channels_last)
        y = labels[idx]
        with _autocast(config.amp):
            logits = model(x)
        loss = criterion(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"training loss became {value} at step {step}")
        total_loss += value * bs
        correct += int((logits.detach().argmax(1) == y).sum())
        seen += bs
        if on_step is not None:
            on_step(bs, value)
    seconds = time.perf_counter() - start
    return {
        "loss": total_loss / max(seen, 1),
        "acc": correct / max(seen, 1),
        "images": seen,
        "seconds": seconds,
        "images_per_s": seen / seconds if seconds > 0 else float("nan"),
    }


@torch.inference_mode()
def predict(
    model: nn.Module, images: torch.Tensor, batch_size: int = 256, channels_last: bool = True, amp: str = "bf16"
) -> torch.Tensor:
    """Logits (N, num_classes) float32 for uint8 images (N, 1, 48, 48), model in eval mode."""
    model.eval()
    out = []
    for start in range(0, int(images.shape[0]), batch_size):
        x = _prepare(to_float(images[start:start + batch_size]), channels_last)
        with _autocast(amp):
            out.append(model(x).float())
    return torch.cat(out) if out else torch.zeros(0, 0)


def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    criterion: nn.Module | None = None,
    batch_size: int = 256,
    channels_last: bool = True,
    amp: str = "bf16",
) -> dict[str, Any]:
    """Loss (if ``criterion``), accuracy and predictions (N,) int64 numpy on a labelled set."""
    logits = predict(model, images, batch_size, channels_last, amp)
    preds = logits.argmax(1)
    result: dict[str, Any] = {"acc": float((preds == labels).float().mean()), "preds": preds.numpy()}
    if criterion is not None:
        result["loss"] = float(criterion(logits, labels))
    return result


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary name, then rename (never a half-written checkpoint)."""
    with atomic_write(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint dict with ``weights_only=True``; checks its format version."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: not a fer_models checkpoint (version {CHECKPOINT_VERSION})")
    return state


def model_from_checkpoint(state: dict[str, Any]) -> tuple[nn.Module, TrainConfig]:
    """Rebuild the model of a checkpoint dict and load its weights (eval mode)."""
    config = TrainConfig(**state["config"])
    model = build_model(config)
    model.load_state_dict(state["model"])
    model.eval()
    return model, config


def _read_log(path: Path, completed: int) -> list[str]:
    """Log lines of epochs 1..completed (a resumed run drops lines of epochs it will redo)."""
    if not path.is_file():
        return []
    return [line for line in path.read_text().splitlines() if line and json.loads(line)["epoch"] <= completed]


# ---------------------------------------------------------------- main


def _check_resume(saved: dict[str, Any], config: TrainConfig) -> None:
    now = dataclasses.asdict(config)
    diff = [k for k in now if k not in RESUME_MUTABLE and saved.get(k) != now[k]]
    if diff:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in diff)
        raise ValueError(f"--resume with a different configuration ({detail}); only {sorted(RESUME_MUTABLE)} may change")


def main(config: TrainConfig, resume: bool = False, data: FerTensors | None = None) -> dict[str, Any]:
    """Train ``config.model`` on ``config.data``; return the test report (plus run info).

    Args:
        resume: continue from ``<out>/checkpoint.pt`` (same configuration; ``epochs`` may grow).
        data: the already-loaded CSV (skips reading ``config.data`` again).
    """
    from fer_models.metrics import classification_report, format_report, write_report

    config.validate()
    out = Path(config.out)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    ckpt_path = out / CHECKPOINT_NAME
    if not resume and ckpt_path.exists():
        raise FileExistsError(f"{ckpt_path} exists: pass --resume to continue, or choose another --out")
    data = data if data is not None else load_fer_tensors(config.data)
    subsets = split_indices(data, config.split, config.seed)
    train_x, train_y = data.subset(subsets["train"])
    val_x, val_y = data.subset(subsets["val"])
    test_x, test_y = data.subset(subsets["test"])

    torch.manual_seed(config.seed)
    model = build_model(config)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    weights = class_weights(train_y, config.num_classes) if config.class_weighted else None
    criterion = nn.CrossEntropyLoss(weight=weights)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step, gamma=config.lr_gamma)
    start_epoch, best_acc, best_epoch = 0, -1.0, -1
    log_lines: list[str] = []
    if resume:
        state = load_checkpoint(ckpt_path)
        _check_resume(state["config"], config)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        start_epoch, best_acc, best_epoch = state["epoch"], state["best_val_acc"], state["best_epoch"]
        log_lines = _read_log(out / LOG_NAME, start_epoch)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / CONFIG_NAME) as tmp:
        tmp.write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    run_model = torch.compile(model) if config.compile else model

    steps_per_epoch = max(1, len(train_y) // min(config.batch_size, len(train_y)))
    if config.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    bar = None
    if config.progress:
        from tqdm import tqdm

        bar = tqdm(total=(config.epochs - start_epoch) * steps_per_epoch, unit="step", dynamic_ncols=True,
                   mininterval=2.0, desc=f"{config.model}")
    for epoch in range(start_epoch, config.epochs):
        lr = optimizer.param_groups[0]["lr"]

        def on_step(_: int, loss: float) -> None:
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss:.3f}", refresh=False)

        train = train_one_epoch(run_model, criterion, optimizer, train_x, train_y, config,
                                epoch_generator(config.seed, epoch), on_step)
        scheduler.step()
        t0 = time.perf_counter()
        val = evaluate(run_model, val_x, val_y, criterion, config.eval_batch_size, config.channels_last, config.amp)
        is_best = val["acc"] > best_acc
        if is_best:
            best_acc, best_epoch = val["acc"], epoch + 1
        record = {
            "epoch": epoch + 1, "lr": lr, "train_loss": train["loss"], "train_acc": train["acc"],
            "val_loss": val["loss"], "val_acc": val["acc"], "images_per_s": train["images_per_s"],
            "train_seconds": train["seconds"], "val_seconds": time.perf_counter() - t0,
            "best_val_acc": best_acc, "best_epoch": best_epoch,
        }
        log_lines.append(json.dumps(record))
        with atomic_write(out / LOG_NAME) as tmp:
            tmp.write_text("\n".join(log_lines) + "\n")
        state = {
            "version": CHECKPOINT_VERSION, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "config": dataclasses.asdict(config),
            "best_val_acc": best_acc, "best_epoch": best_epoch, "class_names": list(EMOTIONS),
            "rng": {"torch": torch.get_rng_state()},
        }
        if is_best:
            save_checkpoint(out / BEST_NAME, state)
        save_checkpoint(ckpt_path, state)
        message = (f"epoch {epoch + 1}/{config.epochs} lr {lr:.2e} loss {train['loss']:.4f} "
                   f"acc {train['acc']:.4f} val_loss {val['loss']:.4f} val_acc {val['acc']:.4f} "
                   f"({train['images_per_s']:.0f} img/s)")
        if bar is not None:
            bar.write(message)
        else:
            print(message, flush=True)
    if bar is not None:
        bar.close()

    best_model, _ = model_from_checkpoint(load_checkpoint(out / BEST_NAME))
    if config.channels_last:
        best_model = best_model.to(memory_format=torch.channels_last)
    test = evaluate(best_model, test_x, test_y, None, config.eval_batch_size, config.channels_last, config.amp)
    report = classification_report(test_y.numpy(), test["preds"], EMOTIONS)
    title = f"{config.model} (best epoch {best_epoch}, val acc {best_acc:.4f}) on {Path(config.data).name} [{config.split}/test]"
    extra = {"checkpoint": str(out / BEST_NAME), "data": str(config.data), "split": config.split,
             "subset": "test", "best_epoch": best_epoch, "best_val_acc": best_acc}
    write_report(report, out / TEST_DIR, title, extra)
    print(format_report(report, title), flush=True)
    return {**extra, **report}


# ---------------------------------------------------------------- evaluation of a saved run


def evaluate_checkpoint(checkpoint: str | os.PathLike, data: str | os.PathLike, split: str | None = None,
                        subset: str = "test", out: str | os.PathLike | None = None, batch_size: int = 256,
                        amp: str | None = None) -> dict[str, Any]:
    """Score a checkpoint on a subset of any FER2013-format CSV; write metrics.json/.txt and confusion.png.

    ``split`` defaults to the checkpoint's own split (and its seed is reused for the random
    ones); ``out`` defaults to ``<checkpoint dir>/eval-<csv name>-<split>-<subset>``.
    Returns the report dict (see :func:`fer_models.metrics.classification_report`).
    """
    from fer_models.metrics import classification_report, write_report

    state = load_checkpoint(checkpoint)
    model, config = model_from_checkpoint(state)
    split = split or config.split
    amp = amp or config.amp
    tensors = load_fer_tensors(data)
    if subset == "all":
        rows = np.arange(len(tensors))
    else:
        try:
            rows = split_indices(tensors, split, config.seed)[subset]
        except ValueError as exc:
            raise ValueError(f"{exc} (or score every row with --subset all)") from None
    if rows.size == 0:
        raise ValueError(f"{data}: subset {subset!r} of split {split!r} is empty")
    x, y = tensors.subset(rows)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    result = evaluate(model, x, y, None, batch_size, config.channels_last, amp)
    report = classification_report(y.numpy(), result["preds"], state.get("class_names", EMOTIONS))
    name = Path(data).name.split(".")[0]
    out = Path(out) if out is not None else Path(checkpoint).parent / f"eval-{name}-{split}-{subset}"
    title = f"{config.model} ({Path(checkpoint).name}, epoch {state['epoch']}) on {Path(data).name} [{split}/{subset}]"
    extra = {"checkpoint": str(checkpoint), "data": str(data), "split": split, "subset": subset,
             "model": config.model, "trained_on": config.data, "amp": amp}
    paths = write_report(report, out, title, extra)
    return {**extra, **report, "paths": {k: str(v) for k, v in paths.items()}}


def parse_model_kw(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``["widths=[8,16]", "attention=cbam"]`` -> ``{"widths": [8, 16], "attention": "cbam"}`` (JSON values, else str)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


if __name__ == "__main__":  # same command as `fer-models train`
    from fer_models.cli import train as _train_command

    _train_command()
