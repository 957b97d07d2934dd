"""maskgen.dataset: FER2013-format reading, validation errors, byte-identical writing."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from conftest import fer_csv_text, random_faces, write_gz
from maskgen.dataset import FerFormatError, FerTable, format_pixels, read_fer_csv, take_rows, write_fer_csv
from maskgen.io import atomic_write


def test_read_shapes_and_values(small_fer: Path) -> None:
    table = read_fer_csv(small_fer)
    assert table.images.shape == (10, 48, 48) and table.images.dtype == np.uint8
    assert np.array_equal(table.images, random_faces(10))
    assert table.emotion.tolist() == [i % 7 for i in range(10)]
    assert table.columns == ["emotion", "pixels", "Usage"]
    assert np.flatnonzero(table.usage == "PublicTest").tolist() == [3, 8]


def test_unchanged_write_is_byte_identical(small_fer: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    write_fer_csv(out, read_fer_csv(small_fer))
    assert out.read_bytes() == small_fer.read_bytes()


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("quoted", [False, True])
def test_format_preserved_for_changed_and_unchanged_rows(tmp_path: Path, newline: str, quoted: bool) -> None:
    images = random_faces(4, seed=1)
    extra = {"source": ["7", "8", "9", "10"], "note": ["a", "b", "c", "d"]}
    src = tmp_path / "in.csv"
    src.write_bytes(fer_csv_text(images, [0, 1, 2, 3], ["Training"] * 4, newline=newline, quoted=quoted,
                                 extra=extra).encode())
    table = read_fer_csv(src)
    assert table.extra == extra and table.newline == newline and table.quoted_pixels == quoted
    new = table.images.copy()
    new[1] = 255 - new[1]
    out = tmp_path / "out.csv"
    write_fer_csv(out, table, new)
    expected = fer_csv_text(new, [0, 1, 2, 3], ["Training"] * 4, newline=newline, quoted=quoted, extra=extra)
    assert out.read_bytes() == expected.encode()
    src_lines, out_lines = src.read_bytes().split(b"\n"), out.read_bytes().split(b"\n")
    assert [a == b for a, b in zip(src_lines, out_lines)] == [True, True, False, True, True, True]


def test_without_usage_and_gzip(tmp_path: Path) -> None:
    images = random_faces(3, seed=2)
    path = write_gz(tmp_path / "x.csv.gz", fer_csv_text(images, [6, 5, 4]))
    table = read_fer_csv(path)
    assert table.usage is None and table.columns == ["emotion", "pixels"]
    assert np.array_equal(table.images, images)


def test_in_memory_table_writes_standard_format(tmp_path: Path) -> None:
    images = random_faces(2, seed=3)
    table = FerTable(path=Path("mem"), images=images, emotion=np.array([1, 2]),
                     usage=np.array(["Training", "PrivateTest"], dtype=object))
    out = tmp_path / "mem.csv"
    write_fer_csv(out, table)
    assert out.read_text() == fer_csv_text(images, [1, 2], ["Training", "PrivateTest"])


@pytest.mark.parametrize("quoted", [False, True])
def test_take_rows_writes_the_chosen_rows_byte_identical(tmp_path: Path, quoted: bool) -> None:
    images = random_faces(6, seed=4)
    usages = ["Training", "PrivateTest", "PublicTest", "PrivateTest", "Training", "PrivateTest"]
    extra = {"source": [str(10 + i) for i in range(6)]}
    src = tmp_path / "in.csv"
    src.write_bytes(fer_csv_text(images, [0, 1, 2, 3, 4, 5], usages, newline="\r\n", quoted=quoted,
                                 extra=extra).encode())
    table = read_fer_csv(src)
    rows = np.flatnonzero(table.usage == "PrivateTest")
    sub = take_rows(table, rows)
    assert len(sub) == 3 and sub.usage.tolist() == ["PrivateTest"] * 3 and sub.emotion.tolist() == [1, 3, 5]
    assert np.array_equal(sub.images, images[rows]) and sub.extra == {"source": ["11", "13", "15"]}
    out = tmp_path / "private.csv"
    write_fer_csv(out, sub)
    src_lines = src.read_bytes().split(b"\r\n")
    assert out.read_bytes().split(b"\r\n") == [src_lines[0]] + [src_lines[1 + r] for r in rows] + [b""]
    # an in-memory table (no lines) too, and out-of-range rows are refused
    mem = take_rows(FerTable(path=Path("mem"), images=images, emotion=np.arange(6), usage=None), [5, 0])
    assert mem.emotion.tolist() == [5, 0] and mem.usage is None and mem.lines == []
    with pytest.raises(IndexError):
        take_rows(table, [6])


def test_format_pixels_roundtrip() -> None:
    img = np.arange(2304, dtype=np.int64).reshape(48, 48) % 256
    text = format_pixels(img.astype(np.uint8))
    assert text.split(" ")[:3] == ["0", "1", "2"] and len(text.split(" ")) == 2304


def _good_line(value: str = "0") -> str:
    return "3," + " ".join([value] + ["1"] * 2303) + ",Training"


BAD_FILES = {
    "wrong pixel count": ("emotion,pixels,Usage\n" + _good_line() + "\n3," + "1 " * 2302 + "1,Training\n",
                          r"line 3: pixels: expected 2304 values \(48x48\), found 2303"),
    "non-numeric pixel": ("emotion,pixels,Usage\n" + _good_line() + "\n" + _good_line("x7") + "\n",
                          r"line 3: pixels: 'x7' is not an integer 0..255"),
    "value 256": ("emotion,pixels,Usage\n" + _good_line("256") + "\n", r"line 2: pixels: value 256 is outside 0..255"),
    # 65536 wraps to 0 in int16: must be caught before the fast int16 parse, not after
    "value 65536": ("emotion,pixels,Usage\n" + _good_line() + "\n" + _good_line("65536") + "\n",
                    r"line 3: pixels: value 65536 is outside 0..255"),
    "negative value": ("emotion,pixels,Usage\n" + _good_line("-1") + "\n", r"line 2: pixels: '-1' is not an integer"),
    "missing column": ("emotion,Usage\n3,Training\n", r"line 1: missing column\(s\) pixels"),
    "bad label": ("emotion,pixels,Usage\n" + _good_line() + "\n" + _good_line().replace("3,", "7,", 1) + "\n",
                  r"line 3: emotion: '7' is not a label 0..6"),
    "unknown usage": ("emotion,pixels,Usage\n" + _good_line().replace("Training", "Train") + "\n",
                      r"line 2: Usage: unknown value 'Train'"),
    "field count": ("emotion,pixels,Usage\n" + _good_line() + ",extra\n", r"line 2: expected 3 fields"),
    "empty file": ("", r"line 1: empty file"),
    "header only": ("emotion,pixels,Usage\n", r"line 1: no data rows"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_malformed_input_errors(tmp_path: Path, case: str) -> None:
    text, message = BAD_FILES[case]
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(FerFormatError, match=message) as info:
        read_fer_csv(path)
    assert str(path) in str(info.value)


def test_truncated_gzip(tmp_path: Path) -> None:
    data = gzip.compress(fer_csv_text(random_faces(3), [0, 1, 2], ["Training"] * 3).encode())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FerFormatError, match="corrupt or truncated gzip"):
        read_fer_csv(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FerFormatError, match="no such file"):
        read_fer_csv(tmp_path / "nope.csv")


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_write(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole" and list(tmp_path.iterdir()) == [target]


from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays


@settings(max_examples=25, deadline=None)
@given(images=arrays(np.uint8, st.tuples(st.integers(1, 4), st.just(48), st.just(48))),
       newline=st.sampled_from(["\n", "\r\n"]), data=st.data())
def test_roundtrip_property(tmp_path_factory, images: np.ndarray, newline: str, data) -> None:
    """Any images and labels survive write -> read unchanged, and rewriting is byte-identical."""
    n = len(images)
    labels = data.draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
    usages = data.draw(st.lists(st.sampled_from(["Training", "PublicTest", "PrivateTest"]), min_size=n, max_size=n))
    folder = tmp_path_factory.mktemp("prop")
    src = folder / "in.csv"
    src.write_bytes(fer_csv_text(images, labels, usages, newline=newline).encode())
    table = read_fer_csv(src)
    assert np.array_equal(table.images, images) and table.emotion.tolist() == labels
    write_fer_csv(folder / "out.csv", table, table.images.copy())
    assert (folder / "out.csv").read_bytes() == src.read_bytes()


def test_atomic_write_gives_normal_permissions(tmp_path: Path) -> None:
    import os
    import stat

    target = tmp_path / "perm.csv"
    with atomic_write(target) as tmp:
        tmp.write_text("x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_long_number_check_across_slice_boundaries() -> None:
    """The fast path's 4-digit check scans in slices; a run across a slice border is still found."""
    from maskgen.dataset import _has_long_number

    assert not _has_long_number(b"") and not _has_long_number(b"255 0 17")
    assert _has_long_number(b"1 2 0255")
    for offset in range(-3, 2):
        buf = bytearray(b" " * ((1 << 24) + 8))
        at = (1 << 24) + offset
        buf[at:at + 4] = b"1234"
        assert _has_long_number(bytes(buf)), offset
