"""Batch runs that scale and survive: bounded concurrency, rate limiting, retries with backoff,
progress, and every result written to SQLite the moment it arrives.

A run lives in `PERSONAGRAPH_HOME/runs/<run_id>/results.sqlite`: the run's settings, the survey (or
interview guide), the respondents' ids and profiles, their between-subject arms, and the answers
with `UNIQUE(person_id, question_id)`. Killing a run at any point and starting it again with the
same run id asks only what has no stored result yet; an answer can never be stored twice.

    run = create_survey_run(survey, respondents, BatchOptions(mode="per_person", concurrency=4))
    summary = run_survey(run.run_id)          # again after a crash: resumes
    export_all(run.run_id, Path("out"))       # JSON, CSV, Excel (+ transcripts for interviews)
"""

from __future__ import annotations

import functools
import json
import math
import random
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from personagraph.serving.models import ModelError, StructuredOutputError
from personagraph.serving.settings import Role, get_settings
from personagraph.services.twins.answering import MODES, AnswerRecord, Mode, ask_question, ask_questionnaire
from personagraph.twins.respondents import Respondent
from personagraph.twins.surveys import Question, Survey, assign_arms, survey_from_data, to_native, to_twin2k

RunKind = Literal["survey", "interview"]
_RUN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")


class RunError(RuntimeError):
    """A run could not start or continue; the message says why and what to do."""


class RunStopped(RunError):
    """The run stopped early (model server errors after retries); what was stored is kept."""


# --- options and progress ---------------------------------------------------------------------------


class BatchOptions(BaseModel):
    """How a batch runs. Invalid values are rejected with the field name and the allowed range."""

    mode: Mode = Field(default="per_question", description="per_question or per_person.")
    concurrency: int = Field(default=2, ge=1, le=256, description="Model calls in flight at once.")
    rate_per_s: float | None = Field(default=None, gt=0, description="Most call starts per second.")
    retries: int = Field(default=3, ge=0, le=20, description="Retries of a call after a server error.")
    backoff_s: float = Field(default=2.0, ge=0, description="First retry delay; doubles each retry.")
    reason_chars: int | None = Field(default=None, ge=0, le=1000, description="Reason length (0 = none).")
    role: Role = Field(default="twin", description="Model role that answers.")
    seed: int = Field(default=0, description="Seed of the between-subject arm assignment.")
    fallback: bool = Field(default=True, description="per_person: ask invalid fields one by one.")
    chunk_size: int | None = Field(default=None, ge=1, description="per_person: most questions per call.")
    retry_failed: bool = Field(default=False, description="On resume, ask failed answers again.")
    max_followups: int = Field(default=2, ge=0, le=10, description="Interviews: follow-ups per question.")

    def reason_length(self) -> int:
        if self.reason_chars is not None:
            return self.reason_chars
        return 160 if self.mode == "per_question" else 80


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


class RateLimiter:
    """At most `rate` call starts per second across threads (None = unlimited)."""

    def __init__(self, rate: float | None):
        self.interval = 1.0 / rate if rate else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


def call_with_retries(fn: Callable[[], Any], retries: int, backoff_s: float, limiter: RateLimiter) -> Any:
    """Run `fn` after the rate limiter; retry server/transport errors with exponential backoff.

    Invalid structured output is not retried here (`structured` already retried it with the error).
    """
    for attempt in range(retries + 1):
        limiter.acquire()
        try:
            return fn()
        except StructuredOutputError:
            raise
        except ModelError:
            if attempt == retries:
                raise
            time.sleep(backoff_s * (2**attempt) * (0.75 + 0.5 * random.random()))
    raise AssertionError("unreachable")


# --- storage ----------------------------------------------------------------------------------------


def runs_dir() -> Path:
    return get_settings().personagraph_home / "runs"


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.match(run_id or ""):
        raise RunError(f"run id: {run_id!r} is not allowed; use 1-80 of A-Z a-z 0-9 _ . -")
    return run_id


def new_run_id(prefix: str = "run") -> str:
    return f"{prefix}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def run_path(run_id: str) -> Path:
    return runs_dir() / check_run_id(run_id) / "results.sqlite"


def list_runs() -> list[str]:
    base = runs_dir()
    return sorted(p.parent.name for p in base.glob("*/results.sqlite")) if base.is_dir() else []


def run_info(run_id: str) -> dict[str, Any]:
    """What a run is, whose it is and how far it got (for listings)."""
    with RunStore.open(run_id) as store:
        stored = store.count_answers() if store.meta("kind") == "survey" else len(store.transcripts())
        return {
            "run_id": run_id, "kind": store.meta("kind"), "owner": store.meta("owner", "") or "",
            "created_at": store.meta("created_at", ""), "survey_id": store.meta("survey_id", ""),
            "people": len(store.people()), "expected": store.meta("expected", 0), "stored": stored,
        }  # fmt: skip


def visible_runs(owner: str, *, admin: bool) -> list[dict[str, Any]]:
    """Runs a user may see, newest first: their own, or every run for an admin."""
    infos = [run_info(r) for r in list_runs()]
    mine = infos if admin else [i for i in infos if i["owner"] == owner]
    return sorted(mine, key=lambda i: str(i["created_at"]), reverse=True)


def delete_run(run_id: str) -> None:
    """Remove a run's folder (answers, transcripts, checkpoints)."""
    import shutil

    path = run_path(run_id)
    if not path.exists():
        raise RunError(f"run id: no run {run_id!r}; allowed: {', '.join(list_runs()) or '(none)'}")
    shutil.rmtree(path.parent)


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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RunStore:
    """One run's SQLite file. Writes are serialised by a lock and committed one result at a time."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()

    @classmethod
    def open(cls, run_id: str, *, must_exist: bool = True) -> RunStore:
        path = run_path(run_id)
        if must_exist and not path.is_file():
            known = ", ".join(list_runs()[-10:]) or "none"
            raise RunError(f"run {run_id!r} not found under {runs_dir()}; recent runs: {known}")
        return cls(path)

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

    # answers
    def write_answers(self, records: Sequence[AnswerRecord]) -> int:
        """Store records atomically; an existing answer is never duplicated (a failed one may be replaced)."""
        if not records:
            return 0
        rows = [
            (r.person_id, r.question_id, r.status, None if r.value is None else json.dumps(r.value, ensure_ascii=False),
             r.reason, r.arm, r.error, r.raw, r.mode, r.seconds, _now())
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

    def count_answers(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

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
                (person_id, status, json.dumps(transcript, ensure_ascii=False), error, _now()),
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

    # the run's survey
    def survey(self) -> Survey:
        data = self.meta("survey")
        if data is None:
            raise RunError(f"{self.path}: this run has no survey")
        return survey_from_data(data, default_id=str(self.meta("survey_id", "survey")))


# --- creating and running ---------------------------------------------------------------------------


@dataclass
class RunHandle:
    run_id: str
    path: Path
    people: int
    expected: int


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


def create_survey_run(
    survey: Survey,
    respondents: Sequence[Respondent],
    options: BatchOptions,
    *,
    run_id: str | None = None,
    selection: Any = None,
    arms: Mapping[str, Mapping[str, str]] | None = None,
    hints: Mapping[str, str] | None = None,
    source: str = "",
    owner: str = "",
) -> RunHandle:
    """Create a run: the survey, people, arms and options are frozen into the run's SQLite file.

    `arms`: the between-subject arm of each person per condition group (e.g. the arm the real person
    saw); people without one get a seeded random arm (recorded).
    """
    if not respondents:
        raise RunError("respondents: the selection is empty; nothing to run")
    run_id = check_run_id(run_id or new_run_id("survey"))
    path = run_path(run_id)
    if path.exists():
        raise RunError(f"run {run_id!r} already exists; resume it instead (--resume {run_id})")
    with RunStore(path) as store:
        store.set_meta("kind", "survey")
        store.set_meta("run_id", run_id)
        store.set_meta("owner", owner)
        store.set_meta("created_at", _now())
        store.set_meta("survey_id", survey.id)
        store.set_meta("survey", to_twin2k(survey) if survey.format == "twin2k" else to_native(survey))
        store.set_meta("options", options.model_dump())
        store.set_meta("selection", _jsonable(selection))
        store.set_meta("source", source or (respondents[0].source if respondents else ""))
        store.set_meta("hints", dict(hints or {}))
        store.add_people(respondents)
        given = arms or {}
        resolved = {}
        for r in respondents:
            assigned = assign_arms(survey, r.id, options.seed)
            assigned.update({g: a for g, a in given.get(r.id, {}).items() if g in assigned})
            resolved[r.id] = assigned
        store.set_arms(resolved)
        store.set_meta("arm_source", "given" if given else "random")
        expected = sum(len(survey.questions_for(resolved[r.id])) for r in respondents)
        store.set_meta("expected", expected)
    return RunHandle(run_id=run_id, path=path, people=len(respondents), expected=expected)


def _jsonable(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return json.loads(json.dumps(value, default=str))


@dataclass
class _Unit:
    person: Respondent
    questions: list[Question]


def _pending_units(store: RunStore, survey: Survey, options: BatchOptions) -> Iterator[_Unit]:
    stored = store.stored(include_failed=not options.retry_failed)
    arms = store.arms()
    for person in store.people():
        done = stored.get(person.id, set())
        todo = [q for q in survey.questions_for(arms.get(person.id, {})) if q.id not in done]
        if not todo:
            continue
        if options.mode == "per_question":
            for q in todo:
                yield _Unit(person, [q])
        else:
            size = options.chunk_size or len(todo)
            for start in range(0, len(todo), size):
                yield _Unit(person, todo[start : start + size])


def _answer_unit(
    unit: _Unit, survey: Survey, options: BatchOptions, hints: Mapping[str, str]
) -> list[AnswerRecord]:
    if options.mode == "per_question":
        q = unit.questions[0]
        return [
            ask_question(
                unit.person,
                survey,
                q,
                role=options.role,
                reason_chars=options.reason_length(),
                hint=hints.get(q.id),
            )
        ]
    return ask_questionnaire(
        unit.person, survey, unit.questions, role=options.role, reason_chars=options.reason_length(),
        hints=hints, fallback=options.fallback,
    )  # fmt: skip


def run_survey(
    run_id: str,
    options: BatchOptions | None = None,
    *,
    progress: bool = True,
    on_progress: ProgressCallback | None = None,
    max_consecutive_errors: int = 5,
    time_budget_s: float | None = None,
) -> RunSummary:
    """Run (or resume) a survey run until every person has a result for every question they see.

    Results are written as they arrive. Server errors are retried with backoff; after
    `max_consecutive_errors` units fail that way in a row the run stops (`summary.stopped`), keeping
    what was stored; so does `time_budget_s` (no new calls start after it; resume later). Any other
    exception stops the run and propagates.
    """
    store = RunStore.open(run_id)
    try:
        stored_options = BatchOptions.model_validate(store.meta("options", {}))
        # Resuming may change how the run executes, never what it asks.
        opts = stored_options.model_copy(
            update={
                k: v
                for k, v in (options.model_dump() if options else {}).items()
                if k in ("concurrency", "rate_per_s", "retries", "backoff_s", "retry_failed", "fallback")
            }
        )
        survey = store.survey()
        hints = store.meta("hints", {}) or {}
        units = list(_pending_units(store, survey, opts))
        total = sum(len(u.questions) for u in units)
        return _execute(store, run_id, "survey", units, total, opts,
                        lambda u: _answer_unit(u, survey, opts, hints), store.write_answers,
                        progress, on_progress, max_consecutive_errors, time_budget_s)  # fmt: skip
    finally:
        store.close()


def _execute(
    store: RunStore,
    run_id: str,
    kind: str,
    units: Sequence[Any],
    total: int,
    opts: BatchOptions,
    work: Callable[[Any], Any],
    write: Callable[[Any], Any],
    progress: bool,
    on_progress: ProgressCallback | None,
    max_consecutive_errors: int,
    time_budget_s: float | None = None,
) -> RunSummary:
    from tqdm import tqdm

    started = time.perf_counter()
    limiter = RateLimiter(opts.rate_per_s)
    state = Progress(run_id=run_id, total=total)
    bar = tqdm(
        total=total, disable=not progress, unit="answer" if kind == "survey" else "interview", desc=run_id
    )
    consecutive = 0
    stopped: str | None = None
    queue = iter(units)
    window = max(1, opts.concurrency) * 2  # bounded: never more than this many units held in memory
    executor = ThreadPoolExecutor(max_workers=opts.concurrency, thread_name_prefix="twin")
    in_flight: dict[Future[Any], Any] = {}

    def submit_more() -> None:
        nonlocal stopped
        if time_budget_s is not None and stopped is None and time.perf_counter() - started > time_budget_s:
            stopped = f"time budget of {time_budget_s:g} s reached; resume the run to finish it"
        while stopped is None and len(in_flight) < window:
            unit = next(queue, None)
            if unit is None:
                return
            task = functools.partial(work, unit)
            in_flight[executor.submit(call_with_retries, task, opts.retries, opts.backoff_s, limiter)] = unit

    try:
        submit_more()
        while in_flight:
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                unit = in_flight.pop(future)
                size = len(unit.questions) if kind == "survey" else 1
                try:
                    result = future.result()
                except ModelError as exc:
                    consecutive += 1
                    state.errors += size
                    if consecutive >= max_consecutive_errors and stopped is None:
                        stopped = f"{consecutive} calls in a row failed after retries: {exc}"
                    continue
                consecutive = 0
                write(result)  # durable before it is counted
                records = result if isinstance(result, list) else [result]
                state.ok += sum(getattr(r, "status", "ok") == "ok" for r in records)
                state.failed += sum(getattr(r, "status", "ok") == "failed" for r in records)
                state.done += size
                state.last_person = getattr(unit, "person", None) and unit.person.id
                bar.update(size)
                if on_progress:
                    on_progress(state)
            submit_more()
    except BaseException:
        for future in in_flight:
            future.cancel()
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        bar.close()
    if stopped and stopped.startswith("time budget") and state.done >= total:
        stopped = None  # the budget ran out while the last calls finished: nothing is left
    counts = _counts(store, kind)
    return RunSummary(
        run_id=run_id, path=str(store.path), kind=kind, people=len(store.people()),
        expected=int(store.meta("expected", 0)), stored=counts["stored"], ok=counts["ok"], failed=counts["failed"],
        asked_now=state.done, calls_failed_now=state.errors, seconds=round(time.perf_counter() - started, 2),
        stopped=stopped,
    )  # fmt: skip


def _counts(store: RunStore, kind: str) -> dict[str, int]:
    table = "answers" if kind == "survey" else "transcripts"
    rows = dict(store._conn.execute(f"SELECT status, COUNT(*) FROM {table} GROUP BY status").fetchall())
    return {"stored": sum(rows.values()), "ok": rows.get("ok", 0), "failed": rows.get("failed", 0)}


# --- analysis and exports ---------------------------------------------------------------------------


def summarize(store: RunStore) -> dict[str, Any]:
    """Coverage (stored / expected), validity (ok / stored) and per-question distributions."""
    survey = store.survey()
    arms = store.arms()
    people = store.people()
    answers = store.answers()
    by_question: dict[str, list[AnswerRecord]] = {}
    for a in answers:
        by_question.setdefault(a.question_id, []).append(a)
    expected = {q.id: 0 for q in survey.questions}
    for p in people:
        for q in survey.questions_for(arms.get(p.id, {})):
            expected[q.id] += 1
    questions = []
    for q in survey.questions:
        rows = by_question.get(q.id, [])
        ok = [a for a in rows if a.status == "ok"]
        values = [a.value for a in ok]
        entry: dict[str, Any] = {
            "question_id": q.id, "type": q.type, "text": q.text, "arm": q.condition_arm, "expected": expected[q.id],
            "stored": len(rows), "ok": len(ok), "failed": len(rows) - len(ok),
            "coverage": round(len(ok) / expected[q.id], 4) if expected[q.id] else None,
            "validity": round(len(ok) / len(rows), 4) if rows else None,
        }  # fmt: skip
        numbers = [float(v) for v in values if isinstance(v, int | float)]
        if numbers and q.type != "open":
            mean = sum(numbers) / len(numbers)
            entry["mean"] = round(mean, 4)
            entry["sd"] = round(math.sqrt(sum((x - mean) ** 2 for x in numbers) / len(numbers)), 4)
        if q.options:
            counts = {o.code: 0 for o in q.options}
            for v in values:
                if isinstance(v, int) and v in counts:
                    counts[v] += 1
            entry["distribution"] = {f"{o.code} {o.label}": counts[o.code] for o in q.options}
        questions.append(entry)
    total_expected = sum(expected.values())
    ok_total = sum(a.status == "ok" for a in answers)
    return {
        "run_id": store.meta("run_id"), "survey_id": survey.id, "title": survey.title, "people": len(people),
        "expected": total_expected, "stored": len(answers), "ok": ok_total, "failed": len(answers) - ok_total,
        "coverage": round(ok_total / total_expected, 4) if total_expected else None,
        "validity": round(ok_total / len(answers), 4) if answers else None,
        "questions": questions,
    }  # fmt: skip


def by_segment(store: RunStore, attribute: str) -> dict[str, dict[str, dict[str, Any]]]:
    """Per segment (the people's value of `attribute`, e.g. age_band): each question's n, mean and
    option counts, from the valid answers. For numeric attributes, group them first (e.g. by tertile)."""
    survey = store.survey()
    people = {p.id: p for p in store.people()}
    known = {key for p in people.values() for key in p.attributes}
    if attribute not in known:
        raise RunError(
            f"attribute: {attribute!r} is not an attribute of this run's people; allowed: {', '.join(sorted(known))}"
        )
    groups: dict[str, dict[str, list[Any]]] = {}
    for a in store.answers():
        if a.status != "ok" or a.person_id not in people:
            continue
        segment = people[a.person_id].attributes.get(attribute)
        groups.setdefault("(missing)" if segment is None else str(segment), {}).setdefault(
            a.question_id, []
        ).append(a.value)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for segment, questions in sorted(groups.items()):
        out[segment] = {}
        for q in survey.questions:
            values = questions.get(q.id, [])
            entry: dict[str, Any] = {"n": len(values)}
            numbers = [float(v) for v in values if isinstance(v, int | float)]
            if numbers and q.type != "open":
                entry["mean"] = round(sum(numbers) / len(numbers), 4)
            if q.options:
                entry["distribution"] = {o.code: sum(v == o.code for v in values) for o in q.options}
            out[segment][q.id] = entry
    return out


def export_json(store: RunStore, path: Path) -> Path:
    data = {
        "run": {
            k: store.meta(k)
            for k in (
                "run_id",
                "kind",
                "created_at",
                "survey_id",
                "options",
                "selection",
                "source",
                "arm_source",
            )
        },
        "summary": summarize(store) if store.meta("kind") == "survey" else None,
        "arms": store.arms(),
        "answers": [a.model_dump() for a in store.answers()],
    }
    if store.meta("kind") == "interview":
        data["transcripts"] = store.transcripts()
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return path


EXPORT_COLUMNS = [
    "run_id",
    "survey_id",
    "person_id",
    "question_id",
    "arm",
    "status",
    "value",
    "reason",
    "error",
    "mode",
]


def answer_rows(store: RunStore) -> list[dict[str, Any]]:
    run_id, survey_id = store.meta("run_id"), store.meta("survey_id")
    return [
        {"run_id": run_id, "survey_id": survey_id, "person_id": a.person_id, "question_id": a.question_id,
         "arm": a.arm, "status": a.status, "value": a.value, "reason": a.reason, "error": a.error, "mode": a.mode}
        for a in store.answers()
    ]  # fmt: skip


def export_csv(store: RunStore, path: Path) -> Path:
    import pandas as pd

    pd.DataFrame(answer_rows(store), columns=EXPORT_COLUMNS).to_csv(path, index=False)
    return path


def _sheet_name(name: str, taken: set[str]) -> str:
    clean = re.sub(r"[\[\]:*?/\\]", "_", name)[:31] or "survey"
    candidate, n = clean, 2
    while candidate.lower() in taken:
        suffix = f"_{n}"
        candidate, n = clean[: 31 - len(suffix)] + suffix, n + 1
    taken.add(candidate.lower())
    return candidate


def export_excel(stores: Sequence[RunStore], path: Path) -> Path:
    """One sheet per survey (a row per person, a column per question, arms included) plus `summary`."""
    import pandas as pd

    taken = {"summary"}
    summary_rows: list[dict[str, Any]] = []
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        for store in stores:
            survey = store.survey()
            arms = store.arms()
            values: dict[str, dict[str, Any]] = {}
            for a in store.answers():
                values.setdefault(a.person_id, {})[a.question_id] = a.value if a.status == "ok" else None
            rows = []
            for person in store.people():
                row: dict[str, Any] = {"person_id": person.id}
                row.update({f"arm:{g}": arm for g, arm in sorted(arms.get(person.id, {}).items())})
                row.update({q.id: values.get(person.id, {}).get(q.id) for q in survey.questions})
                rows.append(row)
            pd.DataFrame(rows).to_excel(writer, sheet_name=_sheet_name(survey.id, taken), index=False)
            summary = summarize(store)
            for q in summary["questions"]:
                summary_rows.append(
                    {"run_id": summary["run_id"], "survey_id": summary["survey_id"],
                     **{k: v for k, v in q.items() if k != "distribution"},
                     "distribution": json.dumps(q.get("distribution"), ensure_ascii=False) if q.get("distribution") else None}
                )  # fmt: skip
        pd.DataFrame(summary_rows).to_excel(writer, sheet_name="summary", index=False)
    return path


def export_all(run_id: str, out_dir: Path) -> dict[str, str]:
    """Every export of a run into `out_dir`: answers.json/.csv and results.xlsx, or transcripts."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with RunStore.open(run_id) as store:
        files = {"json": str(export_json(store, out_dir / f"{run_id}.json"))}
        if store.meta("kind") == "survey":
            files["csv"] = str(export_csv(store, out_dir / f"{run_id}.csv"))
            files["excel"] = str(export_excel([store], out_dir / f"{run_id}.xlsx"))
        else:
            from personagraph.services.twins.interviews import export_transcripts

            files.update(export_transcripts(store, out_dir / f"{run_id}_transcripts"))
    return files


__all__ = [
    "MODES",
    "BatchOptions",
    "Progress",
    "RateLimiter",
    "RunError",
    "RunStopped",
    "RunStore",
    "RunSummary",
    "create_survey_run",
    "export_all",
    "export_csv",
    "export_excel",
    "export_json",
    "list_runs",
    "run_survey",
    "by_segment",
    "summarize",
]
