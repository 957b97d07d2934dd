"""FER+ accuracy, unmasked and masked, of the shipped weights (issue #29).

    python benchmarks/ferplus_scores.py --fer ../shared/data/fer2013.csv.gz \\
        --smfer /work/runs/data/smfer2013.csv --votes ../shared/data/ferplus_votes.csv --threads 2

Each shipped model (``fer_models.weights.list_weights()``, or ``--models``) is scored on the
PrivateTest rows of FER2013 (``--fer``) and of SMFER2013 (``--smfer``, the masked copy built from
it: same rows, same labels), against

- FER2013's own labels (all PrivateTest rows), and
- FER+ majority labels (``--votes``; :mod:`fer_models.labels`: single votes dropped, rows where
  ``unknown`` / ``NF`` lead or without a majority left out), mapped to FER2013's 7 classes
  (:func:`fer_models.labels.majority_as_fer2013`); rows whose majority is ``contempt`` (no
  FER2013 class) are left out too. Both kinds of left-out rows are counted.

Test-time augmentation: each checkpoint's recipe (``--tta recipe``, default), the one its
``index.json`` scores name (``--tta index``), or one for all (``none``, ``flip``, ``ten``).
``--amp`` / ``--device`` resolve as in ``fer-models evaluate`` (default ``auto``: bf16 autocast
on a CPU with native bf16, float32 otherwise). Prints the machine, the sha256 of every input,
the markdown table, the same-rows comparison of FER2013 and FER+ labels, and the FER2013-label
scores beside those recorded in ``index.json``. ``--json`` also writes everything to a file.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from maskgen.cli_errors import at_least, run_script  # noqa: E402

SUBSET = "PrivateTest"


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fer", required=True, help="FER2013 CSV (.csv or .csv.gz)")
    ap.add_argument("--smfer", required=True, help="SMFER2013 CSV built from --fer (same rows)")
    ap.add_argument("--votes", required=True, help="FER+ votes CSV aligned with --fer (ferplus_votes.csv)")
    ap.add_argument("--models", default=None, help="comma-separated shipped names or checkpoint paths "
                    "(default: every shipped name)")
    ap.add_argument("--tta", default="recipe", choices=("recipe", "index", "none", "flip", "ten"))
    ap.add_argument("--amp", default="auto", choices=("auto", "bf16", "none"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=at_least(1), default=None, help="torch CPU threads")
    ap.add_argument("--batch-size", type=at_least(1), default=256)
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args()

    import torch

    from fer_models.checkpoint import checkpoint_path, load_model, model_sources
    from fer_models.device import cpu_capability, resolve
    from fer_models.inference import predict
    from fer_models.labels import FERPLUS_CLASSES, ferplus_targets, majority_as_fer2013, read_ferplus_votes
    from fer_models.metrics import classification_report
    from fer_models.weights import list_weights, weights_index
    from maskgen.cli_errors import check_output_paths
    from maskgen.dataset import EMOTIONS, read_fer_csv
    from maskgen.io import atomic_write, file_sha256
    from maskgen.paths import Output

    shipped = list_weights()
    names = model_sources(args.models)
    if args.json:  # before any work: the JSON must not be (or replace) an input
        check_output_paths([("--fer", args.fer), ("--smfer", args.smfer), ("--votes", args.votes),
                            ("--smfer sidecar", Path(args.smfer).with_suffix(".meta.csv")),
                            *[("--models", n) for n in names if n not in shipped]],
                           [Output("--json", Path(args.json))])
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    placement = resolve(args.device, args.amp)
    fer, smfer = read_fer_csv(args.fer), read_fer_csv(args.smfer)
    if len(fer) != len(smfer) or not np.array_equal(fer.emotion, smfer.emotion) or fer.usage is None \
            or smfer.usage is None or not np.array_equal(fer.usage, smfer.usage):
        sys.exit(f"{args.smfer}: not the masked copy of {args.fer} (rows, labels or Usage differ)")
    rows = np.flatnonzero(fer.usage == SUBSET)
    y_fer = fer.emotion[rows]

    fp = ferplus_targets(read_ferplus_votes(args.votes, len(fer)))
    major = fp.majority[rows]
    y_plus_all = majority_as_fer2013(major)
    contempt = int((major == FERPLUS_CLASSES.index("contempt")).sum())
    no_majority = int((major < 0).sum())
    unusable = int((~fp.keep_soft[rows]).sum())  # no votes left, or unknown / NF lead
    keep = y_plus_all >= 0
    y_plus = y_plus_all[keep]
    agree = float((y_plus == y_fer[keep]).mean())

    inputs = {"fer": args.fer, "smfer": args.smfer, "votes": args.votes}
    sha = {k: file_sha256(v) for k, v in inputs.items()}
    sidecar = Path(args.smfer).with_suffix(".meta.csv")
    if sidecar.is_file():
        sha["smfer_sidecar"] = file_sha256(sidecar)
        inputs["smfer_sidecar"] = str(sidecar)

    images = {"unmasked": torch.from_numpy(np.ascontiguousarray(fer.images[rows])).unsqueeze(1),
              "masked": torch.from_numpy(np.ascontiguousarray(smfer.images[rows])).unsqueeze(1)}
    index = weights_index()
    results = []
    for name in names:
        model, ckpt = load_model(name, placement)
        config = ckpt.train_config()
        if list(ckpt.class_names) != list(EMOTIONS):
            sys.exit(f"{name}: classes {ckpt.class_names} are not FER2013's 7 (a FER+ model: use fer-models evaluate)")
        entry = index.get(name, {})
        scores_index = entry.get("scores", {})
        if args.tta == "recipe":
            tta = config.tta
        elif args.tta == "index":
            ttas = {s["tta"] for s in scores_index.values()}
            tta = ttas.pop() if len(ttas) == 1 else config.tta
        else:
            tta = args.tta
        r = {"model": name, "architecture": config.model, "tta": tta,
             "weights_sha256": file_sha256(checkpoint_path(name)), "n_fer2013": int(rows.size),
             "n_ferplus": int(keep.sum())}
        for kind, x in images.items():
            t = time.perf_counter()
            preds = predict(model, x, args.batch_size, config.channels_last, placement=placement, tta=tta
                            ).argmax(1).numpy()
            rep_fer = classification_report(y_fer, preds, EMOTIONS)
            rep_plus = classification_report(y_plus, preds[keep], EMOTIONS)
            r[kind] = {"fer2013_acc": rep_fer["accuracy"], "fer2013_macro_f1": rep_fer["macro"]["f1"],
                       "fer2013_acc_ferplus_rows": float((preds[keep] == y_fer[keep]).mean()),
                       "ferplus_acc": rep_plus["accuracy"], "ferplus_macro_f1": rep_plus["macro"]["f1"],
                       "ferplus_per_class_f1": {c: v["f1"] for c, v in rep_plus["per_class"].items()},
                       "seconds": round(time.perf_counter() - t, 1)}
        checks = []
        for kind, key in (("unmasked", "fer2013_privatetest"), ("masked", "smfer2013_privatetest")):
            s = scores_index.get(key)
            if s is not None:
                checks.append({"kind": kind, "index_acc": s["accuracy"], "index_tta": s["tta"],
                               "index_data_sha256": s["data_sha256"], "acc": r[kind]["fer2013_acc"],
                               "same_tta": s["tta"] == tta,
                               "same_data": s["data_sha256"] == sha["fer" if kind == "unmasked" else "smfer"]})
        r["index_check"] = checks
        results.append(r)

    machine = {"cpu_capability": cpu_capability(), "placement": placement.describe(),
               "threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
               "machine": platform.machine()}
    print(f"# FER+ scores: {SUBSET} of {Path(args.fer).name} (unmasked) and {Path(args.smfer).name} (masked)\n")
    print(f"machine: {machine['placement']}, {machine['threads']} threads, torch {machine['torch']}, "
          f"Python {machine['python']} ({machine['machine']}); {time.perf_counter() - t0:.0f} s")
    for k, v in inputs.items():
        print(f"sha256 {sha[k]}  {v}")
    print(f"\n{rows.size} {SUBSET} rows; FER+ majority in FER2013's classes: {int(keep.sum())} "
          f"(left out: {no_majority - unusable} without a majority, {unusable} without usable votes "
          f"(unknown / NF lead, {int(fp.not_face[rows].sum())} NF), {contempt} contempt); "
          f"FER2013 and FER+ labels agree on {pct(agree)} % of the rows kept\n")
    print("| model | TTA | rows scored (FER2013 / FER+) | FER2013-label acc unmasked | masked "
          "| FER+ acc unmasked | masked | FER+ macro F1 unmasked | masked |")
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|")
    for r in results:
        u, m = r["unmasked"], r["masked"]
        print(f"| {r['model']} | {r['tta']} | {r['n_fer2013']:,} / {r['n_ferplus']:,} | {pct(u['fer2013_acc'])} "
              f"| {pct(m['fer2013_acc'])} | {pct(u['ferplus_acc'])} | {pct(m['ferplus_acc'])} "
              f"| {pct(u['ferplus_macro_f1'])} | {pct(m['ferplus_macro_f1'])} |")
    print(f"\nSame {int(keep.sum()):,} rows (those with a FER+ label), FER2013 labels vs FER+ labels:\n")
    print("| model | FER2013 labels unmasked | FER+ labels unmasked | FER2013 labels masked | FER+ labels masked |")
    print("|---|--:|--:|--:|--:|")
    for r in results:
        u, m = r["unmasked"], r["masked"]
        print(f"| {r['model']} | {pct(u['fer2013_acc_ferplus_rows'])} | {pct(u['ferplus_acc'])} "
              f"| {pct(m['fer2013_acc_ferplus_rows'])} | {pct(m['ferplus_acc'])} |")
    print("\nFER2013-label accuracy beside fer_models/weights/index.json `scores`:\n")
    print("| model | data | here (TTA) | index (TTA) | diff (points) | same data sha256 |")
    print("|---|---|--:|--:|--:|---|")
    for r in results:
        for c in r["index_check"]:
            diff = f"{100 * (c['acc'] - c['index_acc']):+.2f}" if c["same_tta"] else "other TTA"
            same = "yes" if c["same_data"] else "no: " + c["index_data_sha256"][:12]
            print(f"| {r['model']} | {c['kind']} | {pct(c['acc'])} ({r['tta']}) | {pct(c['index_acc'])} "
                  f"({c['index_tta']}) | {diff} | {same} |")
    if args.json:
        out = {"subset": SUBSET, "inputs": inputs, "sha256": sha, "machine": machine, "rows": int(rows.size),
               "ferplus_rows": int(keep.sum()), "left_out_no_majority": no_majority - unusable,
               "left_out_unusable": unusable, "left_out_contempt": contempt,
               "label_agreement": agree, "tta_option": args.tta, "results": results}
        with atomic_write(args.json) as tmp:
            tmp.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    run_script(main)
