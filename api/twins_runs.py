"""The one place the HTTP API meets the digital-twin services (services/twins): starting a survey or
interview run in the background, its progress, results, exports, calibration with a pilot, cancel
and delete, for a caller.

The routes (api/twins.py) call only these functions, so a change of the twin services' names
touches this module alone. Ownership is the services' (a run is its creator's; admins see all).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from personagraph.accounts.identity import Caller
from personagraph.api.errors import split_field
from personagraph.services.twins.analysis import summarize
from personagraph.services.twins.calibration import calibrate_run
from personagraph.services.twins.executor import BatchOptions
from personagraph.services.twins.exports import export_all
from personagraph.services.twins.runs import start_interview_run, start_survey_run
from personagraph.services.twins.selections import parse_selection, save_upload
from personagraph.services.twins.store import cancel_run, delete_run, open_run, run_info, visible_runs
from personagraph.serving.safe_paths import check_id, child_path
from personagraph.serving.settings import get_settings
from personagraph.twins.guides import GuideError, InterviewGuide, guide_from_data, load_guide
from personagraph.twins.respondents import RespondentError
from personagraph.twins.surveys import Survey, SurveyError, load_survey, survey_from_data

ExportFormat = Literal["json", "csv", "xlsx", "transcripts"]
EXPORT_KEYS = {"json": "json", "csv": "csv", "xlsx": "excel"}


class RunBody(BaseModel):
    """A new run: what it asks (a shipped template or your own survey/guide as JSON) and who answers."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["survey", "interview"]
    template: str | None = Field(
        default=None, description="A shipped survey (data/surveys, e.g. tam_en) or guide (data/interviews)."
    )
    survey: dict[str, Any] | None = Field(
        default=None, description="Your survey (native or Twin-2K-500 JSON)."
    )
    guide: dict[str, Any] | None = Field(default=None, description="Your interview guide (JSON).")
    select: list[str] = Field(
        min_length=1, max_length=20, description="Selection specs as for `--select`, e.g. ['random:5:1']."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Batch options (mode, concurrency, rate_per_s, ...)."
    )
    run_id: str | None = Field(default=None, description="An id of your choice (default: generated).")


def _options(raw: dict[str, Any]) -> BatchOptions:
    try:
        return BatchOptions.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in ("options", *err["loc"]))
        raise ValueError(f"{where}: {str(err['msg']).removeprefix('Value error, ')}") from None


def _template_path(kind: str, name: str) -> Path:
    """A shipped template by name (data/surveys/NAME.yaml or data/interviews/NAME.yaml)."""
    folder = get_settings().data_dir / ("surveys" if kind == "survey" else "interviews")
    check_id(name, "template")
    for suffix in (".yaml", ".yml", ".json"):
        path = child_path(folder, name + suffix)
        if path.is_file():
            return path
    known = (
        sorted(p.stem for p in folder.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
        if folder.is_dir()
        else []
    )
    raise ValueError(f"template: no {kind} template {name!r}; shipped: {', '.join(known) or 'none'}")


def _survey(body: RunBody) -> Survey:
    if (body.survey is None) == (body.template is None):
        raise ValueError("survey: give either `template` or `survey`")
    if body.template is not None:
        return load_survey(_template_path("survey", body.template))
    return survey_from_data(body.survey)


def _guide(body: RunBody) -> InterviewGuide:
    if (body.guide is None) == (body.template is None):
        raise ValueError("guide: give either `template` or `guide`")
    if body.template is not None:
        return load_guide(_template_path("interview", body.template))
    return guide_from_data(body.guide)


_E = TypeVar("_E", SurveyError, GuideError, RespondentError)


def _named(field: str, exc: _E) -> _E:
    """The error with the body field in front when its message names none the API can read (the
    twins' messages say "question 'q1' field 'type': ..." or "--select: ..."), so the 400 names it."""
    message = str(exc)
    if message.startswith("--select"):
        return type(exc)(f"{field}: {message.removeprefix('--select').lstrip(': ')}")
    return exc if split_field(message)[0] is not None else type(exc)(f"{field}: {message}")


def start_run(caller: Caller, body: RunBody) -> dict[str, Any]:
    """Create the run now (a bad field is an error now), start it in the background, return its info."""
    options = _options(body.options)
    try:
        selection = parse_selection(caller, body.select)
    except RespondentError as exc:
        raise _named("select", exc) from exc
    if body.kind == "survey":
        try:
            survey = _survey(body)
        except SurveyError as exc:
            raise _named("survey", exc) from exc
        run_id = start_survey_run(caller, survey, selection, options, run_id=body.run_id)
    else:
        try:
            guide = _guide(body)
        except GuideError as exc:
            raise _named("guide", exc) from exc
        run_id = start_interview_run(caller, guide, selection, options, run_id=body.run_id)
    return run_info(caller, run_id)


def list_runs(caller: Caller) -> list[dict[str, Any]]:
    """The caller's runs (an admin: every run), newest first."""
    return visible_runs(caller)


def run_progress(caller: Caller, run_id: str) -> dict[str, Any]:
    """What the run is, its state (created, running, done, stopped, cancelled, failed) and progress."""
    return run_info(caller, run_id)


def run_results(caller: Caller, run_id: str) -> dict[str, Any]:
    """Coverage, validity and distributions of a survey run; an interview run's transcripts."""
    if run_info(caller, run_id)["kind"] == "survey":
        return {"run_id": run_id, "kind": "survey", "summary": summarize(caller, run_id)}
    with open_run(caller, run_id, "interview") as store:
        return {"run_id": run_id, "kind": "interview", "transcripts": store.transcripts()}


def export_file(caller: Caller, run_id: str, fmt: ExportFormat) -> Path:
    """The export file (in the caller's exports folder): json, csv or xlsx of a survey run; json or
    transcripts (a zip of markdown + JSON per person) of an interview run."""
    files = export_all(caller, run_id)
    if fmt == "transcripts":
        if "transcripts_dir" not in files:
            raise ValueError(f"fmt: 'transcripts' is an export of interview runs; {run_id!r} is a survey run")
        folder = Path(files["transcripts_dir"])
        return Path(shutil.make_archive(str(folder), "zip", folder))
    if EXPORT_KEYS[fmt] not in files:
        raise ValueError(f"fmt: {fmt!r} is an export of survey runs; {run_id!r} is an interview run")
    return Path(files[EXPORT_KEYS[fmt]])


def calibrate(caller: Caller, run_id: str, data: bytes, filename: str | None, policy: str) -> dict[str, Any]:
    """Calibrate a survey run with an uploaded pilot CSV (kept in the caller's upload folder, as the
    app keeps its uploads); returns the calibration summary."""
    run_info(caller, run_id)  # someone else's run: 404 before anything is written
    with tempfile.TemporaryDirectory(prefix="pilot-") as folder:
        received = Path(folder) / "pilot.csv"
        received.write_bytes(data)
        saved = save_upload(caller, received, name=filename or "pilot.csv", field="pilot_file")
    return calibrate_run(caller, run_id, saved, policy)


def cancel(caller: Caller, run_id: str) -> dict[str, Any]:
    """Ask the run to stop after the calls in flight (what is stored stays; resume it later)."""
    return cancel_run(caller, run_id)


def delete(caller: Caller, run_id: str) -> None:
    """Delete a run (its owner or an admin); a running run is refused (cancel it first)."""
    delete_run(caller, run_id)
