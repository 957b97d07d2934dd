"""Recipe ablation: each element of the default recipe measured at one short budget.

Every variant is the ``default`` recipe with one element changed (leave-one-out), plus the
paper's recipe on the same budget; each is one ``fer-models train`` run in its own folder
under ``--out``. Finished variants (``test/metrics.json``) are skipped and interrupted ones
resumed, so the command can be re-run after an interruption; two copies of the command may
run side by side (each claims a variant with an atomic ``mkdir``). EMA and test-time
augmentation cost nothing to measure: every run logs the raw weights' validation accuracy
beside the EMA's, and records every TTA mode on PublicTest and PrivateTest.

Usage (the table in docs/training.md)::

    python benchmarks/recipes.py --data ../shared/data/fer2013.csv.gz --out /work/runs/ablation \\
        --epochs 8 --threads 1
    python benchmarks/recipes.py --out /work/runs/ablation --table      # print the table only
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from maskgen.cli_errors import at_least, check_output_paths, run_script  # noqa: E402
from maskgen.paths import Output  # noqa: E402

#: name -> (description, extra ``fer-models train`` arguments). The paper's lr step is
#: scaled with the budget (every 30 of 100 epochs -> every ~30 % of the epochs).
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "default": ("default recipe", []),
    "paper": ("the paper's recipe", ["--recipe", "paper", "--lr-step", "{paper_step}"]),
    "adam": ("Adam 1e-3, no weight decay, instead of SGD + Nesterov", ["--optimizer", "adam", "--lr", "1e-3",
                                                                      "--weight-decay", "0"]),
    "step": ("step schedule (x0.1 at 30 % / 60 % / 90 %), no warm-up, instead of cosine",
             ["--schedule", "step", "--lr-step", "{paper_step}", "--warmup-epochs", "0"]),
    "class_weighted": ("+ class-weighted cross-entropy", ["--class-weighted"]),
    "no_smoothing": ("no label smoothing", ["--label-smoothing", "0"]),
    "no_erasing": ("no random erasing", ["--erase-prob", "0"]),
    "mixup": ("+ mixup (alpha 0.2)", ["--mixup", "0.2"]),
    "upscale64": ("+ input upscaled to 64x64 (bilinear, in the model)", ["--model-kw", "input_size=64"]),
}


def run_variant(name: str, args: argparse.Namespace) -> None:
    folder = Path(args.out) / name
    if (folder / "test" / "metrics.json").is_file():
        return
    claim = Path(args.out) / f".claim-{name}"
    try:
        claim.mkdir(parents=True)
    except FileExistsError:
        return  # another copy of this command has it
    try:
        extra = [a.format(paper_step=max(1, round(args.epochs * 0.3))) for a in VARIANTS[name][1]]
        cmd = ["fer-models", "train", "--data", args.data, "--out", str(folder), "--epochs", str(args.epochs),
               "--seed", str(args.seed), "--no-progress", *extra]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        if (folder / "checkpoint.pt").is_file():
            cmd.append("--resume")
        print("+", " ".join(cmd), flush=True)
        done = subprocess.run(cmd)
        if done.returncode:  # fer-models said why on stderr
            raise ValueError(f"variant {name}: fer-models train failed with exit status {done.returncode}")
    finally:
        claim.rmdir()


def table(out: Path) -> str:
    """Markdown table of the finished variants (each run's PublicTest / PrivateTest numbers)."""
    rows = ["| variant | what changes | PublicTest (best epoch, no TTA) | PrivateTest, no TTA | PrivateTest, flip TTA | "
            "best PublicTest, raw weights | best PublicTest, EMA | PrivateTest macro F1 (variant's TTA) |",
            "|---|---|--:|--:|--:|--:|--:|--:|"]
    for name, (what, _) in VARIANTS.items():
        path = out / name / "test" / "metrics.json"
        if not path.is_file():
            rows.append(f"| {name} | {what} | (not run) | | | | | |")
            continue
        m = json.loads(path.read_text())
        log = [json.loads(line) for line in (out / name / "log.jsonl").read_text().splitlines()]
        tt = m["tta_table"]
        raw = max(r.get("val_acc_raw", r["val_acc"]) for r in log)
        ema = max((r["val_acc_ema"] for r in log if "val_acc_ema" in r), default=None)
        rows.append(f"| {name} | {what} | {tt['none']['val_acc']:.4f} | {tt['none']['test_acc']:.4f} | "
                    f"{tt['flip']['test_acc']:.4f} | {raw:.4f} | {'-' if ema is None else f'{ema:.4f}'} | "
                    f"{m['macro']['f1']:.4f} ({m['tta']}) |")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", help="FER2013-format CSV (needed unless --table)")
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=at_least(1), default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=at_least(1), default=None)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--table", action="store_true", help="only print the table of finished variants")
    args = p.parse_args()
    if not args.table:
        if not args.data:
            p.error("--data is required to run variants")
        if not Path(args.data).is_file():
            raise ValueError(f"--data {args.data}: no such file")
        # before any training: --data is not inside --out (each variant writes a folder there)
        check_output_paths([("--data", args.data)], [Output("--out", Path(args.out), folder=True)])
        for name in args.variants:
            run_variant(name, args)
    print(table(Path(args.out)))


if __name__ == "__main__":
    run_script(main)
