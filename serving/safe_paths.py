"""Ids used in file paths and keys, and paths that must stay inside their folder.

Every id that becomes part of a path or a storage key (run, persona, thread, user, card, upload)
is checked with a full match: no `.`/`..`, no separators, no trailing newline. Every path built
from one is resolved and asserted to stay under its parent before anything is read or written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

# Letters, digits, _ - and single inner dots or @ (account ids like "mina.kim@shop"); no "..".
SAFE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_@.\-]{0,63}")
SAFE_ID_RULE = "1-64 characters of letters, digits, _ - . @ (not starting with . or -, no ..)"


class UnsafeIdError(ValueError):
    """An id that cannot be used in a path or key; the message names the field and what is allowed."""


class PathOutsideError(PermissionError):
    """A path that resolves outside the folders it must stay in."""


def check_id(value: object, field: str, pattern: re.Pattern[str] = SAFE_ID, rule: str = SAFE_ID_RULE) -> str:
    """`value` if it fully matches `pattern` (and has no `..`), else UnsafeIdError naming `field`."""
    if not isinstance(value, str) or not pattern.fullmatch(value) or ".." in value:
        raise UnsafeIdError(f"{field}: {value!r} is not a valid id; use {rule}")
    return value


def child_path(parent: Path, *names: str) -> Path:
    """parent/names..., resolved, and asserted to stay under parent (symlinks included)."""
    base = parent.resolve()
    path = base.joinpath(*names).resolve()
    if path != base and not path.is_relative_to(base):
        raise PathOutsideError(f"{'/'.join(names)!r} leaves its folder")
    return path


def confined_path(value: str | Path, roots: Sequence[Path], field: str) -> Path:
    """A user-given path, resolved, if it lies under one of `roots`; else an error naming `field`.

    Relative paths are taken relative to the first root. The error does not say whether the path
    exists, so it cannot be used to probe the server's files.
    """
    if not roots:
        raise PathOutsideError(f"{field}: no folder is open for files")
    raw = Path(str(value)).expanduser()
    path = (raw if raw.is_absolute() else roots[0] / raw).resolve()
    for root in roots:
        if path.is_relative_to(root.resolve()):
            return path
    # Server paths are not named: the message is the same for every refused path.
    raise PathOutsideError(f"{field}: files must be in your upload folder or the shipped data")
