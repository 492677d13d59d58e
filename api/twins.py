"""Digital twins over HTTP: start a survey or interview run (it runs in the background: 202 and its id),
follow its progress, read its results, download its exports, calibrate it with a pilot's real
answers, cancel or delete it. Runs belong to the account that started them; admins see every run.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile, status
from fastapi.responses import FileResponse

from personagraph.api import twins_runs
from personagraph.api.deps import CallerDep
from personagraph.api.limits import read_upload
from personagraph.api.twins_runs import ExportFormat, RunBody
from personagraph.serving.settings import get_settings

router = APIRouter(prefix="/api/twins", tags=["twins"])
MEDIA_TYPES = {
    "json": "application/json",
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "transcripts": "application/zip",
}


@router.post("/runs", name="twins_start_run", status_code=status.HTTP_202_ACCEPTED)
def start_run(body: RunBody, caller: CallerDep) -> dict[str, Any]:
    """Start a run; follow it with GET /api/twins/runs/{run_id}."""
    return twins_runs.start_run(caller, body)


@router.get("/runs", name="twins_runs")
def runs(caller: CallerDep) -> dict[str, Any]:
    """Your runs (an admin: every run), newest first."""
    return {"runs": twins_runs.list_runs(caller)}


@router.get("/runs/{run_id}", name="twins_run")
def run(run_id: str, caller: CallerDep) -> dict[str, Any]:
    """The run and its progress."""
    return twins_runs.run_progress(caller, run_id)


@router.get("/runs/{run_id}/results", name="twins_results")
def results(run_id: str, caller: CallerDep) -> dict[str, Any]:
    """A survey run's coverage, validity and distributions; an interview run's transcripts."""
    return twins_runs.run_results(caller, run_id)


@router.get("/runs/{run_id}/exports/{fmt}", name="twins_export")
def export(run_id: str, fmt: ExportFormat, caller: CallerDep) -> FileResponse:
    """A file: json, csv or xlsx (surveys), transcripts (interviews, a zip of markdown + JSON)."""
    path = twins_runs.export_file(caller, run_id, fmt)
    return FileResponse(path, media_type=MEDIA_TYPES[fmt], filename=path.name)


@router.post("/runs/{run_id}/calibrate", name="twins_calibrate")
def calibrate(
    run_id: str,
    caller: CallerDep,
    pilot_file: Annotated[
        UploadFile,
        File(
            description="The pilot's real answers: CSV, twin_id + one column per question id; its rows of "
            "the run's respondents are the pilot, other rows are ignored."
        ),
    ],
    policy: Annotated[str, Form(description="The stored answer: mean, median, mode or draw.")] = "mean",
) -> dict[str, Any]:
    """Calibrate a survey run with a pilot (fitted on the pilot's answers only; everyone else of the
    run gets calibrated answers next to the zero-shot ones); replaces an earlier calibration."""
    limit = get_settings().upload_max_bytes
    data = read_upload(pilot_file, limit, f"pilot_file: over {limit:,} bytes (UPLOAD_MAX_BYTES)")
    if not data:
        raise ValueError("pilot_file: the upload is empty; send the pilot's real answers as CSV")
    return twins_runs.calibrate(caller, run_id, data, pilot_file.filename, policy)


@router.post("/runs/{run_id}/cancel", name="twins_cancel")
def cancel(run_id: str, caller: CallerDep) -> dict[str, Any]:
    """Stop a running run after the answers in flight; what is stored stays (resume it later)."""
    return twins_runs.cancel(caller, run_id)


@router.delete("/runs/{run_id}", name="twins_delete")
def delete(run_id: str, caller: CallerDep) -> dict[str, Any]:
    """Delete a run with its answers and transcripts."""
    twins_runs.delete(caller, run_id)
    return {"deleted": run_id}
