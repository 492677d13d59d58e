"""Who answers a twin run, for a caller: selections, respondent files and uploads stay in their folders.

A caller from the app or the HTTP API (`caller.local` is False) may name files only in their own
upload folder (`uploads/<user id>/`, where `save_upload` puts what they upload) or in the shipped
data; relative paths are taken in the upload folder. The operator at the terminal (`CLI_CALLER`)
may name any path. Saved selections belong to an account: `selections/<user id>/NAME.json`.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from personagraph.accounts.identity import Caller
from personagraph.serving.safe_paths import check_id, child_path, confined_path
from personagraph.serving.safe_yaml import DataTooLargeError, read_text_file
from personagraph.serving.settings import get_settings
from personagraph.twins import respondents as domain
from personagraph.twins.respondents import Respondent, RespondentPool, Selection


class UploadTooLargeError(ValueError):
    """An upload over UPLOAD_MAX_BYTES (or a text over its own limit); the message names the field
    and the limit."""


def upload_folder(caller: Caller) -> Path:
    """The caller's own folder for uploaded files (not created here)."""
    return child_path(get_settings().uploads_dir, check_id(caller.user_id, "user"))


def file_roots(caller: Caller) -> list[Path] | None:
    """Where the caller may name files: None (anywhere) for the terminal operator, else their upload
    folder (first: relative paths are taken there) and the shipped data."""
    if caller.local:
        return None
    return [upload_folder(caller), get_settings().data_dir]


def confine(caller: Caller, path: str | Path, field: str) -> Path:
    """A path the caller named, resolved; for app/API callers it must be in their folders (else an
    error naming `field` that does not say whether the path exists)."""
    roots = file_roots(caller)
    return Path(path).expanduser() if roots is None else confined_path(path, roots, field)


def selections_folder(caller: Caller) -> Path:
    """The caller's saved selections."""
    return child_path(get_settings().personagraph_home / "selections", check_id(caller.user_id, "user"))


def parse_selection(caller: Caller, specs: Sequence[str], base: Selection | None = None) -> Selection:
    """A Selection from `--select` specs (see `twins.respondents.parse_select`), its paths confined
    to the caller's folders and `saved:NAME` read from the caller's own saved selections."""
    return domain.parse_select(specs, base, roots=file_roots(caller), saved_dir=selections_folder(caller))


def respondent_pool(caller: Caller, source: str = domain.TWIN2K) -> RespondentPool:
    """The respondents of `source` (twin2k, hf:PATH or a personas file), its path confined."""
    return domain.load_respondents(source, roots=file_roots(caller))


def select_respondents(
    caller: Caller, selection: Selection, pool: RespondentPool | None = None
) -> list[Respondent]:
    """The respondents a selection gives (its source loaded for the caller unless `pool` is given)."""
    return domain.select(selection, pool or respondent_pool(caller, selection.source))


def count_respondents(caller: Caller, selection: Selection, pool: RespondentPool | None = None) -> int:
    return domain.count(selection, pool or respondent_pool(caller, selection.source))


def save_selection(caller: Caller, selection: Selection, name: str) -> str:
    """Save the selection as the caller's `saved:NAME` (overwrites their own of that name); returns NAME."""
    selection = selection.model_copy(
        update={"source": domain.confine_source(selection.source, file_roots(caller))}
    )
    domain.save_selection(selection, name, selections_folder(caller))
    return name


def load_selection(caller: Caller, name: str) -> Selection:
    return domain.load_selection(name, selections_folder(caller))


def list_selections(caller: Caller) -> list[str]:
    """Names of the caller's saved selections."""
    return domain.list_selections(selections_folder(caller))


def safe_file_name(name: str, field: str = "file") -> str:
    """A file name for the upload folder: the base name, other characters replaced by `_`."""
    base = Path(name.replace("\\", "/")).name
    clean = re.sub(r"[^A-Za-z0-9_.@-]", "_", base)
    clean = re.sub(r"\.{2,}", ".", clean).lstrip(".-") or "upload"
    if len(clean) > 64:
        stem, dot, suffix = clean.rpartition(".")
        clean = f"{stem[: 63 - len(suffix)]}.{suffix}" if dot and len(suffix) < 16 else clean[:64]
    return check_id(clean, field)


def save_upload(caller: Caller, source: str | Path, name: str | None = None, field: str = "file") -> Path:
    """Copy an uploaded file (e.g. Gradio's temporary copy) into the caller's upload folder, so that
    every later read names a file there; returns the new path. Same name: replaced."""
    source = Path(source)
    limit = get_settings().upload_max_bytes
    if source.stat().st_size > limit:
        raise UploadTooLargeError(f"{field}: the file is over {limit} bytes (UPLOAD_MAX_BYTES)")
    folder = upload_folder(caller)
    folder.mkdir(parents=True, exist_ok=True)
    target = child_path(folder, safe_file_name(name or source.name, field))
    shutil.copyfile(source, target)
    return target


def read_text(caller: Caller, path: str | Path, field: str = "file") -> str:
    """The text of a survey or guide file the caller named (a shipped template, or one of their
    uploads): at most SURVEY_MAX_BYTES (UploadTooLargeError naming `field` otherwise)."""
    resolved = confine(caller, path, field)
    if not resolved.is_file():
        raise ValueError(f"{field}: no such file")
    try:
        return read_text_file(resolved, get_settings().survey_max_bytes, field, "SURVEY_MAX_BYTES")
    except DataTooLargeError as exc:
        raise UploadTooLargeError(str(exc)) from None


def read_upload_text(caller: Caller, source: str | Path, field: str = "file") -> str:
    """Save an uploaded survey or guide into the caller's folder (see `save_upload`) and return its
    text (at most SURVEY_MAX_BYTES)."""
    return read_text(caller, save_upload(caller, source, field=field), field)
