"""CRM batches as background jobs in the app's database: claimed by one worker, resumed by another.

    batch_id = start_batch(caller, crm, rows)     # checks, records and starts it; returns at once
    batch_info(caller, batch_id)                  # state, done/total, worker, the results so far
    cancel_batch(caller, batch_id)                # stops it between rows; stored results stay

Where: the tables `crm_batches` (one row per batch: owner, state, the request rows as JSON, the
worker that runs it and its lease, a cancel flag) and `crm_batch_results` (one row per finished
request row, unique per (batch_id, row_index)) in Postgres when DATABASE_URL is set, else in the
SQLite file PERSONAGRAPH_HOME/crm/jobs.sqlite.

Leases (as for twin runs, services/twins/store.py): a worker (WORKER_ID, default `<hostname>-<pid>`)
claims a batch with a compare-and-set UPDATE that succeeds only if no live lease exists, so two
workers never both run it; a heartbeat thread renews the lease (RUNS_LEASE_S) every third of its
length. A lease is live until it expires, or until its process is known to be gone (same machine and
pid namespace, pid no longer running). Each row's result is stored as soon as it is made, and only
while the worker still holds the lease; a worker that finds its lease taken stops. The batch ends
with state done, cancelled or failed, and its lease cleared.

A worker that dies leaves the batch "running" with a lease nobody renews; `resume_orphaned_batches`
(run every RUNS_RESUME_INTERVAL_S by `CrmBatchResumer` in the app server) claims it on this worker,
as its owner, and runs only the rows that have no stored result yet.

Per row the behaviour is that of `CrmService.run_batch`: a bad row is stored as an `invalid` or
`error` result with its row number, and the batch goes on. Only the owner or an admin may read or
cancel a batch; for anyone else it does not exist (NotFoundError). An admin reading another
account's batch does not see that account's timing averages.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from personagraph.accounts.identity import Caller, ConflictError, LimitReachedError, NotFoundError
from personagraph.crm.catalog import crm_home
from personagraph.services.crm import PER_CALLER_KEYS, BatchFileError, CrmService, check_row_count
from personagraph.serving.database import Database, connect
from personagraph.serving.redact import user_error
from personagraph.serving.safe_paths import check_id
from personagraph.serving.settings import get_settings
from personagraph.serving.text import check_text
from personagraph.serving.workers import host_key, process_gone, worker_id

log = logging.getLogger(__name__)

BatchState = Literal["created", "running", "done", "cancelled", "failed"]
FINISHED_STATES = ("done", "cancelled", "failed")

SCHEMA = """
CREATE TABLE IF NOT EXISTS crm_batches (
    batch_id TEXT PRIMARY KEY, owner TEXT NOT NULL, created_at TEXT NOT NULL, state TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '', rows TEXT NOT NULL, total INTEGER NOT NULL,
    worker TEXT, host TEXT, pid INTEGER, lease_id TEXT, lease_until DOUBLE PRECISION,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS crm_batches_owner ON crm_batches (owner);
CREATE INDEX IF NOT EXISTS crm_batches_state ON crm_batches (state);
CREATE TABLE IF NOT EXISTS crm_batch_results (
    batch_id TEXT NOT NULL, row_index INTEGER NOT NULL, result TEXT NOT NULL, created_at TEXT NOT NULL,
    worker TEXT NOT NULL, PRIMARY KEY (batch_id, row_index)
);
"""

_COLUMNS = "batch_id, owner, created_at, state, message, total, worker, host, pid, lease_id, lease_until, cancel_requested"

_DATABASES: dict[str, Database] = {}  # target -> the database, tables created (once per process)
_DATABASES_LOCK = threading.Lock()


def jobs_db() -> Database:
    """The database of CRM batches: DATABASE_URL, else PERSONAGRAPH_HOME/crm/jobs.sqlite."""
    target: str | Path = get_settings().database_url or crm_home() / "jobs.sqlite"
    key = str(target)
    with _DATABASES_LOCK:
        db = _DATABASES.get(key)
        if db is None:
            db = connect(target)
            db.executescript(SCHEMA)
            _DATABASES[key] = db
        return db


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_batch_id() -> str:
    return f"crm-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class BatchRow:
    """A batch's row in `crm_batches` (without its request rows)."""

    batch_id: str
    owner: str
    created_at: str
    state: str
    message: str
    total: int
    worker: str | None
    host: str | None
    pid: int | None
    lease_id: str | None
    lease_until: float | None
    cancel_requested: int

    def live(self, now: float | None = None) -> bool:
        """Some worker holds the batch: a lease not yet expired, of a process not known to be gone."""
        if self.lease_id is None or self.lease_until is None:
            return False
        if self.lease_until < (time.time() if now is None else now):
            return False
        return not process_gone(self.host, self.pid)


def _row(db: Database, batch_id: str) -> BatchRow | None:
    found = db.execute(f"SELECT {_COLUMNS} FROM crm_batches WHERE batch_id = ?", (batch_id,)).fetchone()
    return BatchRow(*found) if found is not None else None


def _not_found(batch_id: str) -> NotFoundError:
    return NotFoundError(f"batch_id: no CRM batch {batch_id!r} that you may open")


def _owned_row(caller: Caller, batch_id: str) -> BatchRow:
    """The batch's row if the caller may manage it (owner or admin); NotFoundError otherwise."""
    check_id(batch_id, "batch_id")
    row = _row(jobs_db(), batch_id)
    if row is None or not caller.may_manage(row.owner):
        raise _not_found(batch_id)
    return row


def _running_error(row: BatchRow) -> ConflictError:
    return ConflictError(f"batch_id: CRM batch {row.batch_id!r} is already running on worker {row.worker}")


# --- creating ---------------------------------------------------------------------------------------------


def _check_texts(value: Any, field: str) -> None:
    """BatchFileError naming the field (rows.3.brand) of any text the database could not store."""
    if isinstance(value, str):
        check_text(value, field, BatchFileError)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_texts(str(key), field)
            _check_texts(item, f"{field}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_texts(item, f"{field}.{index}")


def create_batch(caller: Caller, rows: Iterable[Any]) -> str:
    """Record a batch of request rows for the caller (state "created"); returns its id.

    The rows are checked as `CrmService.run_batch` checks them: at most CRM_BATCH_MAX_ROWS (a
    BatchFileError naming `rows`, before anything is stored); a row that is no request object is
    kept and reported as `invalid` when it runs. An empty batch is a BatchFileError too.
    """
    items = list(rows)
    check_row_count(len(items))
    if not items:
        raise BatchFileError("rows: the batch has no rows")
    _check_texts(items, "rows")
    try:
        encoded = json.dumps(items, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise BatchFileError(f"rows: cannot be stored as JSON: {exc}") from None
    batch_id = new_batch_id()
    jobs_db().execute(
        "INSERT INTO crm_batches(batch_id, owner, created_at, state, rows, total) VALUES (?, ?, ?, 'created', ?, ?)",
        (batch_id, caller.user_id, _utc_now(), encoded, len(items)),
    )
    return batch_id


def _capacity_error(owner: str, now: float, db: Database) -> LimitReachedError | None:
    limit = get_settings().runs_max_active_per_account
    rows = db.execute(
        f"SELECT {_COLUMNS} FROM crm_batches WHERE owner = ? AND lease_id IS NOT NULL", (owner,)
    ).rows
    if sum(1 for r in rows if BatchRow(*r).live(now)) >= limit:
        return LimitReachedError(
            f"batches: at most {limit} CRM batches running per account (RUNS_MAX_ACTIVE_PER_ACCOUNT); "
            "wait for one to finish or cancel it"
        )
    return None


def check_batch_capacity(caller: Caller) -> None:
    """LimitReachedError (429) when the caller already runs as many batches as RUNS_MAX_ACTIVE_PER_ACCOUNT."""
    error = _capacity_error(caller.user_id, time.time(), jobs_db())
    if error is not None:
        raise error


# --- leases -----------------------------------------------------------------------------------------------


class BatchLease:
    """This process's hold on a batch (`claim_batch`): renewed every third of its length by a
    heartbeat thread until `stop`; `lost` is set when another worker took the batch meanwhile."""

    def __init__(self, db: Database, batch_id: str, worker: str, seconds: float):
        self.id = uuid.uuid4().hex
        self.db = db
        self.batch_id = batch_id
        self.worker = worker
        self.seconds = seconds
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._beat, daemon=True, name=f"crm-batch-lease-{self.batch_id}"
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing (the lease then expires unless released)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=max(self.seconds, 5.0))

    def _beat(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                renewed = self.db.execute(
                    "UPDATE crm_batches SET lease_until = ? WHERE batch_id = ? AND lease_id = ?",
                    (time.time() + self.seconds, self.batch_id, self.id),
                ).rowcount
            except Exception:  # the database is away for a moment: try again at the next beat
                log.warning("CRM batch %s: could not renew the lease", self.batch_id, exc_info=True)
                continue
            if renewed != 1:
                log.warning(
                    "CRM batch %s: lease lost (another worker took it); stopping it here", self.batch_id
                )
                self.lost.set()
                return


_CLAIM_LOCK = threading.Lock()  # check-then-claim of the capacity, serialised within this process


def claim_batch(batch_id: str, worker: str | None = None) -> BatchLease:
    """Record that `worker` (default: this process) runs the batch, with a lease of RUNS_LEASE_S
    renewed by a heartbeat thread (started here). A live lease of any worker is a ConflictError
    naming it, and so is a finished batch; LimitReachedError when the owner runs as many batches
    as RUNS_MAX_ACTIVE_PER_ACCOUNT. Pair with `release_batch`."""
    db = jobs_db()
    worker = worker or worker_id()
    seconds = get_settings().runs_lease_s
    with _CLAIM_LOCK:
        row = _row(db, batch_id)
        if row is None:
            raise _not_found(batch_id)
        if row.state in ("done", "cancelled"):
            raise ConflictError(f"batch_id: CRM batch {batch_id!r} is already {row.state}")
        now = time.time()
        if row.live(now):
            raise _running_error(row)
        error = _capacity_error(row.owner, now, db)
        if error is not None:
            raise error
        lease = BatchLease(db, batch_id, worker, seconds)
        # Compare-and-set: only if the lease is still the one judged dead above.
        claimed = db.execute(
            """UPDATE crm_batches SET worker = ?, host = ?, pid = ?, lease_id = ?, lease_until = ?,
                   state = 'running', message = ''
               WHERE batch_id = ? AND COALESCE(lease_id, '') = ? AND COALESCE(lease_until, 0) = ?
                   AND state NOT IN ('done', 'cancelled')""",
            (worker, host_key(), os.getpid(), lease.id, now + seconds,
             batch_id, row.lease_id or "", row.lease_until or 0),
        ).rowcount  # fmt: skip
        if claimed != 1:
            raise _running_error(_row(db, batch_id) or row)
    lease.start()
    return lease


def release_batch(lease: BatchLease, state: BatchState, message: str = "") -> bool:
    """Record how the batch ended and clear its lease, if this lease still holds it (a batch another
    worker took over is left to that worker); True if it did."""
    lease.stop()
    released = lease.db.execute(
        """UPDATE crm_batches SET state = ?, message = ?, lease_id = NULL, lease_until = NULL,
               host = NULL, pid = NULL
           WHERE batch_id = ? AND lease_id = ?""",
        (state, message, lease.batch_id, lease.id),
    ).rowcount
    return released == 1


# --- running ----------------------------------------------------------------------------------------------


def run_row(crm: CrmService, caller: Caller, row: Any, number: int) -> dict[str, Any]:
    """One row's result, as `CrmService.run_batch` makes it: a bad row is an `invalid` or `error`
    result with its row number, never an exception."""
    return crm.run_row(caller, row, number)


def _stored_indexes(db: Database, batch_id: str) -> set[int]:
    rows = db.execute("SELECT row_index FROM crm_batch_results WHERE batch_id = ?", (batch_id,)).rows
    return {int(r[0]) for r in rows}


def _store_result(lease: BatchLease, index: int, result: Mapping[str, Any]) -> bool:
    """Store one row's result while this lease holds the batch (a row is never stored twice);
    False if the lease was lost or the row was stored already."""
    stored = lease.db.execute(
        """INSERT INTO crm_batch_results(batch_id, row_index, result, created_at, worker)
           SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM crm_batches WHERE batch_id = ? AND lease_id = ?)
           ON CONFLICT (batch_id, row_index) DO NOTHING""",
        (lease.batch_id, index, json.dumps(result, ensure_ascii=False, default=str), _utc_now(), lease.worker,
         lease.batch_id, lease.id),
    ).rowcount  # fmt: skip
    return stored == 1


def _cancel_requested(db: Database, batch_id: str) -> bool:
    found = db.execute("SELECT cancel_requested FROM crm_batches WHERE batch_id = ?", (batch_id,)).fetchone()
    return found is None or bool(found[0])


def execute_batch(crm: CrmService, caller: Caller, lease: BatchLease) -> BatchState | None:
    """Run every row without a stored result, in order, storing each at once; then release the
    batch with its state (returned). None when the lease was lost (another worker has the batch)."""
    db, batch_id = lease.db, lease.batch_id
    try:
        found = db.execute("SELECT rows FROM crm_batches WHERE batch_id = ?", (batch_id,)).fetchone()
        rows: list[Any] = json.loads(found[0]) if found is not None else []
        stored = _stored_indexes(db, batch_id)
        for index, raw in enumerate(rows):
            if index in stored:
                continue
            if lease.lost.is_set():
                lease.stop()
                return None
            if _cancel_requested(db, batch_id):
                done = len(_stored_indexes(db, batch_id))
                release_batch(lease, "cancelled", f"cancelled after {done} of {len(rows)} rows")
                return "cancelled"
            result = run_row(crm, caller, raw, index + 1)
            if not _store_result(lease, index, result) and lease.lost.is_set():
                lease.stop()
                return None
    except Exception as exc:
        message = user_error(log, exc, "the batch failed")
        return "failed" if release_batch(lease, "failed", message) else None
    return "done" if release_batch(lease, "done") else None


def start_batch_in_background(
    caller: Caller, crm_service: CrmService, batch_id: str, *, worker: str | None = None
) -> str:
    """Claim the caller's batch (owner or admin, else NotFoundError) for `worker` (default: this
    process) and run it on a thread of this process, as the batch's owner; returns its id at once.
    A live lease of any worker, or a finished batch, is a ConflictError."""
    row = _owned_row(caller, batch_id)
    lease = claim_batch(batch_id, worker)
    owner = Caller(row.owner)  # the owner's timing log, whoever started or resumed the batch

    def work() -> None:
        try:
            execute_batch(crm_service, owner, lease)
        except Exception:  # the release above failed (the database is away): the lease expires
            log.exception("CRM batch %s failed", batch_id)
            lease.stop()

    try:
        threading.Thread(target=work, daemon=True, name=f"crm-batch-{batch_id}").start()
    except BaseException:
        release_batch(lease, "failed", "could not start")
        raise
    return batch_id


def start_batch(caller: Caller, crm_service: CrmService, rows: Iterable[Any]) -> str:
    """Check the caller's room for one more batch, record the rows and start them in the background
    (POST /api/crm/batches); returns the batch id at once."""
    check_batch_capacity(caller)
    batch_id = create_batch(caller, rows)
    try:
        return start_batch_in_background(caller, crm_service, batch_id)
    except ConflictError:
        return batch_id  # another worker's resumer took it first (or it was cancelled): it is under way
    except BaseException:
        # Not started (no room after all, the database away): the 4xx/5xx says so, so it never runs.
        with contextlib.suppress(Exception):
            jobs_db().execute(
                "DELETE FROM crm_batches WHERE batch_id = ? AND state = 'created' AND lease_id IS NULL",
                (batch_id,),
            )
        raise


# --- reading and cancelling ------------------------------------------------------------------------------


def _info(caller: Caller, row: BatchRow, db: Database) -> dict[str, Any]:
    rows = db.execute(
        "SELECT result FROM crm_batch_results WHERE batch_id = ? ORDER BY row_index", (row.batch_id,)
    ).rows
    results = [json.loads(r[0]) for r in rows]
    if not caller.owns(row.owner):  # an admin: not the owner's own timing history
        results = [{k: v for k, v in r.items() if k not in PER_CALLER_KEYS} for r in results]
    return {
        "batch_id": row.batch_id, "owner": row.owner, "created_at": row.created_at, "state": row.state,
        "message": row.message, "done": len(results), "total": row.total, "active": row.live(),
        "worker": row.worker, "cancel_requested": bool(row.cancel_requested), "results": results,
    }  # fmt: skip


def batch_info(caller: Caller, batch_id: str) -> dict[str, Any]:
    """The batch's state, done/total, the worker that runs (or ran) it and the results so far, in
    row order. Owner or admin only: for anyone else NotFoundError."""
    row = _owned_row(caller, batch_id)
    return _info(caller, row, jobs_db())


def cancel_batch(caller: Caller, batch_id: str) -> dict[str, Any]:
    """Stop the batch before its next row (the worker that runs it reads the flag between rows);
    a batch no worker runs is cancelled at once. Stored results stay. A finished batch is a
    ConflictError; someone else's NotFoundError. Returns batch_info."""
    row = _owned_row(caller, batch_id)
    if row.state in FINISHED_STATES:
        raise ConflictError(f"batch_id: CRM batch {batch_id!r} is already {row.state}; nothing to cancel")
    db = jobs_db()
    db.execute("UPDATE crm_batches SET cancel_requested = 1 WHERE batch_id = ?", (batch_id,))
    if not row.live():
        _settle_cancelled(db, row)
    return batch_info(caller, batch_id)


def _settle_cancelled(db: Database, row: BatchRow) -> bool:
    """Record a batch no worker holds as cancelled (compare-and-set against its dead lease)."""
    done = len(_stored_indexes(db, row.batch_id))
    return (
        db.execute(
            """UPDATE crm_batches SET state = 'cancelled', message = ?, lease_id = NULL, lease_until = NULL,
                   host = NULL, pid = NULL
               WHERE batch_id = ? AND COALESCE(lease_id, '') = ? AND COALESCE(lease_until, 0) = ?
                   AND state IN ('created', 'running', 'failed')""",
            (
                f"cancelled after {done} of {row.total} rows",
                row.batch_id,
                row.lease_id or "",
                row.lease_until or 0,
            ),
        ).rowcount  # fmt: skip
        == 1
    )


# --- batches whose worker died ---------------------------------------------------------------------------


def orphaned_batches() -> list[BatchRow]:
    """Batches whose state is "running" with no live lease (their worker died, or stalled past its
    lease), and batches still "created" a lease after they were recorded (the process that recorded
    them died before it could claim them)."""
    now = time.time()
    stale = now - get_settings().runs_lease_s
    rows = jobs_db().execute(f"SELECT {_COLUMNS} FROM crm_batches WHERE state IN ('running', 'created')").rows
    found = []
    for row in (BatchRow(*r) for r in rows):
        if (
            row.state == "running"
            and not row.live(now)
            or row.state == "created"
            and row.lease_id is None
            and _timestamp(row.created_at) < stale
        ):
            found.append(row)
    return found


def _timestamp(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return 0.0


def resume_orphaned_batches(crm_service: CrmService, worker: str | None = None) -> list[str]:
    """Resume, in the background on this process as `worker`, every orphaned batch (`orphaned_batches`);
    returns their ids. Each runs as its owner, from the first row without a
    stored result. A batch whose cancel was asked for is recorded as cancelled instead; one that
    another worker claims first, or whose owner has no room now, is left for later."""
    resumed: list[str] = []
    for row in orphaned_batches():
        if row.cancel_requested:
            if _settle_cancelled(jobs_db(), row):
                log.info(
                    "CRM batch %s: its worker %s is gone; recorded as cancelled", row.batch_id, row.worker
                )
            continue
        try:
            start_batch_in_background(Caller(row.owner), crm_service, row.batch_id, worker=worker)
        except (ConflictError, NotFoundError):
            continue  # another worker was quicker
        except LimitReachedError as exc:
            log.info("CRM batch %s: not resumed here now: %s", row.batch_id, exc)
            continue
        log.info("CRM batch %s: resumed here (its worker %s is gone)", row.batch_id, row.worker)
        resumed.append(row.batch_id)
    return resumed


class CrmBatchResumer:
    """Calls `resume_orphaned_batches` at start and every `interval_s` (RUNS_RESUME_INTERVAL_S) on a
    daemon thread, until `stop()`. The app server runs one next to the twin runs' RunResumer."""

    def __init__(self, crm_service: CrmService, worker: str | None = None, interval_s: float | None = None):
        self.crm_service = crm_service
        self.worker = worker
        self.interval_s = interval_s if interval_s is not None else get_settings().runs_resume_interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> CrmBatchResumer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True, name="crm-batch-resumer")
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                resume_orphaned_batches(self.crm_service, self.worker)
            except Exception:  # the database is away for a moment: try again at the next interval
                log.warning("resuming orphaned CRM batches failed", exc_info=True)
            if self._stop.wait(self.interval_s):
                return
