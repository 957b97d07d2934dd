"""``fer-models`` command line: a plain click group, one function per command.

Commands import torch lazily, so ``fer-models --help`` stays fast.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np

from fer_models.config import AMP_CHOICES, CUDA_GRAPH_CHOICES, OPTIMIZERS, RECIPES, SCHEDULES, TTA_CHOICES
from fer_models.labels import LABEL_MODES
from fer_models.summary import (
    DEFAULT_LATENCY_REPEATS,
    DEFAULT_THROUGHPUT_REPEATS,
    DEFAULT_WARMUP,
)
from maskgen import __version__
from maskgen.cli_errors import (
    CONTEXT_SETTINGS,
    PARTIAL_EPILOG,
    BadInput,
    SafeGroup,
    check_output_paths,
    check_writable,
    exit_partial,
    warn,
)
from maskgen.splits import SPLIT_KINDS

if TYPE_CHECKING:
    from fer_models.checkpoint import Checkpoint


def _threads_option(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    """--threads checked as it is parsed: at most 4 per CPU (a huge count crashed torch; one line, exit 2)."""
    from maskgen.parallel import check_threads

    try:
        return check_threads(value)
    except ValueError as exc:
        raise BadInput(str(exc)) from None


@click.group(name="fer-models", cls=SafeGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="fer-models")
def main() -> None:
    """Train, evaluate and measure facial-expression models (Mini-Xception + CBAM, baselines)."""


@main.command()
@click.option("--models", "pattern", default=None, help="Glob over model names (default: all).")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    callback=_threads_option,
    default=None,
    help="torch intra-op threads (default: torch's default, stated in the output).",
)
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=DEFAULT_LATENCY_REPEATS,
    show_default=True,
    help="Timed batch-1 runs (median reported).",
)
@click.option(
    "--throughput-repeats",
    type=click.IntRange(min=1),
    default=DEFAULT_THROUGHPUT_REPEATS,
    show_default=True,
    help="Timed batch-256 runs (median reported).",
)
@click.option(
    "--warmup", type=click.IntRange(min=0), default=DEFAULT_WARMUP, show_default=True,
    help="Untimed warm-up runs before timing.",
)
@click.option("--channels-last", is_flag=True, help="Time in channels_last memory format.")
@click.option("--no-timing", is_flag=True, help="Only parameters and FLOPs (fast).")
@click.option(
    "--write",
    "write_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Markdown file whose '## Model cost' section is written or replaced (e.g. docs/results.md).",
)
@click.option("--note", default=None, help="Paragraph added to the written section (e.g. why these threads).")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N.")
@click.option("--amp", type=click.Choice(AMP_CHOICES), default="auto", show_default=True,
              help="Autocast precision of the timed runs (auto: as fer-models train picks it).")
def summary(
    pattern: str | None,
    threads: int | None,
    repeats: int,
    throughput_repeats: int,
    warmup: int,
    channels_last: bool,
    no_timing: bool,
    write_path: Path | None,
    note: str | None,
    device: str,
    amp: str,
) -> None:
    """Parameters, FLOPs and speed of every registered model, as a markdown table."""
    import torch

    from fer_models import summary as cost
    from fer_models.device import resolve
    from fer_models.models import list_models

    if write_path is not None:  # before the measurements, which take minutes
        check_writable(write_path, "--write")
        cost.check_section_file(write_path)
    try:
        placement = resolve(device, amp)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if threads is not None:
        torch.set_num_threads(threads)
    names = list_models(pattern)
    if not names:
        raise click.UsageError(f"no model matches {pattern!r}; known: {', '.join(list_models())}")
    rows = []
    for name in names:
        row = cost.measure_model(
            name,
            timing=not no_timing,
            latency_repeats=repeats,
            throughput_repeats=throughput_repeats,
            warmup=warmup,
            channels_last=channels_last,
            placement=placement,
        )
        rows.append(row)
        click.echo(f"measured {name}", err=True)
    click.echo(f"Machine: {cost.machine_description()}; timed on {placement.describe()}")
    click.echo(cost.format_table(rows))
    if write_path is not None:
        args = ["fer-models", "summary"]
        if pattern is not None:
            args += ["--models", shlex.quote(pattern)]
        args += [f"--threads {torch.get_num_threads()}", f"--repeats {repeats}", f"--device {device}",
                 f"--amp {amp}"]
        args += [f"--throughput-repeats {throughput_repeats}", f"--warmup {warmup}"]
        args += ["--channels-last"] * channels_last + ["--no-timing"] * no_timing
        args += [f"--write {write_path}"]
        if note:
            args += ["--note", shlex.quote(note)]
        section = cost.render_section(
            rows,
            " ".join(args),
            latency_repeats=repeats,
            throughput_repeats=throughput_repeats,
            warmup=warmup,
            channels_last=channels_last,
            note=note,
            precision=f"{placement.describe()}",
        )
        cost.write_section(write_path, section)
        click.echo(f"wrote section '{cost.SECTION_HEADING}' of {write_path}", err=True)


def _recipe_help(text: str, name: str) -> str:
    """Help text ending with the option's value in each recipe (from fer_models.train.RECIPES)."""
    from fer_models.config import RECIPES, recipe_value

    values = ", ".join(f"{recipe}: {recipe_value(recipe, name)}" for recipe in RECIPES)
    return f"{text} [{values}]"


def _recipe_option(flag: str, name: str, text: str, **kw: object):  # noqa: ANN202 - click decorator
    """A training option whose default comes from ``--recipe`` (None here means 'from the recipe')."""
    return click.option(flag, name, default=None, help=_recipe_help(text, name), **kw)


_SPLIT_CHOICE = click.Choice(SPLIT_KINDS)
_AMP_HELP = ("Autocast precision. auto: on CUDA bf16 (fp16 where bf16 is missing); on the CPU bf16 only "
             "where the CPU computes it natively (AVX512-BF16 / AMX), else float32 (none).")
_DEVICE_HELP = "auto (CUDA when available, else CPU), cpu, cuda or cuda:N."


@main.command()
@click.option("--data", required=True, type=click.Path(exists=True), help="FER2013-format CSV (.csv or .csv.gz), or an image folder (split/class/*.png).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder: checkpoints, log.jsonl, test report.")
@click.option("--recipe", type=click.Choice(list(RECIPES)), default="default", show_default=True,
              help="default: our recipe (65.8 % FER2013 PrivateTest at 100 epochs; docs/training.md); paper: the paper's recipe exactly. "
                   "Options below override single values of the recipe.")
@click.option("--model", default="mini_xception_cbam", show_default=True, help="Registered model name.")
@click.option("--model-kw", multiple=True, metavar="KEY=VALUE", help="Extra model argument (JSON value), repeatable.")
@click.option("--split", type=_SPLIT_CHOICE, default="usage", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@_recipe_option("--epochs", "epochs", "Epochs.", type=click.IntRange(min=1))
@_recipe_option("--batch-size", "batch_size", "Batch size.", type=click.IntRange(min=1))
@_recipe_option("--optimizer", "optimizer", "Optimizer (SGD is Nesterov with --momentum).",
                type=click.Choice(OPTIMIZERS))
@_recipe_option("--lr", "lr", "Peak learning rate.", type=float)
@_recipe_option("--momentum", "momentum", "SGD momentum.", type=float)
@_recipe_option("--weight-decay", "weight_decay", "Weight decay (not on BatchNorm and biases).", type=float)
@_recipe_option("--schedule", "schedule", "lr schedule after the warm-up (per step).",
                type=click.Choice(SCHEDULES))
@_recipe_option("--warmup-epochs", "warmup_epochs", "Linear lr warm-up.", type=click.IntRange(min=0))
@_recipe_option("--lr-step", "lr_step", "Epochs between lr decays (--schedule step).", type=click.IntRange(min=1))
@_recipe_option("--lr-gamma", "lr_gamma", "lr factor at each decay (--schedule step).", type=float)
@_recipe_option("--label-smoothing", "label_smoothing", "Cross-entropy label smoothing.", type=float)
@_recipe_option("--class-weighted/--no-class-weighted", "class_weighted", "Class-balanced cross-entropy weights.")
@_recipe_option("--augment/--no-augment", "augment", "Training augmentation on/off.")
@_recipe_option("--rotation", "rotation_deg", "Random rotation, degrees (+-).", type=float)
@_recipe_option("--translate", "translate", "Random shift, fraction of the size (+-).", type=float)
@_recipe_option("--scale", "scale", "Random zoom, fraction (+-).", type=float)
@_recipe_option("--erase-prob", "erase_prob", "Random-erasing probability per image.", type=float)
@_recipe_option("--mixup", "mixup_alpha", "mixup Beta(alpha, alpha); 0 = off.", type=float)
@_recipe_option("--ema", "ema_decay", "EMA decay of the weights per step; 0 = off. Each epoch the EMA or the raw "
                "weights, whichever scores higher on validation, is the candidate for best.pt.", type=float)
@_recipe_option("--tta", "tta", "Test-time augmentation of the final test report (every mode is also recorded).",
                type=click.Choice(TTA_CHOICES))
@click.option("--labels", default=None, metavar="ferplus=VOTES.csv",
              help="Train on FER+ crowd labels (8 classes) instead of FER2013's; see docs/training.md.")
@click.option("--init", default=None, metavar="NAME|CHECKPOINT",
              help="Start from trained weights (shipped name such as fer2013, or a checkpoint) instead of random "
                   "ones: fine-tuning. Recorded in the run's config.")
@click.option("--label-mode", type=click.Choice(LABEL_MODES), default="majority", show_default=True,
              help="FER+ targets: the majority label, or the vote distribution (scored on majority labels).")
@click.option("--twin", default=None, type=click.Path(exists=True),
              help="The unmasked FER2013 file --data (an SMFER2013) was built from: train on masked faces with "
                   "their unmasked twins (the options below; see docs/training.md, 'Training with twins').")
@click.option("--mask-prob", type=click.FloatRange(0, 1), default=None,
              help="With --twin: probability that a training image is the masked copy, else its twin [0.5].")
@click.option("--refill", type=click.FloatRange(0, 1), default=None,
              help="With --twin: probability that a masked copy's mask region is refilled (flat tone and noise, "
                   "or another face) so the mask's look carries no signal [0].")
@click.option("--eyes-only", is_flag=True, default=None,
              help="With --twin: blank every face below its mask top, in training and evaluation (the bound "
                   "for a model that ignores the mask).")
@click.option("--distill", default=None, metavar="NAME|CHECKPOINT",
              help="With --twin: a teacher (shipped name or checkpoint) that sees the unmasked twin; the model "
                   "learns its soft targets.")
@click.option("--distill-weight", type=click.FloatRange(0, 1), default=None,
              help="Share of the distillation term in the loss (the rest: cross-entropy) [0.5].")
@click.option("--distill-temp", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Distillation temperature [4].")
@click.option("--cam-penalty", type=click.FloatRange(min=0), default=None,
              help="With --twin: weight of a loss term on the class-activation-map share inside the mask "
                   "region of masked faces (Mini-Xception models) [0].")
@click.option("--mask-evidence", type=click.FloatRange(min=0), default=None,
              help="With --twin: weight of a loss term on how much the mask region's evidence moves the "
                   "prediction (KL to the prediction without it; Mini-Xception models) [0].")
@click.option("--channels-last/--no-channels-last", default=True, show_default=True)
@click.option("--device", default="auto", show_default=True, help=_DEVICE_HELP)
@click.option("--amp", type=click.Choice(AMP_CHOICES), default="auto", show_default=True,
              help=_AMP_HELP)
@click.option("--compile", "compile_", is_flag=True, help="Run the model under torch.compile.")
@click.option("--cuda-graph", "cuda_graph", type=click.Choice(CUDA_GRAPH_CHOICES), default="auto", show_default=True,
              help="Capture the training step in one CUDA graph and replay it (auto: whenever training runs on "
                   "CUDA; off: eager steps). If capture fails, training goes on eagerly and says why.")
@click.option("--threads", type=click.IntRange(min=1), default=None, callback=_threads_option,
              help="torch intra-op threads (default: torch's).")
@click.option("--max-steps-per-epoch", type=click.IntRange(min=1), default=None, help="Cap steps per epoch (smoke runs).")
@click.option("--resume", is_flag=True, help="Continue OUT/checkpoint.pt (same options; see docs/training.md).")
@click.option("--progress/--no-progress", default=True, show_default=True)
def train(data: str, out: str, recipe: str, model_kw: tuple[str, ...], compile_: bool, resume: bool,
          **options: object) -> None:
    """Train a model on a FER2013-format CSV or an image folder (default: our recipe; --recipe paper: the paper's); see docs/training.md."""
    from fer_models.models import check_model_kwargs, is_model
    from fer_models.checkpoint import checkpoint_path
    from fer_models.train import TrainConfig, main as train_main, parse_model_kw, run_files

    check_writable(out, "--out", folder=True)
    model_kwargs = parse_model_kw(model_kw)
    if model_kwargs and is_model(str(options["model"])):  # before any work: a typo, num_classes, a huge model
        try:
            check_model_kwargs(str(options["model"]), model_kwargs)
        except ValueError as exc:
            raise BadInput(f"--model-kw: {exc}") from None
    try:
        config = TrainConfig.from_recipe(recipe, data=data, out=out, model_kwargs=model_kwargs,
                                         compile=compile_, **options)
        config.validate()
    except ValueError as exc:
        raise BadInput(_in_option_names(str(exc), click.get_current_context().command)) from None
    from fer_models.labels import parse_labels_option

    _check_input_files([("--data", data), ("--twin", config.twin), ("--init", config.init), ("--distill", config.distill),
                        ("--labels", parse_labels_option(config.labels)[1] if config.labels is not None else None)])
    for option, source in (("--init", config.init), ("--distill", config.distill)):
        if source is not None:
            try:
                checkpoint_path(source)
            except ValueError as exc:
                raise BadInput(f"{option}: {exc}") from None
    inputs, outputs = run_files(config)  # e.g. --init OUT/best.pt would be overwritten by the run's best.pt
    from fer_models.data import folder_inputs

    inputs += [*folder_inputs("--data", config.data), *folder_inputs("--twin", config.twin)]
    _check_outputs(inputs, [(what, str(path), False) for what, path in outputs])
    tensors = None
    if config.labels is None:  # FER+ labels replace the classes; they are checked where they are read
        from fer_models.data import load_dataset, split_indices

        tensors = load_dataset(config.data)
        _check_training_classes(data, tensors.labels.numpy()[split_indices(tensors, config.split, config.seed)["train"]])
    train_main(config, resume=resume, data=tensors)


def _in_option_names(text: str, command: click.Command) -> str:
    """A :class:`TrainConfig` message in ``command``'s option names: ``mask_evidence must ...`` ->
    ``--mask-evidence must ...``, ``give twin=FER2013.csv`` -> ``give --twin FER2013.csv``. Only a field name
    followed by ``=``, `` must``, `` need`` or `` is for`` (or a comma in a list of them) is renamed; a word in a
    path or in prose stays as it is."""
    import re

    options = {p.name: max(p.opts, key=len) for p in command.params if isinstance(p, click.Option) and p.name}

    def rename(match: re.Match[str]) -> str:
        option = options.get(match.group(1))
        if option is None:
            return match.group(0)
        return option + (" " if match.group(2) == "=" else match.group(2))

    listed = r",(?= ?[a-z][a-z0-9_]*(?:,| and | needs?\b| must\b))"  # a comma inside a list of field names
    return re.sub(rf"(?<![\w/.-])([a-z][a-z0-9_]*)(=|{listed}| must\b| needs?\b| is for\b)", rename, text)


def _check_training_classes(data: str, labels: np.ndarray) -> None:
    """Refuse training rows of one class (accuracy 1.0 that means nothing); warn about missing classes."""
    from maskgen.dataset import EMOTIONS

    present = np.unique(labels)
    if present.size < 2:
        what = f"every training row has class {EMOTIONS[int(present[0])]!r}" if present.size else "no training rows"
        raise BadInput(f"--data {data}: {what}; a classifier needs at least two classes to learn anything")
    missing = [EMOTIONS[i] for i in range(len(EMOTIONS)) if i not in set(present.tolist())]
    if missing:
        warn(f"--data {data}: no training rows of class {', '.join(missing)}; the model will never predict them")


@main.command()
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), default=None,
              help="best.pt or checkpoint.pt of a run.")
@click.option("--weights", default=None, help="Shipped weights by name instead of --checkpoint (fer-models weights lists them).")
@click.option("--data", required=True, type=click.Path(exists=True), help="FER2013-format CSV or image folder to score.")
@click.option("--split", type=_SPLIT_CHOICE, default=None, help="Default: the checkpoint's split.")
@click.option("--subset", type=click.Choice(["train", "val", "test", "all"]), default="test", show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Report folder (default: next to the checkpoint).")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--tta", type=click.Choice(TTA_CHOICES), default=None, help="Default: the checkpoint's recipe.")
@click.option("--device", default="auto", show_default=True, help=_DEVICE_HELP)
@click.option("--amp", type=click.Choice(AMP_CHOICES), default="auto", show_default=True,
              help=_AMP_HELP)
@click.option("--threads", type=click.IntRange(min=1), default=None, callback=_threads_option,
              help="torch intra-op threads.")
def evaluate(checkpoint: str | None, weights: str | None, data: str, split: str | None, subset: str,
             out: str | None, batch_size: int, tta: str | None, device: str, amp: str, threads: int | None) -> None:
    """Accuracy, per-class / macro precision, recall, F1 and a confusion matrix of a checkpoint on a CSV."""
    import torch

    from fer_models.metrics import format_report
    from fer_models.inference import evaluate_checkpoint

    if (checkpoint is None) == (weights is None):
        raise click.UsageError("give exactly one of --checkpoint and --weights")
    _check_input_files([("--checkpoint", checkpoint), ("--data", data)])
    _check_outputs(_with_companions([*_model_inputs(checkpoint, weights), ("--data", data)]), [("--out", out, True)])
    if threads is not None:
        torch.set_num_threads(threads)
    if weights is not None:
        from fer_models.checkpoint import checkpoint_path

        checkpoint = str(checkpoint_path(weights))
        if out is None:
            out = f"eval-{weights}-{Path(data).name.split('.')[0]}-{subset}"
    report = evaluate_checkpoint(checkpoint, data, split, subset, out, batch_size, amp, device, tta)
    title = f"{report['model']} on {Path(data).name} [{report['split']}/{subset}]"
    title += f" ({report['device']}, amp {report['amp']}" + ("" if report["tta"] == "none" else f", TTA {report['tta']}") + ")"
    click.echo(format_report(report, title))
    click.echo(f"report: {report['paths']['json']}  confusion matrix: {report['paths']['png']}")


@main.command()
@click.option("--fer", "fer", type=click.Path(exists=True, dir_okay=False), default=None, help="FER2013 CSV (Tables 2 and 3).")
@click.option("--smfer", "smfer", type=click.Path(exists=True, dir_okay=False), default=None, help="SMFER2013 CSV (Table 2).")
@click.option("--mfer", "mfer", type=click.Path(exists=True, dir_okay=False), default=None, help="MFER2013 CSV (Tables 1 and 2).")
@click.option("--build", is_flag=True,
              help="Make SMFER2013 and MFER2013 from --fer with maskgen (under OUT/data, seed --build-seed).")
@click.option("--build-seed", type=click.IntRange(min=0), default=0, show_default=True, help="maskgen seed for --build.")
@click.option("--jobs", type=click.IntRange(min=1), default=None, help="maskgen workers for --build.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Benchmark folder: one run folder per cell under OUT/runs (resumable).")
@click.option("--budget", type=click.Choice(["smoke", "cpu", "full"]), default="cpu", show_default=True,
              help="smoke: 1 epoch of 2 steps per run, ResNet-18 and ViT built tiny (checks the machinery); cpu: 8 "
                   "epochs per run, sized for a small CPU; full: the paper's 100 epochs. Every budget resumes "
                   "(CPU or GPU); measured times per machine: docs/training.md.")
@click.option("--recipe", type=click.Choice(list(RECIPES)), default="default", show_default=True)
@click.option("--tables", default="1,2,3", show_default=True, help="Comma-separated tables to run: 1, 2, 3.")
@click.option("--write", "write_path", type=click.Path(dir_okay=False), default=None,
              help="Markdown file for the tables (default OUT/paper_tables.md); the plot is written beside it.")
@click.option("--records", "records_path", type=click.Path(dir_okay=False), default=None,
              help="JSON of finished runs, updated after each run (default: the --write file with .json). Runs "
                   "found there with the same settings are not trained again: commit it beside the tables and "
                   "the grid survives the loss of OUT.")
@click.option("--beside", "beside_path", type=click.Path(exists=True, dir_okay=False), default=None,
              metavar="RECORDS",
              help="A records file of the same grid at another budget (e.g. docs/paper_tables.json, the cpu budget): "
                   "its accuracy, leak and gain columns are shown beside these, on the same runs; read only.")
@click.option("--only", multiple=True, metavar="PATTERN",
              help="Train only the runs whose id matches this shell pattern (repeatable), e.g. 'mfer2013-vit-*'; "
                   "ids: DATASET-MODEL-SPLIT-sSEED. The tables still show every finished run.")
@click.option("--limit", type=click.IntRange(min=0), default=None,
              help="Train at most this many new runs now (the rest on the next call); 0: only write the tables.")
@click.option("--parallel", type=click.IntRange(min=1), default=1, show_default=True,
              help="Train this many runs at once, each in its own worker process and resumable run folder, with "
                   "the torch threads divided among them (see --threads).")
@click.option("--threads", type=click.IntRange(min=1), default=None, callback=_threads_option,
              help="torch threads of each run (default: torch's, divided by --parallel). On a CPU a run's last "
                   "bits depend on its thread count: the same --threads gives the same tables whatever --parallel.")
def benchmark(fer: str | None, smfer: str | None, mfer: str | None, build: bool, build_seed: int,
              jobs: int | None, out: str, budget: str, recipe: str, tables: str, write_path: str | None,
              records_path: str | None, beside_path: str | None, only: tuple[str, ...], limit: int | None,
              parallel: int, threads: int | None) -> None:
    """The paper's Tables 1-3 under the usage, de-duplicated and paper protocols; resumable (docs/paper_tables.md)."""
    import sys

    from fer_models.benchmark import benchmark as run_benchmark, build_datasets, check_request
    from fer_models.benchmark.datasets import build_folder

    _check_input_files([("--fer", fer), ("--smfer", smfer), ("--mfer", mfer), ("--beside", beside_path)])
    chosen = [t.strip() for t in tables.split(",") if t.strip()]
    try:  # before any work, --build included; the default output files too (OUT/paper_tables.md may be an input)
        files, _ = check_request(out, budget, recipe, chosen, write=write_path, records=records_path, only=only,
                                 parallel=parallel, threads=threads, beside=beside_path)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    _check_outputs([("--fer", fer), ("--smfer", smfer), ("--mfer", mfer), ("--beside", beside_path)],
                   [("--out", out, True), *((role, str(path), False) for role, path in files.items())])
    if build:  # the built datasets, their sidecars and manifests live in OUT/data: no other output goes there
        from maskgen.paths import is_inside

        data_folder = build_folder(out)
        for role, path in files.items():
            if is_inside(path.resolve(), data_folder.resolve()):
                raise BadInput(f"{role} {path} is inside {data_folder}, where --build writes SMFER2013 and "
                               "MFER2013; choose another path")
    if not build:  # before any work, in this command's own option names
        from fer_models.benchmark import TABLES, datasets_needed

        given = {"fer2013": fer, "smfer2013": smfer, "mfer2013": mfer}
        missing = [d for d in datasets_needed([t for t in chosen if t in TABLES]) if not given[d]]
        if missing:
            flags = " ".join(f"--{d.removesuffix('2013')}" for d in missing)
            raise click.UsageError(f"tables {','.join(chosen)} need {', '.join(missing)}: give {flags} "
                                   "(or --build with --fer)")
        if mfer is not None:
            _check_mfer_file(mfer)
    if build:
        if fer is None:
            raise click.UsageError("--build needs --fer")
        if smfer or mfer:
            raise click.UsageError("give --build or --smfer / --mfer, not both")
        paths = build_datasets(fer, Path(out), seed=build_seed, jobs=jobs, echo=click.echo)
    else:
        paths = {k: v for k, v in (("fer2013", fer), ("smfer2013", smfer), ("mfer2013", mfer)) if v}
    command = " ".join(shlex.quote(a) for a in ["fer-models", *sys.argv[1:]])
    done = run_benchmark(paths, out, budget=budget, recipe=recipe, tables=chosen, write=write_path,
                         command=command, echo=click.echo, limit=limit, records=records_path, only=only,
                         parallel=parallel, threads=threads, beside=beside_path)
    click.echo(f"{done['finished']} of {done['total']} runs finished")


def _check_mfer_file(path: str) -> None:
    """--mfer must be an MFER2013 file (maskgen build-mfer adds the source and masked columns), not FER2013."""
    import gzip

    opener = gzip.open if str(path).lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as fh:
        header = [h.strip().strip('"') for h in fh.readline().strip().split(",")]
    missing = [c for c in ("source", "masked") if c not in header]
    if missing:
        raise BadInput(f"--mfer {path}: not an MFER2013 file (no {' or '.join(missing)} column; maskgen build-mfer "
                       "makes one from FER2013 and SMFER2013)")


def _check_outputs(inputs: list[tuple[str, str | None]], outputs: list[tuple[str, str | None, bool]]) -> None:
    """Before any work: each output (option, path, is a folder) can be written, and no output file is an
    input or another output (:func:`maskgen.paths.check_outputs`); inputs are (option, path) pairs. A report
    folder may hold inputs (a run folder holds its checkpoint; benchmark --build writes its data there)."""
    from maskgen.paths import Output

    check_output_paths(inputs, [Output(role, Path(path), folder) for role, path, folder in outputs if path is not None],
                       folders_may_hold_inputs=True)


def _check_input_files(inputs: list[tuple[str, str | None]]) -> None:
    """Before anything reads them: each input file named (option, path; folders and absent paths are left to
    their readers) is a regular file once links are followed (:func:`maskgen.paths.check_input_file`): a FIFO
    blocked its read forever or was called a missing file, a device never ends."""
    from maskgen.paths import check_input_file

    for role, path in inputs:
        if path is not None and not Path(path).is_dir():
            check_input_file(path, role)


def _model_inputs(checkpoint: str | None, weights: str | None, onnx: str | None = None) -> list[tuple[str, str | None]]:
    """The model files a command reads, as (option, path) inputs for the output checks: an output must
    never replace the checkpoint, the ONNX file or the shipped weights file it is using."""
    from fer_models.weights import list_weights, weights_path

    inputs: list[tuple[str, str | None]] = [("--checkpoint", checkpoint), ("--onnx", onnx)]
    if weights is not None and weights in list_weights():
        inputs.append(("--weights", str(weights_path(weights))))
    return inputs


def _with_companions(inputs: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    """``inputs`` and the sidecar and manifest beside each input CSV (``maskgen.smfer.input_companions``): no
    output may replace them either (``predict sm.csv -o sm.meta.csv`` would)."""
    from maskgen.paths import check_input_file
    from maskgen.smfer import input_companions, sidecar_paths

    out = list(inputs)
    for role, path in inputs:
        if path is not None and str(path).lower().endswith((".csv", ".csv.gz")) and Path(path).is_file():
            # input_companions reads the manifest (the sidecar it records): a FIFO there blocked forever
            check_input_file(sidecar_paths(path)[1], f"{role} {path}'s manifest")
            out += [(f"{role} {path}'s {what.split()[-1]}", str(p)) for what, p in input_companions(path)]
    return out


def _load_model_state(checkpoint: str | None, weights: str | None) -> tuple[Checkpoint, Path]:
    """(the checkpoint, its file) of exactly one of --checkpoint / --weights."""
    from fer_models.checkpoint import checkpoint_path, load_checkpoint
    from fer_models.weights import list_weights

    if (checkpoint is None) == (weights is None):
        raise click.UsageError("give exactly one of --checkpoint and --weights")
    if weights is not None and weights not in list_weights():
        raise click.UsageError(f"no shipped weights named {weights!r}; shipped: {', '.join(list_weights())} "
                               "(a file goes to --checkpoint)")
    path = checkpoint_path(weights if weights is not None else str(checkpoint))
    return load_checkpoint(path), path


_CHECKPOINT_OPT = click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), default=None,
                               help="best.pt or checkpoint.pt of a run.")
_WEIGHTS_OPT = click.option("--weights", default=None, help="Shipped weights by name (fer-models weights lists them).")
#: --weights takes names; a path belongs to --checkpoint


@main.command("export")
@_CHECKPOINT_OPT
@_WEIGHTS_OPT
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The .onnx file to write.")
@click.option("--check", "check_csv", type=click.Path(exists=True, dir_okay=False), default=None,
              help="FER2013-format CSV: compare onnxruntime's logits with PyTorch's on its first --check-rows faces "
                   "(default: 256 LFW faces scikit-image ships, when installed).")
@click.option("--check-rows", type=click.IntRange(min=1, max=600), default=256, show_default=True,
              help="Faces to verify on (the LFW set has 600 views: 100 faces, mirrored and shifted).")
@click.option("--int8", "int8_csv", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Also write OUTPUT with .int8.onnx: static int8, calibrated on the Training rows of this CSV.")
@click.option("--calibration-rows", type=click.IntRange(min=16), default=512, show_default=True)
def export_command(checkpoint: str | None, weights: str | None, output: str, check_csv: str | None, check_rows: int,
                   int8_csv: str | None, calibration_rows: int) -> None:
    """Export a trained model to ONNX (BatchNorm folded, dynamic batch, preprocessing in the metadata)."""
    from fer_models.export import MAX_ABS_DIFF, MIN_CALIBRATION, export_onnx, quantize_int8
    from maskgen.io import atomic_write, file_sha256

    int8_output = str(Path(output).with_suffix(".int8.onnx")) if int8_csv is not None else None
    _check_input_files([("--checkpoint", checkpoint), ("--check", check_csv), ("--int8", int8_csv)])
    _check_outputs(_with_companions([*_model_inputs(checkpoint, weights), ("--check", check_csv), ("--int8", int8_csv)]),
                   [("-o", output, False), ("the int8 copy", int8_output, False)])
    state, path = _load_model_state(checkpoint, weights)
    calib = None
    if int8_csv is not None:  # checked before any work: at least MIN_CALIBRATION Training faces
        from maskgen.dataset import read_fer_csv

        table = read_fer_csv(int8_csv)
        train = np.flatnonzero(table.usage == "Training") if table.usage is not None else np.arange(len(table))
        calib = table.images[train[:calibration_rows]]
        if len(calib) < MIN_CALIBRATION:
            raise BadInput(f"--int8 {int8_csv}: {len(calib)} Training face(s); int8 calibration needs at least "
                           f"{MIN_CALIBRATION}")
    faces = _check_faces(check_csv, check_rows)
    # the float model is renamed into place only after the int8 copy is made: a failed --int8 leaves neither
    with atomic_write(output) as tmp:
        info = export_onnx(state, tmp, source_sha256=file_sha256(path), check_images=faces)
        q = quantize_int8(tmp, int8_output, calib) if calib is not None else None
    click.echo(f"wrote {output} ({info.bytes:,} bytes, {info.model}, classes {', '.join(info.class_names)}; "
               f"BatchNorm folded)")
    if info.max_abs_diff is not None:
        click.echo(f"verified on {len(faces)} faces: max |logit difference| {info.max_abs_diff:.2e} "
                   f"(limit {MAX_ABS_DIFF:g})")
    else:
        warn("NOT verified: give --check CSV, or install scikit-image for its LFW faces")
    if q is not None:
        click.echo(f"wrote {q} ({q.stat().st_size:,} bytes; calibrated on {len(calib)} faces). Whether it pays "
                   "is measured by benchmarks/onnx_latency.py")


def _check_faces(csv_path: str | None, rows: int) -> np.ndarray | None:
    """Faces to verify an export on: a CSV's first rows, or scikit-image's LFW faces (None without either)."""
    if csv_path is not None:
        from maskgen.dataset import read_fer_csv

        return read_fer_csv(csv_path).images[:rows]
    from fer_models.export import shipped_faces

    try:
        return shipped_faces(rows)
    except RuntimeError:  # scikit-image is not installed
        return None


@main.command("predict", epilog=PARTIAL_EPILOG)
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@_CHECKPOINT_OPT
@_WEIGHTS_OPT
@click.option("--onnx", "onnx_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="An exported model (fer-models export) instead of a checkpoint.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write here (default: stdout).")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
@click.option("--annotate", type=click.Path(file_okay=False), default=None,
              help="Folder for the photos with each face's box and label drawn.")
@click.option("--aligned", is_flag=True, help="Pictures are face crops already (FER2013-style): no face detection.")
@click.option("--tta", type=click.Choice(TTA_CHOICES), default=None,
              help="Test-time augmentation (default: the checkpoint's recipe; none for --onnx, which takes none/flip).")
@click.option("--device", default="auto", show_default=True, help=_DEVICE_HELP)
@click.option("--amp", type=click.Choice(AMP_CHOICES), default="auto", show_default=True, help=_AMP_HELP)
@click.option("--progress/--no-progress", default=True, show_default=True)
def predict_command(paths: tuple[str, ...], checkpoint: str | None, weights: str | None, onnx_path: str | None,
                    output: str | None, fmt: str, annotate: str | None, aligned: bool, tta: str | None, device: str,
                    amp: str, progress: bool) -> None:
    """Expression of every face in photos, folders or FER2013-format CSVs: one row per face (file, box, label,
    probabilities). Photos without a face are reported (status no_face)."""
    from fer_models.predict import FAILED_STATUSES, Scorer, format_records, predict_paths, summarize
    from fer_models.predict import check_predict_outputs
    from maskgen.io import atomic_write

    # every input file a regular file (a FIFO blocked), every output against every input, before any work
    _check_input_files([("--checkpoint", checkpoint), ("--onnx", onnx_path), *(("input", p) for p in paths)])
    check_predict_outputs(paths, output, annotate,
                          models=_with_companions([*_model_inputs(checkpoint, weights, onnx_path),
                                                   *(("input", p) for p in paths)]))
    if output is not None:
        check_writable(output)
    if annotate is not None:
        check_writable(annotate, "--annotate", folder=True)
    from fer_models.predict import expand_inputs

    found = expand_inputs(paths)
    if not found:
        raise BadInput(f"{', '.join(paths)}: no picture or FER2013-format CSV to predict on")
    if annotate is not None:  # a bad CSV stops the command before any picture is annotated, not after
        from maskgen.dataset import read_fer_csv

        for path, _ in found:
            if path.name.lower().endswith((".csv", ".csv.gz")):
                read_fer_csv(path)
    if onnx_path is not None:
        if checkpoint is not None or weights is not None:
            raise click.UsageError("give one of --checkpoint, --weights and --onnx")
        scorer = Scorer.from_onnx(onnx_path, tta=tta or "none")
    else:
        state, _ = _load_model_state(checkpoint, weights)
        scorer = Scorer.from_checkpoint(state, tta=tta, device=device, amp=amp)
    click.echo(f"model: {scorer.describe}", err=True)
    records = predict_paths(paths, scorer, aligned=aligned, annotate=annotate, progress=progress)
    text = format_records(records, scorer.class_names, fmt)
    if output is None:
        click.echo(text, nl=False)
    else:
        with atomic_write(Path(output)) as tmp:
            tmp.write_text(text)
        click.echo(f"wrote {output}", err=True)
    click.echo(summarize(records), err=True)
    failed = {r.file for r in records if r.status in FAILED_STATUSES}
    if failed:  # every picture has its row; some failed: the exit status says so
        exit_partial(f"{len(failed)} of {len({r.file for r in records})} pictures failed")


@main.command("explain")
@_CHECKPOINT_OPT
@_WEIGHTS_OPT
@click.option("--data", required=True, type=click.Path(exists=True, dir_okay=False), help="FER2013-format CSV.")
@click.option("--masked", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Its SMFER2013 twin (maskgen build-smfer on --data; the .meta.csv sidecar beside it).")
@click.option("-n", "count", type=click.IntRange(min=1, max=64), default=8, show_default=True, help="Faces drawn.")
@click.option("--subset", type=click.Choice(["Training", "PublicTest", "PrivateTest", "all"]), default="PrivateTest",
              show_default=True, help="Rows to draw from (by Usage).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Which faces are drawn.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="PNG to write.")
def explain_command(checkpoint: str | None, weights: str | None, data: str, masked: str, count: int, subset: str,
                    seed: int, output: str) -> None:
    """CBAM spatial attention of each block and a Grad-CAM of the last one, for faces unmasked and masked, with the
    share of Grad-CAM inside the mask and the eye regions."""
    from fer_models.explain import explain_rows, plot_explanations

    from maskgen.smfer import sidecar_paths

    sidecar, manifest = sidecar_paths(masked)
    _check_input_files([("--checkpoint", checkpoint), ("--data", data), ("--masked", masked),
                        ("--masked's sidecar", str(sidecar)), ("--masked's manifest", str(manifest))])
    _check_outputs(_with_companions([*_model_inputs(checkpoint, weights), ("--data", data), ("--masked", masked),
                                     ("--masked's sidecar", str(sidecar)), ("--masked's manifest", str(manifest))]),
                   [("-o", output, False)])
    state, _ = _load_model_state(checkpoint, weights)
    model, config = state.build_model(), state.train_config()
    fer, smfer, params, rows = _twin_rows(data, masked, subset)
    pick = sorted(np.random.default_rng(seed).choice(rows, size=min(count, len(rows)), replace=False).tolist())
    names = tuple(state.class_names)
    explained = explain_rows(model, names, fer.images, smfer.images, fer.emotion, params, pick)  # FER+ models: true "?"
    title = f"{config.model} ({weights or Path(str(checkpoint)).name}): {len(pick)} {subset} faces"
    plot_explanations(explained, output, title)
    for kind in ("unmasked", "masked"):
        es = explained[kind]
        lit = [e for e in es if e.mask_share == e.mask_share]  # an all-zero Grad-CAM has no share (NaN)
        if not lit:
            click.echo(f"{kind}: every Grad-CAM is empty (no positive evidence for the predicted class anywhere)")
            continue
        click.echo(f"{kind}: Grad-CAM in the mask region {100 * np.mean([e.mask_share for e in lit]):.1f} %, "
                   f"in the eye region {100 * np.mean([e.eye_share for e in lit]):.1f} % (mean of {len(lit)} faces"
                   + (f"; {len(es) - len(lit)} with an empty map left out)" if len(lit) < len(es) else ")"))
    click.echo(f"wrote {output}")


def _twin_rows(data: str, masked: str, subset: str) -> tuple:
    """(FER2013 table, SMFER2013 table, params per row, usable rows): rows masked with the mask's parameters."""
    from fer_models.explain import read_sidecar_params
    from maskgen.dataset import read_fer_csv

    fer, smfer = read_fer_csv(data), read_fer_csv(masked)
    if len(fer) != len(smfer) or not np.array_equal(fer.emotion, smfer.emotion):
        raise ValueError(f"{masked} is not the masked twin of {data}: {len(smfer)} vs {len(fer)} rows or other labels")
    params = read_sidecar_params(masked, len(fer))
    ok = np.array([p is not None for p in params])
    if subset != "all":
        if fer.usage is None:
            raise ValueError(f"{data} has no Usage column; use --subset all")
        ok &= fer.usage == subset
    rows = np.flatnonzero(ok)
    if rows.size == 0:
        raise ValueError(f"no masked {subset} rows with mask parameters in the sidecar of {masked}")
    return fer, smfer, params, rows


@main.command("weights")
def weights_command() -> None:
    """List the trained weights that ship with the package, with how they were made and scored."""
    from fer_models.pretrained import weights_index

    index = weights_index()
    if not index:
        click.echo("no weights ship with this installation")
    for name, entry in sorted(index.items()):
        click.echo(f"{name}: {entry['model']}, trained on {entry.get('trained_on', '?')}")
        for key in ("scores", "command", "data_sha256"):
            if key in entry:
                click.echo(f"  {key}: {json.dumps(entry[key]) if isinstance(entry[key], dict) else entry[key]}")


if __name__ == "__main__":
    main()
