"""Twin runs that go on after the request that started them (the HTTP API, the app's tabs).

`start_run_in_background(caller, run_id)` claims a created (or stopped) run, starts it on a worker
thread of this process and returns its id at once; `run_info(caller, run_id)` (store.py) then shows
its state, stored/expected counts and progress, and `cancel_run(caller, run_id)` stops it between
model calls, keeping every stored answer. `start_survey_run` / `start_interview_run` create the run
from a selection and start it in one call.

A process that ends takes its worker threads with it; the run keeps what it stored, and its lease
(store.py) is no longer renewed. `resume_orphaned_runs(worker)` finds runs left "running" without a
live lease and resumes them on this worker, where they stopped; `RunResumer` does that every
RUNS_RESUME_INTERVAL_S on a daemon thread of the app server. With DATABASE_URL any replica takes over
the runs of one that died (after RUNS_LEASE_S); on the SQLite default the app resumes, when it starts
again, the runs a killed app left running.
"""

from __future__ import annotations

import logging
import threading

from personagraph.accounts.identity import Caller, ConflictError, LimitReachedError, NotFoundError
from personagraph.services.twins.executor import BatchOptions, RunSummary, finish_run
from personagraph.services.twins.interviews import create_interview_run, execute_interviews
from personagraph.services.twins.selections import select_respondents
from personagraph.services.twins.store import (
    check_run_capacity,
    claim_run,
    open_run,
    orphaned_runs,
    release_run,
    settle_cancelled_orphan,
)
from personagraph.services.twins.surveys import create_survey_run, execute_survey
from personagraph.serving.settings import get_settings
from personagraph.twins.guides import InterviewGuide
from personagraph.twins.respondents import Selection
from personagraph.twins.surveys import Survey

log = logging.getLogger(__name__)


def start_run_in_background(
    caller: Caller,
    run_id: str,
    options: BatchOptions | None = None,
    *,
    max_consecutive_errors: int = 5,
    time_budget_s: float | None = None,
    worker: str | None = None,
) -> str:
    """Start (or resume) the caller's survey or interview run on a thread of this process, as
    `worker` (default: this process, WORKER_ID); returns its id.

    Owner or admin only (else NotFoundError); a run some worker executes (a live lease) is a
    ConflictError; one more than RUNS_MAX_ACTIVE_PER_ACCOUNT (for the run's owner, on every replica)
    or RUNS_MAX_ACTIVE (for this process) is a LimitReachedError (429). `options` may change how the
    run executes, never what it asks. How it ended is recorded in the run (run_info: state and
    message), errors included.
    """
    store = open_run(caller, run_id)
    try:
        claim_run(store, worker)
    except BaseException:
        store.close()
        raise
    kind = store.meta("kind")

    def body() -> RunSummary:
        if kind == "survey":
            return execute_survey(
                store, options, progress=False, max_consecutive_errors=max_consecutive_errors,
                time_budget_s=time_budget_s,
            )  # fmt: skip
        return execute_interviews(
            store, options, progress=False, max_consecutive_errors=max_consecutive_errors
        )

    def work() -> None:
        try:
            finish_run(store, body)
        except Exception:  # recorded in the run (state "failed" and the message) by finish_run
            log.exception("twin run %s failed", run_id)
        finally:
            store.close()

    try:
        threading.Thread(target=work, daemon=True, name=f"twin-run-{run_id}").start()
    except BaseException:
        release_run(store, "stopped", "could not start; resume the run")
        store.close()
        raise
    return run_id


def start_survey_run(
    caller: Caller, survey: Survey, selection: Selection, options: BatchOptions, *, run_id: str | None = None
) -> str:
    """Create a survey run of the selected respondents for the caller and start it in the background.

    The selection's files are confined to the caller's folders (parse it with
    `selections.parse_selection(caller, specs)`). Returns the run id at once. A caller already
    running as many runs as allowed gets LimitReachedError (429) before anything is created.
    """
    check_run_capacity(caller)
    people = select_respondents(caller, selection)
    handle = create_survey_run(
        caller, survey, people, options, run_id=run_id, selection=selection, source=selection.source
    )
    return start_run_in_background(caller, handle.run_id, options)


def start_interview_run(
    caller: Caller,
    guide: InterviewGuide,
    selection: Selection,
    options: BatchOptions,
    *,
    run_id: str | None = None,
) -> str:
    """Create an interview run of the selected respondents for the caller and start it in the
    background; returns the run id at once (LimitReachedError first, as for surveys)."""
    check_run_capacity(caller)
    people = select_respondents(caller, selection)
    created = create_interview_run(
        caller, guide, people, options, run_id=run_id, selection=selection, source=selection.source
    )
    return start_run_in_background(caller, created, options)


# --- runs whose worker died -------------------------------------------------------------------------------


def resume_orphaned_runs(worker: str | None = None) -> list[str]:
    """Resume, in the background on this process as `worker`, every run left "running" whose lease
    is no longer live (its worker died); returns their ids.

    Each runs for its owner (a Caller of the owner's id: the run's people, survey and options are
    stored in it, so nothing of the owner's files is read). A run whose cancel was asked for is
    recorded as cancelled instead. A run another worker claims first, or that this server or its
    owner has no room for now, is left for later (or for another worker).
    """
    resumed: list[str] = []
    for row in orphaned_runs():
        if row.cancel_requested:
            if settle_cancelled_orphan(row):
                log.info("run %s: its worker %s is gone; recorded as cancelled", row.run_id, row.worker)
            continue
        if not row.owner:
            continue
        try:
            start_run_in_background(Caller(row.owner), row.run_id, worker=worker)
        except (ConflictError, NotFoundError):
            continue  # another worker was quicker, or the run was deleted meanwhile
        except LimitReachedError as exc:
            log.info("run %s: not resumed here now: %s", row.run_id, exc)
            continue
        log.info("run %s: resumed here (its worker %s is gone)", row.run_id, row.worker)
        resumed.append(row.run_id)
    return resumed


class RunResumer:
    """Calls `resume_orphaned_runs(worker)` at start and every `interval_s` (RUNS_RESUME_INTERVAL_S)
    on a daemon thread, until `stop()`. The app server runs one:

        resumer = RunResumer().start()
        ...
        resumer.stop()
    """

    def __init__(self, worker: str | None = None, interval_s: float | None = None):
        self.worker = worker
        self.interval_s = interval_s if interval_s is not None else get_settings().runs_resume_interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> RunResumer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True, name="twin-run-resumer")
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                resume_orphaned_runs(self.worker)
            except Exception:  # the database is away for a moment: try again at the next interval
                log.warning("resuming orphaned twin runs failed", exc_info=True)
            if self._stop.wait(self.interval_s):
                return
