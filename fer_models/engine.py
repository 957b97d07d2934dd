"""The training engine: a run state and one ``train_step`` that never waits for the device.

Everything one optimizer step needs lives on the device, so a step is a fixed sequence of
kernels with static shapes (airbench / hlb-CIFAR10 style):

- the epoch's shuffled order is a (steps, batch) index buffer; the step reads its row with
  a device-side step counter (no Python slicing by step number);
- augmentation (affine + flip, random erasing) and mixup draw from one device generator,
  re-seeded from ``(seed, epoch)`` at the start of every epoch;
- the learning rate is read from a precomputed per-step table on the device
  (:func:`lr_table`) into a 0-dim tensor the optimizers use (:class:`DeviceSGD`,
  :class:`DeviceAdam`: torch.optim's update rules written with foreach ops and a tensor lr);
- the EMA of the weights is one foreach ``lerp_``;
- loss and accuracy are summed on the device and read once per epoch (a non-finite loss is
  caught then, naming the epoch);
- with twins (``config.twin``, :mod:`fer_models.twins`) the batch is composed from the masked
  copies, their unmasked twins and mask regions, augmented with one geometry, and the loss gains
  the distillation, CAM-share and mask-evidence terms, all inside the same step.

On the CPU the step runs eagerly. On CUDA it is captured once in one CUDA graph after a few
eager warm-up steps and replayed (:class:`Engine`, ``cuda_graph``); if capture fails, the
engine says why in one line and stays eager. Nothing here needs CUDA to import or run.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from fer_models.config import CUDA_GRAPH_CHOICES, TrainConfig
from fer_models.data import augment_batch, random_erase, to_float
from fer_models.device import Placement
from fer_models.twins import TwinBatchSource, cam_share, distill_loss, mask_evidence, twin_batch

#: Eager steps before a CUDA graph is captured (lets cuDNN pick kernels and the optimizer make its state).
GRAPH_WARMUP_STEPS = 3
#: Why a CUDA graph capture failed in this process, if one did: a failed capture can leave torch's CUDA state
#: (the caching allocator's capture bookkeeping) unfit for another, so later engines here stay eager and say so.
_capture_failed: str | None = None


# ---------------------------------------------------------------- learning rate


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


def lr_table(config: TrainConfig, steps_per_epoch: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(epochs * steps_per_epoch,) float32: the learning rate of every optimizer step of the run."""
    factor = lr_factor(config, steps_per_epoch)
    values = [config.lr * factor(s) for s in range(config.epochs * steps_per_epoch)]
    return torch.tensor(values, dtype=torch.float32, device=device)


# ---------------------------------------------------------------- optimizers


def _param_groups(config: TrainConfig, model: nn.Module) -> list[dict[str, Any]]:
    """Weight decay on weights (ndim > 1), none on BatchNorm parameters and biases."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": config.weight_decay}, {"params": rest, "weight_decay": 0.0}]


class DeviceSGD(torch.optim.Optimizer):
    """SGD with momentum (optionally Nesterov), torch.optim.SGD's update rule, lr a 0-dim device tensor.

    Momentum buffers start at zero (the same first step as torch's ``buf = grad``), so a step
    has no first-step branch. State dict keys are torch's (``momentum_buffer``).
    """

    def __init__(self, params: Iterable[Any], lr: torch.Tensor, momentum: float = 0.9,
                 nesterov: bool = True, weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": float(lr.detach().cpu()), "momentum": momentum, "nesterov": nesterov,
                                  "weight_decay": weight_decay})
        self.lr = lr
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # noqa: ARG002 (torch's signature)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            bufs = [self.state[p]["momentum_buffer"] for p in params]
            if group["weight_decay"]:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            torch._foreach_mul_(bufs, group["momentum"])
            torch._foreach_add_(bufs, grads)
            update = torch._foreach_add(grads, bufs, alpha=group["momentum"]) if group["nesterov"] else bufs
            torch._foreach_sub_(params, torch._foreach_mul(update, self.lr))


class DeviceAdam(torch.optim.Optimizer):
    """Adam, or AdamW (``decoupled``), torch.optim's update rules, lr a 0-dim device tensor and the step
    count a device tensor (no ``.item()``). State dict keys are torch's (``step``, ``exp_avg``, ``exp_avg_sq``)."""

    def __init__(self, params: Iterable[Any], lr: torch.Tensor, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, decoupled: bool = False) -> None:
        super().__init__(params, {"lr": float(lr.detach().cpu()), "betas": betas, "eps": eps,
                                  "weight_decay": weight_decay, "decoupled": decoupled,
                                  "capturable": True})  # capturable: load_state_dict keeps ``step`` on the device
        self.lr = lr
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p].update(step=torch.zeros((), dtype=torch.float32, device=p.device),
                                     exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # noqa: ARG002
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            beta1, beta2 = group["betas"]
            grads = [p.grad for p in params]
            states = [self.state[p] for p in params]
            step = states[0]["step"]
            for s in states:
                s["step"].add_(1)
            if group["weight_decay"]:
                if group["decoupled"]:
                    torch._foreach_mul_(params, 1 - self.lr * group["weight_decay"])
                else:
                    grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            avg = [s["exp_avg"] for s in states]
            avg_sq = [s["exp_avg_sq"] for s in states]
            torch._foreach_lerp_(avg, grads, 1 - beta1)
            torch._foreach_mul_(avg_sq, beta2)
            torch._foreach_addcmul_(avg_sq, grads, grads, 1 - beta2)
            bias1 = 1 - torch.pow(beta1, step)
            bias2_sqrt = (1 - torch.pow(beta2, step)).sqrt()
            denom = torch._foreach_sqrt(avg_sq)
            torch._foreach_div_(denom, bias2_sqrt)
            torch._foreach_add_(denom, group["eps"])
            update = torch._foreach_div(avg, denom)
            torch._foreach_mul_(update, self.lr / bias1)
            torch._foreach_sub_(params, update)


def make_optimizer(config: TrainConfig, model: nn.Module, lr: torch.Tensor) -> torch.optim.Optimizer:
    """The recipe's optimizer over ``model`` (no weight decay on BatchNorm and biases), lr read from ``lr``."""
    groups = _param_groups(config, model)
    if config.optimizer == "sgd":
        return DeviceSGD(groups, lr, momentum=config.momentum, nesterov=config.nesterov)
    return DeviceAdam(groups, lr, decoupled=config.optimizer == "adamw")


# ---------------------------------------------------------------- EMA and BatchNorm statistics


class WeightEMA:
    """Exponential moving average of a model's parameters (``decay`` per step), one foreach lerp.

    Only parameters are averaged: an average of BatchNorm running statistics does not match
    averaged weights while the weights still move fast (measured: an EMA with averaged
    buffers scored 18 % on PublicTest where the raw weights scored 50 %, epoch 5 at lr 0.05).
    :func:`recompute_bn` sets the EMA's statistics before each evaluation instead.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model)
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self._src = list(model.parameters())
        self._dst = list(self.module.parameters())

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self._dst, self._src, 1.0 - self.decay)


#: Training images (the first ones, in file order) used to recompute the EMA's BatchNorm statistics.
BN_RECOMPUTE_IMAGES = 4096


def prepare(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``x`` in the memory format the model was put in."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


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
            model(prepare(x, config.channels_last))
    for m in bns:
        m.momentum = momenta[m]
    model.eval()


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """The 64-bit seed of epoch ``epoch``'s shuffling and augmentation (``stream`` 1: the EMA's
    BatchNorm recompute of that epoch), from ``(seed, epoch[, stream])``."""
    entropy = [seed, epoch] if stream == 0 else [seed, epoch, stream]
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 32 | int(state[1])


def epoch_generator(seed: int, epoch: int, device: torch.device | str = "cpu", stream: int = 0) -> torch.Generator:
    """A new generator seeded with :func:`epoch_seed` (for work outside the step, e.g. the BN recompute)."""
    return torch.Generator(device=device).manual_seed(epoch_seed(seed, epoch, stream))


# ---------------------------------------------------------------- the engine


@dataclass
class EpochStats:
    """What the host reads once per epoch."""

    loss: float
    acc: float
    images: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


def steps_per_epoch(config: TrainConfig, n: int) -> int:
    """Full batches per epoch (the incomplete last batch is dropped), capped by ``max_steps_per_epoch``."""
    steps = max(1, n // min(config.batch_size, n))
    return min(steps, config.max_steps_per_epoch) if config.max_steps_per_epoch is not None else steps


class Engine:
    """The run state (model, optimizer, EMA, lr table, generator, step counter) and its one step.

    Args:
        model: on ``placement.device`` (channels_last when the config says so), in float32.
        images: (N, 1, 48, 48) uint8 and labels (N,) int64 or (N, C) float targets, on the device.
        criterion: a loss on float32 logits (``CrossEntropyLoss``), on the device.
        run_model: what the step calls (``torch.compile(model)`` or ``model``).
        cuda_graph: ``auto`` (on when the device is CUDA), ``on`` or ``off``; default ``config.cuda_graph``.
        twins: the unmasked twins, mask regions and teacher of ``images`` (``config.twin``; see
            :mod:`fer_models.twins`): the step then composes each batch with :func:`twin_batch`.
    """

    def __init__(self, model: nn.Module, config: TrainConfig, placement: Placement, images: torch.Tensor,
                 labels: torch.Tensor, criterion: nn.Module, run_model: nn.Module | None = None,
                 cuda_graph: str | None = None, echo: Callable[[str], None] = print,
                 twins: TwinBatchSource | None = None) -> None:
        cuda_graph = config.cuda_graph if cuda_graph is None else cuda_graph
        if cuda_graph not in CUDA_GRAPH_CHOICES:
            raise ValueError(f"cuda_graph must be one of {CUDA_GRAPH_CHOICES}, got {cuda_graph!r}")
        dev = placement.device
        if dev.type == "cuda" and dev.index is not None:
            # streams, graph capture and the default generator a capture registers are the *current* device's
            torch.cuda.set_device(dev)
        self.model, self.config, self.placement, self.criterion = model, config, placement, criterion
        self.run_model = run_model if run_model is not None else model
        self.images, self.labels = images, labels
        self.twins = twins
        if (config.twin is None) != (twins is None):
            raise ValueError("config.twin and the engine's twins go together")
        self.echo = echo
        n = int(labels.shape[0])
        self.batch_size = min(config.batch_size, n)
        self.steps_per_epoch = steps_per_epoch(config, n)
        self.lr_table = lr_table(config, self.steps_per_epoch, dev)
        self.lr = self.lr_table[:1].clone().view(())
        self.optimizer = make_optimizer(config, model, self.lr)
        self.ema = WeightEMA(model, config.ema_decay) if config.ema_decay > 0 else None
        # on CUDA the device's default generator: a CUDA graph captures it without registration
        self.generator = (torch.cuda.default_generators[dev.index if dev.index is not None else
                                                        torch.cuda.current_device()]
                          if dev.type == "cuda" else torch.Generator(device=dev))
        self.step_count = torch.zeros((), dtype=torch.int64, device=dev)  # optimizer steps of the run
        self.epoch_step = torch.zeros((), dtype=torch.int64, device=dev)  # steps of this epoch
        self.order = torch.zeros(self.steps_per_epoch, self.batch_size, dtype=torch.int64, device=dev)
        self.loss_sum = torch.zeros((), dtype=torch.float32, device=dev)
        self.correct = torch.zeros((), dtype=torch.int64, device=dev)
        self.mix_alpha = torch.full((2,), float(config.mixup_alpha), device=dev)
        self.augment = config.augment_config()
        self.scaler = torch.amp.GradScaler("cuda") if placement.amp == "fp16" else None
        self.graph: Any = None
        self.graph_note = self._graph_plan(cuda_graph)
        self._eager_steps = 0

    # ---- state that checkpoints carry

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs besides the model's weights (all tensors on the CPU)."""
        return {"optimizer": cpu_copy(self.optimizer.state_dict()),
                "ema_model": None if self.ema is None else cpu_copy(self.ema.module.state_dict()),
                "step": int(self.step_count), "scaler": None if self.scaler is None else self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` into the existing tensors (in place, so a captured graph stays valid:
        ``Optimizer.load_state_dict`` makes new state tensors, so their values are copied back into the old)."""
        live = {id(p): dict(self.optimizer.state[p]) for group in self.optimizer.param_groups for p in group["params"]}
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                loaded = self.optimizer.state[p]
                for key, old in live[id(p)].items():
                    if isinstance(old, torch.Tensor) and isinstance(loaded.get(key), torch.Tensor):
                        old.copy_(loaded[key])
                        loaded[key] = old
        if self.ema is not None and state.get("ema_model") is not None:
            self.ema.module.load_state_dict(state["ema_model"])
        self.step_count.fill_(int(state["step"]))
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])

    # ---- the step

    def train_step(self) -> None:
        """One optimizer step on the next batch of this epoch's order. No host synchronisation:
        every value it reads or writes is a device tensor."""
        config = self.config
        gen = self.generator
        row = self.order.index_select(0, self.epoch_step.view(1)).view(-1)
        x = to_float(self.images.index_select(0, row))
        y = self.labels.index_select(0, row)
        twins, clean, region = self.twins, None, None
        if twins is not None:
            x, clean, region = twin_batch(x, to_float(twins.clean.index_select(0, row)),
                                          twins.region.index_select(0, row).to(x.dtype),
                                          twins.top.index_select(0, row), config.mask_prob, config.refill,
                                          config.eyes_only, gen)
        if config.augment:
            if twins is not None:  # one geometry for the input, its twin and its region
                x, clean, region = augment_batch(torch.cat([x, clean, region], 1), self.augment, gen).split(1, 1)
            else:
                x = augment_batch(x, self.augment, gen)
            if config.erase_prob > 0:
                x = random_erase(x, config.erase_prob, gen)
        if config.mixup_alpha > 0:
            g = torch._standard_gamma(self.mix_alpha, generator=gen)
            lam = g[0] / g.sum()
            perm = torch.rand(self.batch_size, generator=gen, device=gen.device).argsort()
            x = lam * x + (1 - lam) * x.index_select(0, perm)
        features = class_map = None
        with self.placement.autocast(cache_enabled=False):
            if config.cam_penalty > 0 or config.mask_evidence > 0:  # Mini-Xception: blocks, class conv, pooling
                features = self.model.forward_features(prepare(x, config.channels_last))
                class_map = self.model.head(features)
                logits = self.model.pool(class_map).flatten(1)
            else:
                logits = self.run_model(prepare(x, config.channels_last))
            teacher = None
            if twins is not None and twins.teacher is not None:
                with torch.no_grad():
                    teacher = twins.teacher(prepare(clean, config.channels_last)).float()
        logits = logits.float()
        loss = self.criterion(logits, y)
        if config.mixup_alpha > 0:
            loss = lam * loss + (1 - lam) * self.criterion(logits, y.index_select(0, perm))
        if teacher is not None:
            w = config.distill_weight
            loss = (1 - w) * loss + w * distill_loss(logits, teacher, config.distill_temp)
        if config.cam_penalty > 0:
            hard = y if y.ndim == 1 else y.argmax(1)
            loss = loss + config.cam_penalty * cam_share(features, self.model.head, hard, region)
        if config.mask_evidence > 0:
            loss = loss + config.mask_evidence * mask_evidence(class_map, self.model.head.bias, region)
        self.optimizer.zero_grad(set_to_none=False)
        # clamped: a step past the table (more steps than the schedule planned) keeps the last lr, where an
        # index out of range would be a device-side assert that ends the CUDA context
        last = self.lr_table.shape[0] - 1
        self.lr.copy_(self.lr_table.index_select(0, self.step_count.clamp_max(last).view(1)).view(()))
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        if self.ema is not None:
            self.ema.update()
        with torch.no_grad():
            self.loss_sum += loss.detach() * self.batch_size
            target = y if y.ndim == 1 else y.argmax(1)
            self.correct += (logits.detach().argmax(1) == target).sum()
            self.step_count += 1
            self.epoch_step += 1

    # ---- CUDA graph

    def _graph_plan(self, choice: str) -> str:
        """'' when the step will be captured, else why not (one line)."""
        dev = self.placement.device
        if choice == "off":
            return "CUDA graph off (--cuda-graph off)"
        if dev.type != "cuda":
            if choice == "on":
                raise ValueError(f"--cuda-graph on needs a CUDA device; this run uses {dev}")
            return ""  # nothing to say on the CPU: the step is eager by nature
        reasons = []
        if _capture_failed is not None:
            reasons.append(f"an earlier capture in this process failed ({_capture_failed})")
        if self.scaler is not None:
            reasons.append("fp16 loss scaling checks for overflow on the host every step (use --amp bf16)")
        if self.config.compile:
            reasons.append("--compile is on (torch.compile(mode='reduce-overhead') graphs on its own)")
        if reasons:
            if choice == "on":
                raise ValueError(f"--cuda-graph on is impossible: {'; '.join(reasons)}")
            return "CUDA graph off: " + "; ".join(reasons)
        return ""

    @property
    def graphed(self) -> bool:
        return self.placement.device.type == "cuda" and not self.graph_note

    def _capture(self) -> None:
        """Capture :meth:`train_step` in one CUDA graph (after eager warm-up steps on a side stream).

        If capture fails, the engine stays eager and says why in one line (the op that broke the capture,
        not capture_end's "previous error"). A failed ``capture_end`` leaves the default generator marked as
        capturing and the capture's stream current; both are put back (``Generator.clone_state`` taken
        before, ``graphsafe_set_state``). If that is impossible, a RuntimeError says to rerun with
        ``--cuda-graph off``.
        """
        global _capture_failed
        stream = torch.cuda.current_stream()
        try:
            gen_before = self.generator.clone_state()   # torch >= 2.4
        except (AttributeError, RuntimeError):
            gen_before = None
        pool = torch.cuda.graph_pool_handle()
        try:
            graph = torch.cuda.CUDAGraph()
            saved = (self.step_count.clone(), self.epoch_step.clone(), self.loss_sum.clone(), self.correct.clone())
            torch.cuda.synchronize()
            with torch.cuda.graph(graph, pool=pool):
                self.train_step()
            # capture records the kernels without running them; the counters are put back all the same
            for t, v in zip((self.step_count, self.epoch_step, self.loss_sum, self.correct), saved):
                t.copy_(v)
            self.graph = graph
            self.echo("training step captured in one CUDA graph")
        except Exception as exc:  # noqa: BLE001 (any capture failure means: stay eager, and say why)
            cause = exc.__context__ if exc.__context__ is not None else exc
            text = str(cause).splitlines()[0] if str(cause) else ""
            self.graph_note = f"CUDA graph capture failed, training eagerly: {type(cause).__name__}: {text}"
            _capture_failed = f"{type(cause).__name__}: {text}"
            try:  # a failed capture_end may leave the allocator routing new blocks to the dead graph's pool
                torch._C._cuda_endAllocateToPool(torch.cuda.current_device(), pool)
            except Exception:  # noqa: BLE001 (already ended, or a torch without this call: nothing to undo)
                pass
            try:
                torch.cuda.set_stream(stream)
                if gen_before is None:
                    raise RuntimeError("this torch cannot clone a generator's state (Generator.clone_state)")
                self.generator.graphsafe_set_state(gen_before)
                torch.cuda.synchronize()
            except Exception as again:  # noqa: BLE001
                raise RuntimeError(f"CUDA graph capture failed ({type(cause).__name__}: {text}) and the eager "
                                   f"fallback could not restore the device state ({again}); rerun with "
                                   f"--cuda-graph off") from cause
            self.echo(self.graph_note)

    def _warm_step(self) -> None:
        """An eager step on a side stream (the warm-up CUDA graphs need before capture)."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            self.train_step()
        torch.cuda.current_stream().wait_stream(stream)

    def step(self) -> None:
        """One step: replayed from the CUDA graph when captured, eager otherwise."""
        if self.graph is not None:
            self.graph.replay()
            return
        if self.graphed:
            if self._eager_steps < GRAPH_WARMUP_STEPS:
                self._eager_steps += 1
                self._warm_step()
                return
            self._capture()
            if self.graph is not None:
                self.graph.replay()
                return
        self.train_step()

    # ---- an epoch

    def begin_epoch(self, epoch: int) -> None:
        """Seed the generator from (seed, epoch), lay out the epoch's order, zero the epoch's sums."""
        self.generator.manual_seed(epoch_seed(self.config.seed, epoch))
        n = int(self.labels.shape[0])
        perm = torch.randperm(n, generator=self.generator, device=self.generator.device)
        self.order.copy_(perm[:self.steps_per_epoch * self.batch_size].view(self.steps_per_epoch, self.batch_size))
        self.epoch_step.zero_()
        self.loss_sum.zero_()
        self.correct.zero_()

    def run_epoch(self, epoch: int, on_step: Callable[[], None] | None = None) -> EpochStats:
        """Train one epoch; the host reads the loss and accuracy sums once, at the end.

        Raises:
            FloatingPointError: the epoch's mean training loss is not finite.
        """
        self.run_model.train()
        self.begin_epoch(epoch)
        start = time.perf_counter()
        for _ in range(self.steps_per_epoch):
            self.step()
            if on_step is not None:
                on_step()
        loss_sum, correct = torch.stack([self.loss_sum.double(), self.correct.double()]).tolist()
        seconds = time.perf_counter() - start
        images = self.steps_per_epoch * self.batch_size
        loss = loss_sum / images
        if not math.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss} in epoch {epoch + 1} (training diverged: try a "
                                     "lower --lr, or lower loss-term weights)")
        return EpochStats(loss=loss, acc=correct / images, images=images, seconds=seconds)


def cpu_copy(obj: Any) -> Any:
    """``obj`` with every tensor copied to the CPU (nested dicts / lists; never sharing the live state)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(cpu_copy(v) for v in obj)
    return obj
