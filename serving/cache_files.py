"""Best-effort cache files (embeddings, trained classifiers): written whole or not at all, and read
as plain arrays (numpy without pickle), never as code: the cache folder may be shared."""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from personagraph.serving.settings import get_settings

T = TypeVar("T")


def keyed_cache_path(folder: str, stem: str, suffix: str, key_parts: Iterable[str]) -> Path:
    """`<cache>/<folder>/<stem>-<digest><suffix>`, the digest over everything the file depends on, so
    a change to any part names another file and a stale one is never read."""
    digest = hashlib.sha256("\x1e".join(key_parts).encode()).hexdigest()[:24]
    return get_settings().model_cache_dir.parent / folder / f"{stem}-{digest}{suffix}"


def write_cache_file(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write `path` through `write(file)` atomically: a concurrent reader sees the old file or the
    whole new one. A cache that cannot be written (read-only, disk full) only costs time, so an
    OSError is not raised."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with partial.open("wb") as out:
            write(out)
        partial.replace(path)
    except OSError:
        pass


def load_or_build_arrays(
    path: Path,
    build: Callable[[], T],
    *,
    decode: Callable[[Mapping[str, Any]], T],
    encode: Callable[[T], Mapping[str, Any]],
) -> T:
    """The object stored as plain numeric arrays at `path` (an .npz), or `build()` stored there.

    The cache folder is shared and writable, so a file in it is read as data only: numpy loads it
    with `allow_pickle=False` (an object array or a pickle is refused, never run), and `decode`
    checks every array and raises ValueError when one is missing or does not fit. A file that fails
    to load or decode (damaged, tampered with, from another version) is rebuilt and replaced.
    """
    import numpy as np

    try:
        stored = np.load(path, allow_pickle=False)
        if not isinstance(stored, np.lib.npyio.NpzFile):  # a lone .npy array is not ours either
            raise ValueError(f"{path} is not an .npz archive")
        with stored:
            return decode(stored)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        pass  # not built yet, or a file that is not ours to trust: build and replace it
    built = build()
    write_cache_file(path, lambda out: np.savez(out, **encode(built)))
    return built


def json_array(value: Any) -> Any:
    """`value` as JSON in a uint8 array, for names and vocabularies stored beside numeric arrays."""
    import json

    import numpy as np

    return np.frombuffer(json.dumps(value, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)


def array_json(arrays: Mapping[str, Any], key: str) -> Any:
    """The JSON value `json_array` stored under `key`; ValueError when it is not one."""
    import json

    try:
        return json.loads(bytes(checked_array(arrays, key, 1, kind="u")).decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{key}: not UTF-8 JSON") from exc


def checked_array(
    arrays: Mapping[str, Any],
    key: str,
    ndim: int,
    *,
    rows: int | None = None,
    columns: int | None = None,
    kind: str = "f",
) -> Any:
    """A stored array checked for its kind ("f" float, "u" bytes), dimensions, shape and (floats)
    finite values; ValueError naming the key otherwise."""
    import numpy as np

    if key not in arrays:
        raise ValueError(f"{key}: missing")
    value = np.asarray(arrays[key])
    if value.dtype.kind != kind or value.ndim != ndim:
        raise ValueError(
            f"{key}: expected a {ndim}-d array of kind {kind!r}, got {value.dtype} {value.shape}"
        )
    if (rows is not None and value.shape[0] != rows) or (columns is not None and value.shape[1] != columns):
        raise ValueError(f"{key}: shape {value.shape} does not fit ({rows}, {columns})")
    if kind == "f":
        value = value.astype(float, copy=False)
        if not np.isfinite(value).all():
            raise ValueError(f"{key}: not finite")
    return value


def string_list(value: Any, what: str) -> list[str]:
    """`value` checked to be a list of distinct strings (a vocabulary, class names)."""
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise ValueError(f"{what}: expected a list of strings")
    if len(set(value)) != len(value):
        raise ValueError(f"{what}: repeated entries")
    return value
