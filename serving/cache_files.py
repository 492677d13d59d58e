"""Best-effort cache files (embeddings, trained classifiers): written whole or not at all."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


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
