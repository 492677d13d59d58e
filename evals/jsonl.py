"""Reading eval datasets: JSONL objects with the file and line of a bad one in the error."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def read_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """("file:line", object) per non-blank line; a line that is not a JSON object raises ValueError."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
        yield where, row


def load_jsonl(paths: Path | Iterable[Path]) -> list[dict[str, Any]]:
    """Objects of one or more JSONL files, in order."""
    files = [paths] if isinstance(paths, Path) else list(paths)
    return [row for path in files for _, row in read_jsonl(path)]
