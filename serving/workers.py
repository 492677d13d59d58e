"""Who this app process is among the replicas, and whether another process on this machine is gone.

Leases in the database (twin runs, CRM batches) record the worker that holds them: its name
(`worker_id()`: WORKER_ID, or `<hostname>-<pid>`), where its pid means something (`host_key()`: host
name, boot id and pid namespace) and its pid. `process_gone(host, pid)` lets a lease of a killed
process on this machine be taken at once, instead of after the lease expires; across machines or
containers (another host key) it never claims a process is gone.
"""

from __future__ import annotations

import os
import socket
import uuid
from functools import cache
from pathlib import Path

from personagraph.serving.settings import get_settings


def worker_id() -> str:
    """This process's name in leases: WORKER_ID, or `<hostname>-<pid>`."""
    return get_settings().worker_id or f"{socket.gethostname()}-{os.getpid()}"


@cache
def boot_and_namespace() -> str:
    """This machine's boot id and this process's pid namespace (Linux; empty parts elsewhere)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        # Linux without a readable pid namespace: pids cannot be compared with other processes'.
        namespace = f"unknown-{uuid.uuid4().hex}" if Path("/proc").is_dir() else ""
    return f"{boot}/{namespace}"


def host_key() -> str:
    """Where this process's pid means something: host name, boot and pid namespace (Linux)."""
    return f"{socket.gethostname()}/{boot_and_namespace()}"


def process_gone(host: str | None, pid: int | None) -> bool:
    """True only when the pid belongs to this machine's namespace and no process (or a zombie) has it."""
    if not host or not pid or host != host_key() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # exists, another user's
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]
