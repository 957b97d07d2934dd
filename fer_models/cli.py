"""``fer-models`` command line: a plain click group, one function per command.

Commands import torch lazily, so ``fer-models --help`` stays fast.
"""

from __future__ import annotations

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
def summary(
    pattern: str | None,
    threads: int | None,
    repeats: int,
    throughput_repeats: int,
    warmup: int,
    channels_last: bool,
    no_timing: bool,
    write_path: Path | None,
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
            args += ["--models", f"'{pattern}'"]
        args += [f"--threads {torch.get_num_threads()}", f"--repeats {repeats}"]
        args += [f"--throughput-repeats {throughput_repeats}", f"--warmup {warmup}"]
        args += ["--channels-last"] * channels_last + ["--no-timing"] * no_timing
        args += [f"--write {write_path}"]
        section = cost.render_section(
            rows,
            " ".join(args),
            latency_repeats=repeats,
            throughput_repeats=throughput_repeats,
            warmup=warmup,
            channels_last=channels_last,
        )
        cost.write_section(write_path, section)
        click.echo(f"wrote section '{cost.SECTION_HEADING}' of {write_path}", err=True)


if __name__ == "__main__":
    main()
