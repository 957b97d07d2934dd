"""Tests for fer_models.train: the loop learns, resume is exact, checkpoints, evaluate, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from fer_models.cli import main as fer_models_cli  # noqa: E402
from fer_models.checkpoint import load_checkpoint, load_model  # noqa: E402
from fer_models.inference import evaluate_checkpoint, predict  # noqa: E402
from fer_models.train import TrainConfig, main, parse_model_kw  # noqa: E402
from fer_models.data import load_fer_tensors  # noqa: E402

from conftest import TRAIN_MODEL as MODEL  # noqa: E402 - the toy data and config are shared with other tests
from conftest import TRAIN_USAGE_CYCLE as USAGE_CYCLE  # noqa: E402
from conftest import train_config as config  # noqa: E402
from conftest import write_train_csv as write_csv  # noqa: E402

SIDE = 48


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_csv(tmp_path_factory.mktemp("data") / "toy.csv", 84)


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
    assert best.best_val_acc == max(r["val_acc"] for r in log)
    # the report scores the best checkpoint on the test rows (every 6th row from 5): recompute it
    from sklearn.metrics import f1_score

    model = best.build_model()
    data = load_fer_tensors(csv_path)
    rows = np.arange(5, 84, 6)
    preds = predict(model, data.images[rows], channels_last=False).argmax(1).numpy()
    truth = data.labels[rows].numpy()
    assert report["n"] == rows.size == 14
    assert report["accuracy"] == pytest.approx(float((preds == truth).mean()))
    assert report["macro"]["f1"] == pytest.approx(f1_score(truth, preds, average="macro", labels=range(7),
                                                            zero_division=0))


def test_resume_reproduces_uninterrupted_run(csv_path: Path, tmp_path: Path) -> None:
    straight = tmp_path / "straight"
    main(config(csv_path, straight, epochs=2, lr_step=1))
    split = tmp_path / "split"
    main(config(csv_path, split, epochs=1, lr_step=1))
    main(config(csv_path, split, epochs=2, lr_step=1), resume=True)
    a, b = load_checkpoint(straight / "checkpoint.pt"), load_checkpoint(split / "checkpoint.pt")
    assert a.epoch == b.epoch == 2
    for key, value in a.model.items():
        assert torch.equal(value, b.model[key]), key
    for key, state in a.train["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg"], b.train["optimizer"]["state"][key]["exp_avg"])
        assert torch.equal(state["step"], b.train["optimizer"]["state"][key]["step"])
    assert a.train["step"] == b.train["step"] == 2 * (84 * 4 // 6 // 8)
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
    (out / "checkpoint.pt").unlink()  # a finished run kept for its best.pt only: never trained over
    best = (out / "best.pt").read_bytes()
    with pytest.raises(FileExistsError, match="a trained model; this run would replace it"):
        main(config(csv_path, out, epochs=1, max_steps_per_epoch=1))
    assert (out / "best.pt").read_bytes() == best


def test_checkpoint_is_plain_weights_only(csv_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    main(config(csv_path, out, epochs=1, max_steps_per_epoch=2))
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert {"model", "train", "epoch", "config", "data_sha256"} <= set(state)
    assert {"optimizer", "model", "rng", "step", "version"} <= set(state["train"])
    model, ckpt = load_model(out / "checkpoint.pt")
    cfg = ckpt.train_config()
    assert cfg.model == MODEL and not model.training
    assert not list(out.glob("*.part"))


def test_evaluate_on_another_csv(csv_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    main(config(csv_path, out, epochs=1, max_steps_per_epoch=3))
    other = write_csv(tmp_path / "other.csv", 42, seed=7)
    report = evaluate_checkpoint(out / "best.pt", other, subset="all", out=tmp_path / "eval")
    model, ckpt = load_model(out / "best.pt")
    cfg = ckpt.train_config()
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
    result = runner.invoke(fer_models_cli, ["train", *args])
    assert result.exit_code == 0, result.output
    again = runner.invoke(fer_models_cli, ["train", *args])
    assert again.exit_code != 0 and "--resume" in again.output
    ev = runner.invoke(fer_models_cli, ["evaluate", "--checkpoint", str(out / "best.pt"), "--data", str(csv_path),
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
    model, ckpt = load_model(out / "best.pt")
    cfg = ckpt.train_config()
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


# ---------------------------------------------------------------- recipes (default: SGD, cosine, EMA, erasing, TTA)


def test_default_recipe_resume_is_exact(csv_path: Path, tmp_path: Path) -> None:
    """Cosine + warm-up + EMA + erasing + mixup: an interrupted run resumes bit for bit."""
    kw = dict(recipe="default", epochs=3, warmup_epochs=1, mixup_alpha=0.2)
    straight = tmp_path / "straight"
    main(config(csv_path, straight, **kw))
    split = tmp_path / "split"
    assert main(config(csv_path, split, **kw), stop_after=1) == {"stopped_after": 1}
    assert not (split / "test").exists()
    main(config(csv_path, split, **kw), resume=True)
    a, b = load_checkpoint(straight / "checkpoint.pt"), load_checkpoint(split / "checkpoint.pt")
    pairs = [(a.model, b.model), (a.train["model"], b.train["model"]), (a.train["ema_model"], b.train["ema_model"])]
    for x, y in pairs:
        for name, value in x.items():
            assert torch.equal(value, y[name]), name
    assert a.train["step"] == b.train["step"] == 3 * (84 * 4 // 6 // 8)
    assert [r["train_loss"] for r in read_log(straight)] == [r["train_loss"] for r in read_log(split)]
    # the EMA is not the raw weights; the checkpoint's inference weights are the one selected on val
    ema, raw = a.train["ema_model"], a.train["model"]
    assert any(not torch.equal(ema[k], raw[k]) for k in a.model)
    chosen = ema if a.selected == "ema" else raw
    assert all(torch.equal(a.model[k], chosen[k]) for k in a.model)
    log = read_log(straight)
    assert all({"val_acc_raw", "val_acc_ema", "selected"} <= set(r) for r in log)
    assert all(r["val_acc"] == max(r["val_acc_raw"], r["val_acc_ema"]) for r in log)


def test_cosine_run_cannot_change_epochs_on_resume(csv_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    main(config(csv_path, out, recipe="default", epochs=2, max_steps_per_epoch=1), stop_after=1)
    with pytest.raises(ValueError, match="cosine"):
        main(config(csv_path, out, recipe="default", epochs=3, max_steps_per_epoch=1), resume=True)


def test_lr_schedules() -> None:
    from fer_models.engine import lr_factor

    cos = lr_factor(TrainConfig.from_recipe("default", data="x", out="y", epochs=10, warmup_epochs=2), 10)
    assert cos(0) == pytest.approx(0.05) and cos(19) == pytest.approx(1.0)  # linear warm-up over 20 steps
    assert cos(20) == pytest.approx(1.0) and cos(60) == pytest.approx(0.5) and cos(99) < 0.01
    step = lr_factor(TrainConfig.from_recipe("paper", data="x", out="y"), 10)
    assert step(0) == step(299) == 1.0 and step(300) == pytest.approx(0.1) and step(900) == pytest.approx(1e-3)


def test_recipes_and_options() -> None:
    paper = TrainConfig.from_recipe("paper", data="x", out="y", lr=None)
    assert (paper.optimizer, paper.lr, paper.schedule, paper.class_weighted, paper.ema_decay, paper.tta) == (
        "adam", 1e-3, "step", True, 0.0, "none")
    default = TrainConfig.from_recipe("default", data="x", out="y", lr=0.1)
    assert default.recipe == "default" and default.lr == 0.1 and default.optimizer == "sgd"
    with pytest.raises(ValueError, match="unknown recipe"):
        TrainConfig.from_recipe("fast", data="x", out="y")
    with pytest.raises(ValueError, match="unknown training option"):
        TrainConfig.from_recipe("default", data="x", out="y", learning_rate=1)
    for bad in (dict(optimizer="lion"), dict(tta="crops"), dict(erase_prob=1.5), dict(ema_decay=1.0),
                dict(label_smoothing=-0.1)):
        with pytest.raises(ValueError):
            TrainConfig.from_recipe("default", data="x", out="y", **bad).validate()


def test_old_checkpoint_config_reads_as_paper_recipe() -> None:
    from fer_models.checkpoint import config_from_state

    old = {"data": "x", "out": "y", "model": MODEL, "lr": 1e-3, "amp": "bf16", "lr_step": 10}
    cfg = config_from_state(old)
    assert cfg.recipe == "paper" and cfg.optimizer == "adam" and cfg.tta == "none" and cfg.lr_step == 10


def test_tta_views_and_predict() -> None:
    from fer_models import create_model
    from fer_models.inference import tta_views

    x = torch.arange(2 * 48 * 48, dtype=torch.float32).reshape(2, 1, 48, 48)
    views = tta_views(x, "ten")
    assert len(views) == 10 and all(v.shape == x.shape for v in views)
    assert torch.equal(views[1], x.flip(-1))
    assert torch.equal(views[2][..., 2:, :], x[..., :-2, :])  # shifted down by 2, top rows repeated
    torch.manual_seed(0)
    model = create_model(MODEL).eval()
    images = torch.randint(0, 256, (5, 1, 48, 48), dtype=torch.uint8)
    plain = predict(model, images, channels_last=False)
    flip = predict(model, images, channels_last=False, tta="flip")
    assert flip.exp().sum(1).allclose(torch.ones(5), atol=1e-5)  # log of averaged probabilities
    mirrored = predict(model, images.flip(-1), channels_last=False, tta="flip")
    assert torch.allclose(flip, mirrored, atol=1e-5)  # flip TTA is mirror-invariant
    assert not torch.allclose(plain.log_softmax(1), flip, atol=1e-4)


def test_random_erase_is_seeded_and_bounded() -> None:
    from fer_models.data import random_erase

    x = torch.zeros(200, 1, 48, 48) + 5.0
    a = random_erase(x, 0.5, torch.Generator().manual_seed(1))
    b = random_erase(x, 0.5, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and torch.equal(x, torch.zeros_like(x) + 5.0)
    erased = (a != 5.0).flatten(1).float().mean(1)
    assert 60 < int((erased > 0).sum()) < 140  # about half the images
    assert float(erased.max()) <= 0.26  # at most 25 % of the area (+ rounding)
    assert torch.equal(random_erase(x, 0.0, torch.Generator().manual_seed(1)), x)


def test_ship_and_load_weights(csv_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fer_models
    from fer_models import pretrained

    out = tmp_path / "run"
    main(config(csv_path, out, recipe="default", epochs=1, max_steps_per_epoch=2))
    folder = tmp_path / "weights"
    folder.mkdir()
    import fer_models.weights as weights_pkg

    monkeypatch.setattr(weights_pkg, "folder", lambda: folder)
    monkeypatch.setattr(pretrained, "_folder", lambda: folder)
    path = pretrained.ship(out / "best.pt", "toy", {"command": "test"})
    assert path.stat().st_size < 1_000_000 and "optimizer" not in torch.load(path, weights_only=True)
    assert fer_models.list_weights() == ["toy"]
    model = fer_models.create_model(MODEL, pretrained="toy")
    reference = load_checkpoint(out / "best.pt").build_model()
    x = torch.randn(3, 1, 48, 48)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    with pytest.raises(ValueError, match="are for 'mini_xception'"):
        fer_models.create_model("mini_xception_cbam", pretrained="toy")
    with pytest.raises(ValueError, match="no shipped weights named 'nope'; shipped: toy"):
        fer_models.create_model(MODEL, pretrained="nope")
    path.write_bytes(path.read_bytes() + b"x")  # a corrupted file is refused
    with pytest.raises(ValueError, match="sha256"):
        fer_models.create_model(MODEL, pretrained="toy")
    # weights over the size limit replace nothing: the file shipped before under the name stays
    before = path.read_bytes()
    monkeypatch.setattr(pretrained, "MAX_BYTES", 1000)
    with pytest.raises(ValueError, match="over the 1000-byte limit"):
        pretrained.ship(out / "best.pt", "toy", {"command": "test"})
    assert path.read_bytes() == before and sorted(p.name for p in folder.iterdir()) == sorted([path.name, "index.json"])


def test_init_starts_from_trained_weights_and_checks_the_model(csv_path: Path, tmp_path: Path) -> None:
    """--init: the new run's first epoch starts where the old run ended (its val loss is already low)."""
    first = tmp_path / "first"
    main(config(csv_path, first, epochs=4, augment=False, lr=3e-3))
    fresh = tmp_path / "fresh"
    main(config(csv_path, fresh, epochs=1, augment=False, lr=1e-4))
    tuned = tmp_path / "tuned"
    main(config(csv_path, tuned, epochs=1, augment=False, lr=1e-4, init=str(first / "best.pt")))
    assert read_log(tuned)[0]["val_loss"] < 0.8 * read_log(fresh)[0]["val_loss"]
    info = json.loads((tuned / "config.json").read_text())
    assert info["init_from"]["file"].endswith("best.pt") and len(info["init_from"]["sha256"]) == 64
    with pytest.raises(ValueError, match="holds mini_xception"):
        main(config(csv_path, tmp_path / "other", model="mini_xception_cbam", init=str(first / "best.pt")))
    result = CliRunner().invoke(fer_models_cli, ["train", "--data", str(csv_path), "--out", str(tmp_path / "x"),
                                                "--init", "no-such-weights", "--epochs", "1"])
    assert result.exit_code != 0 and "neither shipped weights" in result.output


def test_resume_refuses_changed_data(csv_path: Path, tmp_path: Path) -> None:
    """A run never mixes two datasets: resume checks the data's checksum, not only its path."""
    data = tmp_path / "data.csv"
    data.write_bytes(csv_path.read_bytes())
    out = tmp_path / "run"
    main(config(data, out, recipe="default", epochs=2, max_steps_per_epoch=1), stop_after=1)
    before = (out / "checkpoint.pt").read_bytes()
    write_csv(data, 84, seed=5)  # same path, other contents
    with pytest.raises(ValueError, match="has changed since the run started"):
        main(config(data, out, recipe="default", epochs=2, max_steps_per_epoch=1), resume=True)
    assert (out / "checkpoint.pt").read_bytes() == before


def test_resume_takes_the_same_files_under_other_names(csv_path: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """--out ./run, an absolute path or a copy of the data with the same bytes continue the run (they were
    refused as 'a different configuration', the paths compared as text); other settings still refuse."""
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data.csv"
    data.write_bytes(csv_path.read_bytes())
    main(config(Path("data.csv"), Path("run"), recipe="default", epochs=3, max_steps_per_epoch=1), stop_after=1)
    main(config(Path("./data.csv"), tmp_path / "run", recipe="default", epochs=3, max_steps_per_epoch=1),
         resume=True, stop_after=2)
    copy = tmp_path / "copy.csv"
    copy.write_bytes(data.read_bytes())
    main(config(copy, Path("./run"), recipe="default", epochs=3, max_steps_per_epoch=1), resume=True)
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 3


def test_single_class_training_data_is_refused(tmp_path: Path) -> None:
    lines = tmp_path / "one.csv"
    rows = ["emotion,pixels,Usage"] + [f"3,{' '.join(['7'] * 48 * 48)},{USAGE_CYCLE[i % 6]}" for i in range(24)]
    lines.write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError, match="same class"):
        main(config(lines, tmp_path / "run", epochs=1))
    assert not (tmp_path / "run").exists()


def test_old_training_checkpoints_are_not_resumed(csv_path: Path, tmp_path: Path) -> None:
    """A checkpoint of the loop before the engine (optimizer at the top level) evaluates but does not resume."""
    out = tmp_path / "run"
    main(config(csv_path, out, recipe="default", epochs=2, max_steps_per_epoch=1), stop_after=1)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    state["optimizer"] = state.pop("train")["optimizer"]
    torch.save(state, out / "checkpoint.pt")
    with pytest.raises(ValueError, match="older fer_models training loop"):
        main(config(csv_path, out, recipe="default", epochs=2, max_steps_per_epoch=1), resume=True)
    model, _ = load_model(out / "checkpoint.pt")
    assert not model.training
