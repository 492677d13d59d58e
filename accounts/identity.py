"""Who is asking (`Caller`) and the errors every service raises when the answer is no.

Services take a `Caller` as their first argument and check ownership themselves, so the Gradio
app, the HTTP API and the CLI share one set of rules. The errors carry an HTTP status so every
front end reports them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["user", "admin"]
ROLES: tuple[Role, ...] = ("user", "admin")
LOCAL_USER = "local"


@dataclass(frozen=True)
class Caller:
    """The signed-in account (or token) behind a request.

    `local` marks the operator at this machine's terminal (the CLI): they may name files anywhere
    on disk. Callers from the app or the HTTP API never are `local`: their files stay in their
    upload folder or the shipped data.
    """

    user_id: str
    role: Role = "user"
    local: bool = False

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    def owns(self, owner: str | None) -> bool:
        """The caller's own object (admins do not own other people's objects)."""
        return owner == self.user_id

    def may_manage(self, owner: str | None) -> bool:
        """Read, change or delete an object: its owner, or an admin where the product allows it."""
        return self.owns(owner) or self.admin


# The single person of an app with no accounts (open mode, loopback only), and the CLI operator.
OPEN_CALLER = Caller(LOCAL_USER, "admin")
CLI_CALLER = Caller(LOCAL_USER, "admin", local=True)


class AccessError(Exception):
    """A request refused for who is asking; `status` is the HTTP status every front end reports."""

    status = 403


class NotSignedInError(AccessError):
    status = 401


class ForbiddenError(AccessError):
    status = 403


class NotFoundError(AccessError):
    """Missing, or someone else's: the two look the same so ids cannot be probed."""

    status = 404


class ConflictError(AccessError):
    status = 409


class LimitReachedError(AccessError):
    """Too many of something at once for this account or this server (runs, ...): try again once one
    has finished. The message names the limit's setting."""

    status = 429


class TooManyAttemptsError(AccessError):
    status = 429

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s
