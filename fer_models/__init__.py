"""fer_models: Mini-Xception (+CBAM) and baselines for (masked) facial-expression recognition.

``import fer_models`` is light: torch (extra ``train``) is imported only when a
model is built or listed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

__all__ = ["create_model", "list_models"]


def create_model(name: str, num_classes: int = 7, **kwargs: Any) -> "nn.Module":
    """Build registered model ``name`` (see :func:`fer_models.models.create_model`)."""
    from fer_models.models import create_model as _create_model

    return _create_model(name, num_classes=num_classes, **kwargs)


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted names of the registered models, optionally filtered by a glob pattern."""
    from fer_models.models import list_models as _list_models

    return _list_models(pattern)
