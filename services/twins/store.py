"""Where twin runs live (`RunStore`), who may open them, and which worker runs them (leases).

Every run is a row of `twin_runs` (id, kind, owner, state, the worker that runs it and its lease)
plus its settings (`twin_meta`), respondents (`twin_people`), between-subject arms (`twin_arms`)
and results (`twin_answers`, unique per (run, person, question), or one `twin_transcripts` row per
person), all keyed by run_id. An answer can never be stored twice, so a run killed at any point
resumes by asking only what has no stored result yet.

The same SQL serves two places (`personagraph.serving.database`):
- DATABASE_URL set (Postgres): one set of tables for every run, so every app process sees every run;
- unset (zero setup): one SQLite file per run, `PERSONAGRAPH_HOME/runs/<run_id>/results.sqlite`.
Either way a run's files (exports, plots, interview checkpoints on SQLite) live in its folder
`runs/<run_id>/` under PERSONAGRAPH_HOME, which replicas share.

Leases: `claim_run` records in the run's row which worker runs it (WORKER_ID, default
`<hostname>-<pid>`) and until when (RUNS_LEASE_S from now); a heartbeat thread renews the lease
every third of that while the run executes, and `release_run` records how it ended and clears it.
A claim succeeds only if no live lease exists (a compare-and-set UPDATE, so two workers never both
win); a lease is live until it expires, or until its process is known to be gone (same machine and
process namespace, pid no longer running), so a run of a killed process can be taken at once on one
machine and after RUNS_LEASE_S across machines. A worker that finds its lease taken stops its run.
Cancel requests are a flag in the row, read by the executing worker between model calls.

Every run records its owner (the caller who created it). Only the owner or an admin may list, read,
export, validate, cancel or delete it (admins see every run); for anyone else the run does not
exist (NotFoundError), so run ids cannot be probed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from personagraph.accounts.identity import Caller, ConflictError, LimitReachedError, NotFoundError
from personagraph.services.twins.answering import AnswerRecord
from personagraph.serving.database import Database, Executor, connect
from personagraph.serving.safe_paths import PathOutsideError, UnsafeIdError, check_id, child_path
from personagraph.serving.settings import get_settings
from personagraph.serving.workers import host_key, worker_id
from personagraph.serving.workers import process_gone as _process_gone
from personagraph.twins.respondents import Respondent
from personagraph.twins.surveys import Survey, survey_from_data

log = logging.getLogger(__name__)

RunKind = Literal["survey", "interview"]
RUN_KINDS: tuple[RunKind, ...] = ("survey", "interview")
# What a run's "state" says; `active` in run_info says whether some worker runs it now (a live lease).
RunState = Literal["created", "running", "done", "stopped", "cancelled", "failed"]
# Why an executing run should stop before it is done (`RunStore.stop_reason`).
StopReason = Literal["cancelled", "lease_lost"]
# `RunSummary.stopped` and the state message of a run stopped by `cancel_run`.
CANCELLED = "cancelled; resume the run to finish it"


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
    """runs/<run_id>/results.sqlite (the run's database without DATABASE_URL); the id is checked in
    full and the path kept under runs/."""
    return run_folder(run_id) / "results.sqlite"


# --- the tables ---------------------------------------------------------------------------------------

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS twin_runs (
        run_id TEXT PRIMARY KEY, kind TEXT NOT NULL, owner TEXT NOT NULL, created_at TEXT NOT NULL,
        state TEXT NOT NULL, message TEXT NOT NULL DEFAULT '', cancel_requested INTEGER NOT NULL DEFAULT 0,
        worker TEXT, worker_host TEXT, worker_pid INTEGER, lease_id TEXT, lease_until DOUBLE PRECISION,
        progress TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS twin_runs_owner ON twin_runs (owner)",
    "CREATE INDEX IF NOT EXISTS twin_runs_state ON twin_runs (state)",
    """CREATE TABLE IF NOT EXISTS twin_meta (
        run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (run_id, key)
    )""",
    """CREATE TABLE IF NOT EXISTS twin_people (
        run_id TEXT NOT NULL, person_id TEXT NOT NULL, position INTEGER NOT NULL, profile TEXT NOT NULL,
        attributes TEXT NOT NULL, PRIMARY KEY (run_id, person_id)
    )""",
    """CREATE TABLE IF NOT EXISTS twin_arms (
        run_id TEXT NOT NULL, person_id TEXT NOT NULL, condition_group TEXT NOT NULL, arm TEXT NOT NULL,
        PRIMARY KEY (run_id, person_id, condition_group)
    )""",
    """CREATE TABLE IF NOT EXISTS twin_answers (
        run_id TEXT NOT NULL, person_id TEXT NOT NULL, question_id TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('ok', 'failed')), value TEXT, reason TEXT NOT NULL DEFAULT '',
        arm TEXT, error TEXT, raw TEXT, mode TEXT, seconds DOUBLE PRECISION, created_at TEXT NOT NULL,
        seq BIGINT NOT NULL, PRIMARY KEY (run_id, person_id, question_id)
    )""",
    # Per answer: the twin's distribution over the codes (JSON) and the call's tokens (issue 19).
    # A table of its own so run files and databases of earlier versions need no migration.
    """CREATE TABLE IF NOT EXISTS twin_answer_details (
        run_id TEXT NOT NULL, person_id TEXT NOT NULL, question_id TEXT NOT NULL, distribution TEXT,
        prompt_tokens INTEGER, completion_tokens INTEGER, PRIMARY KEY (run_id, person_id, question_id)
    )""",
    """CREATE TABLE IF NOT EXISTS twin_transcripts (
        run_id TEXT NOT NULL, person_id TEXT NOT NULL, status TEXT NOT NULL, transcript TEXT NOT NULL,
        error TEXT, created_at TEXT NOT NULL, PRIMARY KEY (run_id, person_id)
    )""",
)
# Result tables by run kind, and every table of a run (fixed names, never user input).
_RESULT_TABLES: dict[str, str] = {"survey": "twin_answers", "interview": "twin_transcripts"}
_RUN_TABLES = (
    "twin_meta", "twin_people", "twin_arms", "twin_answers", "twin_answer_details", "twin_transcripts", "twin_runs",
)  # fmt: skip
# Meta keys that are columns of `twin_runs` (read and written through `meta`/`set_meta` all the same).
_REGISTRY_COLUMNS: dict[str, str] = {
    "run_id": "run_id", "kind": "kind", "owner": "owner", "created_at": "created_at", "state": "state",
    "state_message": "message", "cancel_requested": "cancel_requested",
}  # fmt: skip
_SCHEMA_LOCK_KEY = 1_700_017  # the Postgres advisory lock that serialises creating these tables

_schema_ready: set[str] = set()
_schema_lock = threading.Lock()


def _create_tables(db: Database, run_id: str | None = None) -> None:
    """Create the tables if missing (Postgres: once per process and URL, under an advisory lock, so
    replicas starting together do not race); a SQLite file of an earlier version is migrated."""
    with db.transaction() as tx:
        if db.dialect == "postgres":
            tx.execute("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK_KEY,))
        for statement in _SCHEMA:
            tx.execute(statement)
        if db.dialect == "sqlite" and run_id is not None:
            _migrate_legacy_file(tx, run_id)


# The tables of a run's SQLite file before issue 17 (one run per file, no run_id column).
_LEGACY_TABLES = ("meta", "people", "arms", "answers", "transcripts")


def _migrate_legacy_file(tx: Executor, run_id: str) -> None:
    """Copy a run file of the earlier layout into the tables above (once) and drop the old tables.

    A run the old version left "running" is recorded as stopped: it resumes when asked, not by itself.
    """
    names = {r[0] for r in tx.execute("SELECT name FROM sqlite_master WHERE type = 'table'").rows}
    if "meta" not in names:
        return
    meta = {key: json.loads(value) for key, value in tx.execute("SELECT key, value FROM meta").rows}
    if meta.get("run_id") != run_id or tx.execute("SELECT 1 FROM twin_runs WHERE run_id = ?", (run_id,)).rows:
        return  # another run's file copied here, or already migrated: left as it is
    state, message = str(meta.get("state", "created")), str(meta.get("state_message", "") or "")
    if state == "running":
        state, message = "stopped", "interrupted; resume the run to finish it"
    tx.execute(
        """INSERT INTO twin_runs(run_id, kind, owner, created_at, state, message, cancel_requested)
           VALUES (?, ?, ?, ?, ?, ?, ?)""",
        (run_id, str(meta.get("kind", "survey")), str(meta.get("owner", "") or ""), str(meta.get("created_at", "")),
         state, message, int(bool(meta.get("cancel_requested", False)))),
    )  # fmt: skip
    skipped = ", ".join(f"'{key}'" for key in _REGISTRY_COLUMNS)
    tx.execute(
        f"INSERT INTO twin_meta SELECT ?, key, value FROM meta WHERE key NOT IN ({skipped})", (run_id,)
    )
    copies = {
        "people": "INSERT INTO twin_people SELECT ?, person_id, position, profile, attributes FROM people",
        "arms": "INSERT INTO twin_arms SELECT ?, person_id, condition_group, arm FROM arms",
        "answers": """INSERT INTO twin_answers(run_id, person_id, question_id, status, value, reason, arm, error,
                                               raw, mode, seconds, created_at, seq)
                      SELECT ?, person_id, question_id, status, value, reason, arm, error, raw, mode, seconds,
                             created_at, rowid FROM answers""",
        "transcripts": """INSERT INTO twin_transcripts
                          SELECT ?, person_id, status, transcript, error, created_at FROM transcripts""",
    }
    for table, sql in copies.items():
        if table in names:
            tx.execute(sql, (run_id,))
    for table in _LEGACY_TABLES:
        if table in names:
            tx.execute(f"DROP TABLE {table}")
    log.info("run %s: migrated its results file to the run_id tables", run_id)


def _shared_db() -> Database | None:
    """The database every run lives in when DATABASE_URL is set (tables created once per process)."""
    url = get_settings().database_url
    if not url:
        return None
    db = connect(url)
    with _schema_lock:
        if url not in _schema_ready:
            _create_tables(db)
            _schema_ready.add(url)
    return db


def _run_file_db(run_id: str) -> Database:
    """The SQLite file of one run (without DATABASE_URL), created if missing, tables ready."""
    db = connect(run_path(run_id))
    try:
        _create_tables(db, run_id)
    except BaseException:
        db.close()
        raise
    return db


def _disk_run_ids() -> list[str]:
    """Every run file on disk (without DATABASE_URL), whoever owns it (for the listings below only);
    a folder that is no run folder (a bad name, a link out of runs/) is skipped."""
    base = runs_dir()
    found = []
    for path in sorted(base.glob("*/results.sqlite")) if base.is_dir() else []:
        try:
            run_path(path.parent.name)
        except (UnsafeIdError, PathOutsideError):
            continue
        found.append(path.parent.name)
    return found


def _open_store(run_id: str) -> RunStore | None:
    """The run's store, or None if there is no such run (nothing checked about the caller)."""
    shared = _shared_db()
    if shared is None:
        if not run_path(run_id).is_file():
            return None
        store = RunStore(run_id, _run_file_db(run_id), owns_db=True)
    else:
        store = RunStore(run_id, shared, owns_db=False)
    if store.row() is None:  # e.g. a file of another run copied into this folder
        store.close()
        return None
    return store


# --- leases -------------------------------------------------------------------------------------------


_ROW_COLUMNS = (
    "run_id, kind, owner, created_at, state, message, cancel_requested, worker, worker_host, worker_pid, "
    "lease_id, lease_until, progress"
)


@dataclass(frozen=True)
class RunRow:
    """A run's row in `twin_runs`: what it is, whose, its state and its lease."""

    run_id: str
    kind: str
    owner: str
    created_at: str
    state: str
    message: str
    cancel_requested: int
    worker: str | None
    worker_host: str | None
    worker_pid: int | None
    lease_id: str | None
    lease_until: float | None
    progress: str | None

    def live(self, now: float | None = None) -> bool:
        """Some worker holds the run: a lease not yet expired, of a process not known to be gone."""
        if self.lease_id is None or self.lease_until is None:
            return False
        if self.lease_until < (time.time() if now is None else now):
            return False
        return not _process_gone(self.worker_host, self.worker_pid)


def _registry(where: str = "1 = 1", params: Sequence[Any] = ()) -> list[RunRow]:
    """The rows of every run matching `where` (fixed SQL of this module, never user input)."""
    shared = _shared_db()
    if shared is not None:
        rows = shared.execute(f"SELECT {_ROW_COLUMNS} FROM twin_runs WHERE {where}", params).rows
        return [RunRow(*row) for row in rows]
    found: list[RunRow] = []
    for run_id in _disk_run_ids():
        db = _run_file_db(run_id)
        try:
            sql = f"SELECT {_ROW_COLUMNS} FROM twin_runs WHERE run_id = ? AND ({where})"
            found += [RunRow(*row) for row in db.execute(sql, (run_id, *params)).rows]
        finally:
            db.close()
    return found


class Lease:
    """This process's hold on a run (`claim_run`): a heartbeat thread renews it every third of its
    length until `stop`; `lost` is set when another worker has taken the run meanwhile."""

    def __init__(self, store: RunStore, worker: str, owner: str, seconds: float):
        self.id = uuid.uuid4().hex
        self.store = store
        self.run_id = store.run_id
        self.worker = worker
        self.owner = owner
        self.seconds = seconds
        self.progress: dict[str, Any] = {}
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Held and renewed by this process now."""
        return self._thread is not None and not self._stop.is_set() and not self.lost.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._beat, daemon=True, name=f"run-lease-{self.run_id}")
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing (the lease then expires unless released)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=max(self.seconds, 5.0))

    def _beat(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            if self.store.closed:
                return
            try:
                renewed = self.store.db.execute(
                    "UPDATE twin_runs SET lease_until = ?, progress = ? WHERE run_id = ? AND lease_id = ?",
                    (time.time() + self.seconds, json.dumps(self.progress), self.run_id, self.id),
                ).rowcount
            except Exception:  # the database is away for a moment: try again at the next beat
                log.warning("run %s: could not renew the lease", self.run_id, exc_info=True)
                continue
            if renewed != 1:
                log.warning("run %s: lease lost (another worker took the run); stopping it here", self.run_id)
                self.lost.set()
                return


_LEASES: dict[str, Lease] = {}  # run id -> the lease this process holds (claimed latest)
_LEASES_LOCK = threading.Lock()


def _capacity_error(owner: str, now: float) -> LimitReachedError | None:
    """Why one more run of `owner` may not start now (called with _LEASES_LOCK held), or None.

    Per account: the live leases of the owner's runs in the database (every replica's). Per server:
    the runs this process executes (RUNS_MAX_ACTIVE is about this process's threads and calls).
    """
    settings = get_settings()
    per_account = settings.runs_max_active_per_account
    owned = [r for r in _registry("owner = ? AND lease_id IS NOT NULL", (owner,)) if r.live(now)]
    if len(owned) >= per_account:
        return LimitReachedError(
            f"runs: at most {per_account} running per account (RUNS_MAX_ACTIVE_PER_ACCOUNT); "
            "wait for one to finish or cancel it"
        )
    if sum(1 for lease in _LEASES.values() if lease.running) >= settings.runs_max_active:
        return LimitReachedError(
            f"runs: at most {settings.runs_max_active} running at once on this server (RUNS_MAX_ACTIVE); "
            "try again when one has finished"
        )
    return None


def check_run_capacity(caller: Caller) -> None:
    """LimitReachedError (429) when the caller may not start another run now; checked before a run
    is created, and again when it is claimed."""
    with _LEASES_LOCK:
        error = _capacity_error(caller.user_id, time.time())
    if error is not None:
        raise error


def _running_error(run_id: str, row: RunRow, then: str = "") -> ConflictError:
    return ConflictError(f"run_id: run {run_id!r} is already running on worker {row.worker}{then}")


def _released_here(row: RunRow) -> bool:
    """A lease of this very process that it has let go of (called with _LEASES_LOCK held): its run
    ended here but the release could not be written (a full disk, the database away), so the row still
    shows it. Without this the run could not be resumed in this process until the lease expired."""
    if row.worker_host != host_key() or row.worker_pid != os.getpid():
        return False
    return all(lease.id != row.lease_id for lease in _LEASES.values())


def claim_run(store: RunStore, worker: str | None = None) -> str:
    """Record that `worker` (default: this process, `worker_id()`) executes the store's run, with a
    lease of RUNS_LEASE_S renewed by a heartbeat thread; clear an earlier cancel request and record
    state "running". A live lease of any worker is a ConflictError naming it; LimitReachedError when
    the run's owner, or this server, runs as many as the settings allow. Pair with `release_run`."""
    worker = worker or worker_id()
    seconds = get_settings().runs_lease_s
    with _LEASES_LOCK:
        row = store.row()
        if row is None:
            raise NotFoundError(f"run_id: no run {store.run_id!r} that you may open")
        now = time.time()
        if row.live(now) and not _released_here(row):
            raise _running_error(store.run_id, row)
        error = _capacity_error(row.owner, now)
        if error is not None:
            raise error
        lease = Lease(store, worker, row.owner, seconds)
        # Compare-and-set: only if the lease is still the one judged dead above.
        claimed = store.db.execute(
            """UPDATE twin_runs SET worker = ?, worker_host = ?, worker_pid = ?, lease_id = ?, lease_until = ?,
                   progress = NULL, state = 'running', message = '', cancel_requested = 0
               WHERE run_id = ? AND COALESCE(lease_id, '') = ? AND COALESCE(lease_until, 0) = ?""",
            (worker, host_key(), os.getpid(), lease.id, now + seconds,
             store.run_id, row.lease_id or "", row.lease_until or 0),
        ).rowcount  # fmt: skip
        if claimed != 1:
            raise _running_error(store.run_id, store.row() or row)
        store.lease = lease
        _LEASES[store.run_id] = lease
    lease.start()
    return store.run_id


def report_progress(store: RunStore, progress: Mapping[str, Any]) -> None:
    """The latest progress of a run this process executes (run_info shows it; the heartbeat copies
    it into the database for the other replicas)."""
    if store.lease is not None:
        store.lease.progress = dict(progress)


def release_run(store: RunStore, state: RunState, message: str = "") -> None:
    """Record how the run ended and clear its lease, if this store still holds the lease (a run
    another worker took over is left to that worker); a store that holds none: nothing to do."""
    lease = store.lease
    if lease is None:
        return
    lease.stop()
    try:
        store.db.execute(
            """UPDATE twin_runs SET state = ?, message = ?, lease_id = NULL, lease_until = NULL,
                   worker_host = NULL, worker_pid = NULL, progress = NULL
               WHERE run_id = ? AND lease_id = ?""",
            (state, message, store.run_id, lease.id),
        )
    finally:
        store.lease = None
        with _LEASES_LOCK:
            if _LEASES.get(store.run_id) is lease:
                del _LEASES[store.run_id]


def active_run_counts() -> dict[str, int]:
    """How many runs wait to start ("created") and run ("running"), in every replica (for /metrics)."""
    rows = _registry("state IN ('created', 'running')")
    return {
        "queued": sum(r.state == "created" for r in rows),
        "running": sum(r.state == "running" for r in rows),
    }


def orphaned_runs() -> list[RunRow]:
    """Runs whose state is "running" with no live lease: their worker died (or stalled past its lease)."""
    now = time.time()
    return [row for row in _registry("state = 'running'") if not row.live(now)]


def settle_cancelled_orphan(row: RunRow) -> bool:
    """Record an orphaned run whose cancel was asked for as "cancelled" (instead of resuming it);
    False if meanwhile some worker claimed it."""
    store = _open_store(row.run_id)
    if store is None:
        return False
    with store:
        return (
            store.db.execute(
                """UPDATE twin_runs SET state = 'cancelled', message = ?, lease_id = NULL, lease_until = NULL,
                       worker_host = NULL, worker_pid = NULL, progress = NULL
                   WHERE run_id = ? AND state = 'running' AND COALESCE(lease_id, '') = ?
                       AND COALESCE(lease_until, 0) = ?""",
                (CANCELLED, row.run_id, row.lease_id or "", row.lease_until or 0),
            ).rowcount
            == 1
        )


# --- runs for callers ---------------------------------------------------------------------------------


def _not_found(run_id: str) -> NotFoundError:
    # The same words for a missing run and someone else's, so run ids cannot be probed.
    return NotFoundError(f"run_id: no run {run_id!r} that you may open")


def open_run(caller: Caller, run_id: str, kind: RunKind | None = None) -> RunStore:
    """The store of a run the caller may manage: their own, or any run for an admin.

    A missing run and someone else's both raise NotFoundError; a run of the other kind than `kind`
    is a RunError naming run_id. Close the store when done (`with open_run(...) as store:`).
    """
    run_folder(run_id)  # the id checked in full
    store = _open_store(run_id)
    if store is None:
        raise _not_found(run_id)
    try:
        if not caller.may_manage(store.meta("owner")):
            raise _not_found(run_id)
        if kind is not None and store.meta("kind") != kind:
            raise RunError(f"run_id: {run_id!r} is not a {kind} run (it is a {store.meta('kind')} run)")
    except BaseException:
        store.close()
        raise
    return store


def _info(store: RunStore) -> dict[str, Any]:
    row = store.row()
    if row is None:
        raise _not_found(store.run_id)
    active = row.live()
    lease = store.lease or _LEASES.get(store.run_id)
    progress: dict[str, Any] | None = None
    if lease is not None and lease.running:
        progress = dict(lease.progress)
    elif active:
        progress = json.loads(row.progress) if row.progress else {}
    return {
        "run_id": row.run_id, "kind": row.kind, "owner": row.owner, "created_at": row.created_at,
        "survey_id": store.meta("survey_id", ""), "people": store.people_count(),
        "expected": store.meta("expected", 0), **store.status_counts(row.kind),  # type: ignore[arg-type]
        "state": row.state, "message": row.message, "cancel_requested": bool(row.cancel_requested),
        "active": active, "worker": row.worker or "", "progress": progress,
    }  # fmt: skip


def run_info(caller: Caller, run_id: str) -> dict[str, Any]:
    """What a run is, whose it is and how far it got: stored/ok/failed of expected results, the
    recorded `state` (created, running, done, stopped, cancelled, failed) and its `message`, `active`
    (some worker holds a live lease on it now), `worker` (the worker running it, or that ran it last)
    and its `progress` while active (from another replica: as of its last heartbeat). Owner or admin
    only, else NotFoundError.
    """
    with open_run(caller, run_id) as store:
        return _info(store)


def visible_runs(caller: Caller, kind: RunKind | None = None) -> list[dict[str, Any]]:
    """The runs the caller may see, newest first: their own; an admin sees every run."""
    where, params = ["1 = 1"], []
    if not caller.admin:
        where.append("owner = ?")
        params.append(caller.user_id)
    if kind is not None:
        where.append("kind = ?")
        params.append(kind)
    infos = []
    for row in _registry(" AND ".join(where), params):
        store = _open_store(row.run_id)
        if store is not None and caller.may_manage(row.owner):
            with store:
                infos.append(_info(store))
    return sorted(infos, key=lambda i: str(i["created_at"]), reverse=True)


def delete_run(caller: Caller, run_id: str) -> None:
    """Remove a run: its rows and its folder (exports, checkpoints): its owner or an admin.

    A run some worker executes is refused (ConflictError): cancel it first. Only the run's own folder
    is removed: the id is checked again and the folder must be a direct child of runs/ (`run_folder`),
    whatever the store says; a symlinked run folder is refused.
    """
    folder = run_folder(run_id)
    if (runs_dir() / run_id).is_symlink():
        raise PathOutsideError(f"run_id: {run_id!r} does not name a run folder")
    with open_run(caller, run_id) as store:
        row = store.row()
        if row is None:
            raise _not_found(run_id)
        if row.live():
            raise _running_error(run_id, row, "; cancel it first")
        with store.db.transaction() as tx:
            # Only if no worker claimed the run since the check above (compare-and-set, as claims).
            removed = tx.execute(
                """DELETE FROM twin_runs WHERE run_id = ? AND COALESCE(lease_id, '') = ?
                       AND COALESCE(lease_until, 0) = ?""",
                (run_id, row.lease_id or "", row.lease_until or 0),
            ).rowcount
            if removed != 1:
                raise _running_error(run_id, store.row() or row, "; cancel it first")
            for table in _RUN_TABLES[:-1]:
                tx.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
    if folder.exists():
        shutil.rmtree(folder)


def cancel_run(caller: Caller, run_id: str) -> dict[str, Any]:
    """Ask a run to stop, on whichever worker executes it: the executor reads the flag before each
    new call, lets the calls in flight finish and store their results, and stops with state
    "cancelled". The run keeps every stored answer and can be resumed (a resume clears the flag).
    Owner or admin only, else NotFoundError. Returns the run's info (see `run_info`).
    """
    with open_run(caller, run_id) as store:
        store.set_meta("cancel_requested", True)
        return _info(store)


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
    folder = run_folder(run_id)
    taken = ConflictError(f"run_id: run {run_id!r} already exists; resume it instead (--resume {run_id})")
    shared = _shared_db()
    if shared is None and run_path(run_id).exists():
        raise taken
    db = shared or _run_file_db(run_id)
    store = RunStore(run_id, db, owns_db=shared is None)
    try:
        inserted = db.execute(
            """INSERT INTO twin_runs(run_id, kind, owner, created_at, state, message, cancel_requested)
               VALUES (?, ?, ?, ?, 'created', '', 0) ON CONFLICT (run_id) DO NOTHING""",
            (run_id, kind, caller.user_id, utc_now()),
        ).rowcount
        if inserted != 1:
            raise taken
        folder.mkdir(parents=True, exist_ok=True)  # exports, plots and checkpoints of the run
        store.set_meta("survey_id", survey_id)
        store.set_meta("options", dict(options))
        store.set_meta("selection", _jsonable(selection))
        store.set_meta("source", source)
    except BaseException:
        store.close()
        raise
    return store


def _jsonable(value: Any) -> Any:
    """A selection (pydantic model, dict or None) as plain JSON data."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return json.loads(json.dumps(value, default=str))


# --- the store ----------------------------------------------------------------------------------------


class RunStore:
    """One run's rows in its database; each write is one transaction.

    It checks no ownership: services get a store through `open_run(caller, run_id)`. `lease` is the
    lease this store holds while its run executes here (`claim_run`).
    """

    def __init__(self, run_id: str, db: Database, *, owns_db: bool):
        self.run_id = run_id
        self.db = db
        self.folder = run_folder(run_id)
        self.path = self.folder / "results.sqlite"  # the run's database on SQLite; its folder always
        self.lease: Lease | None = None
        self.closed = False
        self._owns_db = owns_db

    @property
    def location(self) -> str:
        """Where the results are, for people: the SQLite file, or the run in Postgres."""
        return str(self.path) if self.db.dialect == "sqlite" else f"run {self.run_id} in {self.db.describe()}"

    def close(self) -> None:
        self.closed = True
        if self._owns_db:
            self.db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def row(self) -> RunRow | None:
        """The run's row in `twin_runs` as it is now (None if the run was deleted)."""
        found = self.db.execute(f"SELECT {_ROW_COLUMNS} FROM twin_runs WHERE run_id = ?", (self.run_id,)).rows
        return RunRow(*found[0]) if found else None

    def stop_reason(self) -> StopReason | None:
        """Why the executing run should stop now: "lease_lost" (another worker took it), "cancelled"
        (`cancel_run`, from any process), or None."""
        if self.lease is not None and self.lease.lost.is_set():
            return "lease_lost"
        if self.meta("cancel_requested", False):
            return "cancelled"
        return None

    # meta
    def set_meta(self, key: str, value: Any) -> None:
        column = _REGISTRY_COLUMNS.get(key)
        if column == "run_id":
            raise RunError("run_id: a run's id cannot change")
        if column is not None:
            stored = int(bool(value)) if column == "cancel_requested" else str(value)
            self.db.execute(f"UPDATE twin_runs SET {column} = ? WHERE run_id = ?", (stored, self.run_id))
            return
        self.db.execute(
            """INSERT INTO twin_meta(run_id, key, value) VALUES (?, ?, ?)
               ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value""",
            (self.run_id, key, json.dumps(value, ensure_ascii=False)),
        )

    def meta(self, key: str, default: Any = None) -> Any:
        column = _REGISTRY_COLUMNS.get(key)
        if column is not None:
            row = self.db.execute(
                f"SELECT {column} FROM twin_runs WHERE run_id = ?", (self.run_id,)
            ).fetchone()
            if row is None:
                return default
            return bool(row[0]) if column == "cancel_requested" else row[0]
        row = self.db.execute(
            "SELECT value FROM twin_meta WHERE run_id = ? AND key = ?", (self.run_id, key)
        ).fetchone()
        return json.loads(row[0]) if row else default

    # people and arms
    def add_people(self, respondents: Sequence[Respondent]) -> None:
        self.db.executemany(
            """INSERT INTO twin_people(run_id, person_id, position, profile, attributes) VALUES (?, ?, ?, ?, ?)
               ON CONFLICT (run_id, person_id) DO NOTHING""",
            [
                (self.run_id, r.id, i, r.profile, json.dumps(r.attributes, ensure_ascii=False))
                for i, r in enumerate(respondents)
            ],
        )

    def people(self) -> list[Respondent]:
        rows = self.db.execute(
            "SELECT person_id, profile, attributes FROM twin_people WHERE run_id = ? ORDER BY position",
            (self.run_id,),
        ).rows
        source = str(self.meta("source", "run"))
        return [Respondent(id=r[0], profile=r[1], attributes=json.loads(r[2]), source=source) for r in rows]

    def people_count(self) -> int:
        row = self.db.execute("SELECT COUNT(*) FROM twin_people WHERE run_id = ?", (self.run_id,)).fetchone()
        return int(row[0]) if row else 0

    def set_arms(self, arms: Mapping[str, Mapping[str, str]]) -> None:
        self.db.executemany(
            """INSERT INTO twin_arms(run_id, person_id, condition_group, arm) VALUES (?, ?, ?, ?)
               ON CONFLICT (run_id, person_id, condition_group) DO NOTHING""",
            [(self.run_id, p, g, a) for p, groups in arms.items() for g, a in groups.items()],
        )

    def arms(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        rows = self.db.execute(
            "SELECT person_id, condition_group, arm FROM twin_arms WHERE run_id = ?", (self.run_id,)
        ).rows
        for person, group, arm in rows:
            out.setdefault(person, {})[group] = arm
        return out

    # answers (surveys)
    def write_answers(self, records: Sequence[AnswerRecord]) -> int:
        """Store records atomically; an existing answer is never duplicated (a failed one may be
        replaced). Returns how many rows were stored or replaced."""
        if not records:
            return 0
        changed = 0
        with self.db.transaction() as tx:
            last = tx.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM twin_answers WHERE run_id = ?", (self.run_id,)
            )
            seq = int(last.rows[0][0])
            for r in records:
                seq += 1
                value = None if r.value is None else json.dumps(r.value, ensure_ascii=False)
                result = tx.execute(
                    """INSERT INTO twin_answers(run_id, person_id, question_id, status, value, reason, arm, error,
                                                raw, mode, seconds, created_at, seq)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT (run_id, person_id, question_id) DO UPDATE SET
                           status = excluded.status, value = excluded.value, reason = excluded.reason,
                           arm = excluded.arm, error = excluded.error, raw = excluded.raw, mode = excluded.mode,
                           seconds = excluded.seconds, created_at = excluded.created_at
                       WHERE twin_answers.status = 'failed'""",
                    (self.run_id, r.person_id, r.question_id, r.status, value, r.reason, r.arm, r.error, r.raw,
                     r.mode, r.seconds, utc_now(), seq),
                )  # fmt: skip
                changed += max(result.rowcount, 0)
                if result.rowcount > 0 and (r.distribution is not None or r.prompt_tokens is not None):
                    tx.execute(
                        """INSERT INTO twin_answer_details(run_id, person_id, question_id, distribution, prompt_tokens,
                                                           completion_tokens)
                           VALUES (?, ?, ?, ?, ?, ?)
                           ON CONFLICT (run_id, person_id, question_id) DO UPDATE SET
                               distribution = excluded.distribution, prompt_tokens = excluded.prompt_tokens,
                               completion_tokens = excluded.completion_tokens""",
                        (self.run_id, r.person_id, r.question_id,
                         None if r.distribution is None else json.dumps(r.distribution), r.prompt_tokens,
                         r.completion_tokens),
                    )  # fmt: skip
        return changed

    def stored(self, *, include_failed: bool = True) -> dict[str, set[str]]:
        """person id -> question ids that already have a result."""
        sql = "SELECT person_id, question_id FROM twin_answers WHERE run_id = ?" + (
            "" if include_failed else " AND status = 'ok'"
        )
        out: dict[str, set[str]] = {}
        for person, question in self.db.execute(sql, (self.run_id,)).rows:
            out.setdefault(person, set()).add(question)
        return out

    def answers(self) -> list[AnswerRecord]:
        rows = self.db.execute(
            """SELECT a.person_id, a.question_id, status, value, reason, arm, error, raw, mode, seconds,
                      d.distribution, d.prompt_tokens, d.completion_tokens
               FROM twin_answers a
               LEFT JOIN twin_people p ON p.run_id = a.run_id AND p.person_id = a.person_id
               LEFT JOIN twin_answer_details d
                   ON d.run_id = a.run_id AND d.person_id = a.person_id AND d.question_id = a.question_id
               WHERE a.run_id = ? ORDER BY p.position, a.seq""",
            (self.run_id,),
        ).rows
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
                distribution=None if r[10] is None else json.loads(r[10]),
                prompt_tokens=r[11],
                completion_tokens=r[12],
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
        self.db.execute(
            """INSERT INTO twin_transcripts(run_id, person_id, status, transcript, error, created_at)
               VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT (run_id, person_id) DO UPDATE SET status = excluded.status,
                   transcript = excluded.transcript, error = excluded.error, created_at = excluded.created_at
               WHERE twin_transcripts.status = 'failed'""",
            (self.run_id, person_id, status, json.dumps(transcript, ensure_ascii=False), error, utc_now()),
        )

    def transcripts(self) -> list[dict[str, Any]]:
        rows = self.db.execute(
            """SELECT t.person_id, status, transcript, error FROM twin_transcripts t
               LEFT JOIN twin_people p ON p.run_id = t.run_id AND p.person_id = t.person_id
               WHERE t.run_id = ? ORDER BY p.position""",
            (self.run_id,),
        ).rows
        return [
            {"person_id": r[0], "status": r[1], "transcript": json.loads(r[2]), "error": r[3]} for r in rows
        ]

    def interviewed(self, *, include_failed: bool = True) -> set[str]:
        sql = "SELECT person_id FROM twin_transcripts WHERE run_id = ?" + (
            "" if include_failed else " AND status = 'ok'"
        )
        return {r[0] for r in self.db.execute(sql, (self.run_id,)).rows}

    # both kinds
    def status_counts(self, kind: RunKind) -> dict[str, int]:
        """Stored results of the run (answers of a survey, transcripts of an interview): stored, ok, failed."""
        table = _RESULT_TABLES[kind]  # a fixed table name, never user input
        rows = self.db.execute(
            f"SELECT status, COUNT(*) FROM {table} WHERE run_id = ? GROUP BY status", (self.run_id,)
        ).rows
        counts = {str(status): int(n) for status, n in rows}
        return {"stored": sum(counts.values()), "ok": counts.get("ok", 0), "failed": counts.get("failed", 0)}

    def survey(self) -> Survey:
        data = self.meta("survey")
        if data is None:
            raise RunError(f"run_id: run {self.run_id!r} has no survey")
        return survey_from_data(data, default_id=str(self.meta("survey_id", "survey")))
