"""``fer-models`` command line: a plain click group, one function per command.

Commands import torch lazily, so ``fer-models --help`` stays fast.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import click

from fer_models.config import AMP_CHOICES, OPTIMIZERS, RECIPES, SCHEDULES, TTA_CHOICES
from fer_models.labels import LABEL_MODES
from fer_models.summary import (
    DEFAULT_LATENCY_REPEATS,
    DEFAULT_THROUGHPUT_REPEATS,
    DEFAULT_WARMUP,
)
from maskgen.splits import SPLIT_KINDS


@click.group()
def main() -> None:
    """Train, evaluate and measure facial-expression models (Mini-Xception + CBAM, baselines)."""


@main.command()
@click.option("--models", "pattern", default=None, help="Glob over model names (default: all).")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
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
@click.option("--label-mode", type=click.Choice(LABEL_MODES), default="majority", show_default=True,
              help="FER+ targets: the majority label, or the vote distribution (scored on majority labels).")
@click.option("--channels-last/--no-channels-last", default=True, show_default=True)
@click.option("--device", default="auto", show_default=True, help=_DEVICE_HELP)
@click.option("--amp", type=click.Choice(AMP_CHOICES), default="auto", show_default=True,
              help=_AMP_HELP)
@click.option("--compile", "compile_", is_flag=True, help="Run the model under torch.compile.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch intra-op threads (default: torch's).")
@click.option("--max-steps-per-epoch", type=click.IntRange(min=1), default=None, help="Cap steps per epoch (smoke runs).")
@click.option("--resume", is_flag=True, help="Continue OUT/checkpoint.pt (same options; see docs/training.md).")
@click.option("--progress/--no-progress", default=True, show_default=True)
def train(data: str, out: str, recipe: str, model_kw: tuple[str, ...], compile_: bool, resume: bool,
          **options: object) -> None:
    """Train a model on a FER2013-format CSV or an image folder (default: our recipe; --recipe paper: the paper's); see docs/training.md."""
    from fer_models.train import TrainConfig, main as train_main, parse_model_kw

    try:
        config = TrainConfig.from_recipe(recipe, data=data, out=out, model_kwargs=parse_model_kw(model_kw),
                                         compile=compile_, **options)
        train_main(config, resume=resume)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None


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
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch intra-op threads.")
def evaluate(checkpoint: str | None, weights: str | None, data: str, split: str | None, subset: str,
             out: str | None, batch_size: int, tta: str | None, device: str, amp: str, threads: int | None) -> None:
    """Accuracy, per-class / macro precision, recall, F1 and a confusion matrix of a checkpoint on a CSV."""
    import torch

    from fer_models.metrics import format_report
    from fer_models.train import evaluate_checkpoint

    if (checkpoint is None) == (weights is None):
        raise click.UsageError("give exactly one of --checkpoint and --weights")
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        if weights is not None:
            from fer_models.pretrained import load_weights, weights_path

            load_weights(weights)  # checks the name and the file's sha256
            checkpoint = str(weights_path(weights))
            if out is None:
                out = f"eval-{weights}-{Path(data).name.split('.')[0]}-{subset}"
        report = evaluate_checkpoint(checkpoint, data, split, subset, out, batch_size, amp, device, tta)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    title = f"{report['model']} on {Path(data).name} [{report['split']}/{subset}]"
    title += f" ({report['device']}, amp {report['amp']}" + ("" if report["tta"] == "none" else f", TTA {report['tta']}") + ")"
    click.echo(format_report(report, title))
    click.echo(f"report: {report['paths']['json']}  confusion matrix: {report['paths']['png']}")


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
