"""benchmarks/train_speed.py's stacked runs: K models as one (torch.func.vmap) compute what K models compute."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fer_models import create_model

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "train_speed.py"


@pytest.fixture(scope="module")
def train_speed():
    spec = importlib.util.spec_from_file_location("train_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_speed"] = module  # dataclass / annotation lookups resolve the module by name
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("train_speed", None)


@pytest.mark.parametrize("name", ["mini_xception_cbam", "mini_xception"])
def test_stacked_forward_is_each_models_forward(train_speed, name):
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(create_model(name).train())
    stacked = train_speed.Stacked(models).train()  # copies of the models' tensors, stacked
    x = torch.randn(3 * 5, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    want = torch.cat([m(x[5 * k:5 * (k + 1)]) for k, m in enumerate(models)])  # updates each model's BN statistics
    got = stacked(x)
    assert got.shape == (15, 7)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    # BatchNorm statistics are per run: the stacked buffers moved as each model's own did
    for key, value in stacked.named_buffers():
        name_in_model = key.replace("__", ".")
        for k, m in enumerate(models):
            torch.testing.assert_close(value[k], dict(m.named_buffers())[name_in_model])
    # eval mode reaches the architecture: the same input gives the same output twice, statistics unchanged
    stacked.eval()
    before = [b.clone() for b in stacked.buffers()]
    torch.testing.assert_close(stacked(x), stacked(x))
    assert all(torch.equal(a, b) for a, b in zip(before, stacked.buffers()))


def test_stacked_runs_differ_and_train(train_speed):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 48, 48), dtype=np.uint8)
    labels = rng.integers(0, 7, 64).astype(np.int64)
    step, engine = train_speed.stacked_step("mini_xception", images, labels, bs=8, amp="none", k=2)
    assert engine.batch_size == 16
    first = engine.model.get_parameter("head__weight").detach().clone()
    assert not torch.equal(first[0], first[1])  # two runs, two seeds
    for _ in range(2):
        step()
    assert int(engine.step_count) == 2
    assert not torch.equal(engine.model.get_parameter("head__weight"), first)


def test_stack_option_rejects_one(train_speed, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["train_speed.py", "--loops", "--stack", "1"])
    with pytest.raises(SystemExit) as exc:
        train_speed.main()
    assert exc.value.code == 2
    assert "--stack must be 0 (off) or at least 2" in capsys.readouterr().err
