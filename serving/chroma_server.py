"""A local Chroma server (`chroma run`, installed with chromadb) on a loopback port.

Used by the test fixtures and by `personagraph stack up`, like the local Redis and Postgres:

    with LocalChroma() as chroma:
        os.environ["CHROMA_URL"] = chroma.url

The server listens on 127.0.0.1 only and has no authentication (Chroma's own server has none
configured here): loopback keeps it to this machine's users. Throwaway (temporary data, removed on
stop) unless `path` is given.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import httpx

from personagraph.serving.processes import ServiceError, ServiceProcess, free_port


class LocalChromaError(ServiceError):
    pass


def chroma_binary() -> Path:
    """The `chroma` command of this environment (beside the Python that runs us), else on PATH."""
    found = shutil.which("chroma", path=str(Path(sys.executable).parent)) or shutil.which("chroma")
    if found is None:
        raise LocalChromaError("the `chroma` command is missing; it installs with chromadb (make setup)")
    return Path(found)


class LocalChroma:
    """A Chroma server on a free (or the given) loopback port, its data in `path` or a temporary folder."""

    def __init__(self, port: int | None = None, path: Path | None = None):
        self.port = port or free_port()
        self.path = path
        self.service: ServiceProcess | None = None
        self._tmp: Path | None = None

    def __repr__(self) -> str:
        return f"LocalChroma(port={self.port})"

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT (no secret in it)."""
        return f"http://127.0.0.1:{self.port}"

    def describe(self) -> str:
        return f"{self.url} (loopback only)"

    def heartbeat(self, timeout_s: float = 2.0) -> bool:
        try:
            return httpx.get(f"{self.url}/api/v2/heartbeat", timeout=timeout_s).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self, timeout_s: float = 60.0) -> LocalChroma:
        if self.path is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="personagraph-chroma-"))
            data = self._tmp
        else:
            data = self.path
            data.mkdir(parents=True, exist_ok=True)
        command = [
            str(chroma_binary()), "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(self.port),
        ]  # fmt: skip
        self.service = ServiceProcess(
            "chroma", command, error=LocalChromaError, env={"ANONYMIZED_TELEMETRY": "False"}
        )
        try:
            self.service.start(self.heartbeat, timeout_s, poll_s=0.1)
        except BaseException:
            self.stop()  # removes the temporary data folder
            raise
        return self

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
            self.service = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> LocalChroma:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
