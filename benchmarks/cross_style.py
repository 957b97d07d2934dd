"""Cross-style protocol (issue #29): the shipped models on the same faces under each mask style.

    python benchmarks/cross_style.py --fer ../shared/data/fer2013.csv.gz --work /work/runs/cross_style \\
        --styles classic,flat_hard,rigid_homography,rigid_similarity,patterned,feathered_halo,jittered --threads 2

1. The ``PrivateTest`` rows of ``--fer`` are written, byte for byte, to ``WORK/fer2013_privatetest.csv``
   (:func:`maskgen.dataset.take_rows`).
2. That file is masked once per style (:func:`maskgen.smfer.build_smfer`, ``--styles STYLE``,
   ``--seed``, default 0): ``WORK/smfer_privatetest_<style>.csv`` with its sidecar and manifest. Every style
   masks the same faces; the row ids (the seed stream) are those of the subset file, 0..3588, so
   the ``classic`` copy is *not* the same draw as the PrivateTest rows of the full SMFER2013 build.
   A build whose output is there and whose manifest names the build id it would get now
   (:func:`maskgen.smfer.expected_build_id`, :func:`maskgen.io.dataset_build`) is kept, not rebuilt.
3. Each model (``--models``, default every shipped name, :func:`fer_models.weights.list_weights`)
   is scored on the unmasked rows and on each style's copy
   (:func:`fer_models.inference.evaluate_checkpoint`, ``--subset all``; reports under
   ``WORK/eval/<model>/<tta>/<data>/``), with its recipe's test-time augmentation unless ``--tta``.
   A score is kept, not recomputed, when the same weights, data bytes, TTA, device and precision made it.

Prints the machine, the sha256 of every input, the build ids, a markdown table (accuracy %, model x
data; with ``--per-class`` also each emotion's recall per model), and per model the gap "unseen style
minus seen style": ``--seen NAME=STYLE[+STYLE]`` names the styles a model was trained on (default
``mfer2013=classic``: the shipped masked model saw classic masks only). For a model trained without
masks no style is seen; its gaps are given against ``classic`` for reference. The spread is max minus min over the masked styles. ``WORK/cross_style-tta_<--tta>.json``
gets everything.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fer_models.metrics import style_gap  # noqa: E402
from maskgen.cli_errors import at_least, run_script  # noqa: E402

SUBSET = "PrivateTest"
REFERENCE = "classic"


def eval_name(model: str, index: dict) -> str:
    """The report folder of a model: its shipped name, or ``<folder>-<file stem>`` for a checkpoint file
    (two runs' ``best.pt`` must not share one)."""
    return model if model in index else f"{Path(model).resolve().parent.name}-{Path(model).stem}"


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def signed(x: float) -> str:
    return f"{100 * x:+.2f}"


def parse_seen(items: list[str]) -> dict[str, tuple[str, ...]]:
    seen: dict[str, tuple[str, ...]] = {}
    for item in items:
        name, _, styles = item.partition("=")
        if not name or not styles:
            sys.exit(f"--seen {item!r}: expected NAME=STYLE[+STYLE...]")
        seen[name.strip()] = tuple(s.strip() for s in styles.split("+") if s.strip())
    return seen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fer", required=True, help="FER2013 CSV (.csv or .csv.gz) with a Usage column")
    ap.add_argument("--work", required=True, help="work folder (outside the repository): subset, builds, reports")
    ap.add_argument("--styles", required=True, help="comma-separated mask styles (maskgen list-masks)")
    ap.add_argument("--models", default=None, help="comma-separated shipped names or checkpoint paths "
                    "(default: every shipped name)")
    ap.add_argument("--seen", action="append", default=None, metavar="NAME=STYLE[+STYLE]",
                    help="styles a model was trained on (repeatable; default mfer2013=classic)")
    ap.add_argument("--seed", type=int, default=0, help="build seed [0]")
    ap.add_argument("--tta", default="recipe", choices=("recipe", "index", "none", "flip", "ten"),
                    help="recipe: each model's training recipe's [default]; index: the TTA of its index.json scores")
    ap.add_argument("--amp", default="auto", choices=("auto", "bf16", "none"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=at_least(1), default=None, help="torch CPU threads and build jobs")
    ap.add_argument("--batch-size", type=at_least(1), default=256)
    ap.add_argument("--limit", type=at_least(1), default=None, help="only the first N PrivateTest rows (a quick try)")
    ap.add_argument("--per-class", action="store_true",
                    help="also a table per model: each emotion's recall (%%) on the unmasked rows and each style")
    args = ap.parse_args()

    import torch

    from fer_models.checkpoint import checkpoint_path, load_checkpoint, model_sources
    from fer_models.device import cpu_capability, resolve
    from fer_models.inference import evaluate_checkpoint
    from fer_models.weights import list_weights, weights_index
    from maskgen import __version__
    from maskgen.cli_errors import check_output_paths
    from maskgen.dataset import read_fer_csv, take_rows, write_fer_csv
    from maskgen.io import atomic_write, dataset_build, file_sha256
    from maskgen.paths import Output
    from maskgen.pipeline import BuildConfig
    from maskgen.smfer import build_smfer, expected_build_id, sidecar_paths
    from maskgen.styles import check_styles

    styles = list(dict.fromkeys(s.strip() for s in args.styles.split(",") if s.strip()))
    try:
        for style in styles:
            check_styles((style,))
    except ValueError as exc:
        sys.exit(f"--styles: {exc}")
    shipped = list_weights()
    models = model_sources(args.models)
    seen = parse_seen(args.seen or ["mfer2013=classic"])
    if not Path(args.fer).is_file():
        raise ValueError(f"--fer {args.fer}: no such file")
    work = Path(args.work)
    out_json = work / f"cross_style-tta_{args.tta}.json"
    # before any work: no input is (or lies in) the work folder, which this command writes into
    check_output_paths([("--fer", args.fer), *[("--models", m) for m in models if m not in shipped]],
                       [Output("--work", work, folder=True), Output("result JSON", out_json)]
                       + ([Output("subset", work / "fer2013_privatetest.csv")] if args.limit is None else []))
    # every checkpoint read before any work (a file that is not one ends here, not after the builds)
    checkpoints = {model: checkpoint_path(model) for model in models}
    configs = {model: load_checkpoint(path).train_config() for model, path in checkpoints.items()}
    if args.threads:
        torch.set_num_threads(args.threads)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    started = datetime.now(timezone.utc)
    placement = resolve(args.device, args.amp)
    print(f"# cross-style protocol, {started:%Y-%m-%d %H:%M} UTC")
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine()) if Path("/proc/cpuinfo").is_file() else platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} CPUs, torch CPU capability {cpu_capability()}, "
          f"{placement.describe()}, torch threads {torch.get_num_threads()}, build jobs {args.threads or 'default'}; "
          f"maskgen {__version__}, torch {torch.__version__}")

    # 1. the PrivateTest rows as a FER2013-format file of their own
    fer_sha = file_sha256(args.fer)
    fer = read_fer_csv(args.fer)
    if fer.usage is None:
        sys.exit(f"{args.fer}: no Usage column")
    rows = np.flatnonzero(fer.usage == SUBSET)[:args.limit]
    if rows.size == 0:
        raise ValueError(f"{args.fer}: no {SUBSET} rows")
    subset = work / ("fer2013_privatetest.csv" if args.limit is None else f"fer2013_privatetest_{rows.size}.csv")
    write_fer_csv(subset, take_rows(fer, rows))
    del fer
    subset_sha = file_sha256(subset)
    print(f"input {args.fer}: sha256 {fer_sha}")
    print(f"{SUBSET} rows: {rows.size} (file rows {rows[0]}..{rows[-1]}) -> {subset}: sha256 {subset_sha}")

    # 2. one masked copy per style (kept when its manifest names the build it would be now)
    builds: dict[str, dict] = {}
    for style in styles:
        config = BuildConfig(seed=args.seed, styles=check_styles((style,)))
        out = work / f"{subset.stem.replace('fer2013', 'smfer')}_{style}.csv"
        want = expected_build_id(subset, config, subset_sha)
        kept = out.is_file() and want is not None and dataset_build(out) == want
        t = time.perf_counter()
        if not kept:
            build_smfer(subset, out, config=config, jobs=args.threads, progress=False)
        manifest = json.loads(sidecar_paths(out)[1].read_text(encoding="utf-8"))
        if manifest["build_id"] != want:
            sys.exit(f"{out}: build id {manifest['build_id']} is not the expected {want}")
        builds[style] = {"path": str(out), "build_id": manifest["build_id"], "sha256": manifest["output_sha256"],
                         "kept": kept, "seconds": round(time.perf_counter() - t, 1),
                         "status_counts": {k: v for k, v in manifest["status_counts"].items() if v},
                         "mask_counts": manifest["mask_counts"], "qa_passed": manifest["qa_passed"]}
        b = builds[style]
        done = "kept" if kept else f"built in {b['seconds']} s"
        print(f"build {style}: {done}; "
              f"build id {b['build_id']}; sha256 {b['sha256']}; status {b['status_counts']}; "
              f"QA passed {b['qa_passed']}; masks {b['mask_counts']}")

    # 3. every model on the unmasked rows and on each style's copy
    datasets = {"unmasked": subset, **{s: Path(builds[s]["path"]) for s in styles}}
    data_sha = {"unmasked": subset_sha, **{s: builds[s]["sha256"] for s in styles}}
    index = weights_index()
    scores: dict[str, dict[str, dict]] = {}
    meta: dict[str, dict] = {}
    for model in models:
        ckpt_path, config = checkpoints[model], configs[model]
        tta = {"recipe": config.tta,
               "index": index.get(model, {}).get("scores", {}).get("fer2013_privatetest", {}).get("tta", config.tta),
               }.get(args.tta, args.tta)
        meta[model] = {"checkpoint": str(ckpt_path), "sha256": file_sha256(ckpt_path), "model": config.model,
                       "tta": tta, "seen": list(seen.get(model, ()))}
        scores[model] = {}
        for name, data in datasets.items():
            t = time.perf_counter()
            out = work / "eval" / eval_name(model, index) / tta / name
            # a score is kept when the same weights, data bytes, TTA and placement made it
            key = {"checkpoint_sha256": meta[model]["sha256"], "data_sha256": data_sha[name], "tta": tta,
                   "device": str(placement.device), "amp": placement.amp}
            key_file = out / "cross_style_key.json"
            kept = key_file.is_file() and (out / "metrics.json").is_file() and json.loads(key_file.read_text()) == key
            if kept:
                report = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
            else:
                key_file.unlink(missing_ok=True)
                report = evaluate_checkpoint(ckpt_path, data, split="usage", subset="all", out=out,
                                             batch_size=args.batch_size, amp=args.amp, device=args.device, tta=tta)
                with atomic_write(key_file) as tmp:
                    tmp.write_text(json.dumps(key, indent=2) + "\n", encoding="utf-8")
            scores[model][name] = {"accuracy": report["accuracy"], "macro_f1": report["macro"]["f1"],
                                   "recall": {c: v["recall"] for c, v in report["per_class"].items()},
                                   "n": report["n"], "kept": kept, "seconds": round(time.perf_counter() - t, 1)}
        print(f"scored {model} ({config.model}, TTA {tta}, sha256 {meta[model]['sha256'][:12]}...): "
              + ", ".join(f"{k} {pct(v['accuracy'])} ({'kept' if v['kept'] else str(v['seconds']) + ' s'})"
                          for k, v in scores[model].items()), flush=True)

    # the table
    print()
    print("| model (TTA; seen styles) | unmasked | " + " | ".join(f"`{s}`" for s in styles) + " | spread over styles |")
    print("|---|--:|" + "--:|" * len(styles) + "--:|")
    for model in models:
        acc = {k: v["accuracy"] for k, v in scores[model].items()}
        masked = [acc[s] for s in styles]
        seen_text = "+".join(meta[model]["seen"]) or "none"
        print(f"| `{model}` ({meta[model]['tta']}; {seen_text}) | {pct(acc['unmasked'])} | "
              + " | ".join(pct(acc[s]) for s in styles) + f" | {100 * (max(masked) - min(masked)):.2f} |")

    print()
    print("Gap, unseen style minus seen style (points; seen = mean of the seen styles; models trained "
          f"without masks: against `{REFERENCE}`, for reference):")
    print()
    print("| model | against | " + " | ".join(f"`{s}`" for s in styles) + " | mean unseen | worst unseen |")
    print("|---|---|" + "--:|" * len(styles) + "--:|--:|")
    gaps: dict[str, dict] = {}
    for model in models:
        acc = {k: v["accuracy"] for k, v in scores[model].items()}
        ref_styles = [s for s in meta[model]["seen"] if s in acc] or ([REFERENCE] if REFERENCE in acc else [])
        if not ref_styles:
            continue
        measured = style_gap({s: acc[s] for s in styles if s in acc}, ref_styles)
        ref, gap = measured["reference"], measured["gaps"]
        gaps[model] = {"against": ref_styles, "reference_accuracy": ref, "gaps": gap,
                       "mean_unseen": measured["mean_unseen"], "worst_unseen": measured["worst_unseen"]}
        label = ("seen " if meta[model]["seen"] else "") + "+".join(f"`{s}`" for s in ref_styles)
        cells = [(("(seen)" if meta[model]["seen"] else "(reference)") if s in ref_styles else signed(gap[s]))
                 for s in styles]
        print(f"| `{model}` | {label} ({pct(ref)}) | " + " | ".join(cells)
              + (f" | {signed(gaps[model]['mean_unseen'])} | {signed(gaps[model]['worst_unseen'])} |" if gap else " | | |"))

    if args.per_class:
        for model in models:
            names = list(scores[model]["unmasked"]["recall"])
            print(f"\nRecall per emotion (%), `{model}` ({meta[model]['tta']}):\n")
            print("| data | " + " | ".join(names) + " | accuracy |")
            print("|---|" + "--:|" * (len(names) + 1))
            for name, v in scores[model].items():
                print(f"| {name} | " + " | ".join(pct(v["recall"][c]) for c in names) + f" | {pct(v['accuracy'])} |")

    print()
    for model in models:
        recorded = index.get(model, {}).get("scores", {}).get("fer2013_privatetest")
        if recorded and (args.limit is None and recorded.get("n") == rows.size):
            same = "same TTA" if recorded["tta"] == meta[model]["tta"] else f"TTA {recorded['tta']} there"
            print(f"check `{model}` unmasked: {pct(scores[model]['unmasked']['accuracy'])} here "
                  f"(TTA {meta[model]['tta']}, {placement.amp}) vs {pct(recorded['accuracy'])} in index.json ({same})")
    elapsed = time.perf_counter() - t0
    print(f"total {elapsed:.0f} s")
    result = {"started_utc": started.isoformat(timespec="seconds"), "machine": {
                  "cpu_capability": cpu_capability(), "placement": placement.describe(),
                  "torch_threads": torch.get_num_threads(), "platform": platform.platform()},
              "maskgen_version": __version__, "command": " ".join(sys.argv),
              "inputs": {"fer": {"path": args.fer, "sha256": fer_sha},
                         "privatetest": {"path": str(subset), "sha256": subset_sha, "rows": int(rows.size)}},
              "seed": args.seed, "builds": builds, "models": meta, "scores": scores, "gaps": gaps,
              "seconds": round(elapsed, 1)}
    with atomic_write(out_json) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out_json}")


if __name__ == "__main__":
    run_script(main)
