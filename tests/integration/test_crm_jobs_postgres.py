"""CRM batches in a real Postgres (DATABASE_URL): one worker claims a batch with a lease, a second
cannot while the lease is live, takes it over when the first dies, and runs only the rows that have
no stored result, so every row is stored once. The two workers are names in one process (a worker
"dies" by stopping its heartbeat without releasing); no test asserts a timing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from personagraph.accounts.identity import Caller, ConflictError, NotFoundError
from personagraph.services import crm_jobs
from personagraph.services.crm_jobs import (
    batch_info,
    cancel_batch,
    claim_batch,
    create_batch,
    jobs_db,
    release_batch,
    resume_orphaned_batches,
    start_batch,
    start_batch_in_background,
)
from personagraph.serving.database import connect
from personagraph.serving.postgres_server import LocalPostgres
from personagraph.serving.settings import REPO_ROOT, get_settings
from tests.unit.test_crm_jobs import (
    DEADLINE_S,
    FakeCrm,
    kill_a_worker_mid_batch,
    rows,
    state,
    stored_counts,
    wait_until,
)

pytestmark = pytest.mark.integration

BOSS = Caller("boss", "admin")


@pytest.fixture
def postgres_jobs(postgres_server: LocalPostgres, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Batches in the session's Postgres, with leases of a second."""
    monkeypatch.setenv("DATABASE_URL", postgres_server.url)
    monkeypatch.setenv("RUNS_LEASE_S", "1")
    get_settings.cache_clear()
    yield postgres_server.url
    get_settings.cache_clear()


def owner() -> Caller:
    """An account of this test alone (the database outlives each test)."""
    return Caller(f"alice-{uuid.uuid4().hex[:8]}")


def test_batches_live_in_postgres_and_only_their_owner_sees_them(postgres_jobs: str) -> None:
    alice = owner()
    batch_id = start_batch(alice, FakeCrm(fail=(1,)), rows(3))
    wait_until(lambda: state(alice, batch_id) == "done", "the batch is done")
    info = batch_info(alice, batch_id)
    assert info["done"] == info["total"] == 3 and [r["status"] for r in info["results"]] == [
        "passed",
        "error",
        "passed",
    ]
    counted = connect(postgres_jobs).execute(
        "SELECT COUNT(*) FROM crm_batch_results WHERE batch_id = ?", (batch_id,)
    )
    assert counted.fetchone() == (3,)
    assert not (get_settings().personagraph_home / "crm" / "jobs.sqlite").exists()
    assert batch_info(BOSS, batch_id)["state"] == "done"
    with pytest.raises(NotFoundError):
        batch_info(Caller("bob"), batch_id)


def test_a_dead_workers_batch_is_taken_over_and_every_row_stored_once(postgres_jobs: str) -> None:
    alice = owner()
    batch_id = create_batch(alice, rows(6))
    lease = claim_batch(batch_id, "worker-a")
    # While A's lease is live, B may not claim it, and nothing resumes it.
    with pytest.raises(ConflictError, match="worker worker-a"):
        start_batch_in_background(alice, FakeCrm(), batch_id, worker="worker-b")
    assert batch_id not in resume_orphaned_batches(FakeCrm(), worker="worker-b")
    info = batch_info(alice, batch_id)
    assert (info["active"], info["worker"], info["state"]) == (True, "worker-a", "running")
    worker_a = FakeCrm()
    for index in (0, 1, 2):  # A stores three rows, then dies
        result = crm_jobs.run_row(worker_a, alice, {"n": index}, index + 1)
        assert crm_jobs._store_result(lease, index, result)
    lease.stop()
    worker_b = FakeCrm()
    wait_until(
        lambda: batch_id in resume_orphaned_batches(worker_b, worker="worker-b"),
        "A's lease expired and B resumed the batch",
    )
    wait_until(lambda: state(alice, batch_id) == "done", "B finished the batch")
    info = batch_info(alice, batch_id)
    assert (info["done"], info["total"], info["worker"], info["active"]) == (6, 6, "worker-b", False)
    assert sorted(worker_b.calls) == [3, 4, 5]
    assert stored_counts(batch_id) == {i: 1 for i in range(6)}
    assert [r["row"] for r in info["results"]] == [1, 2, 3, 4, 5, 6]
    assert batch_id not in resume_orphaned_batches(FakeCrm(), worker="worker-c")


def test_two_workers_claiming_at_once_one_wins(postgres_jobs: str) -> None:
    batch_id = create_batch(owner(), rows(1))
    won: list[str] = []
    lost: list[str] = []
    start = threading.Barrier(2)

    def claim(worker: str) -> None:
        start.wait(DEADLINE_S)
        try:
            lease = claim_batch(batch_id, worker)
        except ConflictError:
            lost.append(worker)
            return
        won.append(worker)
        release_batch(lease, "done")

    threads = [threading.Thread(target=claim, args=(w,)) for w in ("worker-a", "worker-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE_S)
    assert len(won) == 1 and len(lost) == 1
    found = jobs_db().execute("SELECT worker, state FROM crm_batches WHERE batch_id = ?", (batch_id,))
    assert found.fetchone() == (won[0], "done")


def test_a_cancel_sent_anywhere_stops_the_batch_between_rows(postgres_jobs: str) -> None:
    alice = owner()
    crm = FakeCrm(block=(1,))
    batch_id = create_batch(alice, rows(4))
    start_batch_in_background(alice, crm, batch_id, worker="worker-a")
    assert crm.entered.wait(DEADLINE_S)
    assert cancel_batch(BOSS, batch_id)["cancel_requested"]  # another replica's request: a flag in the row
    crm.gate.set()
    wait_until(lambda: state(alice, batch_id) == "cancelled", "A stopped the batch")
    info = batch_info(alice, batch_id)
    assert info["done"] == 2 and sorted(crm.calls) == [0, 1] and not info["active"]
    assert batch_id not in resume_orphaned_batches(FakeCrm(), worker="worker-b")


def test_two_processes_claiming_at_once_one_wins(postgres_jobs: str, tmp_path: Path) -> None:
    """The compare-and-set in the database, not a lock of one process, decides between replicas."""
    batch_id = create_batch(owner(), rows(1))
    go = tmp_path / "go"
    script = tmp_path / "claim.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, sys, time
            sys.path.insert(0, {str(REPO_ROOT)!r})
            from personagraph.accounts.identity import ConflictError
            from personagraph.services.crm_jobs import claim_batch, jobs_db, release_batch
            jobs_db()
            print("ready", flush=True)
            while not os.path.exists({str(go)!r}):
                time.sleep(0.001)
            try:
                lease = claim_batch({batch_id!r}, sys.argv[1])
            except ConflictError:
                open(os.path.join({str(tmp_path)!r}, "tried-" + sys.argv[1]), "w").close()
                print("lost", flush=True)
            else:
                open(os.path.join({str(tmp_path)!r}, "tried-" + sys.argv[1]), "w").close()
                # A failed batch may be claimed again: release only once the other one has tried (on a
                # loaded machine it may try after this process has already released).
                while len([n for n in os.listdir({str(tmp_path)!r}) if n.startswith("tried-")]) < 2:
                    time.sleep(0.01)
                print("won", flush=True)
                release_batch(lease, "failed", "released by the test")
            """
        )
    )
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), worker], env=dict(os.environ), cwd=tmp_path, stdout=subprocess.PIPE,
            text=True,
        )
        for worker in ("worker-a", "worker-b")
    ]  # fmt: skip
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        go.touch()
        outcomes = sorted(proc.communicate(timeout=DEADLINE_S)[0].strip() for proc in procs)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert outcomes == ["lost", "won"]
    found = jobs_db().execute(
        "SELECT worker, state, lease_id FROM crm_batches WHERE batch_id = ?", (batch_id,)
    )
    row = found.fetchone()
    assert row is not None and row[0] in ("worker-a", "worker-b") and row[1:] == ("failed", None)


def test_a_batch_of_a_killed_process_finishes_on_another_worker(
    postgres_jobs: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RUNS_LEASE_S", "3600")  # no waiting for expiry: the killed pid is gone
    get_settings.cache_clear()
    alice = owner()
    batch_id = create_batch(alice, rows(4))
    kill_a_worker_mid_batch(batch_id, alice.user_id, tmp_path)
    assert batch_info(alice, batch_id)["worker"] == "doomed" and batch_info(alice, batch_id)["done"] == 2
    crm = FakeCrm()
    deadline = time.monotonic() + DEADLINE_S
    while batch_id not in resume_orphaned_batches(crm, worker="worker-b"):
        assert time.monotonic() < deadline, "the killed worker's batch was not resumed"
        time.sleep(0.05)
    wait_until(lambda: state(alice, batch_id) == "done", "the batch finished on worker-b")
    assert sorted(crm.calls) == [2, 3] and stored_counts(batch_id) == {i: 1 for i in range(4)}
