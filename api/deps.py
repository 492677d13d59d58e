"""Who is calling (`current_caller`) and the services a route uses, as FastAPI dependencies.

The caller comes only from `Authorization: Bearer <token>` (an API token or a sign-in token of
`POST /api/session`), never from the request body. With no account configured the app is open for
the one local person (`OPEN_CALLER`; the server then listens on 127.0.0.1 only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from personagraph.accounts.identity import OPEN_CALLER, Caller, NotSignedInError
from personagraph.accounts.store import AccountStore
from personagraph.api.errors import ServiceUnavailableError
from personagraph.services.chat import ChatService
from personagraph.services.crm import CrmService
from personagraph.services.insight import InsightService


@dataclass
class Services:
    """What the routes work with; one instance per app, in `app.state.services`."""

    accounts: AccountStore
    chat: ChatService
    insight: InsightService | None = None
    crm: CrmService | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when there is no such header."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        return None
    if scheme.lower() != "bearer" or not token.strip():
        raise NotSignedInError("Authorization: use 'Bearer <token>' (a token from POST /api/session)")
    return token.strip()


def current_caller(request: Request) -> Caller:
    """The caller behind the request: the token's account; open mode (no accounts): the local person."""
    accounts = services(request).accounts
    token = bearer_token(request)
    if token is None:
        if not accounts.enabled:
            return OPEN_CALLER
        raise NotSignedInError("Authorization: sign in first (POST /api/session) and send 'Bearer <token>'")
    if not accounts.enabled:
        return OPEN_CALLER
    return accounts.caller_for_token(token)


def chat_service(request: Request) -> ChatService:
    return services(request).chat


def insight_service(request: Request) -> InsightService:
    found = services(request).insight
    if found is None:
        raise ServiceUnavailableError("insight: customer insight is not configured on this server")
    return found


def crm_service(request: Request) -> CrmService:
    found = services(request).crm
    if found is None:
        raise ServiceUnavailableError("crm: CRM messages are not configured on this server")
    return found


CallerDep = Annotated[Caller, Depends(current_caller)]
ServicesDep = Annotated[Services, Depends(services)]
ChatDep = Annotated[ChatService, Depends(chat_service)]
InsightDep = Annotated[InsightService, Depends(insight_service)]
CrmDep = Annotated[CrmService, Depends(crm_service)]
