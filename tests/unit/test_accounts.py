"""AccountStore: accounts with bcrypt hashes, sign-in throttling, tokens, the AUTH_* pairs (.env too),
the host rule of open mode, and the `personagraph accounts` command."""

from __future__ import annotations

import hashlib
import io
import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from personagraph.accounts import store as store_module
from personagraph.accounts.identity import (
    OPEN_CALLER,
    Caller,
    ConflictError,
    NotFoundError,
    NotSignedInError,
    TooManyAttemptsError,
)
from personagraph.accounts.store import (
    AccountConfigError,
    AccountStore,
    SignInThrottle,
    check_host,
)
from personagraph.serving.settings import Settings

PASSWORD = "correct horse 말 battery"


@pytest.fixture(autouse=True)
def no_auth_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AUTH_USER_ID", "AUTH_USER_PW", "AUTH_ADMIN_ID", "AUTH_ADMIN_PW"):
        monkeypatch.delenv(name, raising=False)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_store(tmp_path: Path, settings: Settings | None = None, clock: Clock | None = None) -> AccountStore:
    throttle = SignInThrottle(max_failures=3, base_lockout_s=30, clock=clock or Clock())
    return AccountStore(tmp_path / "accounts.sqlite", settings=settings or Settings(), throttle=throttle,
                        bcrypt_rounds=4)  # fmt: skip


def test_add_list_remove_and_roles(tmp_path: Path) -> None:
    accounts = make_store(tmp_path)
    assert not accounts.enabled and accounts.caller(None) == OPEN_CALLER
    accounts.add("mina", PASSWORD)
    accounts.add("boss", PASSWORD, role="admin")
    assert accounts.enabled
    assert [(a.user_id, a.role, a.source) for a in accounts.list()] == [
        ("boss", "admin", "database"),
        ("mina", "user", "database"),
    ]
    assert accounts.caller("mina") == Caller("mina", "user") and accounts.caller("boss").admin
    with pytest.raises(NotSignedInError):
        accounts.caller(None)
    with pytest.raises(ConflictError, match="already exists"):
        accounts.add("mina", PASSWORD)
    with pytest.raises(AccountConfigError, match="^password:"):
        accounts.add("short", "1234567")
    with pytest.raises(AccountConfigError, match="^role:"):
        accounts.add("odd", PASSWORD, role="root")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^user_id:"):
        accounts.add("../etc", PASSWORD)
    accounts.remove("mina")
    assert [a.user_id for a in accounts.list()] == ["boss"]
    with pytest.raises(NotFoundError):
        accounts.remove("mina")


def test_only_a_bcrypt_hash_is_stored(tmp_path: Path) -> None:
    accounts = make_store(tmp_path)
    accounts.add("mina", PASSWORD)
    accounts.close()
    raw = (tmp_path / "accounts.sqlite").read_bytes()
    assert PASSWORD.encode() not in raw
    (hashed,) = (
        sqlite3.connect(tmp_path / "accounts.sqlite").execute("select password_hash from accounts").fetchone()
    )
    assert hashed.startswith("$2b$04$")


def test_password_check_and_change(tmp_path: Path) -> None:
    accounts = make_store(tmp_path)
    accounts.add("mina", PASSWORD)
    assert accounts.verify("mina", PASSWORD) == Caller("mina", "user")
    with pytest.raises(NotSignedInError):
        accounts.verify("mina", PASSWORD + "x")
    with pytest.raises(NotSignedInError):
        accounts.verify("nobody", PASSWORD)
    assert accounts.gradio_auth(" mina ", PASSWORD) and not accounts.gradio_auth("mina", "nope")
    accounts.set_password("mina", "a new password")
    assert accounts.gradio_auth("mina", "a new password") and not accounts.gradio_auth("mina", PASSWORD)


def test_throttle_locks_after_failures_and_resets_on_success(tmp_path: Path) -> None:
    clock = Clock()
    accounts = make_store(tmp_path, clock=clock)
    accounts.add("mina", PASSWORD)
    for _ in range(3):
        with pytest.raises(NotSignedInError):
            accounts.verify("mina", "wrong password", client="10.0.0.7")
    with pytest.raises(TooManyAttemptsError) as locked:
        accounts.verify("mina", PASSWORD, client="10.0.0.8")  # even the right password waits
    assert locked.value.status == 429 and locked.value.retry_after_s == 31
    with pytest.raises(TooManyAttemptsError):  # the address is locked too, for any account
        accounts.verify("other", "whatever", client="10.0.0.7")
    assert not accounts.gradio_auth("mina", PASSWORD)
    clock.now += 31
    assert accounts.verify("mina", PASSWORD, client="10.0.0.8") == Caller("mina", "user")
    # The success cleared the account's count: the next failure does not lock it again at once.
    with pytest.raises(NotSignedInError):
        accounts.verify("mina", "wrong password")
    assert accounts.verify("mina", PASSWORD).user_id == "mina"


def test_throttle_lockout_doubles() -> None:
    clock = Clock()
    throttle = SignInThrottle(max_failures=2, base_lockout_s=10, max_lockout_s=25, clock=clock)
    for expected_wait in (10, 20, 25):
        throttle.failed("user:a")
        if expected_wait == 10:
            throttle.failed("user:a")
        with pytest.raises(TooManyAttemptsError) as locked:
            throttle.check("user:a")
        assert locked.value.retry_after_s == expected_wait + 1
    throttle.succeeded("user:a")
    throttle.check("user:a")


def test_tokens_issue_resolve_revoke_and_expire(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    accounts = make_store(tmp_path)
    accounts.add("mina", PASSWORD, role="admin")
    token = accounts.issue_token("mina", "laptop")
    assert token.startswith("pgt_") and accounts.caller_for_token(token) == Caller("mina", "admin")
    assert token.encode() not in (tmp_path / "accounts.sqlite").read_bytes()  # only its digest is stored
    assert [t["name"] for t in accounts.tokens("mina")] == ["laptop"]
    with pytest.raises(NotFoundError):
        accounts.issue_token("nobody")
    with pytest.raises(NotSignedInError):
        accounts.caller_for_token("pgt_made-up")

    caller, session = accounts.sign_in("mina", PASSWORD)
    assert caller.user_id == "mina" and accounts.caller_for_token(session).user_id == "mina"
    later = store_module._now() + timedelta(hours=Settings().session_token_hours, minutes=1)
    monkeypatch.setattr(store_module, "_now", lambda: later)
    with pytest.raises(NotSignedInError, match="expired"):
        accounts.caller_for_token(session)
    assert accounts.caller_for_token(token).user_id == "mina"  # an API token lasts until revoked

    assert accounts.revoke_named("mina", "laptop") == 1
    with pytest.raises(NotSignedInError):
        accounts.caller_for_token(token)
    other = accounts.issue_token("mina", "ci")
    accounts.remove("mina")  # removing an account removes its tokens
    with pytest.raises(NotSignedInError):
        accounts.caller_for_token(other)


def test_env_pairs_from_settings_and_dotenv(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "AUTH_USER_ID=fan1\nAUTH_USER_PW=fan-password\nAUTH_ADMIN_ID=boss\nAUTH_ADMIN_PW=boss-password\n"
    )
    accounts = make_store(tmp_path, Settings(_env_file=env_file))  # type: ignore[call-arg]
    assert accounts.enabled
    assert {(a.user_id, a.role, a.source) for a in accounts.list()} == {
        ("fan1", "user", "AUTH_USER_ID"),
        ("boss", "admin", "AUTH_ADMIN_ID"),
    }
    assert accounts.verify("fan1", "fan-password") == Caller("fan1", "user")
    assert accounts.verify("boss", "boss-password").admin
    with pytest.raises(NotSignedInError):
        accounts.verify("fan1", "boss-password")
    with pytest.raises(ConflictError):
        accounts.add("fan1", PASSWORD)
    token = accounts.issue_token("fan1", "script")
    assert accounts.caller_for_token(token) == Caller("fan1", "user")


def test_an_env_account_may_not_shadow_a_database_account(tmp_path: Path) -> None:
    make_store(tmp_path).add("mina", PASSWORD)
    with pytest.raises(AccountConfigError, match="AUTH_"):
        make_store(tmp_path, Settings(auth_user_id="mina", auth_user_pw="x-password"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"auth_user_id": "fan1"}, "AUTH_USER_PW"),
        ({"auth_user_pw": "a-password"}, "AUTH_USER_ID"),
        ({"auth_admin_id": "boss"}, "AUTH_ADMIN_PW"),
        ({"auth_admin_pw": "a-password"}, "AUTH_ADMIN_ID"),
        ({"auth_user_id": "bad id!", "auth_user_pw": "a-password"}, "AUTH_USER_ID"),
    ],
)
def test_a_half_configured_pair_names_the_variable(
    tmp_path: Path, fields: dict[str, str], named: str
) -> None:
    with pytest.raises(AccountConfigError, match=f"^{named}:"):
        make_store(tmp_path, Settings(**fields))  # type: ignore[arg-type]


def test_half_configured_pair_in_dotenv_is_not_ignored(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("AUTH_ADMIN_ID=boss\n")
    with pytest.raises(AccountConfigError, match="^AUTH_ADMIN_PW:"):
        make_store(tmp_path, Settings(_env_file=env_file))  # type: ignore[call-arg]


def test_open_mode_serves_loopback_only(tmp_path: Path) -> None:
    accounts = make_store(tmp_path)
    for host in ("127.0.0.1", "localhost", "::1"):
        check_host(accounts, host)
    with pytest.raises(AccountConfigError, match="^--host 0.0.0.0"):
        check_host(accounts, "0.0.0.0")
    accounts.add("mina", PASSWORD)
    check_host(accounts, "0.0.0.0")


# --- the `personagraph accounts` command ------------------------------------------------------------


def run_cli(monkeypatch: pytest.MonkeyPatch, args: list[str], stdin: str = "") -> int:
    from personagraph.cli.main import main

    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(["accounts", *args])


@pytest.fixture
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command hashes at the real cost; the tests at a cheap one."""
    original = store_module.hash_password
    monkeypatch.setattr(store_module, "hash_password", lambda password, rounds=12: original(password, 4))


@pytest.mark.usefixtures("cheap_hashes")
def test_accounts_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(monkeypatch, ["add", "mina", "--password-stdin"], PASSWORD + "\n") == 0
    assert run_cli(monkeypatch, ["add", "boss", "--role", "admin", "--password-stdin"], PASSWORD + "\n") == 0
    assert run_cli(monkeypatch, ["add", "mina", "--password-stdin"], PASSWORD + "\n") == 1  # exists
    assert run_cli(monkeypatch, ["add", "kim", "--password-stdin"], "short\n") == 2
    capsys.readouterr()
    assert run_cli(monkeypatch, ["list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[:3] for line in listed] == [
        ["boss", "admin", "database"],
        ["mina", "user", "database"],
    ]

    assert run_cli(monkeypatch, ["token", "mina", "--name", "laptop"]) == 0
    token = capsys.readouterr().out.strip()
    accounts = AccountStore(bcrypt_rounds=4)
    assert accounts.caller_for_token(token) == Caller("mina", "user")
    assert run_cli(monkeypatch, ["token", "mina", "--name", "laptop"]) == 1  # the name is taken
    assert run_cli(monkeypatch, ["revoke", "mina", "laptop"]) == 0
    assert run_cli(monkeypatch, ["revoke", "mina", "laptop"]) == 1
    with pytest.raises(NotSignedInError):
        accounts.caller_for_token(token)

    assert run_cli(monkeypatch, ["passwd", "mina", "--password-stdin"], "another password\n") == 0
    assert accounts.verify("mina", "another password").user_id == "mina"
    assert run_cli(monkeypatch, ["passwd", "nobody", "--password-stdin"], "another password\n") == 1
    assert run_cli(monkeypatch, ["remove", "mina"]) == 0
    assert run_cli(monkeypatch, ["remove", "mina"]) == 1
    assert [a.user_id for a in accounts.list()] == ["boss"]


@pytest.mark.usefixtures("cheap_hashes")
def test_accounts_add_asks_twice(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    answers = iter([PASSWORD, PASSWORD + "typo"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert run_cli(monkeypatch, ["add", "mina"]) == 2
    assert "differ" in capsys.readouterr().err
    answers = iter([PASSWORD, PASSWORD])
    assert run_cli(monkeypatch, ["add", "mina"]) == 0


# --- the database: counts and tokens shared by every store on it ------------------------------------


def test_stores_on_one_database_share_the_throttle(tmp_path: Path) -> None:
    clock = Clock()
    one, two = make_store(tmp_path, clock=clock), make_store(tmp_path, clock=clock)
    one.add("mina", PASSWORD)
    for store in (one, two, one):  # three failures in total, over two stores (two processes or replicas)
        with pytest.raises(NotSignedInError):
            store.verify("mina", "wrong password")
    for store in (one, two):
        with pytest.raises(TooManyAttemptsError):
            store.verify("mina", PASSWORD)
    clock.now += 31
    assert two.verify("mina", PASSWORD).user_id == "mina"
    assert one.throttle.tracked() == 0  # the success cleared the count for both


def test_concurrent_failures_are_all_counted(tmp_path: Path) -> None:
    throttle = SignInThrottle(max_failures=1000)
    AccountStore(tmp_path / "accounts.sqlite", throttle=throttle, bcrypt_rounds=4)

    def fail_20_times() -> None:
        for _ in range(20):
            throttle.failed("user:a", "client:10.0.0.1")

    threads = [threading.Thread(target=fail_20_times) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows = sqlite3.connect(tmp_path / "accounts.sqlite").execute(
        "select kind, key, failures from signin_throttle order by kind"
    )
    assert rows.fetchall() == [("client", "10.0.0.1", 160), ("user", "a", 160)]


def test_a_throttle_made_alone_keeps_its_counts_to_itself() -> None:
    one, two = SignInThrottle(max_failures=1), SignInThrottle(max_failures=1)
    one.failed("user:a")
    with pytest.raises(TooManyAttemptsError):
        one.check("user:a")
    two.check("user:a")
    assert (one.tracked(), two.tracked()) == (1, 0)


def test_the_store_binds_a_throttle_without_a_database(tmp_path: Path) -> None:
    accounts = make_store(tmp_path)
    assert accounts.throttle.database is accounts.database
    settings_throttle = AccountStore(tmp_path / "other.sqlite", bcrypt_rounds=4).throttle
    assert settings_throttle.database is not None and settings_throttle.max_failures == 5


def test_database_url_chooses_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from personagraph.serving.settings import get_settings

    monkeypatch.delenv("DATABASE_URL", raising=False)
    get_settings.cache_clear()
    assert AccountStore(bcrypt_rounds=4).path == get_settings().accounts_db  # unset: the SQLite file
    monkeypatch.setenv("DATABASE_URL", "mysql://db.example/personagraph")
    get_settings.cache_clear()
    with pytest.raises(ValueError, match="DATABASE_URL"):
        AccountStore(bcrypt_rounds=4)
    explicit = AccountStore(tmp_path / "explicit.sqlite", bcrypt_rounds=4)  # a path given wins
    assert explicit.database.dialect == "sqlite" and explicit.path == tmp_path / "explicit.sqlite"


def test_tokens_are_stored_as_digests(tmp_path: Path) -> None:
    accounts = make_store(tmp_path)
    accounts.add("mina", PASSWORD)
    token = accounts.issue_token("mina", "laptop")
    rows = sqlite3.connect(tmp_path / "accounts.sqlite").execute("select * from tokens").fetchall()
    assert len(rows) == 1 and token not in " ".join(str(v) for v in rows[0])
    assert rows[0][0] == hashlib.sha256(token.encode()).hexdigest()


def test_a_database_from_before_keeps_working(tmp_path: Path) -> None:
    """An accounts.sqlite made by the earlier version (no throttle table, no index) opens as it is."""
    old = sqlite3.connect(tmp_path / "accounts.sqlite")
    old.executescript(
        "create table accounts (user_id text primary key, role text not null, password_hash text not null,"
        " created_at text not null);"
        "create table tokens (digest text primary key, user_id text not null, name text not null,"
        " kind text not null, created_at text not null, expires_at text);"
    )
    old.execute(
        "insert into accounts values (?, ?, ?, ?)",
        ("mina", "admin", store_module.hash_password(PASSWORD, 4), "2025-01-01T00:00:00+00:00"),
    )
    old.commit()
    old.close()
    accounts = make_store(tmp_path)
    assert accounts.verify("mina", PASSWORD) == Caller("mina", "admin")
    assert accounts.caller_for_token(accounts.issue_token("mina", "laptop")).user_id == "mina"
