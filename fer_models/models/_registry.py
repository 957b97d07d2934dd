"""Model registry (timm-style): register builders by name, build with ``create_model``.

A builder is a function ``builder(num_classes: int = 7, **kwargs) -> nn.Module``
decorated with :func:`register_model`; its function name is the model name.
Variants are configuration (``attention="cbam"``), registered as thin builders.
"""

from __future__ import annotations

import fnmatch
import numbers
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


#: the longest text of one value, or of a reason, in check_model_kwargs' messages
_SHORT = 60


def _short(text: str, limit: int = _SHORT) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _show(kwargs: dict[str, object]) -> str:
    """``k=v, ...`` with each value's repr cut short."""
    return ", ".join(f"{k}={_short(repr(v), 40)}" for k, v in kwargs.items())


def _is_int(value: object) -> bool:
    """An integer (numpy's too), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_positive_ints(**values: object) -> None:
    """For model constructors: ValueError naming the first argument that is not a positive integer."""
    for name, value in values.items():
        if not _is_int(value) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {_short(repr(value), 40)}")


def check_int_list(name: str, value: object, length: int | None = None) -> tuple[int, ...]:
    """For model constructors: ``value`` as a tuple of positive ints (``length`` of them, if given); ValueError
    naming ``name`` otherwise (a string, an empty list, a float or a zero in it)."""
    ok = (isinstance(value, (list, tuple)) and len(value) > 0 and (length is None or len(value) == length)
          and all(_is_int(v) and v >= 1 for v in value))
    if not ok:
        what = f"a list of {length}" if length else "a non-empty list of"
        raise ValueError(f"{name} must be {what} positive integers, got {_short(repr(value), 40)}")
    return tuple(int(v) for v in value)


def check_model_kwargs(name: str, kwargs: dict[str, object]) -> None:
    """Validate extra model arguments (``--model-kw``) before any work: ValueError naming the argument when
    the model does not take it, when it sets ``num_classes`` (which the data decides), when the model
    refuses its value (any exception while building it becomes a short ValueError naming the argument(s)
    that fail), or when the model would have more than :data:`MAX_PARAMETERS` parameters. The model
    is built on the ``meta`` device: no memory is allocated for its weights."""
    import torch

    if "num_classes" in kwargs:
        raise ValueError("model argument num_classes is set by the data (7 FER2013 classes, 8 with FER+ labels), "
                         "not by a model argument")
    builder = model_entrypoint(name)

    def build(kw: dict[str, object]) -> nn.Module:
        with torch.device("meta"):
            return builder(num_classes=DEFAULT_NUM_CLASSES, **kw)

    try:
        model = build(kwargs)
    except TypeError as exc:
        if "unexpected keyword argument" not in str(exc):
            raise ValueError(_refused(name, kwargs, exc, build)) from None
        bad = str(exc).rsplit(" ", 1)[-1]
        raise ValueError(f"model {name!r} takes no argument {_short(bad)} ({_show(kwargs)})") from None
    except Exception as exc:  # noqa: BLE001 - whatever the model raises on a value it cannot use: one line
        raise ValueError(_refused(name, kwargs, exc, build)) from None
    n = sum(p.numel() for p in model.parameters())
    if n > MAX_PARAMETERS:
        raise ValueError(f"model {name!r} with {_show(kwargs)} would have {n:,} parameters "
                         f"(at most {MAX_PARAMETERS:,})")


def _refused(name: str, kwargs: dict[str, object], exc: Exception,
             build: Callable[[dict[str, object]], nn.Module]) -> str:
    """One short line for a model that ``kwargs`` cannot build: the argument(s) that fail on their own (else all
    of them, together) and the model's reason."""
    alone = []
    for key, value in kwargs.items():
        try:
            build({key: value})
        except Exception:  # noqa: BLE001 - only which argument fails matters here
            alone.append(key)
    named = {k: kwargs[k] for k in alone} if alone else kwargs
    if isinstance(exc, ValueError):  # the model's own check: it names its argument(s) as a rule
        reason = _short(str(exc), 120)
        if all(k in reason for k in named):
            return f"model {name!r}: {reason}"
    else:
        reason = _short(f"{type(exc).__name__}: {exc}", 120)
    together = "" if alone or len(kwargs) < 2 else " together"
    return f"model {name!r} cannot be built with {_show(named)}{together}: {reason}"
