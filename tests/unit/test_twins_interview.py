"""twin_interview: the follow-up edge both ways, the per-question cap, interactive interrupt/resume,
resumable batch interviews and transcripts."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command

from personagraph.graphs.twin_interview import build, graph
from personagraph.nodes.interview import InterviewContext, InterviewInput
from personagraph.services.twins.executor import BatchOptions
from personagraph.services.twins.exports import export_all
from personagraph.services.twins.interviews import InterviewSession, create_interview_run, run_interviews
from personagraph.services.twins.store import open_run
from personagraph.serving.models import use_models
from personagraph.serving.settings import REPO_ROOT
from personagraph.twins.guides import GuideError, guide_from_data, load_guide
from tests.fakes import scripted
from tests.unit.twins_support import LOCAL, people_from

GUIDE = guide_from_data(
    {
        "id": "g",
        "title": "Tea habits",
        "max_followups": 2,
        "questions": [
            {"id": "q1", "text": "How do you drink tea?", "goal": "routine"},
            {"id": "q2", "text": "Why tea and not coffee?"},
        ],
    }
)
PERSON = people_from(1)[0]
SUFFICIENT = {"verdict": "sufficient", "follow_up": ""}


def run_batch_interview(twin, router, context: InterviewContext | None = None) -> dict:
    payload: InterviewInput = {"person_id": PERSON.id, "profile": PERSON.profile, "guide": GUIDE.model_dump()}
    with use_models({"twin": twin, "router": router}):
        return graph.invoke(payload, context=context or InterviewContext())


def test_vague_answer_gets_a_follow_up_then_moves_on() -> None:
    twin = scripted("Sometimes.", "Green tea after lunch, every day, with my colleagues.", "It is calmer.")
    router = scripted(
        {"verdict": "vague", "follow_up": "Can you describe a typical day?"}, SUFFICIENT, SUFFICIENT
    )
    out = run_batch_interview(twin, router)
    transcript = out["transcript"]
    assert [(e["question_id"], e["asked_by"]) for e in transcript] == [
        ("q1", "guide"), ("q1", "interviewer"), ("q2", "guide"),
    ]  # fmt: skip
    assert transcript[1]["text"] == "Can you describe a typical day?" and transcript[1]["because"] == "vague"
    assert transcript[1]["answer"].startswith("Green tea")
    assert [d["verdict"] for d in out["decisions"]] == ["vague", "sufficient", "sufficient"]
    assert out["done"] is True
    # The twin saw its profile and the earlier exchange when answering the follow-up.
    follow_call = twin.calls[1]["messages"]
    assert PERSON.profile in follow_call[0].content
    assert [m.content for m in follow_call[1:]] == [
        "How do you drink tea?",
        "Sometimes.",
        "Can you describe a typical day?",
    ]
    # The interviewer saw the guide question, its goal and the answer.
    assert "Goal of the question: routine" in router.calls[0]["messages"][1].content
    assert "A: Sometimes." in router.calls[0]["messages"][1].content


def test_sufficient_answers_move_straight_on() -> None:
    twin = scripted("Black tea with milk, twice a day.", "Coffee makes me jittery.")
    router = scripted(SUFFICIENT)
    out = run_batch_interview(twin, router)
    assert [e["asked_by"] for e in out["transcript"]] == ["guide", "guide"]
    assert len(twin.calls) == 2 and len(router.calls) == 2


def test_follow_ups_are_capped_per_question() -> None:
    twin = scripted("Hmm.")
    router = scripted({"verdict": "interesting", "follow_up": "Tell me more?"})
    out = run_batch_interview(twin, router, InterviewContext(max_followups=1))
    kinds = [(e["question_id"], e["kind"]) for e in out["transcript"]]
    assert kinds == [("q1", "guide"), ("q1", "followup"), ("q2", "guide"), ("q2", "followup")]
    assert len(router.calls) == 2  # not asked again once the cap is reached
    # A question's own limit of 0: no follow-up and no interviewer call for it.
    guide = GUIDE.model_copy(deep=True)
    guide.questions[0].max_followups = 0
    payload: InterviewInput = {"person_id": "p0", "profile": PERSON.profile, "guide": guide.model_dump()}
    router2 = scripted({"verdict": "interesting", "follow_up": "More?"})
    with use_models({"twin": scripted("Hmm."), "router": router2}):
        out2 = graph.invoke(payload, context=InterviewContext(max_followups=2))
    assert [(e["question_id"], e["kind"]) for e in out2["transcript"]] == [
        ("q1", "guide"), ("q2", "guide"), ("q2", "followup"), ("q2", "followup"),
    ]  # fmt: skip


def test_undecidable_interviewer_reply_moves_on() -> None:
    out = run_batch_interview(scripted("Fine."), scripted("not json at all"))
    assert [e["asked_by"] for e in out["transcript"]] == ["guide", "guide"]
    assert all(d["verdict"] == "sufficient" and "error" in d for d in out["decisions"])


def test_interactive_interrupt_and_resume_on_the_same_thread(tmp_path: Path) -> None:
    conn = sqlite3.connect(str(tmp_path / "cp.sqlite"), check_same_thread=False)
    saver = SqliteSaver(conn)
    twin = scripted("I drink green tea.", "Because my mother did.", "Coffee is bitter.")
    router = scripted(AssertionError("the interviewer is not used in interactive mode"))
    with use_models({"twin": twin, "router": router}):
        session = InterviewSession(LOCAL, saver)
        turn = session.start(PERSON, GUIDE)
        thread = turn.thread_id
        assert turn.waiting is not None and turn.waiting["answer"] == "I drink green tea."
        assert (
            turn.waiting["question_id"] == "q1" and turn.waiting["next_question"] == "Why tea and not coffee?"
        )
        # A new session object on the same checkpointer (e.g. another request) resumes the thread.
        turn = InterviewSession(LOCAL, saver).reply(thread, "Why green tea?")
        assert turn.waiting is not None
        assert (
            turn.waiting["question"] == "Why green tea?"
            and turn.waiting["answer"] == "Because my mother did."
        )
        turn = session.reply(thread, "/next")
        assert turn.waiting is not None
        assert turn.waiting["question_id"] == "q2" and turn.waiting["answer"] == "Coffee is bitter."
        turn = session.reply(thread, "")
    assert turn.done and turn.waiting is None
    assert [(e["question_id"], e["asked_by"]) for e in turn.transcript] == [
        ("q1", "guide"), ("q1", "human"), ("q2", "guide"),
    ]  # fmt: skip
    assert router.calls == []
    conn.close()


def test_interactive_end_and_raw_command_resume() -> None:
    compiled = build(InMemorySaver())
    config: RunnableConfig = {"configurable": {"thread_id": "t-2"}}
    payload: InterviewInput = {"person_id": "p0", "profile": PERSON.profile, "guide": GUIDE.model_dump()}
    ctx = InterviewContext(interactive=True)
    with use_models({"twin": scripted("Answer one.")}):
        first = compiled.invoke(payload, config, context=ctx)
        assert first["__interrupt__"][0].value["answer"] == "Answer one."
        final = compiled.invoke(Command(resume="/end"), config, context=ctx)
    assert "__interrupt__" not in final and final["done"] is True and len(final["transcript"]) == 1


def test_profile_is_looked_up_by_person_id_when_missing() -> None:
    twin_calls = scripted("ok")
    with use_models({"twin": twin_calls, "router": scripted(SUFFICIENT)}):
        graph.invoke({"person_id": "1", "guide": GUIDE.model_dump()})  # no context: the defaults
    assert "Female, age 30-49, lives in the Midwest" in twin_calls.calls[0]["messages"][0].content


def test_batch_interviews_resume_mid_interview_and_export_transcripts(tmp_path: Path) -> None:
    people = people_from(3)
    calls = {"n": 0}

    def twin_reply(messages):
        calls["n"] += 1
        if calls["n"] == 4:  # p1's second answer: the process dies mid-interview
            raise RuntimeError("killed")
        return f"answer {calls['n']}"

    with use_models({"twin": scripted(twin_reply), "router": scripted(SUFFICIENT)}):
        run_id = create_interview_run(LOCAL, GUIDE, people, BatchOptions(concurrency=1))
        with pytest.raises(RuntimeError, match="killed"):
            run_interviews(LOCAL, run_id, progress=False)
    with open_run(LOCAL, run_id) as store:
        assert store.interviewed() == {"p0"}
    twin = scripted("later answer")
    with use_models({"twin": twin, "router": scripted(SUFFICIENT)}):
        summary = run_interviews(LOCAL, run_id, progress=False)
    # Answers given before the crash are not asked again: p1 resumes from its checkpoint after its
    # first answer; p2 either finished during shutdown (stored now from its checkpoint) or runs now.
    answered_before = calls["n"] - 1
    assert len(twin.calls) == 2 * len(people) - answered_before
    assert summary.ok == summary.stored == 3
    files = export_all(LOCAL, run_id, tmp_path / "out")
    folder = Path(files["transcripts_dir"])
    assert sorted(p.name for p in folder.iterdir()) == [
        "all.json",
        "p0.json",
        "p0.md",
        "p1.json",
        "p1.md",
        "p2.json",
        "p2.md",
    ]
    p1 = json.loads((folder / "p1.json").read_text())
    assert [e["answer"] for e in p1["transcript"]["transcript"]] == ["answer 3", "later answer"]
    markdown = (folder / "p1.md").read_text()
    assert "# Tea habits: respondent p1" in markdown and "**Interviewer:** How do you drink tea?" in markdown
    assert "**Respondent p1:** answer 3" in markdown


def test_guides_validate_and_ship() -> None:
    for name in ("ai_at_work_en.yaml", "ai_at_work_ko.yaml"):
        guide = load_guide(REPO_ROOT / "data" / "interviews" / name)
        assert len(guide.questions) == 5 and guide.questions[-1].max_followups == 1
    with pytest.raises(GuideError, match="question 'x': field 'max_followups'"):
        guide_from_data({"questions": [{"id": "x", "text": "Hi?", "max_followups": 99}]})
    with pytest.raises(GuideError, match="question 'y': field 'text'"):
        guide_from_data({"questions": [{"id": "y", "text": ""}]})
    with pytest.raises(GuideError, match="duplicate question id 'a'"):
        guide_from_data({"questions": [{"id": "a", "text": "1"}, {"id": "a", "text": "2"}]})
    assert guide_from_data({"questions": ["Just a string?"]}).questions[0].id == "q1"


def test_graph_is_registered_with_a_described_context() -> None:
    config = json.loads((REPO_ROOT / "langgraph.json").read_text())
    assert config["graphs"]["twin_interview"] == "./graphs/twin_interview.py:graph"
    assert all(f.metadata.get("description") for f in dataclasses.fields(InterviewContext))
    assert set(graph.get_graph().nodes) >= {
        "prepare",
        "next_question",
        "twin_answer",
        "interviewer",
        "human_turn",
    }
