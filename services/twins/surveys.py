"""Survey runs over many twins that scale and survive: every answer is stored the moment it arrives,
and running a run again with the same id asks only what has no stored result yet.

    run = create_survey_run(caller, survey, respondents, BatchOptions(mode="per_person", concurrency=4))
    summary = run_survey(caller, run.run_id)          # again after a crash: resumes
    export_all(caller, run.run_id, Path("out"))       # JSON, CSV, Excel (services/twins/exports.py)

The run belongs to the caller who created it; only they (or an admin) may run, resume or read it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from personagraph.accounts.identity import Caller
from personagraph.services.twins.answering import (
    AnswerRecord,
    ask_question,
    ask_questionnaire,
    plan_questionnaire,
)
from personagraph.services.twins.distributions import ask_distribution
from personagraph.services.twins.executor import (
    EXECUTION_FIELDS,
    BatchOptions,
    ProgressCallback,
    RunSummary,
    WorkUnit,
    execute,
    finish_run,
)
from personagraph.services.twins.store import RunError, RunStore, claim_run, create_run_store, open_run
from personagraph.serving.tracing import trace_scope
from personagraph.twins.respondents import Respondent
from personagraph.twins.surveys import Survey, assign_arms, to_native, to_twin2k


@dataclass
class RunHandle:
    run_id: str
    path: Path
    people: int
    expected: int


def create_survey_run(
    caller: Caller,
    survey: Survey,
    respondents: Sequence[Respondent],
    options: BatchOptions,
    *,
    run_id: str | None = None,
    selection: Any = None,
    arms: Mapping[str, Mapping[str, str]] | None = None,
    hints: Mapping[str, str] | None = None,
    source: str = "",
) -> RunHandle:
    """Create a run owned by the caller: the survey, people, arms and options are frozen into the
    run's SQLite file. An id already in use is a ConflictError.

    `arms`: the between-subject arm of each person per condition group (e.g. the arm the real person
    saw); people without one get a seeded random arm (recorded).
    """
    if not respondents:
        raise RunError("respondents: the selection is empty; nothing to run")
    with create_run_store(
        caller, "survey", run_id, survey_id=survey.id, options=options.model_dump(), selection=selection,
        source=source or respondents[0].source,
    ) as store:  # fmt: skip
        store.set_meta("survey", to_twin2k(survey) if survey.format == "twin2k" else to_native(survey))
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
        return RunHandle(
            run_id=store.meta("run_id"), path=store.path, people=len(respondents), expected=expected
        )


def run_survey(
    caller: Caller,
    run_id: str,
    options: BatchOptions | None = None,
    *,
    progress: bool = True,
    on_progress: ProgressCallback | None = None,
    max_consecutive_errors: int = 5,
    time_budget_s: float | None = None,
) -> RunSummary:
    """Run (or resume) a survey run until every person has a result for every question they see.

    `options` may change how the run executes (concurrency, rate, retries, retrying failed answers,
    the per-person fallback), never what it asks. Stopping rules (and `cancel_run`): see
    `executor.execute`. The caller's own run, or any for an admin (else NotFoundError); a run already
    executing in this process is a ConflictError.
    """
    with open_run(caller, run_id, "survey") as store:
        claim_run(store)
        return finish_run(store, lambda: execute_survey(
            store, options, progress=progress, on_progress=on_progress,
            max_consecutive_errors=max_consecutive_errors, time_budget_s=time_budget_s,
        ))  # fmt: skip


def execute_survey(
    store: RunStore,
    options: BatchOptions | None = None,
    *,
    progress: bool = True,
    on_progress: ProgressCallback | None = None,
    max_consecutive_errors: int = 5,
    time_budget_s: float | None = None,
) -> RunSummary:
    """The work of `run_survey` on a store the caller opened (`open_run`) and claimed (`claim_run`)."""
    run_id = str(store.meta("run_id"))
    stored_options = BatchOptions.model_validate(store.meta("options", {}))
    opts = stored_options.resumed_with(options, (*EXECUTION_FIELDS, "fallback"))
    survey = store.survey()
    hints: dict[str, str] = store.meta("hints", {}) or {}
    units = list(_pending_units(store, survey, opts, hints))
    owner = str(store.meta("owner") or "") or None

    def write(records: list[AnswerRecord]) -> list[str]:
        store.write_answers(records)
        return [r.status for r in records]

    return execute(
        store, run_id, "survey", units, sum(u.steps for u in units), opts,
        lambda unit: _traced_answer_unit(unit, survey, opts, hints, owner), write,
        progress=progress, on_progress=on_progress, max_consecutive_errors=max_consecutive_errors,
        time_budget_s=time_budget_s,
    )  # fmt: skip


def _pending_units(
    store: RunStore, survey: Survey, options: BatchOptions, hints: Mapping[str, str] | None = None
) -> Iterator[WorkUnit]:
    """The questions still to ask, grouped into one unit per model call (a question, or a chunk)."""
    stored = store.stored(include_failed=not options.retry_failed)
    arms = store.arms()
    for person in store.people():
        done = stored.get(person.id, set())
        todo = [q for q in survey.questions_for(arms.get(person.id, {})) if q.id not in done]
        if not todo:
            continue
        if options.mode in ("per_question", "distribution"):
            for q in todo:
                yield WorkUnit(person, [q])
        else:
            # Chunks fit the model's context (counted with its tokenizer); --chunk-size caps them further.
            chunks = plan_questionnaire(
                person, survey, todo, role=options.role, reason_chars=options.reason_length(), hints=hints,
                most=options.chunk_size,
            )  # fmt: skip
            for chunk in chunks:
                yield WorkUnit(person, chunk)


def _traced_answer_unit(
    unit: WorkUnit, survey: Survey, options: BatchOptions, hints: Mapping[str, str], owner: str | None
) -> list[AnswerRecord]:
    """`_answer_unit` with the run owner's opaque account id on its traces (serving/tracing.py)."""
    with trace_scope("twin_survey", owner):
        return _answer_unit(unit, survey, options, hints)


def _answer_unit(
    unit: WorkUnit, survey: Survey, options: BatchOptions, hints: Mapping[str, str]
) -> list[AnswerRecord]:
    if options.mode == "distribution":
        q = unit.questions[0]
        return [
            ask_distribution(
                unit.person,
                survey,
                q,
                role=options.role,
                policy=options.answer_policy,
                seed=options.seed,
                hint=hints.get(q.id),
                reason_chars=options.reason_length(),
            )  # fmt: skip
        ]
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
