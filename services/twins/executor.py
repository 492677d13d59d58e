"""How a batch of twin calls runs: bounded concurrency, rate limiting, retries with backoff, progress,
and every result stored the moment it arrives (`execute`).

Survey runs and interview runs both hand `execute` their units of work (one model call's worth for a
person) and say how to do one and how to store its result; the executor owns everything else.
"""

from __future__ import annotations

import errno
import functools
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, Field, model_validator

from personagraph.services.twins.answering import Mode
from personagraph.services.twins.store import (
    CANCELLED,
    RunKind,
    RunState,
    RunStore,
    StopReason,
    release_run,
    report_progress,
)
from personagraph.serving.models import ModelError, StructuredOutputError, call_limits
from personagraph.serving.redact import user_error
from personagraph.serving.settings import Role
from personagraph.twins.answer_policy import Policy
from personagraph.twins.respondents import Respondent
from personagraph.twins.surveys import Question

log = logging.getLogger(__name__)

# `RunSummary.stopped` of a run stopped by `cancel_run` (CANCELLED, from store.py) or taken over by
# another worker while this one stalled past its lease.
LEASE_LOST = "another worker took the run over (this worker's lease expired); it continues there"
STOPPED_BECAUSE: dict[StopReason, str] = {"cancelled": CANCELLED, "lease_lost": LEASE_LOST}

# Settings that change how a run executes, never what it asks: a resume may change only these.
EXECUTION_FIELDS = ("concurrency", "rate_per_s", "retries", "backoff_s", "retry_failed")
# Bounds of the waits an option can ask for: a call at least every 100 s, a retry within 30 min.
MIN_RATE_PER_S = 0.01
MAX_BACKOFF_S = 60.0
MAX_RETRY_DELAY_S = 1800.0
CANCEL_POLL_S = 1.0  # how often a running batch looks for a cancel while calls are in flight


class BatchOptions(BaseModel):
    """How a batch runs. Invalid values are rejected with the field name and the allowed range."""

    mode: Mode = Field(default="per_question", description="per_question, per_person or distribution.")
    answer_policy: Policy = Field(
        default="mode",
        description="distribution: the stored answer is the most likely one (mode), the weighted median, "
        "the expected value (mean) or a seeded draw (draw).",
    )
    concurrency: int = Field(default=2, ge=1, le=256, description="Model calls in flight at once.")
    rate_per_s: float | None = Field(
        default=None, ge=MIN_RATE_PER_S, description="Most call starts per second (None = unlimited)."
    )
    retries: int = Field(default=3, ge=0, le=20, description="Retries of a call after a server error.")
    backoff_s: float = Field(
        default=2.0, ge=0, le=MAX_BACKOFF_S, description="First retry delay; doubles each retry."
    )
    reason_chars: int | None = Field(default=None, ge=0, le=1000, description="Reason length (0 = none).")
    role: Role = Field(default="twin", description="Model role that answers.")
    seed: int = Field(default=0, description="Seed of the between-subject arm assignment.")
    fallback: bool = Field(default=True, description="per_person: ask invalid fields one by one.")
    chunk_size: int | None = Field(default=None, ge=1, description="per_person: most questions per call.")
    retry_failed: bool = Field(default=False, description="On resume, ask failed answers again.")
    max_followups: int = Field(default=2, ge=0, le=10, description="Interviews: follow-ups per question.")

    @model_validator(mode="after")
    def _last_retry_waits_bounded(self) -> BatchOptions:
        # A slow run is fine, a parked one is not: the last retry's delay doubles from backoff_s.
        last = self.backoff_s * 2 ** max(self.retries - 1, 0)
        if last > MAX_RETRY_DELAY_S:
            raise ValueError(
                f"backoff_s, retries: the last retry would wait {last:g} s (backoff_s={self.backoff_s:g} "
                f"doubled {max(self.retries - 1, 0)} times); the maximum is {MAX_RETRY_DELAY_S:g} s: "
                "lower backoff_s or retries"
            )
        return self

    def reason_length(self) -> int:
        if self.reason_chars is not None:
            return self.reason_chars
        return {"per_question": 160, "per_person": 80}.get(self.mode, 0)

    def resumed_with(
        self, given: BatchOptions | None, fields: Iterable[str] = EXECUTION_FIELDS
    ) -> BatchOptions:
        """These (stored) options, with `given`'s values of `fields` (what a resume may change)."""
        if given is None:
            return self
        return self.model_copy(update={name: getattr(given, name) for name in fields})


@dataclass
class Progress:
    run_id: str
    total: int
    done: int = 0
    ok: int = 0
    failed: int = 0
    errors: int = 0
    last_person: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


ProgressCallback = Callable[[Progress], None]


@dataclass
class RunSummary:
    run_id: str
    path: str
    kind: str
    people: int
    expected: int
    stored: int
    ok: int
    failed: int
    asked_now: int
    calls_failed_now: int
    seconds: float
    stopped: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class WorkUnit:
    """One model call's worth of work: a person and the questions of that call (none for an interview)."""

    person: Respondent
    questions: list[Question] = field(default_factory=list)

    @property
    def steps(self) -> int:
        """How far the unit moves the progress: one per question, or one interview."""
        return len(self.questions) or 1


class RateLimiter:
    """At most `rate` model requests per second across threads (None = unlimited); `call_with_retries`
    runs it before every request (`serving.models.call_limits`), so `--rate` counts model calls."""

    def __init__(self, rate: float | None, stop: threading.Event | None = None):
        self.interval = 1.0 / rate if rate else 0.0
        self._next = 0.0
        self._lock = threading.Lock()
        self._stop = stop or threading.Event()

    def acquire(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            self._stop.wait(start - now)  # a cancelled run stops waiting


Result = TypeVar("Result")


def call_with_retries(
    fn: Callable[[], Result],
    retries: int,
    backoff_s: float,
    limiter: RateLimiter,
    stop: threading.Event | None = None,
) -> Result:
    """Run `fn`, every model request in it after the rate limiter; retry server/transport errors
    with exponential backoff. This is the one retry layer: the OpenAI client's own retries are off.

    Invalid structured output is not retried here (`structured` already retried it with the error).
    When `stop` is set (the run was cancelled) a pending retry is given up: the last error is raised.
    """
    stop = stop or threading.Event()
    for attempt in range(retries + 1):
        try:
            with call_limits(limiter.acquire, sdk_retries=0):
                return fn()
        except StructuredOutputError:
            raise
        except ModelError:
            if attempt == retries or stop.wait(backoff_s * (2**attempt) * (0.75 + 0.5 * random.random())):
                raise
    raise AssertionError("unreachable")


def execute(
    store: RunStore,
    run_id: str,
    kind: RunKind,
    units: Iterable[WorkUnit],
    total: int,
    options: BatchOptions,
    work: Callable[[WorkUnit], Result],
    write: Callable[[Result], list[str]],
    *,
    progress: bool = True,
    on_progress: ProgressCallback | None = None,
    max_consecutive_errors: int = 5,
    time_budget_s: float | None = None,
) -> RunSummary:
    """Do every unit with `work` on `options.concurrency` threads and store each result with `write`.

    `total` is the sum of the units' steps (the progress bar's length). `write` stores one result
    durably and returns the status ("ok" or "failed") of each record it stored; a result is counted
    only after it is written. Calls start at most `options.rate_per_s` a second; server errors are
    retried with backoff, and after `max_consecutive_errors` units fail that way in a row the run
    stops (`summary.stopped`), keeping what was stored; so does `time_budget_s` (no new calls start
    after it; resume later). Any other exception stops the run and propagates.
    """
    from tqdm import tqdm  # only batch runs need it

    started = time.perf_counter()
    cancelled = threading.Event()  # set once a cancel is seen: waiting calls stop waiting
    limiter = RateLimiter(options.rate_per_s, cancelled)
    state = Progress(run_id=run_id, total=total)
    bar = tqdm(
        total=total, disable=not progress, unit="answer" if kind == "survey" else "interview", desc=run_id
    )
    consecutive = 0
    stopped: str | None = None
    queue = iter(units)
    window = max(1, options.concurrency) * 2  # bounded: never more than this many units held in memory
    pool = ThreadPoolExecutor(max_workers=options.concurrency, thread_name_prefix="twin")
    in_flight: dict[Future[Result], WorkUnit] = {}

    def submit_more() -> None:
        nonlocal stopped
        if time_budget_s is not None and stopped is None and time.perf_counter() - started > time_budget_s:
            stopped = f"time budget of {time_budget_s:g} s reached; resume the run to finish it"
        while stopped is None and len(in_flight) < window:
            reason = store.stop_reason()  # a cancel from any process, or the run taken over
            if reason is not None:
                stopped = STOPPED_BECAUSE[reason]
                return
            unit = next(queue, None)
            if unit is None:
                return
            task = functools.partial(work, unit)
            future = pool.submit(
                call_with_retries, task, options.retries, options.backoff_s, limiter, cancelled
            )
            in_flight[future] = unit

    report_progress(store, state.as_dict())
    try:
        submit_more()
        while in_flight:
            finished, _ = wait(in_flight, timeout=CANCEL_POLL_S, return_when=FIRST_COMPLETED)
            reason = None if cancelled.is_set() else store.stop_reason()
            if reason is not None:
                stopped = stopped or STOPPED_BECAUSE[reason]
                cancelled.set()
            for future in finished:
                unit = in_flight.pop(future)
                try:
                    result = future.result()
                except ModelError as exc:
                    consecutive += 1
                    state.errors += unit.steps
                    if consecutive >= max_consecutive_errors and stopped is None:
                        stopped = f"{consecutive} calls in a row failed after retries: {exc}"
                    continue
                consecutive = 0
                statuses = write(result)  # durable before it is counted
                state.ok += statuses.count("ok")
                state.failed += statuses.count("failed")
                state.done += unit.steps
                state.last_person = unit.person.id
                bar.update(unit.steps)
                report_progress(store, state.as_dict())
                if on_progress:
                    on_progress(state)
            submit_more()
    except BaseException:
        for future in in_flight:
            future.cancel()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    if stopped and stopped.startswith("time budget") and state.done >= total:
        stopped = None  # the budget ran out while the last calls finished: nothing is left
    counts = store.status_counts(kind)
    return RunSummary(
        run_id=run_id, path=store.location, kind=kind, people=len(store.people()),
        expected=int(store.meta("expected", 0)), stored=counts["stored"], ok=counts["ok"], failed=counts["failed"],
        asked_now=state.done, calls_failed_now=state.errors, seconds=round(time.perf_counter() - started, 2),
        stopped=stopped,
    )  # fmt: skip


def finish_run(store: RunStore, body: Callable[[], RunSummary]) -> RunSummary:
    """Run `body` on a run already claimed (`claim_run`), record how it ended (done, stopped,
    cancelled, or failed with the error) and release the claim (a run another worker took over
    meanwhile is left as that worker records it)."""
    try:
        summary = body()
    except KeyboardInterrupt:
        release_run(store, "stopped", "interrupted; resume the run to finish it")
        raise
    except BaseException as exc:
        if disk_full(exc):
            # Nothing more can be stored: say where, so the user knows what to free; the run resumes.
            shown = f"the disk is full where the run is stored ({store.location}); free space, then resume the run"
            log.error("run %s: %s (%s)", store.run_id, shown, exc)
            _release_if_possible(store, shown)
            raise RunStorageFullError(shown) from exc
        # The run list shows this text: short for users, the details go to the log.
        shown = str(exc) if isinstance(exc, ModelError) else user_error(log, exc, "internal error")
        release_run(store, "failed", shown)
        raise
    state: RunState = "done"
    if summary.stopped == CANCELLED:
        state = "cancelled"
    elif summary.stopped:
        state = "stopped"
    release_run(store, state, summary.stopped or "")
    return summary


class RunStorageFullError(OSError):
    """A run stopped because the disk (or database) holding its results is full; the message names where."""


def disk_full(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) says the disk is full: ENOSPC or EFBIG (a file size limit),
    SQLite's "database or disk is full", or Postgres's disk_full (SQLSTATE 53100)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            return True
        if isinstance(seen, sqlite3.Error) and "disk is full" in str(seen):
            return True
        if getattr(seen, "sqlstate", None) == "53100":
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _release_if_possible(store: RunStore, message: str) -> None:
    """Record the run as failed; on a full disk that write may fail too: then the lease expires by
    itself, and this process (which knows it let go, store.claim_run) may resume the run at once."""
    try:
        release_run(store, "failed", message)
    except Exception:  # noqa: BLE001 - the error that stopped the run is the one to report
        log.warning(
            "run %s: could not record that it stopped (the disk is full?)", store.run_id, exc_info=True
        )
