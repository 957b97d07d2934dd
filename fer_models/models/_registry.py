"""Model registry (timm-style): register builders by name, build with ``create_model``.

A builder is a function ``builder(num_classes: int = 7, **kwargs) -> nn.Module``
decorated with :func:`register_model`; its function name is the model name.
Variants are configuration (``attention="cbam"``), registered as thin builders.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

from torch import nn

ModelBuilder = Callable[..., nn.Module]

#: FER2013 has 7 expression classes (angry, disgust, fear, happy, sad, surprise, neutral).
DEFAULT_NUM_CLASSES = 7

_model_entrypoints: dict[str, ModelBuilder] = {}


def register_model(fn: ModelBuilder) -> ModelBuilder:
    """Decorator: register ``fn`` under ``fn.__name__``; names must be unique."""
    name = fn.__name__
    if name in _model_entrypoints:
        raise ValueError(f"model {name!r} is already registered")
    _model_entrypoints[name] = fn
    return fn


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted registered model names, optionally filtered by a glob ``pattern``."""
    names = sorted(_model_entrypoints)
    if pattern is not None:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    return names


def is_model(name: str) -> bool:
    """True if ``name`` is a registered model."""
    return name in _model_entrypoints


def model_entrypoint(name: str) -> ModelBuilder:
    """The builder registered as ``name``; ValueError listing known names otherwise."""
    try:
        return _model_entrypoints[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; known models: {', '.join(list_models())}"
        ) from None


def create_model(name: str, num_classes: int = DEFAULT_NUM_CLASSES, **kwargs: object) -> nn.Module:
    """Build registered model ``name`` for ``num_classes`` classes.

    Extra keyword arguments go to the builder (e.g. ``attention="cbam"``,
    ``widths=(32, 64, 128, 256)``, ``in_chans=1``). Models take float input
    (N, in_chans, 48, 48) and return logits (N, num_classes).
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    return model_entrypoint(name)(num_classes=num_classes, **kwargs)


#: the most parameters a model built from command-line arguments may have (the largest registered model has
#: about 14 million); more is a typo (``widths=[100000]``), not an experiment this package can train
MAX_PARAMETERS = 200_000_000


def check_model_kwargs(name: str, kwargs: dict[str, object]) -> None:
    """Validate extra model arguments (``--model-kw``) before any work: ValueError naming the argument when
    the model does not take it, when it sets ``num_classes`` (which the data decides), when the model
    refuses its value, or when the model would have more than :data:`MAX_PARAMETERS` parameters. The model
    is built on the ``meta`` device: no memory is allocated for its weights."""
    import torch

    if "num_classes" in kwargs:
        raise ValueError("model argument num_classes is set by the data (7 FER2013 classes, 8 with FER+ labels), "
                         "not by a model argument")
    builder = model_entrypoint(name)
    try:
        with torch.device("meta"):
            model = builder(num_classes=DEFAULT_NUM_CLASSES, **kwargs)
    except TypeError as exc:
        if "keyword argument" not in str(exc):
            raise
        bad = str(exc).rsplit(" ", 1)[-1]
        raise ValueError(f"model {name!r} takes no argument {bad} ({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
                         ) from None
    except ValueError as exc:
        raise ValueError(f"model {name!r}: {exc}") from None
    n = sum(p.numel() for p in model.parameters())
    if n > MAX_PARAMETERS:
        raise ValueError(f"model {name!r} with {kwargs} would have {n:,} parameters (at most {MAX_PARAMETERS:,})")
