"""How much the mask region's evidence moves a Mini-Xception's predictions (issue #29), beside its Grad-CAM share.

    python benchmarks/mask_influence.py --fer ../shared/data/fer2013.csv.gz --smfer smfer2013.csv \\
        --model twins_paper --model /work/runs/mask_training/cam/best.pt ...

For a conv + global-average-pool head each logit is the mean of a class map, so the mask region's
part of every logit is exact (:func:`fer_models.twins.without_region`; the class conv's bias is
not evidence). On the masked PrivateTest faces of ``--smfer`` (the region: where they differ from
their ``--fer`` twins), per model: accuracy; accuracy with the region's part taken out of every
logit; how many predictions that changes; the mean KL between the two predictions (what
``--mask-evidence`` trains down). No test-time augmentation. Prints the machine and a markdown table.
"""
from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from maskgen.cli_errors import at_least, run_script  # noqa: E402


def influence(model, images, labels, region, batch: int = 256) -> dict[str, float]:  # noqa: ANN001
    """Accuracy with and without the region's evidence, changed predictions, mean KL (float32, CPU)."""
    import torch

    from fer_models.data import to_float
    from fer_models.twins import region_kl, without_region

    hits = hits_without = changed = 0
    kl_sum = 0.0
    with torch.no_grad():
        for start in range(0, len(labels), batch):
            x = to_float(images[start:start + batch])
            class_map = model.head(model.forward_features(x))
            logits, without, _ = without_region(class_map, model.head.bias, region[start:start + batch])
            y = labels[start:start + batch]
            pred, pred_without = logits.argmax(1), without.argmax(1)
            hits += int((pred == y).sum())
            hits_without += int((pred_without == y).sum())
            changed += int((pred != pred_without).sum())
            kl_sum += float(region_kl(logits, without).sum())
    n = len(labels)
    return {"accuracy": hits / n, "accuracy_without_region": hits_without / n, "changed": changed / n,
            "kl": kl_sum / n, "faces": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fer", required=True, help="FER2013 CSV (the unmasked twins)")
    ap.add_argument("--smfer", required=True, help="SMFER2013 built from --fer")
    ap.add_argument("--model", action="append", required=True, metavar="NAME|CHECKPOINT",
                    help="shipped Mini-Xception weights or a checkpoint (repeatable)")
    ap.add_argument("--threads", type=at_least(1), default=None)
    args = ap.parse_args()

    import torch

    from fer_models.checkpoint import load_model
    from fer_models.summary import machine_description
    from fer_models.twins import load_twins

    if args.threads:
        torch.set_num_threads(args.threads)
    twins = load_twins(args.smfer, args.fer)
    rows = torch.as_tensor(np.flatnonzero(twins.masked.usage == "PrivateTest"))
    images, labels, region = twins.masked.images[rows], twins.masked.labels[rows], twins.region[rows]
    print(f"machine: {machine_description()}; {platform.machine()}; {len(rows)} masked PrivateTest faces of "
          f"{Path(args.smfer).name}")
    print("| model | accuracy | without the region's evidence | predictions changed | mean KL |")
    print("|---|--:|--:|--:|--:|")
    for name in args.model:
        model, _ = load_model(name)
        if not hasattr(model, "head") or not hasattr(model, "forward_features"):
            sys.exit(f"{name}: not a Mini-Xception (a class conv head and forward_features are needed)")
        model.eval()
        r = influence(model, images, labels, region)
        print(f"| `{name}` | {100 * r['accuracy']:.2f} | {100 * r['accuracy_without_region']:.2f} | "
              f"{100 * r['changed']:.2f} % | {r['kl']:.4f} |", flush=True)


if __name__ == "__main__":
    run_script(main)
