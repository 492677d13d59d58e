"""A folder whose disk can be filled and freed again, for the disk-full fault test.

The folder is a small tmpfs: `fill(room)` writes a filler file that leaves only `room` bytes free
and `free()` deletes it. Mounting needs root (this machine, CI containers run as root). Elsewhere
`rerun_in_namespace` runs the test again in a child process under `unshare -rm` (a user and mount
namespace where the test user is root and may mount a tmpfs); only where that is refused too is the
test skipped, with the reason. RLIMIT_FSIZE was tried as a fallback and is not one: SQLite reports
a write past the limit as "disk I/O error", not as a full disk, so it tests something else.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

INNER = "PERSONAGRAPH_FAULTS_IN_NAMESPACE"  # set in the child that `rerun_in_namespace` starts


class MountRefusedError(RuntimeError):
    """This process may not mount a tmpfs (not root)."""


@dataclass
class SmallDisk:
    path: Path
    _filler: Path | None = None

    def fill(self, room: int) -> None:
        """Leave about `room` bytes for new data from now on."""
        stat = os.statvfs(self.path)
        free = stat.f_bavail * stat.f_frsize
        self._filler = self.path / "filler.bin"
        with self._filler.open("wb") as handle:
            handle.write(b"\0" * max(0, free - room))

    def free(self) -> None:
        """Give the space back (the user deleted something)."""
        if self._filler is not None:
            self._filler.unlink(missing_ok=True)
            self._filler = None


@contextmanager
def small_disk(path: Path, size: str = "8m") -> Iterator[SmallDisk]:
    """`path` on a tmpfs of `size`, unmounted after; MountRefusedError when mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise MountRefusedError(f"mount -t tmpfs refused: {result.stderr.strip()}")
    disk = SmallDisk(path)
    try:
        yield disk
    finally:
        disk.free()
        with suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False, timeout=30)


def rerun_in_namespace(node_id: str, cwd: Path) -> subprocess.CompletedProcess[str] | None:
    """Run one test again in a child pytest under `unshare -rm`; None when that is not possible here."""
    unshare = shutil.which("unshare")
    if os.environ.get(INNER) or unshare is None:
        return None
    if subprocess.run([unshare, "-rm", "true"], capture_output=True, check=False).returncode != 0:
        return None
    command = [unshare, "-rm", sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", node_id]
    return subprocess.run(
        command, cwd=cwd, env={**os.environ, INNER: "1"}, capture_output=True, text=True, timeout=600,
        check=False,
    )  # fmt: skip
