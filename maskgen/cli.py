"""``maskgen`` command line: thin wrappers that parse options, call the library, print a summary."""
from __future__ import annotations

import json
from pathlib import Path

import click

from maskgen import __version__
from maskgen.cli_errors import CONTEXT_SETTINGS, PARTIAL_EPILOG, SafeGroup
from maskgen.splits import SPLIT_KINDS


def _parse_fits(text: str | None) -> dict[str, float] | None:
    """``"correct=0.8,nose_exposed=0.2"`` -> {"correct": 0.8, "nose_exposed": 0.2}, validated before any
    work by :func:`maskgen.fits.check_fit_probs` (unknown names, negative / non-finite values, all zero)."""
    from maskgen.fits import check_fit_probs

    if not text:
        return None
    fits: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep:
            raise click.BadParameter(f"expected NAME=PROBABILITY, got {part!r}", param_hint="--fit")
        if name.strip() in fits:
            raise click.BadParameter(f"fit {name.strip()!r} given twice", param_hint="--fit")
        try:
            fits[name.strip()] = float(value)
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a number", param_hint="--fit") from None
    try:
        return check_fit_probs(fits)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--fit") from None


def _split_names(text: str | None, option: str = "--masks") -> tuple[str, ...] | None:
    """``--masks a,b`` -> ("a", "b"); None when not given. An empty entry (``--masks ','``, ``a,,b``) is refused:
    no names would silently mean every mask."""
    if text is None:
        return None
    names = tuple(n.strip() for n in text.split(","))
    if not all(names):
        raise click.BadParameter(f"an empty mask name in {text!r} (two commas in a row?); give mask names, or leave "
                                 "the option out for all masks (see `maskgen list-masks`)", param_hint=option)
    return names


#: every --seed: numpy's generators take no negative seed (a build would leave every row unmasked)
SEED = click.IntRange(min=0)
#: every -j/--jobs: 0 = all cores; the upper limit (MAX_JOBS_PER_CPU per CPU) is checked by maskgen.parallel.check_jobs
JOBS = click.IntRange(min=0)

#: help of every command's --styles
STYLES_HELP = "Comma-separated mask styles to sample from [default: classic]; see `maskgen list-masks`."


def _parse_styles(text: str | None) -> tuple[str, ...] | None:
    """--styles NAMES, checked before any work (unknown names: the message lists the valid ones)."""
    from maskgen.styles import check_styles

    if text is None:
        return None
    try:
        return check_styles(tuple(n.strip() for n in text.split(",")))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--styles") from None


def _spec_pictures(mask_specs: tuple[str, ...]) -> list[tuple[str, Path]]:
    """(role, path) of the RGBA picture each --mask-spec file names: an input like the spec itself, which no
    output may replace (``preview -o mymask.png``). A spec that cannot be read names none here; loading it
    later says what is wrong with it."""
    from maskgen.paths import check_input_file

    found = []
    for spec in map(Path, mask_specs):
        check_input_file(spec, "--mask-spec")  # a FIFO would block the read forever
        try:
            text = spec.read_text(encoding="utf-8")
            if spec.suffix.lower() == ".toml":
                import tomllib  # Python >= 3.11, as maskgen.masks.load_mask_spec

                data = tomllib.loads(text)
            else:
                data = json.loads(text)
        except (OSError, ValueError, ImportError):
            continue
        image = data.get("image") if isinstance(data, dict) else None
        if isinstance(image, str):
            found.append((f"picture of --mask-spec {spec}:", spec.parent / image))
    return found


@click.group(name="maskgen", cls=SafeGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="maskgen")
def main() -> None:
    """Draw synthetic face masks on FER2013-format data and build SMFER2013 / MFER2013.

    \b
    Quick start:
      maskgen demo                       # small built-in example, with a preview picture
      maskgen build-smfer fer2013.csv    # -> smfer2013.csv (+ .meta.csv, .manifest.json)
    """


@main.command("build-smfer")
@click.argument("input_csv", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Output CSV [default: smfer2013.csv next to the input]; for a folder input, the output folder.")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Base seed; row i draws from numpy default_rng([seed, i]).")
@click.option("-j", "--jobs", type=JOBS, default=0, show_default=True,
              help="Worker processes (0 = all cores; at most 4 per CPU).")
@click.option("--masks", "mask_names", metavar="NAMES",
              help="Comma-separated mask types to sample from [default: all built-in]; see `maskgen list-masks`.")
@click.option("--mask-spec", "mask_specs", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Custom mask spec file (JSON/TOML + RGBA PNG) to register; may be repeated.")
@click.option("--fit", "fit_text", metavar="FIT=P,...",
              help="Fit probabilities, e.g. correct=0.8,nose_exposed=0.1,chin_only=0.1 [default: correct=1].")
@click.option("--styles", "styles_text", metavar="NAMES", help=STYLES_HELP)
@click.option("--on-implausible", type=click.Choice(["mask", "keep"]), default="mask", show_default=True,
              help="Rows whose best landmarks fail the plausibility check: draw the mask there anyway "
                   "(flagged in the sidecar) or keep the row unmasked (flagged).")
@click.option("--metadata", "metadata_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Per-row sidecar CSV [default: <output>.meta.csv].")
@click.option("--chunk-size", type=click.IntRange(min=1), default=None,
              help="Rows (or pictures) per parallel task [default: 256 rows; 64 pictures].")
@click.option("--backend", type=click.Choice(["loky", "threading", "sequential", "dask"]), default="loky",
              show_default=True, help="Where the work runs: local processes (loky), threads, this process, or a "
                                      "dask.distributed cluster (pip install 'maskgen[dask]').")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="--backend dask: address of a running scheduler (tcp://host:8786); default: a local cluster "
                   "of --jobs workers.")
@click.option("--landmarks", "landmarks_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV of supplied landmarks (key column 'row' for a CSV input, 'path' for a folder; 68 x,y "
                   "pairs or a face box) used instead of detection where it has an entry; see docs/masks.md.")
@click.option("--photo", "photo_mode", is_flag=True,
              help="Folder input: mask every face found in each picture (default: each picture is one aligned "
                   "face crop, the FER2013 chain).")
@click.option("--list", "list_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Folder input: a CSV with a 'path' column (relative to INPUT) and optional 'label', "
                   "'split' columns, instead of every picture under INPUT.")
@click.option("--resume", is_flag=True, help="Folder input: continue an interrupted build in the output folder.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def build_smfer_cmd(input_csv: Path, output: Path | None, seed: int, jobs: int, mask_names: str | None,
                    mask_specs: tuple[str, ...], fit_text: str | None, styles_text: str | None, on_implausible: str,
                    metadata_path: Path | None, chunk_size: int, backend: str, scheduler: str | None,
                    landmarks_file: Path | None, photo_mode: bool,
                    list_file: Path | None, resume: bool, quiet: bool) -> None:
    """Mask every face of INPUT (a FER2013-format .csv / .csv.gz, or a folder of pictures).

    CSV: the output has the same rows, order, labels and Usage as the input, byte-identical for
    any --jobs and for repeated runs with the same --seed. Folder (split/class/*.png as the
    image-folder copies of FER2013, or any tree; or --list): -o OUT_DIR gets the same relative
    paths, plus smfer.meta.csv and smfer.manifest.json; --resume continues an interrupted build.
    Bad input is reported with its line number before any work starts, and no output file is
    left behind on failure or Ctrl-C.
    """
    from maskgen.cli_errors import check_writable
    from maskgen.parallel import DEFAULT_CHUNK_SIZE, check_jobs
    from maskgen.pipeline import BuildConfig
    from maskgen.smfer import build_smfer

    check_jobs(jobs, backend, scheduler)  # too many workers for this machine, before any work
    if output is not None:
        check_writable(output, "-o", folder=input_csv.is_dir())
    if metadata_path is not None:
        check_writable(metadata_path, "--metadata")
    _check_spec_pictures(mask_specs, _smfer_outputs(input_csv, output, metadata_path))
    config = BuildConfig(seed=seed, masks=_split_names(mask_names), fit_probs=_parse_fits(fit_text),
                         mask_specs=tuple(str(Path(s).resolve()) for s in mask_specs),
                         on_implausible=on_implausible, styles=_parse_styles(styles_text),
                         landmarks=str(landmarks_file.resolve()) if landmarks_file else None)
    if input_csv.is_dir():
        from maskgen.folders import DEFAULT_FOLDER_CHUNK, build_folder

        if output is None:
            raise ValueError("a folder input needs -o OUT_DIR (the masked copy of the folder)")
        if metadata_path is not None:
            raise ValueError("--metadata is for CSV inputs; a folder build writes OUT_DIR/smfer.meta.csv")
        folder = build_folder(input_csv, output, config=config, mode="photo" if photo_mode else "crop",
                              list_file=list_file, jobs=jobs, chunk_size=chunk_size or DEFAULT_FOLDER_CHUNK,
                              backend=backend, scheduler=scheduler, resume=resume, progress=not quiet)
        click.echo(f"wrote {folder.images} pictures to {folder.output} in {folder.timings_s['total']:.1f} s"
                   + (f" ({folder.resumed} already done)" if folder.resumed else ""))
        click.echo(f"  status:    {json.dumps(folder.status_counts)}")
        click.echo(f"  masks:     {json.dumps(folder.mask_counts)}")
        click.echo(f"  QA passed: {folder.qa_passed}/{folder.faces} faces")
        click.echo(f"  sidecar:   {folder.metadata}")
        _warn_none_masked(folder.status_counts, "pictures", folder.metadata)
        return
    if photo_mode or list_file or resume:
        raise ValueError("--photo, --list and --resume are for folder inputs")
    report = build_smfer(input_csv, output, config=config, jobs=jobs, chunk_size=chunk_size or DEFAULT_CHUNK_SIZE,
                         backend=backend,
                         scheduler=scheduler, metadata_path=metadata_path, progress=not quiet)
    _print_report(report)


def _smfer_outputs(input_path: Path, output: Path | None, metadata_path: Path | None) -> list:
    """The outputs of build-smfer (:class:`maskgen.paths.Output`): the folder for a folder input; else the CSV,
    its sidecar and manifest (maskgen.smfer checks them against its other inputs)."""
    from maskgen.paths import Output
    from maskgen.smfer import default_output, sidecar_paths

    if input_path.is_dir():
        return [Output("-o", output, folder=True)] if output is not None else []
    out = output if output is not None else default_output(input_path)
    meta, manifest = sidecar_paths(out)
    return [Output("-o", out), Output("--metadata" if metadata_path else "sidecar", metadata_path or meta),
            Output("manifest", manifest)]


def _check_spec_pictures(mask_specs: tuple[str, ...], outputs: list) -> None:
    """Before any work: no output replaces or holds the picture a --mask-spec names (the spec files themselves
    are checked by the library with the other inputs)."""
    from maskgen.paths import check_outputs

    pictures = _spec_pictures(mask_specs)
    if pictures and outputs:
        check_outputs(pictures, outputs)


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
        from maskgen.cli_errors import warn

        warn(f"{errors} rows could not be masked and were kept unchanged; their error text is in {report.metadata}")
    _warn_none_masked(report.status_counts, "rows", report.metadata)


def _warn_none_masked(status_counts: dict[str, int], what: str, metadata: str) -> None:
    """A build that masked nothing (every row / picture unreadable, without a face, or kept) still writes its
    outputs and exits 0 (the sidecar says why for each), but says so: its output is a copy of its input."""
    from maskgen.cli_errors import warn

    total = sum(status_counts.values())
    if total and not any(s.startswith("masked") for s, n in status_counts.items() if n):
        warn(f"none of the {total} {what} was masked (status {json.dumps(status_counts)}): the output is a copy of "
             f"the input; see {metadata} for why")


@main.command("list-masks")
def list_masks_cmd() -> None:
    """List the registered mask types, then the extra artwork and the mask styles (--styles)."""
    from maskgen.masks import EXTRA_MASKS, list_masks
    from maskgen.styles import STYLES

    for name in list_masks():
        click.echo(name)
    click.echo("\nextra artwork (drawn when --masks names it or a style adds it):")
    for name in EXTRA_MASKS:
        click.echo(f"  {name}")
    click.echo("\nstyles (--styles NAMES; default: classic):")
    for style in STYLES.values():
        click.echo(f"  {style.name:<17} {style.description}")


@main.command("demo")
@click.option("-o", "--outdir", type=click.Path(file_okay=False, path_type=Path), default=Path("maskgen-demo"),
              show_default=True, help="Folder for the demo files.")
@click.option("-n", "--rows", type=click.IntRange(1, 100), default=64, show_default=True,
              help="Faces to use (at most 100: maskgen.demo.LFW_FACES).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("-j", "--jobs", type=JOBS, default=0, show_default=True,
              help="Worker processes (0 = all cores; at most 4 per CPU).")
def demo_cmd(outdir: Path, rows: int, seed: int, jobs: int) -> None:
    """Run the whole pipeline on a small built-in example.

    Makes a FER2013-format CSV from the real face crops that scikit-image ships
    (skimage.data.lfw_subset, upscaled to 48x48), masks it with build-smfer, and writes a
    before/after contact sheet. Files of those names already in the folder are replaced only if
    an earlier demo wrote them.
    """
    from maskgen.cli_errors import check_writable
    from maskgen.demo import check_demo_outputs, run_demo
    from maskgen.parallel import check_jobs

    check_jobs(jobs)
    check_demo_outputs(outdir)
    check_writable(outdir, "-o", folder=True)
    paths = run_demo(outdir, rows=rows, seed=seed, jobs=jobs)
    for label, path in paths.items():
        click.echo(f"{label:>9}: {path}")


@main.command("build-mfer")
@click.argument("fer_csv", metavar="FER", type=click.Path(path_type=Path))
@click.argument("smfer_csv", metavar="SMFER", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Output CSV [default: mfer2013.csv next to FER]; for folders, the output folder.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed for class under/oversampling.")
@click.option("--balance", type=click.Choice(["pairs", "none"]), default="pairs", show_default=True,
              help="pairs: each used face once unmasked and once masked (equal masked/unmasked counts per "
                   "class); none: all unmasked rows plus every masked row.")
@click.option("--classes", type=click.Choice(["none", "undersample", "oversample"]), default="none",
              show_default=True, help="Balance classes within each Usage by sampling sources.")
def build_mfer_cmd(fer_csv: Path, smfer_csv: Path, output: Path | None, seed: int, balance: str,
                   classes: str) -> None:
    """Mix FER and its masked copy SMFER into MFER2013 (adds columns source, masked).

    Usage follows the source row, so a face and its masked copy stay on the same side of the
    standard split. See docs/splits.md. FER and SMFER may also be a picture folder and its
    build-smfer output folder: -o OUT_DIR then gets every masked picture twice (original and
    NAME__masked), plus mfer.index.csv (path, source, masked, split, label).
    """
    from maskgen.cli_errors import check_writable
    from maskgen.mfer import build_mfer, format_counts

    if output is not None:
        check_writable(output, "-o", folder=fer_csv.is_dir())
    if fer_csv.is_dir() != smfer_csv.is_dir() and fer_csv.exists() and smfer_csv.exists():
        folder, file = (fer_csv, smfer_csv) if fer_csv.is_dir() else (smfer_csv, fer_csv)
        raise ValueError(f"{folder} is a folder but {file} is a file: give two FER2013-format CSVs, or a picture "
                         "folder and its build-smfer output folder")
    if fer_csv.is_dir():
        from maskgen.folders import build_mfer_folder

        if output is None:
            raise ValueError("a folder input needs -o OUT_DIR")
        mix = build_mfer_folder(fer_csv, smfer_csv, output)
        click.echo(f"wrote {mix.pictures} pictures from {mix.sources} sources to {mix.output} "
                   f"({mix.skipped_unmasked} pictures the build left unmasked are not used); index: {mix.index}")
        return
    report = build_mfer(fer_csv, smfer_csv, output, seed=seed, balance=balance, classes=classes)
    click.echo(f"wrote {report.output} ({report.rows} rows from {report.sources} sources; "
               f"{report.smfer_unchanged_rows} SMFER rows were unmasked) in {report.timings_s['total']:.1f} s")
    click.echo(format_counts(report.counts))
    click.echo(f"manifest: {report.manifest}")


@main.command("audit")
@click.argument("data_csv", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--split", "splits", type=click.Choice(SPLIT_KINDS), multiple=True,
              help="Split(s) to audit; may be repeated [default: usage, paper, grouped].")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the paper / grouped split.")
@click.option("--near-threshold", type=float, default=2.0, show_default=True,
              help="Near duplicate: mean absolute pixel difference (grey levels) at most this.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the full result as JSON here ('-' for stdout instead of the table).")
def audit_cmd(data_csv: Path, splits: tuple[str, ...], seed: int, near_threshold: float,
              json_path: Path | None) -> None:
    """Count classes x masked x split, twins (same source) and exact / near duplicate images
    shared between train, val and test of DATA_CSV. See docs/splits.md."""
    from maskgen.audit import audit, format_audit
    from maskgen.dataset import read_fer_csv
    from maskgen.io import atomic_write

    if json_path is not None and str(json_path) != "-":
        from maskgen.cli_errors import check_output_paths
        from maskgen.paths import Output

        from maskgen.smfer import input_companions

        # nor the input's sidecar or manifest (audit sm.csv --json sm.meta.csv overwrote it)
        check_output_paths([("input", data_csv), *input_companions(data_csv)], [Output("--json", json_path)])
    table = read_fer_csv(data_csv)
    kinds = splits or (("usage",) if table.usage is not None else ()) + ("paper", "grouped")
    result = audit(table, kinds, seed, near_threshold=near_threshold)
    text = json.dumps(result, indent=2)
    if json_path is not None and str(json_path) == "-":
        click.echo(text)
        return
    click.echo(format_audit(result))
    if json_path is not None:
        with atomic_write(json_path) as tmp:
            tmp.write_text(text + "\n", encoding="utf-8")
        click.echo(f"\njson: {json_path}")


#: the largest contact sheet ``maskgen preview`` draws, in pixels (about 300 MB of RGB)
PREVIEW_MAX_PIXELS = 100_000_000


@main.command("preview")
@click.argument("input_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-n", "--rows", type=click.IntRange(min=1), default=64, show_default=True, help="Random rows to show.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("preview.png"),
              show_default=True, help="Contact sheet to write (.png, or another picture type by its suffix).")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed for choosing rows and for masking them (same as build-smfer --seed).")
@click.option("--landmarks", "draw_landmarks", is_flag=True, help="Draw the 68 landmarks on the originals.")
@click.option("--masks", "mask_names", metavar="NAMES", help="Comma-separated mask types [default: all].")
@click.option("--mask-spec", "mask_specs", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Custom mask spec file (JSON/TOML + RGBA PNG) to register; may be repeated.")
@click.option("--fit", "fit_text", metavar="FIT=P,...", help="Fit probabilities [default: correct=1].")
@click.option("--styles", "styles_text", metavar="NAMES", help=STYLES_HELP)
@click.option("--cols", type=click.IntRange(min=1), default=8, show_default=True, help="Pairs per row of the sheet.")
@click.option("--scale", type=click.IntRange(1, 32), default=4, show_default=True, help="Upscaling factor of the faces.")
def preview_cmd(input_csv: Path, rows: int, output: Path, seed: int, draw_landmarks: bool, mask_names: str | None,
                mask_specs: tuple[str, ...], fit_text: str | None, styles_text: str | None, cols: int,
                scale: int) -> None:
    """Contact sheet of random rows of INPUT_CSV: original beside masked, labelled with mask and fit."""
    from maskgen.dataset import read_fer_csv
    from maskgen.pipeline import BuildConfig
    from maskgen.io import write_image
    from maskgen.cli_errors import BadInput, check_output_paths
    from maskgen.io import IMAGE_SUFFIXES
    from maskgen.paths import Output
    from maskgen.preview import preview_table

    if output.suffix.lower() not in IMAGE_SUFFIXES:
        raise BadInput(f"-o {output}: cannot write a picture of type {output.suffix or '(no suffix)'!r}; "
                       f"supported: {', '.join(IMAGE_SUFFIXES)}")
    # -o is neither the input, a --mask-spec nor the picture a spec names (preview -o mymask.png)
    check_output_paths([("input", input_csv), *(("--mask-spec", s) for s in mask_specs), *_spec_pictures(mask_specs)],
                       [Output("-o", output)])
    config = BuildConfig(seed=seed, masks=_split_names(mask_names), fit_probs=_parse_fits(fit_text),
                         mask_specs=tuple(str(Path(s).resolve()) for s in mask_specs),
                         styles=_parse_styles(styles_text))
    table = read_fer_csv(input_csv)
    faces = min(rows, len(table))  # the sheet holds two (side * scale)^2 pictures per face
    if faces * 2 * (table.images.shape[1] * scale) ** 2 > PREVIEW_MAX_PIXELS:
        raise BadInput(f"-n {rows} faces at --scale {scale} make a sheet over {PREVIEW_MAX_PIXELS:,} pixels; "
                       "use a smaller -n or --scale")
    sheet, results = preview_table(table.images, rows, seed=seed, config=config, draw_landmarks=draw_landmarks,
                                   cols=cols, scale=scale)
    write_image(output, sheet)
    failed = sum(1 for r in results if r.qa is not None and not r.qa.passed)
    unmasked = sum(1 for r in results if r.params is None)
    click.echo(f"wrote {output} ({len(results)} faces, {failed} failed QA"
               + (f", {unmasked} not masked: see their labels" if unmasked else "") + ")")


@main.command("mask-image", epilog=PARTIAL_EPILOG)
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--outdir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the masked photos (same relative names as the inputs).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--masks", "mask_names", metavar="NAMES", help="Comma-separated mask types [default: all].")
@click.option("--mask-spec", "mask_specs", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Custom mask spec file (JSON/TOML + RGBA PNG) to register; may be repeated.")
@click.option("--fit", "fit_text", metavar="FIT=P,...", help="Fit probabilities [default: correct=1].")
@click.option("--styles", "styles_text", metavar="NAMES", help=STYLES_HELP)
@click.option("--gray-masks", is_flag=True, help="Gray-toned masks even on colour photos.")
def mask_image_cmd(paths: tuple[Path, ...], outdir: Path, seed: int, mask_names: str | None,
                   mask_specs: tuple[str, ...], fit_text: str | None, styles_text: str | None,
                   gray_masks: bool) -> None:
    """Mask every detected face in photos (files or folders of photos); report photos with no face."""
    from maskgen.cli_errors import check_output_paths, exit_partial
    from maskgen.paths import Output
    from maskgen.photo import mask_files
    from maskgen.pipeline import BuildConfig, prepare_worker

    # the photos are checked against -o by mask_files; the mask specs and their pictures here
    check_output_paths([*(("--mask-spec", s) for s in mask_specs), *_spec_pictures(mask_specs)],
                       [Output("-o", outdir, folder=True)])
    prepare_worker(BuildConfig(mask_specs=tuple(str(Path(s).resolve()) for s in mask_specs)))  # as every command
    report = mask_files(paths, outdir, seed=seed, masks=_split_names(mask_names), fit_probs=_parse_fits(fit_text),
                        color=not gray_masks, styles=_parse_styles(styles_text))
    click.echo(f"masked {sum(report.faces.values())} faces in {len(report.written)} photos -> {outdir}")
    for path in report.no_face:
        click.echo(f"  no face found: {path}")
    for path, reason in report.failed:
        click.echo(f"  failed ({report.status.get(str(path), 'error')}): {path}: {reason}")
    if report.failed_pictures:  # per-item failures: the others were processed; the exit status says so
        exit_partial(f"{report.failed_pictures} of {len(report.status)} pictures failed")
    if not report.written:
        exit_partial(f"no face found in any of {len(report.status)} pictures")


if __name__ == "__main__":
    main()
