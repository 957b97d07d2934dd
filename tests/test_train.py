"""Tests for fer_models.train: the loop learns, resume is exact, checkpoints, evaluate, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from fer_models.cli import evaluate as evaluate_command  # noqa: E402
from fer_models.cli import train as train_command  # noqa: E402
from fer_models.train import (  # noqa: E402
    TrainConfig, evaluate_checkpoint, load_checkpoint, main, model_from_checkpoint, parse_model_kw, predict,
)
from fer_models.data import load_fer_tensors  # noqa: E402

SIDE = 48
USAGE_CYCLE = ("Training", "Training", "Training", "Training", "PublicTest", "PrivateTest")
MODEL = "mini_xception"


def write_csv(path: Path, n: int, seed: int = 0) -> Path:
    """Learnable toy FER2013 CSV: class c has a bright horizontal band at rows 6c..6c+5."""
    rng = np.random.default_rng(seed)
    lines = ["emotion,pixels,Usage"]
    for i in range(n):
        label = i % 7
        img = rng.integers(0, 80, (SIDE, SIDE))
        img[6 * label:6 * label + 6] += 170
        lines.append(f"{label},{' '.join(map(str, img.reshape(-1)))},{USAGE_CYCLE[i % len(USAGE_CYCLE)]}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_csv(tmp_path_factory.mktemp("data") / "toy.csv", 84)


def config(csv: Path, out: Path, **kw) -> TrainConfig:
    base = dict(data=str(csv), out=str(out), model=MODEL, batch_size=8, epochs=2, progress=False, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_loss_falls_and_run_files(csv_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    report = main(config(csv_path, out, epochs=4, augment=False, lr=3e-3))
    log = read_log(out)
    assert [r["epoch"] for r in log] == [1, 2, 3, 4]  # 1-based, as printed and as best_epoch
    assert log[-1]["train_loss"] < 0.8 * log[0]["train_loss"]
    assert all(r["images_per_s"] > 0 and r["lr"] == pytest.approx(3e-3) for r in log)
    for name in ("checkpoint.pt", "best.pt", "config.json", "test/metrics.json", "test/confusion.png"):
        assert (out / name).is_file(), name
    best = load_checkpoint(out / "best.pt")
    assert best["best_val_acc"] == max(r["val_acc"] for r in log)
    assert report["n"] == 84 // 6 and 0.0 <= report["macro"]["f1"] <= 1.0


def test_resume_reproduces_uninterrupted_run(csv_path: Path, tmp_path: Path) -> None:
    straight = tmp_path / "straight"
    main(config(csv_path, straight, epochs=2, lr_step=1))
    split = tmp_path / "split"
    main(config(csv_path, split, epochs=1, lr_step=1))
    main(config(csv_path, split, epochs=2, lr_step=1), resume=True)
    a, b = load_checkpoint(straight / "checkpoint.pt"), load_checkpoint(split / "checkpoint.pt")
    assert a["epoch"] == b["epoch"] == 2
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for key, state in a["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg"], b["optimizer"]["state"][key]["exp_avg"])
    assert a["scheduler"] == b["scheduler"]
    assert [r["train_loss"] for r in read_log(straight)] == [r["train_loss"] for r in read_log(split)]


def test_resume_guards(csv_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    main(config(csv_path, out, epochs=1, max_steps_per_epoch=1))
    with pytest.raises(FileExistsError, match="--resume"):
        main(config(csv_path, out, epochs=1, max_steps_per_epoch=1))
    with pytest.raises(ValueError, match="lr"):
        main(config(csv_path, out, epochs=2, max_steps_per_epoch=1, lr=0.5), resume=True)
    with pytest.raises(FileNotFoundError):
        main(config(csv_path, tmp_path / "none", epochs=1), resume=True)
    with pytest.raises(ValueError, match="unknown model"):
        main(config(csv_path, tmp_path / "bad", model="no_such_model"))


def test_checkpoint_is_plain_weights_only(csv_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    main(config(csv_path, out, epochs=1, max_steps_per_epoch=2))
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "epoch", "config", "rng"} <= set(state)
    model, cfg = model_from_checkpoint(state)
    assert cfg.model == MODEL and not model.training
    assert not list(out.glob("*.part"))


def test_evaluate_on_another_csv(csv_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    main(config(csv_path, out, epochs=1, max_steps_per_epoch=3))
    other = write_csv(tmp_path / "other.csv", 42, seed=7)
    report = evaluate_checkpoint(out / "best.pt", other, subset="all", out=tmp_path / "eval")
    model, cfg = model_from_checkpoint(load_checkpoint(out / "best.pt"))
    data = load_fer_tensors(other)
    preds = predict(model, data.images, channels_last=False, amp=cfg.amp).argmax(1)
    assert report["n"] == 42
    assert report["accuracy"] == pytest.approx(float((preds == data.labels).float().mean()), abs=1 / 42 + 1e-9)
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["data"] == str(other)


def test_cli_train_then_evaluate(csv_path: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli"
    args = ["--data", str(csv_path), "--out", str(out), "--model", MODEL, "--epochs", "1", "--batch-size", "8",
            "--max-steps-per-epoch", "1", "--no-progress", "--threads", "1", "--amp", "none"]
    result = runner.invoke(train_command, args)
    assert result.exit_code == 0, result.output
    again = runner.invoke(train_command, args)
    assert again.exit_code != 0 and "--resume" in again.output
    ev = runner.invoke(evaluate_command, ["--checkpoint", str(out / "best.pt"), "--data", str(csv_path),
                                          "--subset", "val", "--out", str(tmp_path / "ev")])
    assert ev.exit_code == 0, ev.output
    assert "macro avg" in ev.output and (tmp_path / "ev" / "confusion.png").is_file()
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["n"] == 84 // 6


@pytest.mark.parametrize("batch", [3, 5, 7])
def test_odd_batch_channels_last_backward(batch: int) -> None:
    """Regression: 1x1 stride-2 conv backward in channels_last segfaulted on torch 2.13 CPU."""
    from fer_models import create_model

    torch.manual_seed(0)
    model = create_model("mini_xception_cbam").to(memory_format=torch.channels_last)
    x = torch.randn(batch, 1, SIDE, SIDE).contiguous(memory_format=torch.channels_last)
    for amp in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = model(x).float().logsumexp(1).mean()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_parse_model_kw() -> None:
    assert parse_model_kw(["widths=[8, 16]", "attention=cbam", "stem_width=4"]) == {
        "widths": [8, 16], "attention": "cbam", "stem_width": 4}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_model_kw(["oops"])


def test_model_kw_reaches_the_model(csv_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "small"
    main(config(csv_path, out, epochs=1, max_steps_per_epoch=1, model_kwargs={"widths": [8, 16]}))
    model, cfg = model_from_checkpoint(load_checkpoint(out / "best.pt"))
    assert cfg.model_kwargs == {"widths": [8, 16]} and model.widths == (8, 16)


def test_evaluate_file_without_usage(csv_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    main(config(csv_path, out, epochs=1, max_steps_per_epoch=1))
    lines = csv_path.read_text().splitlines()
    plain = tmp_path / "plain.csv"
    plain.write_text("\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n")  # drop Usage
    with pytest.raises(ValueError, match="--subset all"):
        evaluate_checkpoint(out / "best.pt", plain)
    report = evaluate_checkpoint(out / "best.pt", plain, subset="all", out=tmp_path / "ev")
    assert report["n"] == 84
