"""Digital twins over HTTP: start a survey or interview run (it runs in the background: 202 and its id),
follow its progress, read its results, download its exports, cancel or delete it. Runs belong to
the account that started them; admins see every run.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status
from fastapi.responses import FileResponse

from personagraph.api import twins_runs
from personagraph.api.deps import CallerDep
from personagraph.api.twins_runs import ExportFormat, RunBody

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


@router.post("/runs/{run_id}/cancel", name="twins_cancel")
def cancel(run_id: str, caller: CallerDep) -> dict[str, Any]:
    """Stop a running run after the answers in flight; what is stored stays (resume it later)."""
    return twins_runs.cancel(caller, run_id)


@router.delete("/runs/{run_id}", name="twins_delete")
def delete(run_id: str, caller: CallerDep) -> dict[str, Any]:
    """Delete a run with its answers and transcripts."""
    twins_runs.delete(caller, run_id)
    return {"deleted": run_id}
