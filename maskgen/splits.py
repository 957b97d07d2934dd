"""Train / validation / test splits for FER2013-format data, shared by the audit and training.

Three kinds (see ``docs/splits.md``):

- ``usage``: the file's own ``Usage`` column: Training -> train, PublicTest -> val,
  PrivateTest -> test. For MFER2013 ``Usage`` follows the source FER2013 row, so a face and its
  masked copy always land on the same side.
- ``paper``: a seeded random 80/10/10 split over *rows*, as the MFER2013 paper does. On MFER2013
  it puts most faces on both sides (masked in train, unmasked in test or the other way round);
  kept only to reproduce the paper.
- ``grouped``: a seeded random 80/10/10 split over *sources* (the ``source`` column, the FER2013
  row an image comes from): all rows of one source go to the same side.

Every function returns ``{"train": idx, "val": idx, "test": idx}`` with int64 row indices in
increasing order; the three arrays are disjoint and together cover every row.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

SPLIT_KINDS = ("usage", "paper", "grouped")
SIDES = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
USAGE_TO_SIDE = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}

Split = dict[str, np.ndarray]


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or any(not np.isfinite(f) or f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1 (train, val, test), got {fractions}")
    return fr  # type: ignore[return-value]


def _counts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int]:
    """(n_train, n_val) for ``n`` items; test gets the rest."""
    n_train = int(round(fractions[0] * n))
    n_val = min(int(round(fractions[1] * n)), n - n_train)
    return n_train, n_val


def usage_split(usage: Sequence[str] | np.ndarray) -> Split:
    """Split by the ``Usage`` column: Training / PublicTest / PrivateTest -> train / val / test.

    Args:
        usage: (N,) strings, each one of ``USAGE_TO_SIDE``'s keys.
    """
    usage = np.asarray(usage, dtype=object)
    known = np.isin(usage, list(USAGE_TO_SIDE))
    if not known.all():
        k = int(np.flatnonzero(~known)[0])
        raise ValueError(f"usage split: row {k} has Usage {usage[k]!r}; expected one of {', '.join(USAGE_TO_SIDE)}")
    return {side: np.flatnonzero(usage == name).astype(np.int64) for name, side in USAGE_TO_SIDE.items()}


def paper_split(n: int, seed: int = 0, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> Split:
    """Seeded random split of ``n`` rows (row-level, ignores ``source``; leaks twins on MFER2013)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    fr = _check_fractions(fractions)
    order = np.random.default_rng(seed).permutation(n)
    n_train, n_val = _counts(n, fr)
    parts = (order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:])
    return {side: np.sort(p).astype(np.int64) for side, p in zip(SIDES, parts)}


def grouped_split(groups: Sequence[int] | np.ndarray, seed: int = 0,
                  fractions: Sequence[float] = DEFAULT_FRACTIONS) -> Split:
    """Seeded random split over groups: every row of one group lands on the same side.

    Groups are shuffled with ``numpy.random.default_rng(seed)`` and handed out in that order,
    train first, until each side holds its share of *rows* (a group never straddles a
    boundary, so the shares are met up to the size of one group).

    Args:
        groups: (N,) integer group id per row (MFER2013: the ``source`` column).
    """
    fr = _check_fractions(fractions)
    groups = np.asarray(groups)
    if groups.ndim != 1:
        raise ValueError(f"groups must be 1-D, got shape {groups.shape}")
    n = groups.size
    uniq, inverse, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(uniq.size)
    # rows covered after each group in shuffled order; a group goes to train while the rows
    # *before* it are fewer than the train target, etc.
    before = np.concatenate([[0], np.cumsum(sizes[order])[:-1]])
    n_train, n_val = _counts(n, fr)
    side_of_rank = np.where(before < n_train, 0, np.where(before < n_train + n_val, 1, 2))
    side_of_group = np.empty(uniq.size, np.int64)
    side_of_group[order] = side_of_rank
    side_of_row = side_of_group[inverse.reshape(-1)]
    return {side: np.flatnonzero(side_of_row == k).astype(np.int64) for k, side in enumerate(SIDES)}


def _column(data: Any, name: str) -> np.ndarray | None:
    """A column from a FerTable (``usage`` attribute or ``extra``) or a mapping of arrays."""
    if isinstance(data, Mapping):
        value = data.get(name)
        return None if value is None else np.asarray(value)
    if name == "usage":
        return getattr(data, "usage", None)
    extra = getattr(data, "extra", {}) or {}
    if name in extra:
        return np.asarray(extra[name])
    return None


def int_column(data: Any, name: str) -> np.ndarray | None:
    """Integer column ``name`` (e.g. ``source``, ``masked``) as (N,) int64, or None if absent.

    Raises:
        ValueError: a value is not an integer (names the 0-based row).
    """
    col = _column(data, name)
    if col is None:
        return None
    if col.dtype.kind in "iu":
        return col.astype(np.int64)
    out = np.empty(col.size, np.int64)
    for k, value in enumerate(col.tolist()):
        try:
            out[k] = int(str(value).strip())
        except ValueError:
            raise ValueError(f"column {name!r}: row {k} has {value!r}, expected an integer") from None
    return out


def _length(data: Any) -> int:
    if isinstance(data, Mapping):
        for value in data.values():
            if value is not None:
                return len(value)
        raise ValueError("no arrays given")
    return len(data)


def make_split(kind: str, data: Any, seed: int = 0, *,
               fractions: Sequence[float] = DEFAULT_FRACTIONS) -> Split:
    """Split rows of ``data`` into train / val / test.

    Args:
        kind: "usage", "paper" or "grouped".
        data: a :class:`maskgen.dataset.FerTable`, or a mapping with (N,) arrays under
            ``"usage"`` (needed for kind="usage") and/or ``"source"`` (for "grouped"; rows
            without a source column are their own group), or any mapping giving N via one array.
        seed: seeds "paper" and "grouped" (ignored by "usage").
        fractions: (train, val, test) shares for "paper" and "grouped".

    Returns:
        {"train", "val", "test"} -> (k,) int64 increasing row indices; disjoint, covering all rows.
    """
    if kind not in SPLIT_KINDS:
        raise ValueError(f"unknown split {kind!r}; expected one of {', '.join(SPLIT_KINDS)}")
    n = _length(data)
    if kind == "usage":
        usage = _column(data, "usage")
        if usage is None:
            raise ValueError("usage split needs a Usage column; use --split paper or grouped")
        return usage_split(usage)
    if kind == "paper":
        return paper_split(n, seed, fractions)
    source = int_column(data, "source")
    if source is None:
        source = np.arange(n, dtype=np.int64)
    return grouped_split(source, seed, fractions)
