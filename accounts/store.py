"""Accounts in the app's database: roles, bcrypt password hashes, API and sign-in tokens, throttling.

    personagraph accounts add mina --role user      (asks for the password)
    personagraph accounts token mina --name laptop  (prints an API token once)

The database is Postgres when DATABASE_URL is set (every app replica then accepts a sign-in made on
another, and the sign-in throttle counts across replicas), else the SQLite file
`PERSONAGRAPH_HOME/accounts.sqlite`. Timestamps are ISO 8601 text (UTC) in both.

The AUTH_USER_ID/PW and AUTH_ADMIN_ID/PW pairs (environment or `.env`) still add one quick account
each; they live in memory only. Tokens are stored as SHA-256 digests, so a copy of the database
reveals none. With no account at all the app runs open, for one person on 127.0.0.1 (`OPEN_CALLER`).
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import hmac
import math
import re
import secrets
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bcrypt

from personagraph.accounts.identity import (
    OPEN_CALLER,
    ROLES,
    Caller,
    ConflictError,
    NotFoundError,
    NotSignedInError,
    Role,
    TooManyAttemptsError,
)
from personagraph.serving.database import Database, connect
from personagraph.serving.safe_paths import check_id
from personagraph.serving.settings import Settings, get_settings

TOKEN_PREFIX = "pgt_"
# Account ids become parts of store namespaces, which may not contain ".": no dots in account ids.
USER_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_@\-]{0,63}")
USER_ID_RULE = "1-64 characters of letters, digits, _ - @ (not starting with -)"
MIN_PASSWORD_CHARS = 8
SESSION_TOKEN_NAME = "session"  # what sign_in names its tokens
# The longest lifetime a token may be given (ten years); a longer one would overflow the date
# arithmetic, and a token that should not expire is made without `hours`.
MAX_TOKEN_HOURS = 10 * 366 * 24
# The address a sign-in through the app's login form comes from (set by api/limits.py, read by
# `gradio_auth`, whose caller, Gradio, passes only the user id and the password).
sign_in_client: ContextVar[str] = ContextVar("sign_in_client", default="")
_SCHEMA = """
create table if not exists accounts (
    user_id text primary key,
    role text not null,
    password_hash text not null,
    created_at text not null
);
create table if not exists tokens (
    digest text primary key,
    user_id text not null,
    name text not null,
    kind text not null,
    created_at text not null,
    expires_at text
);
create index if not exists tokens_user_id on tokens (user_id)
"""
# Failed sign-ins per (kind, key), e.g. ("user", "mina") or ("client", "203.0.113.9"). `locked_until`
# is a wall-clock time in seconds (the throttle's clock), 0 when not locked.
_THROTTLE_SCHEMA = """
create table if not exists signin_throttle (
    kind text not null,
    key text not null,
    failures integer not null,
    locked_until double precision not null,
    primary key (kind, key)
)
"""


class AccountConfigError(ValueError):
    """Inconsistent AUTH_* settings or a bad account field; the message names the variable or field."""


def _now() -> datetime:
    return datetime.now(UTC)


def _prehash(password: str) -> bytes:
    # bcrypt reads at most 72 bytes: hash first so long (and multi-byte Korean) passwords count whole.
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


def hash_password(password: str, rounds: int = 12) -> str:
    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds)).decode()


def password_matches(password: str, hashed: str) -> bool:
    return bcrypt.checkpw(_prehash(password), hashed.encode())


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _throttle_key(key: str) -> tuple[str, str]:
    """Split "user:mina" into ("user", "mina"); a key without a kind gets the kind ""."""
    kind, sep, rest = key.partition(":")
    return (kind, rest) if sep else ("", key)


@dataclass
class SignInThrottle:
    """After `max_failures` wrong passwords for one account (or from one address), sign-in waits.

    The wait starts at `base_lockout_s` and doubles with each further failure, up to `max_lockout_s`;
    a successful sign-in clears the count. The counts live in a database table (`signin_throttle`),
    so every app replica on one database sees the same counts: the AccountStore binds its throttle
    to its own database; a throttle made alone keeps them in a private in-memory SQLite database.
    Each failure is one atomic increment (`failures = failures + 1 ... RETURNING`), so concurrent
    failures on several replicas are all counted. `clock` is wall-clock time (replicas compare
    `locked_until`), so their clocks should agree (NTP). The numbers come from settings
    (SIGNIN_MAX_FAILURES, SIGNIN_LOCKOUT_S, SIGNIN_MAX_LOCKOUT_S); once more than `max_tracked` keys
    are counted the keys that are not locked are forgotten, so sign-ins with ever new user ids cannot
    grow the table without bound.
    """

    max_failures: int = 5
    base_lockout_s: float = 30.0
    max_lockout_s: float = 900.0
    clock: Callable[[], float] = time.time
    max_tracked: int = 10_000
    database: Database | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.database is not None:
            self.database.executescript(_THROTTLE_SCHEMA)

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, database: Database | None = None
    ) -> SignInThrottle:
        settings = settings or get_settings()
        return cls(
            max_failures=settings.signin_max_failures,
            base_lockout_s=settings.signin_lockout_s,
            max_lockout_s=max(settings.signin_max_lockout_s, settings.signin_lockout_s),
            database=database,
        )

    def bind(self, database: Database) -> None:
        """Keep the counts in `database` (its `signin_throttle` table, created if missing)."""
        database.executescript(_THROTTLE_SCHEMA)
        with self._lock:
            self.database = database

    def _db(self) -> Database:
        with self._lock:
            if self.database is None:
                database = connect(":memory:")
                database.executescript(_THROTTLE_SCHEMA)
                self.database = database
            return self.database

    def check(self, *keys: str) -> None:
        if not keys:
            return
        now = self.clock()
        pairs = [_throttle_key(k) for k in keys]
        where = " or ".join(["(kind = ? and key = ?)"] * len(pairs))
        row = (
            self._db()
            .execute(
                "select max(locked_until) from signin_throttle where " + where,
                [part for pair in pairs for part in pair],
            )
            .fetchone()
        )
        locked_until = float(row[0]) if row is not None and row[0] is not None else 0.0
        wait = locked_until - now
        if wait > 0:
            raise TooManyAttemptsError(
                f"too many failed sign-ins; try again in {int(wait) + 1} s", retry_after_s=int(wait) + 1
            )

    def failed(self, *keys: str) -> None:
        now = self.clock()
        # One transaction; keys in a fixed order, so two concurrent failures never wait on each other
        # in a cycle. The upsert locks the row until commit: concurrent increments queue, none is lost.
        with self._db().transaction() as tx:
            for kind, key in sorted(_throttle_key(k) for k in keys):
                (count,) = tx.execute(
                    "insert into signin_throttle (kind, key, failures, locked_until) values (?, ?, 1, 0) "
                    "on conflict (kind, key) do update set failures = signin_throttle.failures + 1 "
                    "returning failures",
                    (kind, key),
                ).rows[0]
                if int(count) >= self.max_failures:
                    doublings = min(int(count) - self.max_failures, 32)  # 2**32 * any lockout is past the cap
                    until = now + min(self.base_lockout_s * 2**doublings, self.max_lockout_s)
                    tx.execute(
                        "update signin_throttle set locked_until = ? "
                        "where kind = ? and key = ? and locked_until < ?",
                        (until, kind, key, until),
                    )
            (tracked,) = tx.execute("select count(*) from signin_throttle").rows[0]
            if int(tracked) > self.max_tracked:
                tx.execute("delete from signin_throttle where locked_until <= ?", (now,))

    def succeeded(self, *keys: str) -> None:
        with self._db().transaction() as tx:
            for kind, key in sorted(_throttle_key(k) for k in keys):
                tx.execute("delete from signin_throttle where kind = ? and key = ?", (kind, key))

    def tracked(self) -> int:
        """How many keys have a count now (locked or not)."""
        row = self._db().execute("select count(*) from signin_throttle").fetchone()
        return int(row[0]) if row is not None else 0


@dataclass(frozen=True)
class AccountInfo:
    user_id: str
    role: Role
    source: str  # "database" or the environment variable pair
    created_at: str = ""


class AccountStore:
    """Accounts and tokens in the app's database, plus the AUTH_* env pairs.

    The database: `path` (a SQLite file) when given, else DATABASE_URL (Postgres) when set, else
    `PERSONAGRAPH_HOME/accounts.sqlite`. The store keeps no account or token in memory (only the
    AUTH_* pairs, which every replica reads from the same environment), so any number of stores on
    one Postgres, in one process or many, act as one.
    """

    def __init__(
        self,
        path: Path | None = None,
        settings: Settings | None = None,
        throttle: SignInThrottle | None = None,
        bcrypt_rounds: int = 12,
    ):
        self.settings = settings or get_settings()
        target: str | Path
        if path is not None:
            target = path
        elif self.settings.database_url:
            target = self.settings.database_url
        else:
            target = self.settings.accounts_db
        self.path: Path | None = target if isinstance(target, Path) else None  # None on Postgres
        self.database = connect(target)
        self.database.executescript(_SCHEMA)
        if throttle is None:
            throttle = SignInThrottle.from_settings(self.settings, self.database)
        elif throttle.database is None:
            throttle.bind(self.database)
        self.throttle = throttle
        self.bcrypt_rounds = bcrypt_rounds
        self._dummy_hash = hash_password(secrets.token_hex(8), bcrypt_rounds)
        self._env = self._env_accounts(self.settings)
        clash = [u for u in self._env if self._row(u) is not None]
        if clash:
            raise AccountConfigError(
                f"AUTH_*_ID: {clash[0]!r} is also an account in {self.database.describe()}; remove one of them"
            )

    @staticmethod
    def _env_accounts(settings: Settings) -> dict[str, tuple[str, Role]]:
        accounts: dict[str, tuple[str, Role]] = {}
        pairs: tuple[tuple[str, str, str, Role], ...] = (
            ("USER", settings.auth_user_id.strip(), settings.auth_user_pw.get_secret_value(), "user"),
            ("ADMIN", settings.auth_admin_id.strip(), settings.auth_admin_pw.get_secret_value(), "admin"),
        )
        for kind, user, password, role in pairs:
            if user and not password:
                raise AccountConfigError(f"AUTH_{kind}_PW: set a password for AUTH_{kind}_ID={user!r}")
            if password and not user:
                raise AccountConfigError(f"AUTH_{kind}_ID: set a user id for the AUTH_{kind}_PW password")
            if user:
                try:
                    check_id(user, f"AUTH_{kind}_ID", USER_ID, USER_ID_RULE)
                except ValueError as exc:
                    raise AccountConfigError(str(exc)) from exc
                if user in accounts:
                    raise AccountConfigError(f"AUTH_{kind}_ID: {user!r} is already the other account's id")
                accounts[user] = (password, role)
        return accounts

    def _row(self, user_id: str) -> tuple[str, str, str] | None:
        row = self.database.execute(
            "select role, password_hash, created_at from accounts where user_id = ?", (user_id,)
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def close(self) -> None:
        self.database.close()

    # --- accounts ------------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """Sign-in is required once any account exists (database or environment)."""
        if self._env:
            return True
        return self.database.execute("select 1 from accounts limit 1").fetchone() is not None

    def add(self, user_id: str, password: str, role: Role = "user") -> AccountInfo:
        check_id(user_id, "user_id", USER_ID, USER_ID_RULE)
        if role not in ROLES:
            raise AccountConfigError(f"role: {role!r} is not a role; use one of {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD_CHARS:
            raise AccountConfigError(f"password: use at least {MIN_PASSWORD_CHARS} characters")
        if user_id in self._env:
            raise ConflictError(f"user_id: {user_id!r} is an AUTH_* account from the environment")
        created = _now().isoformat(timespec="seconds")
        hashed = hash_password(password, self.bcrypt_rounds)
        # One statement: two replicas adding the same id at once get one account and one ConflictError.
        added = self.database.execute(
            "insert into accounts (user_id, role, password_hash, created_at) values (?, ?, ?, ?) "
            "on conflict (user_id) do nothing",
            (user_id, role, hashed, created),
        ).rowcount
        if not added:
            raise ConflictError(f"user_id: an account {user_id!r} already exists")
        return AccountInfo(user_id, role, "database", created)

    def set_password(self, user_id: str, password: str) -> None:
        if len(password) < MIN_PASSWORD_CHARS:
            raise AccountConfigError(f"password: use at least {MIN_PASSWORD_CHARS} characters")
        hashed = hash_password(password, self.bcrypt_rounds)
        changed = self.database.execute(
            "update accounts set password_hash = ? where user_id = ?", (hashed, user_id)
        ).rowcount
        if not changed:
            raise NotFoundError(f"user_id: no account {user_id!r} in the database")

    def remove(self, user_id: str) -> None:
        """Delete the account and its tokens (what it owns stays, for an admin to review or delete)."""
        with self.database.transaction() as tx:
            if not tx.execute("delete from accounts where user_id = ?", (user_id,)).rowcount:
                raise NotFoundError(f"user_id: no account {user_id!r} in the database")
            tx.execute("delete from tokens where user_id = ?", (user_id,))

    def list(self) -> builtins.list[AccountInfo]:
        rows = self.database.execute("select user_id, role, created_at from accounts").fetchall()
        infos = [AccountInfo(u, "admin" if r == "admin" else "user", "database", c) for u, r, c in rows]
        infos += [
            AccountInfo(u, role, f"AUTH_{'ADMIN' if role == 'admin' else 'USER'}_ID")
            for u, (_, role) in self._env.items()
        ]
        return sorted(infos, key=lambda a: a.user_id)

    def role_of(self, user_id: str) -> Role | None:
        if user_id in self._env:
            return self._env[user_id][1]
        row = self._row(user_id)
        if row is None:
            return None
        return "admin" if row[0] == "admin" else "user"

    def caller(self, user_id: str | None) -> Caller:
        """The Caller for a signed-in user id (Gradio's request.username); open mode: the local person."""
        if not self.enabled:
            return OPEN_CALLER
        role = self.role_of(user_id) if user_id else None
        if user_id is None or role is None:
            raise NotSignedInError("sign in first")
        return Caller(user_id, role)

    # --- sign-in -------------------------------------------------------------------------------

    def verify(self, user_id: str, password: str, client: str = "") -> Caller:
        """The account's Caller if the password is right; throttled per account and per client address."""
        keys = [f"user:{user_id}"] + ([f"client:{client}"] if client else [])
        self.throttle.check(*keys)
        ok = False
        role: Role | None = None
        if user_id in self._env:
            secret, role = self._env[user_id]
            ok = hmac.compare_digest(secret.encode(), password.encode())
        else:
            row = self._row(user_id)
            if row is not None:
                ok = password_matches(password, row[1])
                role = "admin" if row[0] == "admin" else "user"
            else:
                password_matches(password, self._dummy_hash)  # same time for unknown ids: no account probing
        if not ok or role is None:
            self.throttle.failed(*keys)
            raise NotSignedInError("wrong user id or password")
        self.throttle.succeeded(*keys)
        return Caller(user_id, role)

    def gradio_auth(self, user_id: str, password: str) -> bool:
        """Gradio's `auth` callable (its login form): the same check and throttle as the HTTP API,
        per account and per client address (`sign_in_client`, set for the login route)."""
        try:
            self.verify(user_id.strip(), password, sign_in_client.get())
        except (NotSignedInError, TooManyAttemptsError):
            return False
        return True

    # --- tokens --------------------------------------------------------------------------------

    def issue_token(self, user_id: str, name: str = "api", *, hours: float | None = None) -> str:
        """A new token for the account, shown once. `hours` None = an API token that lasts until revoked."""
        if self.role_of(user_id) is None:
            raise NotFoundError(f"user_id: no account {user_id!r}")
        check_id(name, "name")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = _now()
        expires = (now + timedelta(hours=hours)).isoformat(timespec="seconds") if hours else None
        kind = "session" if hours else "api"
        self.database.execute(
            "insert into tokens (digest, user_id, name, kind, created_at, expires_at) values (?, ?, ?, ?, ?, ?)",
            (_digest(token), user_id, name, kind, now.isoformat(timespec="seconds"), expires),
        )
        return token

    def sign_in(self, user_id: str, password: str, client: str = "") -> tuple[Caller, str]:
        """Password -> (Caller, a session token that expires after SESSION_TOKEN_HOURS)."""
        caller = self.verify(user_id, password, client)
        return caller, self.issue_token(user_id, SESSION_TOKEN_NAME, hours=self.settings.session_token_hours)

    def new_api_token(self, user_id: str, name: str, hours: float | None = None) -> str:
        """A new named token for the account (printed or returned once); a name is used once per account."""
        check_id(name, "name")
        if hours is not None and not (math.isfinite(hours) and 0 < hours <= MAX_TOKEN_HOURS):
            raise ValueError(
                f"hours: {hours!r} is not allowed; give 0 < hours <= {MAX_TOKEN_HOURS} (none: until revoked)"
            )
        if name == SESSION_TOKEN_NAME:
            raise ValueError(f"name: {SESSION_TOKEN_NAME!r} is kept for sign-in tokens; choose another name")
        if any(t["name"] == name for t in self.tokens(user_id)):
            raise ConflictError(f"name: a token {name!r} exists; revoke it first or choose another name")
        return self.issue_token(user_id, name, hours=hours)

    def caller_for_token(self, token: str) -> Caller:
        row = self.database.execute(
            "select user_id, expires_at from tokens where digest = ?", (_digest(token),)
        ).fetchone()
        if row is None or (row[1] and row[1] < _now().isoformat(timespec="seconds")):
            raise NotSignedInError("the token is unknown, revoked or expired; sign in again")
        role = self.role_of(row[0])
        if role is None:
            raise NotSignedInError("the token's account no longer exists")
        return Caller(row[0], role)

    def revoke_token(self, token: str) -> None:
        self.database.execute("delete from tokens where digest = ?", (_digest(token),))

    def tokens(self, user_id: str) -> builtins.list[dict[str, str | None]]:
        rows = self.database.execute(
            "select name, kind, created_at, expires_at from tokens where user_id = ? order by created_at, name",
            (user_id,),
        ).fetchall()
        return [{"name": n, "kind": k, "created_at": c, "expires_at": e} for n, k, c, e in rows]

    def revoke_named(self, user_id: str, name: str) -> int:
        return self.database.execute(
            "delete from tokens where user_id = ? and name = ?", (user_id, name)
        ).rowcount


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def check_host(accounts: AccountStore, host: str) -> None:
    """Open mode (no accounts) serves loopback only: nobody else on the network reaches an open app."""
    if not accounts.enabled and host not in LOOPBACK_HOSTS:
        raise AccountConfigError(
            f"--host {host}: without accounts the app serves 127.0.0.1 only; add one with "
            "`personagraph accounts add` (or set AUTH_USER_ID/AUTH_USER_PW) to serve on other addresses"
        )


def open_mode_banner(enabled: bool) -> str:
    if enabled:
        return "Signed in: users see their own chats, runs and cards; admins also see and delete every run."
    return (
        "**Open mode**: no accounts exist, so the app has no sign-in and serves 127.0.0.1 only. "
        "Add accounts with `personagraph accounts add` (or set AUTH_USER_ID/AUTH_USER_PW) to require sign-in."
    )
