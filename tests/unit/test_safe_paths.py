"""Ids in paths and keys are checked with a full match; paths built from them stay in their folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from personagraph.serving.safe_paths import (
    PathOutsideError,
    UnsafeIdError,
    check_id,
    child_path,
    confined_path,
)


@pytest.mark.parametrize("value", ["mina", "run-20261205_1", "mina.kim@shop", "A_1", "유나".encode().hex()])
def test_ordinary_ids_pass(value: str) -> None:
    assert check_id(value, "run_id") == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        ".",
        "..",
        "../x",
        "a/b",
        "a\\b",
        "a\n",
        "mina\n",
        ".hidden",
        "-rf",
        "a..b",
        "x" * 65,
        "유나",
        None,
        3,
    ],
)
def test_unsafe_ids_are_refused_naming_the_field(value: object) -> None:
    with pytest.raises(UnsafeIdError, match=r"^run_id: "):
        check_id(value, "run_id")


def test_child_path_stays_under_its_parent(tmp_path: Path) -> None:
    assert child_path(tmp_path, "a", "b.json") == (tmp_path / "a" / "b.json").resolve()
    with pytest.raises(PathOutsideError):
        child_path(tmp_path, "..", "etc")
    (tmp_path / "link").symlink_to("/etc")
    with pytest.raises(PathOutsideError):
        child_path(tmp_path, "link", "passwd")


def test_confined_path_refuses_the_same_way_whether_or_not_the_file_exists(tmp_path: Path) -> None:
    uploads, shipped = tmp_path / "uploads", tmp_path / "data"
    uploads.mkdir()
    shipped.mkdir()
    (uploads / "people.csv").write_text("id,profile\n1,x\n")
    assert confined_path("people.csv", [uploads, shipped], "source") == (uploads / "people.csv").resolve()
    assert confined_path(shipped / "x.csv", [uploads, shipped], "source") == (shipped / "x.csv").resolve()
    messages = []
    for outside in ("/etc/passwd", "/etc/no-such-file", "../../etc/passwd", str(uploads / ".." / "x.csv")):
        with pytest.raises(PathOutsideError, match=r"^source: ") as err:
            confined_path(outside, [uploads, shipped], "source")
        messages.append(str(err.value))
    assert len(set(messages)) == 1  # no hint whether the path exists
