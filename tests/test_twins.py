"""Tests for fer_models.twins and twin training: regions, tops, refill, the CAM share, distillation, a run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import TRAIN_USAGE_CYCLE, train_config, write_train_csv  # noqa: E402
from test_engine import host_reads_raise  # noqa: E402

from fer_models.twins import (  # noqa: E402
    blank_below, cam_share, distill_loss, load_twins, mask_region, mask_top, refill_region, twin_batch,
)

#: the toy mask: a flat rectangle over rows MASK_TOP.. of every face
MASK_TOP, MASK_VALUE = 30, 255  # brighter than any toy face pixel (at most 249)


def write_masked_twin(clean: Path, path: Path) -> Path:
    """The toy file ``clean`` with a flat grey rectangle (rows 30-43, columns 8-39) drawn on every face."""
    lines = clean.read_text().splitlines()
    out = [lines[0]]
    for line in lines[1:]:
        label, pixels, usage = line.split(",")
        img = np.array(pixels.split(), dtype=np.int64).reshape(48, 48)
        img[MASK_TOP:44, 8:40] = MASK_VALUE
        out.append(f"{label},{' '.join(map(str, img.reshape(-1)))},{usage}")
    path.write_text("\n".join(out) + "\n")
    return path


@pytest.fixture
def twin_files(tmp_path: Path) -> tuple[Path, Path]:
    clean = write_train_csv(tmp_path / "fer.csv", 84)
    return write_masked_twin(clean, tmp_path / "smfer.csv"), clean


def test_region_and_top_find_the_drawn_mask(twin_files: tuple[Path, Path]) -> None:
    twins = load_twins(*twin_files)
    expected = torch.zeros(48, 48, dtype=torch.uint8)
    expected[MASK_TOP:44, 8:40] = 1
    assert torch.equal(twins.region[:, 0], expected.expand_as(twins.region[:, 0]))
    assert torch.equal(twins.top, torch.full((84,), MASK_TOP))


def test_region_closes_small_holes_and_ignores_tiny_differences() -> None:
    clean = torch.full((2, 1, 48, 48), 100, dtype=torch.uint8)
    masked = clean.clone()
    masked[0, 0, 20:30, 10:30] = 180
    masked[0, 0, 24, 20] = 100  # the mask matches the skin at one pixel
    masked[1, 0, 5, 5] = 102  # below REGION_DIFF: compression-level noise, not a mask
    region = mask_region(masked, clean)
    assert int(region[0, 0, 24, 20]) == 1 and int(region[0].sum()) == 200
    assert int(region[1].sum()) == 0
    # a row without a region takes the median top of the others
    assert mask_top(region).tolist() == [20, 20]


def test_load_twins_refuses_files_that_are_not_twins(twin_files: tuple[Path, Path], tmp_path: Path) -> None:
    masked, clean = twin_files
    other = write_train_csv(tmp_path / "other.csv", 84, seed=1)
    lines = other.read_text().splitlines()
    lines[3] = "6" + lines[3][1:] if not lines[3].startswith("6") else "5" + lines[3][1:]
    other.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"not the unmasked twin .* row 2 has label"):
        load_twins(masked, other)
    with pytest.raises(ValueError, match="84 rows vs 83|83 rows vs 84"):
        short = tmp_path / "short.csv"
        short.write_text("\n".join(clean.read_text().splitlines()[:-1]) + "\n")
        load_twins(masked, short)
    with pytest.raises(ValueError, match="nothing is masked"):
        load_twins(clean, clean)


def test_refill_changes_only_the_region_and_blank_below_only_below_the_top() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.linspace(-1, 1, 8 * 48 * 48).reshape(8, 1, 48, 48)
    region = torch.zeros(8, 1, 48, 48)
    region[:, :, 30:, :] = 1
    out = refill_region(x, region, 1.0, gen)
    assert torch.equal(out[:, :, :30], x[:, :, :30])
    assert not torch.equal(out[:, :, 30:], x[:, :, 30:])
    assert torch.equal(refill_region(x, region, 0.0, gen), x)
    blanked = blank_below(x, torch.tensor([10] * 4 + [48] * 4))
    assert torch.equal(blanked[:4, :, :10], x[:4, :, :10]) and bool((blanked[:4, :, 10:] == 0).all())
    assert torch.equal(blanked[4:], x[4:])


def test_twin_batch_picks_masked_or_clean_per_image() -> None:
    gen = torch.Generator().manual_seed(0)
    masked, clean = torch.ones(64, 1, 4, 4), -torch.ones(64, 1, 4, 4)
    region = torch.ones(64, 1, 4, 4)
    student, teacher, reg = twin_batch(masked, clean, region, torch.full((64,), 4), 0.5, 0.0, False, gen)
    is_masked = student[:, 0, 0, 0] > 0
    assert 10 < int(is_masked.sum()) < 54  # both kinds in the batch
    assert torch.equal(teacher, clean)
    assert torch.equal(reg[:, 0, 0, 0] > 0, is_masked)  # a twin has no mask region
    all_clean, _, _ = twin_batch(masked, clean, region, torch.full((64,), 4), 0.0, 0.0, False, gen)
    assert torch.equal(all_clean, clean)


def test_cam_share_measures_the_map_inside_the_region_and_has_a_gradient() -> None:
    head = torch.nn.Conv2d(2, 3, 3, padding=1)
    with torch.no_grad():
        head.weight.zero_()
        head.weight[1, 0] = 1.0  # class 1 reads channel 0 only
    features = torch.zeros(1, 2, 6, 6)
    features[0, 0, 3:, :] = 1.0  # channel 0 fires twice as much in the lower half
    features[0, 0, :3, :] = 0.5
    features[0, 1] = 5.0
    features.requires_grad_(True)
    region = torch.zeros(1, 1, 48, 48)
    region[:, :, 24:, :] = 1  # the lower half of the image
    share = cam_share(features, head, torch.tensor([1]), region)
    assert float(share.detach()) == pytest.approx(2 / 3, abs=1e-4)
    share.backward()
    assert features.grad is not None and float(features.grad.abs().sum()) > 0
    region[:, :, 24:, :], region[:, :, :24, :] = 0, 1
    below = cam_share(features.detach(), head, torch.tensor([1]), region).detach()
    assert float(below) == pytest.approx(1 / 3, abs=1e-4)
    # no region: nothing to measure
    assert float(cam_share(features.detach(), head, torch.tensor([1]), torch.zeros(1, 1, 48, 48)).detach()) == 0.0


def test_mask_evidence_is_what_the_region_moves_the_prediction_by() -> None:
    from fer_models.twins import mask_evidence

    region = torch.zeros(2, 1, 48, 48)
    region[:, :, 24:, :] = 1  # the lower half
    class_map = torch.zeros(2, 3, 6, 6)
    class_map[:, 0, :3] = 2.0  # class 0: evidence in the upper half only
    class_map[:, 1, 3:] = 4.0  # class 1: evidence in the lower half (the mask) only
    bias = torch.tensor([0.5, -0.5, 0.0])
    class_map += bias[None, :, None, None]
    class_map.requires_grad_(True)
    logits = class_map.detach().mean(dim=(2, 3))
    without = logits - torch.tensor([0.0, 2.0, 0.0])  # class 1's evidence is all in the region (mean 4 x 1/2)
    p, q = torch.softmax(logits, 1), torch.softmax(without, 1)
    expected = float((p * (p.log() - q.log())).sum(1).mean())
    value = mask_evidence(class_map, bias, region)
    assert float(value.detach()) == pytest.approx(expected, rel=1e-5) and expected > 0.1
    value.backward()
    assert class_map.grad is not None and float(class_map.grad[:, :, 3:].abs().sum()) > 0
    # the same evidence for every class inside the region (any sign), or no region: nothing moves
    flat = torch.zeros(2, 3, 6, 6)
    flat[:, 0, :3] = 2.0
    flat[:, :, 3:] = -3.0
    assert float(mask_evidence(flat, None, region)) == pytest.approx(0.0, abs=1e-6)
    assert float(mask_evidence(class_map.detach(), bias, torch.zeros(2, 1, 48, 48))) == 0.0
    # an all-negative map (an empty Grad-CAM) whose region still separates the classes is not free
    negative = -torch.ones(2, 3, 6, 6)
    negative[:, 1, 3:] = -5.0
    assert float(mask_evidence(negative, None, region)) > 0.05


def test_distill_loss_is_zero_only_for_the_teachers_own_logits() -> None:
    t = torch.tensor([[2.0, 0.0, -1.0]])
    assert float(distill_loss(t, t, 4.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(distill_loss(torch.tensor([[0.0, 2.0, -1.0]]), t, 4.0)) > 0.01


def test_twin_step_makes_no_host_synchronisation(twin_files: tuple[Path, Path], tmp_path: Path) -> None:
    from torch import nn

    from fer_models.device import resolve
    from fer_models.engine import Engine
    from fer_models.models import create_model
    from fer_models.twins import TwinBatchSource

    twins = load_twins(*twin_files)
    config = train_config(twin_files[0], tmp_path / "run", recipe="default", model="mini_xception_cbam",
                          twin=str(twin_files[1]), refill=0.5, distill="x", cam_penalty=0.5, mask_evidence=0.5)
    torch.manual_seed(0)
    model = create_model("mini_xception_cbam", widths=[8, 16]).to(memory_format=torch.channels_last)
    teacher = create_model("mini_xception_cbam", widths=[8, 16]).eval()
    source = TwinBatchSource(clean=twins.clean, region=twins.region, top=twins.top, teacher=teacher)
    engine = Engine(model, config, resolve("cpu", "none"), twins.masked.images, twins.masked.labels,
                    nn.CrossEntropyLoss(), twins=source)
    engine.begin_epoch(0)
    before = [p.detach().clone() for p in model.parameters()]
    with host_reads_raise():
        for _ in range(3):
            engine.train_step()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert all(p.grad is None for p in teacher.parameters())


def test_twin_options_need_a_twin_and_are_checked(twin_files: tuple[Path, Path], tmp_path: Path) -> None:
    masked, clean = twin_files
    with pytest.raises(ValueError, match="^refill needs the unmasked twins"):
        train_config(masked, tmp_path / "r", refill=0.5).validate()
    with pytest.raises(ValueError, match="^refill, distill need the unmasked twins"):
        train_config(masked, tmp_path / "r", refill=0.5, distill="fer2013").validate()
    with pytest.raises(ValueError, match="mask_prob must be in"):
        train_config(masked, tmp_path / "r", twin=str(clean), mask_prob=1.5).validate()
    with pytest.raises(ValueError, match="mixup_alpha must be 0"):
        train_config(masked, tmp_path / "r", twin=str(clean), mixup_alpha=0.2).validate()
    with pytest.raises(ValueError, match="cam_penalty needs a Mini-Xception"):
        train_config(masked, tmp_path / "r", twin=str(clean), model="resnet18", cam_penalty=1.0).validate()
    with pytest.raises(ValueError, match="mask_evidence needs a Mini-Xception"):
        train_config(masked, tmp_path / "r", twin=str(clean), model="resnet18", mask_evidence=1.0).validate()
    with pytest.raises(ValueError, match="^mask_evidence needs the unmasked twins"):
        train_config(masked, tmp_path / "r", mask_evidence=1.0).validate()
    with pytest.raises(ValueError, match="mask_evidence must be >= 0"):
        train_config(masked, tmp_path / "r", twin=str(clean), mask_evidence=float("nan")).validate()
    # without --twin too: a twin option that differs from its default, or a value out of range, is refused
    with pytest.raises(ValueError, match="^mask_prob needs the unmasked twins"):
        train_config(masked, tmp_path / "r", mask_prob=0.9).validate()
    with pytest.raises(ValueError, match="cam_penalty must be >= 0"):
        train_config(masked, tmp_path / "r", cam_penalty=float("nan")).validate()
    with pytest.raises(ValueError, match="lr_gamma must be a positive number"):
        train_config(masked, tmp_path / "r", lr_gamma=float("nan")).validate()


def test_twin_run_reports_masked_and_unmasked_test_and_resumes_exactly(twin_files: tuple[Path, Path],
                                                                       tmp_path: Path) -> None:
    from fer_models.train import main

    masked, clean = twin_files
    teacher_run = tmp_path / "teacher"
    main(train_config(clean, teacher_run, epochs=1))
    kw = dict(twin=str(clean), refill=0.5, eyes_only=False, distill=str(teacher_run / "best.pt"), cam_penalty=0.5,
              mask_evidence=0.5, model="mini_xception_cbam", model_kwargs={"widths": [8, 16]})
    full = main(train_config(masked, tmp_path / "full", **kw))
    n_test = TRAIN_USAGE_CYCLE.count("PrivateTest") * 84 // len(TRAIN_USAGE_CYCLE)
    assert len(full["test_rows"]) == n_test
    assert 0 <= full["twin_test_acc"] <= 1 and "twin_test_acc" in full["tta_table"]["none"]
    assert json.loads((tmp_path / "full" / "test" / "metrics.json").read_text())["twin"] == str(clean)
    # interrupted after epoch 1 and resumed: the same weights
    assert main(train_config(masked, tmp_path / "half", **kw), stop_after=1) == {"stopped_after": 1}
    main(train_config(masked, tmp_path / "half", **kw), resume=True)
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["train"]["model"]
    b = torch.load(tmp_path / "half" / "checkpoint.pt", weights_only=True)["train"]["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a changed twin is other data: no resume
    label, pixels, usage = clean.read_text().splitlines()[1].split(",")
    first = pixels.split()
    first[0] = str((int(first[0]) + 1) % 256)  # one pixel of one face
    lines = clean.read_text().splitlines()
    lines[1] = f"{label},{' '.join(first)},{usage}"
    clean.write_text("\n".join(lines) + "\n")  # the twin changed in place
    with pytest.raises(ValueError, match="or its twin .* has changed"):
        main(train_config(masked, tmp_path / "half", **kw), resume=True)


def test_eyes_only_run_blanks_evaluated_faces(twin_files: tuple[Path, Path], tmp_path: Path) -> None:
    from fer_models.train import RunData

    masked, clean = twin_files
    config = train_config(masked, tmp_path / "r", twin=str(clean), eyes_only=True)
    run = RunData.load(config, None, torch.device("cpu"))
    for x in (run.val_x, run.test_x, run.twin_test_x):
        assert bool((x[:, :, MASK_TOP:] == 128).all()) and not bool((x[:, :, :MASK_TOP] == 128).all())
    assert run.val_x.shape[0] == len(run.val_y) == 2 * (84 // len(TRAIN_USAGE_CYCLE))  # masked and unmasked
