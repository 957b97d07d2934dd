"""Weight averages of two fine-tunes of one start (issue #29): does averaging move the accuracy / style-gap frontier?

    python benchmarks/weight_average.py --a twins_paper --b /work/runs/paper_multi_p7/best.pt \\
        --fer ../shared/data/fer2013.csv.gz --smfer /work/runs/data/smfer2013.csv \\
        --multi /work/runs/data/smfer2013_multi.csv \\
        --unseen /work/runs/cross_style/smfer_privatetest_rigid_homography.csv --shares 0,0.3,0.5,0.7,1

For each share s, the model ``(1 - s) * A + s * B`` (every floating-point tensor of the two
checkpoints, BatchNorm statistics included; the architecture and config are A's) is scored with
flip TTA on PublicTest (for choosing s) and PrivateTest (for the record) of FER2013 (unmasked),
SMFER2013 (``--smfer``) and a multi-style build (``--multi``), and on ``--unseen`` (a style left out
of training, e.g. ``benchmarks/cross_style.py``'s ``rigid_homography`` build of the PrivateTest
faces). "PublicTest mean" is the mean of the three PublicTest accuracies: the only column to choose s by.

Prints the machine and a markdown table. Both checkpoints must be the same architecture.
"""
from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from maskgen.cli_errors import at_least, run_script  # noqa: E402


def average(a: dict, b: dict, share: float) -> dict:
    """``(1 - share) * a + share * b`` for floating-point tensors; other entries (counters) from ``a``."""
    out = {}
    for k, va in a.items():
        vb = b[k]
        out[k] = ((1 - share) * va.float() + share * vb.float()).to(va.dtype) if va.is_floating_point() else va
    return out


def flip_accuracy(model, data, rows, placement) -> float:  # noqa: ANN001
    """Accuracy (%) with flip TTA on ``rows`` of ``data`` (all rows if None)."""
    from fer_models.inference import evaluate

    images, labels = (data.images, data.labels) if rows is None else (data.images[rows], data.labels[rows])
    return 100 * evaluate(model, images, labels, placement=placement, tta="flip")["acc"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, help="checkpoint or shipped name (share 0)")
    ap.add_argument("--b", required=True, help="checkpoint or shipped name (share 1), same architecture")
    ap.add_argument("--fer", required=True, help="FER2013 CSV with a Usage column")
    ap.add_argument("--smfer", required=True, help="SMFER2013 build (same rows)")
    ap.add_argument("--multi", required=True, help="multi-style SMFER2013 build (same rows)")
    ap.add_argument("--unseen", required=True, help="PrivateTest faces under a style no model trained on")
    ap.add_argument("--shares", default="0,0.5,1", help="comma-separated shares of B [0,0.5,1]")
    ap.add_argument("--threads", type=at_least(1), default=1)
    args = ap.parse_args()
    try:
        shares = [float(s) for s in args.shares.split(",") if s.strip()]
    except ValueError:
        ap.error(f"--shares: not numbers: {args.shares!r}")
    if not shares or not all(0.0 <= s <= 1.0 for s in shares):
        ap.error("--shares: numbers in [0, 1]")

    import torch

    from fer_models.checkpoint import load_checkpoint, load_model
    from fer_models.data import load_dataset, split_indices
    from fer_models.device import cpu_capability, resolve

    torch.set_num_threads(args.threads)
    a, b = load_checkpoint(args.a), load_checkpoint(args.b)
    if a.train_config().model != b.train_config().model or set(a.model) != set(b.model):
        sys.exit(f"--a and --b are different architectures ({a.train_config().model} vs {b.train_config().model})")
    placement = resolve("cpu", "auto")
    print(f"# weight averages, {platform.processor() or platform.machine()}, torch CPU capability {cpu_capability()}, "
          f"{placement.describe()}, {args.threads} thread(s)")
    data = {"unmasked": load_dataset(args.fer), "classic": load_dataset(args.smfer), "multi": load_dataset(args.multi)}
    rows = {k: torch.from_numpy(v) for k, v in split_indices(data["unmasked"], "usage").items()}
    unseen = load_dataset(args.unseen)
    print()
    print("| share of B | PublicTest mean | FER2013 | SMFER2013 | multi-style rows | unseen style |")
    print("|--:|--:|--:|--:|--:|--:|")
    for share in shares:
        model, _ = load_model(dataclasses.replace(a, model=average(a.model, b.model, share)), placement)
        val = {k: flip_accuracy(model, d, rows["val"], placement) for k, d in data.items()}
        test = {k: flip_accuracy(model, d, rows["test"], placement) for k, d in data.items()}
        print(f"| {share:g} | {sum(val.values()) / len(val):.2f} | {test['unmasked']:.2f} | {test['classic']:.2f} | "
              f"{test['multi']:.2f} | {flip_accuracy(model, unseen, None, placement):.2f} |", flush=True)


if __name__ == "__main__":
    run_script(main)
