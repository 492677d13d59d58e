"""Helpers for the digital-twin tests: a fake twin that answers every question validly, tiny files."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage

from personagraph.accounts.identity import CLI_CALLER, Caller
from personagraph.twins.respondents import Respondent
from personagraph.twins.surveys import Question, Survey

# Callers of the twin services: the terminal operator (local admin), two users and an app admin.
LOCAL = CLI_CALLER
MINA = Caller("mina")
JOON = Caller("joon")
BOSS = Caller("boss", "admin")

_ID = re.compile(r"^\[([A-Za-z0-9_.-]+)\] ", re.MULTILINE)


def valid_value(q: Question, person_seed: int = 0) -> Any:
    """A valid answer that varies a little by person (so r and variances are defined)."""
    if q.options:
        return q.codes[person_seed % len(q.codes)]
    if q.type == "open":
        return "I would need to think about it."
    low = int(q.scale_min or 0)
    high = int(q.scale_max) if q.scale_max is not None else low + 100
    return low + (person_seed * 7) % (high - low + 1)


def person_of(messages: list[BaseMessage], people: list[Respondent]) -> Respondent:
    text = "\n".join(str(m.content) for m in messages[:2])
    return next(p for p in people if p.profile in text)


def asked_ids(messages: list[BaseMessage], survey: Survey) -> list[str]:
    text = str(messages[1].content)
    known = {q.id for q in survey.questions}
    return [i for i in _ID.findall(text) if i in known]


def answer_bot(
    survey: Survey,
    people: list[Respondent],
    *,
    value: Callable[[Question, Respondent], Any] | None = None,
    log: list[tuple[str, str]] | None = None,
) -> Callable[[list[BaseMessage]], str]:
    """A scripted-model entry answering per question or per person, always validly.

    `log` collects (person id, question id) for every question asked, to count re-asks.
    """
    lock = threading.Lock()

    def reply(messages: list[BaseMessage]) -> str:
        person = person_of(messages, people)
        ids = asked_ids(messages, survey)
        position = people.index(person)
        if log is not None:
            with lock:
                log.extend((person.id, i) for i in ids)

        def one(qid: str) -> dict[str, Any]:
            q = survey.question(qid)
            v = value(q, person) if value else valid_value(q, position)
            return {"answer": v, "reason": "fits me"}

        text = str(messages[1].content)
        if "each with the answer only" in text:
            return json.dumps({qid: one(qid)["answer"] for qid in ids})
        if "whose keys are the question ids" in text:
            return json.dumps({qid: one(qid) for qid in ids})
        return json.dumps(one(ids[0]))

    return reply


def people_from(n: int) -> list[Respondent]:
    return [
        Respondent(
            id=f"p{i}", profile=f"Person number {i}, profile text {i}.", attributes={"age": float(20 + i)}
        )
        for i in range(n)
    ]


TINY_ITEMS = {
    "dataset": "tiny",
    "items": [
        {"id": "lik", "block": "b1", "paper_task": "task one", "design": "within", "condition_group": None,
         "condition_arm": None, "question_text": "How much do you agree?", "stem": None, "row_label": None,
         "answer_type": "likert", "options": [{"code": c, "label": f"L{c}"} for c in range(1, 6)],
         "scale_min": 1, "scale_max": 5, "accuracy_min": 1, "accuracy_max": 5, "accuracy_transform": None},
        {"id": "bin_a", "block": "b2", "paper_task": "task two", "design": "between", "condition_group": "g",
         "condition_arm": "a", "question_text": "Arm A: yes or no?", "stem": None, "row_label": None,
         "answer_type": "binary_choice", "options": [{"code": 1, "label": "yes"}, {"code": 2, "label": "no"}],
         "scale_min": 1, "scale_max": 2, "accuracy_min": 1, "accuracy_max": 2, "accuracy_transform": None},
        {"id": "bin_b", "block": "b2", "paper_task": "task two", "design": "between", "condition_group": "g",
         "condition_arm": "b", "question_text": "Arm B: yes or no?", "stem": None, "row_label": None,
         "answer_type": "binary_choice", "options": [{"code": 1, "label": "yes"}, {"code": 2, "label": "no"}],
         "scale_min": 1, "scale_max": 2, "accuracy_min": 1, "accuracy_max": 2, "accuracy_transform": None},
        {"id": "pct", "block": "b3", "paper_task": "task three", "design": "within", "condition_group": None,
         "condition_arm": None, "question_text": "What share?", "stem": None, "row_label": None,
         "answer_type": "slider_percent", "options": None,
         "scale_min": 0, "scale_max": 100, "accuracy_min": 0, "accuracy_max": 100, "accuracy_transform": None},
    ],
}  # fmt: skip


def write_tiny_eval_files(folder: Path, n_people: int = 30) -> tuple[Path, Path, Path]:
    """questions.json, answers.csv and personas.csv in the twin2k format."""
    folder.mkdir(parents=True, exist_ok=True)
    questions = folder / "questions.json"
    questions.write_text(json.dumps(TINY_ITEMS), encoding="utf-8")
    answers = folder / "answers.csv"
    lines = ["twin_id,lik,bin_a,bin_b,pct"]
    for i in range(1, n_people + 1):
        arm_a = i % 2 == 0
        lines.append(
            f"{i},{1 + i % 5},{1 + i % 2 if arm_a else ''},{'' if arm_a else 1 + (i // 2) % 2},{(i * 13) % 101}"
        )
    answers.write_text("\n".join(lines) + "\n", encoding="utf-8")
    personas = folder / "personas.csv"
    rows = ["twin_id,sex,age_band,profile"]
    for i in range(1, n_people + 1):
        rows.append(
            f'{i},{"Female" if i % 2 else "Male"},{"18-29" if i < 15 else "30-49"},"Respondent {i} likes tea."'
        )
    personas.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return questions, answers, personas


def pilot_run(caller: Caller, folder: Path, *, n_run: int = 40, n_pilot: int = 30) -> tuple[str, Path]:
    """A finished survey run of the tiny items over people 1..n_run (fake twins answering per person),
    and a pilot answers CSV: the real rows of people 1..n_pilot (the pilot) and of 41..60 (people
    outside the run, whom a calibration must ignore). Returns (run id, the CSV, not yet uploaded)."""
    from personagraph.services.twins.executor import BatchOptions
    from personagraph.services.twins.surveys import create_survey_run, run_survey
    from personagraph.serving.models import use_models
    from personagraph.twins.respondents import load_user_personas
    from personagraph.twins.surveys import load_survey
    from tests.fakes import scripted

    questions, answers, personas = write_tiny_eval_files(folder, n_people=60)
    survey = load_survey(questions)
    people = [p for p in load_user_personas(personas).respondents if int(p.id) <= n_run]
    options = BatchOptions(mode="per_person", seed=5)
    with use_models({"twin": scripted(answer_bot(survey, people))}):
        run_id = create_survey_run(caller, survey, people, options).run_id
        assert run_survey(caller, run_id, options, progress=False).stopped is None
    lines = answers.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines[1:] if int(line.split(",")[0]) <= n_pilot or int(line.split(",")[0]) > 40]
    pilot = folder / "pilot.csv"
    pilot.write_text("\n".join([lines[0], *kept]) + "\n", encoding="utf-8")
    return run_id, pilot
