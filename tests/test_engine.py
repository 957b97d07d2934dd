"""Tests for fer_models.engine: the step makes no host synchronisation, matches torch.optim, is seeded."""

from __future__ import annotations

import contextlib
import math

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from fer_models.config import TrainConfig  # noqa: E402
from fer_models.device import resolve  # noqa: E402
from fer_models.engine import DeviceAdam, DeviceSGD, Engine, WeightEMA, lr_factor, lr_table  # noqa: E402
from fer_models.models import create_model  # noqa: E402

#: Every Tensor method that copies a value to the host (or branches on one).
SYNC_METHODS = ("item", "__float__", "__bool__", "__int__", "__index__", "cpu", "tolist", "numpy")


@contextlib.contextmanager
def host_reads_raise():
    """Make every Tensor -> host read raise, so a step that synchronises fails loudly."""
    saved = {name: getattr(torch.Tensor, name) for name in SYNC_METHODS}

    def refuse(name: str):
        def method(*_args, **_kwargs):
            raise AssertionError(f"host synchronisation in the step: Tensor.{name}")
        return method

    try:
        for name in SYNC_METHODS:
            setattr(torch.Tensor, name, refuse(name))
        yield
    finally:
        for name, method in saved.items():
            setattr(torch.Tensor, name, method)


def make_engine(model_name: str = "mini_xception_cbam", n: int = 40, seed: int = 0, **kw) -> Engine:
    config = TrainConfig(data="", out="", batch_size=8, epochs=2, seed=seed, **kw)
    torch.manual_seed(seed)
    model = create_model(model_name, **({"widths": [8, 16]} if model_name.startswith("mini") else {}))
    model = model.to(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(123)
    x = torch.randint(0, 256, (n, 1, 48, 48), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 7, (n,), generator=gen)
    return Engine(model, config, resolve("cpu", "none"), x, y, nn.CrossEntropyLoss(label_smoothing=0.1))


@pytest.mark.parametrize("kw", [
    {},  # the default recipe: SGD + Nesterov, cosine, EMA, random erasing
    {"recipe": "paper", "optimizer": "adam", "lr": 1e-3, "ema_decay": 0.0, "erase_prob": 0.0},
    {"optimizer": "adamw", "mixup_alpha": 0.4},
])
def test_step_makes_no_host_synchronisation(kw: dict) -> None:
    engine = make_engine(**kw)
    engine.begin_epoch(0)
    before = [p.detach().clone() for p in engine.model.parameters()]
    with host_reads_raise():
        for _ in range(3):
            engine.train_step()
    assert int(engine.step_count) == 3 and int(engine.epoch_step) == 3
    assert any(not torch.equal(a, p) for a, p in zip(before, engine.model.parameters()))
    # the guard itself works: a read of a device value inside it raises
    with host_reads_raise(), pytest.raises(AssertionError, match="host synchronisation"):
        float(engine.loss_sum)


def _torch_reference(kind: str, params: list[torch.Tensor], lr: float, wd: float) -> torch.optim.Optimizer:
    groups = [{"params": params[:1], "weight_decay": wd}, {"params": params[1:], "weight_decay": 0.0}]
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
    return (torch.optim.AdamW if kind == "adamw" else torch.optim.Adam)(groups, lr=lr)


@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
def test_device_optimizers_match_torch_optim(kind: str) -> None:
    """Same update rule as torch.optim (SGD Nesterov / Adam / AdamW, weight decay per group), lr changing per step."""
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(4, 3, generator=gen), torch.randn(5, generator=gen)]
    ours = [p.clone().requires_grad_() for p in start]
    ref = [p.clone().requires_grad_() for p in start]
    lr = torch.tensor(0.0)
    wd = 5e-2
    groups = [{"params": ours[:1], "weight_decay": wd}, {"params": ours[1:], "weight_decay": 0.0}]
    opt = DeviceSGD(groups, lr, momentum=0.9, nesterov=True) if kind == "sgd" else \
        DeviceAdam(groups, lr, decoupled=kind == "adamw")
    reference = _torch_reference(kind, ref, 0.1, wd)
    for step in range(6):
        value = 0.1 * (step + 1) / 6
        lr.fill_(value)
        for g in reference.param_groups:
            g["lr"] = value
        grads = [torch.randn(p.shape, generator=gen) for p in start]
        for p, q, g in zip(ours, ref, grads):
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        reference.step()
    for p, q in zip(ours, ref):
        assert torch.allclose(p, q, atol=1e-6, rtol=1e-5), (p, q)
    assert not torch.allclose(ours[0], start[0])


def test_lr_table_is_the_schedule() -> None:
    config = TrainConfig.from_recipe("default", data="x", out="y", epochs=4, warmup_epochs=1, lr=0.1)
    table = lr_table(config, 5)
    factor = lr_factor(config, 5)
    assert table.shape == (20,) and table.dtype == torch.float32
    assert torch.allclose(table, torch.tensor([0.1 * factor(s) for s in range(20)]))
    assert float(table[4]) == pytest.approx(0.1) and float(table[-1]) < 0.01


def test_ema_is_a_lerp_of_the_parameters() -> None:
    model = nn.Linear(3, 2)
    ema = WeightEMA(model, decay=0.9)
    start = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update()
    for e, s, p in zip(ema.module.parameters(), start, model.parameters()):
        assert torch.allclose(e, 0.9 * s + 0.1 * p) and not e.requires_grad


def test_epochs_are_seeded_and_reproducible() -> None:
    a, b = make_engine(), make_engine()
    sa, sb = a.run_epoch(0), b.run_epoch(0)
    assert (sa.loss, sa.acc, sa.images) == (sb.loss, sb.acc, sb.images) and math.isfinite(sa.loss)
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)
    assert sa.images == a.steps_per_epoch * a.batch_size == 5 * 8
    c = make_engine()
    c.run_epoch(1)  # another epoch: another order and augmentation
    assert any(not torch.equal(p, q) for p, q in zip(a.model.parameters(), c.model.parameters()))


def test_non_finite_loss_is_caught_once_per_epoch_naming_it() -> None:
    engine = make_engine(lr=1e30, ema_decay=0.0)
    with pytest.raises(FloatingPointError, match="epoch 1"):
        for epoch in range(2):
            engine.run_epoch(epoch)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_engine_state_round_trip(optimizer: str) -> None:
    a = make_engine(optimizer=optimizer)
    a.run_epoch(0)
    state = a.state_dict()
    b = make_engine(optimizer=optimizer)
    b.model.load_state_dict(a.model.state_dict())
    live = [t for st in b.optimizer.state.values() for t in st.values() if isinstance(t, torch.Tensor)]
    b.load_state_dict(state)
    # in place: a CUDA graph captured before the load would keep updating these very tensors
    after = [t for st in b.optimizer.state.values() for t in st.values() if isinstance(t, torch.Tensor)]
    assert len(after) == len(live) > 0 and all(x is y for x, y in zip(after, live))
    ref = [t for st in a.optimizer.state.values() for t in st.values() if isinstance(t, torch.Tensor)]
    assert all(torch.equal(x, y) for x, y in zip(after, ref))
    assert int(b.step_count) == int(a.step_count) == a.steps_per_epoch
    a.run_epoch(1)
    b.run_epoch(1)
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)
    for p, q in zip(a.ema.module.parameters(), b.ema.module.parameters()):
        assert torch.equal(p, q)


def test_cuda_graph_choice() -> None:
    engine = make_engine()
    assert not engine.graphed and engine.graph_note == ""  # a CPU step is eager, nothing to report
    off = make_engine()
    assert "off" in Engine(off.model, off.config, off.placement, off.images, off.labels, off.criterion,
                           cuda_graph="off").graph_note
    with pytest.raises(ValueError, match="needs a CUDA device"):
        Engine(off.model, off.config, off.placement, off.images, off.labels, off.criterion, cuda_graph="on")
    with pytest.raises(ValueError, match="cuda_graph must be one of"):
        Engine(off.model, off.config, off.placement, off.images, off.labels, off.criterion, cuda_graph="yes")


def test_steps_past_the_lr_table_keep_its_last_lr() -> None:
    """The lr is looked up on the device by step count: past the table it was an IndexError on the CPU (and a
    device-side assert on CUDA, which ends the context); now the last lr holds."""
    engine = make_engine()
    engine.begin_epoch(0)
    engine.step_count.fill_(engine.lr_table.shape[0] + 5)
    engine.train_step()
    assert float(engine.lr) == float(engine.lr_table[-1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_replays_the_eager_step() -> None:  # pragma: no cover (no GPU in CI)
    def build(graph: str) -> Engine:
        config = TrainConfig(data="", out="", batch_size=16, epochs=2, amp="none")
        torch.manual_seed(0)
        model = create_model("mini_xception_cbam").cuda().to(memory_format=torch.channels_last)
        x = torch.randint(0, 256, (160, 1, 48, 48), dtype=torch.uint8, device="cuda")
        y = torch.randint(0, 7, (160,), device="cuda")
        return Engine(model, config, resolve("cuda", "none"), x, y, nn.CrossEntropyLoss().cuda(), cuda_graph=graph)

    graphed, eager = build("on"), build("off")
    g, e = graphed.run_epoch(0), eager.run_epoch(0)
    assert graphed.graph is not None and eager.graph is None
    assert g.loss == pytest.approx(e.loss, rel=1e-3) and int(graphed.step_count) == int(eager.step_count)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_failed_capture_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch) -> None:  # pragma: no cover
    """A step that reads the host during capture (here one ``.item()``) cannot be captured: the engine says
    why, puts the default generator and the stream back, and the epoch finishes eagerly; later engines in the
    process do not try again (no GPU in CI)."""
    import fer_models.engine as engine_module

    monkeypatch.setattr(engine_module, "_capture_failed", None)  # put back after the test
    config = TrainConfig(data="", out="", batch_size=16, epochs=2, amp="none")
    torch.manual_seed(0)
    model = create_model("mini_xception_cbam", widths=[8, 16]).cuda().to(memory_format=torch.channels_last)
    x = torch.randint(0, 256, (160, 1, 48, 48), dtype=torch.uint8, device="cuda")
    y = torch.randint(0, 7, (160,), device="cuda")
    lines: list[str] = []
    engine = Engine(model, config, resolve("cuda", "none"), x, y, nn.CrossEntropyLoss().cuda(), cuda_graph="on",
                    echo=lines.append)
    step = engine.train_step

    def syncing_step() -> None:
        step()
        engine.loss_sum.item()

    engine.train_step = syncing_step  # type: ignore[method-assign]
    stats = engine.run_epoch(0)
    assert engine.graph is None and "capture failed" in engine.graph_note and lines[-1] == engine.graph_note
    assert math.isfinite(stats.loss) and int(engine.step_count) == engine.steps_per_epoch
    torch.rand(4, device="cuda")  # the default generator is usable outside a capture again
    later = Engine(model, config, resolve("cuda", "none"), x, y, nn.CrossEntropyLoss().cuda())
    assert not later.graphed and "an earlier capture in this process failed" in later.graph_note
    with pytest.raises(ValueError, match="impossible"):
        Engine(model, config, resolve("cuda", "none"), x, y, nn.CrossEntropyLoss().cuda(), cuda_graph="on")
