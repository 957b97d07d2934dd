"""Training speed (images/s) on this CPU: a naive loop vs fer_models' loop, same model and batch size.

- naive: float32 NCHW model; a ``Dataset`` that augments one image at a time (OpenCV
  ``warpAffine`` with the same rotation / shift / zoom / flip, border replicated) and
  a ``DataLoader`` (``num_workers=0``) that collates the batch; Adam; class-weighted CE.
- fp32+cl: our batched tensor augmentation, channels_last, float32.
- ours: batched augmentation, channels_last, bf16 autocast (the ``fer-models train`` default).
- ours+compile (``--compile``): the same under ``torch.compile`` (timed after the others).

All variants run in one process on the same synthetic uint8 images (content does not
change the speed). Each is warmed up (``--warmup`` steps; this includes compiling), then the
variants are timed round-robin, ``--steps`` steps each, ``--repeats`` times; each figure is
images / wall second, the median over repeats. Usage::

    flock /tmp/maskgen-cpu.lock python benchmarks/train_speed.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fer_models import create_model
from fer_models.data import AugmentConfig, augment_batch, to_float
from fer_models.train import _autocast

SIDE = 48
NUM_CLASSES = 7
DEFAULT_MODELS = ("mini_xception_cbam", "mini_xception_cbam_paper")


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


def measure(steps: dict[str, Callable[[], None]], warmup: int, n_steps: int, repeats: int) -> dict[str, float]:
    """Steps/s of each variant: warm each up, then time ``n_steps`` steps per variant, round-robin,
    ``repeats`` times; the median per variant. Interleaving spreads any load from other
    processes over all variants instead of one."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    rates: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            t0 = time.perf_counter()
            for _ in range(n_steps):
                step()
            rates[name].append(n_steps / (time.perf_counter() - t0))
    return {k: statistics.median(v) for k, v in rates.items()}


def naive_step(name: str, images: np.ndarray, labels: np.ndarray, bs: int) -> Callable[[], None]:
    """One training step of the naive loop (float32 NCHW, per-image cv2 augmentation, DataLoader)."""
    torch.manual_seed(0)
    model = create_model(name).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    crit = nn.CrossEntropyLoss(weight=torch.ones(NUM_CLASSES))
    loader = DataLoader(NaiveDataset(images, labels, AugmentConfig()), batch_size=bs, shuffle=True,
                        drop_last=True, num_workers=0)
    it = iter(loader)

    def step() -> None:
        nonlocal it
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(loader)
            x, y = next(it)
        loss = crit(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def ours_step(name: str, images: np.ndarray, labels: np.ndarray, bs: int, amp: str,
              compile_: bool = False) -> Callable[[], None]:
    """One training step as fer_models.train does it (uint8 tensors, batched augmentation, channels_last)."""
    torch.manual_seed(0)
    model = create_model(name).to(memory_format=torch.channels_last).train()
    run = torch.compile(model) if compile_ else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    crit = nn.CrossEntropyLoss(weight=torch.ones(NUM_CLASSES))
    x_all = torch.from_numpy(images).unsqueeze(1)
    y_all = torch.from_numpy(labels)
    gen = torch.Generator().manual_seed(0)
    aug = AugmentConfig()
    n = len(labels)

    def step() -> None:
        idx = torch.randint(0, n, (bs,), generator=gen)
        x = augment_batch(to_float(x_all[idx]), aug, gen).contiguous(memory_format=torch.channels_last)
        with _autocast(amp):
            logits = run(x)
        loss = crit(logits.float(), y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10, help="timed steps per repeat")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="also time ours under torch.compile")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    n = 2048
    images = rng.integers(0, 256, (n, SIDE, SIDE), dtype=np.uint8)
    labels = rng.integers(0, NUM_CLASSES, n).astype(np.int64)
    bs = args.batch_size
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {bs}, "
          f"{args.steps} steps x {args.repeats} repeats (median), warmup {args.warmup}")
    results = []
    header = f"{'model':<26} {'naive':>8} {'fp32+cl':>8} {'ours':>8}" + (f" {'ours+compile':>13}" if args.compile else "") + f" {'speedup':>8}"
    print(header)
    for name in args.models:
        row = {"model": name, "batch_size": bs, "threads": args.threads}
        steps = {
            "naive": naive_step(name, images, labels, bs),
            "fp32_channels_last": ours_step(name, images, labels, bs, amp="none"),
            "ours": ours_step(name, images, labels, bs, amp="bf16"),
        }
        row.update({k: bs * v for k, v in measure(steps, args.warmup, args.steps, args.repeats).items()})
        if args.compile:
            # timed after the others: once inductor has compiled, its worker processes stay alive
            # and were seen to slow the eager loops timed after them in the same process
            compiled = {"ours_compile": ours_step(name, images, labels, bs, amp="bf16", compile_=True)}
            row.update({k: bs * v for k, v in measure(compiled, args.warmup, args.steps, args.repeats).items()})
        row["speedup"] = row["ours"] / row["naive"]
        row["best_speedup"] = max(row[k] for k in steps if k != "naive") / row["naive"]
        results.append(row)
        line = f"{name:<26} {row['naive']:8.0f} {row['fp32_channels_last']:8.0f} {row['ours']:8.0f}"
        if args.compile:
            line += f" {row['ours_compile']:13.0f}"
        print(line + f" {row['speedup']:7.2f}x", flush=True)
    print()
    print("| model | naive | fp32 + channels_last | ours (channels_last + bf16) |"
          + (" ours + torch.compile |" if args.compile else "") + " ours / naive |")
    print("|---|--:|--:|--:|" + ("--:|" if args.compile else "") + "--:|")
    for row in results:
        cells = [f"{row['naive']:,.0f}", f"{row['fp32_channels_last']:,.0f}", f"{row['ours']:,.0f}"]
        if args.compile:
            cells.append(f"{row['ours_compile']:,.0f}")
        print(f"| {row['model']} | " + " | ".join(cells) + f" | {row['speedup']:.2f}x |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
