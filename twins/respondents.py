"""Respondents (who the twins are) and selections (which of them answer).

Sources, all giving `Respondent(id, profile, attributes)`:

- `twin2k` (default): the shipped Twin-2K-500 copy, `data/twin2k/personas.csv` (2,058 people).
- a user file: CSV, JSON (a list, or `{"personas": [...]}`) or JSONL with a free-text `profile`
  column, an id column (`id`, `twin_id`, `pid`, `person_id` or `respondent_id`) and any attributes.
- `hf:PATH`: the full Hugging Face dataset `LLM-Digital-Twin/Twin-2K-500` when the user has it
  locally (see `load_hf_twin2k`); never downloaded at run time.

A `Selection` (ids, attribute filters, random n with a seed) is plain data: it serialises to JSON
and is saved as `NAME.json` in a folder the caller gives (each account has its own; see
`services/twins/selections.py`).

Paths: every function that reads a user-named path takes `roots`. `roots=None` is the operator at
the terminal (the CLI: any path); otherwise the path must resolve under one of `roots` (an
account's upload folder and the shipped data), checked before anything is read, with an error that
names the field and never says whether the path exists.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from personagraph.serving.safe_paths import check_id, child_path, confined_path
from personagraph.serving.settings import get_settings

TWIN2K = "twin2k"
HF_DATASET = "LLM-Digital-Twin/Twin-2K-500"
ID_COLUMNS = ("id", "twin_id", "pid", "person_id", "respondent_id")
PROFILE_COLUMN = "profile"

AttributeValue = str | float | None


class RespondentError(ValueError):
    """A respondent source or selection is invalid; the message names the field and what is allowed."""


class Respondent(BaseModel):
    """One person a twin simulates: a stable id, a free-text profile and filterable attributes."""

    model_config = ConfigDict(frozen=True)

    id: str
    profile: str = Field(min_length=1)
    attributes: dict[str, AttributeValue] = Field(default_factory=dict)
    source: str = TWIN2K


class RespondentPool:
    """Respondents from one source, with attribute kinds (categorical or numeric) for filtering."""

    def __init__(self, respondents: Sequence[Respondent], source: str):
        self.source = source
        self.respondents = list(respondents)
        self.by_id = {r.id: r for r in self.respondents}
        if len(self.by_id) != len(self.respondents):
            dupes = sorted(
                {r.id for r in self.respondents if sum(x.id == r.id for x in self.respondents) > 1}
            )
            raise RespondentError(f"{source}: duplicate respondent ids: {', '.join(dupes[:10])}")
        self.kinds: dict[str, str] = {}
        for r in self.respondents:
            for key, value in r.attributes.items():
                if value is None:
                    self.kinds.setdefault(key, "numeric")
                elif isinstance(value, str):
                    self.kinds[key] = "categorical"
                else:
                    self.kinds.setdefault(key, "numeric")

    def __len__(self) -> int:
        return len(self.respondents)

    def categories(self, attribute: str) -> list[str]:
        return sorted({str(v) for r in self.respondents if (v := r.attributes.get(attribute)) is not None})

    def numeric_range(self, attribute: str) -> tuple[float, float] | None:
        values = [
            float(v) for r in self.respondents if isinstance(v := r.attributes.get(attribute), float | int)
        ]
        return (min(values), max(values)) if values else None

    def get(self, ids: Iterable[str]) -> list[Respondent]:
        return [self.by_id[i] for i in ids]


# --- loading ---------------------------------------------------------------------------------------


def shipped_personas_path() -> Path:
    return get_settings().data_dir / "twin2k" / "personas.csv"


def _clean(value: Any) -> AttributeValue:
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        return None if isinstance(value, float) and math.isnan(value) else float(value)
    text = str(value).strip()
    return text or None


def _rows_to_respondents(rows: list[dict[str, Any]], source: str, where: str) -> list[Respondent]:
    if not rows:
        raise RespondentError(f"{where}: no respondents found")
    columns = set().union(*(row.keys() for row in rows))
    id_column = next((c for c in ID_COLUMNS if c in columns), None)
    if id_column is None:
        raise RespondentError(f"{where}: no id column; expected one of {', '.join(ID_COLUMNS)}")
    if PROFILE_COLUMN not in columns:
        raise RespondentError(f"{where}: missing the free-text '{PROFILE_COLUMN}' column")
    # A column is numeric when every non-empty value in it is a number.
    numeric = {
        c
        for c in columns - {id_column, PROFILE_COLUMN}
        if all(_as_number(row.get(c)) is not None for row in rows if _clean(row.get(c)) is not None)
    }
    out = []
    for n, row in enumerate(rows, start=1):
        raw_id = row.get(id_column)
        if raw_id is None or str(raw_id).strip() == "" or (isinstance(raw_id, float) and math.isnan(raw_id)):
            raise RespondentError(f"{where}: row {n}: empty '{id_column}'")
        person_id = (
            str(int(raw_id)) if isinstance(raw_id, float) and raw_id.is_integer() else str(raw_id).strip()
        )
        profile = _clean(row.get(PROFILE_COLUMN))
        if not isinstance(profile, str):
            raise RespondentError(f"{where}: row {n} (id {person_id}): empty '{PROFILE_COLUMN}'")
        attributes: dict[str, AttributeValue] = {}
        for key in sorted(columns - {id_column, PROFILE_COLUMN}):
            value = _clean(row.get(key))
            attributes[key] = _as_number(value) if key in numeric and value is not None else value
        out.append(Respondent(id=person_id, profile=profile, attributes=attributes, source=source))
    return out


def _as_number(value: Any) -> float | None:
    value = _clean(value)
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return None if math.isnan(number) else number
    return None


def _too_many_rows(path: Path, limit: int) -> RespondentError:
    return RespondentError(
        f"{path.name}: more than {limit} rows; the maximum is {limit} (RESPONDENTS_MAX_ROWS)"
    )


def _read_jsonl(path: Path, limit: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            if len(rows) >= limit:
                raise _too_many_rows(path, limit)
            row = json.loads(line)
            if not isinstance(row, dict):
                raise RespondentError(f"{path.name}: line {number}: expected a JSON object")
            rows.append(row)
    return rows


def _read_table(path: Path) -> list[dict[str, Any]]:
    """The rows of a respondents file, at most RESPONDENTS_MAX_ROWS (a RespondentError otherwise,
    raised before more rows are read); unreadable files are RespondentErrors too."""
    import pandas as pd

    limit = get_settings().respondents_max_rows
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, nrows=limit + 1)
            if len(frame) > limit:
                raise _too_many_rows(path, limit)
            return [dict(row) for row in frame.to_dict(orient="records")]
        if suffix == ".jsonl":
            return _read_jsonl(path, limit)
        if suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                data = data.get("personas", data.get("respondents"))
            if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
                raise RespondentError(f'{path}: expected a list of objects or {{"personas": [...]}}')
            if len(data) > limit:
                raise _too_many_rows(path, limit)
            return data
        if suffix == ".parquet":
            frame = _read_parquet(path, limit)
            return [dict(row) for row in frame.to_dict(orient="records")]
    except RespondentError:
        raise
    except RecursionError:
        raise RespondentError(f"{path.name}: nested too deeply") from None
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise RespondentError(f"{path.name}: cannot be read as {suffix[1:]}: {str(exc)[:200]}") from None
    raise RespondentError(f"{path}: unsupported file type {suffix!r}; allowed: .csv, .json, .jsonl, .parquet")


def _read_parquet(path: Path, limit: int) -> Any:
    """A parquet file as a frame; its row count is read from the metadata first, so an over-limit
    file is refused before it is decompressed."""
    import pandas as pd

    try:
        import pyarrow.parquet as pq

        if pq.ParquetFile(path).metadata.num_rows > limit:
            raise _too_many_rows(path, limit)
        return pd.read_parquet(path)
    except ImportError as exc:
        raise RespondentError(f"{path}: reading parquet needs pyarrow: pip install pyarrow") from exc


@lru_cache(maxsize=8)
def _load_file_cached(path: str, mtime: float, source: str) -> tuple[Respondent, ...]:
    return tuple(_rows_to_respondents(_read_table(Path(path)), source, path))


def load_user_personas(path: str | Path, *, source: str | None = None) -> RespondentPool:
    """Personas from a CSV / JSON / JSONL file with an id column and a free-text `profile`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise RespondentError(f"personas file not found: {path}")
    name = source or str(path)
    return RespondentPool(_load_file_cached(str(path.resolve()), path.stat().st_mtime, name), name)


def load_twin2k(path: str | Path | None = None) -> RespondentPool:
    """The shipped Twin-2K-500 respondents (or the same format at `path`)."""
    path = Path(path) if path else shipped_personas_path()
    pool = load_user_personas(path, source=TWIN2K)
    return pool


# Hugging Face layout (dataset card of LLM-Digital-Twin/Twin-2K-500), the ASSUMPTION this loader makes:
#   full_persona/chunks/*.parquet   columns pid, persona_text, persona_summary, persona_json
#   wave_split/chunks/*.parquet     columns pid, wave1_3_persona_text, wave1_3_persona_json,
#                                   wave4_Q_wave1_3_A, wave4_Q_wave4_A
# Any *.parquet / *.jsonl files with these columns are accepted (a snapshot folder, exported files).
HF_TEXT_FIELDS = {
    "wave_split": ("wave1_3_persona_text", "wave1_3_persona_json"),
    "full_persona": ("persona_text", "persona_summary", "persona_json"),
}


def load_hf_twin2k(
    path: str | Path | None = None,
    *,
    config: str = "auto",
    text_field: str = "auto",
    max_profile_chars: int | None = None,
) -> RespondentPool:
    """Twin-2K-500 from the Hugging Face dataset the user already has; never downloads.

    `path`: a folder with the dataset's parquet/jsonl files (e.g. a `snapshot_download` folder or
    `full_persona/chunks`). Without a path, the `datasets` library's offline cache is tried. The
    profile is the config's persona text (`wave1_3_persona_text` for `wave_split`, `persona_text`
    for `full_persona`, or `text_field`); the attributes come from the shipped copy by `pid`.
    """
    if config not in ("auto", *HF_TEXT_FIELDS):
        raise RespondentError(
            f"config: {config!r} is not allowed; allowed: auto, {', '.join(HF_TEXT_FIELDS)}"
        )
    rows = _hf_rows_from_path(Path(path).expanduser(), config) if path else _hf_rows_from_cache(config)
    if not rows:
        raise RespondentError(f"{path or HF_DATASET}: no rows found")
    columns = set(rows[0])
    if "pid" not in columns:
        raise RespondentError(f"{path or HF_DATASET}: no 'pid' column (found: {', '.join(sorted(columns))})")
    if text_field == "auto":
        candidates = [f for fields in HF_TEXT_FIELDS.values() for f in fields if not f.endswith("_json")]
        text_field = next((f for f in candidates if f in columns), "")
    if text_field not in columns:
        allowed = sorted(c for c in columns if c != "pid")
        raise RespondentError(
            f"text_field: {text_field or '(auto)'!r} not found; allowed: {', '.join(allowed)}"
        )
    try:
        shipped = load_twin2k().by_id
    except RespondentError:
        shipped = {}
    out = []
    for row in rows:
        pid = str(row["pid"]).strip()
        text = str(row.get(text_field) or "").strip()
        if not text:
            continue
        if max_profile_chars and len(text) > max_profile_chars:
            text = text[:max_profile_chars]
        attributes = dict(shipped[pid].attributes) if pid in shipped else {}
        out.append(Respondent(id=pid, profile=text, attributes=attributes, source=f"hf:{text_field}"))
    return RespondentPool(out, f"hf:{path or HF_DATASET}")


def _hf_rows_from_path(path: Path, config: str) -> list[dict[str, Any]]:
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted([*path.rglob("*.parquet"), *path.rglob("*.jsonl")])
        if config != "auto":
            files = [f for f in files if config in f.parts] or files
        elif any("wave_split" in f.parts for f in files):
            files = [f for f in files if "wave_split" in f.parts]  # the leak-free config first
    else:
        raise RespondentError(f"Hugging Face dataset path not found: {path}")
    if not files:
        raise RespondentError(f"{path}: no .parquet or .jsonl files")
    rows: list[dict[str, Any]] = []
    for file in files:
        rows += _read_table(file)
    return rows


def _hf_rows_from_cache(config: str) -> list[dict[str, Any]]:
    try:
        import datasets
    except ImportError as exc:
        raise RespondentError(
            f"no local copy given: pass the folder of a downloaded {HF_DATASET} (parquet/jsonl files), "
            "or install `datasets` with the dataset in its cache"
        ) from exc
    name = "wave_split" if config == "auto" else config
    try:
        loaded = datasets.load_dataset(HF_DATASET, name, download_mode="reuse_cache_if_exists")
    except Exception as exc:  # offline and not cached, or another datasets error
        raise RespondentError(f"{HF_DATASET} ({name}) is not available locally: {exc}") from exc
    split = next(iter(loaded.values())) if hasattr(loaded, "values") else loaded
    return [dict(row) for row in split]


def confine_source(source: str, roots: Sequence[Path] | None, field: str = "source") -> str:
    """`source` with its path resolved and checked to lie under `roots` (None: any path, unchanged).

    `twin2k` and `hf:` without a path (the `datasets` offline cache) name no file and pass as they are.
    """
    if roots is None or source == TWIN2K:
        return source
    if source.startswith("hf:"):
        path = source[3:]
        return f"hf:{confined_path(path, roots, field)}" if path else source
    return str(confined_path(source, roots, field))


def load_respondents(source: str = TWIN2K, *, roots: Sequence[Path] | None = None) -> RespondentPool:
    """`twin2k` (shipped), `hf:PATH` (local Hugging Face files) or a path to a personas file.

    With `roots`, a path must lie under one of them (see the module docstring).
    """
    source = confine_source(source, roots)
    if source == TWIN2K:
        return load_twin2k()
    if source.startswith("hf:"):
        return load_hf_twin2k(source[3:] or None)
    return load_user_personas(source)


# --- selection -------------------------------------------------------------------------------------


class NumericRange(BaseModel):
    """An inclusive numeric range; either end may be open."""

    model_config = ConfigDict(extra="forbid")

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> NumericRange:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, int | float) or (isinstance(value, float) and math.isnan(value)):
            return False
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


class Selection(BaseModel):
    """Which respondents answer: ids, then attribute filters, then a seeded random sample of n.

    Empty = everyone in the source. Filters: a list of allowed values for a categorical attribute
    (case-insensitive), or a `{"min", "max"}` range for a numeric one.
    """

    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        default=TWIN2K, description="twin2k, hf:PATH, or a personas file path (checked where it is loaded)."
    )
    ids: list[str] | None = Field(default=None, description="Only these respondent ids.")
    where: dict[str, list[str] | NumericRange] = Field(default_factory=dict)
    n: int | None = Field(default=None, ge=1, description="Random sample size (after ids and filters).")
    seed: int = Field(default=0, description="Seed of the random sample.")

    @field_validator("ids")
    @classmethod
    def _ids_as_text(cls, ids: list[str] | None) -> list[str] | None:
        return None if ids is None else [str(i).strip() for i in ids if str(i).strip()]

    def describe(self) -> str:
        parts = [f"source={self.source}"]
        if self.ids is not None:
            parts.append(f"ids={len(self.ids)}")
        for key, cond in self.where.items():
            if isinstance(cond, NumericRange):
                parts.append(
                    f"{key} in [{'' if cond.min is None else cond.min}..{'' if cond.max is None else cond.max}]"
                )
            else:
                parts.append(f"{key} in {{{' | '.join(cond)}}}")
        if self.n is not None:
            parts.append(f"random n={self.n} seed={self.seed}")
        return ", ".join(parts)


def validate_selection(selection: Selection, pool: RespondentPool) -> None:
    """Raise `RespondentError` naming the field and the allowed values when a selection does not fit."""
    if selection.ids is not None:
        unknown = [i for i in selection.ids if i not in pool.by_id]
        if unknown:
            raise RespondentError(
                f"ids: unknown respondent ids {', '.join(unknown[:10])}{' ...' if len(unknown) > 10 else ''} "
                f"in {pool.source} ({len(pool)} respondents)"
            )
    for key, cond in selection.where.items():
        kind = pool.kinds.get(key)
        if kind is None:
            raise RespondentError(
                f"where: unknown attribute {key!r}; allowed: {', '.join(sorted(pool.kinds))}"
            )
        if isinstance(cond, NumericRange):
            if kind != "numeric":
                raise RespondentError(
                    f"where.{key}: is categorical, give values instead of a range; allowed: "
                    + ", ".join(pool.categories(key))
                )
            continue
        if kind == "numeric":
            bad = [v for v in cond if _as_number(v) is None]
            if bad:
                low_high = pool.numeric_range(key)
                raise RespondentError(
                    f"where.{key}: is numeric; give numbers or a range LO..HI (observed {low_high}), not {bad}"
                )
            continue
        allowed = {c.casefold(): c for c in pool.categories(key)}
        bad = [v for v in cond if v.casefold() not in allowed]
        if bad:
            raise RespondentError(
                f"where.{key}: unknown value(s) {bad}; allowed: {', '.join(allowed.values())}"
            )


def _matches(respondent: Respondent, key: str, cond: list[str] | NumericRange) -> bool:
    value = respondent.attributes.get(key)
    if isinstance(cond, NumericRange):
        return value in cond
    if value is None:
        return False
    if isinstance(value, float):
        return any(_as_number(v) == value for v in cond)
    return value.casefold() in {v.casefold() for v in cond}


def _filtered(selection: Selection, pool: RespondentPool) -> list[Respondent]:
    validate_selection(selection, pool)
    people = pool.get(selection.ids) if selection.ids is not None else list(pool.respondents)
    return [r for r in people if all(_matches(r, k, c) for k, c in selection.where.items())]


def count(selection: Selection, pool: RespondentPool) -> int:
    """How many respondents the selection gives (shown before a run)."""
    matching = len(_filtered(selection, pool))
    return min(matching, selection.n) if selection.n is not None else matching


def select(selection: Selection, pool: RespondentPool) -> list[Respondent]:
    """The selected respondents of `pool` (loaded from `selection.source` by the caller, with its
    roots), in source order (or the order of `ids`); a random sample is reproducible from its seed."""
    people = _filtered(selection, pool)
    if selection.n is not None and selection.n < len(people):
        chosen = {r.id for r in random.Random(selection.seed).sample(people, selection.n)}
        people = [r for r in people if r.id in chosen]
    return people


def _selection_file(folder: Path, name: str) -> Path:
    return child_path(folder, f"{check_id(name, 'selection name')}.json")


def save_selection(selection: Selection, name: str, folder: Path) -> Path:
    """Save a selection as `folder/NAME.json` (overwrites); the name is checked as an id."""
    path = _selection_file(folder, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(selection.model_dump_json(indent=2, exclude_defaults=False) + "\n", encoding="utf-8")
    return path


def load_selection(name: str, folder: Path) -> Selection:
    """A selection saved under `name` in `folder`; a missing one lists the saved names there."""
    path = _selection_file(folder, name)
    if not path.is_file():
        known = ", ".join(list_selections(folder)) or "none saved"
        raise RespondentError(f"saved: selection {name!r} not found; saved selections: {known}")
    return read_selection_file(path, "saved")


def read_selection_file(path: Path, field: str = "file") -> Selection:
    """A selection JSON file (already resolved and checked by the caller)."""
    if not path.is_file():
        raise RespondentError(f"{field}: selection file not found: {path}")
    try:
        return Selection.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as exc:
        raise RespondentError(f"{field}: invalid selection in {path.name}: {_pydantic_problem(exc)}") from exc


def list_selections(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def _pydantic_problem(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors())


def parse_select(
    specs: Sequence[str],
    base: Selection | None = None,
    *,
    roots: Sequence[Path] | None = None,
    saved_dir: Path | None = None,
) -> Selection:
    """Build a Selection from CLI `--select` specs (combined in order):

    all | random:N[:SEED] | ids:ID,ID,... | where:KEY=V1|V2;KEY=LO..HI | saved:NAME | file:PATH |
    source:twin2k|hf:PATH|PATH | hf:PATH

    `roots`: where `file:`, `source:` and `hf:` paths may be (None: anywhere); `saved_dir`: the
    folder of the caller's saved selections (None: `saved:` is not available).
    """
    data = (base or Selection()).model_dump()
    for spec in specs:
        kind, _, rest = spec.partition(":")
        kind = kind.strip().lower()
        value = rest.strip()
        if kind == "all":
            continue
        if kind == "saved":
            if saved_dir is None:
                raise RespondentError("saved: saved selections are not available here")
            data = load_selection(value, saved_dir).model_dump()
            data["source"] = confine_source(data["source"], roots)
        elif kind == "file":
            path = Path(value).expanduser() if roots is None else confined_path(value, roots, "file")
            data = read_selection_file(path).model_dump()
            data["source"] = confine_source(data["source"], roots)
        elif kind == "source":
            data["source"] = confine_source(value or TWIN2K, roots, "source")
        elif kind == "hf":
            data["source"] = confine_source(f"hf:{value}", roots, "hf")
        elif kind == "ids":
            data["ids"] = [i.strip() for i in re.split(r"[,\s]+", rest) if i.strip()]
            if not data["ids"]:
                raise RespondentError("--select ids: give at least one id, e.g. ids:1,2,3")
        elif kind == "random":
            n_text, _, seed_text = rest.partition(":")
            try:
                data["n"] = int(n_text)
                data["seed"] = int(seed_text) if seed_text else data.get("seed", 0)
            except ValueError as exc:
                raise RespondentError(
                    f"--select random: expected random:N[:SEED] with integers, got {spec!r}"
                ) from exc
        elif kind == "where":
            for clause in filter(None, (c.strip() for c in rest.split(";"))):
                key, eq, value = clause.partition("=")
                if not eq or not key.strip():
                    raise RespondentError(f"--select where: expected KEY=V1|V2 or KEY=LO..HI, got {clause!r}")
                if ".." in value:
                    low, _, high = value.partition("..")
                    try:
                        cond: Any = {
                            "min": float(low) if low.strip() else None,
                            "max": float(high) if high.strip() else None,
                        }
                    except ValueError as exc:
                        raise RespondentError(
                            f"--select where.{key.strip()}: range LO..HI needs numbers, got {value!r}"
                        ) from exc
                else:
                    cond = [v.strip() for v in value.split("|") if v.strip()]
                data["where"][key.strip()] = cond
        else:
            raise RespondentError(
                f"--select: unknown kind {kind!r} in {spec!r}; allowed: all, random:N[:SEED], ids:A,B, "
                "where:KEY=V1|V2;KEY=LO..HI, saved:NAME, file:PATH, source:twin2k|hf:PATH|PATH, hf:PATH"
            )
    try:
        return Selection.model_validate(data)
    except ValidationError as exc:
        raise RespondentError(f"--select: {_pydantic_problem(exc)}") from exc
