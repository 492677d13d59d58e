"""Twin runs are claimed by one worker through the database with a lease, and resumed by another
worker when the first dies (here on the SQLite default; tests/integration/test_runs_postgres.py
does the same on a real Postgres).

Workers are names (`worker=`), so two "workers" live in one test; a worker "dies" by stopping its
heartbeat without releasing its lease. No test asserts a timing: each polls until a condition holds,
with a generous deadline.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from personagraph.accounts.identity import ConflictError, LimitReachedError
from personagraph.services.twins import store as runs_store
from personagraph.services.twins.executor import LEASE_LOST, BatchOptions, RunSummary, finish_run
from personagraph.services.twins.runs import RunResumer, resume_orphaned_runs, start_run_in_background
from personagraph.services.twins.store import (
    RunStore,
    claim_run,
    create_run_store,
    host_key,
    open_run,
    release_run,
    run_info,
    run_path,
    visible_runs,
    worker_id,
)
from personagraph.services.twins.surveys import create_survey_run, execute_survey
from personagraph.serving.models import ModelUnavailableError, use_models
from personagraph.serving.settings import REPO_ROOT, get_settings
from personagraph.twins.surveys import load_survey
from tests.fakes import scripted
from tests.unit.twins_support import BOSS, JOON, MINA, answer_bot, people_from

BRAND = load_survey(REPO_ROOT / "data" / "surveys" / "brand_en.yaml")
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


def partial_run(run_id: str, worker: str, answers: int, log: list[tuple[str, str]]) -> RunStore:
    """Worker `worker` claims the run, stores `answers` answers and then "dies": its heartbeat stops
    and its lease is never released (the run stays "running"). Returns its store (closed)."""
    people = people_from(4)
    bot = answer_bot(BRAND, people, log=log)
    script: list[Any] = [bot] * answers + [ModelUnavailableError("worker died")]
    store = open_run(MINA, run_id)
    claim_run(store, worker)
    with use_models({"twin": scripted(*script)}):
        summary = execute_survey(
            store, BatchOptions(concurrency=1, retries=0), progress=False, max_consecutive_errors=1
        )
    assert summary.stopped and 0 < summary.stored < summary.expected, summary
    die(store)
    return store


def die(store: RunStore) -> None:
    """What a killed process leaves: the lease in the database, no heartbeat, nothing released."""
    assert store.lease is not None
    store.lease.stop()
    store.close()


def stored_rows(run_id: str) -> list[tuple[str, str]]:
    with open_run(MINA, run_id) as opened:
        return [(a.person_id, a.question_id) for a in opened.answers()]


@pytest.fixture
def short_lease(monkeypatch: pytest.MonkeyPatch) -> Iterator[float]:
    """Leases of half a second (heartbeats every ~0.17 s)."""
    monkeypatch.setenv("RUNS_LEASE_S", "0.5")
    get_settings.cache_clear()
    yield 0.5
    get_settings.cache_clear()


def _survey_run(n: int = 4) -> tuple[str, int]:
    handle = create_survey_run(MINA, BRAND, people_from(n), BatchOptions(concurrency=1))
    return handle.run_id, handle.expected


def test_a_claim_records_the_worker_and_a_lease_until_released(short_lease: float) -> None:
    run_id, _ = _survey_run()
    assert run_info(MINA, run_id)["active"] is False and run_info(MINA, run_id)["worker"] == ""
    store = open_run(MINA, run_id)
    try:
        claim_run(store, "worker-a")
        info = run_info(MINA, run_id)
        assert (info["state"], info["active"], info["worker"], info["progress"]) == (
            "running",
            True,
            "worker-a",
            {},
        )
        row = store.row()
        assert row is not None and row.worker_host == host_key() and row.worker_pid == os.getpid()
        release_run(store, "done", "")
    finally:
        store.close()
    info = run_info(MINA, run_id)
    # Released: no lease any more; the worker that ran it last is still named.
    assert (info["state"], info["active"], info["worker"]) == ("done", False, "worker-a")
    with open_run(MINA, run_id) as opened:
        row = opened.row()
    assert row is not None and row.lease_id is None and row.lease_until is None


def test_the_default_worker_is_the_host_and_pid_or_worker_id(monkeypatch: pytest.MonkeyPatch) -> None:
    assert worker_id().endswith(f"-{os.getpid()}")
    monkeypatch.setenv("WORKER_ID", "replica-7")
    get_settings.cache_clear()
    assert worker_id() == "replica-7"
    run_id, _ = _survey_run()
    with open_run(MINA, run_id) as store:
        claim_run(store)
        assert run_info(MINA, run_id)["worker"] == "replica-7"
        release_run(store, "stopped")


def test_a_heartbeat_keeps_the_lease_live_past_its_length(short_lease: float) -> None:
    run_id, _ = _survey_run()
    with open_run(MINA, run_id) as store:
        claim_run(store, "worker-a")
        first = store.row()
        assert first is not None and first.lease_until is not None
        # Renewed again and again: the lease ends later and later, and the run stays active.
        seen = {first.lease_until}

        def renewed_three_times() -> bool:
            row = store.row()
            assert row is not None and row.live(), "the lease lapsed while its heartbeat ran"
            seen.add(row.lease_until)  # type: ignore[arg-type]
            return len(seen) >= 4

        wait_until(renewed_three_times, "the heartbeat renewed the lease three times")
        with (
            open_run(MINA, run_id) as other,
            pytest.raises(ConflictError, match=r"^run_id: run '.+' is already running on worker worker-a$"),
        ):
            claim_run(other, "worker-b")
        release_run(store, "stopped")


def test_a_live_lease_blocks_other_workers_and_an_expired_one_does_not(short_lease: float) -> None:
    run_id, _ = _survey_run()
    a = open_run(MINA, run_id)
    claim_run(a, "worker-a")
    b = open_run(MINA, run_id)
    with pytest.raises(ConflictError, match="is already running on worker worker-a"):
        claim_run(b, "worker-b")
    with pytest.raises(ConflictError, match="is already running on worker worker-a"):
        claim_run(b, "worker-a")  # the same name from elsewhere is no exception
    assert a.lease is not None
    a.lease.stop()  # A stalls: its heartbeat stops, its lease runs out
    wait_until(lambda: not run_info(MINA, run_id)["active"], "A's lease expired")
    assert run_info(MINA, run_id)["state"] == "running"  # left running: an orphan
    claim_run(b, "worker-b")
    assert run_info(MINA, run_id)["worker"] == "worker-b"
    # A coming back to release changes nothing: B holds the run now.
    release_run(a, "failed", "A's late word")
    a.close()
    info = run_info(MINA, run_id)
    assert (info["state"], info["active"], info["worker"]) == ("running", True, "worker-b")
    release_run(b, "done")
    b.close()
    assert run_info(MINA, run_id)["state"] == "done"


def test_a_worker_whose_lease_was_taken_stops_its_run(short_lease: float) -> None:
    """A stalls past its lease (here: the lease is made to look expired); B takes the run over, A's
    heartbeat finds out and A stops without recording anything."""
    run_id, _ = _survey_run()
    a = open_run(MINA, run_id)
    claim_run(a, "worker-a")
    a.db.execute("UPDATE twin_runs SET lease_until = ? WHERE run_id = ?", (time.time() - 60, run_id))
    b = open_run(MINA, run_id)
    try:
        wait_until(lambda: _claimed(b, "worker-b"), "B claimed the stalled run")  # A's beat may renew first
        wait_until(lambda: a.stop_reason() == "lease_lost", "A saw that its lease was taken")
        summary = finish_run(a, lambda: _summary(run_id, stopped=LEASE_LOST))
        assert summary.stopped == LEASE_LOST
        info = run_info(MINA, run_id)
        assert (info["state"], info["active"], info["worker"]) == ("running", True, "worker-b")
    finally:
        release_run(b, "done")
        a.close()
        b.close()


def _claimed(store: RunStore, worker: str) -> bool:
    try:
        claim_run(store, worker)
    except ConflictError:
        # A's heartbeat renewed before B got there: make it look expired again.
        store.db.execute(
            "UPDATE twin_runs SET lease_until = ? WHERE run_id = ?", (time.time() - 60, store.run_id)
        )
        return False
    return True


def _summary(run_id: str, stopped: str | None) -> RunSummary:
    return RunSummary(run_id=run_id, path="", kind="survey", people=0, expected=0, stored=0, ok=0, failed=0,
                      asked_now=0, calls_failed_now=0, seconds=0.0, stopped=stopped)  # fmt: skip


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _forge_lease(run_id: str, worker: str, host: str, pid: int, seconds: float = 3600.0) -> None:
    """A lease as another process wrote it (a long one), straight into the run's row."""
    with sqlite3.connect(run_path(run_id)) as conn:
        conn.execute(
            """UPDATE twin_runs SET state = 'running', worker = ?, worker_host = ?, worker_pid = ?,
                   lease_id = 'forged', lease_until = ? WHERE run_id = ?""",
            (worker, host, pid, time.time() + seconds, run_id),
        )


def test_the_lease_of_a_dead_process_on_this_machine_is_taken_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A killed app's threads are gone and its lease has not expired yet: on the same machine (host
    name, boot and pid namespace) a pid with no process is proof enough that nobody runs the run."""
    monkeypatch.setenv("RUNS_MAX_ACTIVE_PER_ACCOUNT", "10")
    get_settings.cache_clear()
    dead, alive_elsewhere, alive_here = _survey_run(), _survey_run(), _survey_run()
    _forge_lease(dead[0], "killed-app", host_key(), _dead_pid())
    _forge_lease(alive_elsewhere[0], "other-box", "other-box/boot/pid:[1]", _dead_pid())
    _forge_lease(alive_here[0], "parent", host_key(), os.getppid())
    assert not run_info(MINA, dead[0])["active"]
    with open_run(MINA, dead[0]) as store:
        claim_run(store, "next-app")
        release_run(store, "stopped")
    for run_id, worker in ((alive_elsewhere[0], "other-box"), (alive_here[0], "parent")):
        assert run_info(MINA, run_id)["active"], run_id
        with open_run(MINA, run_id) as store, pytest.raises(ConflictError, match=f"on worker {worker}$"):
            claim_run(store, "next-app")


def test_an_orphaned_run_resumes_on_another_worker_and_stores_every_answer_once(short_lease: float) -> None:
    run_id, expected = _survey_run()
    first: list[tuple[str, str]] = []
    partial_run(run_id, "worker-a", answers=5, log=first)
    stored_by_a = set(stored_rows(run_id))
    assert len(stored_by_a) == 5
    second: list[tuple[str, str]] = []
    with use_models({"twin": scripted(answer_bot(BRAND, people_from(4), log=second))}):
        resumed = wait_until(
            lambda: resume_orphaned_runs("worker-b"), "A's lease expired and B resumed the run"
        )
        assert resumed == [run_id]
        wait_until(lambda: run_info(MINA, run_id)["state"] == "done", "B finished the run")
    info = run_info(MINA, run_id)
    assert (info["stored"], info["ok"], info["active"], info["worker"]) == (
        expected,
        expected,
        False,
        "worker-b",
    )
    rows = stored_rows(run_id)
    assert len(rows) == len(set(rows)) == expected
    assert not stored_by_a & set(second)  # B asked only what A had not stored
    assert len(second) == expected - len(stored_by_a)
    assert resume_orphaned_runs("worker-c") == []  # nothing left to resume


def test_an_orphan_whose_cancel_was_asked_is_recorded_cancelled_not_resumed(short_lease: float) -> None:
    run_id, _ = _survey_run()
    partial_run(run_id, "worker-a", answers=2, log=[])
    runs_store.cancel_run(MINA, run_id)
    idle = scripted(AssertionError("a cancelled run asks nothing"))
    with use_models({"twin": idle}):
        wait_until(
            lambda: resume_orphaned_runs("worker-b") == [] and run_info(MINA, run_id)["state"] == "cancelled",
            "A's lease expired and the orphan was recorded as cancelled",
        )
    assert idle.calls == [] and run_info(MINA, run_id)["message"] == runs_store.CANCELLED


def test_the_resumer_finds_orphans_until_stopped(short_lease: float) -> None:
    run_id, expected = _survey_run()
    partial_run(run_id, "worker-a", answers=3, log=[])
    with use_models({"twin": scripted(answer_bot(BRAND, people_from(4)))}):
        resumer = RunResumer("worker-b", interval_s=0.05).start()
        try:
            wait_until(lambda: run_info(MINA, run_id)["state"] == "done", "the resumer finished the run")
        finally:
            resumer.stop()
    assert run_info(MINA, run_id)["stored"] == expected and run_info(MINA, run_id)["worker"] == "worker-b"
    assert resumer._thread is not None and not resumer._thread.is_alive()


def test_a_run_left_running_by_a_killed_app_resumes_when_the_next_one_starts() -> None:
    """The SQLite default, one process at a time: the next app's first resumer pass takes the run at
    once (the old pid is gone), without waiting for the lease (30 s by default) to run out."""
    run_id, expected = _survey_run()
    _forge_lease(run_id, "killed-app", host_key(), _dead_pid(), seconds=get_settings().runs_lease_s)
    with use_models({"twin": scripted(answer_bot(BRAND, people_from(4)))}):
        assert resume_orphaned_runs() == [run_id]
        wait_until(lambda: run_info(MINA, run_id)["state"] == "done", "the run finished")
    assert run_info(MINA, run_id)["stored"] == expected and run_info(MINA, run_id)["worker"] == worker_id()


def test_a_cancel_reaches_the_run_through_the_database(short_lease: float) -> None:
    run_id, expected = _survey_run()
    bot = answer_bot(BRAND, people_from(4))

    def slow(messages: list[Any]) -> str:
        time.sleep(0.05)
        return bot(messages)

    with use_models({"twin": scripted(slow)}):
        start_run_in_background(MINA, run_id, worker="worker-a")
        wait_until(lambda: run_info(MINA, run_id)["stored"] >= 2, "A stored two answers")
        # Another worker's request: it only writes the flag in the run's row.
        with open_run(BOSS, run_id) as elsewhere:
            elsewhere.set_meta("cancel_requested", True)
        wait_until(lambda: not run_info(MINA, run_id)["active"], "A stopped")
    info = run_info(MINA, run_id)
    assert info["state"] == "cancelled" and info["stored"] < expected and info["worker"] == "worker-a"


def test_the_per_account_limit_counts_live_leases_of_every_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNS_MAX_ACTIVE_PER_ACCOUNT", "1")
    get_settings.cache_clear()
    elsewhere, here = _survey_run(), _survey_run()
    _forge_lease(elsewhere[0], "replica-b", "replica-b-host/boot/pid:[1]", 1)  # another replica runs it
    with (
        open_run(MINA, here[0]) as store,
        pytest.raises(LimitReachedError, match="RUNS_MAX_ACTIVE_PER_ACCOUNT"),
    ):
        claim_run(store, "replica-a")
    # Another account is not held back, and the limit frees up once the lease is gone.
    joon = create_run_store(JOON, "survey", "joon-run", survey_id="s", options={}, selection=None, source="t")
    claim_run(joon, "replica-a")
    release_run(joon, "done")
    joon.close()
    with sqlite3.connect(run_path(elsewhere[0])) as conn:
        conn.execute("UPDATE twin_runs SET lease_until = ? WHERE run_id = ?", (time.time() - 1, elsewhere[0]))
    with open_run(MINA, here[0]) as store:
        claim_run(store, "replica-a")
        release_run(store, "done")


def test_progress_of_a_run_on_another_worker_comes_from_its_heartbeat(short_lease: float) -> None:
    run_id, _ = _survey_run()
    store = open_run(MINA, run_id)
    claim_run(store, "worker-a")
    try:
        assert store.lease is not None
        store.lease.progress = {"done": 3, "total": 9}
        # Seen from a process without the lease: what the last heartbeat wrote.
        wait_until(
            lambda: "done" in ((row := store.row()) and row.progress or ""), "a heartbeat wrote progress"
        )
        runs_store._LEASES.pop(run_id)
        lease, store.lease = store.lease, None
        try:
            assert run_info(MINA, run_id)["progress"] == {"done": 3, "total": 9}
        finally:
            store.lease = lease
            runs_store._LEASES[run_id] = lease
    finally:
        release_run(store, "stopped")
        store.close()


def test_visible_runs_and_delete_see_leases(short_lease: float) -> None:
    mine, other = _survey_run(), create_survey_run(JOON, BRAND, people_from(2), BatchOptions()).run_id
    assert [r["run_id"] for r in visible_runs(MINA)] == [mine[0]]
    assert {r["run_id"] for r in visible_runs(BOSS)} == {mine[0], other}
    with open_run(MINA, mine[0]) as store:
        claim_run(store, "worker-a")
        with pytest.raises(ConflictError, match=r"is already running on worker worker-a; cancel it first$"):
            runs_store.delete_run(MINA, mine[0])
        assert [r["active"] for r in visible_runs(MINA)] == [True]
        release_run(store, "cancelled")
    runs_store.delete_run(MINA, mine[0])
    assert [r["run_id"] for r in visible_runs(BOSS)] == [other]


# --- runs stored by the version before leases ------------------------------------------------------------

_LEGACY_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE people (person_id TEXT PRIMARY KEY, position INTEGER NOT NULL, profile TEXT NOT NULL,
                     attributes TEXT NOT NULL);
CREATE TABLE arms (person_id TEXT NOT NULL, condition_group TEXT NOT NULL, arm TEXT NOT NULL,
                   UNIQUE (person_id, condition_group));
CREATE TABLE answers (person_id TEXT NOT NULL, question_id TEXT NOT NULL, status TEXT NOT NULL,
    value TEXT, reason TEXT NOT NULL DEFAULT '', arm TEXT, error TEXT, raw TEXT, mode TEXT, seconds REAL,
    created_at TEXT NOT NULL, UNIQUE (person_id, question_id));
CREATE TABLE transcripts (person_id TEXT NOT NULL UNIQUE, status TEXT NOT NULL, transcript TEXT NOT NULL,
    error TEXT, created_at TEXT NOT NULL);
"""


def test_a_run_file_of_the_earlier_layout_is_migrated_once() -> None:
    path = run_path("old-run")
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as conn:
        conn.executescript(_LEGACY_SCHEMA)
        meta = {"kind": "survey", "run_id": "old-run", "owner": "mina", "created_at": "2026-01-01T00:00:00+00:00",
                "survey_id": "brand", "state": "running", "cancel_requested": False, "expected": 2,
                "options": BatchOptions().model_dump(), "source": "test"}  # fmt: skip
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
        conn.executemany(
            "INSERT INTO people VALUES (?, ?, ?, ?)", [("p1", 0, "One.", "{}"), ("p0", 1, "Zero.", "{}")]
        )
        conn.execute("INSERT INTO arms VALUES ('p1', 'g', 'a')")
        conn.executemany(
            "INSERT INTO answers(person_id, question_id, status, value, created_at) VALUES (?, ?, 'ok', ?, 'now')",
            [("p0", "q2", "5"), ("p1", "q9", "1"), ("p1", "q1", "2")],
        )
    info = run_info(MINA, "old-run")
    # Left "running" by the old version: recorded as stopped (resumed when asked, not by itself).
    assert (info["owner"], info["state"], info["stored"], info["people"], info["active"]) == (
        "mina", "stopped", 3, 2, False,
    )  # fmt: skip
    with open_run(MINA, "old-run") as store:
        assert [(a.person_id, a.question_id, a.value) for a in store.answers()] == [
            ("p1", "q9", 1), ("p1", "q1", 2), ("p0", "q2", 5),
        ]  # fmt: skip
        assert store.arms() == {"p1": {"g": "a"}} and store.meta("expected") == 2
        assert (
            store.meta("options") == BatchOptions().model_dump() and store.meta("cancel_requested") is False
        )
    tables = {
        r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    assert not tables & {"meta", "people", "arms", "answers", "transcripts"}
    assert resume_orphaned_runs() == []
    assert [r["run_id"] for r in visible_runs(JOON)] == [] and run_info(BOSS, "old-run")["stored"] == 3


def test_listings_skip_folders_that_are_no_run_folders(tmp_path: Any) -> None:
    run_id, _ = _survey_run()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "results.sqlite").write_bytes(run_path(run_id).read_bytes())
    (run_path(run_id).parent.parent / "out").symlink_to(elsewhere, target_is_directory=True)
    copy = run_path(run_id).parent.parent / "copy"
    copy.mkdir()
    (copy / "results.sqlite").write_bytes(run_path(run_id).read_bytes())  # another run's rows
    assert [r["run_id"] for r in visible_runs(BOSS)] == [run_id]
    assert resume_orphaned_runs() == []
