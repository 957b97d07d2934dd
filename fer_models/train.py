"""Train and evaluate FER models on FER2013-format CSVs or image folders (torchvision-reference shape).

``main(config)`` loads the data once into uint8 tensors (on the chosen device), trains with
the config's recipe (:mod:`fer_models.config`: the ``default`` recipe or the paper's), keeps
the best checkpoint by validation accuracy (raw weights or their EMA, whichever scores higher
that epoch), saves a resumable checkpoint atomically after every epoch and finally scores the
best model once on the test subset (with the recipe's test-time augmentation; every TTA mode
is recorded beside it).

Speed comes from: batched augmentation on tensors (no per-image Python), channels_last memory
format, autocast where the hardware computes bf16 / fp16 natively (:mod:`fer_models.device`),
and optionally ``torch.compile``.

Run directory layout (``config.out``)::

    checkpoint.pt   last epoch, resumable (model, optimizer, scheduler, epoch, config, RNG)
    best.pt         best validation accuracy so far (same format)
    log.jsonl       one JSON object per epoch (loss, accuracy, lr, images/s, ...)
    config.json     the run's configuration
    test/           metrics.json, metrics.txt, confusion.png of best.pt on the test subset

Determinism: the model is initialised from ``torch.manual_seed(seed)``; the shuffling
and augmentation of epoch ``e`` come from a generator seeded by ``(seed, e)``, so a run
resumed from the checkpoint of epoch ``e`` on the same device continues exactly as if never
interrupted (bit for bit on the CPU; on CUDA, cuDNN's autotuned kernels are not deterministic).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fer_models.config import RECIPES, RESUME_MUTABLE, TTA_CHOICES, TrainConfig  # noqa: F401 (re-exported)
from fer_models.data import (
    FerTensors, augment_batch, class_weights, load_dataset, random_erase, split_indices, to_float,
)
from fer_models.device import Placement, keep_freed_memory, resolve
from fer_models.labels import FERPLUS_CLASSES, ferplus_targets, parse_labels_option, read_ferplus_votes
from maskgen.dataset import EMOTIONS
from maskgen.io import atomic_write, file_sha256

#: Bump when the checkpoint dict changes incompatibly.
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME, BEST_NAME, LOG_NAME, CONFIG_NAME, TEST_DIR = (
    "checkpoint.pt", "best.pt", "log.jsonl", "config.json", "test",
)
def epoch_generator(seed: int, epoch: int, device: torch.device | str = "cpu", stream: int = 0) -> torch.Generator:
    """The generator for epoch ``epoch``'s shuffling and augmentation, seeded by (seed, epoch);
    ``stream`` 1 is the EMA's BatchNorm recompute of that epoch."""
    entropy = [seed, epoch] if stream == 0 else [seed, epoch, stream]
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return torch.Generator(device=device).manual_seed(int(state[0]) << 32 | int(state[1]))


def build_model(config: TrainConfig) -> nn.Module:
    """Create ``config.model`` (registry) with ``config.model_kwargs``, in float32."""
    from fer_models.models import create_model

    return create_model(config.model, num_classes=config.num_classes, **config.model_kwargs)


def _prepare(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def lr_factor(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """Step -> lr multiplier: linear warm-up over ``warmup_epochs`` (at most ``epochs - 1``), then
    cosine to 0 over the remaining steps, or a factor ``lr_gamma`` every ``lr_step`` epochs."""
    warm = min(config.warmup_epochs, config.epochs - 1) * steps_per_epoch
    total = config.epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if config.schedule == "step":
            return config.lr_gamma ** (step // steps_per_epoch // config.lr_step)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    return factor


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD (Nesterov) / Adam / AdamW over ``model``; no weight decay on BatchNorm and biases."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    return torch.optim.Adam(groups, lr=config.lr)


def make_ema(config: TrainConfig, model: nn.Module) -> torch.optim.swa_utils.AveragedModel | None:
    """EMA of the weights (``ema_decay`` per step), or None when off.

    Only parameters are averaged: an average of BatchNorm running statistics does not match
    averaged weights while the weights still move fast (measured: an EMA with averaged
    buffers scored 18 % on PublicTest where the raw weights scored 50 %, epoch 5 at lr 0.05).
    :func:`recompute_bn` sets the EMA's statistics before each evaluation instead, as SWA does,
    on augmented training batches.
    """
    if config.ema_decay <= 0:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=False)


#: Training images (the first ones, in file order) used to recompute the EMA's BatchNorm statistics.
BN_RECOMPUTE_IMAGES = 4096


@torch.no_grad()
def recompute_bn(model: nn.Module, images: torch.Tensor, config: TrainConfig, placement: Placement,
                 generator: torch.Generator | None = None) -> None:
    """Reset ``model``'s BatchNorm statistics and recompute them as averages over the first
    :data:`BN_RECOMPUTE_IMAGES` of ``images`` (uint8, on the model's device), *augmented as in
    training* (geometry and random erasing, drawn from ``generator``).

    The augmentation matters: the layers after each BatchNorm were trained on augmented batches.
    Measured on the FER2013 run at epoch 65: statistics from un-augmented images cost the raw
    weights 8.5 points of PublicTest accuracy (0.626 -> 0.542) and left the EMA at 0.568;
    from augmented images the EMA scores 0.632 and the raw weights keep 0.626.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    generator = generator or torch.Generator(device=images.device).manual_seed(0)
    momenta = {}
    for m in bns:
        m.reset_running_stats()
        momenta[m], m.momentum = m.momentum, None  # None: cumulative average
    model.train()
    bs = config.eval_batch_size
    aug = config.augment_config()
    with placement.autocast():
        for start in range(0, min(int(images.shape[0]), BN_RECOMPUTE_IMAGES), bs):
            x = to_float(images[start:start + bs])
            if config.augment:
                x = augment_batch(x, aug, generator)
                if config.erase_prob > 0:
                    x = random_erase(x, config.erase_prob, generator)
            model(_prepare(x, config.channels_last))
    for m in bns:
        m.momentum = momenta[m]
    model.eval()


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: TrainConfig,
    generator: torch.Generator,
    on_step: Callable[[int, float], None] | None = None,
    placement: Placement | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    ema: torch.optim.swa_utils.AveragedModel | None = None,
    scaler: torch.amp.GradScaler | None = None,
    mix_rng: np.random.Generator | None = None,
) -> dict[str, float]:
    """One pass over a shuffled training set (incomplete last batch dropped).

    Args:
        images: (N, 1, 48, 48) uint8; labels: (N,) int64, both on ``placement.device``.
        generator: source of this epoch's order and augmentation (on the same device).
        on_step: called after each step with (batch size, loss).
        scheduler: stepped after every optimizer step (the lr schedules are per step).
        ema: updated after every optimizer step.
        mix_rng: source of the mixup weights (``config.mixup_alpha > 0``).
    Returns:
        ``loss`` (mean), ``acc`` (on augmented batches), ``images``, ``seconds``, ``images_per_s``.
    ``labels`` may also be (N, C) float target distributions (FER+ ``soft``); ``acc`` then counts
    agreement with their most-voted class.
    """
    placement = placement or resolve("cpu", "none")
    model.train()
    n = int(labels.shape[0])
    bs = min(config.batch_size, n)
    steps = n // bs
    if config.max_steps_per_epoch is not None:
        steps = min(steps, config.max_steps_per_epoch)
    order = torch.randperm(n, generator=generator, device=generator.device)
    aug = config.augment_config()
    total_loss = torch.zeros((), device=placement.device)
    correct = torch.zeros((), dtype=torch.int64, device=placement.device)
    seen = 0
    start = time.perf_counter()
    for step in range(steps):
        idx = order[step * bs:(step + 1) * bs]
        x = to_float(images[idx])
        y = labels[idx]
        if config.augment:
            x = augment_batch(x, aug, generator)
            if config.erase_prob > 0:
                x = random_erase(x, config.erase_prob, generator)
        lam, y2 = 1.0, y
        if config.mixup_alpha > 0:
            lam = float((mix_rng or np.random.default_rng(step)).beta(config.mixup_alpha, config.mixup_alpha))
            perm = torch.randperm(bs, generator=generator, device=generator.device)
            x = lam * x + (1 - lam) * x[perm]
            y2 = y[perm]
        x = _prepare(x, config.channels_last)
        with placement.autocast():
            logits = model(x)
        logits = logits.float()
        loss = criterion(logits, y) if lam == 1.0 else lam * criterion(logits, y) + (1 - lam) * criterion(logits, y2)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        detached = loss.detach()
        total_loss += detached * bs
        correct += (logits.detach().argmax(1) == (y if y.ndim == 1 else y.argmax(1))).sum()
        seen += bs
        if on_step is not None:
            value = float(detached)
            if not math.isfinite(value):
                raise FloatingPointError(f"training loss became {value} at step {step}")
            on_step(bs, value)
    seconds = time.perf_counter() - start
    mean_loss = float(total_loss) / max(seen, 1)
    if not math.isfinite(mean_loss):
        raise FloatingPointError(f"training loss became {mean_loss}")
    return {
        "loss": mean_loss,
        "acc": int(correct) / max(seen, 1),
        "images": seen,
        "seconds": seconds,
        "images_per_s": seen / seconds if seconds > 0 else float("nan"),
    }


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
    The model must already be on ``placement.device``.
    """
    placement = placement or resolve("cpu", amp or "none")
    model.eval()
    out = []
    for start in range(0, int(images.shape[0]), batch_size):
        x = to_float(images[start:start + batch_size].to(placement.device))
        views = tta_views(x, tta)
        with placement.autocast():
            scores = [model(_prepare(v, channels_last)).float() for v in views]
        if tta == "none":
            out.append(scores[0].cpu())
        else:
            probs = torch.stack([s.softmax(1) for s in scores]).mean(0)
            out.append(probs.clamp_min(1e-12).log().cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


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


def load_init(config: TrainConfig) -> tuple[dict[str, Any], Path]:
    """The checkpoint ``config.init`` names (shipped weights by name, or a file) and its path, checked
    against the config.

    Raises:
        ValueError: neither a shipped name nor a file, or a checkpoint of another model, class count or
            model arguments.
    """
    from fer_models.weights import list_weights, verified_path

    init = str(config.init)
    if init in list_weights():
        path = verified_path(init)
    elif Path(init).is_file():
        path = Path(init)
    else:
        raise ValueError(f"init {init!r} is neither shipped weights ({', '.join(list_weights()) or 'none'}) "
                         "nor a checkpoint file")
    state = load_checkpoint(path)
    saved = state["config"]
    if saved["model"] != config.model or saved.get("num_classes", 7) != config.num_classes \
            or saved.get("model_kwargs", {}) != config.model_kwargs:
        raise ValueError(f"init {init!r} holds {saved['model']} ({saved.get('num_classes', 7)} classes, "
                         f"{saved.get('model_kwargs', {})}); this run trains {config.model} "
                         f"({config.num_classes} classes, {config.model_kwargs})")
    return state, path


def config_from_state(saved: dict[str, Any]) -> TrainConfig:
    """The :class:`TrainConfig` of a checkpoint's ``config`` dict.

    Checkpoints written before recipes existed (no ``recipe`` key) were trained with the
    paper's recipe, so their missing fields come from ``RECIPES["paper"]``.
    """
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    base = {} if "recipe" in saved else {**RECIPES["paper"], "recipe": "paper"}
    return TrainConfig(**{**base, **{k: v for k, v in saved.items() if k in names}})


def model_from_checkpoint(state: dict[str, Any]) -> tuple[nn.Module, TrainConfig]:
    """Rebuild the model of a checkpoint dict and load its weights (eval mode, CPU).

    ``state["model"]`` holds the weights to predict with (the EMA when the run used one).
    """
    config = config_from_state(state["config"])
    model = build_model(config)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        renamed = {"resnet18": "resnet18_cifar", "vit": "vit_p6"}
        hint = (f"; checkpoints of the old {config.model!r} load as {renamed[config.model]!r} (the name now "
                "means the paper-cost network): set config['model'] accordingly") if config.model in renamed else ""
        raise ValueError(f"the checkpoint's weights do not fit {config.model!r} as registered now{hint} "
                         f"({str(exc).splitlines()[0]})") from None
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
    saved = dataclasses.asdict(config_from_state(saved))
    mutable = RESUME_MUTABLE if config.schedule == "step" else RESUME_MUTABLE - {"epochs"}
    diff = [k for k in now if k not in mutable and saved.get(k) != now[k]]
    if diff:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in diff)
        extra = " (the cosine schedule is laid out over --epochs, so it cannot change)" if "epochs" in diff else ""
        raise ValueError(f"--resume with a different configuration ({detail}); only {sorted(mutable)} may "
                         f"change{extra}")


def main(config: TrainConfig, resume: bool = False, data: FerTensors | None = None,
         stop_after: int | None = None) -> dict[str, Any]:
    """Train ``config.model`` on ``config.data``; return the test report (plus run info).

    Args:
        resume: continue from ``<out>/checkpoint.pt`` (same configuration; see ``RESUME_MUTABLE``).
        data: the already-loaded CSV (skips reading ``config.data`` again).
        stop_after: stop after this epoch without testing (as an interruption would);
            returns ``{"stopped_after": epoch}``.
    """
    from fer_models.metrics import classification_report, format_report, write_report

    config.validate()
    placement = resolve(config.device, config.amp)
    kept = keep_freed_memory()
    out = Path(config.out)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    ckpt_path = out / CHECKPOINT_NAME
    if not resume and ckpt_path.exists():
        raise FileExistsError(f"{ckpt_path} exists: pass --resume to continue, or choose another --out")
    data = data if data is not None else load_dataset(config.data)
    subsets = split_indices(data, config.split, config.seed)
    class_names: tuple[str, ...] = EMOTIONS
    soft = None
    if config.labels is not None:
        data, subsets, soft = _ferplus_data(config, data, subsets)
        class_names = FERPLUS_CLASSES
    dev = placement.device
    train_x, train_y = (t.to(dev) for t in data.subset(subsets["train"]))
    if soft is not None:
        train_y = soft[torch.as_tensor(subsets["train"])].to(dev)
    val_x, val_y = data.subset(subsets["val"])
    test_x, test_y = data.subset(subsets["test"])
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        val_x, test_x = val_x.to(dev), test_x.to(dev)

    torch.manual_seed(config.seed)
    model = build_model(config)
    init_record = None
    if config.init is not None:
        init_state, init_path = load_init(config)
        init_record = {"init": config.init, "file": init_path.name, "sha256": file_sha256(init_path),
                       "epoch": init_state.get("epoch")}
        if not resume:
            model.load_state_dict(init_state["model"])
    model = model.to(dev)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    hard_y = train_y if train_y.ndim == 1 else train_y.argmax(1)
    weights = class_weights(hard_y.cpu(), config.num_classes) if config.class_weighted else None
    criterion = nn.CrossEntropyLoss(weight=None if weights is None else weights.to(dev),
                                    label_smoothing=config.label_smoothing)
    val_criterion = nn.CrossEntropyLoss(weight=weights)  # validation scores come back on the CPU
    optimizer = make_optimizer(config, model)
    steps_per_epoch = max(1, len(train_y) // min(config.batch_size, len(train_y)))
    if config.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config, steps_per_epoch))
    ema = make_ema(config, model)
    scaler = torch.amp.GradScaler("cuda") if placement.amp == "fp16" else None
    start_epoch, best_acc, best_epoch = 0, -1.0, -1
    log_lines: list[str] = []
    if resume:
        state = load_checkpoint(ckpt_path)
        if "recipe" not in state["config"]:
            raise ValueError(f"{ckpt_path} was written by an older fer_models (per-epoch StepLR, one parameter "
                             "group) and cannot be resumed; evaluate it, or train again")
        _check_resume(state["config"], config)
        model.load_state_dict(state.get("train_model", state["model"]))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None:
            ema.module.load_state_dict(state["ema_model"])
            ema.n_averaged.fill_(int(state["ema_n"]))
        if scaler is not None and "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        if dev.type == "cuda" and "cuda" in state["rng"]:
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        start_epoch, best_acc, best_epoch = state["epoch"], state["best_val_acc"], state["best_epoch"]
        log_lines = _read_log(out / LOG_NAME, start_epoch)
    out.mkdir(parents=True, exist_ok=True)
    run_info = {**dataclasses.asdict(config), "resolved": {**placement.record(), "keep_freed_memory": kept}}
    if init_record is not None:
        run_info["init_from"] = init_record
    with atomic_write(out / CONFIG_NAME) as tmp:
        tmp.write_text(json.dumps(run_info, indent=2) + "\n")
    run_model = torch.compile(model) if config.compile else model
    print(f"{config.model}, recipe {config.recipe}: {placement.describe()}"
          f"{', freed memory kept (glibc malloc)' if kept else ''}", flush=True)

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

        mix_rng = np.random.default_rng([config.seed, epoch, 1]) if config.mixup_alpha > 0 else None
        train = train_one_epoch(run_model, criterion, optimizer, train_x, train_y, config,
                                epoch_generator(config.seed, epoch, dev), on_step if bar is not None else None,
                                placement, scheduler, ema, scaler, mix_rng)
        t0 = time.perf_counter()
        val = evaluate(model, val_x, val_y, val_criterion, config.eval_batch_size, config.channels_last,
                       placement=placement)
        selected, used = "raw", model
        extra_record: dict[str, Any] = {}
        if ema is not None:
            # the EMA is scored beside the raw weights every epoch, and the better one on
            # the validation subset is kept (selection on val only, like the best epoch)
            recompute_bn(ema.module, train_x, config, placement, epoch_generator(config.seed, epoch, dev, stream=1))
            val_ema = evaluate(ema.module, val_x, val_y, val_criterion, config.eval_batch_size,
                               config.channels_last, placement=placement)
            extra_record = {"val_acc_raw": val["acc"], "val_acc_ema": val_ema["acc"]}
            if val_ema["acc"] >= val["acc"]:
                selected, used, val = "ema", ema.module, val_ema
            extra_record["selected"] = selected
        is_best = val["acc"] > best_acc
        if is_best:
            best_acc, best_epoch = val["acc"], epoch + 1
        record = {
            "epoch": epoch + 1, "lr": lr, "train_loss": train["loss"], "train_acc": train["acc"],
            "val_loss": val["loss"], "val_acc": val["acc"], **extra_record, "images_per_s": train["images_per_s"],
            "train_seconds": train["seconds"], "val_seconds": time.perf_counter() - t0,
            "best_val_acc": best_acc, "best_epoch": best_epoch, **placement.record(),
        }
        log_lines.append(json.dumps(record))
        with atomic_write(out / LOG_NAME) as tmp:
            tmp.write_text("\n".join(log_lines) + "\n")
        state = {
            "version": CHECKPOINT_VERSION, "model": _cpu_state(used), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "config": dataclasses.asdict(config),
            "best_val_acc": best_acc, "best_epoch": best_epoch, "class_names": list(class_names),
            "rng": {"torch": torch.get_rng_state(),
                    **({"cuda": torch.cuda.get_rng_state_all()} if dev.type == "cuda" else {})},
            "resolved": placement.record(), "selected": selected,
        }
        if ema is not None:
            state["train_model"] = _cpu_state(model)
            state["ema_model"] = _cpu_state(ema.module)
            state["ema_n"] = int(ema.n_averaged)
        if scaler is not None:
            state["scaler"] = scaler.state_dict()
        if is_best:
            save_checkpoint(out / BEST_NAME, state)
        save_checkpoint(ckpt_path, state)
        message = (f"epoch {epoch + 1}/{config.epochs} lr {lr:.2e} loss {train['loss']:.4f} "
                   f"acc {train['acc']:.4f} val_loss {val['loss']:.4f} val_acc {val['acc']:.4f}"
                   + (f" (raw {record['val_acc_raw']:.4f}, ema {record['val_acc_ema']:.4f})" if ema is not None else "")
                   + f" ({train['images_per_s']:.0f} img/s)")
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

    best_model, _ = model_from_checkpoint(load_checkpoint(out / BEST_NAME))
    best_model = best_model.to(dev)
    if config.channels_last:
        best_model = best_model.to(memory_format=torch.channels_last)
    # every TTA mode on both val and test, recorded; the reported one is config.tta, fixed before the run
    runs = {(mode, name): evaluate(best_model, xs, ys, None, config.eval_batch_size, config.channels_last,
                                   placement=placement, tta=mode)
            for mode in TTA_CHOICES for name, xs, ys in (("val_acc", val_x, val_y), ("test_acc", test_x, test_y))}
    tta_table = {mode: {name: runs[mode, name]["acc"] for name in ("val_acc", "test_acc")} for mode in TTA_CHOICES}
    test = runs[config.tta, "test_acc"]
    report = classification_report(test_y.cpu().numpy(), test["preds"], class_names)
    tta_note = "" if config.tta == "none" else f", TTA {config.tta}"
    title = (f"{config.model} (best epoch {best_epoch}, val acc {best_acc:.4f}{tta_note}) on "
             f"{Path(config.data).name} [{config.split}/test]")
    extra = {"checkpoint": str(out / BEST_NAME), "data": str(config.data), "split": config.split,
             "subset": "test", "best_epoch": best_epoch, "best_val_acc": best_acc, "recipe": config.recipe,
             "tta": config.tta, "tta_table": tta_table, "labels": config.labels, **placement.record()}
    write_report(report, out / TEST_DIR, title, extra)
    print(format_report(report, title), flush=True)
    # the rows scored and their predictions (not written: callers such as the benchmark rescore subsets)
    return {**extra, **report, "test_rows": subsets["test"], "test_preds": test["preds"], "train_rows": len(train_y)}


def _ferplus_data(config: TrainConfig, data: FerTensors, subsets: dict[str, np.ndarray]
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


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A model's state dict with every tensor on the CPU (checkpoints load anywhere)."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


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
    from fer_models.metrics import classification_report, write_report

    state = load_checkpoint(checkpoint)
    model, config = model_from_checkpoint(state)
    split = split or config.split
    tta = tta or config.tta
    if tta not in TTA_CHOICES:
        raise ValueError(f"tta must be one of {TTA_CHOICES}, got {tta!r}")
    placement = resolve(device, amp)
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
        tensors, kept, _ = _ferplus_data(dataclasses.replace(config, label_mode="majority"), tensors,
                                         {"train": rows, "val": rows, "test": rows})
        rows = kept["test"]
    x, y = tensors.subset(rows)
    model = model.to(placement.device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    result = evaluate(model, x, y, None, batch_size, config.channels_last, placement=placement, tta=tta)
    report = classification_report(y.numpy(), result["preds"], state.get("class_names", EMOTIONS))
    name = Path(data).name.split(".")[0]
    out = Path(out) if out is not None else Path(checkpoint).parent / f"eval-{name}-{split}-{subset}"
    title = (f"{config.model} ({Path(checkpoint).name}, epoch {state['epoch']}) on {Path(data).name} "
             f"[{split}/{subset}]" + ("" if tta == "none" else f", TTA {tta}"))
    extra = {"checkpoint": str(checkpoint), "data": str(data), "split": split, "subset": subset,
             "model": config.model, "trained_on": config.data, "tta": tta, **placement.record()}
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
