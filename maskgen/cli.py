"""``maskgen`` command line: thin wrappers that parse options, call the library, print a summary."""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

from maskgen import __version__
from maskgen.dataset import FerFormatError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def _friendly_errors(func):
    """Turn expected failures into one clear line on stderr and a non-zero exit status."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (FerFormatError, FileNotFoundError, ValueError, KeyError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            click.echo(f"maskgen: error: {message}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except KeyboardInterrupt:
            click.echo("maskgen: interrupted; no output file was written", err=True)
            sys.exit(EXIT_INTERRUPTED)

    return wrapper


def _parse_fits(text: str | None) -> dict[str, float] | None:
    """``"correct=0.8,nose_exposed=0.2"`` -> {"correct": 0.8, "nose_exposed": 0.2}."""
    if not text:
        return None
    fits: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep:
            raise click.BadParameter(f"expected NAME=PROBABILITY, got {part!r}", param_hint="--fit")
        try:
            fits[name.strip()] = float(value)
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a number", param_hint="--fit") from None
    return fits


def _split_names(text: str | None) -> tuple[str, ...] | None:
    return tuple(n.strip() for n in text.split(",") if n.strip()) if text else None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="maskgen")
def main() -> None:
    """Draw synthetic face masks on FER2013-format data and build SMFER2013 / MFER2013.

    \b
    Quick start:
      maskgen demo                       # small built-in example, with a preview picture
      maskgen build-smfer fer2013.csv    # -> smfer2013.csv (+ .meta.csv, .manifest.json)
    """


@main.command("build-smfer")
@click.argument("input_csv", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Output CSV [default: smfer2013.csv next to the input].")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Base seed; row i draws from numpy default_rng([seed, i]).")
@click.option("-j", "--jobs", type=int, default=0, show_default=True, help="Worker processes (0 = all cores).")
@click.option("--masks", "mask_names", metavar="NAMES",
              help="Comma-separated mask types to sample from [default: all built-in]; see `maskgen list-masks`.")
@click.option("--mask-spec", "mask_specs", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Custom mask spec file (JSON/TOML + RGBA PNG) to register; may be repeated.")
@click.option("--fit", "fit_text", metavar="FIT=P,...",
              help="Fit probabilities, e.g. correct=0.8,nose_exposed=0.1,chin_only=0.1 [default: correct=1].")
@click.option("--on-implausible", type=click.Choice(["mask", "keep"]), default="mask", show_default=True,
              help="Rows whose best landmarks fail the plausibility check: draw the mask there anyway "
                   "(flagged in the sidecar) or keep the row unmasked (flagged).")
@click.option("--metadata", "metadata_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Per-row sidecar CSV [default: <output>.meta.csv].")
@click.option("--chunk-size", type=int, default=256, show_default=True, help="Rows per parallel task.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_friendly_errors
def build_smfer_cmd(input_csv: Path, output: Path | None, seed: int, jobs: int, mask_names: str | None,
                    mask_specs: tuple[str, ...], fit_text: str | None, on_implausible: str,
                    metadata_path: Path | None, chunk_size: int, quiet: bool) -> None:
    """Mask every face of INPUT_CSV (FER2013 format, .csv or .csv.gz) -> SMFER2013.

    Same rows, order, labels and Usage as the input; the output is byte-identical for any
    --jobs and for repeated runs with the same --seed. Bad input is reported with its line
    number before any work starts, and no output file is left behind on failure or Ctrl-C.
    """
    from maskgen.pipeline import BuildConfig
    from maskgen.smfer import build_smfer

    config = BuildConfig(seed=seed, masks=_split_names(mask_names), fit_probs=_parse_fits(fit_text),
                         mask_specs=tuple(str(Path(s).resolve()) for s in mask_specs),
                         on_implausible=on_implausible)
    report = build_smfer(input_csv, output, config=config, jobs=jobs, chunk_size=chunk_size,
                         metadata_path=metadata_path, progress=not quiet)
    _print_report(report)


def _print_report(report) -> None:
    rate = report.rows / max(report.timings_s.get("mask", 0.0) + report.timings_s.get("read", 0.0), 1e-9)
    click.echo(f"wrote {report.output} ({report.rows} rows) in {report.timings_s['total']:.1f} s "
               f"({rate:.0f} rows/s)")
    click.echo(f"  status:    {json.dumps(report.status_counts)}")
    click.echo(f"  masks:     {json.dumps(report.mask_counts)}")
    click.echo(f"  landmarks: {json.dumps(report.landmark_sources)}")
    click.echo(f"  QA passed: {report.qa_passed}/{report.rows}")
    click.echo(f"  sidecar:   {report.metadata}")
    click.echo(f"  manifest:  {report.manifest}")
    errors = report.status_counts.get("error", 0)
    if errors:
        click.echo(f"maskgen: warning: {errors} rows could not be masked and were kept unchanged; "
                   f"their error text is in {report.metadata}", err=True)


@main.command("list-masks")
def list_masks_cmd() -> None:
    """List the registered mask types."""
    from maskgen.masks import list_masks

    for name in list_masks():
        click.echo(name)


@main.command("demo")
@click.option("-o", "--outdir", type=click.Path(file_okay=False, path_type=Path), default=Path("maskgen-demo"),
              show_default=True, help="Folder for the demo files.")
@click.option("-n", "--rows", type=int, default=64, show_default=True, help="Faces to use (at most 100).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-j", "--jobs", type=int, default=0, show_default=True, help="Worker processes (0 = all cores).")
@_friendly_errors
def demo_cmd(outdir: Path, rows: int, seed: int, jobs: int) -> None:
    """Run the whole pipeline on a small built-in example.

    Makes a FER2013-format CSV from the real face crops that scikit-image ships
    (skimage.data.lfw_subset, upscaled to 48x48), masks it with build-smfer, and writes a
    before/after contact sheet.
    """
    from maskgen.demo import run_demo

    paths = run_demo(outdir, rows=rows, seed=seed, jobs=jobs)
    for label, path in paths.items():
        click.echo(f"{label:>9}: {path}")
