"""Tests for maskgen.splits: seeded, disjoint, covering, grouped never straddles."""
from __future__ import annotations

import numpy as np
import pytest

from maskgen.dataset import read_fer_csv
from maskgen.splits import SIDES, grouped_split, int_column, make_split, paper_split, usage_split


def _check_partition(split: dict[str, np.ndarray], n: int) -> None:
    assert set(split) == set(SIDES)
    allidx = np.concatenate([split[s] for s in SIDES])
    assert allidx.dtype == np.int64
    assert np.array_equal(np.sort(allidx), np.arange(n))  # disjoint and covering
    for s in SIDES:
        assert np.all(np.diff(split[s]) > 0)


def test_usage_split_maps_columns():
    usage = np.array(["Training", "PrivateTest", "PublicTest", "Training", "PrivateTest"], dtype=object)
    split = usage_split(usage)
    assert split["train"].tolist() == [0, 3]
    assert split["val"].tolist() == [2]
    assert split["test"].tolist() == [1, 4]
    with pytest.raises(ValueError, match="row 1"):
        usage_split(["Training", "Test"])


@pytest.mark.parametrize("n", [0, 1, 7, 100, 1001])
def test_paper_split_partition_and_sizes(n):
    split = paper_split(n, seed=3)
    _check_partition(split, n)
    assert split["train"].size == round(0.8 * n)
    assert split["val"].size == min(round(0.1 * n), n - round(0.8 * n))


def test_paper_split_is_seeded():
    a, b, c = paper_split(500, 1), paper_split(500, 1), paper_split(500, 2)
    assert all(np.array_equal(a[s], b[s]) for s in SIDES)
    assert not np.array_equal(a["test"], c["test"])


def test_grouped_split_never_straddles_and_is_seeded():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(400), rng.integers(1, 4, 400))  # groups of 1..3 rows
    rng.shuffle(groups)
    n = groups.size
    split = grouped_split(groups, seed=5)
    _check_partition(split, n)
    sides = [set(groups[split[s]].tolist()) for s in SIDES]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    # shares met up to one group (max 3 rows)
    assert abs(split["train"].size - 0.8 * n) <= 3
    assert abs(split["val"].size - 0.1 * n) <= 4
    again = grouped_split(groups, seed=5)
    assert all(np.array_equal(split[s], again[s]) for s in SIDES)
    other = grouped_split(groups, seed=6)
    assert not np.array_equal(split["test"], other["test"])


def test_paper_split_leaks_pairs_grouped_does_not():
    source = np.repeat(np.arange(1000), 2)  # every face twice (unmasked + masked)
    paper = make_split("paper", {"source": source}, seed=0)
    grouped = make_split("grouped", {"source": source}, seed=0)
    twins_paper = np.isin(source[paper["test"]], source[paper["train"]]).mean()
    twins_grouped = np.isin(source[grouped["test"]], source[grouped["train"]]).mean()
    assert 0.7 < twins_paper < 0.9  # about 80% of test rows have their twin in train
    assert twins_grouped == 0


def test_make_split_on_table(small_fer):
    table = read_fer_csv(small_fer)
    for kind in ("usage", "paper", "grouped"):
        _check_partition(make_split(kind, table, seed=0), len(table))
    assert make_split("usage", table)["test"].tolist() == [4, 9]


def test_make_split_errors():
    with pytest.raises(ValueError, match="unknown split"):
        make_split("random", {"source": np.arange(3)})
    with pytest.raises(ValueError, match="Usage column"):
        make_split("usage", {"source": np.arange(3)})
    with pytest.raises(ValueError, match="fractions"):
        make_split("paper", {"source": np.arange(3)}, fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="row 1"):
        int_column({"source": np.array(["1", "x"], dtype=object)}, "source")
