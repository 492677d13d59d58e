"""serving.processes: a local service starts, reports failures with its log, and never outlives its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from personagraph.serving.processes import ServiceError, ServiceProcess

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")

# A stand-in service: writes its pid to a file, then sleeps until it is stopped.
SERVICE = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(600)"


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def service_command(pid_file: Path) -> list[str]:
    return [sys.executable, "-c", SERVICE, str(pid_file)]


def test_start_waits_until_ready_and_stop_ends_the_service(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    service = ServiceProcess("sleeper", service_command(pid_file))
    service.start(pid_file.exists, timeout_s=30)
    pid = int(pid_file.read_text())
    assert service.running and alive(pid)
    log = service.log_path
    service.stop()
    assert wait_gone(pid, 2.0), "the service ends with stop()"
    assert not service.running and log is not None and not log.exists()


def test_a_service_that_exits_reports_its_log(tmp_path: Path) -> None:
    service = ServiceProcess("broken", [sys.executable, "-c", "print('bad flag --x'); raise SystemExit(3)"])
    with pytest.raises(ServiceError, match=r"broken exited with code 3:\n.*bad flag --x"):
        service.start(lambda: False, timeout_s=30)
    assert not service.running


def test_a_service_that_never_gets_ready_is_stopped(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    service = ServiceProcess("slow", service_command(pid_file))
    with pytest.raises(ServiceError, match="slow not ready after 1s"):
        service.start(lambda: False, timeout_s=1)
    if pid_file.exists():
        assert wait_gone(int(pid_file.read_text()))


def test_a_service_started_from_a_finished_thread_keeps_running(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG on the service itself would kill it when the starting thread ends."""
    pid_file = tmp_path / "pid"
    service = ServiceProcess("sleeper", service_command(pid_file))
    starter = threading.Thread(target=service.start, args=(pid_file.exists, 30))
    starter.start()
    starter.join()
    time.sleep(0.5)
    try:
        assert alive(int(pid_file.read_text()))
    finally:
        service.stop()


PARENT = textwrap.dedent(
    """
    import sys, time
    from personagraph.serving.processes import ServiceProcess
    pid_file = sys.argv[1]
    command = [sys.executable, "-c", {service!r}, pid_file]
    ServiceProcess("sleeper", command).start(lambda: __import__("os").path.exists(pid_file), 30)
    print("started", flush=True)
    time.sleep(600)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_the_service_dies_with_its_parent(tmp_path: Path, sig: signal.Signals) -> None:
    """No atexit runs on SIGTERM (Python's default action) or SIGKILL: the supervisor still stops it."""
    pid_file = tmp_path / "pid"
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT.format(service=SERVICE), str(pid_file)], stdout=subprocess.PIPE
    )
    try:
        assert parent.stdout is not None and parent.stdout.readline() == b"started\n"
        pid = int(pid_file.read_text())
        assert alive(pid)
        os.kill(parent.pid, sig)
        parent.wait(timeout=10)
        assert wait_gone(pid), f"service {pid} outlived its parent ({sig.name})"
    finally:
        if parent.poll() is None:
            parent.kill()
