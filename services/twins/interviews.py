"""Interviews over many twins (batch, resumable) and with one twin (interactive), plus transcripts.

Batch: each person's interview runs the `twin_interview` graph on its own thread of a SQLite
checkpointer inside the run folder, so a killed run resumes mid-interview from the last finished
step; finished transcripts go to the run's `transcripts` table (one row per person).

Interactive: `InterviewSession.start(...)` runs until the twin's first answer and returns it;
`reply(thread_id, text)` resumes the same thread with `Command(resume=text)` (a follow-up,
'/next' to move on, '/end' to finish).
"""

from __future__ import annotations

import json
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

from personagraph.graphs.twin_interview import build_graph
from personagraph.nodes.interview import InterviewContext, InterviewInput
from personagraph.services.twins.runs import (
    BatchOptions,
    ProgressCallback,
    RunError,
    RunStore,
    RunSummary,
    _execute,
    _now,
    check_run_id,
    new_run_id,
    run_path,
)
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
    if not respondents:
        raise RunError("respondents: the selection is empty; nothing to run")
    run_id = check_run_id(run_id or new_run_id("interview"))
    path = run_path(run_id)
    if path.exists():
        raise RunError(f"run {run_id!r} already exists; resume it instead (--resume {run_id})")
    with RunStore(path) as store:
        store.set_meta("kind", "interview")
        store.set_meta("run_id", run_id)
        store.set_meta("owner", owner)
        store.set_meta("created_at", _now())
        store.set_meta("guide", guide.model_dump())
        store.set_meta("survey_id", guide.id)
        store.set_meta("options", options.model_dump())
        store.set_meta(
            "selection",
            json.loads(
                json.dumps(
                    selection.model_dump(mode="json") if hasattr(selection, "model_dump") else selection,
                    default=str,
                )
            ),
        )
        store.set_meta("source", source or respondents[0].source)
        store.set_meta("expected", len(respondents))
        store.add_people(respondents)
    return run_id


@dataclass
class _Person:
    person: Respondent


def run_interviews(
    run_id: str,
    options: BatchOptions | None = None,
    *,
    progress: bool = True,
    on_progress: ProgressCallback | None = None,
    max_consecutive_errors: int = 5,
) -> RunSummary:
    """Run (or resume) an interview run; each finished transcript is stored as it arrives."""
    store = RunStore.open(run_id)
    if store.meta("kind") != "interview":
        store.close()
        raise RunError(f"run {run_id!r} is not an interview run")
    try:
        stored = BatchOptions.model_validate(store.meta("options", {}))
        opts = stored.model_copy(
            update={
                k: v
                for k, v in (options.model_dump() if options else {}).items()
                if k in ("concurrency", "rate_per_s", "retries", "backoff_s", "retry_failed")
            }
        )
        guide = guide_from_data(store.meta("guide"))
        done = store.interviewed(include_failed=not opts.retry_failed)
        units = [_Person(p) for p in store.people() if p.id not in done]
        conn = sqlite3.connect(
            str(store.path.parent / "checkpoints.sqlite"), check_same_thread=False, isolation_level=None
        )
        saver = SqliteSaver(conn)
        saver.setup()
        graph = build_graph(saver)
        context = InterviewContext(twin_role=opts.role, max_followups=opts.max_followups, interactive=False)

        def work(unit: _Person) -> tuple[str, dict[str, Any]]:
            config: RunnableConfig = {"configurable": {"thread_id": f"{run_id}:{unit.person.id}"}}
            snapshot = graph.get_state(config)
            if snapshot.values and not snapshot.next:
                values = snapshot.values  # finished before a kill, not yet stored
            elif snapshot.next:
                values = graph.invoke(None, config, context=context)  # resume mid-way
            else:
                payload: InterviewInput = {
                    "person_id": unit.person.id,
                    "profile": unit.person.profile,
                    "guide": guide.model_dump(),
                }
                values = graph.invoke(payload, config, context=context)
            return unit.person.id, {
                "transcript": values.get("transcript", []),
                "decisions": values.get("decisions", []),
            }

        def write(result: tuple[str, dict[str, Any]]) -> None:
            person_id, transcript = result
            store.write_transcript(person_id, "ok", transcript)

        try:
            return _execute(store, run_id, "interview", units, len(units), opts, work, write,
                            progress, on_progress, max_consecutive_errors)  # fmt: skip
        finally:
            conn.close()
    finally:
        store.close()


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
    """A person interviews one twin; each call runs until the twin has answered (or the end)."""

    def __init__(
        self, checkpointer: BaseCheckpointSaver[Any] | None = None, context: InterviewContext | None = None
    ):
        if checkpointer is None:
            from personagraph.memory.persistence import make_checkpointer

            checkpointer = make_checkpointer()
        self.graph = build_graph(checkpointer)
        self.context = context or InterviewContext(interactive=True)
        if not self.context.interactive:
            raise ValueError("context.interactive: must be True for an InterviewSession")

    def start(
        self, respondent: Respondent, guide: InterviewGuide, thread_id: str | None = None
    ) -> InterviewTurn:
        thread_id = thread_id or f"interview-{uuid.uuid4().hex}"
        payload: InterviewInput = {
            "person_id": respondent.id,
            "profile": respondent.profile,
            "guide": guide.model_dump(),
        }
        self.graph.invoke(payload, self._config(thread_id), context=self.context)
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


# --- transcripts ------------------------------------------------------------------------------------


def transcript_markdown(
    person_id: str, transcript: dict[str, Any], guide: dict[str, Any], profile: str = ""
) -> str:
    title = guide.get("title") or guide.get("id") or "Interview"
    lines = [f"# {title}: respondent {person_id}", ""]
    if profile:
        lines += ["## Profile", "", f"> {profile}", ""]
    current = None
    texts = {q["id"]: q["text"] for q in guide.get("questions", [])}
    for entry in transcript.get("transcript", []):
        if entry.get("question_id") != current:
            current = entry.get("question_id")
            lines += [f"## {current}: {texts.get(current, '')}", ""]
        who = {
            "guide": "Interviewer",
            "interviewer": "Interviewer (follow-up",
            "human": "Researcher (follow-up",
        }[entry.get("asked_by", "guide")]
        if entry.get("asked_by") != "guide":
            who += f": {entry['because']})" if entry.get("because") else ")"
        lines += [
            f"**{who}:** {entry.get('text', '')}",
            "",
            f"**Respondent {person_id}:** {entry.get('answer', '')}",
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def export_transcripts(store: RunStore, out_dir: Path) -> dict[str, str]:
    """One markdown and one JSON file per person, plus `all.json`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    guide = store.meta("guide") or {}
    profiles = {p.id: p.profile for p in store.people()}
    rows = store.transcripts()
    for row in rows:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in row["person_id"])
        (out_dir / f"{safe}.json").write_text(
            json.dumps(row, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )
        (out_dir / f"{safe}.md").write_text(
            transcript_markdown(
                row["person_id"], row["transcript"], guide, profiles.get(row["person_id"], "")
            ),
            encoding="utf-8",
        )
    all_path = out_dir / "all.json"
    all_path.write_text(
        json.dumps({"guide": guide, "interviews": rows}, ensure_ascii=False, indent=1) + "\n",
        encoding="utf-8",
    )
    return {"transcripts_dir": str(out_dir), "transcripts_json": str(all_path)}


def export_session_transcript(
    turn: InterviewTurn, guide: InterviewGuide, person: Respondent, out_dir: Path
) -> dict[str, str]:
    """Save one interactive interview as markdown + JSON."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {"person_id": person.id, "thread_id": turn.thread_id, "transcript": turn.transcript}
    base = out_dir / f"{guide.id}_{person.id}_{turn.thread_id[-8:]}"
    base.with_suffix(".json").write_text(
        json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
    )
    base.with_suffix(".md").write_text(
        transcript_markdown(person.id, {"transcript": turn.transcript}, guide.model_dump(), person.profile),
        encoding="utf-8",
    )
    return {"json": str(base.with_suffix(".json")), "markdown": str(base.with_suffix(".md"))}
