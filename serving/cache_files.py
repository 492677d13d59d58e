"""Best-effort cache files (embeddings, trained classifiers): written whole or not at all."""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO, TypeVar

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


def load_or_build(path: Path, build: Callable[[], T], expected: type[T]) -> T:
    """The object pickled at `path`, or `build()` stored there. The caller keys `path` by everything
    the build reads (data, code, library versions), so a stale file is never found; a damaged or
    unreadable one is rebuilt. Only for files this program wrote itself (pickle runs code)."""
    try:
        with path.open("rb") as stored:
            loaded = pickle.load(stored)
        if isinstance(loaded, expected):
            return loaded
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError):
        pass  # not built yet, or a damaged or outdated file: build and replace it
    built = build()
    write_cache_file(path, lambda out: pickle.dump(built, out, protocol=pickle.HIGHEST_PROTOCOL))
    return built
