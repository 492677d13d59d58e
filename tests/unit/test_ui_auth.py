"""Sign-in from AUTH_* variables: accounts, roles, open mode on loopback only, clear config errors."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from personagraph.ui.auth import LOCAL_USER, AuthConfig, AuthConfigError, current_account

BOTH = {"AUTH_USER_ID": "mina", "AUTH_USER_PW": "pw-1", "AUTH_ADMIN_ID": "boss", "AUTH_ADMIN_PW": "pw-2"}


def test_accounts_and_roles_come_from_the_environment() -> None:
    auth = AuthConfig.from_env(BOTH)
    assert auth.enabled
    assert auth.check("mina", "pw-1") and auth.check("boss", "pw-2")
    assert not auth.check("mina", "pw-2") and not auth.check("nobody", "pw-1") and not auth.check("mina", "")
    assert auth.account("mina").admin is False
    assert auth.account("boss").admin is True
    with pytest.raises(PermissionError):
        auth.account(None)
    assert current_account(auth, SimpleNamespace(username="boss")).user_id == "boss"


def test_open_mode_is_one_local_admin_on_loopback_only() -> None:
    auth = AuthConfig.from_env({})
    assert not auth.enabled
    assert auth.account(None).user_id == LOCAL_USER and auth.account(None).admin
    auth.check_host("127.0.0.1")
    with pytest.raises(AuthConfigError, match="--host 0.0.0.0"):
        auth.check_host("0.0.0.0")
    assert "Open mode" in auth.banner() and "127.0.0.1" in auth.banner()
    AuthConfig.from_env(BOTH).check_host("0.0.0.0")  # with sign-in any address is allowed


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"AUTH_USER_ID": "mina"}, "AUTH_USER_PW"),
        ({"AUTH_ADMIN_PW": "x"}, "AUTH_ADMIN_ID"),
        ({**BOTH, "AUTH_ADMIN_ID": "mina"}, "AUTH_ADMIN_ID"),
    ],
)
def test_half_configured_accounts_name_the_variable(env: dict[str, str], field: str) -> None:
    with pytest.raises(AuthConfigError, match=field):
        AuthConfig.from_env(env)
