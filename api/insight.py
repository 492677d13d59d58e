"""Customer insight over HTTP: questions (with follow-ups in a thread of yours), segment figures, and
ingesting an order (admins only: orders are the shop's shared data).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, status
from pydantic import BaseModel, ConfigDict, Field

from personagraph.api.deps import CallerDep, InsightDep

router = APIRouter(prefix="/api/insight", tags=["insight"])


class AskBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(description="In Korean or English, e.g. 'VIP 고객은 어떤 특징이 있어?'")
    thread_id: str | None = Field(default=None, description="A follow-up in this thread of yours.")
    router_mode: str = Field(default="hybrid", description="hybrid, model or keywords")


@router.post("/ask", name="insight_ask")
def ask(body: AskBody, caller: CallerDep, insight: InsightDep) -> dict[str, Any]:
    """An answer from the asked segment's figures only (every number in it is checked)."""
    answer = insight.ask(caller, body.question, thread_id=body.thread_id, router_mode=body.router_mode)
    return answer.as_dict()


@router.get("/threads", name="insight_threads")
def threads(caller: CallerDep, insight: InsightDep) -> dict[str, Any]:
    """Your question threads, newest first."""
    return {"threads": insight.threads(caller)}


@router.get("/threads/{thread_id}", name="insight_thread")
def thread(thread_id: str, caller: CallerDep, insight: InsightDep) -> dict[str, Any]:
    """One of your threads: its questions and answers, oldest first."""
    return {"thread_id": thread_id, "turns": insight.thread(caller, thread_id)}


@router.get("/segments", name="insight_segments")
def segments(caller: CallerDep, insight: InsightDep) -> dict[str, Any]:
    """Live segment sizes and figures."""
    return insight.segment_stats(caller)


@router.get("/status", name="insight_status")
def status_(caller: CallerDep, insight: InsightDep) -> dict[str, Any]:
    """Where the data comes from (no credentials), live orders applied, and the live consumers: each
    one's state, restarts and last error (short), and the entries dead-lettered so far."""
    return insight.status(caller)


@router.post("/orders", name="insight_order", status_code=status.HTTP_202_ACCEPTED)
def ingest_order(
    order: Annotated[dict[str, Any], Body(description="One order (JSON).")],
    caller: CallerDep,
    insight: InsightDep,
) -> dict[str, Any]:
    """Publish one order to the live stream (admins only; needs the live state in Redis)."""
    return insight.ingest_order(caller, order)
