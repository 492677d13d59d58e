"""Accounts on a real Postgres (DATABASE_URL): several AccountStores (as several app replicas) act as one.

An account added on one signs in on another, a session token issued by one is accepted and revoked
on the others, wrong passwords count across all of them (the lockout comes after SIGNIN_MAX_FAILURES
in total), concurrent failures are all counted, and the tables hold token digests, never a token.
The Postgres server is shared by the test session: each test uses its own user ids and addresses and
deletes their rows at the end.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator

import pytest

from personagraph.accounts.identity import Caller, ConflictError, NotSignedInError, TooManyAttemptsError
from personagraph.accounts.store import AccountStore, SignInThrottle
from personagraph.serving.database import connect
from personagraph.serving.postgres_server import LocalPostgres
from personagraph.serving.settings import Settings, get_settings

pytestmark = pytest.mark.integration
PASSWORD = "replica password 한글"
MAX_FAILURES = 3


@pytest.fixture
def database_url(postgres_server: LocalPostgres, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name in ("AUTH_USER_ID", "AUTH_USER_PW", "AUTH_ADMIN_ID", "AUTH_ADMIN_PW"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", postgres_server.url)
    monkeypatch.setenv("SIGNIN_MAX_FAILURES", str(MAX_FAILURES))
    get_settings.cache_clear()
    yield postgres_server.url
    get_settings.cache_clear()


@pytest.fixture
def ids(database_url: str) -> Iterator[list[str]]:
    """Unique names for this test (user ids, addresses); their rows are deleted afterwards."""
    names: list[str] = []
    yield names
    db = connect(database_url)
    with db.transaction() as tx:
        for name in names:
            tx.execute("delete from tokens where user_id = ?", (name,))
            tx.execute("delete from accounts where user_id = ?", (name,))
            tx.execute("delete from signin_throttle where key = ?", (name,))


def unique(ids: list[str], prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    ids.append(name)
    return name


def replicas(count: int = 2) -> list[AccountStore]:
    return [AccountStore(bcrypt_rounds=4) for _ in range(count)]


def test_the_stores_use_postgres(database_url: str) -> None:
    one, _ = replicas()
    assert one.database.dialect == "postgres" and one.path is None
    assert "Postgres" in one.database.describe() and database_url not in one.database.describe()


def test_an_account_added_on_one_replica_signs_in_on_another(ids: list[str]) -> None:
    one, two = replicas()
    user = unique(ids, "mina")
    one.add(user, PASSWORD, role="admin")
    assert two.enabled and two.role_of(user) == "admin"
    assert two.verify(user, PASSWORD) == Caller(user, "admin")
    assert user in [a.user_id for a in two.list()]
    with pytest.raises(ConflictError, match="already exists"):
        two.add(user, PASSWORD)
    two.set_password(user, "a new password")
    assert one.gradio_auth(user, "a new password") and not one.gradio_auth(user, PASSWORD)
    one.remove(user)
    assert two.role_of(user) is None


def test_two_replicas_adding_one_id_at_once_make_one_account(ids: list[str]) -> None:
    stores = replicas(4)
    user = unique(ids, "race")
    outcomes: list[str] = []
    lock = threading.Lock()

    def add(store: AccountStore) -> None:
        try:
            store.add(user, PASSWORD)
            outcome = "added"
        except ConflictError:
            outcome = "conflict"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=add, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["added", "conflict", "conflict", "conflict"]


def test_a_session_from_one_replica_is_valid_and_revoked_on_all(ids: list[str]) -> None:
    one, two, three = replicas(3)
    user = unique(ids, "joon")
    one.add(user, PASSWORD)
    caller, session = one.sign_in(user, PASSWORD, client="198.51.100.1")
    assert caller == Caller(user, "user")
    assert two.caller_for_token(session) == caller and three.caller_for_token(session) == caller
    api_token = three.issue_token(user, "laptop")
    assert one.caller_for_token(api_token) == caller
    assert sorted(t["name"] or "" for t in one.tokens(user)) == ["laptop", "session"]

    two.revoke_token(session)  # signed out on one replica: signed out everywhere
    for store in (one, two, three):
        with pytest.raises(NotSignedInError):
            store.caller_for_token(session)
    assert one.revoke_named(user, "laptop") == 1
    with pytest.raises(NotSignedInError):
        two.caller_for_token(api_token)


def test_a_session_from_another_process_is_accepted(ids: list[str], database_url: str) -> None:
    store = AccountStore(bcrypt_rounds=4)
    user = unique(ids, "proc")
    store.add(user, PASSWORD)
    script = (
        "import sys\n"
        "from personagraph.accounts.store import AccountStore\n"
        "caller, token = AccountStore(bcrypt_rounds=4).sign_in(sys.argv[1], sys.stdin.read())\n"
        "print(token)\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script, user],
        input=PASSWORD, capture_output=True, text=True, timeout=120, check=True,
        env={**os.environ, "DATABASE_URL": database_url},
    )  # fmt: skip
    token = child.stdout.strip().splitlines()[-1]
    assert token.startswith("pgt_")
    assert store.caller_for_token(token) == Caller(user, "user")


def test_wrong_passwords_count_across_replicas(ids: list[str]) -> None:
    one, two = replicas()
    user = unique(ids, "lock")
    address = unique(ids, "addr")
    one.add(user, PASSWORD)
    with pytest.raises(NotSignedInError):
        one.verify(user, "wrong password")
    with pytest.raises(NotSignedInError):
        two.verify(user, "wrong password")
    assert two.verify(user, PASSWORD).user_id == user  # under the limit; a success clears the count
    for store in (one, two, one):  # MAX_FAILURES in total, spread over the replicas
        with pytest.raises(NotSignedInError):
            store.verify(user, "wrong password", client=address)
    for store in (one, two):
        with pytest.raises(TooManyAttemptsError) as locked:
            store.verify(user, PASSWORD)  # even the right password waits, on every replica
        assert locked.value.retry_after_s > 0
        with pytest.raises(TooManyAttemptsError):  # the address too, for any account
            store.verify(unique(ids, "other"), "whatever", client=address)
        assert not store.gradio_auth(user, PASSWORD)


def test_concurrent_failures_on_replicas_are_all_counted(ids: list[str], database_url: str) -> None:
    throttles = [
        SignInThrottle(max_failures=1000, database=connect(database_url)),
        SignInThrottle(max_failures=1000, database=connect(database_url)),
    ]
    user = unique(ids, "burst")
    per_thread = 5

    def fail(throttle: SignInThrottle) -> None:
        for _ in range(per_thread):
            throttle.failed(f"user:{user}")

    threads = [threading.Thread(target=fail, args=(throttle,)) for throttle in throttles for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    row = (
        connect(database_url)
        .execute("select failures from signin_throttle where kind = ? and key = ?", ("user", user))
        .fetchone()
    )
    assert row == (len(threads) * per_thread,)


def test_the_tables_hold_digests_never_tokens(ids: list[str], database_url: str) -> None:
    store = AccountStore(bcrypt_rounds=4)
    user = unique(ids, "digest")
    store.add(user, PASSWORD)
    _, session = store.sign_in(user, PASSWORD)
    api_token = store.issue_token(user, "ci")
    db = connect(database_url)
    rows = db.execute("select * from tokens where user_id = ?", (user,)).fetchall()
    stored = " ".join(str(value) for row in rows for value in row)
    assert len(rows) == 2 and session not in stored and api_token not in stored
    assert {row[0] for row in rows} == {hashlib.sha256(t.encode()).hexdigest() for t in (session, api_token)}
    accounts = " ".join(
        str(v) for v in db.execute("select * from accounts where user_id = ?", (user,)).rows[0]
    )
    assert PASSWORD not in accounts and "$2b$04$" in accounts


def test_replicas_starting_together_create_the_tables_once(database_url: str) -> None:
    schema = "accounts_" + uuid.uuid4().hex[:10]
    connect(database_url).execute(f"create schema {schema}")
    url = f"{database_url}?options=-csearch_path%3D{schema}"
    errors: list[BaseException] = []
    stores: list[AccountStore] = []

    def start() -> None:
        try:
            stores.append(AccountStore(settings=Settings(database_url=url), bcrypt_rounds=4))
        except Exception as exc:  # reported below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=start) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors and len(stores) == 6
        stores[0].add("first", PASSWORD)
        assert stores[5].verify("first", PASSWORD).user_id == "first"
        tables = connect(url).execute(
            "select table_name from information_schema.tables where table_schema = ? order by table_name",
            (schema,),
        )
        assert tables.fetchall() == [("accounts",), ("signin_throttle",), ("tokens",)]
    finally:
        connect(database_url).execute(f"drop schema {schema} cascade")
