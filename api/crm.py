"""CRM messages over HTTP: one request, or a batch of rows (each row as in `personagraph crm --batch_json`).

Values may be indices or names, as on the command line; the service validates them and names the
field and the allowed values when one is wrong (400).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from personagraph.api.deps import CallerDep, CrmDep
from personagraph.services.crm import check_row_count

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

    def raw(self) -> dict[str, Any]:
        data = self.model_dump()
        data["is_event"] = int(data["is_event"])
        return data


class CrmBatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rows: list[dict[str, Any]] = Field(min_length=1, description="At most CRM_BATCH_MAX_ROWS rows.")


@router.post("/messages", name="crm_message")
def message(body: CrmMessageBody, caller: CallerDep, crm: CrmDep) -> dict[str, Any]:
    """One checked marketing message (status passed | failed | error, the message, evidence, checks)."""
    return crm.run(caller, body.raw())


@router.post("/batch", name="crm_batch")
def batch(body: CrmBatchBody, caller: CallerDep, crm: CrmDep) -> dict[str, Any]:
    """Every row in order; a bad row gets status `invalid` with its field, the others still run.
    More than CRM_BATCH_MAX_ROWS rows: 400 naming `rows`, before any row runs."""
    check_row_count(len(body.rows))
    return {"results": crm.run_batch(caller, body.rows)}
