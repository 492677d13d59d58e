"""Liveness (`/health`: the process answers) and readiness (`/ready`: the model server and the stores
answer). Both need no sign-in, so they say only ok or failing; the server log has the reasons.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from personagraph.accounts.store import AccountStore
from personagraph.api.deps import ServicesDep
from personagraph.services.chat import ChatService
from personagraph.serving.models import api_key_of, endpoint_of

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])
ReadyCheck = Callable[[], object]  # raises when its part is not ready
READY_CHECKS_KEY = "ready_checks"


def model_server_check(timeout_s: float = 3.0) -> None:
    """The chat role's model server lists its models (the embedded server is already started)."""
    base_url, _ = endpoint_of("chat")
    key = api_key_of("chat")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    httpx.get(f"{base_url.rstrip('/')}/models", headers=headers, timeout=timeout_s).raise_for_status()


def default_checks(accounts: AccountStore, chat: ChatService) -> dict[str, ReadyCheck]:
    return {
        "model": model_server_check,
        "accounts": lambda: accounts.enabled,
        "memory_store": lambda: chat.store.search(("__ready__",), limit=1),
        "checkpointer": lambda: chat.checkpointer.get_tuple({"configurable": {"thread_id": "__ready__"}}),
    }


def run_checks(checks: Mapping[str, ReadyCheck]) -> dict[str, str]:
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            log.warning("readiness check %s failed: %s: %s", name, type(exc).__name__, exc)
            results[name] = "failing"
    return results


@router.get("/health", name="health")
def health() -> dict[str, Any]:
    """The server process is up."""
    return {"status": "ok"}


@router.get("/ready", name="ready")
def ready(svc: ServicesDep) -> JSONResponse:
    """Ready to serve: every check passes (200); else 503 with the failing parts."""
    checks: Mapping[str, ReadyCheck] = svc.extras.get(READY_CHECKS_KEY) or default_checks(
        svc.accounts, svc.chat
    )
    results = run_checks(checks)
    if all(v == "ok" for v in results.values()):
        return JSONResponse({"status": "ready", "checks": results})
    failing = ", ".join(k for k, v in results.items() if v != "ok")
    body = {"error": {"status": 503, "field": None, "reason": f"not ready: {failing}"}, "checks": results}
    return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})
