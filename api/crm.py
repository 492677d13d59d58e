"""CRM messages over HTTP: one request, or a batch of rows (each row as in `personagraph crm --batch_json`).

Values may be indices or names, as on the command line; the service validates them and names the
field and the allowed values when one is wrong (400).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile, status
from pydantic import BaseModel, ConfigDict, Field

from personagraph.accounts.identity import ForbiddenError
from personagraph.api.deps import CallerDep, CrmDep
from personagraph.api.limits import read_upload
from personagraph.crm.catalog import list_catalogs
from personagraph.services import crm_jobs
from personagraph.services.crm import check_row_count
from personagraph.serving.settings import get_settings

router = APIRouter(prefix="/api/crm", tags=["crm"])


class CrmMessageBody(BaseModel):
    """One message request; see `personagraph crm --list` for the brands, products and names."""

    model_config = ConfigDict(extra="forbid")
    persona: int | str = Field(description="0-4 or a name, e.g. 'Budget Seeker'")
    brand: str
    product: str
    stage_index: int | str = Field(description="0-4 (AARRR) or a stage name")
    style_index: int | str = Field(description="0-5 or a style name")
    is_event: int | bool = 0
    channel: str = "sms"
    top_k: int = 3
    lang: str = "ko"
    catalog: str = Field(default="", description="an imported catalog's name ('' = the shipped one)")
    variants: int = Field(default=1, description="1-5 candidates, checked and ranked; the best first")

    def raw(self) -> dict[str, Any]:
        data = self.model_dump(exclude={"variants"})
        data["is_event"] = int(data["is_event"])
        return data


class CrmBatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rows: list[dict[str, Any]] = Field(min_length=1, description="At most CRM_BATCH_MAX_ROWS rows.")


@router.post("/messages", name="crm_message")
def message(body: CrmMessageBody, caller: CallerDep, crm: CrmDep) -> dict[str, Any]:
    """One checked marketing message (status passed | failed | error, the message, evidence, checks);
    with `variants` > 1, the best candidate with every candidate under `variants`."""
    if body.variants != 1:
        return crm.run_variants(caller, body.raw(), body.variants)
    return crm.run(caller, body.raw())


@router.post("/batch", name="crm_batch")
def batch(body: CrmBatchBody, caller: CallerDep, crm: CrmDep) -> dict[str, Any]:
    """Every row in order; a bad row gets status `invalid` with its field, the others still run.
    More than CRM_BATCH_MAX_ROWS rows: 400 naming `rows`, before any row runs."""
    check_row_count(len(body.rows))
    return {"results": crm.run_batch(caller, body.rows)}


@router.post("/batches", name="crm_batch_start", status_code=status.HTTP_202_ACCEPTED)
def batch_start(body: CrmBatchBody, caller: CallerDep, crm: CrmDep) -> dict[str, Any]:
    """Start a batch in the background (claimed by one app process; another resumes it if that one
    dies); follow it with GET /api/crm/batches/{batch_id}. More than CRM_BATCH_MAX_ROWS rows: 400
    naming `rows`; as many batches running as RUNS_MAX_ACTIVE_PER_ACCOUNT: 429."""
    return {"batch_id": crm_jobs.start_batch(caller, crm, body.rows)}


@router.get("/batches/{batch_id}", name="crm_batch_info")
def batch_info(batch_id: str, caller: CallerDep) -> dict[str, Any]:
    """The batch's state (created | running | done | cancelled | failed), done/total, the worker and
    the results so far in row order (each as in POST /api/crm/batch)."""
    return crm_jobs.batch_info(caller, batch_id)


@router.post("/batches/{batch_id}/cancel", name="crm_batch_cancel")
def batch_cancel(batch_id: str, caller: CallerDep) -> dict[str, Any]:
    """Stop the batch before its next row; the stored results stay. A finished batch: 409."""
    return crm_jobs.cancel_batch(caller, batch_id)


CatalogFile = Annotated[
    UploadFile | None, File(description="A .csv or .xlsx file (templates: data/crm/templates/).")
]


@router.get("/catalogs", name="crm_catalogs")
def catalogs(caller: CallerDep) -> dict[str, Any]:
    """The catalogs a request may name: "default" (the shipped one) and every imported one."""
    return {"catalogs": ["default", *list_catalogs()]}


@router.post("/catalogs", name="crm_catalog_import", status_code=status.HTTP_201_CREATED)
def import_catalog(
    caller: CallerDep,
    crm: CrmDep,
    catalog: Annotated[str | None, Form(description="The catalog's name: 1-40 of a-z, 0-9, _ and -.")] = None,
    products: CatalogFile = None,
    brands: CatalogFile = None,
    reviews: CatalogFile = None,
    promotions: CatalogFile = None,
) -> dict[str, Any]:
    """Import a shop's catalog (or add rows to one by id) from CSV or Excel files, as `personagraph
    crm import-catalog` does; admins only (a catalog is the shop's, used by every account). Every
    problem is named by file, row and column (400, nothing written); the counts per table otherwise."""
    if not caller.admin:  # before reading the uploads
        raise ForbiddenError("catalog: only an admin may import a catalog")
    if not catalog:
        raise ValueError("catalog: required; name the catalog (1-40 of a-z, 0-9, _ and -)")
    uploads = {"products": products, "brands": brands, "reviews": reviews, "promotions": promotions}
    limit = get_settings().upload_max_bytes
    with tempfile.TemporaryDirectory(prefix="catalog-") as folder:
        paths: dict[str, str | Path | None] = {}
        for kind, upload in uploads.items():
            if upload is None:
                continue
            suffix = Path(upload.filename or "").suffix.lower()
            if suffix not in (".csv", ".xlsx"):
                raise ValueError(
                    f"{kind}: a .csv or .xlsx file; got {upload.filename or 'a file without a name'!r}"
                )
            data = read_upload(upload, limit, f"{kind}: over {limit:,} bytes (UPLOAD_MAX_BYTES)")
            path = Path(folder) / f"{kind}{suffix}"  # our name: the importer names files in its errors
            path.write_bytes(data)
            paths[kind] = path
        return crm.import_catalog(caller, catalog, paths, upload_roots=[Path(folder)])
