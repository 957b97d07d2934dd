"""The weights that ship with the package: listed, checksummed, loadable by name, and usable."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

import fer_models  # noqa: E402
from fer_models.cli import main as cli  # noqa: E402
from fer_models.pretrained import MAX_BYTES, weights_index, weights_path  # noqa: E402

SHIPPED = sorted(weights_index())


def test_weights_ship() -> None:
    assert "mfer2013" in SHIPPED and fer_models.list_weights() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_load_and_predict(name: str) -> None:
    entry = weights_index()[name]
    path = weights_path(name)
    assert path.stat().st_size <= MAX_BYTES and entry["bytes"] == path.stat().st_size
    assert len(entry["data_sha256"]) == 64 and entry["command"] and entry["scores"]
    model = fer_models.create_model(entry["model"], pretrained=name)
    assert not model.training
    reference = fer_models.create_model(entry["model"])
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())
    skimage = pytest.importorskip("skimage.data")
    import cv2

    faces = (skimage.lfw_subset()[:16] * 255).round().astype(np.uint8)
    x = torch.from_numpy(np.stack([cv2.resize(f, (48, 48), interpolation=cv2.INTER_CUBIC) for f in faces]))
    with torch.no_grad():
        probs = model(x[:, None].float() / 127.5 - 1).softmax(1)
    assert torch.allclose(probs.sum(1), torch.ones(16), atol=1e-5)
    assert len(set(probs.argmax(1).tolist())) >= 2  # trained weights tell faces apart


def test_evaluate_with_shipped_weights(tmp_path: Path) -> None:
    from conftest import write_train_csv as write_csv

    csv_path = write_csv(tmp_path / "toy.csv", 42)
    result = CliRunner().invoke(cli, ["evaluate", "--weights", SHIPPED[0], "--data", str(csv_path), "--subset", "all",
                                      "--out", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ev" / "metrics.json").is_file()
    listing = CliRunner().invoke(cli, ["weights"])
    assert listing.exit_code == 0 and SHIPPED[0] in listing.output and "command" in listing.output
    both = CliRunner().invoke(cli, ["evaluate", "--weights", SHIPPED[0], "--checkpoint", str(csv_path), "--data",
                                    str(csv_path)])
    assert both.exit_code != 0 and "exactly one" in both.output
