"""Digital-twin tabs of the app: respondents, survey, interview, results.

Respondents: build a selection (the CLI's --select specs, one per line), count it, preview it, save it.
Survey: load a template or upload a file, edit it, run it with progress and a live distribution plot.
Interview: a batch run over the selection, or an interactive interview of one twin (interrupt/resume).
Results: coverage and validity, per-question and per-segment plots, exports, validation against
real answers, and (admins) deleting runs. Users see their own runs; admins see all of them.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
import plotly.graph_objects as go
import yaml
from pydantic import ValidationError

from personagraph.services.twins.analysis import by_segment, summarize, validate_run
from personagraph.services.twins.executor import BatchOptions, Progress, RunSummary
from personagraph.services.twins.exports import export_all, export_session_transcript
from personagraph.services.twins.interviews import (
    InterviewSession,
    InterviewTurn,
    create_interview_run,
    run_interviews,
)
from personagraph.services.twins.store import RunError, RunStore, delete_run, run_info, visible_runs
from personagraph.services.twins.surveys import create_survey_run, run_survey
from personagraph.serving.models import ModelError
from personagraph.twins.guides import GuideError, InterviewGuide, guide_from_data
from personagraph.twins.respondents import (
    RespondentError,
    Selection,
    list_selections,
    load_respondents,
    parse_select,
    save_selection,
    select,
)
from personagraph.twins.surveys import Survey, SurveyError, list_templates, survey_from_data
from personagraph.ui.auth import AuthConfig, current_account

DEFAULT_SELECT = "random:5:1"
SELECT_HELP = (
    "One spec per line, combined in order: `all` · `random:N[:SEED]` · `ids:1,2,3` · "
    "`where:KEY=V1|V2;KEY=LO..HI` · `saved:NAME` · `source:twin2k|hf:PATH|FILE`"
)
INPUT_ERRORS = (RespondentError, SurveyError, GuideError, RunError, ValueError)


# --- pure helpers (tested without a browser) ----------------------------------------------------------


def selection_from_text(specs: str) -> Selection:
    lines = [line.strip() for line in (specs or "").splitlines() if line.strip()]
    return parse_select(lines or ["all"])


def preview_selection(specs: str, limit: int = 20) -> tuple[str, pd.DataFrame]:
    """(how many match and how, a table of the first `limit` people)."""
    selection = selection_from_text(specs)
    people = select(selection, load_respondents(selection.source))
    rows = [{"id": p.id, **p.attributes, "profile": p.profile[:120]} for p in people[:limit]]
    text = f"**{len(people)} respondents** match ({selection.describe()})."
    return text, pd.DataFrame(rows)


def attribute_info(attribute: str, source: str = "twin2k") -> tuple[str, list[str], str]:
    """(kind, categories, range text) of a respondent attribute, for the filter builder."""
    pool = load_respondents(source)
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


def _yaml_text(text: str, what: str, error: type[ValueError], hint: str) -> Any:
    """The data of a JSON/YAML text typed or loaded in the UI; errors name `what`."""
    if not (text or "").strip():
        raise error(f"{what}: the {what} text is empty; {hint}")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{what}: not valid JSON/YAML: {exc}") from exc


def survey_from_text(text: str) -> Survey:
    """A survey from JSON or YAML text (native or Twin-2K-500 format)."""
    return survey_from_data(_yaml_text(text, "survey", SurveyError, "load a template or upload a file"))


def guide_from_text(text: str) -> InterviewGuide:
    return guide_from_data(_yaml_text(text, "guide", GuideError, "load a guide or upload a file"))


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


def read_text_file(path: str | None) -> str:
    return Path(path).read_text(encoding="utf-8") if path else ""


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
    figure.add_bar(x=labels, y=[chosen["distribution"][k] for k in labels])
    figure.update_layout(
        title=f"{chosen['question_id']}: {chosen['text'][:80]}", height=360, yaxis_title="answers",
        margin={"t": 60, "l": 40, "r": 20, "b": 80},
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
        f"failed {summary['failed']}"
    )


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


def run_choices(owner: str, admin: bool, kind: str | None = None) -> list[tuple[str, str]]:
    runs = [r for r in visible_runs(owner, admin=admin) if kind is None or r["kind"] == kind]
    return [
        (f"{r['run_id']} · {r['kind']} · {r['survey_id']} · {r['stored']}/{r['expected']}"
         + (f" · {r['owner'] or '(cli)'}" if admin else ""), r["run_id"])
        for r in runs
    ]  # fmt: skip


def may_see(run_id: str, owner: str, admin: bool) -> dict[str, Any]:
    """The run's info when this user may see it (their own run, or any for an admin)."""
    info = run_info(run_id)
    if not admin and info["owner"] != owner:
        raise RunError(f"run {run_id!r} belongs to another user")
    return info


# --- the tabs -----------------------------------------------------------------------------------------


def build_twins_tabs(auth: AuthConfig) -> None:
    """The four twin tabs, created inside the caller's open `gr.Blocks`."""

    def account(request: gr.Request | None) -> tuple[str, bool]:
        acc = current_account(auth, request)
        return acc.user_id, acc.admin

    def _options(
        mode: str, concurrency: float, reason_chars: float, max_followups: float = 2
    ) -> BatchOptions:
        try:
            return BatchOptions(
                mode=mode, concurrency=int(concurrency), reason_chars=int(reason_chars),  # type: ignore[arg-type]
                max_followups=int(max_followups),
            )  # fmt: skip
        except ValidationError as exc:  # name the field and what it allows
            raise ValueError(
                "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            ) from None

    with gr.Tab("Respondents"):
        gr.Markdown(f"Choose which digital twins answer. {SELECT_HELP}")
        with gr.Row():
            specs = gr.Textbox(value=DEFAULT_SELECT, lines=4, label="Selection", scale=3)
            with gr.Column(scale=1):
                saved = gr.Dropdown(choices=list_selections(), label="Saved selections", value=None)
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
        count_btn = gr.Button("Count and preview", variant="primary")
        count_md = gr.Markdown()
        preview = gr.Dataframe(label="First 20 respondents", interactive=False, wrap=True)

        def on_attribute(name: str) -> tuple[Any, str]:
            try:
                kind, categories, span = attribute_info(name)
            except INPUT_ERRORS as exc:
                return gr.update(choices=[], value=[]), f"⚠️ {exc}"
            if kind == "categorical":
                return gr.update(choices=categories, value=[]), f"`{name}`: choose one or more values."
            return gr.update(
                choices=[], value=[]
            ), f"`{name}` is numeric ({span}): set a minimum and/or maximum."

        def do_add_filter(text: str, name: str, chosen: list[str], lo: float | None, hi: float | None) -> Any:
            try:
                spec = filter_spec(name, chosen, lo, hi)
                updated = add_spec(text, spec)
                summary, table = preview_selection(updated)
            except INPUT_ERRORS as exc:
                return gr.update(), f"⚠️ {exc}", gr.update()
            return updated, summary, table

        def do_add_sample(text: str, n: float, seed: float) -> Any:
            try:
                updated = add_spec(text, f"random:{int(n)}:{int(seed)}")
                summary, table = preview_selection(updated)
            except INPUT_ERRORS as exc:
                return gr.update(), f"⚠️ {exc}", gr.update()
            return updated, summary, table

        attribute.input(on_attribute, [attribute], [values, count_md], api_visibility="private")
        add_filter.click(do_add_filter, [specs, attribute, values, low, high], [specs, count_md, preview],
                         api_visibility="private")  # fmt: skip
        add_sample.click(do_add_sample, [specs, sample_n, sample_seed], [specs, count_md, preview],
                         api_visibility="private")  # fmt: skip
        clear_btn.click(lambda: "all", None, [specs], api_visibility="private")

        def do_preview(text: str) -> tuple[str, Any]:
            try:
                return preview_selection(text)
            except INPUT_ERRORS as exc:
                return f"⚠️ {exc}", pd.DataFrame()

        def do_save(text: str, name: str) -> tuple[str, Any]:
            try:
                path = save_selection(selection_from_text(text), (name or "").strip())
            except INPUT_ERRORS as exc:
                return f"⚠️ {exc}", gr.update()
            return f"Saved `{path.name}`; use it as `saved:{path.stem}`.", gr.update(
                choices=list_selections()
            )

        count_btn.click(do_preview, [specs], [count_md, preview], api_name="count_respondents")
        save_btn.click(do_save, [specs, save_name], [count_md, saved], api_visibility="private")
        saved.input(lambda name: f"saved:{name}" if name else gr.update(), [saved], [specs],
                    api_visibility="private")  # fmt: skip

    with gr.Tab("Survey"):
        gr.Markdown("Load a template (or upload a JSON/YAML survey), edit it if you like, then run it on the "
                    "selection from the **Respondents** tab. Runs are resumable: a stopped run continues "
                    "where it stopped.")  # fmt: skip
        with gr.Row():
            template = gr.Dropdown(template_choices(), label="Template", value=None, scale=2)
            survey_file = gr.File(
                label="…or upload", file_types=[".json", ".yaml", ".yml"], type="filepath", scale=1
            )
        survey_text = gr.Code(
            label="Survey (JSON or YAML)", language="yaml", lines=12, max_lines=24, interactive=True
        )
        with gr.Row():
            mode = gr.Radio(["per_question", "per_person"], value="per_question", label="Mode")
            concurrency = gr.Number(value=2, precision=0, minimum=1, maximum=64, label="Concurrency")
            reason_chars = gr.Number(
                value=80, precision=0, minimum=0, maximum=1000, label="Reason length (chars)"
            )
            resume_id = gr.Textbox(label="Resume run id (optional)")
        with gr.Row():
            check_btn = gr.Button("Check survey")
            run_btn = gr.Button("Run survey", variant="primary")
        run_status = gr.Markdown()
        live_plot = gr.Plot(label="Live answer distribution")
        live_means = gr.Plot(label="Means so far")

        template.input(read_text_file, [template], [survey_text], api_visibility="private")
        survey_file.upload(read_text_file, [survey_file], [survey_text], api_visibility="private")

        def do_check(text: str) -> str:
            from personagraph.twins.surveys import describe_types

            try:
                survey = survey_from_text(text)
            except INPUT_ERRORS as exc:
                return f"⚠️ {exc}"
            types = ", ".join(f"{k}: {v}" for k, v in describe_types(survey.questions).items())
            return f"✅ **{survey.title or survey.id}**: {len(survey.questions)} questions ({types})."

        def do_run(
            text: str, select_text: str, mode_value: str, conc: float, reasons: float, resume: str,
            request: gr.Request,
        ) -> Iterator[tuple[str, Any, Any]]:  # fmt: skip
            owner, admin = account(request)
            try:
                options = _options(mode_value, conc, reasons)
                if (resume or "").strip():
                    run_id = resume.strip()
                    may_see(run_id, owner, admin)
                else:
                    survey = survey_from_text(text)
                    selection = selection_from_text(select_text)
                    people = select(selection, load_respondents(selection.source))
                    run_id = create_survey_run(survey, people, options, selection=selection,
                                               source=selection.source, owner=owner).run_id  # fmt: skip
            except INPUT_ERRORS as exc:
                yield f"⚠️ {exc}", gr.update(), gr.update()
                return
            yield from _follow_run(run_id, options)

        check_btn.click(do_check, [survey_text], [run_status], api_name="check_survey")
        run_btn.click(
            do_run, [survey_text, specs, mode, concurrency, reason_chars, resume_id],
            [run_status, live_plot, live_means], api_name="run_survey",
        )  # fmt: skip

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
        guide_pick.input(read_text_file, [guide_pick], [guide_text], api_visibility="private")
        guide_file.upload(read_text_file, [guide_file], [guide_text], api_visibility="private")
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
            session_state = gr.State(value=None)

        def do_batch(text: str, select_text: str, followups: float, request: gr.Request) -> Iterator[str]:
            owner, _ = account(request)
            try:
                options = _options("per_question", 1, 0, followups)
                guide = guide_from_text(text)
                selection = selection_from_text(select_text)
                people = select(selection, load_respondents(selection.source))
                run_id = create_interview_run(guide, people, options, selection=selection,
                                              source=selection.source, owner=owner)  # fmt: skip
            except INPUT_ERRORS as exc:
                yield f"⚠️ {exc}"
                return
            for alive, progress, outcome in _in_background(run_interviews, run_id, options):
                if alive:
                    yield f"Run `{run_id}`: {progress.get('done', 0)}/{progress.get('total', len(people))} interviews…"
                elif "error" in outcome:
                    yield f"⚠️ {outcome['error']} — resume it from the Results tab or CLI (`--resume {run_id}`)."
                else:
                    s = outcome["summary"]
                    note = f" Stopped: {s.stopped}." if s.stopped else ""
                    yield f"Run `{run_id}` done: {s.ok} interviews ok, {s.failed} failed.{note} See the **Results** tab."

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

        def _turn_outputs(session: dict[str, Any], turn: InterviewTurn) -> tuple[Any, ...]:
            if turn.waiting is None:
                files = _save_session(session, turn)
                return _chat_of(turn), None, "Interview finished; the transcript is saved.", files
            nxt = turn.waiting.get("next_question")
            hint = f"Next guide question: _{nxt}_" if nxt else "This was the last guide question."
            return _chat_of(turn), session, f"Ask a follow-up, or **Next question**. {hint}", None

        def _save_session(session: dict[str, Any], turn: InterviewTurn) -> list[str]:
            from personagraph.serving.settings import get_settings

            pool = load_respondents(session["source"])
            out = get_settings().personagraph_home / "interviews"
            files = export_session_transcript(
                turn.thread_id,
                turn.transcript,
                guide_from_data(session["guide"]),
                pool.by_id[session["person"]],
                out,
            )
            return list(files.values())

        def do_start(text: str, pid: str, followups: float, select_text: str) -> tuple[Any, ...]:
            try:
                guide = guide_from_text(text)
                selection = selection_from_text(select_text)
                pool = load_respondents(selection.source)
                if (pid or "").strip() not in pool.by_id:
                    raise RespondentError(f"respondent id: {pid!r} is not in source {selection.source!r}")
                person = pool.by_id[pid.strip()]
                turn = InterviewSession(max_followups=int(followups)).start(person, guide)
            except (*INPUT_ERRORS, ModelError) as exc:
                return [], None, f"⚠️ {exc}", None
            session = {"thread_id": turn.thread_id, "person": person.id, "source": selection.source,
                       "guide": guide.model_dump(), "max_followups": int(followups)}  # fmt: skip
            return _turn_outputs(session, turn)

        def do_reply(session: dict[str, Any] | None, text: str) -> tuple[Any, ...]:
            if not session:
                return gr.update(), None, "⚠️ Start an interview first.", None
            try:
                interview = InterviewSession(max_followups=session["max_followups"])
                turn = interview.reply(session["thread_id"], text)
            except (RunError, ModelError) as exc:
                return gr.update(), session, f"⚠️ {exc} — send it again to retry.", None
            return _turn_outputs(session, turn)

        interactive_outputs = [interview_chat, session_state, interview_status, interview_files]
        start_btn.click(do_start, [guide_text, person_id, max_followups, specs], interactive_outputs,
                        api_name="start_interview")  # fmt: skip
        ask_btn.click(
            do_reply, [session_state, followup], interactive_outputs, api_name="interview_reply"
        ).then(lambda: "", None, [followup], api_visibility="private")
        followup.submit(
            do_reply, [session_state, followup], interactive_outputs, api_visibility="private"
        ).then(lambda: "", None, [followup], api_visibility="private")
        next_btn.click(
            lambda s: do_reply(s, "/next"), [session_state], interactive_outputs, api_visibility="private"
        )
        end_btn.click(
            lambda s: do_reply(s, "/end"), [session_state], interactive_outputs, api_visibility="private"
        )

    with gr.Tab("Results"):
        with gr.Row():
            run_pick = gr.Dropdown(choices=[], label="Run", scale=4)
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
            delete_btn = gr.Button("Delete run (admin)", variant="stop")
        export_files = gr.File(label="Exports", file_count="multiple")
        with gr.Accordion("Validate against real answers", open=False):
            gr.Markdown("An answers CSV in the Twin-2K-500 format: `twin_id` plus one column per item id. "
                        "Baselines (population mean, uniform random) are computed from the same file.")  # fmt: skip
            answers_file = gr.File(label="Answers CSV", file_types=[".csv"], type="filepath")
            validate_btn = gr.Button("Validate")
            validation_md = gr.Markdown()
        results_status = gr.Markdown()

        def do_refresh(request: gr.Request) -> Any:
            owner, admin = account(request)
            return gr.update(choices=run_choices(owner, admin))

        def do_show(run_id: str, request: gr.Request) -> tuple[Any, ...]:
            owner, admin = account(request)
            if not run_id:
                return "", pd.DataFrame(), gr.update(choices=[]), go.Figure()
            try:
                info = may_see(run_id, owner, admin)
                if info["kind"] != "survey":
                    return (f"Interview run `{run_id}`: {info['stored']}/{info['expected']} transcripts. "
                            "Export it to read them.", pd.DataFrame(), gr.update(choices=[]), go.Figure())  # fmt: skip
                with RunStore.open(run_id) as store:
                    summary = summarize(store)
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
            owner, admin = account(request)
            if not run_id or not question_id:
                return go.Figure(), go.Figure()
            try:
                may_see(run_id, owner, admin)
                with RunStore.open(run_id) as store:
                    summary = summarize(store)
                    segments = by_segment(store, attribute) if attribute else {}
            except INPUT_ERRORS:
                return distribution_figure({}), go.Figure()
            return distribution_figure(summary, question_id), segment_figure(segments, question_id)

        def do_export(run_id: str, request: gr.Request) -> tuple[Any, str]:
            owner, admin = account(request)
            try:
                may_see(run_id, owner, admin)
                out = Path(tempfile.mkdtemp(prefix="personagraph-export-"))
                files = export_all(run_id, out)
            except INPUT_ERRORS as exc:
                return None, f"⚠️ {exc}"
            paths = [p for p in files.values() if Path(p).is_file()]
            transcripts = files.get("transcripts_dir")
            if transcripts:
                paths += [str(p) for p in sorted(Path(transcripts).glob("*.md"))]
            return paths, f"Exported {len(paths)} files."

        def do_delete(run_id: str, request: gr.Request) -> tuple[str, Any]:
            owner, admin = account(request)
            if not admin:
                return "⚠️ Only an admin can delete runs.", gr.update()
            try:
                delete_run(run_id)
            except INPUT_ERRORS as exc:
                return f"⚠️ {exc}", gr.update()
            return f"Deleted `{run_id}`.", gr.update(choices=run_choices(owner, admin), value=None)

        def do_validate(run_id: str, path: str | None, request: gr.Request) -> str:
            owner, admin = account(request)
            if not path:
                return "⚠️ answers file: upload the real answers CSV first"
            try:
                may_see(run_id, owner, admin)
                return validation_markdown(validate_run(run_id, Path(path)))
            except INPUT_ERRORS as exc:
                return f"⚠️ {exc}"

        refresh_btn.click(do_refresh, None, [run_pick], api_name="list_runs")
        run_pick.focus(do_refresh, None, [run_pick], api_visibility="private")
        run_pick.input(do_show, [run_pick], [results_md, results_table, question_pick, question_plot],
                       api_name="show_run")  # fmt: skip
        question_pick.input(do_question, [run_pick, question_pick, segment_pick], [question_plot, segment_plot],
                            api_visibility="private")  # fmt: skip
        segment_pick.input(do_question, [run_pick, question_pick, segment_pick], [question_plot, segment_plot],
                           api_visibility="private")  # fmt: skip
        export_btn.click(do_export, [run_pick], [export_files, results_status], api_name="export_run")
        delete_btn.click(do_delete, [run_pick], [results_status, run_pick], api_name="delete_run")
        validate_btn.click(do_validate, [run_pick, answers_file], [validation_md], api_name="validate_run")


def _in_background(
    run: Callable[..., RunSummary], run_id: str, options: BatchOptions
) -> Iterator[tuple[bool, dict[str, Any], dict[str, Any]]]:
    """Run a batch (`run_survey` or `run_interviews`) in a worker thread; about once a second yield
    (still running, the latest progress, the outcome: "summary" or "error"), the last time not running."""
    progress: dict[str, Any] = {}
    outcome: dict[str, Any] = {}

    def on_progress(p: Progress) -> None:
        progress.update(p.as_dict())

    def work() -> None:
        try:
            outcome["summary"] = run(run_id, options, progress=False, on_progress=on_progress)
        except (ModelError, RunError) as exc:
            outcome["error"] = str(exc)

    thread = threading.Thread(target=work, daemon=True, name=f"batch-{run_id}")
    thread.start()
    while thread.is_alive():
        yield True, progress, outcome
        thread.join(timeout=1.0)
    yield False, progress, outcome


def _follow_run(run_id: str, options: BatchOptions) -> Iterator[tuple[str, Any, Any]]:
    """Run a survey in a worker thread; yield progress and the live plots about once a second."""
    started = time.monotonic()
    for alive, progress, outcome in _in_background(run_survey, run_id, options):
        summary = _summary_or_none(run_id)
        done, total = progress.get("done", 0), progress.get("total", "?")
        text = f"Run `{run_id}`: {done}/{total} answers this session · {time.monotonic() - started:.0f} s"
        if summary is not None:
            text += f"\n\n{summary_markdown(summary)}"
        if not alive:
            if "error" in outcome:
                text = f"⚠️ {outcome['error']}\n\nResume with run id `{run_id}`.\n\n" + text
            elif outcome.get("summary") is not None and outcome["summary"].stopped:
                text = f"⚠️ Stopped: {outcome['summary'].stopped}. Resume with run id `{run_id}`.\n\n" + text
            else:
                text = "✅ Done. " + text
        figures = (
            (distribution_figure(summary), means_figure(summary)) if summary else (gr.update(), gr.update())
        )
        yield text, *figures


def _summary_or_none(run_id: str) -> dict[str, Any] | None:
    try:
        with RunStore.open(run_id) as store:
            return summarize(store)
    except Exception:  # the writer holds the database for a moment; the next poll reads it
        return None


__all__ = ["build_twins_tabs"]
