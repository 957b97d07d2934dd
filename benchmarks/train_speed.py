"""Training speed (images/s) on this CPU: a naive loop vs fer_models' loop, same model and batch size.

- naive: float32 NCHW model; a ``Dataset`` that augments one image at a time (OpenCV
  ``warpAffine`` with the same rotation / shift / zoom / flip, border replicated) and
  a ``DataLoader`` (``num_workers=0``) that collates the batch; Adam; class-weighted CE.
- fp32+cl: our batched tensor augmentation, channels_last, float32.
- bf16+cl: batched augmentation, channels_last, bf16 autocast.
- ours: what ``fer-models train`` picks here (``--amp auto``): bf16 where the CPU computes it
  natively (AVX512-BF16 / AMX), else float32. The CPU capability and the choice are printed.
- ours+compile (``--compile [--compile-mode M]``): the same under ``torch.compile(mode=M,
  dynamic=False)`` (timed after the others).
- before / engine / graph (``--loops``, and always with ``--device cuda``): the whole training
  step of ``fer-models train`` with the default recipe (SGD + Nesterov, per-step lr schedule,
  EMA, random erasing, label smoothing): *before* is the loop as it was until the engine
  (``torch.optim.SGD`` + ``LambdaLR`` + ``AveragedModel``, batches sliced by the Python step
  number, ``float(loss)`` every step for the progress bar); *engine* is
  :class:`fer_models.engine.Engine`'s step run eagerly; *graph* (CUDA only) the same step
  captured in one CUDA graph and replayed. On CUDA the naive loop runs there too (its
  augmentation on the CPU, as a typical DataLoader does), the GPU's name, its utilization
  during the timed steps (``nvidia-smi``) and the precision are printed.
- stack K (``--stack K``, with the loops): K runs of one architecture trained as one model
  (:class:`Stacked`: parameters stacked to (K, ...), ``torch.func.vmap`` over the K models, so
  each convolution becomes one grouped convolution over all K), the same engine step (graphed on
  CUDA), batch K x ``--batch-size``: the figure is images/s of all K runs together. The question
  it answers (issue #27): does stacking the runs of a grid pay on a GPU, over one graph per run?
  Measurement only: the package does not train stacked runs (yet).
- ours x2 procs (``--data-parallel``): data parallel over 2 processes with 1 intra-op thread
  each (the "small convs scale better across processes than threads" idea): each process
  trains on half of every batch of ``--batch-size`` images (same sampled batch, same
  augmentation) and the summed gradients are all-reduced with ``torch.distributed`` (gloo)
  before every Adam step, so the update uses the whole batch (BatchNorm statistics are per half).
  Timed after the others, in its own 2 processes, on rank 0 after a barrier.

Every variant runs with the allocator setting ``fer-models train`` makes
(``fer_models.device.keep_freed_memory``: glibc keeps freed blocks for reuse); ``--system-malloc``
leaves the allocator alone, so two runs, one with it, measure what that setting is worth.

All variants run in one process on the same synthetic uint8 images (content does not
change the speed). Each is warmed up (``--warmup`` steps; this includes compiling), then the
variants are timed round-robin, ``--steps`` steps each, ``--repeats`` times; each figure is
images / wall second, the median over repeats. Usage::

    flock /tmp/maskgen-cpu.lock python benchmarks/train_speed.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runs from a checkout without an install

from fer_models import create_model  # noqa: E402
from fer_models.config import TrainConfig  # noqa: E402
from fer_models.data import AugmentConfig, augment_batch, to_float  # noqa: E402
from fer_models.device import cpu_capability, keep_freed_memory, resolve  # noqa: E402
from maskgen.cli_errors import at_least, check_output_paths, run_script  # noqa: E402
from maskgen.io import atomic_write  # noqa: E402
from maskgen.paths import Output  # noqa: E402

SIDE = 48
NUM_CLASSES = 7
DEFAULT_MODELS = ("mini_xception_cbam", "mini_xception_cbam_paper")
#: the paper's augmentation (as its recipe defines it)
PAPER_AUGMENT = TrainConfig.from_recipe("paper", data="", out="").augment_config()


class NaiveDataset(Dataset):
    """Per-image augmentation as a typical loop does it: one cv2.warpAffine per __getitem__."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, aug: AugmentConfig, seed: int = 0) -> None:
        self.images, self.labels, self.aug = images, labels, aug
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        a = self.aug
        angle = self.rng.uniform(-a.rotation_deg, a.rotation_deg)
        zoom = self.rng.uniform(1 - a.scale, 1 + a.scale)
        tx, ty = self.rng.uniform(-a.translate, a.translate, 2) * SIDE
        m = cv2.getRotationMatrix2D((SIDE / 2 - 0.5, SIDE / 2 - 0.5), angle, zoom)
        m[:, 2] += (tx, ty)
        img = cv2.warpAffine(self.images[i], m, (SIDE, SIDE), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
        if a.hflip and self.rng.random() < 0.5:
            img = img[:, ::-1]
        x = torch.from_numpy(img.astype(np.float32) / 127.5 - 1.0).unsqueeze(0)
        return x, int(self.labels[i])


def measure(steps: dict[str, Callable[[], None]], warmup: int, n_steps: int, repeats: int,
            sync: Callable[[], None] = lambda: None) -> dict[str, float]:
    """Steps/s of each variant: warm each up, then time ``n_steps`` steps per variant, round-robin,
    ``repeats`` times; the median per variant. Interleaving spreads any load from other
    processes over all variants instead of one. ``sync`` (``torch.cuda.synchronize`` on a GPU) runs
    before the clock starts and before it stops, not after every step, so the host may run ahead
    of the device within a timed run as it does in training."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    rates: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            sync()
            t0 = time.perf_counter()
            for _ in range(n_steps):
                step()
            sync()
            rates[name].append(n_steps / (time.perf_counter() - t0))
    return {k: statistics.median(v) for k, v in rates.items()}


def naive_step(name: str, images: np.ndarray, labels: np.ndarray, bs: int, device: str = "cpu",
               workers: int = 0) -> Callable[[], None]:
    """One training step of the naive loop (float32 NCHW, per-image cv2 augmentation, DataLoader)."""
    torch.manual_seed(0)
    model = create_model(name).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    crit = nn.CrossEntropyLoss(weight=torch.ones(NUM_CLASSES)).to(device)
    loader = DataLoader(NaiveDataset(images, labels, PAPER_AUGMENT), batch_size=bs, shuffle=True,
                        drop_last=True, num_workers=workers, persistent_workers=workers > 0,
                        pin_memory=device.startswith("cuda"))
    it = iter(loader)

    def step() -> None:
        nonlocal it
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(loader)
            x, y = next(it)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = crit(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def ours_step(name: str, images: np.ndarray, labels: np.ndarray, bs: int, amp: str,
              compile_: bool = False, compile_mode: str | None = None) -> Callable[[], None]:
    """One training step as fer_models.train does it (uint8 tensors, batched augmentation, channels_last)."""
    torch.manual_seed(0)
    model = create_model(name).to(memory_format=torch.channels_last).train()
    run = torch.compile(model, mode=compile_mode, dynamic=False) if compile_ else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    crit = nn.CrossEntropyLoss(weight=torch.ones(NUM_CLASSES))
    x_all = torch.from_numpy(images).unsqueeze(1)
    y_all = torch.from_numpy(labels)
    gen = torch.Generator().manual_seed(0)
    aug = PAPER_AUGMENT
    n = len(labels)

    def step() -> None:
        idx = torch.randint(0, n, (bs,), generator=gen)
        x = augment_batch(to_float(x_all[idx]), aug, gen).contiguous(memory_format=torch.channels_last)
        with resolve("cpu", amp).autocast():
            logits = run(x)
        loss = crit(logits.float(), y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _default_recipe(name: str, bs: int, amp: str, device: str) -> tuple[TrainConfig, Any]:
    config = TrainConfig(data="", out="", model=name, batch_size=bs, amp=amp, device=device, epochs=100)
    return config, resolve(device, amp)


def before_step(name: str, images: np.ndarray, labels: np.ndarray, bs: int, amp: str,
                device: str = "cpu") -> Callable[[], None]:
    """One step of the training loop as it was before the engine (default recipe), for the A/B."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from fer_models.data import random_erase
    from fer_models.engine import lr_factor

    n = len(labels)
    config, placement = _default_recipe(name, bs, amp, device)
    dev = placement.device
    torch.manual_seed(0)
    model = create_model(name).to(dev).to(memory_format=torch.channels_last).train()
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": config.weight_decay},
                           {"params": rest, "weight_decay": 0.0}], lr=config.lr, momentum=config.momentum,
                          nesterov=True)
    steps = n // bs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(config, steps))
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=False)
    crit = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    x_all = torch.from_numpy(images).unsqueeze(1).to(dev)
    y_all = torch.from_numpy(labels).to(dev)
    aug = config.augment_config()
    state = {"i": steps, "epoch": 0, "order": None, "gen": None}
    total = torch.zeros((), device=dev)

    def step() -> None:
        nonlocal total
        if state["i"] >= steps:  # a new epoch: a new generator and order, as the old loop made them
            state["gen"] = torch.Generator(device=dev).manual_seed(state["epoch"])
            state["order"] = torch.randperm(n, generator=state["gen"], device=dev)
            state["i"], state["epoch"] = 0, state["epoch"] + 1
        i, gen = state["i"], state["gen"]
        idx = state["order"][i * bs:(i + 1) * bs]
        state["i"] += 1
        x = augment_batch(to_float(x_all[idx]), aug, gen)
        x = random_erase(x, config.erase_prob, gen).contiguous(memory_format=torch.channels_last)
        with placement.autocast():
            logits = model(x)
        logits = logits.float()
        loss = crit(logits, y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        ema.update_parameters(model)
        total = total + loss.detach() * bs
        value = float(loss.detach())  # the progress bar's read, every step
        if not np.isfinite(value):
            raise FloatingPointError(value)

    return step


def engine_step(name: str, images: np.ndarray, labels: np.ndarray, bs: int, amp: str,
                device: str = "cpu", graph: bool = False) -> tuple[Callable[[], None], Any]:
    """One step of :class:`fer_models.engine.Engine` (default recipe), eager or replayed from a CUDA graph,
    and the engine (whose ``graph`` says whether the capture happened)."""
    config, placement = _default_recipe(name, bs, amp, device)
    torch.manual_seed(0)
    model = create_model(name).to(placement.device).to(memory_format=torch.channels_last)
    return _stepper(model, config, placement, images, labels, graph, name)


def _stepper(model: nn.Module, config: TrainConfig, placement: Any, images: np.ndarray, labels: np.ndarray,
             graph: bool, label: str) -> tuple[Callable[[], None], Any]:
    """The engine over ``model`` and a step function that begins each epoch as ``Engine.run_epoch`` does."""
    from fer_models.engine import Engine

    dev = placement.device
    crit = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    x_all = torch.from_numpy(images).unsqueeze(1).to(dev)
    y_all = torch.from_numpy(labels).to(dev)
    engine = Engine(model, config, placement, x_all, y_all, crit, cuda_graph="on" if graph else "off",
                    echo=lambda line: print(f"  {label}: {line}", flush=True))
    state = {"i": engine.steps_per_epoch, "epoch": 0}

    def step() -> None:
        if state["i"] >= engine.steps_per_epoch:
            engine.begin_epoch(state["epoch"])
            state["i"], state["epoch"] = 0, state["epoch"] + 1
        engine.step()
        state["i"] += 1

    return step, engine


class Stacked(nn.Module):
    """K models of one architecture as one module: every parameter and buffer stacked to (K, ...), the
    forward ``torch.func.vmap`` of the architecture over them. Input (K * B, ...) (run k's batch is rows
    k*B .. (k+1)*B), output (K * B, classes). BatchNorm statistics are per run, as if trained apart; an
    elementwise optimizer (SGD, Adam) and the EMA update each run as its own (with the mean loss over
    K * B rows each run's gradient is 1/K of its own, and every stacked tensor gets weight decay: for
    timing only). Parameters stay in the default layout: a rank-5 tensor has no channels_last.)"""

    def __init__(self, models: list[nn.Module]) -> None:
        from torch.func import stack_module_state

        super().__init__()
        params, buffers = stack_module_state(models)
        self.k = len(models)
        self._names = {name: name.replace(".", "__") for name in [*params, *buffers]}
        for name, value in params.items():
            self.register_parameter(self._names[name], nn.Parameter(value))
        for name, value in buffers.items():
            self.register_buffer(self._names[name], value)
        self.__dict__["_base"] = models[0]  # outside the module tree: its own tensors are never used

    def train(self, mode: bool = True) -> Stacked:
        super().train(mode)
        self._base.train(mode)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torch.func import functional_call, vmap

        params = {name: getattr(self, key) for name, key in self._names.items()}

        def one(p: dict[str, torch.Tensor], xk: torch.Tensor) -> torch.Tensor:
            return functional_call(self._base, p, (xk,))

        out = vmap(one)(params, x.reshape(self.k, -1, *x.shape[1:]))
        return out.reshape(-1, out.shape[-1])


def stacked_step(name: str, images: np.ndarray, labels: np.ndarray, bs: int, amp: str, k: int,
                 device: str = "cpu") -> tuple[Callable[[], None], Any]:
    """The engine's step (default recipe) on :class:`Stacked` K runs, batch ``k * bs``: graphed on CUDA."""
    config, placement = _default_recipe(name, k * bs, amp, device)
    models = []
    for seed in range(k):
        torch.manual_seed(seed)
        models.append(create_model(name).to(placement.device))
    model = Stacked(models).to(placement.device)  # (K, ...) tensors have no channels_last layout (rank 5)
    return _stepper(model, config, placement, images, labels, placement.device.type == "cuda", f"{name} stack {k}")


def gpu_utilization(seconds: float = 1.0) -> str:
    """Mean GPU utilization over ``seconds`` as nvidia-smi reports it (sampled every 100 ms), or 'n/a'."""
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                              "-lms", "100"], capture_output=True, text=True, timeout=seconds)
        text = out.stdout
    except subprocess.TimeoutExpired as exc:
        text = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
    except (OSError, ValueError):
        return "n/a"
    values = [float(v) for v in text.split() if v.replace(".", "", 1).isdigit()]
    return f"{statistics.mean(values):.0f} %" if values else "n/a"


def _warm_graphed(step: Callable[[], None], engine: Any, label: str, warmup: int) -> str | None:
    """Run a graphed engine step past its capture; the GPU utilization while it runs alone for a second,
    or None when the capture failed (said in one line: the column would time the eager step again)."""
    import threading

    from fer_models.engine import GRAPH_WARMUP_STEPS

    for _ in range(max(warmup, GRAPH_WARMUP_STEPS + 1)):  # the capture happens after the eager warm-up
        step()
    torch.cuda.synchronize()
    if engine.graph is None:
        print(f"  {label}: no column: {engine.graph_note}", flush=True)
        return None
    util: dict[str, str] = {}
    sampler = threading.Thread(target=lambda: util.__setitem__("u", gpu_utilization(1.0)))
    sampler.start()
    t_end = time.perf_counter() + 1.2
    while time.perf_counter() < t_end:
        step()
    torch.cuda.synchronize()
    sampler.join()
    return util["u"]


def measure_loops(name: str, images: np.ndarray, labels: np.ndarray, bs: int, amp: str, device: str,
                  warmup: int, n_steps: int, repeats: int, stack: int = 0) -> dict[str, Any]:
    """Images/s of naive, before, engine (and graph on CUDA; and ``stack{K}``: K stacked runs, all their
    images), timed round-robin in this process; ``gpu_util_*``: the GPU utilization of the graphed columns."""
    cuda = device.startswith("cuda")
    steps = {"naive": naive_step(name, images, labels, bs, device=device),
             "before": before_step(name, images, labels, bs, amp, device),
             "engine": engine_step(name, images, labels, bs, amp, device)[0]}
    images_per_step = dict.fromkeys(steps, bs)
    util: dict[str, str] = {}
    graphed = []
    if cuda:
        graphed.append(("graph", *engine_step(name, images, labels, bs, amp, device, graph=True), bs))
    if stack > 1:
        step, engine = stacked_step(name, images, labels, bs, amp, stack, device)
        graphed.append((f"stack{stack}", step, engine, stack * bs))
    for column, step, engine, per_step in graphed:
        if cuda:
            u = _warm_graphed(step, engine, f"{name} {column}", warmup)
            if u is None:
                continue
            util[f"gpu_util_{column}"] = u
        steps[column], images_per_step[column] = step, per_step
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    rates: dict[str, Any] = {k: images_per_step[k] * v
                             for k, v in measure(steps, warmup, n_steps, repeats, sync).items()}
    return {**rates, **util}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _data_parallel_worker(rank: int, world: int, port: int, name: str, images: np.ndarray, labels: np.ndarray,
                          bs: int, amp: str, warmup: int, n_steps: int, repeats: int, queue: mp.Queue) -> None:
    """One of ``world`` processes (1 thread each) training on rows ``rank::world`` of each batch."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = create_model(name).to(memory_format=torch.channels_last).train()
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    weight = torch.ones(NUM_CLASSES)
    crit = nn.CrossEntropyLoss(weight=weight, reduction="sum")
    x_all = torch.from_numpy(images).unsqueeze(1)
    y_all = torch.from_numpy(labels)
    gen = torch.Generator().manual_seed(0)  # same seed in every process: same batches, same augmentation
    aug = PAPER_AUGMENT
    n = len(labels)

    def step() -> None:
        idx = torch.randint(0, n, (bs,), generator=gen)
        # every process augments the whole batch (keeps the generators in step; ~0.2 ms) and keeps its rows
        x = augment_batch(to_float(x_all[idx]), aug, gen)[rank::world].contiguous(memory_format=torch.channels_last)
        y = y_all[idx]
        with resolve("cpu", amp).autocast():
            logits = model(x)
        # the whole batch's weighted mean = sum over processes of (local weighted sum / global weight sum)
        loss = crit(logits.float(), y[rank::world]) / weight[y].sum()
        opt.zero_grad(set_to_none=False)
        loss.backward()
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat)
        offset = 0
        for p in params:
            p.grad.copy_(flat[offset:offset + p.numel()].view_as(p.grad))
            offset += p.numel()
        opt.step()

    for _ in range(warmup):
        step()
    rates = []
    for _ in range(repeats):
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(n_steps):
            step()
        rates.append(n_steps / (time.perf_counter() - t0))
    if rank == 0:
        queue.put(statistics.median(rates))
    dist.destroy_process_group()


def measure_data_parallel(name: str, images: np.ndarray, labels: np.ndarray, bs: int, amp: str, warmup: int,
                          n_steps: int, repeats: int, world: int = 2) -> float:
    """Steps/s of ``world`` single-threaded processes sharing each batch (gradients all-reduced, gloo)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_data_parallel_worker,
                         args=(r, world, port, name, images, labels, bs, amp, warmup, n_steps, repeats, queue))
             for r in range(world)]
    for proc in procs:
        proc.start()
    rate = float(queue.get(timeout=600))
    for proc in procs:
        proc.join()
    return rate


def profile_table(step: Callable[[], None], n_steps: int = 10, rows: int = 15) -> str:
    """torch.profiler's self-CPU-time table over ``n_steps`` steps, and ms per step of all ops."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(n_steps):
            step()
    events = prof.key_averages()
    total_ms = sum(e.self_cpu_time_total for e in events) / 1000 / n_steps
    return (f"profile of ours, {n_steps} steps: {total_ms:.1f} ms self CPU time per step\n"
            + events.table(sort_by="self_cpu_time_total", row_limit=rows))


def write_json(path: str, results: list[dict]) -> None:
    """``--json``: written atomically (a symlink there is refused, never written through)."""
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(results, indent=2))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    p.add_argument("--batch-size", type=at_least(1), default=64)
    p.add_argument("--steps", type=at_least(1), default=10, help="timed steps per repeat")
    p.add_argument("--repeats", type=at_least(1), default=5)
    p.add_argument("--warmup", type=at_least(0), default=5)
    p.add_argument("--threads", type=at_least(1), default=2)
    p.add_argument("--compile", action="store_true", help="also time ours under torch.compile")
    p.add_argument("--compile-mode", default=None,
                   help="torch.compile mode, e.g. max-autotune-no-cudagraphs (default: torch's default)")
    p.add_argument("--data-parallel", action="store_true",
                   help="also time ours (bf16) in 2 processes x 1 thread, gradients all-reduced (gloo)")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--profile", action="store_true",
                   help="also print a torch.profiler table (self CPU time per op) of 10 steps of ours")
    p.add_argument("--system-malloc", action="store_true",
                   help="leave the C allocator as it is; by default every variant runs with what fer-models "
                        "train sets (fer_models.device.keep_freed_memory); run both ways for the A/B")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]; on CUDA only the loops are timed (--loops)")
    p.add_argument("--loops", action="store_true",
                   help="time the whole training step: naive vs before (the loop until the engine) vs the engine "
                        "(eager; and one CUDA graph on CUDA), default recipe")
    p.add_argument("--amp", default="auto", help="precision of before / engine / graph (auto: as fer-models train)")
    p.add_argument("--stack", type=int, default=0, metavar="K",
                   help="with the loops, also time K runs stacked in one model (torch.func.vmap; graphed on CUDA): "
                        "images/s of all K together")
    args = p.parse_args()
    if args.stack < 0 or args.stack == 1:
        p.error(f"--stack must be 0 (off) or at least 2, got {args.stack}")
    if args.json:  # before the measurement: a path that cannot take the results ends here
        check_output_paths([], [Output("--json", Path(args.json))])
    if args.loops or args.device != "cpu":
        run_loops(args)
        return
    kept = False if args.system_malloc else keep_freed_memory()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    n = 2048
    images = rng.integers(0, 256, (n, SIDE, SIDE), dtype=np.uint8)
    labels = rng.integers(0, NUM_CLASSES, n).astype(np.int64)
    bs = args.batch_size
    auto = resolve("cpu", "auto").amp
    print(f"CPU capability: {cpu_capability()}; --amp auto chooses: {auto}; freed memory kept "
          f"(glibc malloc, as fer-models train does): {'yes' if kept else 'no'}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {bs}, "
          f"{args.steps} steps x {args.repeats} repeats (median), warmup {args.warmup}")
    extra = ([("ours_compile", "ours+compile", "ours + torch.compile")] if args.compile else []) + (
        [("ours_2procs", "ours x2 procs", "ours, 2 processes x 1 thread")] if args.data_parallel else [])
    results = []
    print(f"{'model':<26} {'naive':>8} {'fp32+cl':>8} {'bf16+cl':>8} {'ours':>8}" + "".join(f" {short:>13}" for _, short, _ in extra)
          + f" {'speedup':>8}")
    for name in args.models:
        row = {"model": name, "batch_size": bs, "threads": args.threads}
        steps = {
            "naive": naive_step(name, images, labels, bs),
            "fp32_channels_last": ours_step(name, images, labels, bs, amp="none"),
            "bf16_channels_last": ours_step(name, images, labels, bs, amp="bf16"),
        }
        steps["ours"] = steps["bf16_channels_last"] if auto == "bf16" else steps["fp32_channels_last"]
        timed = {k: v for k, v in steps.items() if k != "ours"}
        row.update({k: bs * v for k, v in measure(timed, args.warmup, args.steps, args.repeats).items()})
        row["ours"] = row["bf16_channels_last" if auto == "bf16" else "fp32_channels_last"]
        row["auto_amp"], row["cpu_capability"], row["keep_freed_memory"] = auto, cpu_capability(), kept
        if args.compile:
            # timed after the others: once inductor has compiled, its worker processes stay alive
            # and were seen to slow the eager loops timed after them in the same process
            compiled = {"ours_compile": ours_step(name, images, labels, bs, amp=auto, compile_=True,
                                                  compile_mode=args.compile_mode)}
            row.update({k: bs * v for k, v in measure(compiled, args.warmup, args.steps, args.repeats).items()})
        if args.data_parallel:
            row["ours_2procs"] = bs * measure_data_parallel(name, images, labels, bs, auto, args.warmup,
                                                            args.steps, args.repeats)
        if args.profile:
            print(profile_table(steps["ours"]), flush=True)
        row["speedup"] = row["ours"] / row["naive"]
        row["best_speedup"] = max(row[k] for k in [*steps, *(key for key, _, _ in extra)] if k != "naive") / row["naive"]
        results.append(row)
        line = (f"{name:<26} {row['naive']:8.0f} {row['fp32_channels_last']:8.0f} "
                f"{row['bf16_channels_last']:8.0f} {row['ours']:8.0f}")
        line += "".join(f" {row[key]:13.0f}" for key, _, _ in extra)
        print(line + f" {row['speedup']:7.2f}x", flush=True)
    print()
    print(f"CPU capability {cpu_capability()}; ours = --amp auto = {auto}")
    print("| model | naive | fp32 + channels_last | bf16 + channels_last | ours (auto) |"
          + "".join(f" {long} |" for _, _, long in extra) + " ours / naive |")
    print("|---|--:|--:|--:|--:|" + "--:|" * len(extra) + "--:|")
    for row in results:
        cells = [f"{row[k]:,.0f}" for k in ("naive", "fp32_channels_last", "bf16_channels_last", "ours")]
        cells += [f"{row[key]:,.0f}" for key, _, _ in extra]
        print(f"| {row['model']} | " + " | ".join(cells) + f" | {row['speedup']:.2f}x |")
    if args.json:
        write_json(args.json, results)


def _fmt(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate:,.0f}"


def run_loops(args: argparse.Namespace) -> None:
    """``--loops`` / ``--device cuda``: naive vs before vs engine (vs graph), one table."""
    kept = False if args.system_malloc else keep_freed_memory()
    torch.set_num_threads(args.threads)
    placement = resolve(args.device, args.amp)
    if placement.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as fer-models train sets it: the same convolution kernels
    rng = np.random.default_rng(0)
    n = 2048 if placement.device.type == "cpu" else 16384
    images = rng.integers(0, 256, (n, SIDE, SIDE), dtype=np.uint8)
    labels = rng.integers(0, NUM_CLASSES, n).astype(np.int64)
    bs = args.batch_size
    where = (torch.cuda.get_device_name(placement.device) if placement.device.type == "cuda"
             else f"CPU {cpu_capability()}, {torch.get_num_threads()} threads")
    print(f"{where}; torch {torch.__version__}; precision {placement.amp} (--amp {args.amp}); batch {bs}; "
          f"{args.steps} steps x {args.repeats} repeats (median), warmup {args.warmup}; freed memory kept: "
          f"{'yes' if kept else 'no'}", flush=True)
    cols = ["naive", "before", "engine"] + (["graph"] if placement.device.type == "cuda" else []) + (
        [f"stack{args.stack}"] if args.stack else [])
    results = []
    for name in args.models:
        row = {"model": name, "batch_size": bs, "device": where, "amp": placement.amp,
               **measure_loops(name, images, labels, bs, placement.amp, str(placement.device), args.warmup,
                               args.steps, args.repeats, args.stack)}
        for c in cols:
            row.setdefault(c, None)  # a capture that failed (said above): no figure
        results.append(row)
        utils = "; ".join(f"GPU utilization during the {key[9:]} steps {value}" for key, value in row.items()
                          if key.startswith("gpu_util_"))
        print(f"{name}: " + ", ".join(f"{c} {_fmt(row[c])}" for c in cols) + " images/s"
              + (f"; {utils}" if utils else ""), flush=True)
    ratios = [("engine / before", "engine", "before")]
    if "graph" in cols:
        ratios.append(("graph / naive", "graph", "naive"))
    if args.stack:
        ratios.append((f"stack{args.stack} / {'graph' if 'graph' in cols else 'engine'}", f"stack{args.stack}",
                       "graph" if "graph" in cols else "engine"))
    print()
    print("| model | " + " | ".join(cols) + " | " + " | ".join(r[0] for r in ratios) + " |")
    print("|---|" + "--:|" * (len(cols) + len(ratios)))
    for row in results:
        cells = [_fmt(row[c]) for c in cols]
        cells += [f"{row[a] / row[b]:.2f}x" if row[a] and row[b] else "n/a" for _, a, b in ratios]
        print(f"| {row['model']} | " + " | ".join(cells) + " |")
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    run_script(main)
