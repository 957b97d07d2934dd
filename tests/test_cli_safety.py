"""Both command lines speak the same way (#28): -h, --version, exit 2 with one line naming the file and
the problem, 130 on Ctrl-C, and every input byte-identical after a refused command.

:func:`test_every_command_has_cases` enumerates the click commands of ``maskgen`` and ``fer-models``, so
a new command fails it until it is given its cases below: (a) a corrupt checkpoint where the command
takes one, (b) an output that cannot be written, (c) an output that names an input. Every case must
be refused before any real work (no training, no landmark detection), so the file runs in seconds.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import USAGE_CYCLE, fer_csv_text, random_faces
from maskgen.cli import main as maskgen_cli
from maskgen.cli_errors import BAD_INPUT, BadInput, SafeCommand, SafeGroup, describe

torch = pytest.importorskip("torch")

from fer_models.cli import main as fer_cli  # noqa: E402

CLIS: dict[str, click.Group] = {"maskgen": maskgen_cli, "fer-models": fer_cli}
COMMANDS = [(prog, name) for prog, group in CLIS.items() for name in sorted(group.commands)]
#: option names (click parameter names) that take a checkpoint file
CHECKPOINT_PARAMS = {"checkpoint", "init"}


# ------------------------------------------------------------------------------------------------ inputs


class Inputs:
    """Small input files of every kind the commands take, in one folder; ``snapshot`` hashes them all."""

    def __init__(self, root: Path) -> None:
        self.root = root
        n = 10
        labels = [i % 7 for i in range(n)]
        usages = [USAGE_CYCLE[i % len(USAGE_CYCLE)] for i in range(n)]
        self.fer = root / "fer2013.csv"
        self.fer.write_text(fer_csv_text(random_faces(n), labels, usages))
        self.smfer = root / "smfer2013.csv"
        self.smfer.write_text(fer_csv_text(random_faces(n, seed=1), labels, usages))
        self.photos = root / "photos"
        self.photos.mkdir()
        from maskgen.io import write_image

        self.photo = write_image(self.photos / "face.png", np.full((64, 64, 3), 128, np.uint8))
        self.blocker = root / "a-file"  # a regular file: nothing can be written under it, even by root
        self.blocker.write_text("not a folder\n")
        self.checkpoint = root / "good.pt"
        from fer_models.weights import verified_path

        self.checkpoint.write_bytes(Path(verified_path("fer2013")).read_bytes())

    def snapshot(self) -> dict[str, str]:
        return {str(p.relative_to(self.root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(self.root.rglob("*")) if p.is_file()}


def corrupt_checkpoints(root: Path, good: Path) -> dict[str, Path]:
    """Checkpoints that are not usable, each its own way."""
    data = good.read_bytes()
    state = torch.load(good, map_location="cpu", weights_only=True)
    out = {"truncated": data[: len(data) // 2], "empty": b"", "random": np.random.default_rng(0).bytes(4096)}
    root.mkdir(exist_ok=True)
    paths = {}
    for kind, blob in out.items():
        paths[kind] = root / f"{kind}.pt"
        paths[kind].write_bytes(blob)
    no_config = {k: v for k, v in state.items() if k != "config"}
    paths["no-config"] = root / "no-config.pt"
    torch.save(no_config, paths["no-config"])
    paths["class-mismatch"] = root / "class-mismatch.pt"
    torch.save({**state, "class_names": ["a", "b"]}, paths["class-mismatch"])
    return paths


# ------------------------------------------------------------------------------------------------ cases
# Each command: base arguments (everything but the option a case varies), the output option, the
# checkpoint option and an input an output may name. None where the command has no such thing.


class Case:
    def __init__(self, base: Callable[[Inputs], list[str]], output: str | None = None,
                 output_value: Callable[[Inputs, str], str] | None = None, checkpoint: str | None = None,
                 names_input: Callable[[Inputs], str] | None = None) -> None:
        self.base, self.output, self.checkpoint = base, output, checkpoint
        self.output_value = output_value or (lambda inp, name: name)
        self.names_input = names_input


CASES: dict[tuple[str, str], Case] = {
    ("maskgen", "build-smfer"): Case(lambda i: [str(i.fer), "--backend", "sequential", "--quiet"], "-o",
                                     names_input=lambda i: str(i.fer)),
    ("maskgen", "list-masks"): Case(lambda i: []),
    ("maskgen", "demo"): Case(lambda i: ["-n", "4", "-j", "1"], "-o"),
    ("maskgen", "build-mfer"): Case(lambda i: [str(i.fer), str(i.smfer)], "-o",
                                    names_input=lambda i: str(i.smfer)),
    ("maskgen", "audit"): Case(lambda i: [str(i.fer)], "--json", names_input=lambda i: str(i.fer)),
    ("maskgen", "preview"): Case(lambda i: [str(i.fer), "-n", "2"], "-o", names_input=lambda i: str(i.fer)),
    ("maskgen", "mask-image"): Case(lambda i: [str(i.photo)], "-o", names_input=lambda i: str(i.photos)),
    ("fer-models", "summary"): Case(lambda i: ["--models", "mini_xception", "--no-timing"], "--write"),
    ("fer-models", "train"): Case(lambda i: ["--data", str(i.fer), "--epochs", "1", "--max-steps-per-epoch", "1",
                                             "--no-progress", "--model", "mini_xception_cbam"], "--out",
                                  checkpoint="--init", names_input=lambda i: str(i.fer)),
    ("fer-models", "evaluate"): Case(lambda i: ["--data", str(i.fer)], "--out", checkpoint="--checkpoint",
                                     names_input=lambda i: str(i.fer)),
    ("fer-models", "benchmark"): Case(lambda i: ["--fer", str(i.fer), "--out", "bench", "--budget", "smoke",
                                                 "--limit", "0"], "--write",
                                      names_input=lambda i: str(i.fer)),
    ("fer-models", "export"): Case(lambda i: ["--check-rows", "4", "--check", str(i.fer)], "-o",
                                   checkpoint="--checkpoint", names_input=lambda i: str(i.checkpoint)),
    ("fer-models", "predict"): Case(lambda i: [str(i.fer), "--no-progress"], "-o", checkpoint="--checkpoint",
                                    names_input=lambda i: str(i.fer)),
    ("fer-models", "explain"): Case(lambda i: ["--data", str(i.fer), "--masked", str(i.smfer), "-n", "2"], "-o",
                                    checkpoint="--checkpoint", names_input=lambda i: str(i.smfer)),
    ("fer-models", "weights"): Case(lambda i: []),
}
#: a path for the output option, for commands that need another output to be valid
DEFAULT_OUTPUT = {("fer-models", "summary"): None, ("maskgen", "audit"): "audit.json",
                  ("fer-models", "train"): "run", ("fer-models", "evaluate"): "eval",
                  ("fer-models", "benchmark"): "tables.md", ("fer-models", "export"): "m.onnx",
                  ("fer-models", "predict"): "pred.csv", ("fer-models", "explain"): "explain.png",
                  ("maskgen", "build-smfer"): "smfer.csv", ("maskgen", "demo"): "demo",
                  ("maskgen", "build-mfer"): "mfer.csv", ("maskgen", "preview"): "preview.png",
                  ("maskgen", "mask-image"): "masked"}


@pytest.fixture
def inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Inputs:
    monkeypatch.chdir(tmp_path)
    return Inputs(tmp_path)


def invoke(prog: str, args: list[str]) -> click.testing.Result:
    return CliRunner().invoke(CLIS[prog], args)


def assert_refused(result: click.testing.Result, prog: str, *named: str | Path) -> str:
    """Exit 2, no traceback, one error line that names every one of ``named``; returns that line."""
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert result.exit_code == 2, (result.exit_code, text, result.exception)
    assert "Traceback" not in text
    errors = [line for line in result.stderr.splitlines() if line.startswith((f"{prog}: error:", "Error:"))]
    assert len(errors) == 1, result.stderr
    for name in named:
        assert str(name) in errors[0], (name, errors[0])
    return errors[0]


def checkpoint_args(case: Case, inp: Inputs, checkpoint: Path | None) -> list[str]:
    return [] if case.checkpoint is None else [case.checkpoint, str(checkpoint or inp.checkpoint)]


def output_args(key: tuple[str, str], case: Case, value: str | None) -> list[str]:
    return [] if case.output is None or value is None else [case.output, value]


# ------------------------------------------------------------------------------------------------ the walk


def test_every_command_has_cases() -> None:
    """A new command of either command line fails here until it has its cases in CASES."""
    assert set(COMMANDS) == set(CASES), "give every command its cases in CASES (and DEFAULT_OUTPUT)"
    for prog, name in COMMANDS:
        params = {p.name for p in CLIS[prog].commands[name].params}
        case = CASES[prog, name]
        takes = params & CHECKPOINT_PARAMS
        assert bool(takes) == (case.checkpoint is not None), (prog, name, takes)
        assert isinstance(CLIS[prog], SafeGroup)
        assert isinstance(CLIS[prog].commands[name], SafeCommand), f"{prog} {name}: add it with @main.command()"


@pytest.mark.parametrize("prog, name", COMMANDS)
def test_help_and_unknown_option(prog: str, name: str) -> None:
    assert invoke(prog, [name, "-h"]).exit_code == 0
    result = invoke(prog, [name, "--no-such-option"])
    assert result.exit_code == 2 and "Traceback" not in result.output


@pytest.mark.parametrize("prog", CLIS)
def test_version_and_help(prog: str) -> None:
    result = invoke(prog, ["--version"])
    assert result.exit_code == 0 and result.output.startswith(f"{prog}, version ")
    assert invoke(prog, ["-h"]).exit_code == 0


CHECKPOINT_COMMANDS = [key for key in CASES if CASES[key].checkpoint is not None]
CORRUPT = ["truncated", "empty", "random", "no-config", "class-mismatch"]


@pytest.mark.parametrize("kind", CORRUPT)
@pytest.mark.parametrize("prog, name", CHECKPOINT_COMMANDS)
def test_corrupt_checkpoint_is_one_line(inputs: Inputs, prog: str, name: str, kind: str) -> None:
    case = CASES[prog, name]
    bad = corrupt_checkpoints(inputs.root / "ckpt", inputs.checkpoint)[kind]
    before = inputs.snapshot()
    args = [name, *case.base(inputs), *checkpoint_args(case, inputs, bad),
            *output_args((prog, name), case, DEFAULT_OUTPUT.get((prog, name)))]
    assert_refused(invoke(prog, args), prog, bad.name)
    assert inputs.snapshot() == before


OUTPUT_COMMANDS = [key for key in CASES if CASES[key].output is not None]


@pytest.mark.parametrize("prog, name", OUTPUT_COMMANDS)
def test_unwritable_output_is_one_line(inputs: Inputs, prog: str, name: str) -> None:
    """An output under a regular file cannot be written by anyone (root included): refused, naming it."""
    case = CASES[prog, name]
    target = inputs.blocker / Path(DEFAULT_OUTPUT[prog, name] or "out.md").name
    before = inputs.snapshot()
    args = [name, *case.base(inputs), *checkpoint_args(case, inputs, None), case.output, str(target)]
    assert_refused(invoke(prog, args), prog, inputs.blocker)
    assert inputs.snapshot() == before


@pytest.mark.parametrize("prog, name", [key for key in OUTPUT_COMMANDS if CASES[key].names_input is not None])
def test_output_naming_an_input_is_refused(inputs: Inputs, prog: str, name: str) -> None:
    case = CASES[prog, name]
    victim = case.names_input(inputs)
    before = inputs.snapshot()
    args = [name, *case.base(inputs), *checkpoint_args(case, inputs, None), case.output, victim]
    result = invoke(prog, args)
    assert result.exit_code == 2 and "Traceback" not in result.output, (result.output, result.exception)
    assert Path(victim).name in result.stderr
    assert inputs.snapshot() == before


# ------------------------------------------------------------------------------------------------ the convention


def test_bad_input_family_is_closed() -> None:
    """ValueError and OSError families are bad input; KeyError and the other bugs are not."""
    assert issubclass(BadInput, ValueError)
    for exc in (ValueError("x"), FileNotFoundError(2, "No such file", "f.csv"), BadInput("x"),
                FloatingPointError("training loss became nan in epoch 3")):
        assert isinstance(exc, BAD_INPUT)
    for exc in (KeyError("x"), TypeError("x"), IndexError("x"), AttributeError("x"), RuntimeError("x")):
        assert not isinstance(exc, BAD_INPUT)
    assert describe(OSError(28, "No space left on device", "out/x.csv")) == "out/x.csv: No space left on device"
    assert describe(IsADirectoryError(21, "Is a directory", "out")) == "out: is a folder, not a file"
    assert describe(ValueError("a\nb")) == "a b"


@pytest.fixture
def failing_command() -> Callable[[BaseException], list[str]]:
    """A throwaway command on each command line's group that raises the given exception."""
    added: list[tuple[click.Group, str]] = []

    def make(exc: BaseException) -> list[str]:
        for group in CLIS.values():
            @group.command("raise-for-test")
            def _raise() -> None:
                raise exc
            added.append((group, "raise-for-test"))
        return ["raise-for-test"]

    yield make
    for group, name in added:
        group.commands.pop(name, None)


@pytest.mark.parametrize("prog", CLIS)
def test_keyboard_interrupt_exits_130(prog: str, failing_command) -> None:
    result = invoke(prog, failing_command(KeyboardInterrupt()))
    assert result.exit_code == 130 and "interrupted" in result.stderr and "Aborted" not in result.output


@pytest.mark.parametrize("prog", CLIS)
def test_a_bug_stays_a_traceback(prog: str, failing_command) -> None:
    result = invoke(prog, failing_command(KeyError("a bug")))
    assert result.exit_code == 1 and isinstance(result.exception, KeyError)


@pytest.mark.parametrize("prog", CLIS)
@pytest.mark.parametrize("exc, line", [
    (OSError(28, "No space left on device", "out/x.csv"), "error: out/x.csv: No space left on device"),
    (PermissionError(13, "Permission denied", "ro/x.csv"), "error: ro/x.csv: Permission denied"),
    (OSError(30, "Read-only file system", "ro/x.csv"), "error: ro/x.csv: Read-only file system"),
    (BadInput("in.csv, line 3: bad"), "error: in.csv, line 3: bad"),
])
def test_write_errors_are_one_line(prog: str, failing_command, exc: BaseException, line: str) -> None:
    result = invoke(prog, failing_command(exc))
    assert result.exit_code == 2 and result.stderr == f"{prog}: {line}\n"


def test_console_scripts_exit_codes(tmp_path: Path) -> None:
    """The installed entry points (not CliRunner): exit 2 and one line on stderr, nothing on stdout."""
    import subprocess
    import sys

    missing = tmp_path / "missing.csv"
    for module, args in (("maskgen", ["audit", str(missing)]), ("fer_models", ["weights", "--nope"])):
        proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------------------ weak cases of #28


@pytest.mark.parametrize("kw, message", [
    ("foo=1", "takes no argument 'foo'"),
    ("num_classes=3", "num_classes is set by the data"),
    ("input_size=100000", "input_size must be an int from 5 to 256"),
    ("widths=[100000,100000]", "parameters (at most"),
])
def test_train_model_kw_refused_before_any_work(inputs: Inputs, kw: str, message: str) -> None:
    """An unknown --model-kw, one clashing with num_classes, or one that would exhaust memory: one line."""
    result = invoke("fer-models", ["train", "--data", str(inputs.fer), "--out", "run", "--model-kw", kw])
    line = assert_refused(result, "fer-models", "--model-kw")
    assert message in line
    assert not Path("run").exists()


def test_train_on_one_class_is_refused(inputs: Inputs) -> None:
    one = inputs.root / "one-class.csv"
    one.write_text(fer_csv_text(random_faces(10), [3] * 10, [USAGE_CYCLE[i % 5] for i in range(10)]))
    result = invoke("fer-models", ["train", "--data", str(one), "--out", "run", "--no-progress"])
    assert "every training row has class 'happy'" in assert_refused(result, "fer-models", one)
    assert not Path("run").exists()


def test_preview_refuses_an_unsupported_picture_type_and_a_huge_sheet(inputs: Inputs) -> None:
    line = assert_refused(invoke("maskgen", ["preview", str(inputs.fer), "-o", "sheet.txt"]), "maskgen", "sheet.txt")
    assert ".png" in line and ".txt" in line
    result = invoke("maskgen", ["preview", str(inputs.fer), "--scale", "100000"])
    assert result.exit_code == 2 and "--scale" in result.stderr and "Traceback" not in result.output
    many = inputs.root / "thirty.csv"
    many.write_text(fer_csv_text(random_faces(30), [i % 7 for i in range(30)]))
    line = assert_refused(invoke("maskgen", ["preview", str(many), "--scale", "32", "-n", "64"]), "maskgen")
    assert "pixels" in line
    assert not Path("sheet.txt").exists() and not Path("preview.png").exists()


def test_predict_on_an_empty_folder_is_refused(inputs: Inputs) -> None:
    empty = inputs.root / "empty"
    empty.mkdir()
    result = invoke("fer-models", ["predict", str(empty), "--weights", "fer2013", "--no-progress"])
    assert "no picture" in assert_refused(result, "fer-models", empty)


def test_export_int8_on_too_few_rows_leaves_nothing(inputs: Inputs) -> None:
    """--int8 calibrated on 3 rows is refused before the export (its minimum is 16): no float file either."""
    three = inputs.root / "three.csv"
    three.write_text(fer_csv_text(random_faces(3), [0, 1, 2], ["Training"] * 3))
    result = invoke("fer-models", ["export", "--weights", "fer2013", "-o", "m.onnx", "--int8", str(three)])
    assert "at least 16" in assert_refused(result, "fer-models", three)
    assert not list(inputs.root.glob("m*.onnx"))


def test_build_mfer_given_a_folder_and_a_csv_says_so(inputs: Inputs) -> None:
    result = invoke("maskgen", ["build-mfer", str(inputs.photos), str(inputs.smfer), "-o", "out"])
    line = assert_refused(result, "maskgen", inputs.photos)
    assert "no such file" not in line
    result = invoke("maskgen", ["build-mfer", str(inputs.fer), str(inputs.photos), "-o", "out.csv"])
    line = assert_refused(result, "maskgen", inputs.photos)
    assert "no such file" not in line


def test_benchmark_names_its_own_options_and_refuses_fer2013_as_mfer(inputs: Inputs) -> None:
    result = invoke("fer-models", ["benchmark", "--fer", str(inputs.fer), "--out", "b"])
    assert result.exit_code == 2 and "give --smfer --mfer" in result.stderr and "--smfer2013" not in result.stderr
    result = invoke("fer-models", ["benchmark", "--fer", str(inputs.fer), "--smfer", str(inputs.smfer),
                                   "--mfer", str(inputs.fer), "--out", "b"])
    assert "not an MFER2013 file" in assert_refused(result, "fer-models", inputs.fer)
    assert not Path("b").exists()


@pytest.mark.parametrize("extra, clash", [
    (["--write", "t/tables.json"], "--records defaults to --write with .json"),  # the records would become markdown
    (["--write", "t/tables.md", "--records", "t/tables.png"], "the plot is --write with .png"),
])
def test_benchmark_refuses_output_files_that_are_one_file(inputs: Inputs, extra: list[str], clash: str) -> None:
    result = invoke("fer-models", ["benchmark", "--fer", str(inputs.fer), "--out", "b", "--budget", "smoke",
                                   "--tables", "3", "--limit", "0", *extra])
    assert clash in assert_refused(result, "fer-models")
    assert not Path("b").exists() and not Path("t").exists()


def test_benchmark_default_tables_file_never_replaces_an_input(inputs: Inputs) -> None:
    """--fer OUT/paper_tables.md: the default --write is that input (it was overwritten with markdown)."""
    out = inputs.root / "bench"
    out.mkdir()
    fer = out / "paper_tables.md"
    fer.write_bytes(inputs.fer.read_bytes())
    before = inputs.snapshot()
    result = invoke("fer-models", ["benchmark", "--fer", str(fer), "--out", str(out), "--budget", "smoke",
                                   "--tables", "3", "--limit", "0"])
    assert "it would overwrite the input" in assert_refused(result, "fer-models", fer)
    assert inputs.snapshot() == before


@pytest.mark.parametrize("content, message", [
    ('{"format": "fer-models benchmark records 1", "runs": {"fer2013-mini_xception-usage-s0": 1}}',
     "is not a finished run's record"),
    ('{"format": "fer-models benchmark records 1", "runs": {"fer2013-mini_xception-usage-s0": {"budget": "cpu"}}}',
     "is not a finished run's record"),
    ("[1, 2]", "not a benchmark records file"),
])
@pytest.mark.parametrize("option", ["--beside", "--records"])
def test_benchmark_checks_records_files_before_any_work(inputs: Inputs, content: str, message: str,
                                                        option: str) -> None:
    """A damaged records file was an AttributeError / TypeError / KeyError, after the grid had run."""
    records = inputs.root / "other.json"
    records.write_text(content)
    result = invoke("fer-models", ["benchmark", "--fer", str(inputs.fer), "--out", "b", "--budget", "smoke",
                                   "--tables", "3", option, str(records)])
    line = assert_refused(result, "fer-models", option, records)
    assert message in line
    assert not Path("b").exists()


def test_train_never_replaces_its_init_checkpoint(inputs: Inputs) -> None:
    """--init OUT/best.pt: the run's best.pt would replace the checkpoint it starts from."""
    run = inputs.root / "finetune"
    run.mkdir()
    init = run / "best.pt"
    init.write_bytes(inputs.checkpoint.read_bytes())
    before = inputs.snapshot()
    result = invoke("fer-models", ["train", "--data", str(inputs.fer), "--out", str(run), "--init", str(init),
                                   "--epochs", "1", "--no-progress"])
    assert "it would overwrite the input" in assert_refused(result, "fer-models", init)
    assert inputs.snapshot() == before
    # a folder input: the run folder inside the --data image folder is refused too
    result = invoke("fer-models", ["train", "--data", str(inputs.photos), "--out", str(inputs.photos / "run"),
                                   "--epochs", "1", "--no-progress"])
    assert "is inside the --data folder" in assert_refused(result, "fer-models", inputs.photos)
    assert inputs.snapshot() == before and not (inputs.photos / "run").exists()


@pytest.mark.parametrize("args, line", [
    (["--mask-prob", "0.9"], "--mask-prob needs the unmasked twins: give --twin FER2013.csv too"),
    (["--refill", "0.5", "--distill", "fer2013"], "--refill, --distill need the unmasked twins"),
    (["--lr-gamma", "nan"], "--lr-gamma must be a positive number, got nan"),
    (["--label-mode", "soft"], "--label-mode is for FER+ labels: give --labels ferplus=VOTES.csv too"),
    (["--twin", "{fer}", "--mixup", "0.2"], "(--mixup must be 0): the twin, the region"),
    (["--twin", "{fer}", "--distill", "nope.pt"], "--distill: 'nope.pt' is neither shipped weights"),
    (["--init", "nope.pt"], "--init: 'nope.pt' is neither shipped weights"),
])
def test_train_refusals_name_the_options(inputs: Inputs, args: list[str], line: str) -> None:
    """The checks live in TrainConfig (field names); the command line says them in its own option names."""
    args = [a.format(fer=inputs.fer) for a in args]
    result = invoke("fer-models", ["train", "--data", str(inputs.fer), "--out", "r", "--no-progress", *args])
    assert line in assert_refused(result, "fer-models")
    assert not Path("r").exists()


@pytest.mark.parametrize("command", [
    lambda i, o: ["predict", str(i.fer), "--checkpoint", str(i.checkpoint), "-o", o],
    lambda i, o: ["export", "--checkpoint", str(i.checkpoint), "-o", o],
    lambda i, o: ["explain", "--checkpoint", str(i.checkpoint), "--data", str(i.fer), "--masked", str(i.smfer),
                  "-o", o],
])
def test_an_output_never_replaces_the_model_it_uses(inputs: Inputs, command) -> None:
    """predict -o CK.pt replaced the checkpoint it was scoring with (exit 0)."""
    before = inputs.snapshot()
    result = invoke("fer-models", command(inputs, str(inputs.checkpoint)))
    assert "it would overwrite the input" in assert_refused(result, "fer-models", inputs.checkpoint)
    assert inputs.snapshot() == before


@pytest.mark.parametrize("target", ["smfer2013.meta.csv", "smfer2013.manifest.json"])
def test_explain_never_replaces_the_masked_sets_sidecar(inputs: Inputs, target: str) -> None:
    sidecar = inputs.root / target
    sidecar.write_text("row_id\n")
    before = inputs.snapshot()
    result = invoke("fer-models", ["explain", "--checkpoint", str(inputs.checkpoint), "--data", str(inputs.fer),
                                   "--masked", str(inputs.smfer), "--subset", "all", "-o", str(sidecar)])
    assert_refused(result, "fer-models", sidecar)
    assert inputs.snapshot() == before


@pytest.mark.parametrize("companion", ["smfer2013.meta.csv", "smfer2013.manifest.json"])
@pytest.mark.parametrize("command", [
    lambda i, o: ["predict", str(i.smfer), "--weights", "fer2013", "-o", o],
    lambda i, o: ["export", "--weights", "fer2013", "--check", str(i.smfer), "-o", o],
])
def test_an_output_never_replaces_an_input_csvs_sidecar(inputs: Inputs, companion: str, command) -> None:
    """predict sm.csv -o sm.meta.csv replaced the input's sidecar (exit 0)."""
    target = inputs.root / companion
    target.write_text("kept\n")
    before = inputs.snapshot()
    result = invoke("fer-models", command(inputs, str(target)))
    assert "it would overwrite the input" in assert_refused(result, "fer-models", target)
    assert inputs.snapshot() == before


def test_predict_output_never_replaces_the_annotate_record(inputs: Inputs) -> None:
    record = Path("ann") / ".fer-models-annotated.json"
    result = invoke("fer-models", ["predict", str(inputs.photos), "--weights", "fer2013", "--annotate", "ann",
                                   "-o", str(record)])
    assert "record of the pictures it wrote" in assert_refused(result, "fer-models", record)
    assert not Path("ann").exists()


def test_evaluate_report_never_replaces_its_data(inputs: Inputs) -> None:
    """--data DIR/metrics.txt --out DIR: the report's metrics.txt was the data file."""
    folder = inputs.root / "ev"
    folder.mkdir()
    data = folder / "metrics.txt"
    data.write_bytes(inputs.fer.read_bytes())
    before = inputs.snapshot()
    result = invoke("fer-models", ["evaluate", "--checkpoint", str(inputs.checkpoint), "--data", str(data),
                                   "--subset", "all", "--out", str(folder)])
    assert "it would overwrite the input" in assert_refused(result, "fer-models", data)
    assert inputs.snapshot() == before


def test_benchmark_build_keeps_its_data_folder_to_itself(inputs: Inputs) -> None:
    result = invoke("fer-models", ["benchmark", "--fer", str(inputs.fer), "--build", "--out", "bb", "--budget",
                                   "smoke", "--tables", "2", "--limit", "0", "--write", "bb/data/smfer2013-seed0.csv"])
    assert "where --build writes SMFER2013" in assert_refused(result, "fer-models")
    assert not Path("bb/data").exists()


@pytest.mark.parametrize("make, message", [
    (lambda root: (root / "t.csv").write_text("a,b\n"), "markdown file (.md)"),
    (lambda root: (root / "t.md").symlink_to(root / "fer2013.csv"), "is a symlink"),
    (lambda root: (root / "t.md").write_bytes(b"\xff\xfe"), "not UTF-8 text"),
])
def test_summary_write_is_checked_before_the_measurements(inputs: Inputs, make, message: str) -> None:
    make(inputs.root)
    target = next(p for p in inputs.root.iterdir() if p.name.startswith("t."))
    before = inputs.snapshot()
    result = invoke("fer-models", ["summary", "--write", str(target)])
    assert message in assert_refused(result, "fer-models", target)
    assert inputs.snapshot() == before and (target.is_symlink() or target.is_file())


def test_a_file_that_is_no_checkpoint_is_one_line(inputs: Inputs) -> None:
    """A CSV as --init made torch's legacy unpickler raise IndexError (a traceback)."""
    result = invoke("fer-models", ["train", "--data", str(inputs.fer), "--out", "r", "--init", str(inputs.fer),
                                   "--epochs", "1", "--no-progress"])
    assert "cannot be read as a checkpoint" in assert_refused(result, "fer-models", inputs.fer)


def test_binary_landmarks_file_is_named(inputs: Inputs) -> None:
    binary = inputs.root / "landmarks.csv"
    binary.write_bytes(b"row,x0\n" + bytes(range(128, 256)))
    result = invoke("maskgen", ["build-smfer", str(inputs.fer), "-o", "out.csv", "--landmarks", str(binary),
                                "--backend", "sequential", "--quiet"])
    assert "not UTF-8" in assert_refused(result, "maskgen", binary, "line 2")
    assert not Path("out.csv").exists()


def test_unreachable_dask_scheduler_fails_fast_with_one_line(inputs: Inputs, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("distributed")
    import maskgen.parallel

    monkeypatch.setattr(maskgen.parallel, "SCHEDULER_TIMEOUT_S", 0.5)
    for address in ("tcp://127.0.0.1:1", "not-an-address"):
        result = invoke("maskgen", ["build-smfer", str(inputs.fer), "-o", "out.csv", "--backend", "dask",
                                    "--scheduler", address, "--quiet"])
        assert "cannot connect to a dask scheduler" in assert_refused(result, "maskgen", f"--scheduler {address}")
    assert not Path("out.csv").exists()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes into a read-only (chmod 555) folder; the a-file/out variant covers root")
@pytest.mark.parametrize("prog, name", OUTPUT_COMMANDS)
def test_read_only_output_folder_is_one_line(inputs: Inputs, prog: str, name: str) -> None:
    case = CASES[prog, name]
    locked = inputs.root / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        target = locked / Path(DEFAULT_OUTPUT[prog, name] or "out.md").name
        before = inputs.snapshot()
        args = [name, *case.base(inputs), *checkpoint_args(case, inputs, None), case.output, str(target)]
        assert_refused(invoke(prog, args), prog, locked)
        assert inputs.snapshot() == before
    finally:
        locked.chmod(0o755)


def test_full_disk_during_the_write_is_one_line(inputs: Inputs, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC when the output is renamed into place: one line naming the path; no file, input intact."""
    import errno

    import maskgen.io

    def full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))

    monkeypatch.setattr(maskgen.io.os, "replace", full)
    before = inputs.snapshot()
    result = invoke("maskgen", ["audit", str(inputs.fer), "--json", "audit.json"])
    assert "No space left on device" in assert_refused(result, "maskgen", "audit.json")
    assert inputs.snapshot() == before and not list(inputs.root.glob("*audit.json*"))


def test_a_command_invoked_on_its_own_speaks_the_same_way(inputs: Inputs) -> None:
    """Tests and embedders invoke a command without its group: same exit 2 and one line."""
    from fer_models.cli import train

    result = CliRunner().invoke(train, ["--data", str(inputs.fer), "--out", str(inputs.blocker / "run")])
    assert result.exit_code == 2 and result.stderr.startswith("fer-models: error: --out ")


# ------------------------------------------------------------------------------------------------ loose ends of #28

#: anchors of a plain oval mask picture (200 x 160), shorthand {landmark: (x, y)}
OVAL_ANCHORS = {"jaw_2": (12.0, 50.0), "jaw_14": (188.0, 50.0), "chin": (100.0, 150.0),
                "nose_bridge_1": (100.0, 8.0), "mouth_3": (100.0, 95.0)}


def write_spec(spec: Path, name: str, image: str = "oval.png", colour: tuple[int, int, int] = (60, 60, 200)) -> Path:
    """A custom mask spec (JSON) at ``spec`` naming mask ``name`` and its RGBA picture ``image`` (relative to it)."""
    import json

    import cv2

    rgba = np.zeros((160, 200, 4), np.uint8)
    cv2.ellipse(rgba, (100, 80), (96, 76), 0, 0, 360, (*colour, 255), -1, cv2.LINE_AA)
    picture = spec.parent / image
    picture.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(picture), rgba)
    spec.write_text(json.dumps({"name": name, "image": image,
                                "anchors": {k: {"xy": list(v), "landmark": k} for k, v in OVAL_ANCHORS.items()}}))
    return spec


@pytest.fixture
def clean_registry():
    """Masks registered by a test are removed afterwards (the registry is per process)."""
    from maskgen.masks import list_masks, unregister_mask

    before = set(list_masks())
    yield
    for name in set(list_masks()) - before:
        unregister_mask(name)


@pytest.fixture
def command_doing() -> Callable[[Callable[[], None]], list[str]]:
    """A throwaway command on each command line's group that runs the given function."""
    added: list[click.Group] = []

    def make(func: Callable[[], None]) -> list[str]:
        for group in CLIS.values():
            group.command("do-for-test")(lambda: func())
            added.append(group)
        return ["do-for-test"]

    yield make
    for group in added:
        group.commands.pop("do-for-test", None)


def test_the_convention_has_one_home(inputs: Inputs) -> None:
    """maskgen's no-op _friendly_errors is gone; a maskgen command invoked without its group (as tests and
    embedders do) still ends with exit 2 and one line."""
    import maskgen.cli
    from maskgen.cli import preview_cmd

    assert not hasattr(maskgen.cli, "_friendly_errors")
    before = inputs.snapshot()
    result = CliRunner().invoke(preview_cmd, [str(inputs.fer), "-o", str(inputs.blocker / "p.png")])
    assert result.exit_code == 2 and "Traceback" not in result.output, (result.output, result.exception)
    assert result.stderr.startswith("maskgen: error: -o ") and len(result.stderr.splitlines()) == 1
    assert inputs.snapshot() == before


@pytest.mark.parametrize("prog", CLIS)
def test_warnings_print_as_one_line(prog: str, inputs: Inputs, command_doing) -> None:
    """A warnings.warn while a command runs (ImageConversionWarning here) prints as 'PROG: warning: MESSAGE', not
    Python's 'file:line: Category: message'; cli_errors.warn prints the same way; the handler is put back after."""
    import cv2
    import warnings

    from maskgen.cli_errors import warn
    from maskgen.io import read_image

    rgba = inputs.root / f"alpha-{prog}.png"
    cv2.imwrite(str(rgba), np.full((8, 8, 4), 200, np.uint8))
    shown = warnings.showwarning

    def run() -> None:
        read_image(rgba)
        warn("told\nin one line")

    result = invoke(prog, command_doing(run))
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.stderr.splitlines() == [f"{prog}: warning: {rgba}: alpha channel dropped (transparent pixels keep "
                                          "their colour)", f"{prog}: warning: told in one line"]
    assert "ImageConversionWarning" not in result.output and warnings.showwarning is shown


def test_partial_failure_has_its_own_documented_exit_status(command_doing) -> None:
    """Some items failed, the rest done: exit 3 (not 1, a traceback's), said in the batch commands' --help."""
    from maskgen.cli_errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_PARTIAL, exit_partial

    assert EXIT_PARTIAL == 3 and EXIT_PARTIAL not in (0, 1, EXIT_BAD_INPUT, EXIT_INTERRUPTED)
    for prog in CLIS:
        result = invoke(prog, command_doing(lambda: exit_partial("2 of 5 pictures failed")))
        assert result.exit_code == EXIT_PARTIAL and result.stderr == f"{prog}: 2 of 5 pictures failed\n"
    for prog, name in (("maskgen", "mask-image"), ("fer-models", "predict")):
        text = " ".join(invoke(prog, [name, "-h"]).output.split())
        assert f"{EXIT_PARTIAL} some items failed" in text and "docs/safety.md" in text
    docs = " ".join((Path(__file__).parents[1] / "docs" / "safety.md").read_text().split())
    assert f"| {EXIT_PARTIAL} | some items failed" in docs


def test_preview_output_never_replaces_a_mask_spec_picture(inputs: Inputs, clean_registry) -> None:
    """#28: `preview -o mymask.png` with --mask-spec naming mymask.png overwrote the user's mask picture."""
    spec = write_spec(inputs.root / "spec.json", "user_oval", image="mymask.png")
    before = inputs.snapshot()
    for target in ("mymask.png", "./mymask.png", str(inputs.root / "mymask.png")):
        result = invoke("maskgen", ["preview", str(inputs.fer), "-n", "2", "--mask-spec", str(spec), "-o", target])
        assert "it would overwrite the input" in assert_refused(result, "maskgen", Path(target), spec)
    assert inputs.snapshot() == before


@pytest.mark.parametrize("command", ["build-smfer", "build-smfer-folder", "mask-image"])
def test_build_and_mask_image_never_replace_a_mask_spec_picture(inputs: Inputs, command: str, clean_registry) -> None:
    """The picture a --mask-spec names is an input of build-smfer and mask-image, as the spec is."""
    spec = write_spec(inputs.root / "spec.json", "user_oval", image="out/mymask.png")
    before = inputs.snapshot()
    quick = ["--backend", "sequential", "--quiet"]
    args = {"build-smfer": ["build-smfer", str(inputs.fer), "-o", "s.csv", "--metadata", "out/mymask.png", *quick],
            "build-smfer-folder": ["build-smfer", str(inputs.photos), "-o", "out", *quick],
            "mask-image": ["mask-image", str(inputs.photo), "-o", "out"]}[command]
    result = invoke("maskgen", [*args, "--mask-spec", str(spec)])
    assert_refused(result, "maskgen", "mymask.png")
    assert inputs.snapshot() == before and not Path("s.csv").exists()


def test_demo_never_replaces_a_file_it_did_not_write(inputs: Inputs) -> None:
    """`maskgen demo -o DIR` wrote DIR/fer2013.csv over a user's real FER2013 file; now only its own files are
    replaced (the folder's .maskgen-demo.json records them), checked before any work."""
    from maskgen.demo import DEMO_RECORD, check_demo_outputs, demo_files
    from maskgen.io import OutputRecord

    folder = inputs.root / "data"
    folder.mkdir()
    (folder / "fer2013.csv").write_bytes(inputs.fer.read_bytes())
    before = inputs.snapshot()
    result = invoke("maskgen", ["demo", "-o", str(folder), "-n", "4", "-j", "1"])
    assert "was not written by maskgen demo" in assert_refused(result, "maskgen", folder / "fer2013.csv")
    assert inputs.snapshot() == before and not (folder / DEMO_RECORD).exists()

    # files an earlier demo wrote (recorded with their bytes) may be replaced; edited since, they may not
    ours = inputs.root / "demo"
    record = OutputRecord(ours, DEMO_RECORD, "maskgen demo")
    for path in demo_files(ours).values():
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"{path.name}\n")
        record.add(path)
    record.save()
    check_demo_outputs(ours)
    demo_files(ours)["preview"].write_text("edited\n")
    with pytest.raises(ValueError, match="preview.png exists and was not written by maskgen demo"):
        check_demo_outputs(ours)
    link = inputs.root / "linked"
    link.mkdir()
    (link / "preview.png").symlink_to(inputs.fer)
    with pytest.raises(ValueError, match="is a symlink"):
        check_demo_outputs(link)


@pytest.mark.parametrize("target, victim", [
    ("smfer2013.meta.csv", "smfer2013.meta.csv"),          # SMFER's sidecar
    ("smfer2013.manifest.json", "smfer2013.manifest.json"),  # SMFER's manifest
    ("smfer2013.csv.gz", "smfer2013.manifest.json"),       # the output's manifest would be SMFER's
    ("custom.meta.csv", "custom.meta.csv"),                # the sidecar SMFER's manifest names
    ("fer2013.manifest.json", "fer2013.manifest.json"),    # FER's own manifest
])
def test_build_mfer_output_never_replaces_an_input_sidecar_or_manifest(inputs: Inputs, target: str,
                                                                       victim: str) -> None:
    import json

    (inputs.root / "smfer2013.meta.csv").write_text("row_id,status\n0,masked\n")
    (inputs.root / "custom.meta.csv").write_text("row_id,status\n0,masked\n")
    (inputs.root / "smfer2013.manifest.json").write_text(json.dumps({"tool": "maskgen build-smfer",
                                                                     "metadata": "custom.meta.csv"}))
    (inputs.root / "fer2013.manifest.json").write_text("{}\n")
    before = inputs.snapshot()
    result = invoke("maskgen", ["build-mfer", str(inputs.fer), str(inputs.smfer), "-o", target])
    assert "it would overwrite the input" in assert_refused(result, "maskgen", victim)
    assert inputs.snapshot() == before


@pytest.mark.parametrize("command", ["build-smfer", "preview", "mask-image"])
def test_two_specs_of_one_name_are_refused_naming_both(inputs: Inputs, command: str, clean_registry) -> None:
    """#28: pipeline.prepare_worker silently kept the first of two custom specs with the same name."""
    first = write_spec(inputs.root / "a" / "spec.json", "twin", colour=(200, 0, 0))
    second = write_spec(inputs.root / "b" / "spec.json", "twin", colour=(0, 200, 0))
    before = inputs.snapshot()
    args = {"build-smfer": [str(inputs.fer), "-o", "s.csv", "--backend", "sequential", "--quiet"],
            "preview": [str(inputs.fer), "-n", "2", "-o", "p.png"],
            "mask-image": [str(inputs.photo), "-o", "out"]}[command]
    result = invoke("maskgen", [command, *args, "--mask-spec", str(first), "--mask-spec", str(second)])
    assert "both name a mask 'twin'" in assert_refused(result, "maskgen", first, second)
    assert inputs.snapshot() == before and not any(Path(p).exists() for p in ("s.csv", "p.png", "out"))


def test_a_spec_named_like_an_api_mask_is_refused(inputs: Inputs, clean_registry) -> None:
    """A spec named like a different mask registered through the Python API was silently ignored; the same spec
    file registered and given again is one mask; a later build's spec replaces an earlier build's of that name."""
    from maskgen.masks import MaskSpecError, get_mask, load_mask_spec, register_mask
    from maskgen.pipeline import BuildConfig, resolve_masks

    api = load_mask_spec(write_spec(inputs.root / "api" / "spec.json", "shared", colour=(200, 0, 0)), register=False)
    register_mask(api)
    spec = write_spec(inputs.root / "spec.json", "shared", colour=(0, 200, 0))
    with pytest.raises(MaskSpecError, match="registered through the Python API") as err:
        resolve_masks(BuildConfig(mask_specs=(str(spec),)))
    assert str(spec) in str(err.value) and get_mask("shared") is api
    result = invoke("maskgen", ["preview", str(inputs.fer), "-n", "2", "-o", "p.png", "--mask-spec", str(spec)])
    assert "Python API" in assert_refused(result, "maskgen", spec)

    same = write_spec(inputs.root / "same" / "spec.json", "again")
    load_mask_spec(same)  # registered, then given to a build: the same mask, accepted
    assert "again" in resolve_masks(BuildConfig(mask_specs=(str(same),))).masks

    older = write_spec(inputs.root / "old" / "spec.json", "per_build", colour=(200, 0, 200))
    newer = write_spec(inputs.root / "new" / "spec.json", "per_build", colour=(0, 200, 0))
    resolve_masks(BuildConfig(mask_specs=(str(older),)))
    resolve_masks(BuildConfig(mask_specs=(str(newer),)))  # a long-lived process: the newer build's file wins
    assert get_mask("per_build").image[80, 100, :3].tolist() == [0, 200, 0]
