"""Twin runs in a real Postgres (DATABASE_URL): every process sees every run, a run is claimed by one
worker with a lease, a dead worker's run is resumed by another, and a cancel reaches the worker that
runs it. The two workers are names in one process (a worker "dies" by stopping its heartbeat without
releasing); the two-process test with a killed app is tests/integration/test_replicas.py.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from personagraph.accounts.identity import Caller, ConflictError, LimitReachedError, NotFoundError
from personagraph.services.twins import store as runs_store
from personagraph.services.twins.executor import BatchOptions
from personagraph.services.twins.exports import export_all
from personagraph.services.twins.interviews import create_interview_run, run_interviews
from personagraph.services.twins.runs import resume_orphaned_runs, start_run_in_background
from personagraph.services.twins.store import claim_run, open_run, release_run, run_info, visible_runs
from personagraph.services.twins.surveys import create_survey_run, run_survey
from personagraph.serving.database import connect
from personagraph.serving.models import use_models
from personagraph.serving.postgres_server import LocalPostgres
from personagraph.serving.settings import get_settings
from personagraph.twins.guides import guide_from_data
from tests.fakes import scripted
from tests.unit.test_run_leases import BRAND, partial_run, stored_rows, wait_until
from tests.unit.twins_support import BOSS, JOON, MINA, answer_bot, people_from

pytestmark = pytest.mark.integration


@pytest.fixture
def postgres_runs(postgres_server: LocalPostgres, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Runs in the session's Postgres, with leases of a second."""
    monkeypatch.setenv("DATABASE_URL", postgres_server.url)
    monkeypatch.setenv("RUNS_LEASE_S", "1")
    monkeypatch.setenv("RUNS_MAX_ACTIVE_PER_ACCOUNT", "50")
    get_settings.cache_clear()
    yield postgres_server.url
    get_settings.cache_clear()


def _survey_run(n: int = 4, caller: Any = MINA) -> tuple[str, int]:
    run_id = f"pg-{uuid.uuid4().hex[:10]}"  # the database outlives each test: ids of their own
    handle = create_survey_run(caller, BRAND, people_from(n), BatchOptions(concurrency=1), run_id=run_id)
    return handle.run_id, handle.expected


def test_runs_live_in_postgres_tables_not_in_files(postgres_runs: str) -> None:
    run_id, expected = _survey_run(2)
    with use_models({"twin": scripted(answer_bot(BRAND, people_from(2)))}):
        summary = run_survey(MINA, run_id, progress=False)
    assert summary.stored == expected and summary.stopped is None and "Postgres" in summary.path
    assert not runs_store.run_path(run_id).exists()  # no SQLite file; the folder holds exports only
    db = connect(postgres_runs)
    counted = db.execute("SELECT COUNT(*) FROM twin_answers WHERE run_id = ?", (run_id,)).fetchone()
    assert counted is not None and counted[0] == expected
    assert run_id in {r["run_id"] for r in visible_runs(MINA)} and run_id in {
        r["run_id"] for r in visible_runs(BOSS)
    }
    assert run_id not in {r["run_id"] for r in visible_runs(JOON)}
    with pytest.raises(NotFoundError):
        run_info(JOON, run_id)
    files = export_all(MINA, run_id)
    assert files["csv"].endswith(".csv")
    # Asking again stores nothing twice.
    with use_models({"twin": scripted(AssertionError("nothing left to ask"))}):
        assert run_survey(MINA, run_id, progress=False).asked_now == 0
    runs_store.delete_run(MINA, run_id)
    assert db.execute("SELECT COUNT(*) FROM twin_answers WHERE run_id = ?", (run_id,)).fetchone() == (0,)
    with pytest.raises(NotFoundError):
        run_info(MINA, run_id)


def test_a_dead_workers_run_is_resumed_by_another_and_stored_once(postgres_runs: str) -> None:
    run_id, expected = _survey_run()
    first: list[tuple[str, str]] = []
    a = open_run(MINA, run_id)
    claim_run(a, "worker-a")
    # While A's lease is live, B may not claim it (and nothing resumes it).
    with (
        open_run(MINA, run_id) as b,
        pytest.raises(ConflictError, match="already running on worker worker-a"),
    ):
        claim_run(b, "worker-b")
    assert run_id not in resume_orphaned_runs("worker-b")
    info = run_info(MINA, run_id)
    assert (info["active"], info["worker"], info["state"]) == (True, "worker-a", "running")
    release_run(a, "stopped")
    a.close()

    partial_run(run_id, "worker-a", answers=5, log=first)  # A stores five answers and dies
    stored_by_a = set(stored_rows(run_id))
    assert len(stored_by_a) == 5
    second: list[tuple[str, str]] = []
    with use_models({"twin": scripted(answer_bot(BRAND, people_from(4), log=second))}):
        wait_until(
            lambda: run_id in resume_orphaned_runs("worker-b"), "A's lease expired and B resumed the run"
        )
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
    assert not stored_by_a & set(second) and len(second) == expected - len(stored_by_a)
    assert run_id not in resume_orphaned_runs("worker-c")


def test_a_cancel_from_one_worker_stops_the_run_on_another(postgres_runs: str) -> None:
    run_id, expected = _survey_run()
    bot = answer_bot(BRAND, people_from(4))

    def slow(messages: list[Any]) -> str:
        time.sleep(0.1)
        return bot(messages)

    with use_models({"twin": scripted(slow)}):
        start_run_in_background(MINA, run_id, worker="worker-a")
        wait_until(lambda: run_info(MINA, run_id)["stored"] >= 2, "A stored two answers")
        assert run_info(BOSS, run_id)["active"]
        runs_store.cancel_run(BOSS, run_id)  # B's request: a flag in the run's row
        wait_until(lambda: not run_info(MINA, run_id)["active"], "A stopped")
    info = run_info(MINA, run_id)
    assert (info["state"], info["worker"]) == ("cancelled", "worker-a") and info["stored"] < expected, info
    with use_models({"twin": scripted(answer_bot(BRAND, people_from(4)))}):
        assert run_survey(MINA, run_id, progress=False).stored == expected  # resumable afterwards


def test_the_per_account_limit_holds_across_workers(
    postgres_runs: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = Caller(f"pg-{uuid.uuid4().hex[:8]}")
    first, second = _survey_run(caller=owner), _survey_run(caller=owner)
    monkeypatch.setenv("RUNS_MAX_ACTIVE_PER_ACCOUNT", "1")
    get_settings.cache_clear()
    a = open_run(owner, first[0])
    claim_run(a, "worker-a")
    try:
        with (
            open_run(owner, second[0]) as b,
            pytest.raises(LimitReachedError, match="RUNS_MAX_ACTIVE_PER_ACCOUNT"),
        ):
            claim_run(b, "worker-b")
    finally:
        release_run(a, "stopped")
        a.close()
    with open_run(owner, second[0]) as b:
        claim_run(b, "worker-b")
        release_run(b, "done")


def test_an_interview_run_stores_its_transcripts_in_postgres(postgres_runs: str) -> None:
    guide = guide_from_data({"id": "g", "questions": [{"id": "q1", "text": "How do you drink tea?"}]})
    people = people_from(3)
    run_id = create_interview_run(MINA, guide, people, BatchOptions(), run_id=f"pg-{uuid.uuid4().hex[:10]}")
    twin, router = scripted("Green tea after lunch."), scripted({"verdict": "sufficient", "follow_up": ""})
    with use_models({"twin": twin, "router": router}):
        summary = run_interviews(MINA, run_id, progress=False)
    assert (summary.stored, summary.ok, summary.stopped) == (3, 3, None)
    info = run_info(BOSS, run_id)
    assert (info["kind"], info["state"], info["stored"], info["people"]) == ("interview", "done", 3, 3)
    with open_run(MINA, run_id, "interview") as opened:
        assert [t["person_id"] for t in opened.transcripts()] == [p.id for p in people]
