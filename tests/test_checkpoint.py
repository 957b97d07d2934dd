"""Tests for fer_models.checkpoint: the one checkpoint type round-trips and refuses bad files in one line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from fer_models.checkpoint import Checkpoint, CheckpointError, checkpoint_path, load_model  # noqa: E402
from fer_models.config import TrainConfig  # noqa: E402
from fer_models.models import create_model  # noqa: E402

KW = {"widths": [8, 16]}


def small_checkpoint(**kw) -> Checkpoint:
    config = TrainConfig(data="d.csv", out="o", model="mini_xception", model_kwargs=KW)
    torch.manual_seed(0)
    model = create_model("mini_xception", **KW)
    base = dict(model={k: v.clone() for k, v in model.state_dict().items()}, config=dataclasses.asdict(config),
                epoch=3, best_val_acc=0.5, best_epoch=2, data_sha256="ab" * 32)
    base.update(kw)
    return Checkpoint(**base)


def test_round_trip(tmp_path: Path) -> None:
    ckpt = small_checkpoint(train={"version": 2, "step": 7, "optimizer": {"state": {}, "param_groups": []}})
    path = tmp_path / "c.pt"
    ckpt.save(path)
    back = Checkpoint.load(path)
    assert back.path == path and back.epoch == 3 and back.data_sha256 == ckpt.data_sha256
    assert back.train == ckpt.train and back.resumable()
    assert all(torch.equal(v, back.model[k]) for k, v in ckpt.model.items())
    assert back.train_config() == ckpt.train_config()
    stripped = back.inference_only()
    assert stripped.train is None and not stripped.resumable()
    assert set(stripped.to_dict()) == {"version", "model", "config", "class_names", "epoch", "best_val_acc",
                                       "best_epoch", "selected", "resolved"}
    model, loaded = load_model(path)
    assert not model.training and loaded.epoch == 3
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".*"))


def test_shipped_weights_still_load() -> None:
    from fer_models.weights import list_weights

    for name in list_weights():
        model, ckpt = load_model(name)
        assert ckpt.path == checkpoint_path(name) and ckpt.class_names and not ckpt.resumable()
        assert sum(p.numel() for p in model.parameters()) > 0


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.pt"
    small_checkpoint().save(good)
    raw = good.read_bytes()
    files = {
        "empty": b"",
        "truncated": raw[: len(raw) // 2],
        "random bytes": bytes(range(256)) * 64,
    }
    out = {}
    for name, data in files.items():
        out[name] = tmp_path / f"{name.replace(' ', '_')}.pt"
        out[name].write_bytes(data)
    no_config = small_checkpoint().to_dict()
    del no_config["config"]
    torch.save(no_config, out.setdefault("config-less", tmp_path / "noconfig.pt"))
    torch.save([1, 2, 3], out.setdefault("a list", tmp_path / "list.pt"))
    small_checkpoint(class_names=["a", "b"]).save(out.setdefault("class names", tmp_path / "names.pt"))
    wrong = small_checkpoint()
    wrong.model = {k: v[..., :1] if v.ndim else v for k, v in wrong.model.items()}
    wrong.save(out.setdefault("weights", tmp_path / "weights.pt"))
    return out


@pytest.mark.parametrize("kind, message", [
    ("empty", "empty file"), ("truncated", "cannot be read"), ("random bytes", "cannot be read"),
    ("config-less", "no 'config'"), ("a list", "holds a list"), ("class names", "2 class names"),
    ("weights", "do not fit"),
])
def test_bad_checkpoints_give_one_line_naming_the_file(tmp_path: Path, kind: str, message: str) -> None:
    path = _bad_files(tmp_path)[kind]
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    text = str(info.value)
    assert str(path) in text and message in text and "\n" not in text


def test_sources(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="neither shipped weights"):
        checkpoint_path(tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError):
        Checkpoint.load(tmp_path / "missing.pt")


def test_model_sources_checks_every_entry(tmp_path: Path) -> None:
    """The scripts' --models: shipped names or checkpoint files, in order, without repeats; the rest named."""
    from fer_models.checkpoint import model_sources
    from fer_models.weights import list_weights

    assert model_sources(None) == list_weights()
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"x")
    assert model_sources(f"fer2013, {ckpt},fer2013") == ["fer2013", str(ckpt)]
    with pytest.raises(ValueError, match="^--models 'nope': neither shipped weights"):
        model_sources("fer2013,nope")
    with pytest.raises(ValueError, match="no model named"):
        model_sources(" , ")
