"""Interviews over many twins (batch, resumable) and with one twin (interactive), for a caller.

Batch: each person's interview runs the `twin_interview` graph on its own thread of a SQLite
checkpointer inside the run folder (of the Postgres checkpointer with DATABASE_URL, see
`_run_checkpoints`), so a killed run resumes mid-interview from the last finished step; finished
transcripts go to the run's `transcripts` table (one row per person). The run belongs to its
creator (or any admin), like a survey run. Exports: `services/twins/exports.py`.

Interactive: `InterviewSession(caller).start(...)` runs until the twin's first answer and returns
it; `reply(thread_id, text)` resumes the same thread with `Command(resume=text)` (a follow-up,
'/next' to move on, '/end' to finish). A session belongs to the caller who started it: its record
and finished transcript live in `interviews/<user id>/`, and another account's thread id is
NotFoundError (admins included: an interview is a personal conversation).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command

from personagraph.accounts.identity import Caller, ConflictError, NotFoundError
from personagraph.graphs.twin_interview import build
from personagraph.nodes.interview import InterviewContext, InterviewInput
from personagraph.services.twins.executor import (
    BatchOptions,
    ProgressCallback,
    RunSummary,
    WorkUnit,
    execute,
    finish_run,
)
from personagraph.services.twins.exports import export_session_transcript, output_folder
from personagraph.services.twins.store import (
    RunError,
    RunStore,
    claim_run,
    create_run_store,
    open_run,
    utc_now,
)
from personagraph.serving.redact import log_error
from personagraph.serving.safe_paths import check_id, child_path
from personagraph.serving.settings import get_settings
from personagraph.serving.tracing import run_config
from personagraph.twins.guides import InterviewGuide, guide_from_data
from personagraph.twins.respondents import Respondent

_log = logging.getLogger(__name__)


def create_interview_run(
    caller: Caller,
    guide: InterviewGuide,
    respondents: Sequence[Respondent],
    options: BatchOptions,
    *,
    run_id: str | None = None,
    selection: Any = None,
    source: str = "",
) -> str:
    """Create an interview run owned by the caller (guide, people and options frozen into its SQLite
    file); returns its id."""
    if not respondents:
        raise RunError("respondents: the selection is empty; nothing to run")
    with create_run_store(
        caller, "interview", run_id, survey_id=guide.id, options=options.model_dump(), selection=selection,
        source=source or respondents[0].source,
    ) as store:  # fmt: skip
        store.set_meta("guide", guide.model_dump())
        store.set_meta("expected", len(respondents))
        store.add_people(respondents)
        return str(store.meta("run_id"))


def _interview_input(person: Respondent, guide: InterviewGuide) -> InterviewInput:
    return {"person_id": person.id, "profile": person.profile, "guide": guide.model_dump()}


def run_interviews(
    caller: Caller,
    run_id: str,
    options: BatchOptions | None = None,
    *,
    progress: bool = True,
    on_progress: ProgressCallback | None = None,
    max_consecutive_errors: int = 5,
) -> RunSummary:
    """Run (or resume) an interview run; each finished transcript is stored as it arrives.

    `options` may change how the run executes, never what it asks. Stopping rules (and
    `cancel_run`): see `executor.execute`. The caller's own run, or any for an admin (else
    NotFoundError); a run already executing in this process is a ConflictError.
    """
    with open_run(caller, run_id, "interview") as store:
        claim_run(store)
        return finish_run(store, lambda: execute_interviews(
            store, options, progress=progress, on_progress=on_progress,
            max_consecutive_errors=max_consecutive_errors,
        ))  # fmt: skip


def execute_interviews(
    store: RunStore,
    options: BatchOptions | None = None,
    *,
    progress: bool = True,
    on_progress: ProgressCallback | None = None,
    max_consecutive_errors: int = 5,
) -> RunSummary:
    """The work of `run_interviews` on a store the caller opened (`open_run`) and claimed (`claim_run`)."""
    run_id = str(store.meta("run_id"))
    opts = BatchOptions.model_validate(store.meta("options", {})).resumed_with(options)
    guide = guide_from_data(store.meta("guide"))
    done = store.interviewed(include_failed=not opts.retry_failed)
    units = [WorkUnit(p) for p in store.people() if p.id not in done]
    saver, threads, conn = _run_checkpoints(store, run_id)
    graph = build(saver)
    context = InterviewContext(twin_role=opts.role, max_followups=opts.max_followups, interactive=False)

    def work(unit: WorkUnit) -> tuple[str, dict[str, Any]]:
        thread: RunnableConfig = {"configurable": {"thread_id": f"{threads}:{unit.person.id}"}}
        config = run_config(thread, "twin_interview", str(store.meta("owner") or "") or None)
        snapshot = graph.get_state(config)
        if snapshot.values and not snapshot.next:
            values = snapshot.values  # finished before a kill, not yet stored
        elif snapshot.next:
            values = graph.invoke(None, config, context=context)  # resume mid-way
        else:
            values = graph.invoke(_interview_input(unit.person, guide), config, context=context)
        return unit.person.id, {
            "transcript": values.get("transcript", []),
            "decisions": values.get("decisions", []),
        }

    def write(result: tuple[str, dict[str, Any]]) -> list[str]:
        person_id, transcript = result
        store.write_transcript(person_id, "ok", transcript)
        if conn is None:  # Postgres: the stored transcript replaces the thread's checkpoints
            _forget_thread(saver, f"{threads}:{person_id}")
        return ["ok"]

    try:
        return execute(
            store, run_id, "interview", units, len(units), opts, work, write,
            progress=progress, on_progress=on_progress, max_consecutive_errors=max_consecutive_errors,
        )  # fmt: skip
    finally:
        if conn is not None:
            conn.close()


def _run_checkpoints(
    store: RunStore, run_id: str
) -> tuple[BaseCheckpointSaver[Any], str, sqlite3.Connection | None]:
    """Where a batch run checkpoints its interviews: (saver, thread id prefix, SQLite connection to close).

    With DATABASE_URL: the app's Postgres checkpointer, so a run that another process picks up resumes
    each interview mid-way. Thread ids are `<run id>:<random>:<person id>`, the random part kept in the
    run's meta, so a new run reusing a deleted run's id never resumes the old run's threads. Without
    it: a SQLite file in the run folder (removed with the run), thread ids `<run id>:<person id>`.
    """
    if get_settings().database_url:
        from personagraph.memory.persistence import make_checkpointer

        threads = store.meta("checkpoint_threads")
        if not threads:
            threads = f"{run_id}:{uuid.uuid4().hex[:12]}"
            store.set_meta("checkpoint_threads", threads)
        return make_checkpointer(), str(threads), None
    conn = sqlite3.connect(
        str(store.path.parent / "checkpoints.sqlite"), check_same_thread=False, isolation_level=None
    )
    saver = SqliteSaver(conn)
    saver.setup()
    return saver, run_id, conn


def _forget_thread(saver: BaseCheckpointSaver[Any], thread_id: str) -> None:
    """Delete a finished interview's checkpoints; a failure only leaves them behind (logged)."""
    try:
        saver.delete_thread(thread_id)
    except Exception as exc:  # housekeeping: the transcript is already stored
        log_error(_log, f"could not delete the checkpoints of {thread_id!r}", exc, level=logging.WARNING)


# --- interactive --------------------------------------------------------------------------------------


@dataclass
class InterviewTurn:
    """Where an interactive interview stands after a call."""

    thread_id: str
    done: bool
    waiting: dict[str, Any] | None  # the interrupt payload (the twin's answer, what to do next)
    transcript: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def interviews_folder(caller: Caller) -> Path:
    """The caller's interactive interviews: a record per session and the saved transcripts."""
    return child_path(get_settings().personagraph_home / "interviews", check_id(caller.user_id, "user"))


class InterviewSession:
    """The caller interviews one twin; each call runs until the twin has answered (or the end).

    Any session of the same caller on the same checkpointer can continue a thread (e.g. the next
    request of the app). Thread ids are made here (`interview-<hex>`) and recorded in the caller's
    folder; a thread id without such a record (another account's, or a chat thread) is NotFoundError.
    """

    def __init__(self, caller: Caller, checkpointer: BaseCheckpointSaver[Any] | None = None):
        if checkpointer is None:
            from personagraph.memory.persistence import make_checkpointer

            checkpointer = make_checkpointer()
        self.caller = caller
        self.graph = build(checkpointer)

    def start(
        self, respondent: Respondent, guide: InterviewGuide, *, max_followups: int = 2
    ) -> InterviewTurn:
        """A new interview of `respondent` from `guide`, run until the twin's first answer."""
        thread_id = f"interview-{uuid.uuid4().hex}"
        record = {
            "thread_id": thread_id, "owner": self.caller.user_id, "created_at": utc_now(),
            "person": respondent.model_dump(mode="json"), "guide": guide.model_dump(mode="json"),
            "max_followups": max_followups,
        }  # fmt: skip
        path = self._record_path(thread_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        self.graph.invoke(
            _interview_input(respondent, guide),
            run_config(self._config(thread_id), "twin_interview", self.caller.user_id),
            context=self._context(record),
        )
        return self.turn(thread_id)

    def reply(self, thread_id: str, text: str) -> InterviewTurn:
        """Resume the caller's thread with their follow-up, '/next' or '/end' (a follow-up of at most
        INTERVIEW_MAX_MESSAGE_CHARS characters; RunError naming `text` otherwise)."""
        limit = get_settings().interview_max_message_chars
        if not isinstance(text, str):
            raise RunError("text: must be a string")
        if len(text) > limit:
            raise RunError(
                f"text: is {len(text)} characters; the maximum is {limit} (INTERVIEW_MAX_MESSAGE_CHARS)"
            )
        record = self._record(thread_id)
        current = self.turn(thread_id)
        if current.waiting is None:
            raise ConflictError(
                f"thread_id: interview {thread_id!r} is not waiting for input (done={current.done})"
            )
        config = run_config(self._config(thread_id), "twin_interview", self.caller.user_id)
        self.graph.invoke(Command(resume=text), config, context=self._context(record))
        return self.turn(thread_id)

    def turn(self, thread_id: str) -> InterviewTurn:
        """Where the caller's interview stands."""
        self._record(thread_id)
        snapshot = self.graph.get_state(self._config(thread_id))
        waiting = snapshot.interrupts[0].value if snapshot.interrupts else None
        values = snapshot.values or {}
        return InterviewTurn(
            thread_id=thread_id,
            done=not snapshot.next and bool(values),
            waiting=waiting,
            transcript=list(values.get("transcript", [])),
        )

    def save_transcript(self, thread_id: str, out_dir: Path | None = None) -> dict[str, str]:
        """Save the interview as markdown + JSON: in the caller's interviews folder by default; a
        folder of the terminal operator's choice for the CLI (others: only under their own folder)."""
        record = self._record(thread_id)
        own = interviews_folder(self.caller)
        folder = output_folder(self.caller, out_dir, own, own, "out_dir")
        return export_session_transcript(
            thread_id, self.turn(thread_id).transcript, guide_from_data(record["guide"]),
            Respondent.model_validate(record["person"]), folder,
        )  # fmt: skip

    def _record_path(self, thread_id: str) -> Path:
        return child_path(interviews_folder(self.caller), f"{check_id(thread_id, 'thread_id')}.session.json")

    def _record(self, thread_id: str) -> dict[str, Any]:
        path = self._record_path(thread_id)
        if not path.is_file():
            raise NotFoundError(f"thread_id: no interview {thread_id!r} of yours")
        record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return record

    @staticmethod
    def _context(record: dict[str, Any]) -> InterviewContext:
        return InterviewContext(interactive=True, max_followups=int(record.get("max_followups", 2)))

    @staticmethod
    def _config(thread_id: str) -> RunnableConfig:
        return {"configurable": {"thread_id": thread_id}}
