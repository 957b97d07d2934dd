"""Twin training, element by element (issue #29): each option alone and together, at one budget, on the same faces.

    python benchmarks/mask_training.py --fer ../shared/data/fer2013.csv.gz --smfer /work/runs/data/smfer2013.csv \\
        --styles-dir /work/runs/cross_style --work /work/runs/mask_training --threads 1

Every run fine-tunes the same start (``--init``, default the shipped ``fer2013`` weights) for
``--epochs`` on the SMFER2013 training rows with their FER2013 twins (``fer-models train --twin``,
:mod:`fer_models.twins`), the default recipe at ``--lr``, selecting on PublicTest (masked and
unmasked together). The runs (``--runs`` picks some, in this order):

====================  ===========================================================================
``twins``             the baseline: each training face masked or unmasked at random (``--mask-prob 0.5``)
``distill``           + a teacher (``--distill``, default the ``--init`` weights) sees the unmasked twin
``refill``            + the mask region refilled at random (``--refill 0.5``)
``cam``               + the CAM-share penalty (``--cam-penalty 1``)
``evidence``          + the mask-evidence term instead (``--mask-evidence 1``)
``cam_evidence``      + both terms
``all``               distill + refill + cam
``eyes_only``         the baseline with every face blanked below its mask top (train and test)
====================  ===========================================================================

Each finished run is scored on the PrivateTest faces

- unmasked (the run's own test of the twins, FER2013 PrivateTest) and masked by the classic
  SMFER2013 (``--cam-smfer``, default ``--smfer``: the seed-0 build), with the recipe's TTA;
- under every mask style built by ``benchmarks/cross_style.py`` in ``--styles-dir``
  (``smfer_privatetest_<style>.csv``, twins of ``fer2013_privatetest.csv``), with the recipe's TTA;
  the gap is "unseen style minus the mean of the seen styles" (``--seen``: the styles ``--smfer`` was
  built with, default ``classic``);
- Grad-CAM share inside the mask region (exact alpha, as ``benchmarks/attention_share.py``) and
  the eye region, on the first ``--cam-rows`` masked PrivateTest faces of ``--cam-smfer``.

Runs live in ``WORK/<name>``; an interrupted run resumes, a finished one is kept (its scores are
cached in ``WORK/<name>/scores.json`` with the sha256 of every input; those of an ``--also`` folder,
which is an input and never written, in ``WORK/also/<folder name>-<hash of its path>/scores.json``).
Prints the machine and a markdown table; writes ``WORK/mask_training.json``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from maskgen.cli_errors import at_least, check_output_paths, run_script  # noqa: E402
from maskgen.io import atomic_write  # noqa: E402
from maskgen.paths import Output  # noqa: E402

RUNS = {
    "twins": {},
    "distill": {"distill": True},
    "refill": {"refill": 0.5},
    "cam": {"cam_penalty": 1.0},
    "evidence": {"mask_evidence": 1.0},
    "cam_evidence": {"cam_penalty": 1.0, "mask_evidence": 1.0},
    "all": {"distill": True, "refill": 0.5, "cam_penalty": 1.0},
    "eyes_only": {"eyes_only": True},
}
#: bumped when score() measures something else (cached scores of another version are recomputed)
SCORES_VERSION = 2
STYLES = ("classic", "flat_hard", "rigid_homography", "rigid_similarity", "patterned", "feathered_halo", "jittered")


def run_config(args: argparse.Namespace, name: str):  # noqa: ANN201 - TrainConfig
    from fer_models.config import TrainConfig

    options = dict(RUNS[name])
    if options.pop("distill", False):
        options["distill"] = args.distill or args.init
    return TrainConfig.from_recipe(
        "default", data=args.smfer, twin=args.fer, out=str(Path(args.work) / name), model=args.model,
        init=args.init, epochs=args.epochs, lr=args.lr, warmup_epochs=1, seed=args.seed, threads=args.threads,
        progress=False, **options)


def train(args: argparse.Namespace, name: str) -> None:
    from fer_models.train import main as train_main

    config = run_config(args, name)
    out = Path(config.out)
    if (out / "test" / "metrics.json").is_file():
        return
    t0 = time.perf_counter()
    train_main(config, resume=(out / "checkpoint.pt").is_file())
    print(f"{name}: trained in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)


def blank(images: np.ndarray, top: np.ndarray) -> np.ndarray:
    """(N, 48, 48) uint8 faces blanked from their mask tops down, as an eyes-only run sees them."""
    import torch

    from fer_models.twins import blank_below

    return blank_below(torch.from_numpy(np.ascontiguousarray(images))[:, None], torch.from_numpy(top), 128)[:, 0].numpy()


def score(args: argparse.Namespace, out: Path, inputs: dict[str, str], cache: Path | None = None) -> dict:
    """Scores of the finished run in ``out`` (cached in ``cache``, default ``out/scores.json``, while the inputs
    are the same)."""
    import torch

    from fer_models.checkpoint import load_model
    from fer_models.device import resolve
    from fer_models.explain import attention_shares, read_sidecar_params
    from fer_models.inference import evaluate
    from fer_models.twins import load_twins

    cache = cache or out / "scores.json"
    if cache.is_file():
        saved = json.loads(cache.read_text())
        if saved.get("inputs") == inputs:
            return saved
    metrics = json.loads((out / "test" / "metrics.json").read_text())
    placement = resolve("cpu", "auto")
    model, ckpt = load_model(out / "best.pt", placement)
    config = ckpt.train_config()

    def accuracy(twins, rows=None) -> float:
        x, y, top = twins.masked.images, twins.masked.labels, twins.top
        if rows is not None:
            x, y, top = x[rows], y[rows], top[rows]
        if config.eyes_only:
            x = torch.from_numpy(blank(x[:, 0].numpy(), top.numpy()))[:, None]
        return evaluate(model, x, y, None, 256, config.channels_last, placement=placement, tta=config.tta)["acc"]

    styles_dir = Path(args.styles_dir)
    clean_path = styles_dir / "fer2013_privatetest.csv"
    result = {"inputs": inputs, "own_test": metrics["accuracy"], "fer_test": metrics["twin_test_acc"],
              "best_epoch": metrics["best_epoch"], "tta": config.tta, "data": Path(config.data).name,
              "model": config.model, "styles": {}}
    for style in STYLES:
        result["styles"][style] = accuracy(load_twins(styles_dir / f"smfer_privatetest_{style}.csv", clean_path))
    cam_smfer = args.cam_smfer or args.smfer
    twins = load_twins(cam_smfer, args.fer)
    test_rows = torch.as_tensor(np.flatnonzero(twins.masked.usage == "PrivateTest"))
    result["smfer_test"] = accuracy(twins, test_rows)  # the seed-0 (classic) SMFER2013 PrivateTest
    params = read_sidecar_params(cam_smfer, len(twins.clean))
    rows = [int(r) for r in test_rows.tolist() if params[r] is not None][:args.cam_rows]
    fer_images, smfer_images = twins.clean[:, 0].numpy(), twins.masked.images[:, 0].numpy()
    if config.eyes_only:
        top = twins.top.numpy()
        fer_images, smfer_images = blank(fer_images, top), blank(smfer_images, top)
    cam_model, _ = load_model(out / "best.pt")  # Grad-CAM in float32 on the CPU, as attention_share.py
    result["gradcam"] = attention_shares(cam_model, fer_images, smfer_images, params, rows)
    with atomic_write(cache) as tmp:
        tmp.write_text(json.dumps(result, indent=1) + "\n")
    return result


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def table(results: dict[str, dict], seen: tuple[str, ...]) -> str:
    from fer_models.metrics import style_gap

    head = ("| run | FER2013 PrivateTest | SMFER2013 PrivateTest | seen styles | unseen mean | unseen worst | "
            "gap mean | gap worst | Grad-CAM in mask (masked) | in eyes (masked) | in mask (unmasked) | best epoch |")
    lines = [head, "|---|" + "--:|" * 11]
    for name, r in results.items():
        s = r["styles"]
        gap = style_gap(s, seen)
        worst = gap["worst_style"]
        g = r["gradcam"]
        lines.append(f"| `{name}` | {pct(r['fer_test'])} | {pct(r['smfer_test'])} | {pct(gap['reference'])} | "
                     f"{pct(gap['reference'] + gap['mean_unseen'])} | {pct(s[worst])} (`{worst}`) | "
                     f"{100 * gap['mean_unseen']:+.2f} | {100 * gap['worst_unseen']:+.2f} | {pct(g['masked']['mask_share'])} | "
                     f"{pct(g['masked']['eye_share'])} | {pct(g['unmasked']['mask_share'])} | {r['best_epoch']} |")
    lines += ["", "Per style (accuracy %, the same 3,589 PrivateTest faces):", "",
              "| run | " + " | ".join(f"`{x}`" + (" (seen)" if x in seen else "") for x in STYLES) + " |",
              "|---|" + "--:|" * len(STYLES)]
    for name, r in results.items():
        lines.append(f"| `{name}` | " + " | ".join(pct(r["styles"][x]) for x in STYLES) + " |")
    area = next(iter(results.values()))["gradcam"]["masked"]
    lines.append("")
    lines.append(f"Mask region {pct(area['mask_area'])} % and eye region {pct(area['eye_area'])} % of the image "
                 f"(mean over {area['faces']} faces).")
    return "\n".join(lines)


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def also_runs(extras: list[str], names: list[str], work: Path) -> dict[str, tuple[Path, Path]]:
    """``--also`` folders: row name -> (run folder, its scores cache under ``WORK/also/``). Each must be a
    finished run; its name (the folder's) must not be that of another row.

    Raises:
        ValueError: naming the folder and the problem.
    """
    runs: dict[str, tuple[Path, Path]] = {}
    for extra in extras:
        folder = Path(extra)
        for need in (folder / "test" / "metrics.json", folder / "best.pt"):
            if not need.is_file():
                raise ValueError(f"--also {extra}: not a finished run folder (no {need})")
        resolved = folder.resolve()
        name = resolved.name
        if name in names or name in runs:
            other = "a run of --runs" if name in names else f"--also {runs[name][0]}"
            raise ValueError(f"--also {extra}: its row would be named {name!r}, as {other}; "
                             "give the folder another name")
        tag = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
        runs[name] = (folder, work / "also" / f"{name}-{tag}" / "scores.json")
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fer", required=True, help="FER2013 CSV (the twins)")
    ap.add_argument("--smfer", required=True, help="SMFER2013 built from --fer (its .meta.csv beside it)")
    ap.add_argument("--styles-dir", required=True, help="benchmarks/cross_style.py's --work (the style builds)")
    ap.add_argument("--work", required=True, help="run folder (outside the repository)")
    ap.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated, of {', '.join(RUNS)}")
    ap.add_argument("--model", default="mini_xception_cbam")
    ap.add_argument("--init", default="fer2013", help="start weights (shipped name or checkpoint)")
    ap.add_argument("--distill", default=None, help="teacher for the distill runs [--init]")
    ap.add_argument("--epochs", type=at_least(1), default=10)
    ap.add_argument("--lr", type=positive_float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=at_least(1), default=None)
    ap.add_argument("--cam-rows", type=at_least(1), default=1000)
    ap.add_argument("--cam-smfer", default=None, help="SMFER2013 whose masks the Grad-CAM shares are measured on "
                    "[--smfer]; give the classic build to compare runs trained on other builds")
    ap.add_argument("--also", action="append", metavar="RUN_DIR",
                    help="score this finished run folder too (any twin run, e.g. another model; repeatable)")
    ap.add_argument("--seen", default="classic", help="comma-separated styles --smfer was built with [classic]")
    ap.add_argument("--train-only", action="store_true", help="train, do not score")
    args = ap.parse_args()
    names = [n.strip() for n in args.runs.split(",") if n.strip()]
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        sys.exit(f"--runs: unknown {', '.join(unknown)}; expected {', '.join(RUNS)}")
    seen = tuple(x.strip() for x in args.seen.split(",") if x.strip())
    if not seen or set(seen) - set(STYLES):
        sys.exit(f"--seen: expected styles of {', '.join(STYLES)}")

    import torch

    from fer_models.device import cpu_capability
    from maskgen.io import file_sha256

    work = Path(args.work)
    also = {} if args.train_only else also_runs(args.also or [], names, work)
    styles_dir = Path(args.styles_dir)
    # before any work: no output (a run folder, an --also cache, the JSON) is or holds an input
    check_output_paths(
        [("--fer", args.fer), ("--smfer", args.smfer), ("--smfer sidecar", Path(args.smfer).with_suffix(".meta.csv")),
         ("--cam-smfer", args.cam_smfer), ("--styles-dir", styles_dir),
         *[(option, value) for option, value in (("--init", args.init), ("--distill", args.distill))
           if value and Path(value).exists()],
         *[("--also", folder) for folder, _ in also.values()]],
        [*[Output("--work run", work / name, folder=True) for name in names],
         *[Output("--also scores", cache.parent, folder=True) for _, cache in also.values()],
         Output("result JSON", work / "mask_training.json")])
    inputs: dict = {}
    if not args.train_only:  # every input of the scores hashed before the training (a missing one ends here)
        for need in [styles_dir / "fer2013_privatetest.csv",
                     *[styles_dir / f"smfer_privatetest_{s}.csv" for s in STYLES]]:
            if not need.is_file():
                raise ValueError(f"--styles-dir {styles_dir}: no {need.name} (benchmarks/cross_style.py builds it)")
        inputs = {"scores": SCORES_VERSION, "fer": file_sha256(args.fer), "smfer": file_sha256(args.smfer),
                  "cam_smfer": file_sha256(args.cam_smfer or args.smfer),
                  **{s: file_sha256(styles_dir / f"smfer_privatetest_{s}.csv") for s in STYLES}}
    if args.threads:
        torch.set_num_threads(args.threads)
    work.mkdir(parents=True, exist_ok=True)
    for name in names:
        train(args, name)
    if args.train_only:
        return
    results = {name: score(args, work / name, inputs) for name in names}
    for name, (folder, cache) in also.items():
        results[name] = score(args, folder, inputs, cache)
    machine = f"{platform.processor() or platform.machine()}, {cpu_capability()}, torch {torch.__version__}, " \
              f"{torch.get_num_threads()} threads"
    print(f"machine: {machine}")
    print(f"init {args.init}, {args.epochs} epochs at lr {args.lr}, model {args.model}, seed {args.seed}")
    print(f"masked training faces: {Path(args.smfer).name}, styles seen: {', '.join(seen)}")
    print(table(results, seen))
    with atomic_write(work / "mask_training.json") as tmp:
        tmp.write_text(json.dumps({"machine": machine, "args": vars(args), "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    run_script(main)
