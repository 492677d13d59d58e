"""A run's results as files: JSON (everything), CSV (one row per answer), Excel (one sheet per survey
plus a summary), and interview transcripts as markdown + JSON. `export_all` writes what fits the run.

A survey run calibrated with a pilot (services/twins/calibration.py) exports its calibrated answers
next to the zero-shot ones, never instead of them: each answer names its `result_mode` ("zero-shot"
or "calibrated"), in the CSV's column, the JSON's `answers` / `calibrated_answers`, and the Excel
sheet's `result_mode` column (the calibrated rows follow the zero-shot ones).

Exports are written into the caller's own folder (`exports/<user id>/<run id>/`) unless the
terminal operator (the CLI) names another; callers from the app or the API cannot write elsewhere.

Spreadsheet cells are data, never formulas: every text cell (and column name) of the CSV and the
Excel files that starts with = + - @ or a tab or carriage return is written with a leading `'`
(`spreadsheet_text`), so a survey text, an answer or a respondent id such as `=HYPERLINK(...)`
opens as text. Numbers, negative ones included, stay numbers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from personagraph.accounts.identity import Caller
from personagraph.services.twins.analysis import summary_of
from personagraph.services.twins.answering import AnswerRecord
from personagraph.services.twins.calibration import CALIBRATION_KEY, calibrated_records, calibration_summary
from personagraph.services.twins.store import RunStore, open_run
from personagraph.serving.safe_paths import PathOutsideError, check_id, child_path, confined_path
from personagraph.serving.settings import get_settings
from personagraph.twins.guides import InterviewGuide
from personagraph.twins.respondents import Respondent

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
    "distribution",
    "prompt_tokens",
    "completion_tokens",
    "result_mode",
]
ZERO_SHOT, CALIBRATED = "zero-shot", "calibrated"  # the `result_mode` of each exported answer
RUN_META_KEYS = ("run_id", "kind", "created_at", "survey_id", "options", "selection", "source", "arm_source")
# What a spreadsheet program reads as the start of a formula (or of a DDE command).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_text(value: Any) -> Any:
    """A cell value that cannot start a formula: text starting with = + - @ tab or CR gets a
    leading `'`; everything that is not text (numbers, None, booleans) is left as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def spreadsheet_frame(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> Any:
    """A pandas DataFrame of `rows` with every text cell and column name made formula-free."""
    import pandas as pd  # only exports need it

    frame = pd.DataFrame(list(rows), columns=list(columns) if columns is not None else None)
    frame = frame.map(spreadsheet_text)
    return frame.rename(columns=lambda name: spreadsheet_text(str(name)))


def exports_folder(caller: Caller) -> Path:
    """The caller's exports."""
    return child_path(get_settings().personagraph_home / "exports", check_id(caller.user_id, "user"))


def output_folder(caller: Caller, given: Path | None, root: Path, default: Path, field: str) -> Path:
    """Where to write files for the caller: `default` when none is given; the terminal operator may
    give any folder, anyone else only one under their own `root` (else PathOutsideError naming `field`)."""
    if given is None:
        return default
    if caller.local:
        return Path(given).expanduser()
    try:
        return confined_path(given, [root], field)
    except PathOutsideError:
        raise PathOutsideError(
            f"{field}: files are written only in your own folder; leave {field} out"
        ) from None


def export_all(caller: Caller, run_id: str, out_dir: Path | None = None) -> dict[str, str]:
    """Every export of a run: answers .json/.csv and .xlsx, or JSON and transcripts; returns the
    paths by kind. Owner or admin only (else NotFoundError). `out_dir`: see `output_folder`; by
    default `exports/<caller>/<run id>/`."""
    with open_run(caller, run_id) as store:
        root = exports_folder(caller)
        out_dir = output_folder(caller, out_dir, root, child_path(root, run_id), "out_dir")
        out_dir.mkdir(parents=True, exist_ok=True)
        files = {"json": str(export_json(store, out_dir / f"{run_id}.json"))}
        if store.meta("kind") == "survey":
            files["csv"] = str(export_csv(store, out_dir / f"{run_id}.csv"))
            files["excel"] = str(export_excel([store], out_dir / f"{run_id}.xlsx"))
        else:
            files.update(export_transcripts(store, out_dir / f"{run_id}_transcripts"))
    return files


def export_json(store: RunStore, path: Path) -> Path:
    survey_run = store.meta("kind") == "survey"
    data: dict[str, Any] = {
        "run": {key: store.meta(key) for key in RUN_META_KEYS},
        "summary": summary_of(store) if survey_run else None,
        "arms": store.arms(),
        "answers": [{**a.model_dump(), "result_mode": ZERO_SHOT} for a in store.answers()],
    }
    calibration = store.meta(CALIBRATION_KEY) if survey_run else None
    if calibration:
        data["calibration"] = {**calibration_summary(calibration), "pilot_ids": calibration["pilot_ids"]}
        data["calibrated_answers"] = [
            {**a.model_dump(), "result_mode": CALIBRATED} for a in calibrated_records(store)
        ]
    if not survey_run:
        data["transcripts"] = store.transcripts()
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return path


def _by_mode(store: RunStore) -> list[tuple[str, list[AnswerRecord]]]:
    """The run's answers by result mode: the zero-shot ones, then the calibrated ones if any."""
    calibrated = calibrated_records(store)
    return [(ZERO_SHOT, store.answers())] + ([(CALIBRATED, calibrated)] if calibrated else [])


def _answer_rows(store: RunStore) -> list[dict[str, Any]]:
    run_id, survey_id = store.meta("run_id"), store.meta("survey_id")
    return [
        {"run_id": run_id, "survey_id": survey_id, "person_id": a.person_id, "question_id": a.question_id,
         "arm": a.arm, "status": a.status, "value": a.value, "reason": a.reason, "error": a.error, "mode": a.mode,
         "distribution": json.dumps(a.distribution) if a.distribution else None, "prompt_tokens": a.prompt_tokens,
         "completion_tokens": a.completion_tokens, "result_mode": result_mode}
        for result_mode, records in _by_mode(store) for a in records
    ]  # fmt: skip


def export_csv(store: RunStore, path: Path) -> Path:
    spreadsheet_frame(_answer_rows(store), EXPORT_COLUMNS).to_csv(path, index=False)
    return path


def _sheet_name(name: str, taken: set[str]) -> str:
    """An Excel sheet name: no forbidden characters, at most 31 of them, unique (case-insensitive)."""
    clean = re.sub(r"[\[\]:*?/\\]", "_", name)[:31] or "survey"
    candidate, n = clean, 2
    while candidate.lower() in taken:
        suffix = f"_{n}"
        candidate, n = clean[: 31 - len(suffix)] + suffix, n + 1
    taken.add(candidate.lower())
    return candidate


def export_excel(stores: Sequence[RunStore], path: Path) -> Path:
    """One sheet per survey (a row per person, a column per question, arms included) plus `summary`."""
    import pandas as pd  # only exports need it

    taken = {"summary"}
    summary_rows: list[dict[str, Any]] = []
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        for store in stores:
            survey = store.survey()
            arms = store.arms()
            people = store.people()
            rows = []
            for result_mode, records in _by_mode(store):
                values: dict[str, dict[str, Any]] = {}
                for a in records:
                    values.setdefault(a.person_id, {})[a.question_id] = a.value if a.status == "ok" else None
                for person in people:
                    if result_mode == CALIBRATED and person.id not in values:
                        continue  # the pilot: its real answers taught the calibration; none of its own
                    row: dict[str, Any] = {"person_id": person.id, "result_mode": result_mode}
                    row.update({f"arm:{g}": arm for g, arm in sorted(arms.get(person.id, {}).items())})
                    row.update({q.id: values.get(person.id, {}).get(q.id) for q in survey.questions})
                    rows.append(row)
            spreadsheet_frame(rows).to_excel(writer, sheet_name=_sheet_name(survey.id, taken), index=False)
            summary = summary_of(store)
            for q in summary["questions"]:
                summary_rows.append(
                    {"run_id": summary["run_id"], "survey_id": summary["survey_id"],
                     "result_mode": summary["result_mode"],
                     **{k: json.dumps(v, ensure_ascii=False) if isinstance(v, dict) else v for k, v in q.items()}}
                )  # fmt: skip
        spreadsheet_frame(summary_rows).to_excel(writer, sheet_name="summary", index=False)
    return path


# --- interview transcripts ------------------------------------------------------------------------


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
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in row["person_id"]).lstrip(".") or "_"
        child_path(out_dir, f"{safe}.json").write_text(
            json.dumps(row, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )
        child_path(out_dir, f"{safe}.md").write_text(
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
    thread_id: str,
    transcript: list[dict[str, Any]],
    guide: InterviewGuide,
    person: Respondent,
    out_dir: Path,
) -> dict[str, str]:
    """Save one interactive interview (its thread and transcript entries) as `<thread id>.md` + `.json`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {"person_id": person.id, "guide_id": guide.id, "thread_id": thread_id, "transcript": transcript}
    name = check_id(thread_id, "thread_id")
    json_path, md_path = child_path(out_dir, f"{name}.json"), child_path(out_dir, f"{name}.md")
    json_path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    md_path.write_text(
        transcript_markdown(person.id, {"transcript": transcript}, guide.model_dump(), person.profile),
        encoding="utf-8",
    )
    return {"json": str(json_path), "markdown": str(md_path)}
