"""Twin runs that go on after the request that started them (the HTTP API, the app's tabs).

`start_run_in_background(caller, run_id)` claims a created (or stopped) run, starts it on a worker
thread of this process and returns its id at once; `run_info(caller, run_id)` (store.py) then shows
its state, stored/expected counts and progress, and `cancel_run(caller, run_id)` stops it between
model calls, keeping every stored answer. `start_survey_run` / `start_interview_run` create the run
from a selection and start it in one call. A process that ends takes its worker threads with it;
the run keeps what it stored and resumes where it stopped.
"""

from __future__ import annotations

import logging
import threading

from personagraph.accounts.identity import Caller
from personagraph.services.twins.executor import BatchOptions, RunSummary, finish_run
from personagraph.services.twins.interviews import create_interview_run, execute_interviews
from personagraph.services.twins.selections import select_respondents
from personagraph.services.twins.store import check_run_capacity, claim_run, open_run
from personagraph.services.twins.surveys import create_survey_run, execute_survey
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
) -> str:
    """Start (or resume) the caller's survey or interview run on a worker thread; returns its id.

    Owner or admin only (else NotFoundError); a run already executing in this process is a
    ConflictError; one more than RUNS_MAX_ACTIVE_PER_ACCOUNT (for the run's owner) or RUNS_MAX_ACTIVE
    (for this process) is a LimitReachedError (429). `options` may change how the run executes, never what it asks. How it ended is
    recorded in the run (run_info: state and message), errors included.
    """
    store = open_run(caller, run_id)
    try:
        claim_run(store)
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

    threading.Thread(target=work, daemon=True, name=f"twin-run-{run_id}").start()
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
