"""Who is signed in to the Gradio app: every event handler takes its Caller from the request.

Handlers never read a user id from a form field. With accounts, Gradio's login form signs people
in (the same check and throttle as the HTTP API) and `request.username` names the account; with no
account at all, the app is open for the one local person (`OPEN_CALLER`, loopback only).
"""

from __future__ import annotations

from typing import Any

from personagraph.accounts.identity import Caller
from personagraph.accounts.store import AccountStore, open_mode_banner


def caller_of(accounts: AccountStore, request: Any) -> Caller:
    """The Caller behind a Gradio request (`gr.Request`, or None outside a request)."""
    return accounts.caller(getattr(request, "username", None) if request is not None else None)


def who_is_signed_in(accounts: AccountStore, request: Any) -> str:
    """The Markdown line at the top of the app: the account and role, or the open-mode notice."""
    if not accounts.enabled:
        return open_mode_banner(False)
    caller = caller_of(accounts, request)
    return f"Signed in as **{caller.user_id}** ({caller.role}). [Log out](/logout) · " + open_mode_banner(
        True
    )
