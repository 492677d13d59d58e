"""Sign-in for the app, with credentials from the environment.

    AUTH_USER_ID / AUTH_USER_PW      a user: sees and runs their own survey and interview runs
    AUTH_ADMIN_ID / AUTH_ADMIN_PW    an admin: sees and deletes every run

With none of them set the app runs open, for one local person, and only on a loopback address
(127.0.0.1): nobody else on the network can reach an app without sign-in. A half-configured
account (an id without a password, or the reverse) is an error that names the missing variable.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LOCAL_USER = "local"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class AuthConfigError(ValueError):
    """The AUTH_* environment variables are inconsistent; the message names the variable."""


@dataclass(frozen=True)
class Account:
    user_id: str
    admin: bool


@dataclass(frozen=True)
class AuthConfig:
    """The accounts allowed to sign in (empty = open mode, loopback only)."""

    accounts: Mapping[str, tuple[str, bool]]  # user id -> (password, is admin)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AuthConfig:
        env = os.environ if env is None else env
        accounts: dict[str, tuple[str, bool]] = {}
        for kind, admin in (("USER", False), ("ADMIN", True)):
            user, password = env.get(f"AUTH_{kind}_ID", "").strip(), env.get(f"AUTH_{kind}_PW", "")
            if user and not password:
                raise AuthConfigError(f"AUTH_{kind}_PW: set a password for AUTH_{kind}_ID={user!r}")
            if password and not user:
                raise AuthConfigError(f"AUTH_{kind}_ID: set a user id for the AUTH_{kind}_PW password")
            if user:
                if user in accounts:
                    raise AuthConfigError(f"AUTH_{kind}_ID: {user!r} is already the other account's id")
                accounts[user] = (password, admin)
        return cls(accounts=accounts)

    @property
    def enabled(self) -> bool:
        return bool(self.accounts)

    def check(self, user_id: str, password: str) -> bool:
        """Gradio's `auth` callable: constant-time password comparison."""
        known = self.accounts.get(user_id)
        return known is not None and hmac.compare_digest(known[0].encode(), password.encode())

    def account(self, user_id: str | None) -> Account:
        """The signed-in account; in open mode, the single local person (who may manage every run)."""
        if not self.enabled:
            return Account(LOCAL_USER, admin=True)
        if not user_id or user_id not in self.accounts:
            raise PermissionError("sign in first")
        return Account(user_id, admin=self.accounts[user_id][1])

    def check_host(self, host: str) -> None:
        """Open mode serves loopback only."""
        if not self.enabled and host not in LOOPBACK_HOSTS:
            raise AuthConfigError(
                f"--host {host}: without sign-in the app serves 127.0.0.1 only; set AUTH_USER_ID/AUTH_USER_PW "
                "(and/or AUTH_ADMIN_ID/AUTH_ADMIN_PW) to serve on other addresses"
            )

    def banner(self) -> str:
        if self.enabled:
            return "Signed-in mode: users see their own runs; admins see and delete all. [Log out](/logout)"
        return (
            "**Open mode**: no AUTH_* credentials are set, so the app has no sign-in and serves 127.0.0.1 only. "
            "Set AUTH_USER_ID/AUTH_USER_PW and AUTH_ADMIN_ID/AUTH_ADMIN_PW to require sign-in."
        )


def current_account(config: AuthConfig, request: Any) -> Account:
    """The account behind a Gradio request (`gr.Request`, or None outside a request)."""
    return config.account(getattr(request, "username", None) if request is not None else None)
