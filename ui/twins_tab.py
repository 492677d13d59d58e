"""Digital-twin tabs of the app: respondents, survey, interview, results.

Respondents: build a selection (the CLI's --select specs, one per line), count it, preview it, save it.
Survey: load a template or upload a file, edit it, run it with progress and a live distribution plot.
Interview: a batch run over the selection, or an interactive interview of one twin (interrupt/resume).
Results: coverage and validity, per-question and per-segment plots, exports, validation against
real answers, calibration with a pilot's real answers, cancelling and deleting runs.

Every handler takes the Caller from the signed-in request (`caller_of`), never from a form field, and
the services check ownership: users see and manage their own runs, admins every run. Uploaded files
are copied into the caller's upload folder before use; paths typed in a selection must be there or
in the shipped data. Downloads are copies in a fresh temporary folder.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
import plotly.graph_objects as go
import yaml
from langgraph.checkpoint.base import BaseCheckpointSaver
from pydantic import ValidationError

from personagraph.accounts.identity import AccessError, Caller
from personagraph.accounts.store import AccountStore
from personagraph.services.twins.analysis import by_segment, summarize, validate_run
from personagraph.services.twins.calibration import calibrate_run
from personagraph.services.twins.executor import BatchOptions
from personagraph.services.twins.exports import export_all
from personagraph.services.twins.interviews import InterviewSession, InterviewTurn
from personagraph.services.twins.runs import start_interview_run, start_run_in_background, start_survey_run
from personagraph.services.twins.selections import (
    list_selections,
    parse_selection,
    read_text,
    read_upload_text,
    respondent_pool,
    save_selection,
    save_upload,
    select_respondents,
)
from personagraph.services.twins.store import RunError, cancel_run, delete_run, run_info, visible_runs
from personagraph.serving.models import ModelError
from personagraph.twins.answer_policy import POLICIES
from personagraph.twins.guides import GuideError, InterviewGuide, guide_data_from_text, guide_from_data
from personagraph.twins.respondents import RespondentError, Selection, load_respondents
from personagraph.twins.surveys import (
    Survey,
    SurveyError,
    list_templates,
    survey_data_from_text,
    survey_from_data,
    to_native,
)
from personagraph.ui.identity import caller_of

DEFAULT_SELECT = "random:5:1"
SELECT_HELP = (
    "One spec per line, combined in order: `all` · `random:N[:SEED]` · `ids:1,2,3` · "
    "`where:KEY=V1|V2;KEY=LO..HI` · `saved:NAME` · `source:twin2k|hf:PATH|FILE` (files: yours, uploaded "
    "below, or the shipped data)"
)
# Refusals shown in the tab as "⚠️ reason": bad input, someone else's (or no) run, a path outside
# the caller's folders (PermissionError), a run already running.
INPUT_ERRORS = (RespondentError, SurveyError, GuideError, RunError, ValueError, AccessError, PermissionError)


# --- pure helpers (tested without a browser) ----------------------------------------------------------


def selection_from_text(caller: Caller, specs: str) -> Selection:
    lines = [line.strip() for line in (specs or "").splitlines() if line.strip()]
    return parse_selection(caller, lines or ["all"])


def preview_selection(caller: Caller, specs: str, limit: int = 20) -> tuple[str, pd.DataFrame]:
    """(how many match and how, a table of the first `limit` people)."""
    selection = selection_from_text(caller, specs)
    people = select_respondents(caller, selection)
    rows = [{"id": p.id, **p.attributes, "profile": p.profile[:120]} for p in people[:limit]]
    text = f"**{len(people)} respondents** match ({selection.describe()})."
    return text, pd.DataFrame(rows)


def attribute_info(attribute: str) -> tuple[str, list[str], str]:
    """(kind, categories, range text) of an attribute of the shipped respondents, for the filter builder."""
    pool = load_respondents()
    kind = pool.kinds.get(attribute)
    if kind is None:
        raise RespondentError(
            f"attribute: {attribute!r} is unknown; allowed: {', '.join(sorted(pool.kinds))}"
        )
    if kind == "categorical":
        return kind, pool.categories(attribute), ""
    low_high = pool.numeric_range(attribute)
    return kind, [], f"{low_high[0]:g} .. {low_high[1]:g}" if low_high else ""


def filter_spec(attribute: str, values: list[str] | None, low: float | None, high: float | None) -> str:
    """One `where:` spec from the builder: allowed values of a category, or a numeric range."""
    if not attribute:
        raise RespondentError("attribute: choose an attribute to filter on")
    if values:
        return f"where:{attribute}={'|'.join(values)}"
    if low is None and high is None:
        raise RespondentError(f"{attribute}: choose values, or a minimum and/or maximum")
    return f"where:{attribute}={'' if low is None else f'{low:g}'}..{'' if high is None else f'{high:g}'}"


def add_spec(specs: str, spec: str) -> str:
    lines = [line for line in (specs or "").splitlines() if line.strip() and line.strip() != "all"]
    return "\n".join([*lines, spec])


def survey_from_text(text: str) -> Survey:
    """A survey from JSON or YAML text (native or Twin-2K-500 format; size-capped, no YAML aliases)."""
    if not (text or "").strip():
        raise SurveyError("survey: the survey text is empty; load a template or upload a file")
    return survey_from_data(survey_data_from_text(text))


# --- survey editor (no YAML needed): one table row per question ---------------------------------

EDITOR_COLUMNS = ["id", "type", "text", "options", "scale_min", "scale_max"]
EDITOR_ACTIONS = ("add", "copy", "delete", "up", "down")


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):  # NaN from an empty table cell
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def editor_rows(text: str) -> list[list[str]]:
    """The questions of survey text as editor rows; options as `1=Label; 2=Label`."""
    survey = survey_from_text(text)
    return [
        [q.id, q.type, q.text, "; ".join(f"{o.code}={o.label}" for o in q.options or []),
         _cell(q.scale_min) if not q.options else "", _cell(q.scale_max) if not q.options else ""]
        for q in survey.questions
    ]  # fmt: skip


def _rows(table: Any) -> list[list[str]]:
    if isinstance(table, pd.DataFrame):
        table = table.values.tolist()
    rows = [[_cell(c) for c in list(row)[: len(EDITOR_COLUMNS)]] for row in table or []]
    rows = [row + [""] * (len(EDITOR_COLUMNS) - len(row)) for row in rows]
    return [row for row in rows if any(row)]


def edit_rows(table: Any, action: str, row: float | None) -> list[list[str]]:
    """Add (a new Likert question after the row), copy, delete or move one row (numbered from 1)."""
    if action not in EDITOR_ACTIONS:
        raise ValueError(f"action: {action!r} is not allowed; allowed: {', '.join(EDITOR_ACTIONS)}")
    rows = _rows(table)
    index = int(row) - 1 if row else len(rows) - 1
    if rows and not 0 <= index < len(rows):
        raise ValueError(f"row: {index + 1} is not a row of the table; allowed: 1 to {len(rows)}")
    taken = {r[0] for r in rows}
    if action == "add":
        n = len(rows) + 1
        while f"q{n}" in taken:
            n += 1
        new = [f"q{n}", "likert", "New question", "1=Strongly disagree; 2=Disagree; 3=Neutral; 4=Agree; "
               "5=Strongly agree", "", ""]  # fmt: skip
        rows.insert(index + 1, new)
    elif not rows:
        raise ValueError("row: the table has no questions yet; add one first")
    elif action == "copy":
        copy, n = f"{rows[index][0]}_copy", 2
        while copy in taken:
            copy, n = f"{rows[index][0]}_copy{n}", n + 1
        rows.insert(index + 1, [copy, *rows[index][1:]])
    elif action == "delete":
        rows.pop(index)
    elif action == "up" and index > 0:
        rows[index - 1], rows[index] = rows[index], rows[index - 1]
    elif action == "down" and index < len(rows) - 1:
        rows[index + 1], rows[index] = rows[index], rows[index + 1]
    return rows


def survey_text_from_rows(table: Any, base_text: str) -> str:
    """YAML of the survey with the table's questions (title, language and instructions kept from
    `base_text` when it parses). A bad cell is named by row and column."""
    base: dict[str, Any] = {"id": "survey", "title": "", "language": "en", "instructions": ""}
    try:
        data = survey_data_from_text(base_text) if (base_text or "").strip() else {}
        if isinstance(data, dict):
            base.update({k: data[k] for k in ("id", "title", "language", "instructions") if data.get(k)})
    except INPUT_ERRORS:
        pass
    questions = []
    for n, row in enumerate(_rows(table), start=1):
        qid, kind, text, options, low, high = row
        raw: dict[str, Any] = {"id": qid, "type": kind, "text": text}
        if options:
            raw["options"] = []
            for part in (p.strip() for p in options.split(";") if p.strip()):
                code, sep, label = part.partition("=")
                if not sep or not code.strip().lstrip("-").isdigit() or not label.strip():
                    raise SurveyError(f"row {n}, column options: {part!r} is not CODE=Label (e.g. 1=Agree)")
                raw["options"].append({"code": int(code), "label": label.strip()})
        for column, value in (("scale_min", low), ("scale_max", high)):
            if value:
                try:
                    raw[column] = float(value)
                except ValueError:
                    raise SurveyError(f"row {n}, column {column}: {value!r} is not a number") from None
        questions.append(raw)
    if not questions:
        raise SurveyError("questions: the table is empty; add a question")
    survey = survey_from_data({**base, "questions": questions})
    return yaml.safe_dump(to_native(survey), allow_unicode=True, sort_keys=False)


def guide_from_text(text: str) -> InterviewGuide:
    """An interview guide from JSON or YAML text (size-capped, no YAML aliases)."""
    if not (text or "").strip():
        raise GuideError("guide: the guide text is empty; load a guide or upload a file")
    return guide_from_data(guide_data_from_text(text))


def template_choices() -> list[tuple[str, str]]:
    from personagraph.serving.settings import get_settings

    paths = list_templates()
    twin2k = get_settings().data_dir / "twin2k" / "questions.json"
    if twin2k.is_file():
        paths.append(twin2k)
    return [(p.stem if p.parent.name != "twin2k" else "twin2k (58 heuristics-and-biases items)", str(p))
            for p in paths]  # fmt: skip


def guide_choices() -> list[tuple[str, str]]:
    from personagraph.serving.settings import get_settings

    directory = get_settings().data_dir / "interviews"
    files = sorted(directory.glob("*.y*ml")) + sorted(directory.glob("*.json")) if directory.is_dir() else []
    return [(p.stem, str(p)) for p in files]


def distribution_figure(summary: dict[str, Any], question_id: str | None = None) -> go.Figure:
    """Bars of one question's answer counts (the first question with options when none is given)."""
    questions = [q for q in summary.get("questions", []) if q.get("distribution")]
    chosen = next(
        (q for q in questions if q["question_id"] == question_id), questions[0] if questions else None
    )
    figure = go.Figure()
    if chosen is None:
        figure.update_layout(title="No answered choice questions yet", height=320)
        return figure
    labels = list(chosen["distribution"])
    total = sum(chosen["distribution"].values()) or 1
    figure.add_bar(x=labels, y=[chosen["distribution"][k] / total for k in labels], name="twins' answers")
    if chosen.get(
        "twin_distribution"
    ):  # distribution mode: the twins' mean probabilities beside their answers
        figure.add_bar(
            x=labels, y=[chosen["twin_distribution"].get(k, 0) for k in labels], name="twins' probabilities"
        )
    if chosen.get("real_distribution"):  # real answers uploaded for validation
        figure.add_bar(
            x=labels, y=[chosen["real_distribution"].get(k, 0) for k in labels], name="real answers"
        )
    if chosen.get("calibrated_distribution"):  # a calibrated run: its people calibrated, and the pilot
        figure.add_bar(
            x=labels, y=[chosen["calibrated_distribution"].get(k, 0) for k in labels], name="calibrated"
        )
    if chosen.get("pilot_distribution"):
        figure.add_bar(
            x=labels, y=[chosen["pilot_distribution"].get(k, 0) for k in labels], name="pilot (real answers)"
        )
    figure.update_layout(
        title=f"{chosen['question_id']}: {chosen['text'][:80]}", height=360, yaxis_title="share",
        margin={"t": 60, "l": 40, "r": 20, "b": 80}, barmode="group",
    )  # fmt: skip
    return figure


def means_figure(summary: dict[str, Any]) -> go.Figure:
    """Mean answer per question (Likert/numeric), with the coverage shown on hover."""
    rows = [q for q in summary.get("questions", []) if q.get("mean") is not None]
    figure = go.Figure()
    figure.add_bar(
        x=[q["question_id"] for q in rows], y=[q["mean"] for q in rows],
        error_y={"type": "data", "array": [q.get("sd", 0) for q in rows]},
        hovertext=[f"coverage {q['coverage']}, validity {q['validity']}" for q in rows],
    )  # fmt: skip
    figure.update_layout(title="Mean answer per question (± sd)", height=340, margin={"t": 50, "b": 80})
    return figure


def segment_figure(segments: dict[str, dict[str, dict[str, Any]]], question_id: str) -> go.Figure:
    """One question's answer counts per segment (grouped bars), or its mean per segment."""
    figure = go.Figure()
    codes: list[Any] = []
    for entries in segments.values():
        codes = sorted({*codes, *(entries.get(question_id, {}).get("distribution") or {})})
    if codes:
        for code in codes:
            figure.add_bar(
                name=str(code), x=list(segments),
                y=[(segments[s].get(question_id, {}).get("distribution") or {}).get(code, 0) for s in segments],
            )  # fmt: skip
        figure.update_layout(barmode="group", legend_title="answer")
    else:
        figure.add_bar(x=list(segments), y=[segments[s].get(question_id, {}).get("mean") for s in segments])
    figure.update_layout(title=f"{question_id} by segment", height=360, margin={"t": 50, "b": 80})
    return figure


def summary_markdown(summary: dict[str, Any], info: dict[str, Any] | None = None) -> str:
    def pct(value: Any) -> str:
        return "-" if value is None else f"{100 * value:.1f}%"

    head = f"**{summary['title'] or summary['survey_id']}** · run `{summary['run_id']}`"
    if info and info.get("owner"):
        head += f" · owner `{info['owner']}`"
    return (
        f"{head}\n\n{summary['people']} people · {summary['stored']}/{summary['expected']} answers stored · "
        f"coverage **{pct(summary['coverage'])}** · validity **{pct(summary['validity'])}** · "
        f"failed {summary['failed']}{_usage_line(summary)}"
    )


def _usage_line(summary: dict[str, Any]) -> str:
    """Which mode produced the answers, and the tokens and estimated cost of the calls that reported them."""
    usage = summary.get("usage") or {}
    line = f"\n\nresults: **{summary.get('result_mode', 'zero-shot')}**"
    if usage.get("calls_counted"):
        line += (
            f" · tokens: {usage['prompt']:,} prompt + {usage['completion']:,} completion "
            f"({usage['calls_counted']} calls reported usage) · estimated cost "
            f"{usage['estimated_cost']:.4f} {usage['currency']}"
        )
    return line


def questions_table(summary: dict[str, Any]) -> pd.DataFrame:
    columns = ["question_id", "type", "expected", "ok", "failed", "coverage", "validity", "mean", "sd"]
    return pd.DataFrame([{c: q.get(c) for c in columns} for q in summary.get("questions", [])])


def validation_markdown(report: dict[str, Any]) -> str:
    def fmt(value: Any, pct: bool = False) -> str:
        return "-" if value is None else (f"{100 * value:.1f}%" if pct else f"{value:.3f}")

    lines = [
        f"**Validation of `{report['run_id']}`**: {report['people']} people, {report['items']} scored items, "
        f"coverage {fmt(report['coverage'], True)}",
        "",
        "| who | accuracy (paper) | item mean accuracy | mean r | variance ratio | distance |",
        "|---|---|---|---|---|---|",
    ]
    for who in ("twins", "population", "uniform"):
        r = report[who]
        lines.append(
            f"| {who} | {fmt(r['accuracy']['paper_headline'], True)} | {fmt(r['accuracy']['item_mean'], True)} "
            f"| {fmt(r['pearson_r'])} | {fmt(r['variance_ratio'])} | {fmt(r['distribution_distance'])} |"
        )
    if report["people_without_answers"]:
        lines += ["", f"Not scored (no real answers): {', '.join(report['people_without_answers'][:20])}"]
    return "\n".join(lines)


def calibration_markdown(summary: dict[str, Any]) -> str:
    """The calibration of a run: its mode, pilot and policy, and per question the mean answer of the
    twins (zero-shot) and of the calibration over the people calibrated, beside the pilot's real one."""

    def fmt(value: Any) -> str:
        return "-" if value is None else f"{value:.2f}"

    lines = [
        f"**Results: {summary['result_mode']}** · run `{summary['run_id']}` · pilot of {summary['pilot_people']} "
        f"people (real answers) · {summary['people_calibrated']} people calibrated · policy `{summary['policy']}`",
        "",
        "| question | answered from | pilot answers | twins (zero-shot) | calibrated | pilot (real) |",
        "|---|---|---|---|---|---|",
    ]
    for q in summary["questions"]:
        lines.append(
            f"| {q['question_id']} | {q['fit']} | {q['n_pilot']} | {fmt(q['zero_shot_mean'])} "
            f"| {fmt(q['calibrated_mean'])} | {fmt(q['pilot_mean'])} |"
        )
    if summary["uncalibrated_questions"]:
        lines += ["", f"No pilot answers (not calibrated): {', '.join(summary['uncalibrated_questions'])}"]
    lines += ["", "Means of the answers; no answer of a person outside the pilot was used."]
    return "\n".join(lines)


def run_choices(caller: Caller, kind: str | None = None) -> list[tuple[str, str]]:
    """The caller's runs for a dropdown (an admin's list shows every run, with its owner)."""
    return [
        (f"{r['run_id']} · {r['kind']} · {r['survey_id']} · {r['stored']}/{r['expected']} · {r['state']}"
         + (f" · {r['owner'] or '(unknown)'}" if caller.admin else ""), r["run_id"])
        for r in visible_runs(caller, kind)  # type: ignore[arg-type]
    ]  # fmt: skip


def downloadable(paths: list[str]) -> list[str]:
    """Copies of files for a download box, in a fresh temporary folder (Gradio serves files from
    there; the originals stay in the caller's folders, which Gradio must never serve)."""
    folder = Path(tempfile.mkdtemp(prefix="personagraph-download-"))
    copies = []
    for path in paths:
        target = folder / Path(path).name
        shutil.copyfile(path, target)
        copies.append(str(target))
    return copies


def options_from_form(
    mode: str, concurrency: float, reason_chars: float, max_followups: float = 2
) -> BatchOptions:
    """BatchOptions from the form; an invalid value names the field and what it allows."""
    try:
        return BatchOptions(
            mode=mode, concurrency=int(concurrency), reason_chars=int(reason_chars),  # type: ignore[arg-type]
            max_followups=int(max_followups),
        )  # fmt: skip
    except ValidationError as exc:
        raise ValueError(
            "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        ) from None


def run_outcome(info: dict[str, Any]) -> str:
    """How a run that is no longer executing here ended, as one line for the status box."""
    run_id, state, message = info["run_id"], info["state"], info.get("message") or ""
    if state == "done":
        return "✅ Done. "
    if state == "cancelled":
        return f"⚠️ Cancelled; the stored answers are kept. Resume with run id `{run_id}`.\n\n"
    if state == "stopped":
        return f"⚠️ Stopped: {message}. Resume with run id `{run_id}`.\n\n"
    if state == "failed":
        return f"⚠️ {message}\n\nResume with run id `{run_id}`.\n\n"
    return f"Run `{run_id}` is {state}. "


# --- the tabs -----------------------------------------------------------------------------------------


def build_twins_tabs(accounts: AccountStore) -> None:
    """The four twin tabs, created inside the caller's open `gr.Blocks`.

    Every handler (private ones too: "private" only hides them from the API docs) starts with
    `caller_of(accounts, request)`, which refuses a request without a signed-in account when accounts
    exist; the services then decide what that caller may see.
    """
    checkpointers: list[BaseCheckpointSaver[Any]] = []

    def interviews(caller: Caller) -> InterviewSession:
        # One checkpointer for the tab's interactive interviews (opened on first use).
        if not checkpointers:
            from personagraph.memory.persistence import make_checkpointer

            checkpointers.append(make_checkpointer())
        return InterviewSession(caller, checkpointers[0])

    with gr.Tab("Respondents"):
        gr.Markdown(f"Choose which digital twins answer. {SELECT_HELP}")
        with gr.Row():
            specs = gr.Textbox(value=DEFAULT_SELECT, lines=4, label="Selection", scale=3)
            with gr.Column(scale=1):
                saved = gr.Dropdown(choices=[], label="Your saved selections", value=None)
                save_name = gr.Textbox(label="Save as", placeholder="name")
                save_btn = gr.Button("Save selection", size="sm")
        with gr.Accordion("Build a filter", open=True), gr.Row():
            attributes = sorted(load_respondents().kinds)
            attribute = gr.Dropdown(attributes, value=None, label="Attribute", scale=2)
            values = gr.Dropdown([], multiselect=True, label="Values (categories)", scale=3)
            low = gr.Number(value=None, label="Min", scale=1)
            high = gr.Number(value=None, label="Max", scale=1)
            add_filter = gr.Button("Add filter", scale=1)
        with gr.Row():
            sample_n = gr.Number(value=20, precision=0, minimum=1, label="Random sample size", scale=1)
            sample_seed = gr.Number(value=1, precision=0, label="Seed", scale=1)
            add_sample = gr.Button("Add random sample", scale=1)
            clear_btn = gr.Button("Everyone (clear)", scale=1)
        people_file = gr.File(
            label="Your own respondents (CSV / JSON / JSONL with an id column and a `profile`)",
            file_types=[".csv", ".json", ".jsonl"], type="filepath",
        )  # fmt: skip
        count_btn = gr.Button("Count and preview", variant="primary")
        count_md = gr.Markdown()
        preview = gr.Dataframe(label="First 20 respondents", interactive=False, wrap=True)

        def on_attribute(name: str, request: gr.Request) -> tuple[Any, str]:
            caller_of(accounts, request)
            try:
                kind, categories, span = attribute_info(name)
            except INPUT_ERRORS as exc:
                return gr.update(choices=[], value=[]), f"⚠️ {exc}"
            if kind == "categorical":
                return gr.update(choices=categories, value=[]), f"`{name}`: choose one or more values."
            return gr.update(
                choices=[], value=[]
            ), f"`{name}` is numeric ({span}): set a minimum and/or maximum."

        def _updated(caller: Caller, text: str, spec: str) -> Any:
            try:
                updated = add_spec(text, spec)
                summary, table = preview_selection(caller, updated)
            except INPUT_ERRORS as exc:
                return gr.update(), f"⚠️ {exc}", gr.update()
            return updated, summary, table

        def do_add_filter(
            text: str, name: str, chosen: list[str], lo: float | None, hi: float | None, request: gr.Request
        ) -> Any:
            caller = caller_of(accounts, request)
            try:
                spec = filter_spec(name, chosen, lo, hi)
            except INPUT_ERRORS as exc:
                return gr.update(), f"⚠️ {exc}", gr.update()
            return _updated(caller, text, spec)

        def do_add_sample(text: str, n: float, seed: float, request: gr.Request) -> Any:
            caller = caller_of(accounts, request)
            try:
                spec = f"random:{int(n)}:{int(seed)}"
            except (TypeError, ValueError):
                return gr.update(), "⚠️ random: give a sample size and a seed", gr.update()
            return _updated(caller, text, spec)

        def do_clear(request: gr.Request) -> str:
            caller_of(accounts, request)
            return "all"

        def do_people_upload(text: str, path: str | None, request: gr.Request) -> Any:
            caller = caller_of(accounts, request)
            if not path:
                return gr.update(), "", gr.update()
            try:
                saved_path = save_upload(caller, path, field="respondents_file")
            except INPUT_ERRORS as exc:
                return gr.update(), f"⚠️ {exc}", gr.update()
            return _updated(caller, text, f"source:{saved_path.name}")

        attribute.input(on_attribute, [attribute], [values, count_md], api_visibility="private")
        add_filter.click(do_add_filter, [specs, attribute, values, low, high], [specs, count_md, preview],
                         api_visibility="private")  # fmt: skip
        add_sample.click(do_add_sample, [specs, sample_n, sample_seed], [specs, count_md, preview],
                         api_visibility="private")  # fmt: skip
        clear_btn.click(do_clear, None, [specs], api_visibility="private")
        people_file.upload(do_people_upload, [specs, people_file], [specs, count_md, preview],
                           api_visibility="private")  # fmt: skip

        def do_preview(text: str, request: gr.Request) -> tuple[str, Any]:
            caller = caller_of(accounts, request)
            try:
                return preview_selection(caller, text)
            except INPUT_ERRORS as exc:
                return f"⚠️ {exc}", pd.DataFrame()

        def do_save(text: str, name: str, request: gr.Request) -> tuple[str, Any]:
            caller = caller_of(accounts, request)
            try:
                saved_name = save_selection(caller, selection_from_text(caller, text), (name or "").strip())
            except INPUT_ERRORS as exc:
                return f"⚠️ {exc}", gr.update()
            return f"Saved; use it as `saved:{saved_name}`.", gr.update(choices=list_selections(caller))

        def do_saved_list(request: gr.Request) -> Any:
            return gr.update(choices=list_selections(caller_of(accounts, request)))

        def do_pick_saved(name: str, request: gr.Request) -> Any:
            caller_of(accounts, request)
            return f"saved:{name}" if name else gr.update()

        count_btn.click(do_preview, [specs], [count_md, preview], api_name="count_respondents")
        save_btn.click(do_save, [specs, save_name], [count_md, saved], api_visibility="private")
        saved.focus(do_saved_list, None, [saved], api_visibility="private")
        saved.input(do_pick_saved, [saved], [specs], api_visibility="private")

    def do_read_template(path: str | None, request: gr.Request) -> str:
        caller = caller_of(accounts, request)
        if not path:
            return ""
        try:
            return read_text(caller, path, "template")
        except INPUT_ERRORS as exc:
            return f"# ⚠️ {exc}"

    def do_read_upload(path: str | None, request: gr.Request) -> str:
        caller = caller_of(accounts, request)
        if not path:
            return ""
        try:
            return read_upload_text(caller, path, field="file")
        except INPUT_ERRORS as exc:
            return f"# ⚠️ {exc}"

    with gr.Tab("Survey"):
        gr.Markdown("Load a template (or upload a JSON/YAML survey), edit it if you like, then run it on the "
                    "selection from the **Respondents** tab. Runs are resumable: a stopped or cancelled run "
                    "continues where it stopped.")  # fmt: skip
        with gr.Row():
            template = gr.Dropdown(template_choices(), label="Template", value=None, scale=2)
            survey_file = gr.File(
                label="…or upload", file_types=[".json", ".yaml", ".yml"], type="filepath", scale=1
            )
        survey_text = gr.Code(
            label="Survey (JSON or YAML)", language="yaml", lines=12, max_lines=24, interactive=True
        )
        with gr.Accordion("Survey editor (no YAML needed)", open=False):
            gr.Markdown(
                "One row per question. **type**: likert, single_choice, binary_choice, slider_percent, "
                "numeric, open. **options**: `1=Label; 2=Label` (choice types). Edit cells, or pick a row "
                "and an action; then *Apply to the survey* (the YAML view above stays for power users)."
            )
            editor_table = gr.Dataframe(
                headers=EDITOR_COLUMNS, datatype=["str"] * len(EDITOR_COLUMNS), interactive=True,
                label="Questions", wrap=True,
            )  # fmt: skip
            with gr.Row():
                editor_load = gr.Button("Load from the survey")
                editor_row = gr.Number(value=1, precision=0, minimum=1, label="Row")
                editor_action = gr.Radio(list(EDITOR_ACTIONS), value="add", label="Action")
                editor_do = gr.Button("Do action")
                editor_apply = gr.Button("Apply to the survey", variant="primary")
            editor_status = gr.Markdown()

        def do_editor_load(text: str, request: gr.Request) -> tuple[Any, str]:
            caller_of(accounts, request)
            try:
                return editor_rows(text), ""
            except INPUT_ERRORS as exc:
                return gr.update(), f"⚠️ {exc}"

        def do_editor_action(table: Any, action: str, row: float, request: gr.Request) -> tuple[Any, str]:
            caller_of(accounts, request)
            try:
                return edit_rows(table, action, row), ""
            except INPUT_ERRORS as exc:
                return gr.update(), f"⚠️ {exc}"

        def do_editor_apply(table: Any, text: str, request: gr.Request) -> tuple[Any, str]:
            caller_of(accounts, request)
            try:
                updated = survey_text_from_rows(table, text)
            except INPUT_ERRORS as exc:
                return gr.update(), f"⚠️ {exc}"
            survey = survey_from_text(updated)
            preview = "\n".join(
                f"{i}. **{q.id}** ({q.type}) {q.text[:80]}" for i, q in enumerate(survey.questions, 1)
            )
            return updated, f"✅ {len(survey.questions)} questions applied:\n\n{preview}"

        editor_load.click(
            do_editor_load, [survey_text], [editor_table, editor_status], api_visibility="private"
        )
        editor_do.click(
            do_editor_action, [editor_table, editor_action, editor_row], [editor_table, editor_status],
            api_visibility="private",
        )  # fmt: skip
        editor_apply.click(
            do_editor_apply,
            [editor_table, survey_text],
            [survey_text, editor_status],
            api_visibility="private",
        )
        with gr.Row():
            mode = gr.Radio(
                ["per_question", "per_person", "distribution"], value="per_question", label="Mode",
                info="distribution: closed questions answered from the model's probabilities (stored too)",
            )  # fmt: skip
            concurrency = gr.Number(value=2, precision=0, minimum=1, maximum=64, label="Concurrency")
            reason_chars = gr.Number(
                value=80, precision=0, minimum=0, maximum=1000, label="Reason length (chars)"
            )
            resume_id = gr.Textbox(label="Resume run id (optional)")
        with gr.Row():
            check_btn = gr.Button("Check survey")
            run_btn = gr.Button("Run survey", variant="primary")
            cancel_btn = gr.Button("Cancel run", variant="stop")
        run_status = gr.Markdown()
        current_run = gr.State(value=None)
        live_plot = gr.Plot(label="Live answer distribution")
        live_means = gr.Plot(label="Means so far")

        template.input(do_read_template, [template], [survey_text], api_visibility="private")
        survey_file.upload(do_read_upload, [survey_file], [survey_text], api_visibility="private")

        def do_check(text: str, request: gr.Request) -> str:
            from personagraph.twins.surveys import describe_types

            caller_of(accounts, request)
            try:
                survey = survey_from_text(text)
            except INPUT_ERRORS as exc:
                return f"⚠️ {exc}"
            types = ", ".join(f"{k}: {v}" for k, v in describe_types(survey.questions).items())
            return f"✅ **{survey.title or survey.id}**: {len(survey.questions)} questions ({types})."

        def do_run(
            text: str, select_text: str, mode_value: str, conc: float, reasons: float, resume: str,
            request: gr.Request,
        ) -> Iterator[tuple[str, Any, Any, Any]]:  # fmt: skip
            caller = caller_of(accounts, request)
            try:
                options = options_from_form(mode_value, conc, reasons)
                if (resume or "").strip():
                    run_id = resume.strip()
                    if run_info(caller, run_id)["kind"] != "survey":
                        raise RunError(f"run_id: {run_id!r} is not a survey run; resume it in its own tab")
                    start_run_in_background(caller, run_id, options)
                else:
                    survey = survey_from_text(text)
                    selection = selection_from_text(caller, select_text)
                    run_id = start_survey_run(caller, survey, selection, options)
            except INPUT_ERRORS as exc:
                yield f"⚠️ {exc}", gr.update(), gr.update(), gr.update()
                return
            for text_now, *figures in _follow_survey(caller, run_id):
                yield text_now, *figures, run_id

        def do_cancel(run_id: str | None, request: gr.Request) -> str:
            caller = caller_of(accounts, request)
            if not run_id:
                return "⚠️ run_id: no run was started here yet"
            try:
                cancel_run(caller, run_id)
            except INPUT_ERRORS as exc:
                return f"⚠️ {exc}"
            return f"Cancelling `{run_id}`: the calls in flight finish and are stored."

        check_btn.click(do_check, [survey_text], [run_status], api_name="check_survey")
        run_btn.click(
            do_run, [survey_text, specs, mode, concurrency, reason_chars, resume_id],
            [run_status, live_plot, live_means, current_run], api_name="run_survey",
        )  # fmt: skip
        cancel_btn.click(do_cancel, [current_run], [run_status], api_name="cancel_survey")

    with gr.Tab("Interview"):
        with gr.Row():
            guide_pick = gr.Dropdown(guide_choices(), label="Interview guide", value=None, scale=2)
            guide_file = gr.File(
                label="…or upload", file_types=[".json", ".yaml", ".yml"], type="filepath", scale=1
            )
        guide_text = gr.Code(
            label="Guide (JSON or YAML)", language="yaml", lines=10, max_lines=20, interactive=True
        )
        max_followups = gr.Number(
            value=2, precision=0, minimum=0, maximum=10, label="Follow-ups per question"
        )
        guide_pick.input(do_read_template, [guide_pick], [guide_text], api_visibility="private")
        guide_file.upload(do_read_upload, [guide_file], [guide_text], api_visibility="private")
        with gr.Accordion("Batch: interview every respondent of the selection", open=False):
            batch_btn = gr.Button("Run interviews", variant="primary")
            batch_status = gr.Markdown()
        with gr.Accordion("Interactive: interview one twin yourself", open=True):
            with gr.Row():
                person_id = gr.Textbox(label="Respondent id", placeholder="e.g. the first id of the preview")
                start_btn = gr.Button("Start interview", variant="primary")
            interview_chat = gr.Chatbot(height=380, label="Interview")
            with gr.Row():
                followup = gr.Textbox(placeholder="Your follow-up question", show_label=False, scale=4)
                ask_btn = gr.Button("Ask", scale=1)
                next_btn = gr.Button("Next question", scale=1)
                end_btn = gr.Button("End", variant="stop", scale=1)
            interview_status = gr.Markdown()
            interview_files = gr.File(label="Transcript (markdown + JSON)", file_count="multiple")
            session_state = gr.State(value=None)  # the thread id of this browser's interview

        def do_batch(text: str, select_text: str, followups: float, request: gr.Request) -> Iterator[str]:
            caller = caller_of(accounts, request)
            try:
                options = options_from_form("per_question", 1, 0, followups)
                guide = guide_from_text(text)
                selection = selection_from_text(caller, select_text)
                run_id = start_interview_run(caller, guide, selection, options)
            except INPUT_ERRORS as exc:
                yield f"⚠️ {exc}"
                return
            while True:
                try:
                    info = run_info(caller, run_id)
                except INPUT_ERRORS as exc:  # deleted meanwhile
                    yield f"⚠️ {exc}"
                    return
                if not info["active"]:
                    yield (run_outcome(info) + f"Run `{run_id}`: {info['ok']} interviews ok, {info['failed']} "
                           "failed. See the **Results** tab.")  # fmt: skip
                    return
                progress = info["progress"] or {}
                yield f"Run `{run_id}`: {progress.get('done', 0)}/{progress.get('total', info['expected'])} interviews…"
                time.sleep(1.0)

        batch_btn.click(
            do_batch, [guide_text, specs, max_followups], [batch_status], api_name="run_interviews"
        )

        def _chat_of(turn: InterviewTurn) -> list[dict[str, Any]]:
            messages: list[dict[str, Any]] = []
            for entry in turn.transcript:
                who = {
                    "guide": "Interviewer",
                    "interviewer": "Interviewer (follow-up)",
                    "human": "You (follow-up)",
                }
                messages.append({"role": "user", "content": f"**{who.get(entry.get('asked_by', 'guide'), '')}:** "
                                                            f"{entry.get('text', '')}"})  # fmt: skip
                messages.append({"role": "assistant", "content": str(entry.get("answer", ""))})
            return messages

        def _turn_outputs(caller: Caller, turn: InterviewTurn) -> tuple[Any, ...]:
            if turn.waiting is None:
                files = interviews(caller).save_transcript(turn.thread_id)
                return (_chat_of(turn), None, "Interview finished; the transcript is saved.",
                        downloadable(list(files.values())))  # fmt: skip
            nxt = turn.waiting.get("next_question")
            hint = f"Next guide question: _{nxt}_" if nxt else "This was the last guide question."
            return _chat_of(turn), turn.thread_id, f"Ask a follow-up, or **Next question**. {hint}", None

        def do_start(
            text: str, pid: str, followups: float, select_text: str, request: gr.Request
        ) -> tuple[Any, ...]:
            caller = caller_of(accounts, request)
            try:
                limit = options_from_form("per_question", 1, 0, followups).max_followups
                guide = guide_from_text(text)
                selection = selection_from_text(caller, select_text)
                pool = respondent_pool(caller, selection.source)
                if (pid or "").strip() not in pool.by_id:
                    raise RespondentError(f"respondent id: {pid!r} is not in the selection's source")
                turn = interviews(caller).start(pool.by_id[pid.strip()], guide, max_followups=limit)
            except (*INPUT_ERRORS, ModelError) as exc:
                return [], None, f"⚠️ {exc}", None
            return _turn_outputs(caller, turn)

        def _reply(thread_id: str | None, text: str, request: gr.Request) -> tuple[Any, ...]:
            caller = caller_of(accounts, request)
            if not thread_id:
                return gr.update(), None, "⚠️ Start an interview first.", None
            try:
                turn = interviews(caller).reply(thread_id, text)
            except (*INPUT_ERRORS, ModelError) as exc:
                return gr.update(), thread_id, f"⚠️ {exc} — send it again to retry.", None
            return _turn_outputs(caller, turn)

        def do_reply(thread_id: str | None, text: str, request: gr.Request) -> tuple[Any, ...]:
            return _reply(thread_id, text, request)

        def do_next(thread_id: str | None, request: gr.Request) -> tuple[Any, ...]:
            return _reply(thread_id, "/next", request)

        def do_end(thread_id: str | None, request: gr.Request) -> tuple[Any, ...]:
            return _reply(thread_id, "/end", request)

        def do_clear_followup(request: gr.Request) -> str:
            caller_of(accounts, request)
            return ""

        interactive_outputs = [interview_chat, session_state, interview_status, interview_files]
        start_btn.click(do_start, [guide_text, person_id, max_followups, specs], interactive_outputs,
                        api_name="start_interview")  # fmt: skip
        ask_btn.click(
            do_reply, [session_state, followup], interactive_outputs, api_name="interview_reply"
        ).then(do_clear_followup, None, [followup], api_visibility="private")
        followup.submit(
            do_reply, [session_state, followup], interactive_outputs, api_visibility="private"
        ).then(do_clear_followup, None, [followup], api_visibility="private")
        next_btn.click(do_next, [session_state], interactive_outputs, api_visibility="private")
        end_btn.click(do_end, [session_state], interactive_outputs, api_visibility="private")

    with gr.Tab("Results"):
        with gr.Row():
            # Any run id may be typed (e.g. one from the CLI); the services decide what the caller may open.
            run_pick = gr.Dropdown(choices=[], label="Run", allow_custom_value=True, scale=4)
            refresh_btn = gr.Button("↻ Refresh", scale=1)
        results_md = gr.Markdown()
        results_table = gr.Dataframe(label="Per question", interactive=False)
        with gr.Row():
            question_pick = gr.Dropdown(choices=[], label="Question", scale=2)
            segment_pick = gr.Dropdown(
                choices=["age_band", "sex", "education", "region", "family_income", "political_views"],
                allow_custom_value=True, label="Segment by", scale=1,
            )  # fmt: skip
        with gr.Row():
            question_plot = gr.Plot(label="Answers")
            segment_plot = gr.Plot(label="By segment")
        with gr.Row():
            export_btn = gr.Button("Export JSON / CSV / Excel / transcripts")
            cancel_run_btn = gr.Button("Cancel run")
            delete_btn = gr.Button("Delete run", variant="stop")
        export_files = gr.File(label="Exports", file_count="multiple")
        with gr.Accordion("Validate against real answers", open=False):
            gr.Markdown("An answers CSV in the Twin-2K-500 format: `twin_id` plus one column per item id. "
                        "Baselines (population mean, uniform random) are computed from the same file.")  # fmt: skip
            answers_file = gr.File(label="Answers CSV", file_types=[".csv"], type="filepath")
            validate_btn = gr.Button("Validate")
            validation_md = gr.Markdown()
        with gr.Accordion("Calibrate with a pilot (real answers)", open=False):
            gr.Markdown("Real answers of a pilot among this run's respondents (the answers CSV format: `twin_id` "
                        "plus one column per item id). The calibration is fitted on the pilot only; everyone "
                        "else gets calibrated answers next to the twins' zero-shot ones, in the plot and the "
                        "exports. Calibrating again replaces the earlier calibration.")  # fmt: skip
            with gr.Row():
                pilot_file = gr.File(label="Pilot answers CSV", file_types=[".csv"], type="filepath", scale=3)
                policy_pick = gr.Dropdown(
                    choices=list(POLICIES), value="mean", label="Answer policy", scale=1
                )
            calibrate_btn = gr.Button("Calibrate")
            calibration_md = gr.Markdown()
        results_status = gr.Markdown()

        def do_refresh(request: gr.Request) -> Any:
            return gr.update(choices=run_choices(caller_of(accounts, request)))

        def do_show(run_id: str, request: gr.Request) -> tuple[Any, ...]:
            caller = caller_of(accounts, request)
            if not run_id:
                return "", pd.DataFrame(), gr.update(choices=[]), go.Figure()
            try:
                info = run_info(caller, run_id)
                if info["kind"] != "survey":
                    return (f"Interview run `{run_id}`: {info['stored']}/{info['expected']} transcripts "
                            f"({info['state']}). Export it to read them.", pd.DataFrame(), gr.update(choices=[]),
                            go.Figure())  # fmt: skip
                summary = summarize(caller, run_id)
            except INPUT_ERRORS as exc:
                return f"⚠️ {exc}", pd.DataFrame(), gr.update(choices=[]), go.Figure()
            ids = [q["question_id"] for q in summary["questions"]]
            first = next(
                (q["question_id"] for q in summary["questions"] if q.get("distribution")),
                ids[0] if ids else None,
            )
            return (summary_markdown(summary, info), questions_table(summary),
                    gr.update(choices=ids, value=first), distribution_figure(summary, first))  # fmt: skip

        def do_question(
            run_id: str, question_id: str, attribute: str, request: gr.Request
        ) -> tuple[Any, Any]:
            caller = caller_of(accounts, request)
            if not run_id or not question_id:
                return go.Figure(), go.Figure()
            try:
                summary = summarize(caller, run_id)
                segments = by_segment(caller, run_id, attribute) if attribute else {}
            except INPUT_ERRORS:
                return distribution_figure({}), go.Figure()
            return distribution_figure(summary, question_id), segment_figure(segments, question_id)

        def do_export(run_id: str, request: gr.Request) -> tuple[Any, str]:
            caller = caller_of(accounts, request)
            try:
                files = export_all(caller, run_id or "")
            except INPUT_ERRORS as exc:
                return None, f"⚠️ {exc}"
            paths = [p for p in files.values() if Path(p).is_file()]
            transcripts = files.get("transcripts_dir")
            if transcripts:
                paths += [str(p) for p in sorted(Path(transcripts).glob("*.md"))]
            return downloadable(paths), f"Exported {len(paths)} files."

        def do_cancel_run(run_id: str, request: gr.Request) -> str:
            caller = caller_of(accounts, request)
            try:
                info = cancel_run(caller, run_id or "")
            except INPUT_ERRORS as exc:
                return f"⚠️ {exc}"
            if info["active"]:
                return f"Cancelling `{run_id}`: the calls in flight finish and are stored."
            return f"`{run_id}` is not running here ({info['state']}); it will stop if it runs elsewhere."

        def do_delete(run_id: str, request: gr.Request) -> tuple[str, Any]:
            caller = caller_of(accounts, request)
            try:
                delete_run(caller, run_id or "")
            except INPUT_ERRORS as exc:
                return f"⚠️ {exc}", gr.update()
            return f"Deleted `{run_id}`.", gr.update(choices=run_choices(caller), value=None)

        def do_validate(run_id: str, path: str | None, request: gr.Request) -> str:
            caller = caller_of(accounts, request)
            if not path:
                return "⚠️ answers_file: upload the real answers CSV first"
            try:
                mine = save_upload(caller, path, field="answers_file")
                return validation_markdown(validate_run(caller, run_id or "", mine))
            except INPUT_ERRORS as exc:
                return f"⚠️ {exc}"

        def do_calibrate(run_id: str, path: str | None, policy: str, request: gr.Request) -> tuple[str, Any]:
            caller = caller_of(accounts, request)
            if not path:
                return "⚠️ pilot_file: upload the pilot's real answers CSV first", gr.update()
            try:
                mine = save_upload(caller, path, field="pilot_file")
                report = calibrate_run(caller, run_id or "", mine, policy or "mean")
                summary = summarize(caller, run_id or "")
            except INPUT_ERRORS as exc:
                return f"⚠️ {exc}", gr.update()
            return calibration_markdown(report), distribution_figure(summary)

        refresh_btn.click(do_refresh, None, [run_pick], api_name="list_runs")
        run_pick.focus(do_refresh, None, [run_pick], api_visibility="private")
        run_pick.input(do_show, [run_pick], [results_md, results_table, question_pick, question_plot],
                       api_name="show_run")  # fmt: skip
        question_pick.input(do_question, [run_pick, question_pick, segment_pick], [question_plot, segment_plot],
                            api_visibility="private")  # fmt: skip
        segment_pick.input(do_question, [run_pick, question_pick, segment_pick], [question_plot, segment_plot],
                           api_visibility="private")  # fmt: skip
        export_btn.click(do_export, [run_pick], [export_files, results_status], api_name="export_run")
        cancel_run_btn.click(do_cancel_run, [run_pick], [results_status], api_name="cancel_run")
        delete_btn.click(do_delete, [run_pick], [results_status, run_pick], api_name="delete_run")
        validate_btn.click(do_validate, [run_pick, answers_file], [validation_md], api_name="validate_run")
        calibrate_btn.click(do_calibrate, [run_pick, pilot_file, policy_pick], [calibration_md, question_plot],
                            api_name="calibrate_run")  # fmt: skip


def _follow_survey(caller: Caller, run_id: str) -> Iterator[tuple[str, Any, Any]]:
    """Follow a survey run executing in the background: progress and the live plots about once a
    second, until it is no longer running (done, stopped, cancelled or failed)."""
    started = time.monotonic()
    while True:
        try:
            info = run_info(caller, run_id)
        except INPUT_ERRORS as exc:  # deleted meanwhile
            yield f"⚠️ {exc}", gr.update(), gr.update()
            return
        summary = _summary_or_none(caller, run_id)
        progress = info["progress"] or {}
        done, total = progress.get("done", 0), progress.get("total", "?")
        text = f"Run `{run_id}`: {done}/{total} answers this session · {time.monotonic() - started:.0f} s"
        if summary is not None:
            text += f"\n\n{summary_markdown(summary)}"
        figures = (
            (distribution_figure(summary), means_figure(summary)) if summary else (gr.update(), gr.update())
        )
        if not info["active"]:
            yield run_outcome(info) + text, *figures
            return
        yield text, *figures
        time.sleep(1.0)


def _summary_or_none(caller: Caller, run_id: str) -> dict[str, Any] | None:
    try:
        return summarize(caller, run_id)
    except Exception:  # the writer holds the database for a moment; the next poll reads it
        return None


__all__ = ["build_twins_tabs"]
