"""Where twin runs live: run ids, paths, and one SQLite file per run (`RunStore`).

A run lives in `PERSONAGRAPH_HOME/runs/<run_id>/results.sqlite`: the run's settings, the survey (or
interview guide), the respondents' ids and profiles, their between-subject arms, and the answers
with `UNIQUE(person_id, question_id)` (or one transcript per person). An answer can never be stored
twice, so a run killed at any point resumes by asking only what has no stored result yet.

Every run records its owner (the caller who created it). Only the owner or an admin may list, read,
export, validate, cancel or delete it (admins see every run); for anyone else the run does not
exist (NotFoundError), so run ids cannot be probed.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from personagraph.accounts.identity import Caller, ConflictError, LimitReachedError, NotFoundError
from personagraph.services.twins.answering import AnswerRecord
from personagraph.serving.safe_paths import PathOutsideError, check_id, child_path
from personagraph.serving.settings import get_settings
from personagraph.twins.respondents import Respondent
from personagraph.twins.surveys import Survey, survey_from_data

RunKind = Literal["survey", "interview"]
RUN_KINDS: tuple[RunKind, ...] = ("survey", "interview")
# What a run's meta "state" says; `active` in run_info says whether it runs in this process now.
RunState = Literal["created", "running", "done", "stopped", "cancelled", "failed"]


class RunError(ValueError):
    """A run request that cannot be done as asked; the message names the field and what to do."""


def utc_now() -> str:
    """The timestamp stored with meta and results (UTC, to the second)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- run ids and paths ------------------------------------------------------------------------------


def runs_dir() -> Path:
    return get_settings().personagraph_home / "runs"


def new_run_id(prefix: str = "run") -> str:
    return f"{prefix}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def run_folder(run_id: str) -> Path:
    """runs/<run_id>: the id checked in full, the folder resolved (symlinks too) and strictly under
    runs/ (never runs/ itself, never outside it)."""
    base = runs_dir()
    folder = child_path(base, check_id(run_id, "run_id"))
    if folder == base.resolve() or folder.parent != base.resolve():
        raise PathOutsideError(f"run_id: {run_id!r} does not name a run folder")
    return folder


def run_path(run_id: str) -> Path:
    """runs/<run_id>/results.sqlite; the id is checked in full and the path kept under runs/."""
    return run_folder(run_id) / "results.sqlite"


def _all_run_ids() -> list[str]:
    """Every run on disk, whoever owns it (for the access-checked listings below only)."""
    base = runs_dir()
    return sorted(p.parent.name for p in base.glob("*/results.sqlite")) if base.is_dir() else []


def _not_found(run_id: str) -> NotFoundError:
    # The same words for a missing run and someone else's, so run ids cannot be probed.
    return NotFoundError(f"run_id: no run {run_id!r} that you may open")


def open_run(caller: Caller, run_id: str, kind: RunKind | None = None) -> RunStore:
    """The store of a run the caller may manage: their own, or any run for an admin.

    A missing run and someone else's both raise NotFoundError; a run of the other kind than `kind`
    is a RunError naming run_id. Close the store when done (`with open_run(...) as store:`).
    """
    path = run_path(run_id)
    if not path.is_file():
        raise _not_found(run_id)
    store = RunStore(path)
    try:
        if not caller.may_manage(store.meta("owner")):
            raise _not_found(run_id)
        if kind is not None and store.meta("kind") != kind:
            raise RunError(f"run_id: {run_id!r} is not a {kind} run (it is a {store.meta('kind')} run)")
    except BaseException:
        store.close()
        raise
    return store


def _info(store: RunStore, run_id: str) -> dict[str, Any]:
    kind = store.meta("kind")
    active = _ACTIVE.get(run_id)
    return {
        "run_id": run_id, "kind": kind, "owner": store.meta("owner", "") or "",
        "created_at": store.meta("created_at", ""), "survey_id": store.meta("survey_id", ""),
        "people": len(store.people()), "expected": store.meta("expected", 0),
        **store.status_counts(kind),
        "state": store.meta("state", "created"), "message": store.meta("state_message", "") or "",
        "cancel_requested": bool(store.meta("cancel_requested", False)),
        "active": active is not None, "progress": dict(active) if active is not None else None,
    }  # fmt: skip


def run_info(caller: Caller, run_id: str) -> dict[str, Any]:
    """What a run is, whose it is and how far it got: stored/ok/failed of expected results, the
    recorded `state` (created, running, done, stopped, cancelled, failed) and its `message`, and
    `active` (running in this process now, with its `progress`). Owner or admin only, else NotFoundError.
    """
    with open_run(caller, run_id) as store:
        return _info(store, run_id)


def visible_runs(caller: Caller, kind: RunKind | None = None) -> list[dict[str, Any]]:
    """The runs the caller may see, newest first: their own; an admin sees every run."""
    infos = []
    for run_id in _all_run_ids():
        with RunStore(run_path(run_id)) as store:
            if caller.may_manage(store.meta("owner")) and (kind is None or store.meta("kind") == kind):
                infos.append(_info(store, run_id))
    return sorted(infos, key=lambda i: str(i["created_at"]), reverse=True)


def delete_run(caller: Caller, run_id: str) -> None:
    """Remove a run's folder (answers, transcripts, checkpoints): its owner or an admin.

    A run executing in this process is refused (ConflictError): cancel it first. Only the run's
    own folder is removed: the id is checked again and the folder must be a direct child of runs/
    (`run_folder`), whatever the store says; a symlinked run folder is refused.
    """
    folder = run_folder(run_id)
    with open_run(caller, run_id):
        if run_id in _ACTIVE:
            raise ConflictError(f"run_id: run {run_id!r} is running; cancel it first")
    if (runs_dir() / run_id).is_symlink():
        raise PathOutsideError(f"run_id: {run_id!r} does not name a run folder")
    shutil.rmtree(folder)


def cancel_run(caller: Caller, run_id: str) -> dict[str, Any]:
    """Ask a run to stop: the executor checks the flag before each new call, lets the calls in flight
    finish and store their results, and stops with state "cancelled". The run keeps every stored
    answer and can be resumed (a resume clears the flag). Owner or admin only, else NotFoundError.
    Returns the run's info (see `run_info`).
    """
    with open_run(caller, run_id) as store:
        store.set_meta("cancel_requested", True)
        return _info(store, run_id)


# --- runs executing in this process ------------------------------------------------------------------

_ACTIVE: dict[str, dict[str, Any]] = {}  # run id -> the latest progress of a run executing here
_OWNERS: dict[str, str] = {}  # run id -> owner, of the runs executing here
_ACTIVE_LOCK = threading.Lock()


def _capacity_error(owner: str) -> LimitReachedError | None:
    """Why one more run of `owner` may not start now (called with _ACTIVE_LOCK held), or None."""
    settings = get_settings()
    per_account = settings.runs_max_active_per_account
    if sum(1 for o in _OWNERS.values() if o == owner) >= per_account:
        return LimitReachedError(
            f"runs: at most {per_account} running per account (RUNS_MAX_ACTIVE_PER_ACCOUNT); "
            "wait for one to finish or cancel it"
        )
    if len(_ACTIVE) >= settings.runs_max_active:
        return LimitReachedError(
            f"runs: at most {settings.runs_max_active} running at once on this server (RUNS_MAX_ACTIVE); "
            "try again when one has finished"
        )
    return None


def check_run_capacity(caller: Caller) -> None:
    """LimitReachedError (429) when the caller may not start another run now; checked before a run
    is created, and again when it is claimed."""
    with _ACTIVE_LOCK:
        error = _capacity_error(caller.user_id)
    if error is not None:
        raise error


def claim_run(store: RunStore) -> str:
    """Mark the store's run as executing in this process (ConflictError if it already is;
    LimitReachedError when its owner, or this server, runs as many as the settings allow), clear an
    earlier cancel request and record state "running". Pair with `release_run`."""
    run_id = str(store.meta("run_id"))
    owner = str(store.meta("owner") or "")
    with _ACTIVE_LOCK:
        if run_id in _ACTIVE:
            raise ConflictError(f"run_id: run {run_id!r} is already running")
        error = _capacity_error(owner)
        if error is not None:
            raise error
        _ACTIVE[run_id] = {}
        _OWNERS[run_id] = owner
    store.set_meta("cancel_requested", False)
    store.set_meta("state", "running")
    store.set_meta("state_message", "")
    return run_id


def report_progress(run_id: str, progress: Mapping[str, Any]) -> None:
    """The latest progress of a run executing here (shown by run_info while it runs)."""
    if run_id in _ACTIVE:
        _ACTIVE[run_id] = dict(progress)


def release_run(store: RunStore, state: RunState, message: str = "") -> None:
    """Record how the run ended and mark it as no longer executing here."""
    run_id = str(store.meta("run_id"))
    try:
        store.set_meta("state", state)
        store.set_meta("state_message", message)
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE.pop(run_id, None)
            _OWNERS.pop(run_id, None)


def create_run_store(
    caller: Caller,
    kind: RunKind,
    run_id: str | None,
    *,
    survey_id: str,
    options: Mapping[str, Any],
    selection: Any,
    source: str,
) -> RunStore:
    """A new run's store owned by the caller, holding the meta every run has; an id already in use
    is a ConflictError."""
    run_id = check_id(run_id or new_run_id(kind), "run_id")
    path = run_path(run_id)
    if path.exists():
        raise ConflictError(f"run_id: run {run_id!r} already exists; resume it instead (--resume {run_id})")
    store = RunStore(path)
    store.set_meta("kind", kind)
    store.set_meta("run_id", run_id)
    store.set_meta("owner", caller.user_id)
    store.set_meta("created_at", utc_now())
    store.set_meta("survey_id", survey_id)
    store.set_meta("options", dict(options))
    store.set_meta("selection", _jsonable(selection))
    store.set_meta("source", source)
    store.set_meta("state", "created")
    return store


def _jsonable(value: Any) -> Any:
    """A selection (pydantic model, dict or None) as plain JSON data."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return json.loads(json.dumps(value, default=str))


# --- the store ----------------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS people (
    person_id TEXT PRIMARY KEY, position INTEGER NOT NULL, profile TEXT NOT NULL, attributes TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS arms (
    person_id TEXT NOT NULL, condition_group TEXT NOT NULL, arm TEXT NOT NULL,
    UNIQUE (person_id, condition_group)
);
CREATE TABLE IF NOT EXISTS answers (
    person_id TEXT NOT NULL, question_id TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    value TEXT, reason TEXT NOT NULL DEFAULT '', arm TEXT, error TEXT, raw TEXT, mode TEXT, seconds REAL,
    created_at TEXT NOT NULL,
    UNIQUE (person_id, question_id)
);
CREATE TABLE IF NOT EXISTS transcripts (
    person_id TEXT NOT NULL UNIQUE, status TEXT NOT NULL, transcript TEXT NOT NULL, error TEXT,
    created_at TEXT NOT NULL
);
"""
_RESULT_TABLES: dict[str, str] = {"survey": "answers", "interview": "transcripts"}


class RunStore:
    """One run's SQLite file. Writes are serialised by a lock and committed one result at a time.

    It checks no ownership: services get a store through `open_run(caller, run_id)`.
    """

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # meta
    def set_meta(self, key: str, value: Any) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value, ensure_ascii=False)),
            )

    def meta(self, key: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # people and arms
    def add_people(self, respondents: Sequence[Respondent]) -> None:
        with self._lock:
            self._conn.execute("BEGIN")
            self._conn.executemany(
                "INSERT OR IGNORE INTO people(person_id, position, profile, attributes) VALUES (?, ?, ?, ?)",
                [
                    (r.id, i, r.profile, json.dumps(r.attributes, ensure_ascii=False))
                    for i, r in enumerate(respondents)
                ],
            )
            self._conn.execute("COMMIT")

    def people(self) -> list[Respondent]:
        rows = self._conn.execute(
            "SELECT person_id, profile, attributes FROM people ORDER BY position"
        ).fetchall()
        source = str(self.meta("source", "run"))
        return [Respondent(id=r[0], profile=r[1], attributes=json.loads(r[2]), source=source) for r in rows]

    def set_arms(self, arms: Mapping[str, Mapping[str, str]]) -> None:
        with self._lock:
            self._conn.execute("BEGIN")
            self._conn.executemany(
                "INSERT OR IGNORE INTO arms(person_id, condition_group, arm) VALUES (?, ?, ?)",
                [(p, g, a) for p, groups in arms.items() for g, a in groups.items()],
            )
            self._conn.execute("COMMIT")

    def arms(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for person, group, arm in self._conn.execute("SELECT person_id, condition_group, arm FROM arms"):
            out.setdefault(person, {})[group] = arm
        return out

    # answers (surveys)
    def write_answers(self, records: Sequence[AnswerRecord]) -> int:
        """Store records atomically; an existing answer is never duplicated (a failed one may be replaced)."""
        if not records:
            return 0
        rows = [
            (r.person_id, r.question_id, r.status, None if r.value is None else json.dumps(r.value, ensure_ascii=False),
             r.reason, r.arm, r.error, r.raw, r.mode, r.seconds, utc_now())
            for r in records
        ]  # fmt: skip
        with self._lock:
            before = self._conn.total_changes
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany(
                """INSERT INTO answers(person_id, question_id, status, value, reason, arm, error, raw, mode, seconds,
                                       created_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(person_id, question_id) DO UPDATE SET
                       status = excluded.status, value = excluded.value, reason = excluded.reason,
                       arm = excluded.arm, error = excluded.error, raw = excluded.raw, mode = excluded.mode,
                       seconds = excluded.seconds, created_at = excluded.created_at
                   WHERE answers.status = 'failed'""",
                rows,
            )
            self._conn.execute("COMMIT")
            return self._conn.total_changes - before

    def stored(self, *, include_failed: bool = True) -> dict[str, set[str]]:
        """person id -> question ids that already have a result."""
        sql = "SELECT person_id, question_id FROM answers" + (
            "" if include_failed else " WHERE status = 'ok'"
        )
        out: dict[str, set[str]] = {}
        for person, question in self._conn.execute(sql):
            out.setdefault(person, set()).add(question)
        return out

    def answers(self) -> list[AnswerRecord]:
        rows = self._conn.execute(
            """SELECT a.person_id, question_id, status, value, reason, arm, error, raw, mode, seconds
               FROM answers a LEFT JOIN people p ON p.person_id = a.person_id
               ORDER BY p.position, a.rowid"""
        ).fetchall()
        return [
            AnswerRecord(
                person_id=r[0],
                question_id=r[1],
                status=r[2],
                value=None if r[3] is None else json.loads(r[3]),
                reason=r[4] or "",
                arm=r[5],
                error=r[6],
                raw=r[7],
                mode=r[8] or "",
                seconds=r[9] or 0.0,
            )  # fmt: skip
            for r in rows
        ]

    def numeric_answers(self) -> dict[str, dict[str, float]]:
        """person -> question -> value of the valid numeric answers (what validation scores)."""
        out: dict[str, dict[str, float]] = {}
        for a in self.answers():
            if a.status == "ok" and isinstance(a.value, int | float):
                out.setdefault(a.person_id, {})[a.question_id] = float(a.value)
        return out

    # transcripts (interviews)
    def write_transcript(
        self, person_id: str, status: str, transcript: Any, error: str | None = None
    ) -> None:
        with self._lock:
            self._conn.execute(
                """INSERT INTO transcripts(person_id, status, transcript, error, created_at) VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT(person_id) DO UPDATE SET status = excluded.status, transcript = excluded.transcript,
                       error = excluded.error, created_at = excluded.created_at
                   WHERE transcripts.status = 'failed'""",
                (person_id, status, json.dumps(transcript, ensure_ascii=False), error, utc_now()),
            )

    def transcripts(self) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            """SELECT t.person_id, status, transcript, error FROM transcripts t
               LEFT JOIN people p ON p.person_id = t.person_id ORDER BY p.position"""
        ).fetchall()
        return [
            {"person_id": r[0], "status": r[1], "transcript": json.loads(r[2]), "error": r[3]} for r in rows
        ]

    def interviewed(self, *, include_failed: bool = True) -> set[str]:
        sql = "SELECT person_id FROM transcripts" + ("" if include_failed else " WHERE status = 'ok'")
        return {r[0] for r in self._conn.execute(sql)}

    # both kinds
    def status_counts(self, kind: RunKind) -> dict[str, int]:
        """Stored results of the run (answers of a survey, transcripts of an interview): stored, ok, failed."""
        table = _RESULT_TABLES[kind]  # a fixed table name, never user input
        rows = dict(self._conn.execute(f"SELECT status, COUNT(*) FROM {table} GROUP BY status").fetchall())
        return {"stored": sum(rows.values()), "ok": rows.get("ok", 0), "failed": rows.get("failed", 0)}

    def survey(self) -> Survey:
        data = self.meta("survey")
        if data is None:
            raise RunError(f"run_id: run {self.meta('run_id')!r} has no survey")
        return survey_from_data(data, default_id=str(self.meta("survey_id", "survey")))
