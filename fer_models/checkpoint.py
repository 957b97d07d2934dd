"""The one checkpoint type, and the one way from a checkpoint, shipped name or ONNX file to a model.

A checkpoint is written as a plain dict of tensors and plain values (``torch.save``) and read
with ``torch.load(weights_only=True)``: no code runs when a file is loaded. On disk::

    version       CHECKPOINT_VERSION
    model         the weights to predict with (the EMA's when it scored higher that epoch)
    config        the run's TrainConfig as a dict
    class_names   the model's output classes, in order
    epoch, best_val_acc, best_epoch, selected ("raw" or "ema"), resolved (device, amp, CPU)
    data_sha256   checksum of the training data (file, or folder contents)   [training runs]
    train         resumable state (:class:`fer_models.engine.Engine` state, raw weights, RNG) [not shipped]

:class:`Checkpoint` is that dict as a dataclass: :meth:`Checkpoint.load` validates a file and
says in one line what is wrong with it (:class:`CheckpointError`), :meth:`Checkpoint.save`
writes atomically. :func:`load_model` turns ``--checkpoint`` / ``--weights`` / an ``.onnx``
file into a ready model on a device.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from fer_models.config import RECIPES, TrainConfig
from maskgen.dataset import EMOTIONS
from maskgen.io import atomic_write

if TYPE_CHECKING:
    from torch import nn

    from fer_models.device import Placement

#: Bump when the checkpoint dict changes incompatibly for inference.
CHECKPOINT_VERSION = 1
#: Bump when the resumable ``train`` state changes (a run saved by an older engine is not resumed).
TRAIN_STATE_VERSION = 2


class CheckpointError(ValueError):
    """A file that is not a usable fer_models checkpoint; the message names the file and the problem."""


def config_from_state(saved: dict[str, Any]) -> TrainConfig:
    """The :class:`TrainConfig` of a checkpoint's ``config`` dict.

    Checkpoints written before recipes existed (no ``recipe`` key) were trained with the
    paper's recipe, so their missing fields come from ``RECIPES["paper"]``.
    """
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    base = {} if "recipe" in saved else {**RECIPES["paper"], "recipe": "paper"}
    return TrainConfig(**{**base, **{k: v for k, v in saved.items() if k in names}})


@dataclass
class Checkpoint:
    """A trained model and how it was made; ``train`` holds the resumable state of a training run."""

    model: dict[str, Any]
    config: dict[str, Any]
    class_names: list[str] = field(default_factory=lambda: list(EMOTIONS))
    epoch: int = 0
    best_val_acc: float = -1.0
    best_epoch: int = -1
    selected: str = "raw"
    resolved: dict[str, Any] = field(default_factory=dict)
    data_sha256: str | None = None
    train: dict[str, Any] | None = None
    path: Path | None = field(default=None, compare=False)
    version: int = CHECKPOINT_VERSION

    # ---- dict <-> dataclass

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "path"}
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_dict(cls, state: Any, path: str | os.PathLike | None = None) -> Checkpoint:
        """Validate a loaded dict (see :meth:`validate`) and wrap it."""
        where = str(path) if path is not None else "checkpoint"
        if not isinstance(state, dict):
            raise CheckpointError(f"{where}: not a fer_models checkpoint (holds a {type(state).__name__}, not a dict)")
        if state.get("version") != CHECKPOINT_VERSION:
            raise CheckpointError(f"{where}: not a fer_models checkpoint (format version {state.get('version')!r}, "
                                  f"expected {CHECKPOINT_VERSION})")
        for key in ("model", "config"):
            if not isinstance(state.get(key), dict):
                raise CheckpointError(f"{where}: not a complete fer_models checkpoint (no {key!r} entry)")
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in state.items() if k in names and k != "path"}
        if "train" not in known and "optimizer" in state:  # written by the engine before TRAIN_STATE_VERSION 2
            known["train"] = {"version": 1}
        ckpt = cls(**known, path=Path(path) if path is not None else None)
        ckpt.validate()
        return ckpt

    def validate(self) -> None:
        """Raise :class:`CheckpointError` if the config, class names or weights do not fit together."""
        where = str(self.path) if self.path is not None else "checkpoint"
        try:
            config = self.train_config()
            config.validate()
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{where}: its training configuration is not valid ({exc})") from None
        if len(self.class_names) != config.num_classes:
            raise CheckpointError(f"{where}: {len(self.class_names)} class names for a model with "
                                  f"{config.num_classes} outputs")

    # ---- files

    @classmethod
    def load(cls, path: str | os.PathLike) -> Checkpoint:
        """Read and validate a checkpoint file (``weights_only=True``: loading runs no code).

        Raises:
            FileNotFoundError: no file at ``path``.
            CheckpointError: empty, truncated, not a torch file, or not a fer_models checkpoint.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint at {path}")
        if path.stat().st_size == 0:
            raise CheckpointError(f"{path}: empty file, not a checkpoint")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 (any file: torch's legacy unpickler raises IndexError, TypeError, ...)
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if "Weights only load failed" in reason:
                reason = "it holds objects other than tensors and plain values (refused: weights_only=True)"
            raise CheckpointError(f"{path}: cannot be read as a checkpoint (truncated, or not a torch file: "
                                  f"{reason[:160]})") from None
        return cls.from_dict(state, path)

    def save(self, path: str | os.PathLike) -> None:
        """``torch.save`` to a temporary name, then rename (never a half-written checkpoint)."""
        with atomic_write(Path(path)) as tmp:
            torch.save(self.to_dict(), tmp)

    # ---- what is in it

    def train_config(self) -> TrainConfig:
        return config_from_state(self.config)

    def inference_only(self) -> Checkpoint:
        """A copy without the resumable state and the data checksum (what ships)."""
        return dataclasses.replace(self, train=None, data_sha256=None)

    def resumable(self) -> bool:
        return self.train is not None and self.train.get("version") == TRAIN_STATE_VERSION

    def build_model(self) -> nn.Module:
        """The model with these weights, float32, eval mode, on the CPU.

        Raises:
            CheckpointError: the weights do not fit the model the config names.
        """
        from fer_models.models import create_model

        config = self.train_config()
        where = str(self.path) if self.path is not None else "checkpoint"
        try:
            model = create_model(config.model, num_classes=config.num_classes, **config.model_kwargs)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{where}: its model {config.model!r} {config.model_kwargs or ''} cannot be "
                                  f"built here ({str(exc).strip(chr(39))})") from None
        try:
            model.load_state_dict(self.model)
        except RuntimeError as exc:
            renamed = {"resnet18": "resnet18_cifar", "vit": "vit_p6"}
            hint = (f"; checkpoints of the old {config.model!r} load as {renamed[config.model]!r} (the name now "
                    "means the paper-cost network): set config['model'] accordingly") if config.model in renamed else ""
            raise CheckpointError(f"{where}: the weights do not fit {config.model!r} as registered now{hint} "
                                  f"({str(exc).splitlines()[0]})") from None
        model.eval()
        return model


# ---------------------------------------------------------------- sources of a model


def is_onnx(source: str | os.PathLike) -> bool:
    return str(source).lower().endswith(".onnx")


def model_sources(text: str | None, option: str = "--models") -> list[str]:
    """A comma-separated list of shipped weights names or checkpoint files, each checked to be one (None:
    every shipped name), without repeats, in the order given.

    Raises:
        ValueError: naming ``option``: an empty list, or an entry that is neither.
    """
    from fer_models.weights import list_weights

    shipped = list_weights()
    if text is None:
        return shipped
    sources = list(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    if not sources:
        raise ValueError(f"{option} {text!r}: no model named")
    for source in sources:
        if source not in shipped and not Path(source).is_file():
            raise ValueError(f"{option} {source!r}: neither shipped weights ({', '.join(shipped) or 'none'}) "
                             "nor a checkpoint file")
    return sources


def checkpoint_path(source: str | os.PathLike) -> Path:
    """The file of shipped weights named ``source`` (sha256 checked), or ``source`` itself if it is a file.

    Raises:
        ValueError: neither a shipped name nor an existing file.
    """
    from fer_models.weights import list_weights, verified_path, weights_index

    if str(source) in weights_index():
        return verified_path(str(source))
    if Path(source).is_file():
        return Path(source)
    raise ValueError(f"{str(source)!r} is neither shipped weights ({', '.join(list_weights()) or 'none'}) "
                     "nor a checkpoint file")


def load_checkpoint(source: str | os.PathLike) -> Checkpoint:
    """The checkpoint of a file or of shipped weights by name (see :func:`checkpoint_path`)."""
    return Checkpoint.load(checkpoint_path(source))


def load_model(source: Checkpoint | str | os.PathLike, placement: Placement | None = None
               ) -> tuple[nn.Module, Checkpoint]:
    """A ready model from a :class:`Checkpoint`, a checkpoint file or shipped weights by name: weights
    loaded, eval mode, on ``placement.device`` (default CPU), channels_last when trained so.

    ONNX files are not torch modules: use :class:`fer_models.export.OnnxClassifier` (``is_onnx``).
    """
    ckpt = source if isinstance(source, Checkpoint) else load_checkpoint(source)
    model = ckpt.build_model()
    if placement is not None:
        model = model.to(placement.device)
    if ckpt.train_config().channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, ckpt


def data_checksum(path: str | os.PathLike) -> str:
    """sha256 of a data file, or of a folder's contents (every file's relative path and sha256, sorted)."""
    import hashlib

    from maskgen.io import file_sha256

    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{item.relative_to(path).as_posix()}\0{file_sha256(item)}\n".encode())
    return digest.hexdigest()

