"""fer_models: Mini-Xception (+CBAM) and baselines for (masked) facial-expression recognition.

``import fer_models`` is light: torch (extra ``train``) is imported only when a
model is built or listed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

__all__ = ["create_model", "list_models", "list_weights"]


def create_model(name: str, num_classes: int = 7, pretrained: str | None = None, **kwargs: Any) -> "nn.Module":
    """Build registered model ``name`` (see :func:`fer_models.models.create_model`).

    ``pretrained="fer2013"`` (any name of :func:`list_weights`) loads shipped weights trained
    for ``name``; the model is then built with the options it was trained with and returned
    in eval mode.
    """
    from fer_models.models import create_model as _create_model

    if pretrained is None:
        return _create_model(name, num_classes=num_classes, **kwargs)
    from fer_models.pretrained import load_weights

    ckpt = load_weights(pretrained)
    trained = ckpt.train_config()
    if trained.model != name:
        raise ValueError(f"shipped weights {pretrained!r} are for {trained.model!r}, not {name!r}")
    if kwargs or num_classes != trained.num_classes:
        raise ValueError(f"shipped weights {pretrained!r} fix the model's options "
                         f"({trained.num_classes} classes, {trained.model_kwargs or 'defaults'})")
    return ckpt.build_model()


def list_weights() -> list[str]:
    """Names of the weights that ship with the package (``create_model(..., pretrained=NAME)``)."""
    from fer_models.pretrained import list_weights as _list_weights

    return _list_weights()


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted names of the registered models, optionally filtered by a glob pattern."""
    from fer_models.models import list_models as _list_models

    return _list_models(pattern)
