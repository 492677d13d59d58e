"""Sign-in and tokens: `POST /api/session` trades a password for a sign-in token (throttled per account
and per client address); API tokens are named, listed and revoked by their own account.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, ConfigDict, Field

from personagraph.accounts.identity import ForbiddenError, NotFoundError, NotSignedInError
from personagraph.accounts.store import MAX_TOKEN_HOURS
from personagraph.api.deps import CallerDep, ServicesDep, bearer_token
from personagraph.serving.safe_paths import check_id

router = APIRouter(tags=["session"])


class SignInBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class TokenBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(default="api", description="A name for the token, to list and revoke it by.")
    hours: float | None = Field(
        default=None,
        gt=0,
        le=MAX_TOKEN_HOURS,
        allow_inf_nan=False,
        description="Lifetime; none = until revoked.",
    )


@router.post("/api/session", name="session_sign_in", status_code=status.HTTP_201_CREATED)
def sign_in(body: SignInBody, request: Request, svc: ServicesDep) -> dict[str, Any]:
    """Sign in with an account's password; the token in the answer goes in `Authorization: Bearer`."""
    if not svc.accounts.enabled:
        raise ForbiddenError("user_id: the app has no accounts (open mode); no sign-in is needed")
    client = request.client.host if request.client else ""
    caller, token = svc.accounts.sign_in(body.user_id.strip(), body.password, client=client)
    return {
        "token": token,
        "token_type": "bearer",
        "user_id": caller.user_id,
        "role": caller.role,
        "expires_in_s": int(svc.accounts.settings.session_token_hours * 3600),
    }


@router.delete("/api/session", name="session_sign_out")
def sign_out(request: Request, caller: CallerDep, svc: ServicesDep) -> dict[str, Any]:
    """Revoke the token this request presents (sign out)."""
    token = bearer_token(request)
    if token is None:
        raise NotSignedInError("Authorization: send the token to revoke as 'Bearer <token>'")
    svc.accounts.revoke_token(token)
    return {"revoked": True, "user_id": caller.user_id}


@router.get("/api/me", name="session_me")
def me(caller: CallerDep, svc: ServicesDep) -> dict[str, Any]:
    """The signed-in account (in open mode: the local person)."""
    return {"user_id": caller.user_id, "role": caller.role, "accounts": svc.accounts.enabled}


def _account_of(caller: CallerDep, svc: ServicesDep) -> str:
    if not svc.accounts.enabled or svc.accounts.role_of(caller.user_id) is None:
        raise ForbiddenError(
            "tokens: the app has no accounts (open mode); add one with `personagraph accounts add`"
        )
    return caller.user_id


@router.post("/api/tokens", name="tokens_create", status_code=status.HTTP_201_CREATED)
def create_token(body: TokenBody, caller: CallerDep, svc: ServicesDep) -> dict[str, Any]:
    """A new API token for your own account; it is shown only in this answer."""
    user_id = _account_of(caller, svc)
    token = svc.accounts.new_api_token(user_id, body.name, body.hours)
    return {"token": token, "token_type": "bearer", "name": body.name, "user_id": user_id}


@router.get("/api/tokens", name="tokens_list")
def list_tokens(caller: CallerDep, svc: ServicesDep) -> dict[str, Any]:
    """Your tokens (names and dates, never the tokens themselves)."""
    return {"tokens": svc.accounts.tokens(_account_of(caller, svc))}


@router.delete("/api/tokens/{name}", name="tokens_revoke")
def revoke_token(name: str, caller: CallerDep, svc: ServicesDep) -> dict[str, Any]:
    """Revoke your tokens with this name."""
    user_id = _account_of(caller, svc)
    check_id(name, "name")
    if not svc.accounts.revoke_named(user_id, name):
        raise NotFoundError(f"name: you have no token {name!r}")
    return {"revoked": name}
