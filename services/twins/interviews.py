"""Interviews over many twins (batch, resumable) and with one twin (interactive).

Batch: each person's interview runs the `twin_interview` graph on its own thread of a SQLite
checkpointer inside the run folder, so a killed run resumes mid-interview from the last finished
step; finished transcripts go to the run's `transcripts` table (one row per person). Exports of
transcripts are in `services/twins/exports.py`.

Interactive: `InterviewSession.start(...)` runs until the twin's first answer and returns it;
`reply(thread_id, text)` resumes the same thread with `Command(resume=text)` (a follow-up,
'/next' to move on, '/end' to finish).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command

from personagraph.graphs.twin_interview import build
from personagraph.nodes.interview import InterviewContext, InterviewInput
from personagraph.services.twins.executor import BatchOptions, ProgressCallback, RunSummary, WorkUnit, execute
from personagraph.services.twins.store import RunError, RunStore, create_run_store
from personagraph.twins.guides import InterviewGuide, guide_from_data
from personagraph.twins.respondents import Respondent


def create_interview_run(
    guide: InterviewGuide,
    respondents: Sequence[Respondent],
    options: BatchOptions,
    *,
    run_id: str | None = None,
    selection: Any = None,
    source: str = "",
    owner: str = "",
) -> str:
    """Create an interview run (guide, people and options frozen into its SQLite file); returns its id."""
    if not respondents:
        raise RunError("respondents: the selection is empty; nothing to run")
    with create_run_store(
        "interview", run_id, survey_id=guide.id, options=options.model_dump(), selection=selection,
        source=source or respondents[0].source, owner=owner,
    ) as store:  # fmt: skip
        store.set_meta("guide", guide.model_dump())
        store.set_meta("expected", len(respondents))
        store.add_people(respondents)
        return str(store.meta("run_id"))


def _interview_input(person: Respondent, guide: InterviewGuide) -> InterviewInput:
    return {"person_id": person.id, "profile": person.profile, "guide": guide.model_dump()}


def run_interviews(
    run_id: str,
    options: BatchOptions | None = None,
    *,
    progress: bool = True,
    on_progress: ProgressCallback | None = None,
    max_consecutive_errors: int = 5,
) -> RunSummary:
    """Run (or resume) an interview run; each finished transcript is stored as it arrives.

    `options` may change how the run executes, never what it asks. Stopping rules: see `executor.execute`.
    """
    with RunStore.open(run_id) as store:
        if store.meta("kind") != "interview":
            raise RunError(f"run {run_id!r} is not an interview run")
        opts = BatchOptions.model_validate(store.meta("options", {})).resumed_with(options)
        guide = guide_from_data(store.meta("guide"))
        done = store.interviewed(include_failed=not opts.retry_failed)
        units = [WorkUnit(p) for p in store.people() if p.id not in done]
        conn = sqlite3.connect(
            str(store.path.parent / "checkpoints.sqlite"), check_same_thread=False, isolation_level=None
        )
        saver = SqliteSaver(conn)
        saver.setup()
        graph = build(saver)
        context = InterviewContext(twin_role=opts.role, max_followups=opts.max_followups, interactive=False)

        def work(unit: WorkUnit) -> tuple[str, dict[str, Any]]:
            config: RunnableConfig = {"configurable": {"thread_id": f"{run_id}:{unit.person.id}"}}
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
            return ["ok"]

        try:
            return execute(
                store, run_id, "interview", units, len(units), opts, work, write,
                progress=progress, on_progress=on_progress, max_consecutive_errors=max_consecutive_errors,
            )  # fmt: skip
        finally:
            conn.close()


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


class InterviewSession:
    """A person interviews one twin; each call runs until the twin has answered (or the end).

    Any session on the same checkpointer can continue a thread (e.g. the next request of the app).
    """

    def __init__(self, checkpointer: BaseCheckpointSaver[Any] | None = None, *, max_followups: int = 2):
        if checkpointer is None:
            from personagraph.memory.persistence import make_checkpointer

            checkpointer = make_checkpointer()
        self.graph = build(checkpointer)
        self.context = InterviewContext(interactive=True, max_followups=max_followups)

    def start(
        self, respondent: Respondent, guide: InterviewGuide, thread_id: str | None = None
    ) -> InterviewTurn:
        thread_id = thread_id or f"interview-{uuid.uuid4().hex}"
        self.graph.invoke(_interview_input(respondent, guide), self._config(thread_id), context=self.context)
        return self.turn(thread_id)

    def reply(self, thread_id: str, text: str) -> InterviewTurn:
        """Resume the thread with the person's follow-up, '/next' or '/end'."""
        current = self.turn(thread_id)
        if current.waiting is None:
            raise RunError(f"thread {thread_id!r} is not waiting for input (done={current.done})")
        self.graph.invoke(Command(resume=text), self._config(thread_id), context=self.context)
        return self.turn(thread_id)

    def turn(self, thread_id: str) -> InterviewTurn:
        snapshot = self.graph.get_state(self._config(thread_id))
        waiting = snapshot.interrupts[0].value if snapshot.interrupts else None
        values = snapshot.values or {}
        return InterviewTurn(
            thread_id=thread_id,
            done=not snapshot.next and bool(values),
            waiting=waiting,
            transcript=list(values.get("transcript", [])),
        )

    @staticmethod
    def _config(thread_id: str) -> RunnableConfig:
        return {"configurable": {"thread_id": thread_id}}
