"""Training configuration and recipes: the one home of every training default (no torch here).

:class:`TrainConfig`'s field defaults are the ``default`` recipe; :data:`RECIPES` holds the
others as overrides (``paper``: the paper's recipe exactly). ``fer-models train`` builds its
options and their help texts from these (``--recipe`` picks the recipe, each option
overrides one value), so a default is written once.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fer_models.labels import FERPLUS_CLASSES, LABEL_MODES, parse_labels_option
from maskgen.dataset import EMOTIONS
from maskgen.splits import SPLIT_KINDS

if TYPE_CHECKING:
    from fer_models.data import AugmentConfig

DEVICE_CHOICES = ("auto", "cpu", "cuda")  # "cuda:N" is accepted too
AMP_CHOICES = ("auto", "bf16", "fp16", "none")
#: Capture the training step in one CUDA graph: ``auto`` = whenever training runs on CUDA.
CUDA_GRAPH_CHOICES = ("auto", "on", "off")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "step")
#: Config fields that may differ between a run and its ``--resume`` (``epochs`` only with the step schedule).
RESUME_MUTABLE = frozenset({"epochs", "threads", "progress", "eval_batch_size", "compile", "device", "cuda_graph"})
#: Test-time augmentation (:func:`tta_views`): softmax averaged over the face and its mirror
#: (``flip``), or over 10 views: those two and each shifted by 2 pixels four ways (``ten``).
TTA_CHOICES = ("none", "flip", "ten")


@dataclass
class TrainConfig:
    """Everything that defines a training run. Field defaults are the ``default`` recipe.

    The ``default`` recipe (65.8 % FER2013 PrivateTest at 100 epochs; the element-by-element
    table is in docs/results.md): SGD + Nesterov momentum, weight decay, cosine schedule with
    warm-up, label smoothing, no class weights, geometric augmentation plus random erasing, an
    EMA candidate, horizontal-flip test-time augmentation. ``RECIPES["paper"]`` holds
    the paper's recipe (Adam 1e-3, x0.1 every 30 epochs, class-weighted cross-entropy).

    ``init`` starts from trained weights instead of random ones (fine-tuning): the name of
    shipped weights (``fer2013``; ``fer_models.weights``) or a checkpoint path; the model must match.

    ``lr_step`` is in epochs (``schedule="step"``). ``device`` / ``amp`` are resolved by
    :func:`fer_models.device.resolve` (``auto``: CUDA if present; bf16 only where the hardware
    computes it natively).

    ``twin`` names the unmasked file whose rows are the twins of ``data``'s masked rows (an SMFER2013
    and the FER2013 it was built from); it enables ``mask_prob``, ``refill``, ``eyes_only``,
    ``distill`` (a teacher, shipped name or checkpoint, that sees the twin), ``distill_weight``,
    ``distill_temp``, ``cam_penalty`` and ``mask_evidence`` (:mod:`fer_models.twins`).
    """

    data: str
    out: str
    model: str = "mini_xception_cbam"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    num_classes: int = len(EMOTIONS)
    recipe: str = "default"
    split: str = "usage"
    seed: int = 0
    epochs: int = 100
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: int = 2
    lr_step: int = 30
    lr_gamma: float = 0.1
    label_smoothing: float = 0.1
    class_weighted: bool = False
    augment: bool = True
    rotation_deg: float = 15.0
    translate: float = 0.1
    scale: float = 0.15
    hflip: bool = True
    erase_prob: float = 0.5
    mixup_alpha: float = 0.0
    ema_decay: float = 0.999
    tta: str = "flip"
    labels: str | None = None
    init: str | None = None
    label_mode: str = "majority"
    twin: str | None = None
    mask_prob: float = 0.5
    refill: float = 0.0
    eyes_only: bool = False
    distill: str | None = None
    distill_weight: float = 0.5
    distill_temp: float = 4.0
    cam_penalty: float = 0.0
    mask_evidence: float = 0.0
    channels_last: bool = True
    device: str = "auto"
    amp: str = "auto"
    compile: bool = False
    cuda_graph: str = "auto"
    threads: int | None = None
    eval_batch_size: int = 256
    max_steps_per_epoch: int | None = None
    progress: bool = True

    def validate(self) -> None:
        """Raise ValueError on an impossible setting."""
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1 or self.lr_step < 1:
            raise ValueError("epochs, batch_size, eval_batch_size and lr_step must be >= 1")
        for name in ("lr", "lr_gamma"):
            if not (getattr(self, name) > 0 and math.isfinite(getattr(self, name))):
                raise ValueError(f"{name} must be a positive number, got {getattr(self, name)}")
        checks = [("recipe", RECIPES), ("amp", AMP_CHOICES), ("optimizer", OPTIMIZERS), ("split", SPLIT_KINDS),
                  ("schedule", SCHEDULES), ("tta", TTA_CHOICES), ("label_mode", LABEL_MODES),
                  ("cuda_graph", CUDA_GRAPH_CHOICES)]
        for name, choices in checks:
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {tuple(choices)}, got {getattr(self, name)!r}")
        ranges = [("weight_decay", 0, math.inf), ("momentum", 0, 1), ("label_smoothing", 0, 1),
                  ("erase_prob", 0, 1 + 1e-12), ("mixup_alpha", 0, math.inf), ("ema_decay", 0, 1)]
        for name, lo, hi in ranges:
            value = getattr(self, name)
            if not lo <= value < hi:
                raise ValueError(f"{name} must be >= {lo} and below {hi:g}, got {value}")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if not (0 <= self.scale < 1 and 0 <= self.translate < 1 and 0 <= self.rotation_deg <= 180):
            raise ValueError(f"augmentation out of range: scale {self.scale} and translate {self.translate} must be "
                             f"in [0, 1), rotation {self.rotation_deg} in [0, 180]")
        if self.label_mode != "majority" and self.labels is None:
            raise ValueError("label_mode is for FER+ labels: give labels=ferplus=VOTES.csv too")
        if self.labels is not None:
            parse_labels_option(self.labels)
            if self.num_classes != len(FERPLUS_CLASSES):
                raise ValueError(f"FER+ labels have {len(FERPLUS_CLASSES)} classes, num_classes is {self.num_classes}")
        self._validate_twin_options()
        if self.threads is not None and self.threads < 1:
            raise ValueError("threads must be >= 1")
        from maskgen.parallel import check_threads

        check_threads(self.threads)  # a huge count crashed torch.set_num_threads (a segmentation fault)
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ValueError("max_steps_per_epoch must be >= 1")
        from fer_models.models import list_models

        if self.model not in list_models():
            raise ValueError(f"unknown model {self.model!r}; known models: {', '.join(list_models())}")

    def _validate_twin_options(self) -> None:
        for name, lo, hi in (("mask_prob", 0, 1), ("refill", 0, 1), ("distill_weight", 0, 1)):
            value = getattr(self, name)
            if not (math.isfinite(value) and lo <= value <= hi):
                raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
        if not (math.isfinite(self.distill_temp) and self.distill_temp > 0):
            raise ValueError(f"distill_temp must be > 0, got {self.distill_temp}")
        for name in ("cam_penalty", "mask_evidence"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be >= 0 (a finite number), got {getattr(self, name)}")
        if self.twin is None:
            defaults = {f.name: f.default for f in dataclasses.fields(self)}
            used = [name for name in ("mask_prob", "refill", "eyes_only", "distill", "distill_weight", "distill_temp",
                                      "cam_penalty", "mask_evidence") if getattr(self, name) != defaults[name]]
            if used:
                raise ValueError(f"{', '.join(used)} {'needs' if len(used) == 1 else 'need'} the unmasked twins: "
                                 "give twin=FER2013.csv too")
            return
        if self.mixup_alpha > 0:
            raise ValueError("twin training does not mix images (mixup_alpha must be 0): the twin, the region and "
                             "the teacher's view would not follow the mix")
        if self.labels is not None:
            raise ValueError("twin training uses the FER2013 labels of both files; it cannot be combined with labels=")
        for name in ("cam_penalty", "mask_evidence"):
            if getattr(self, name) > 0 and not self.model.startswith("mini_xception"):
                raise ValueError(f"{name} needs a Mini-Xception model (blocks + class conv head), not {self.model}")

    def augment_config(self) -> AugmentConfig:
        """The geometric augmentation of this config (the only place an AugmentConfig is made)."""
        from fer_models.data import AugmentConfig

        return AugmentConfig(self.rotation_deg, self.translate, self.scale, self.hflip)

    @classmethod
    def from_recipe(cls, recipe: str = "default", **options: Any) -> TrainConfig:
        """A config from recipe ``recipe`` with ``options`` on top (``None`` values are ignored).

        Raises:
            ValueError: unknown recipe or option.
        """
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; expected one of {', '.join(RECIPES)}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise ValueError(f"unknown training option(s): {', '.join(unknown)}")
        given = {k: v for k, v in options.items() if v is not None}
        if given.get("labels") and "num_classes" not in given:
            given["num_classes"] = len(FERPLUS_CLASSES)
        return cls(**{**RECIPES[recipe], **given, "recipe": recipe})


#: Named recipes: overrides of the :class:`TrainConfig` field defaults (``default`` is those defaults).
RECIPES: dict[str, dict[str, Any]] = {
    "default": {},
    "paper": {
        "epochs": 100, "batch_size": 64, "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0,
        "schedule": "step", "warmup_epochs": 0, "lr_step": 30, "lr_gamma": 0.1, "label_smoothing": 0.0,
        "class_weighted": True, "rotation_deg": 20.0, "translate": 0.1, "scale": 0.1, "hflip": True,
        "erase_prob": 0.0, "mixup_alpha": 0.0, "ema_decay": 0.0, "tta": "none",
    },
}


def recipe_value(recipe: str, name: str) -> Any:
    """The value of option ``name`` in ``recipe`` (for ``--help`` texts and docs)."""
    if name in RECIPES[recipe]:
        return RECIPES[recipe][name]
    f = next(f for f in dataclasses.fields(TrainConfig) if f.name == name)
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


__all__ = ["AMP_CHOICES", "DEVICE_CHOICES", "OPTIMIZERS", "RECIPES", "RESUME_MUTABLE", "SCHEDULES", "TTA_CHOICES",
           "TrainConfig", "recipe_value"]
