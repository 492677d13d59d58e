"""CRM batches as background jobs (services/crm_jobs.py), on the SQLite default: claimed by one worker
with a lease, resumed by another when the first dies, every row stored once; cancel; ownership;
the HTTP routes. tests/integration/test_crm_jobs_postgres.py does the same on a real Postgres.

Workers are names (`worker=`), so two "workers" live in one test; a worker "dies" by stopping its
heartbeat without releasing its lease. No test asserts a timing: each polls until a condition holds,
with a generous deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from personagraph.accounts.identity import Caller, ConflictError, LimitReachedError, NotFoundError
from personagraph.accounts.store import AccountStore, SignInThrottle
from personagraph.api.app import create_app
from personagraph.services import crm_jobs
from personagraph.services.crm import BatchFileError, CrmService
from personagraph.services.crm_jobs import (
    CrmBatchResumer,
    batch_info,
    cancel_batch,
    claim_batch,
    create_batch,
    execute_batch,
    jobs_db,
    release_batch,
    resume_orphaned_batches,
    start_batch,
    start_batch_in_background,
)
from personagraph.serving.safe_paths import UnsafeIdError
from personagraph.serving.settings import REPO_ROOT, get_settings
from personagraph.serving.workers import host_key, worker_id

ALICE = Caller("alice")
BOB = Caller("bob")
BOSS = Caller("boss", "admin")
DEADLINE_S = 60.0


def wait_until(condition: Callable[[], Any], what: str, timeout_s: float = DEADLINE_S) -> Any:
    """Poll until `condition()` is truthy (returns it); fail after a generous deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


class FakeCrm(CrmService):
    """`run` returns a dict naming the row; it fails on rows whose "n" is in `fail`, and waits on
    `gate` (when set) before the rows whose "n" is in `block`. Records every row it ran."""

    def __init__(self, fail: tuple[int, ...] = (), block: tuple[int, ...] = ()):
        super().__init__(use_cache=False)
        self.fail, self.block = fail, block
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls: list[int] = []

    def run(self, caller: Caller, raw: Any) -> dict[str, Any]:
        n = int(raw["n"])
        self.calls.append(n)
        if n in self.block:
            self.entered.set()
            assert self.gate.wait(DEADLINE_S), "the test never opened the gate"
        if n in self.fail:
            raise RuntimeError(f"row {n} broke /secret/path")
        return {
            "status": "passed",
            "message": f"message {n} for {caller.user_id}",
            "timing_average": {"x": 1.0},
        }


def rows(count: int) -> list[dict[str, Any]]:
    return [{"n": n} for n in range(count)]


def state(caller: Caller, batch_id: str) -> str:
    return str(batch_info(caller, batch_id)["state"])


def stored_counts(batch_id: str) -> dict[int, int]:
    found = jobs_db().execute(
        "SELECT row_index, COUNT(*) FROM crm_batch_results WHERE batch_id = ? GROUP BY row_index", (batch_id,)
    )
    return {int(index): int(count) for index, count in found.rows}


@pytest.fixture(autouse=True)
def short_lease(monkeypatch: pytest.MonkeyPatch) -> Iterator[float]:
    """Leases of half a second (renewed every sixth), so a dead worker's batch is free soon."""
    monkeypatch.setenv("RUNS_LEASE_S", "0.5")
    get_settings.cache_clear()
    yield 0.5
    get_settings.cache_clear()


def test_a_batch_runs_in_the_background_and_stores_every_row_in_order() -> None:
    crm = FakeCrm(fail=(2,))
    batch_id = start_batch(ALICE, crm, [*rows(4), "not an object"])
    wait_until(lambda: state(ALICE, batch_id) == "done", "the batch is done")
    info = batch_info(ALICE, batch_id)
    assert info["done"] == info["total"] == 5 and info["worker"] == worker_id() and not info["active"]
    results = info["results"]
    assert [r["row"] for r in results] == [1, 2, 3, 4, 5]
    assert results[0]["status"] == "passed" and results[0]["message"] == "message 0 for alice"
    # One broken row is an error result (no internals shown), one that is no object is invalid.
    assert results[2]["status"] == "error" and "/secret/path" not in results[2]["error"]
    assert results[4]["status"] == "invalid" and results[4]["field"] == "row"
    assert sorted(crm.calls) == [0, 1, 2, 3] and set(stored_counts(batch_id).values()) == {1}
    assert (get_settings().personagraph_home / "crm" / "jobs.sqlite").is_file()


def test_rows_are_checked_before_anything_is_stored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_BATCH_MAX_ROWS", "3")
    get_settings.cache_clear()
    with pytest.raises(BatchFileError, match="rows: .*CRM_BATCH_MAX_ROWS"):
        create_batch(ALICE, rows(4))
    with pytest.raises(BatchFileError, match="rows: "):
        create_batch(ALICE, [])
    assert jobs_db().execute("SELECT COUNT(*) FROM crm_batches").fetchone() == (0,)


def test_a_live_lease_blocks_other_workers_and_a_finished_batch_is_not_run_again() -> None:
    batch_id = create_batch(ALICE, rows(2))
    lease = claim_batch(batch_id, "worker-a")
    try:
        row = jobs_db().execute("SELECT worker, host, pid FROM crm_batches WHERE batch_id = ?", (batch_id,))
        assert row.fetchone() == ("worker-a", host_key(), os.getpid())
        with pytest.raises(ConflictError, match="worker-a"):
            claim_batch(batch_id, "worker-b")
        with pytest.raises(ConflictError, match="worker-a"):
            start_batch_in_background(ALICE, FakeCrm(), batch_id, worker="worker-b")
        # The heartbeat renews the lease well past its length.
        first = lease_until(batch_id)
        wait_until(lambda: lease_until(batch_id) > first + 1.0, "the lease was renewed several times")
        assert batch_info(ALICE, batch_id)["active"]
    finally:
        assert release_batch(lease, "done")
    info = batch_info(ALICE, batch_id)
    assert info["state"] == "done" and info["worker"] == "worker-a" and not info["active"]
    with pytest.raises(ConflictError, match="already done"):
        claim_batch(batch_id, "worker-b")


def lease_until(batch_id: str) -> float:
    found = (
        jobs_db().execute("SELECT lease_until FROM crm_batches WHERE batch_id = ?", (batch_id,)).fetchone()
    )
    assert found is not None and found[0] is not None
    return float(found[0])


def test_a_dead_workers_batch_is_resumed_by_another_running_only_the_missing_rows() -> None:
    batch_id = create_batch(ALICE, rows(5))
    # Worker A stores rows 0 and 1, then dies: its heartbeat stops, nothing is released.
    lease = claim_batch(batch_id, "worker-a")
    worker_a = FakeCrm()
    for index in (0, 1):
        assert crm_jobs._store_result(
            lease, index, crm_jobs.run_row(worker_a, ALICE, {"n": index}, index + 1)
        )
    lease.stop()
    worker_b = FakeCrm()
    wait_until(lambda: resume_orphaned_batches(worker_b, worker="worker-b") == [batch_id], "B resumed it")
    wait_until(lambda: state(ALICE, batch_id) == "done", "B finished the batch")
    info = batch_info(ALICE, batch_id)
    assert info["worker"] == "worker-b" and info["done"] == info["total"] == 5
    assert sorted(worker_b.calls) == [2, 3, 4]
    assert stored_counts(batch_id) == {i: 1 for i in range(5)}
    assert [r["row"] for r in info["results"]] == [1, 2, 3, 4, 5]


def test_a_stalled_worker_whose_lease_was_taken_stores_nothing_more() -> None:
    batch_id = create_batch(ALICE, rows(3))
    lease = claim_batch(batch_id, "worker-a")
    stalled = FakeCrm(block=(1,))
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(execute_batch(stalled, ALICE, lease)))
    thread.start()
    assert stalled.entered.wait(DEADLINE_S)
    lease.stop()  # A stalls past its lease (its heartbeat stopped)
    worker_b = FakeCrm()
    wait_until(lambda: resume_orphaned_batches(worker_b, worker="worker-b") == [batch_id], "B took it")
    wait_until(lambda: state(ALICE, batch_id) == "done", "B finished the batch")
    stalled.gate.set()  # A wakes up: its result of row 1 must not be stored (B stored its own)
    thread.join(DEADLINE_S)
    assert outcome == [None]
    assert sorted(worker_b.calls) == [1, 2] and stored_counts(batch_id) == {0: 1, 1: 1, 2: 1}
    assert (
        batch_info(ALICE, batch_id)["state"] == "done" and batch_info(ALICE, batch_id)["worker"] == "worker-b"
    )


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(done.stdout)


def test_a_killed_process_on_this_machine_is_taken_over_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNS_LEASE_S", "3600")  # no waiting for expiry: the pid is gone
    get_settings.cache_clear()
    batch_id = create_batch(ALICE, rows(2))
    jobs_db().execute(
        """UPDATE crm_batches SET state = 'running', worker = 'killed-app', host = ?, pid = ?, lease_id = 'x',
               lease_until = ? WHERE batch_id = ?""",
        (host_key(), _dead_pid(), time.time() + 3600, batch_id),
    )
    parent = create_batch(ALICE, rows(1))  # a live pid here: not an orphan
    jobs_db().execute(
        """UPDATE crm_batches SET state = 'running', worker = 'parent', host = ?, pid = ?, lease_id = 'y',
               lease_until = ? WHERE batch_id = ?""",
        (host_key(), os.getppid(), time.time() + 3600, parent),
    )
    crm = FakeCrm()
    assert resume_orphaned_batches(crm, worker="worker-b") == [batch_id]
    wait_until(lambda: state(ALICE, batch_id) == "done", "the batch is done")
    assert state(ALICE, parent) == "running" and batch_info(ALICE, parent)["active"]


def kill_a_worker_mid_batch(batch_id: str, owner: str, folder: Any) -> None:
    """Run the batch in a real process (worker "doomed") that stores rows 0 and 1, stalls on row 2
    and is killed there with SIGKILL (nothing released: its lease stays, its pid is gone)."""
    script = folder / "crm_worker.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, time
            sys.path.insert(0, {str(REPO_ROOT)!r})
            from personagraph.accounts.identity import Caller
            from personagraph.services.crm_jobs import start_batch_in_background
            from tests.unit.test_crm_jobs import FakeCrm
            crm = FakeCrm(block=(2,))
            start_batch_in_background(Caller({owner!r}), crm, {batch_id!r}, worker="doomed")
            crm.entered.wait(120)
            print("stalled", flush=True)
            time.sleep(300)
            """
        )
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)], env=dict(os.environ), cwd=folder, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "stalled", (
            "the worker did not start"
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_a_batch_of_a_killed_process_finishes_here_with_every_row_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("RUNS_LEASE_S", "3600")  # no waiting for expiry: the killed pid is gone
    get_settings.cache_clear()
    batch_id = create_batch(ALICE, rows(4))
    kill_a_worker_mid_batch(batch_id, ALICE.user_id, tmp_path)
    info = batch_info(ALICE, batch_id)
    assert (info["state"], info["worker"], info["done"], info["active"]) == ("running", "doomed", 2, False)
    crm = FakeCrm()
    assert resume_orphaned_batches(crm, worker="worker-b") == [batch_id]
    wait_until(lambda: state(ALICE, batch_id) == "done", "the batch finished here")
    assert sorted(crm.calls) == [2, 3] and stored_counts(batch_id) == {i: 1 for i in range(4)}
    assert batch_info(ALICE, batch_id)["worker"] == "worker-b"


def test_cancel_stops_the_batch_between_rows_and_keeps_what_was_stored() -> None:
    crm = FakeCrm(block=(1,))
    batch_id = start_batch(ALICE, crm, rows(4))
    assert crm.entered.wait(DEADLINE_S)
    with pytest.raises(NotFoundError):
        cancel_batch(BOB, batch_id)
    asked = cancel_batch(ALICE, batch_id)
    assert asked["cancel_requested"] and asked["state"] == "running"
    crm.gate.set()
    wait_until(lambda: state(ALICE, batch_id) == "cancelled", "the batch is cancelled")
    info = batch_info(ALICE, batch_id)
    assert info["done"] == 2 and sorted(crm.calls) == [0, 1] and "2 of 4" in info["message"]
    with pytest.raises(ConflictError, match="already cancelled"):
        cancel_batch(ALICE, batch_id)
    with pytest.raises(ConflictError):
        start_batch_in_background(ALICE, crm, batch_id)
    # A batch no worker runs is cancelled at once.
    idle = create_batch(ALICE, rows(2))
    assert cancel_batch(BOSS, idle)["state"] == "cancelled"


def test_an_orphan_whose_cancel_was_asked_for_is_recorded_as_cancelled() -> None:
    batch_id = create_batch(ALICE, rows(3))
    lease = claim_batch(batch_id, "worker-a")
    jobs_db().execute("UPDATE crm_batches SET cancel_requested = 1 WHERE batch_id = ?", (batch_id,))
    lease.stop()
    crm = FakeCrm()
    wait_until(
        lambda: resume_orphaned_batches(crm) == [] and state(ALICE, batch_id) == "cancelled", "settled"
    )
    assert crm.calls == []


def test_only_the_owner_or_an_admin_sees_a_batch() -> None:
    batch_id = start_batch(ALICE, FakeCrm(), rows(2))
    wait_until(lambda: state(ALICE, batch_id) == "done", "the batch is done")
    for call in (batch_info, cancel_batch):
        with pytest.raises(NotFoundError, match="batch_id"):
            call(BOB, batch_id)
    with pytest.raises(NotFoundError):
        start_batch_in_background(BOB, FakeCrm(), batch_id)
    with pytest.raises(NotFoundError):
        batch_info(ALICE, "crm-no-such-batch")
    with pytest.raises(UnsafeIdError):
        batch_info(ALICE, "../etc")
    mine = batch_info(ALICE, batch_id)["results"]
    seen = batch_info(BOSS, batch_id)["results"]
    assert "timing_average" in mine[0] and "timing_average" not in seen[0]  # alice's own history
    assert seen[0]["message"] == mine[0]["message"]


def test_the_per_account_limit_counts_live_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNS_MAX_ACTIVE_PER_ACCOUNT", "1")
    get_settings.cache_clear()
    lease = claim_batch(create_batch(ALICE, rows(1)), "worker-a")
    try:
        with pytest.raises(LimitReachedError, match="RUNS_MAX_ACTIVE_PER_ACCOUNT"):
            start_batch(ALICE, FakeCrm(), rows(1))
        # Two requests at once both passed the first check: the loser's batch is not kept.
        monkeypatch.setattr(crm_jobs, "check_batch_capacity", lambda caller: None)
        with pytest.raises(LimitReachedError):
            start_batch(ALICE, FakeCrm(), rows(1))
        assert jobs_db().execute("SELECT COUNT(*) FROM crm_batches WHERE owner = 'alice'").fetchone() == (1,)
        bobs = start_batch(BOB, FakeCrm(), rows(1))  # another account has room
        wait_until(lambda: state(BOB, bobs) == "done", "bob's batch is done")
    finally:
        release_batch(lease, "done")


def test_a_batch_recorded_but_never_claimed_is_started_after_a_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNS_LEASE_S", "600")
    get_settings.cache_clear()
    batch_id = create_batch(ALICE, rows(2))
    jobs_db().execute(  # recorded by a process that died before it claimed the batch
        "UPDATE crm_batches SET created_at = '2026-01-01T00:00:00+00:00' WHERE batch_id = ?", (batch_id,)
    )
    fresh = create_batch(ALICE, rows(1))  # its process is about to claim it: left alone
    crm = FakeCrm()
    assert resume_orphaned_batches(crm, worker="worker-b") == [batch_id]
    wait_until(lambda: state(ALICE, batch_id) == "done", "the batch is done")
    assert state(ALICE, fresh) == "created"


def test_the_resumer_finishes_an_orphan_and_stops() -> None:
    batch_id = create_batch(ALICE, rows(3))
    claim_batch(batch_id, "worker-a").stop()  # dies at once
    crm = FakeCrm()
    resumer = CrmBatchResumer(crm, worker="worker-b", interval_s=0.1).start()
    try:
        wait_until(lambda: state(ALICE, batch_id) == "done", "the resumer finished the batch")
    finally:
        resumer.stop()
    assert sorted(crm.calls) == [0, 1, 2] and batch_info(ALICE, batch_id)["worker"] == "worker-b"


# --- the HTTP routes ------------------------------------------------------------------------------------


def test_the_batch_routes(tmp_path: Any) -> None:
    from tests.unit.test_api import PASSWORD, FakeChat, assert_error, sign_in

    accounts = AccountStore(
        tmp_path / "accounts.sqlite", throttle=SignInThrottle(max_failures=3), bcrypt_rounds=4
    )
    accounts.add("alice", PASSWORD)
    accounts.add("bob", PASSWORD)
    accounts.add("boss", PASSWORD, role="admin")
    crm = FakeCrm()
    app = create_app(accounts, FakeChat(), None, crm, ready_checks={})  # type: ignore[arg-type]
    client = TestClient(app, raise_server_exceptions=False)
    alice, bob, boss = (sign_in(client, user) for user in ("alice", "bob", "boss"))
    started = client.post("/api/crm/batches", json={"rows": rows(3)}, headers=alice)
    assert started.status_code == 202, started.text
    batch_id = started.json()["batch_id"]
    url = f"/api/crm/batches/{batch_id}"
    wait_until(lambda: client.get(url, headers=alice).json()["state"] == "done", "the batch is done")
    info = client.get(url, headers=alice).json()
    assert info["done"] == info["total"] == 3 and [r["row"] for r in info["results"]] == [1, 2, 3]
    assert client.get(url, headers=boss).status_code == 200
    assert_error(client.get(url, headers=bob), 404, "batch_id")
    assert_error(client.post(f"{url}/cancel", headers=bob), 404, "batch_id")
    assert_error(client.post(f"{url}/cancel", headers=alice), 409, "batch_id")
    assert client.get(url).status_code == 401
    assert_error(client.post("/api/crm/batches", json={"rows": []}, headers=alice), 400, "rows")
    over = rows(get_settings().crm_batch_max_rows + 1)
    assert_error(client.post("/api/crm/batches", json={"rows": over}, headers=alice), 400, "rows")
    assert_error(client.post("/api/crm/batches", json={"rows": rows(1), "x": 1}, headers=alice), 400, "x")
    assert_error(client.get("/api/crm/batches/bad..id", headers=alice), 400, "batch_id")
