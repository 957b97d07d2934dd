"""``fer-models`` command line: a plain click group, one function per command.

Commands import torch lazily, so ``fer-models --help`` stays fast.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from fer_models.summary import (
    DEFAULT_LATENCY_REPEATS,
    DEFAULT_THROUGHPUT_REPEATS,
    DEFAULT_WARMUP,
)


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
) -> None:
    """Parameters, FLOPs and CPU speed of every registered model, as a markdown table."""
    import torch

    from fer_models import summary as cost
    from fer_models.models import list_models

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
        )
        rows.append(row)
        click.echo(f"measured {name}", err=True)
    click.echo(f"Machine: {cost.machine_description()}")
    click.echo(cost.format_table(rows))
    if write_path is not None:
        args = ["fer-models", "summary"]
        if pattern is not None:
            args += ["--models", shlex.quote(pattern)]
        args += [f"--threads {torch.get_num_threads()}", f"--repeats {repeats}"]
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
        )
        cost.write_section(write_path, section)
        click.echo(f"wrote section '{cost.SECTION_HEADING}' of {write_path}", err=True)


@main.command()
@click.option("--data", required=True, type=click.Path(exists=True, dir_okay=False), help="FER2013-format CSV (.csv or .csv.gz).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder: checkpoints, log.jsonl, test report.")
@click.option("--model", default="mini_xception_cbam", show_default=True, help="Registered model name.")
@click.option("--model-kw", multiple=True, metavar="KEY=VALUE", help="Extra model argument (JSON value), repeatable.")
@click.option("--split", type=click.Choice(["usage", "paper", "grouped"]), default="usage", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--weight-decay", type=float, default=0.0, show_default=True)
@click.option("--lr-step", type=click.IntRange(min=1), default=30, show_default=True, help="Epochs between lr decays.")
@click.option("--lr-gamma", type=float, default=0.1, show_default=True, help="lr factor at each decay.")
@click.option("--class-weighted/--no-class-weighted", default=True, show_default=True)
@click.option("--augment/--no-augment", default=True, show_default=True)
@click.option("--channels-last/--no-channels-last", default=True, show_default=True)
@click.option("--amp", type=click.Choice(["bf16", "none"]), default="bf16", show_default=True, help="CPU autocast dtype.")
@click.option("--compile", "compile_", is_flag=True, help="Run the model under torch.compile.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch intra-op threads (default: torch's).")
@click.option("--max-steps-per-epoch", type=click.IntRange(min=1), default=None, help="Cap steps per epoch (smoke runs).")
@click.option("--resume", is_flag=True, help="Continue OUT/checkpoint.pt (same options; --epochs may grow).")
@click.option("--progress/--no-progress", default=True, show_default=True)
def train(data: str, out: str, model: str, model_kw: tuple[str, ...], split: str, seed: int, epochs: int,
          batch_size: int, lr: float, weight_decay: float, lr_step: int, lr_gamma: float, class_weighted: bool,
          augment: bool, channels_last: bool, amp: str, compile_: bool, threads: int | None,
          max_steps_per_epoch: int | None, resume: bool, progress: bool) -> None:
    """Train a model on a FER2013-format CSV (defaults: the paper's recipe); see docs/training.md."""
    from fer_models.train import TrainConfig, main as train_main, parse_model_kw

    try:
        config = TrainConfig(
            data=data, out=out, model=model, model_kwargs=parse_model_kw(model_kw), split=split, seed=seed,
            epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, lr_step=lr_step,
            lr_gamma=lr_gamma, class_weighted=class_weighted, augment=augment, channels_last=channels_last,
            amp=amp, compile=compile_, threads=threads, max_steps_per_epoch=max_steps_per_epoch, progress=progress,
        )
        train_main(config, resume=resume)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--checkpoint", required=True, type=click.Path(exists=True, dir_okay=False), help="best.pt or checkpoint.pt of a run.")
@click.option("--data", required=True, type=click.Path(exists=True, dir_okay=False), help="FER2013-format CSV to score (any file).")
@click.option("--split", type=click.Choice(["usage", "paper", "grouped"]), default=None, help="Default: the checkpoint's split.")
@click.option("--subset", type=click.Choice(["train", "val", "test", "all"]), default="test", show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Report folder (default: next to the checkpoint).")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--amp", type=click.Choice(["bf16", "none"]), default=None, help="Default: as trained.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch intra-op threads.")
def evaluate(checkpoint: str, data: str, split: str | None, subset: str, out: str | None, batch_size: int,
             amp: str | None, threads: int | None) -> None:
    """Accuracy, per-class / macro precision, recall, F1 and a confusion matrix of a checkpoint on a CSV."""
    import torch

    from fer_models.metrics import format_report
    from fer_models.train import evaluate_checkpoint

    if threads is not None:
        torch.set_num_threads(threads)
    try:
        report = evaluate_checkpoint(checkpoint, data, split, subset, out, batch_size, amp)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(format_report(report, f"{report['model']} on {Path(data).name} [{report['split']}/{subset}]"))
    click.echo(f"report: {report['paths']['json']}  confusion matrix: {report['paths']['png']}")


if __name__ == "__main__":
    main()
