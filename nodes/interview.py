"""Interview nodes: a twin answers guide questions in character; an interviewer (or a person) follows up.

prepare -> next_question -> twin_answer -> interviewer --(follow-up)--> twin_answer
                 ^                      \\-> human_turn (interactive) -/      |
                 +--------------------------(move on)------------------------+
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, SystemMessage
from langgraph.graph.message import add_messages
from langgraph.runtime import Runtime
from langgraph.types import interrupt
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from personagraph.prompts import twins as prompts
from personagraph.prompts import untrusted
from personagraph.serving.models import StructuredOutputError, invoke_text, structured
from personagraph.serving.settings import Role
from personagraph.twins.guides import GuideQuestion, InterviewGuide, guide_from_data

Verdict = Literal["vague", "contradictory", "interesting", "sufficient"]
END_COMMANDS = ("/end", "/quit", "/stop")
NEXT_COMMANDS = ("", "/next", "/skip")


@dataclass(kw_only=True)
class InterviewContext:
    """Knobs of one interview; every field is visible in LangGraph Studio."""

    twin_role: Role = field(default="twin", metadata={"description": "Model role that answers as the twin."})
    interviewer_role: Role = field(
        default="router",
        metadata={"description": "Model role that decides on follow-ups (structured output)."},
    )
    max_followups: int = field(
        default=2,
        metadata={"description": "Most follow-ups per guide question (a question's own limit may be lower)."},
    )
    interactive: bool = field(
        default=False,
        metadata={
            "description": "A person types the follow-ups (interrupt/resume) instead of the interviewer."
        },
    )
    answer_max_tokens: int = field(default=220, metadata={"description": "Longest twin answer, in tokens."})
    history_messages: int = field(
        default=12,
        metadata={"description": "Recent interview messages the twin sees (older ones are dropped)."},
    )


class InterviewInput(TypedDict, total=False):
    """What a caller sends: who is interviewed and the guide."""

    person_id: str
    profile: str  # empty: looked up in the shipped Twin-2K-500 respondents by person_id
    guide: dict[str, Any]  # an interview guide (twins/guides.py)


class InterviewOutput(TypedDict, total=False):
    """What a caller reads back."""

    transcript: Annotated[list[dict[str, Any]], operator.add]
    decisions: Annotated[list[dict[str, Any]], operator.add]
    done: bool


class InterviewState(InterviewInput, InterviewOutput, total=False):
    """Full internal state of an interview."""

    q_index: int  # index of the current guide question
    followups: int  # follow-ups asked on the current guide question
    pending: dict[str, Any] | None  # the next question to put to the twin
    messages: Annotated[list[AnyMessage], add_messages]  # the interview so far, as the twin sees it


class FollowUpDecision(BaseModel):
    """The interviewer's decision after an answer."""

    verdict: Verdict = Field(description="vague, contradictory, interesting or sufficient.")
    follow_up: str = Field(default="", max_length=300, description="One follow-up question, or empty.")


def _guide(state: InterviewState) -> InterviewGuide:
    return guide_from_data(state.get("guide") or {})


def _current(state: InterviewState) -> GuideQuestion:
    return _guide(state).questions[state.get("q_index", 0)]


def followup_limit(state: InterviewState, ctx: InterviewContext) -> int:
    guide = _guide(state)
    question = guide.questions[state.get("q_index", 0)]
    own = question.max_followups if question.max_followups is not None else guide.max_followups
    return min(own, ctx.max_followups)


def context_of(runtime: Runtime[InterviewContext] | None) -> InterviewContext:
    """The run's context, or the defaults when the caller gave none."""
    return runtime.context if runtime is not None and runtime.context is not None else InterviewContext()


def prepare(state: InterviewState) -> dict[str, Any]:
    """Check the guide and find the profile (the shipped respondents by id when none is given)."""
    guide = _guide(state)  # raises GuideError naming the field
    profile = (state.get("profile") or "").strip()
    if not profile:
        from personagraph.twins.respondents import RespondentError, load_twin2k

        person_id = str(state.get("person_id") or "")
        person = load_twin2k().by_id.get(person_id)
        if person is None:
            raise RespondentError(
                f"person_id: {person_id!r} is not a shipped respondent; give a profile instead"
            )
        profile = person.profile
    return {"profile": profile, "guide": guide.model_dump(), "q_index": -1, "followups": 0, "done": False}


def next_question(state: InterviewState) -> dict[str, Any]:
    """Move to the next guide question, or mark the interview done."""
    guide = _guide(state)
    index = state.get("q_index", -1) + 1
    if index >= len(guide.questions):
        return {"q_index": index, "pending": None, "done": True}
    question = guide.questions[index]
    pending = {"question_id": question.id, "kind": "guide", "asked_by": "guide", "text": question.text}
    return {"q_index": index, "followups": 0, "pending": pending}


def twin_system(state: InterviewState) -> str:
    """The person (their profile fenced as data), the interview's context, then the rules."""
    guide = _guide(state)
    language = prompts.LANGUAGE_NAMES.get(guide.language, guide.language)
    profile = untrusted.fence(state.get("profile", ""), "respondent profile", prompts.WHAT_PROFILE)
    parts = [prompts.INTERVIEWEE_ROLE.format(profile=profile)]
    if guide.title or guide.instructions:
        parts.append(
            prompts.INTERVIEW_CONTEXT.format(title=guide.title, instructions=guide.instructions).strip()
        )
    parts.append(prompts.INTERVIEWEE_RULES.format(language_name=language))
    return "\n\n".join(parts)


def twin_answer(state: InterviewState, runtime: Runtime[InterviewContext]) -> dict[str, Any]:
    """The twin answers the pending question in character, seeing the recent interview."""
    ctx = context_of(runtime)
    pending = state.get("pending") or {}
    history: list[BaseMessage] = []
    history.extend(state.get("messages") or [])
    history = history[-ctx.history_messages :]
    question = HumanMessage(content=pending.get("text", ""))
    reply = invoke_text(
        ctx.twin_role,
        [SystemMessage(content=twin_system(state)), *history, question],
        max_tokens=ctx.answer_max_tokens,
    )
    answer = str(reply.content).strip()
    entry = {**pending, "answer": answer}
    return {"transcript": [entry], "messages": [question, AIMessage(content=answer)], "pending": None}


def _exchange(state: InterviewState, question_id: str) -> tuple[str, str]:
    this: list[str] = []
    earlier: list[str] = []
    for entry in state.get("transcript") or []:
        line = f"Q ({entry.get('asked_by')}): {entry.get('text')}\nA: {entry.get('answer')}"
        (this if entry.get("question_id") == question_id else earlier).append(line)
    return "\n".join(this), "\n".join(earlier[-6:]) or "(none)"


def interviewer(state: InterviewState, runtime: Runtime[InterviewContext]) -> dict[str, Any]:
    """Decide whether the last answer deserves a follow-up (vague, contradictory or interesting)."""
    ctx = context_of(runtime)
    guide = _guide(state)
    question = _current(state)
    exchange, earlier = _exchange(state, question.id)
    language = prompts.LANGUAGE_NAMES.get(guide.language, guide.language)
    try:
        decision = structured(
            ctx.interviewer_role,
            FollowUpDecision,
            [
                SystemMessage(content=prompts.INTERVIEWER_SYSTEM),
                HumanMessage(
                    content=prompts.INTERVIEWER_TASK.format(
                        question=question.text,
                        goal=f"Goal of the question: {question.goal}" if question.goal else "",
                        exchange=untrusted.fence(exchange, "interview", prompts.WHAT_EXCHANGE),
                        earlier=untrusted.fence(earlier, "earlier answers", prompts.WHAT_EARLIER),
                        language_name=language,
                        data_rule=untrusted.DATA_RULE,
                    )
                ),
            ],
            max_tokens=160,
        )
    except StructuredOutputError as exc:  # an undecidable reply is not worth failing the interview
        decision = FollowUpDecision(verdict="sufficient")
        record: dict[str, Any] = {
            "question_id": question.id,
            "verdict": "sufficient",
            "error": str(exc)[:300],
        }
        return {"decisions": [record]}
    follow = decision.verdict != "sufficient" and bool(decision.follow_up.strip())
    record = {
        "question_id": question.id,
        "verdict": decision.verdict,
        "follow_up": decision.follow_up.strip(),
    }
    update: dict[str, Any] = {"decisions": [record]}
    if follow:
        update["pending"] = {
            "question_id": question.id, "kind": "followup", "asked_by": "interviewer",
            "text": decision.follow_up.strip(), "because": decision.verdict,
        }  # fmt: skip
        update["followups"] = state.get("followups", 0) + 1
    return update


def human_turn(state: InterviewState) -> dict[str, Any]:
    """Interactive mode: wait for the person's follow-up (resume with text), '/next' or '/end'."""
    question = _current(state)
    last = (state.get("transcript") or [{}])[-1]
    reply = interrupt(
        {
            "person_id": state.get("person_id"),
            "question_id": question.id,
            "question": last.get("text"),
            "answer": last.get("answer"),
            "followups_asked": state.get("followups", 0),
            "next_question": _next_text(state),
            "hint": "Type a follow-up question, or send '/next' (or nothing) to move on, '/end' to finish.",
        }
    )
    text = str(reply.get("text", "") if isinstance(reply, dict) else reply or "").strip()
    if text.lower() in END_COMMANDS:
        return {"done": True, "pending": None}
    if text.lower() in NEXT_COMMANDS:
        return {"pending": None}
    pending = {"question_id": question.id, "kind": "followup", "asked_by": "human", "text": text}
    return {"pending": pending, "followups": state.get("followups", 0) + 1}


def _next_text(state: InterviewState) -> str | None:
    guide = _guide(state)
    index = state.get("q_index", 0) + 1
    return guide.questions[index].text if index < len(guide.questions) else None


# --- routers (pure functions of the state) ----------------------------------------------------------
