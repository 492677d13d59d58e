"""Batch runs: concurrency, durable results, resume after a kill without re-asking or duplicates, exports."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError

from personagraph.accounts.identity import ConflictError, NotFoundError
from personagraph.services.twins.analysis import segments_of, summary_of
from personagraph.services.twins.answering import Mode
from personagraph.services.twins.executor import BatchOptions, Progress, RateLimiter, WorkUnit, execute
from personagraph.services.twins.exports import export_all
from personagraph.services.twins.store import RunError, open_run, run_path
from personagraph.services.twins.surveys import create_survey_run, run_survey
from personagraph.serving.models import ModelUnavailableError, use_models
from personagraph.serving.safe_paths import UnsafeIdError
from personagraph.serving.settings import REPO_ROOT
from personagraph.twins.surveys import load_survey
from tests.fakes import scripted
from tests.unit.twins_support import LOCAL, answer_bot, people_from

BRAND = load_survey(REPO_ROOT / "data" / "surveys" / "brand_en.yaml")


def _rows(run_id: str) -> list[tuple[str, str]]:
    with sqlite3.connect(run_path(run_id)) as conn:
        return conn.execute("SELECT person_id, question_id FROM twin_answers").fetchall()


def _expected(run_id: str) -> int:
    with open_run(LOCAL, run_id) as store:
        return int(store.meta("expected"))


@pytest.mark.parametrize("mode", ["per_question", "per_person"])
def test_concurrent_run_stores_every_answer_once(mode: Mode) -> None:
    people = people_from(6)
    log: list[tuple[str, str]] = []
    twin = scripted(answer_bot(BRAND, people, log=log))
    seen: list[int] = []
    with use_models({"twin": twin}):
        run = create_survey_run(LOCAL, BRAND, people, BatchOptions(mode=mode, concurrency=4, seed=5))
        summary = run_survey(LOCAL, run.run_id, progress=False, on_progress=lambda p: seen.append(p.done))
    rows = _rows(run.run_id)
    assert len(rows) == len(set(rows)) == run.expected == summary.ok == summary.stored
    assert run.expected == 6 * (len(BRAND.questions) - 1)  # one of the two price arms each
    assert len(twin.calls) == (6 if mode == "per_person" else run.expected)
    assert seen == sorted(seen) and seen[-1] == run.expected
    # Each twin saw only its own arm, the one recorded in the run.
    with open_run(LOCAL, run.run_id) as store:
        arms = store.arms()
        answers = store.answers()
    asked = {(p, q) for p, q in log}
    for person in people:
        arm = arms[person.id]["price_framing"]
        assert (person.id, f"price_{arm}") in asked
        assert (person.id, "price_discount" if arm == "regular" else "price_regular") not in asked
    assert {a.arm for a in answers if a.question_id.startswith("price_")} <= {"regular", "discount"}
    assert len({arms[p.id]["price_framing"] for p in people}) == 2  # seeded random assignment uses both arms


@pytest.mark.parametrize("mode", ["per_question", "per_person"])
def test_resume_after_a_crash_asks_only_the_rest(mode: Mode) -> None:
    people = people_from(4)
    first_log: list[tuple[str, str]] = []
    bot = answer_bot(BRAND, people, log=first_log)
    calls = {"n": 0}
    crash_at = 3 if mode == "per_person" else 17

    def crashing(messages):
        calls["n"] += 1
        if calls["n"] == crash_at:
            raise RuntimeError("killed mid-batch")
        return bot(messages)

    with use_models({"twin": scripted(crashing)}):
        run = create_survey_run(LOCAL, BRAND, people, BatchOptions(mode=mode, concurrency=1))
        with pytest.raises(RuntimeError, match="killed mid-batch"):
            run_survey(LOCAL, run.run_id, progress=False)
    stored_before = set(_rows(run.run_id))
    assert 0 < len(stored_before) < run.expected
    second_log: list[tuple[str, str]] = []
    twin = scripted(answer_bot(BRAND, people, log=second_log))
    with use_models({"twin": twin}):
        summary = run_survey(LOCAL, run.run_id, progress=False)
    rows = _rows(run.run_id)
    assert len(rows) == len(set(rows)) == run.expected == summary.stored
    assert not stored_before & set(second_log)  # nothing stored was asked again
    assert len(second_log) == run.expected - len(stored_before)
    assert summary.asked_now == len(second_log)
    # A third run has nothing left to ask.
    idle = scripted(AssertionError("nothing to ask"))
    with use_models({"twin": idle}):
        assert run_survey(LOCAL, run.run_id, progress=False).asked_now == 0
    assert idle.calls == []


def test_resume_after_sigkill_of_a_real_process(tmp_path: Path) -> None:
    """Kill -9 a batch process mid-run, then resume: no duplicates, nothing stored is asked again."""
    people = people_from(5)
    run = create_survey_run(LOCAL, BRAND, people, BatchOptions(concurrency=2))
    script = tmp_path / "worker.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, time
            sys.path.insert(0, {str(REPO_ROOT)!r})
            from personagraph.serving.models import use_models
            from tests.fakes import scripted
            from tests.unit.twins_support import LOCAL, answer_bot, people_from
            from personagraph.services.twins.surveys import run_survey
            from personagraph.twins.surveys import load_survey
            survey = load_survey({str(REPO_ROOT / "data" / "surveys" / "brand_en.yaml")!r})
            bot = answer_bot(survey, people_from(5))
            def slow(messages):
                time.sleep(0.1)
                return bot(messages)
            with use_models({{"twin": scripted(slow)}}):
                run_survey(LOCAL, {run.run_id!r}, progress=False)
            """
        )
    )
    proc = subprocess.Popen([sys.executable, str(script)], env=dict(os.environ), cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if run_path(run.run_id).exists() and len(_rows(run.run_id)) >= 8:
                break
            assert proc.poll() is None, "the worker ended before it could be killed"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    stored_before = set(_rows(run.run_id))
    assert 8 <= len(stored_before) < run.expected
    log: list[tuple[str, str]] = []
    with use_models({"twin": scripted(answer_bot(BRAND, people, log=log))}):
        run_survey(LOCAL, run.run_id, progress=False)
    rows = _rows(run.run_id)
    assert len(rows) == len(set(rows)) == run.expected
    assert not stored_before & set(log)
    assert len(log) == run.expected - len(stored_before)


def test_failures_are_recorded_kept_on_resume_and_retried_on_request() -> None:
    people = people_from(2)
    bot = answer_bot(BRAND, people)

    def never_valid_nps(messages):
        if "[nps]" in str(messages[1].content):
            return '{"answer": 11, "reason": "off the scale"}'
        return bot(messages)

    with use_models({"twin": scripted(never_valid_nps)}):
        run = create_survey_run(LOCAL, BRAND, people, BatchOptions())
        summary = run_survey(LOCAL, run.run_id, progress=False)
    assert summary.failed == 2 and summary.ok == run.expected - 2
    with open_run(LOCAL, run.run_id) as store:
        failed = [a for a in store.answers() if a.status == "failed"]
        report = summary_of(store)
    assert {a.question_id for a in failed} == {"nps"} and all(a.value is None for a in failed)
    nps = next(q for q in report["questions"] if q["question_id"] == "nps")
    assert (nps["ok"], nps["failed"], nps["validity"], nps["coverage"]) == (0, 2, 0.0, 0.0)
    assert report["coverage"] == round((run.expected - 2) / run.expected, 4)
    # Resume leaves failures alone; --retry-failed asks them again and replaces them.
    idle = scripted(AssertionError("nothing to ask"))
    with use_models({"twin": idle}):
        run_survey(LOCAL, run.run_id, progress=False)
    log: list[tuple[str, str]] = []
    with use_models({"twin": scripted(answer_bot(BRAND, people, log=log))}):
        summary = run_survey(LOCAL, run.run_id, BatchOptions(retry_failed=True), progress=False)
    assert sorted(log) == [("p0", "nps"), ("p1", "nps")]
    assert summary.failed == 0 and summary.ok == summary.stored == run.expected


def test_server_errors_are_retried_with_backoff_then_stop_the_run() -> None:
    people = people_from(1)
    bot = answer_bot(BRAND, people)
    script: list[Any] = [ModelUnavailableError("blip"), ModelUnavailableError("blip"), *[bot] * 50]
    twin = scripted(*script)
    with use_models({"twin": twin}):
        run = create_survey_run(LOCAL, BRAND, people, BatchOptions(concurrency=1, backoff_s=0, retries=3))
        summary = run_survey(LOCAL, run.run_id, progress=False)
    assert summary.ok == run.expected and summary.calls_failed_now == 0
    # A server that stays down: the run stops after a few units and keeps what it had.
    down = scripted(ModelUnavailableError("down"))
    with use_models({"twin": down}):
        run2 = create_survey_run(
            LOCAL, BRAND, people_from(3), BatchOptions(concurrency=1, backoff_s=0, retries=1)
        )
        summary2 = run_survey(LOCAL, run2.run_id, progress=False, max_consecutive_errors=3)
    assert summary2.stopped and "3 calls in a row failed" in summary2.stopped
    # 3 failed units, plus at most one already in flight; each had 1 try + 1 retry.
    assert summary2.stored == 0 and summary2.calls_failed_now in (3, 4)
    assert len(down.calls) == 2 * summary2.calls_failed_now


def test_time_budget_stops_the_run_and_resume_finishes_it() -> None:
    people = people_from(2)
    bot = answer_bot(BRAND, people)

    def slow(messages):
        time.sleep(0.05)
        return bot(messages)

    with use_models({"twin": scripted(slow)}):
        run = create_survey_run(LOCAL, BRAND, people, BatchOptions(concurrency=1))
        summary = run_survey(LOCAL, run.run_id, progress=False, time_budget_s=0.2)
        assert summary.stopped and "time budget" in summary.stopped
        assert 0 < summary.stored < run.expected
        finished = run_survey(LOCAL, run.run_id, progress=False, time_budget_s=600)
    assert finished.stored == run.expected and finished.stopped is None


def test_rate_limiter_spaces_call_starts() -> None:
    limiter = RateLimiter(20.0)
    started = time.monotonic()
    for _ in range(5):
        limiter.acquire()
    assert time.monotonic() - started >= 0.19
    RateLimiter(None).acquire()  # unlimited: no wait


def test_exports_are_readable_back(tmp_path: Path) -> None:
    people = people_from(3)
    with use_models({"twin": scripted(answer_bot(BRAND, people))}):
        run = create_survey_run(LOCAL, BRAND, people, BatchOptions(mode="per_person"))
        run_survey(LOCAL, run.run_id, progress=False)
    files = export_all(LOCAL, run.run_id, tmp_path / "out")
    sheets = pd.read_excel(files["excel"], sheet_name=None)
    assert set(sheets) == {"brand_en", "summary"}
    wide = sheets["brand_en"]
    assert list(wide["person_id"]) == ["p0", "p1", "p2"]
    assert "arm:price_framing" in wide.columns and "nps" in wide.columns
    assert list(wide["awareness"]) == [1, 2, 3]  # the fake answers code (position % options) + 1
    summary = sheets["summary"]
    assert set(summary["question_id"]) == {q.id for q in BRAND.questions}
    assert summary.set_index("question_id").loc["awareness", "validity"] == 1.0
    with open_run(LOCAL, run.run_id) as store:
        segments = segments_of(store, "age")
        with pytest.raises(RunError, match="attribute: 'planet' is not an attribute"):
            segments_of(store, "planet")
    assert set(segments) == {"20.0", "21.0", "22.0"}
    assert segments["21.0"]["awareness"] == {"n": 1, "mean": 2.0, "distribution": {1: 0, 2: 1, 3: 0, 4: 0}}
    long = pd.read_csv(files["csv"])
    assert len(long) == run.expected and set(long["status"]) == {"ok"}
    import json

    data = json.loads(Path(files["json"]).read_text(encoding="utf-8"))
    assert len(data["answers"]) == run.expected and data["run"]["run_id"] == run.run_id
    assert data["summary"]["coverage"] == 1.0


def test_invalid_options_and_run_ids_name_the_field() -> None:
    with pytest.raises(ValidationError, match="concurrency"):
        BatchOptions(concurrency=0)
    with pytest.raises(ValidationError, match="mode"):
        BatchOptions(mode="per_page")  # type: ignore[arg-type]
    for bad in ("../x", "x\n", ".hidden", "a/b"):
        with pytest.raises(UnsafeIdError, match="^run_id: "):
            run_path(bad)
    with pytest.raises(NotFoundError, match="run_id: no run 'missing'"):
        run_survey(LOCAL, "missing", progress=False)
    people = people_from(1)
    create_survey_run(LOCAL, BRAND, people, BatchOptions(), run_id="fixed")
    with pytest.raises(ConflictError, match="already exists; resume it instead"):
        create_survey_run(LOCAL, BRAND, people, BatchOptions(), run_id="fixed")
    with pytest.raises(RunError, match="respondents: the selection is empty"):
        create_survey_run(LOCAL, BRAND, [], BatchOptions())


def test_progress_object_is_plain_data() -> None:
    progress = Progress(run_id="r", total=3, done=1)
    assert progress.as_dict()["total"] == 3
    assert Counter(progress.as_dict())  # serialisable mapping for the UI


def test_resume_may_change_how_a_run_executes_never_what_it_asks() -> None:
    stored = BatchOptions(mode="per_person", concurrency=1, seed=3)
    given = BatchOptions(mode="per_question", concurrency=8, retries=0, seed=9)
    resumed = stored.resumed_with(given)
    assert (resumed.concurrency, resumed.retries) == (8, 0)
    assert (resumed.mode, resumed.seed) == ("per_person", 3)
    assert stored.resumed_with(None) == stored


def test_execute_stores_each_result_before_counting_it() -> None:
    """The executor on its own: any work and any store writer, progress in steps, statuses counted."""
    people = people_from(3)
    run = create_survey_run(LOCAL, BRAND, people, BatchOptions())
    units = [WorkUnit(p, BRAND.questions[:2]) for p in people]
    written: list[str] = []
    seen: list[tuple[int, int]] = []

    def write(person_id: str) -> list[str]:
        written.append(person_id)
        return ["ok", "failed"]

    with open_run(LOCAL, run.run_id) as store:
        summary = execute(
            store, run.run_id, "survey", units, 6, BatchOptions(concurrency=2), lambda unit: unit.person.id, write,
            progress=False, on_progress=lambda p: seen.append((p.done, p.failed)),
        )  # fmt: skip
    assert sorted(written) == ["p0", "p1", "p2"]
    assert seen[-1] == (6, 3) and summary.asked_now == 6 and summary.stopped is None
