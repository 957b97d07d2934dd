"""FER+ labels (Barsoum et al. 2016) for FER2013 rows: majority or vote-distribution targets.

FER+ re-labelled every FER2013 image with 10 crowd votes over 8 emotions plus ``unknown`` and
``NF`` (not a face). The votes file (``ferplus_votes.csv``; FER+'s ``fer2013new.csv`` with an
``index`` column) has one row per FER2013 row, in the same order::

    index,Usage,image_name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF

Rules (those of the FER+ paper and its reference code):

- an emotion with a single vote is noise: its vote is dropped;
- a row is dropped if it has no votes, or if ``unknown`` or ``NF`` has the most votes (ties
  count against the row);
- ``majority``: the label is the emotion with more than half of the remaining emotion votes;
  rows without such a majority are dropped;
- ``soft``: the target is the distribution of the remaining emotion votes (cross-entropy
  against it); rows are scored against their majority label where they have one.

Classes are FER+'s 8, in this order (note: *not* FER2013's order, and ``contempt`` is new):
:data:`FERPLUS_CLASSES`. FER2013 -> FER+ names: angry -> anger, disgust -> disgust, fear ->
fear, happy -> happiness, sad -> sadness, surprise -> surprise, neutral -> neutral
(:data:`FERPLUS_TO_FER2013`; :func:`majority_as_fer2013` scores a FER2013 model on FER+ labels).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from maskgen.dataset import EMOTIONS

FERPLUS_CLASSES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
VOTE_COLUMNS = (*FERPLUS_CLASSES, "unknown", "NF")
LABEL_MODES = ("majority", "soft")
LABEL_SOURCES = ("ferplus",)
#: the largest vote count a cell may hold (FER+ has 10 votes per image; anything near int64 is not a vote)
MAX_VOTES = 1_000_000


@dataclass(frozen=True)
class FerPlusLabels:
    """FER+ targets for every row of a FER2013 file.

    Attributes:
        votes: (N, 10) int64 raw votes (0 for rows without FER+ votes).
        majority: (N,) int64 majority label in ``FERPLUS_CLASSES`` order, -1 where none.
        soft: (N, 8) float32 vote distribution (rows of zeros where dropped).
        keep_soft: (N,) bool, rows usable as soft targets.
        not_face: (N,) bool, rows where ``NF`` has more votes than any other answer.
    """

    votes: np.ndarray
    majority: np.ndarray
    soft: np.ndarray
    keep_soft: np.ndarray
    not_face: np.ndarray


def parse_labels_option(value: str) -> tuple[str, str]:
    """``"ferplus=VOTES.csv"`` -> ``("ferplus", "VOTES.csv")``; ValueError otherwise."""
    source, sep, path = value.partition("=")
    if not sep or source not in LABEL_SOURCES or not path:
        raise ValueError(f"--labels expects ferplus=VOTES.csv, got {value!r}")
    return source, path


def read_ferplus_votes(path: str | os.PathLike, n_rows: int) -> np.ndarray:
    """(n_rows, 10) int64 votes from a FER+ votes CSV, validated against the data file's row count.

    Raises:
        ValueError: missing columns, a row count or ``index`` that does not match, a bad vote
            (naming the file and line).
    """
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a FER+ votes file (not UTF-8 text: byte 0x{exc.object[exc.start]:02x} "
                         f"at offset {exc.start})") from None
    except (OSError, ValueError) as exc:  # pandas' ParserError and EmptyDataError are ValueErrors
        raise ValueError(f"{path}: cannot read FER+ votes: {' '.join(str(exc).split())}") from None
    missing = [c for c in VOTE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not a FER+ votes file, missing column(s) {', '.join(missing)}")
    if len(frame) != n_rows:
        raise ValueError(f"{path}: {len(frame)} vote rows for a data file of {n_rows} rows "
                         "(the votes must be in the data file's row order, one row each)")
    if "index" in frame.columns:
        expected = np.arange(n_rows).astype(str)
        bad = np.flatnonzero(frame["index"].to_numpy() != expected)
        if bad.size:
            raise ValueError(f"{path}, line {bad[0] + 2}: index {frame['index'].iloc[bad[0]]!r}, "
                             f"expected {bad[0]} (votes out of order)")
    votes = np.zeros((n_rows, len(VOTE_COLUMNS)), dtype=np.int64)
    for j, col in enumerate(VOTE_COLUMNS):
        cells = frame[col].to_numpy().astype(str)
        # ASCII digits only (str.isdigit also accepts '²' and other digits int() refuses), at most 7 of them;
        # an empty cell is refused too: a short (truncated) row reads as empty cells, which would count as 0
        ok = np.array([c.isascii() and c.isdigit() and len(c) <= 7 for c in cells], dtype=bool)
        if ok.all():
            votes[:, j] = cells.astype(np.int64)
            ok = votes[:, j] <= MAX_VOTES
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            raise ValueError(f"{path}, line {i + 2}: {col}: expected a vote count (0 to {MAX_VOTES:,}), "
                             f"found {str(cells[i])!r}")
    return votes


def ferplus_targets(votes: np.ndarray) -> FerPlusLabels:
    """Apply the FER+ rules (module docstring) to (N, 10) votes."""
    votes = np.asarray(votes, dtype=np.int64)
    k = len(FERPLUS_CLASSES)
    cleaned = np.where(votes == 1, 0, votes)
    emotions = cleaned[:, :k]
    total = emotions.sum(1)
    top_emotion = emotions.max(1)
    top_other = cleaned[:, k:].max(1)
    usable = (total > 0) & (top_emotion > top_other)
    majority = np.where(usable & (2 * top_emotion > total), emotions.argmax(1), -1).astype(np.int64)
    soft = np.zeros(emotions.shape, dtype=np.float32)
    soft[usable] = emotions[usable] / total[usable, None]
    not_face = votes[:, k + 1] > votes[:, :k + 1].max(1)
    return FerPlusLabels(votes, majority, soft, usable, not_face)


#: FER+ class name -> FER2013 class name (:data:`maskgen.dataset.EMOTIONS`); ``contempt`` has none
FERPLUS_TO_FER2013 = {"anger": "angry", "disgust": "disgust", "fear": "fear", "happiness": "happy",
                      "sadness": "sad", "surprise": "surprise", "neutral": "neutral"}


def majority_as_fer2013(majority: np.ndarray) -> np.ndarray:
    """FER+ majority labels (``FERPLUS_CLASSES`` order, -1 for none; :attr:`FerPlusLabels.majority`)
    as FER2013 labels (``EMOTIONS`` order), -1 where there is no majority or it is ``contempt``.

    Raises:
        ValueError: a label outside -1..7.
    """
    majority = np.asarray(majority, dtype=np.int64)
    if majority.size and (majority.min() < -1 or majority.max() >= len(FERPLUS_CLASSES)):
        raise ValueError(f"FER+ majority labels must be -1..{len(FERPLUS_CLASSES) - 1}")
    table = np.array([EMOTIONS.index(FERPLUS_TO_FER2013[c]) if c in FERPLUS_TO_FER2013 else -1
                      for c in FERPLUS_CLASSES] + [-1], dtype=np.int64)  # the last entry: index -1 (none)
    return table[majority]


__all__ = ["FERPLUS_CLASSES", "FERPLUS_TO_FER2013", "LABEL_MODES", "FerPlusLabels", "ferplus_targets",
           "majority_as_fer2013", "parse_labels_option", "read_ferplus_votes"]
