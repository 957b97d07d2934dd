"""Ship a trained checkpoint with the package: strip it, score it, record how it was made.

Writes ``fer_models/weights/<model>_<name>.pt`` (inference-only, at most 3 MB) and its entry
in ``fer_models/weights/index.json``: the training command, the sha256 of the training data,
and test-subset scores on each ``--score`` file (accuracy and macro F1, with the checkpoint's
own TTA). Usage::

    python scripts/ship_weights.py --checkpoint /work/runs/fer2013_default_e100/best.pt --name fer2013 \\
        --train-data ../shared/data/fer2013.csv.gz --command "fer-models train ..." \\
        --score fer2013_privatetest=../shared/data/fer2013.csv.gz --score smfer2013_privatetest=smfer2013.csv
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path

from fer_models.pretrained import ship, shipped_file
from fer_models.checkpoint import load_checkpoint
from fer_models.inference import evaluate_checkpoint
from fer_models.weights import INDEX_NAME, folder as weights_folder
from maskgen.cli_errors import check_output_paths, run_script
from maskgen.io import file_sha256
from maskgen.paths import Output


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--train-data", required=True, help="the CSV the checkpoint was trained on (checksummed)")
    p.add_argument("--command", required=True, help="the command that trained it")
    p.add_argument("--score", action="append", default=[], metavar="LABEL=CSV",
                   help="score the test subset of CSV and record it under LABEL (repeatable)")
    p.add_argument("--tta", choices=("none", "flip", "ten"), default=None,
                   help="test-time augmentation of the scores (default: the checkpoint's recipe); choose it on "
                        "the validation rows (fer-models evaluate --subset val), never on the scored ones")
    p.add_argument("--note", default=None)
    args = p.parse_args()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", args.name):
        raise ValueError(f"--name {args.name!r}: letters, digits, '_', '.' and '-' only (it names a file)")
    to_score: dict[str, str] = {}
    for item in args.score:
        label, sep, csv = (part.strip() for part in item.partition("="))
        if not sep or not label or not csv:
            raise ValueError(f"--score {item!r}: expected LABEL=CSV")
        if label in to_score:
            raise ValueError(f"--score {item!r}: label {label!r} given twice")
        to_score[label] = csv
    for option, path in [("--train-data", args.train_data), *[("--score", csv) for csv in to_score.values()]]:
        if not Path(path).is_file():
            raise ValueError(f"{option} {path}: no such file")
    state = load_checkpoint(args.checkpoint)
    # before any scoring: the files ship() writes are not inputs, symlinks or folders
    folder = weights_folder()
    check_output_paths([("--checkpoint", args.checkpoint), ("--train-data", args.train_data),
                        *[("--score", csv) for csv in to_score.values()]],
                       [Output("shipped weights", shipped_file(state.train_config().model, args.name, folder)),
                        Output("weights index", folder / INDEX_NAME)])
    scores = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, csv in to_score.items():
            r = evaluate_checkpoint(args.checkpoint, csv, subset="test", out=f"{tmp}/{label}", tta=args.tta)
            scores[label] = {"accuracy": round(r["accuracy"], 4), "macro_f1": round(r["macro"]["f1"], 4),
                             "n": r["n"], "tta": r["tta"], "data_sha256": file_sha256(csv)}
            print(label, scores[label], flush=True)
    entry = {"trained_on": args.train_data.rsplit("/", 1)[-1], "data_sha256": file_sha256(args.train_data),
             "command": args.command, "epoch": state.epoch, "best_val_acc": round(state.best_val_acc, 4),
             "recipe": state.train_config().recipe, "scores": scores}
    if args.note:
        entry["note"] = args.note
    path = ship(args.checkpoint, args.name, entry)
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    print(json.dumps(entry, indent=2))


if __name__ == "__main__":
    run_script(main)
