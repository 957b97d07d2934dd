"""A training run: data, the engine, per-epoch evaluation, logs, checkpoints, resume, the final test.

``main(config)`` loads the data once into uint8 tensors (on the chosen device), trains with
the config's recipe (:mod:`fer_models.config`) through :class:`fer_models.engine.Engine` (one
step with no host synchronisation; one CUDA graph per step on CUDA), keeps the best
checkpoint by validation accuracy (raw weights or their EMA, whichever scores higher that
epoch), saves a resumable checkpoint atomically after every epoch and finally scores the best
model once on the test subset (with the recipe's test-time augmentation; every TTA mode is
recorded beside it).

Run directory layout (``config.out``)::

    checkpoint.pt   last epoch, resumable (:class:`fer_models.checkpoint.Checkpoint` with its train state)
    best.pt         best validation accuracy so far (same format)
    log.jsonl       one JSON object per epoch (loss, accuracy, lr, images/s, ...)
    config.json     the run's configuration
    test/           metrics.json, metrics.txt, confusion.png of best.pt on the test subset

Determinism: the model is initialised from ``torch.manual_seed(seed)``; the shuffling and
augmentation of epoch ``e`` come from the engine's generator re-seeded from ``(seed, e)``, so a
run resumed from the checkpoint of epoch ``e`` on the same device continues exactly as if never
interrupted (bit for bit on the CPU; on CUDA, cuDNN's autotuned kernels are not deterministic).
A resumed run checks that its data has the checksum the run started with.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fer_models.checkpoint import (
    TRAIN_STATE_VERSION, Checkpoint, config_from_state, data_checksum, load_checkpoint, load_model,
)
from fer_models.config import RESUME_MUTABLE, TTA_CHOICES, TrainConfig
from fer_models.data import FerTensors, class_weights, load_dataset, split_indices
from fer_models.device import Placement, keep_freed_memory, resolve
from fer_models.engine import BN_RECOMPUTE_IMAGES, Engine, cpu_copy, epoch_generator, recompute_bn
from fer_models.inference import evaluate, ferplus_data
from fer_models.labels import FERPLUS_CLASSES
from fer_models.twins import TwinBatchSource, blank_below, load_twins
from maskgen.dataset import EMOTIONS
from maskgen.io import atomic_write, file_sha256

CHECKPOINT_NAME, BEST_NAME, LOG_NAME, CONFIG_NAME, TEST_DIR = (
    "checkpoint.pt", "best.pt", "log.jsonl", "config.json", "test",
)


def run_files(config: TrainConfig) -> tuple[list[tuple[str, str]], list[tuple[str, Path]]]:
    """What a run reads and writes, for the checks before any work: (option, path) of every input file or
    folder besides the run's own checkpoint (``--data``, ``--twin``, the FER+ votes, ``--init`` and
    ``--distill`` when they name files), and (what, path) of every file it writes in ``config.out``."""
    from fer_models.labels import parse_labels_option
    from fer_models.metrics import report_files

    inputs = [("--data", str(config.data))]
    if config.twin is not None:
        inputs.append(("--twin", str(config.twin)))
    if config.labels is not None:
        inputs.append(("--labels", parse_labels_option(config.labels)[1]))
    for option, source in (("--init", config.init), ("--distill", config.distill)):
        if source is not None and Path(source).exists():
            inputs.append((option, str(source)))
    out = Path(config.out)
    files = [out / name for name in (CHECKPOINT_NAME, BEST_NAME, LOG_NAME, CONFIG_NAME)]
    files += report_files(out / TEST_DIR).values()
    return inputs, [(f"the run's {path.relative_to(out)}", path) for path in files]


def build_model(config: TrainConfig) -> nn.Module:
    """Create ``config.model`` (registry) with ``config.model_kwargs``, in float32."""
    from fer_models.models import create_model

    return create_model(config.model, num_classes=config.num_classes, **config.model_kwargs)


def load_init(config: TrainConfig) -> Checkpoint:
    """The checkpoint ``config.init`` names (shipped weights by name, or a file), checked against the config.

    Raises:
        ValueError: neither a shipped name nor a file, or a checkpoint of another model, class count or
            model arguments.
    """
    try:
        ckpt = load_checkpoint(str(config.init))
    except FileNotFoundError:
        raise ValueError(f"init {config.init!r}: no such shipped weights or checkpoint file") from None
    saved = ckpt.train_config()
    if (saved.model, saved.num_classes, saved.model_kwargs) != (config.model, config.num_classes, config.model_kwargs):
        raise ValueError(f"init {config.init!r} holds {saved.model} ({saved.num_classes} classes, "
                         f"{saved.model_kwargs}); this run trains {config.model} "
                         f"({config.num_classes} classes, {config.model_kwargs})")
    return ckpt


def load_teacher(config: TrainConfig, placement: Placement) -> nn.Module | None:
    """The frozen distillation teacher ``config.distill`` names (shipped name or checkpoint) on the device.

    Raises:
        ValueError: no such weights, or a teacher with other classes.
    """
    if config.distill is None:
        return None
    try:
        teacher, ckpt = load_model(config.distill, placement)
    except FileNotFoundError:
        raise ValueError(f"distill {config.distill!r}: no such shipped weights or checkpoint file") from None
    if ckpt.train_config().num_classes != config.num_classes:
        raise ValueError(f"distill {config.distill!r} has {ckpt.train_config().num_classes} classes; this run "
                         f"trains {config.num_classes}")
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()


def run_checksum(config: TrainConfig) -> str:
    """sha256 of the run's data: of ``config.data``, or of both files' sha256 with a twin."""
    import hashlib

    data = data_checksum(config.data)
    if config.twin is None:
        return data
    return hashlib.sha256(f"{data}\0{data_checksum(config.twin)}".encode()).hexdigest()


def _read_log(path: Path, completed: int) -> list[str]:
    """Log lines of epochs 1..completed (a resumed run drops lines of epochs it will redo)."""
    if not path.is_file():
        return []
    return [line for line in path.read_text().splitlines() if line and json.loads(line)["epoch"] <= completed]


#: settings that name files: ``./fer.csv``, ``fer.csv`` and its absolute path are one setting
_PATH_SETTINGS = {"data", "twin", "init", "distill"}


def _same_setting(key: str, before: Any, now: Any) -> bool:
    """Whether a resumed run's setting ``key`` is the one it started with (file settings by the file named)."""
    if before == now:
        return True
    if key == "labels" and isinstance(before, str) and isinstance(now, str):  # ferplus=VOTES.csv
        (a_source, _, a_path), (b_source, _, b_path) = before.partition("="), now.partition("=")
        return a_source == b_source and os.path.realpath(a_path) == os.path.realpath(b_path)
    if key in _PATH_SETTINGS and isinstance(before, str) and isinstance(now, str):
        return os.path.realpath(before) == os.path.realpath(now)
    return False


def _check_resume(saved: Checkpoint, config: TrainConfig, data_sha256: str) -> None:
    """Refuse to resume a run with other settings, other data, or a state this engine cannot continue."""
    where = saved.path or CHECKPOINT_NAME
    if "recipe" not in saved.config or not saved.resumable():
        raise ValueError(f"{where} was written by an older fer_models training loop and cannot be resumed; "
                         "evaluate it, start from its weights (--init), or train again")
    now = dataclasses.asdict(config)
    before = dataclasses.asdict(config_from_state(saved.config))
    mutable = RESUME_MUTABLE if config.schedule == "step" else RESUME_MUTABLE - {"epochs"}
    # not compared as text: the run folder (the checkpoint was found in it) and, when the checkpoint has the
    # data's checksum, the data and its twin (the checksum below decides: the same bytes under another path
    # continue the run)
    skip = {"out"} | ({"data", "twin"} if saved.data_sha256 is not None else set())
    diff = [k for k in now if k not in mutable and k not in skip and not _same_setting(k, before.get(k), now[k])]
    if diff:
        detail = ", ".join(f"{k}: {before.get(k)!r} -> {now[k]!r}" for k in diff)
        extra = " (the cosine schedule is laid out over --epochs, so it cannot change)" if "epochs" in diff else ""
        raise ValueError(f"--resume with a different configuration ({detail}); only {sorted(mutable)} may "
                         f"change{extra}")
    if saved.data_sha256 is not None and saved.data_sha256 != data_sha256:
        what = config.data if config.twin is None else f"{config.data} or its twin {config.twin}"
        raise ValueError(f"--resume: {what} has changed since the run started (sha256 "
                         f"{saved.data_sha256[:12]}... then, {data_sha256[:12]}... now); a run must not mix two "
                         "datasets: train again in a new --out")


def _rng_state(dev: torch.device) -> dict[str, Any]:
    """The global RNG states (dropout draws from them)."""
    return {"torch": torch.get_rng_state(), **({"cuda": torch.cuda.get_rng_state_all()} if dev.type == "cuda" else {})}


def main(config: TrainConfig, resume: bool = False, data: FerTensors | None = None,
         stop_after: int | None = None) -> dict[str, Any]:
    """Train ``config.model`` on ``config.data``; return the test report (plus run info).

    Args:
        resume: continue from ``<out>/checkpoint.pt`` (same configuration and data; see ``RESUME_MUTABLE``).
        data: the already-loaded CSV (skips reading ``config.data`` again).
        stop_after: stop after this epoch without testing (as an interruption would);
            returns ``{"stopped_after": epoch}``.
    """
    config.validate()
    placement = resolve(config.device, config.amp)
    kept = keep_freed_memory()
    out = Path(config.out)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    ckpt_path = out / CHECKPOINT_NAME
    if not resume and ckpt_path.exists():
        raise FileExistsError(f"{ckpt_path} exists: pass --resume to continue, or choose another --out")
    if not resume and (out / BEST_NAME).exists():  # a trained model whose resumable checkpoint was removed
        raise FileExistsError(f"{out / BEST_NAME} exists (a trained model; this run would replace it): choose "
                              "another --out")
    saved = Checkpoint.load(ckpt_path) if resume else None
    data_sha256 = run_checksum(config)
    if saved is not None:
        _check_resume(saved, config, data_sha256)
    init = load_init(config) if config.init is not None else None
    run = RunData.load(config, data, placement.device)
    dev = placement.device
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    train_x, train_y, class_names = run.train_x, run.train_y, run.class_names
    hard_y = train_y if train_y.ndim == 1 else train_y.argmax(1)

    torch.manual_seed(config.seed)
    model = build_model(config)
    init_record = None
    if init is not None:
        init_record = {"init": config.init, "file": init.path.name, "sha256": file_sha256(init.path),
                       "epoch": init.epoch}
        if saved is None:
            model.load_state_dict(init.model)
    model = model.to(dev)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    weights = class_weights(hard_y.cpu(), config.num_classes) if config.class_weighted else None
    criterion = nn.CrossEntropyLoss(weight=None if weights is None else weights.to(dev),
                                    label_smoothing=config.label_smoothing)
    val_criterion = nn.CrossEntropyLoss(weight=weights)  # validation scores come back on the CPU
    run_model = torch.compile(model) if config.compile else model
    engine = Engine(model, config, placement, train_x, train_y, criterion, run_model=run_model,
                    twins=run.twin_source(load_teacher(config, placement)))
    start_epoch, best_acc, best_epoch = 0, -1.0, -1
    log_lines: list[str] = []
    if saved is not None:
        assert saved.train is not None
        model.load_state_dict(saved.train["model"])
        engine.load_state_dict(saved.train)
        torch.set_rng_state(saved.train["rng"]["torch"])
        if dev.type == "cuda" and "cuda" in saved.train["rng"]:
            torch.cuda.set_rng_state_all(saved.train["rng"]["cuda"])
        start_epoch, best_acc, best_epoch = saved.epoch, saved.best_val_acc, saved.best_epoch
        log_lines = _read_log(out / LOG_NAME, start_epoch)
    out.mkdir(parents=True, exist_ok=True)
    run_info = {**dataclasses.asdict(config), "resolved": {**placement.record(), "keep_freed_memory": kept},
                "data_sha256": data_sha256}
    if init_record is not None:
        run_info["init_from"] = init_record
    with atomic_write(out / CONFIG_NAME) as tmp:
        tmp.write_text(json.dumps(run_info, indent=2) + "\n")
    print(f"{config.model}, recipe {config.recipe}: {placement.describe()}"
          f"{', freed memory kept (glibc malloc)' if kept else ''}"
          f"{'; ' + engine.graph_note if engine.graph_note else ''}", flush=True)

    bar = None
    if config.progress:
        from tqdm import tqdm

        bar = tqdm(total=(config.epochs - start_epoch) * engine.steps_per_epoch, unit="step", dynamic_ncols=True,
                   mininterval=2.0, desc=f"{config.model}")
    for epoch in range(start_epoch, config.epochs):
        lr = float(engine.lr_table[epoch * engine.steps_per_epoch])
        if bar is not None:
            bar.set_postfix(epoch=epoch + 1, refresh=False)
        train = engine.run_epoch(epoch, (lambda: bar.update(1)) if bar is not None else None)
        t0 = time.perf_counter()
        val, selected, used, extra_record = _validate(engine, run, val_criterion, epoch)
        is_best = val["acc"] > best_acc
        if is_best:
            best_acc, best_epoch = val["acc"], epoch + 1
        record = {
            "epoch": epoch + 1, "lr": lr, "train_loss": train.loss, "train_acc": train.acc,
            "val_loss": val["loss"], "val_acc": val["acc"], **extra_record, "images_per_s": train.images_per_s,
            "train_seconds": train.seconds, "val_seconds": time.perf_counter() - t0,
            "best_val_acc": best_acc, "best_epoch": best_epoch, "cuda_graph": engine.graph is not None,
            **placement.record(),
        }
        log_lines.append(json.dumps(record))
        with atomic_write(out / LOG_NAME) as tmp:
            tmp.write_text("\n".join(log_lines) + "\n")
        ckpt = Checkpoint(
            model=cpu_copy(used.state_dict()), config=dataclasses.asdict(config), class_names=list(class_names),
            epoch=epoch + 1, best_val_acc=best_acc, best_epoch=best_epoch, selected=selected,
            resolved=placement.record(), data_sha256=data_sha256,
            train={"version": TRAIN_STATE_VERSION, "model": cpu_copy(model.state_dict()), **engine.state_dict(),
                   "rng": _rng_state(dev)},
        )
        if is_best:
            ckpt.save(out / BEST_NAME)
        ckpt.save(ckpt_path)
        message = (f"epoch {epoch + 1}/{config.epochs} lr {lr:.2e} loss {train.loss:.4f} "
                   f"acc {train.acc:.4f} val_loss {val['loss']:.4f} val_acc {val['acc']:.4f}"
                   + (f" (raw {record['val_acc_raw']:.4f}, ema {record['val_acc_ema']:.4f})"
                      if engine.ema is not None else "")
                   + f" ({train.images_per_s:.0f} img/s)")
        if bar is not None:
            bar.write(message)
        else:
            print(message, flush=True)
        if stop_after is not None and epoch + 1 >= stop_after and epoch + 1 < config.epochs:
            if bar is not None:
                bar.close()
            return {"stopped_after": epoch + 1}
    if bar is not None:
        bar.close()

    return _final_test(config, run, placement, best_epoch, best_acc)


@dataclass
class RunData:
    """A run's rows on their devices: training images and targets on the training device (uint8 /
    int64, or (N, C) float FER+ vote distributions), validation and test rows (on CUDA there too)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    test_rows: np.ndarray
    class_names: tuple[str, ...]
    bn_x: torch.Tensor | None = None
    twin_test_x: torch.Tensor | None = None
    twins: TwinBatchSource | None = None

    def twin_source(self, teacher: nn.Module | None) -> TwinBatchSource | None:
        """The engine's twin tensors with ``teacher`` (None without a twin)."""
        if self.twins is None:
            return None
        return dataclasses.replace(self.twins, teacher=teacher)

    @classmethod
    def load(cls, config: TrainConfig, data: FerTensors | None, dev: torch.device) -> RunData:
        """Read ``config.data`` (unless given), split it, relabel for FER+.

        Raises:
            ValueError: every training row has one class.
        """
        data = data if data is not None else load_dataset(config.data)
        subsets = split_indices(data, config.split, config.seed)
        class_names: tuple[str, ...] = EMOTIONS
        soft = None
        if config.labels is not None:
            data, subsets, soft = ferplus_data(config, data, subsets)
            class_names = FERPLUS_CLASSES
        train_x, train_y = (t.to(dev) for t in data.subset(subsets["train"]))
        if soft is not None:
            train_y = soft[torch.as_tensor(subsets["train"])].to(dev)
        hard_y = train_y if train_y.ndim == 1 else train_y.argmax(1)
        if int((torch.bincount(hard_y.cpu(), minlength=config.num_classes) > 0).sum()) < 2:
            raise ValueError(f"{config.data}: every training row has the same class; a classifier cannot learn "
                             "from one class")
        val_x, val_y = data.subset(subsets["val"])
        test_x, test_y = data.subset(subsets["test"])
        if config.twin is not None:
            return cls._with_twins(config, data, subsets, train_x, train_y, class_names, dev)
        if dev.type == "cuda":
            val_x, test_x = val_x.to(dev), test_x.to(dev)
        return cls(train_x, train_y, val_x, val_y, test_x, test_y, subsets["test"], class_names)

    @classmethod
    def _with_twins(cls, config: TrainConfig, data: FerTensors, subsets: dict[str, np.ndarray],
                    train_x: torch.Tensor, train_y: torch.Tensor, class_names: tuple[str, ...], dev: torch.device
                    ) -> RunData:
        """Twin training (:mod:`fer_models.twins`): validation on the masked and the unmasked rows together,
        the test on the masked rows (``test_x``) and on their twins (``twin_test_x``); with ``eyes_only``
        every evaluated face is blanked below its mask top."""
        twins = load_twins(config.data, str(config.twin), masked=data)

        def take(images: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
            idx = torch.as_tensor(rows)
            x = images[idx]
            # blank in uint8: 128 is the 0 of the [-1, 1] scale, to half a grey level
            return blank_below(x, twins.top[idx], 128) if config.eyes_only else x

        val, test, train = subsets["val"], subsets["test"], subsets["train"]
        val_x = torch.cat([take(data.images, val), take(twins.clean, val)])
        val_y = torch.cat([data.labels[torch.as_tensor(val)]] * 2)
        test_x, test_y = take(data.images, test), data.labels[torch.as_tensor(test)]
        twin_test_x = take(twins.clean, test)
        first = train[:BN_RECOMPUTE_IMAGES]
        bn_x = torch.where((torch.arange(len(first)) % 2 == 0)[:, None, None, None],
                           take(data.images, first), take(twins.clean, first))
        idx = torch.as_tensor(train)
        source = TwinBatchSource(clean=twins.clean[idx].to(dev), region=twins.region[idx].to(dev),
                                 top=twins.top[idx].to(dev))
        if dev.type == "cuda":
            val_x, test_x, twin_test_x = val_x.to(dev), test_x.to(dev), twin_test_x.to(dev)
        return cls(train_x, train_y, val_x, val_y, test_x, test_y, test, class_names, bn_x=bn_x.to(dev),
                   twin_test_x=twin_test_x, twins=source)


def _validate(engine: Engine, run: RunData, criterion: nn.Module, epoch: int
              ) -> tuple[dict[str, Any], str, nn.Module, dict[str, Any]]:
    """Score the raw weights (and the EMA, its BatchNorm statistics recomputed) on the validation rows.

    Returns the better one's scores, its name (``raw`` / ``ema``), the model and the log fields. The
    selection uses validation rows only, like the choice of the best epoch.
    """
    config, placement = engine.config, engine.placement
    val = evaluate(engine.model, run.val_x, run.val_y, criterion, config.eval_batch_size, config.channels_last,
                   placement=placement)
    if engine.ema is None:
        return val, "raw", engine.model, {}
    ema_model = engine.ema.module
    recompute_bn(ema_model, run.train_x if run.bn_x is None else run.bn_x, config, placement,
                 epoch_generator(config.seed, epoch, placement.device, stream=1))
    val_ema = evaluate(ema_model, run.val_x, run.val_y, criterion, config.eval_batch_size, config.channels_last,
                       placement=placement)
    record = {"val_acc_raw": val["acc"], "val_acc_ema": val_ema["acc"]}
    if val_ema["acc"] >= val["acc"]:
        return val_ema, "ema", ema_model, {**record, "selected": "ema"}
    return val, "raw", engine.model, {**record, "selected": "raw"}


def _final_test(config: TrainConfig, run: RunData, placement: Placement, best_epoch: int, best_acc: float
                ) -> dict[str, Any]:
    """Score ``best.pt`` once on the test rows with the recipe's TTA (every TTA mode recorded beside it);
    write ``test/`` and return the report with the rows scored and their predictions."""
    from fer_models.metrics import classification_report, format_report, write_report

    out = Path(config.out)
    best_model, _ = load_model(out / BEST_NAME, placement)
    # every TTA mode on both val and test, recorded; the reported one is config.tta, fixed before the run
    runs = {(mode, name): evaluate(best_model, xs, ys, None, config.eval_batch_size, config.channels_last,
                                   placement=placement, tta=mode)
            for mode in TTA_CHOICES
            for name, xs, ys in (("val_acc", run.val_x, run.val_y), ("test_acc", run.test_x, run.test_y))}
    tta_table = {mode: {name: runs[mode, name]["acc"] for name in ("val_acc", "test_acc")} for mode in TTA_CHOICES}
    if run.twin_test_x is not None:  # the same faces unmasked
        for mode in TTA_CHOICES:
            runs[mode, "twin_test_acc"] = evaluate(best_model, run.twin_test_x, run.test_y, None,
                                                   config.eval_batch_size, config.channels_last,
                                                   placement=placement, tta=mode)
            tta_table[mode]["twin_test_acc"] = runs[mode, "twin_test_acc"]["acc"]
    test = runs[config.tta, "test_acc"]
    report = classification_report(run.test_y.cpu().numpy(), test["preds"], run.class_names)
    tta_note = "" if config.tta == "none" else f", TTA {config.tta}"
    title = (f"{config.model} (best epoch {best_epoch}, val acc {best_acc:.4f}{tta_note}) on "
             f"{Path(config.data).name} [{config.split}/test]")
    extra = {"checkpoint": str(out / BEST_NAME), "data": str(config.data), "split": config.split,
             "subset": "test", "best_epoch": best_epoch, "best_val_acc": best_acc, "recipe": config.recipe,
             "tta": config.tta, "tta_table": tta_table, "labels": config.labels, **placement.record()}
    if run.twin_test_x is not None:
        extra.update(twin=str(config.twin), twin_test_acc=runs[config.tta, "twin_test_acc"]["acc"])
    write_report(report, out / TEST_DIR, title, extra)
    print(format_report(report, title), flush=True)
    if run.twin_test_x is not None:
        print(f"the same {len(run.test_y)} faces unmasked ({Path(str(config.twin)).name}): accuracy "
              f"{extra['twin_test_acc']:.4f}", flush=True)
    # the rows scored and their predictions (not written: callers such as the benchmark rescore subsets)
    return {**extra, **report, "test_rows": run.test_rows, "test_preds": test["preds"],
            "train_rows": len(run.train_y)}


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
