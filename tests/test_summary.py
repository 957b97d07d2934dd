"""Tests for fer_models.summary and the `fer-models summary` command."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from click.testing import CliRunner  # noqa: E402
from torch import nn  # noqa: E402

from fer_models.cli import main  # noqa: E402
from fer_models.summary import (  # noqa: E402
    SECTION_HEADING,
    ModelCost,
    count_flops,
    count_params,
    format_table,
    measure_model,
    replace_section,
    time_forward,
    write_section,
)


def test_count_params_trainable_only() -> None:
    model = nn.Sequential(nn.Linear(10, 5), nn.BatchNorm1d(5))
    assert count_params(model) == 10 * 5 + 5 + 2 * 5  # BN running stats are buffers
    model[0].weight.requires_grad_(False)
    assert count_params(model) == 5 + 2 * 5
    assert count_params(model, trainable_only=False) == 10 * 5 + 5 + 2 * 5


def test_count_flops_two_per_multiply_add() -> None:
    assert count_flops(nn.Linear(10, 5), input_shape=(10,)) == 2 * 10 * 5
    conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
    assert count_flops(conv, input_shape=(1, 8, 8)) == 2 * (8 * 8) * (3 * 3) * 4


def test_time_forward_counts_repeats(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a fake clock that only the forward pass advances (call k takes k ms): no dependence on timing."""
    import fer_models.summary as summary

    clock = [0.0]

    class Slow(nn.Module):
        calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            Slow.calls += 1
            clock[0] += Slow.calls / 1000
            return x

    class FakeTime:
        @staticmethod
        def perf_counter() -> float:
            return clock[0]

    monkeypatch.setattr(summary, "time", FakeTime)
    times = time_forward(Slow(), torch.zeros(1), repeats=4, warmup=1)
    assert Slow.calls == 5
    # warm-up (call 1) untimed; each time is exactly one forward pass, in order
    assert times == pytest.approx([0.002, 0.003, 0.004, 0.005], abs=1e-12)
    with pytest.raises(ValueError):
        time_forward(nn.Identity(), torch.zeros(1), repeats=0)


def test_measure_model_without_timing() -> None:
    cost = measure_model("mini_xception", timing=False)
    assert cost.params == 56_951
    assert cost.macs * 2 == cost.flops
    assert 5e6 < cost.macs < 6e6  # analytic count: 5,520,448 multiply-adds
    assert cost.latency_ms is None and cost.throughput_ips is None


def test_format_table() -> None:
    table = format_table([ModelCost("mini_xception_paper", 621_367, 58_153_984, 29_076_992, 1.5, 1234.0)])
    row = table.splitlines()[2]
    assert row.startswith("| mini_xception_paper | 621,367 | 58.2 | 29.1 | 1.50 | 1,234 |")
    assert "0.61M / 28.3M" in row


TEXT = "# Results\n\n## Speed\n\nfast\n\n## Model cost\n\nold table\n\n## Accuracy\n\n70%\n"


def test_replace_section_replaces_only_its_section() -> None:
    out = replace_section(TEXT, "## Model cost\n\nnew table\n")
    assert out == "# Results\n\n## Speed\n\nfast\n\n## Model cost\n\nnew table\n\n## Accuracy\n\n70%\n"
    # idempotent
    assert replace_section(out, "## Model cost\n\nnew table\n") == out


def test_replace_section_last_and_absent() -> None:
    last = "# R\n\n## Model cost\n\nold\n"
    assert replace_section(last, "## Model cost\n\nnew") == "# R\n\n## Model cost\n\nnew\n"
    absent = "# R\n\n## Speed\n\nfast\n"
    assert replace_section(absent, "## Model cost\n\nnew\n") == absent + "\n## Model cost\n\nnew\n"
    # a similar heading is not ours
    similar = "# R\n\n## Model costs\n\nx\n"
    assert replace_section(similar, "## Model cost\n\nnew\n").count("## Model cost\n") == 1


def test_write_section_creates_and_preserves(tmp_path: Path) -> None:
    path = tmp_path / "docs" / "results.md"
    write_section(path, "## Model cost\n\nA\n")
    assert path.read_text() == "# Results\n\n## Model cost\n\nA\n"
    path.write_text(TEXT)
    write_section(path, "## Model cost\n\nB\n")
    assert "## Speed\n\nfast" in path.read_text() and "## Accuracy\n\n70%" in path.read_text()
    assert "B\n" in path.read_text() and "old table" not in path.read_text()
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    assert path.stat().st_mode & 0o777 != 0o600  # not mkstemp's private mode


@pytest.fixture
def restore_threads():
    """`--threads` changes torch's global thread count; put it back afterwards."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_cli_summary_writes_section(tmp_path: Path, restore_threads: None) -> None:
    out = tmp_path / "results.md"
    out.write_text(TEXT)
    result = CliRunner().invoke(
        main,
        ["summary", "--models", "mini_xception", "--threads", "1", "--repeats", "1",
         "--throughput-repeats", "1", "--warmup", "0", "--write", str(out), "--note", "Quiet machine."],
    )
    assert result.exit_code == 0, result.output
    assert "| mini_xception | 56,951 |" in result.output
    text = out.read_text()
    assert text.count(SECTION_HEADING + "\n") == 1
    assert "fer-models summary --models mini_xception --threads 1 --repeats 1" in text
    assert "1 intra-op thread." in text and "2 FLOPs" in text
    assert "## Accuracy" in text and "old table" not in text
    assert "\nQuiet machine.\n" in text and "--note 'Quiet machine.'" in text


def test_cli_summary_unknown_pattern() -> None:
    result = CliRunner().invoke(main, ["summary", "--models", "nope*", "--no-timing"])
    assert result.exit_code != 0
    assert "no model matches" in result.output
