"""Persona chat over HTTP: send (JSON or Server-Sent Events), regenerate, edit an earlier message,
stop (keeping the partial reply or not), branches, ratings and their export as DPO pairs, threads,
history, and what the persona remembers about you (read, edit, forget). Every call is the signed-in
caller's own: the service refuses someone else's thread with 404.

Generation settings (`temperature` 0-2, `top_p` above 0 up to 1, `max_tokens` 1-4096) are optional on
send, regenerate and edit; a bad value is a 400 naming the field and its range.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from personagraph.accounts.identity import NotFoundError
from personagraph.api.deps import CallerDep, ChatDep
from personagraph.api.streaming import turn_response, wants_stream
from personagraph.services.chat import GenerationSettings, validate_request, validate_settings

router = APIRouter(prefix="/api/chat", tags=["chat"])
DEFAULT_PERSONA = "stella_yuna"


class Settings(BaseModel):
    """Generation settings of the reply; left out: the chat role's configured values. Their ranges
    are checked by the service (a 400 naming the field and the allowed values)."""

    model_config = ConfigDict(extra="forbid")
    temperature: float | None = Field(default=None, description="Sampling temperature, 0 to 2.")
    top_p: float | None = Field(default=None, description="Nucleus sampling, above 0 up to 1.")
    max_tokens: int | None = Field(default=None, description="Most tokens in the reply, 1 to 4096.")

    def checked(self) -> GenerationSettings:
        return validate_settings(temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens)


class SendBody(Settings):
    model_config = ConfigDict(extra="forbid")  # a `user_id` in the body is refused: you are who signed in
    message: str = Field(description="The fan's message.")
    persona_id: str = Field(default=DEFAULT_PERSONA)
    thread_id: str | None = Field(default=None, description="Continue this thread; none starts a new one.")
    stream: bool = Field(
        default=False,
        description="Answer with Server-Sent Events: token (checked sentences), reset, final, error.",
    )


class RegenerateBody(Settings):
    model_config = ConfigDict(extra="forbid")
    persona_id: str | None = Field(default=None, description="Default: the thread's persona.")
    stream: bool = False


class EditBody(Settings):
    model_config = ConfigDict(extra="forbid")
    message_id: str = Field(description="The id of the earlier fan message to replace (from the history).")
    message: str = Field(description="The new text of that message.")
    persona_id: str | None = Field(default=None, description="Default: the thread's persona.")
    stream: bool = False


class StopBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keep_partial: bool = Field(
        default=False, description="Keep the part of the reply already shown (else the turn is undone)."
    )


class RatingBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message_id: str = Field(
        description="The id of the persona's reply (from the history or a turn's result)."
    )
    rating: str = Field(description="up, down, or none to take a rating back.")
    reason: str = Field(default="", description="Optional, up to 500 characters.")


class ProfileBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profile: dict[str, Any] = Field(description="The whole edited profile; {} deletes it.")


@router.post("/send", name="chat_send")
def send(body: SendBody, request: Request, caller: CallerDep, chat: ChatDep) -> Response:
    """One turn. With `stream` (or `Accept: text/event-stream`) the reply streams as Server-Sent Events."""
    fields: dict[str, Any] = {"message": body.message, "persona_id": body.persona_id}
    fields |= {k: v for k, v in body.checked().model_dump().items() if v is not None}
    if body.thread_id is not None:
        fields["thread_id"] = body.thread_id
    chat_request = validate_request(**fields)
    events = chat.stream_turn(caller, chat_request)
    return turn_response(events, stream=wants_stream(request, body.stream), thread_id=chat_request.thread_id)


@router.post("/threads/{thread_id}/regenerate", name="chat_regenerate")
def regenerate(
    thread_id: str, request: Request, caller: CallerDep, chat: ChatDep, body: RegenerateBody | None = None
) -> Response:
    """A new reply to the thread's last message (SSE or JSON, as for send); the previous reply stays
    as an alternative (see the history's `alternatives` and the branches)."""
    body = body or RegenerateBody()
    events = chat.regenerate(caller, thread_id, persona_id=body.persona_id, settings=body.checked())
    return turn_response(iter(events), stream=wants_stream(request, body.stream), thread_id=thread_id)


@router.post("/threads/{thread_id}/edit", name="chat_edit")
def edit(thread_id: str, body: EditBody, request: Request, caller: CallerDep, chat: ChatDep) -> Response:
    """Replace an earlier fan message and continue from there (SSE or JSON, as for send). The later
    turns are kept as another branch of the thread."""
    events = chat.edit(
        caller, thread_id, body.message_id, body.message, persona_id=body.persona_id, settings=body.checked()
    )
    return turn_response(iter(events), stream=wants_stream(request, body.stream), thread_id=thread_id)


@router.post("/threads/{thread_id}/stop", name="chat_stop")
def stop(thread_id: str, caller: CallerDep, chat: ChatDep, body: StopBody | None = None) -> dict[str, Any]:
    """Stop the thread's running turn. With `keep_partial` the thread keeps what was shown of the
    reply (the turn's result says `stopped: true`); else the turn is undone."""
    keep = bool(body and body.keep_partial)
    return {"thread_id": thread_id, "stopped": bool(chat.stop(caller, thread_id, keep_partial=keep))}


@router.get("/threads/{thread_id}/branches", name="chat_branches")
def branches(thread_id: str, caller: CallerDep, chat: ChatDep) -> dict[str, Any]:
    """The thread's branches (edits and regenerated replies start new ones), newest first."""
    return {"thread_id": thread_id, "branches": chat.branches(caller, thread_id)}


@router.post("/threads/{thread_id}/branches/{branch_id}", name="chat_switch_branch")
def switch_branch(thread_id: str, branch_id: str, caller: CallerDep, chat: ChatDep) -> dict[str, Any]:
    """Make a branch the thread's current conversation again; returns its messages."""
    messages = chat.switch_branch(caller, thread_id, branch_id)
    return {"thread_id": thread_id, "branch_id": branch_id, "messages": [_message(m) for m in messages]}


@router.post("/threads/{thread_id}/feedback", name="chat_feedback")
def feedback(thread_id: str, body: RatingBody, caller: CallerDep, chat: ChatDep) -> dict[str, Any]:
    """Thumbs up or down on one of the persona's replies, with an optional reason ("none" clears it)."""
    return {"thread_id": thread_id, **chat.rate(caller, thread_id, body.message_id, body.rating, body.reason)}


@router.get("/feedback/export", name="chat_feedback_export")
def export_feedback(caller: CallerDep, chat: ChatDep, persona_id: str | None = None) -> Response:
    """Your ratings as DPO preference pairs, one JSON object a line (TRL: prompt/chosen/rejected):
    a reply rated up and another reply to the same message rated down make one pair."""
    pairs = chat.export_preferences(caller, persona_id=persona_id)
    text = "".join(json.dumps(pair, ensure_ascii=False) + "\n" for pair in pairs)
    return Response(
        text,
        media_type="application/jsonl",
        headers={"Content-Disposition": 'attachment; filename="preferences.jsonl"'},
    )


@router.get("/threads", name="chat_threads")
def threads(caller: CallerDep, chat: ChatDep) -> dict[str, Any]:
    """Your threads, newest first."""
    return {"threads": chat.threads(caller)}


@router.get("/threads/{thread_id}", name="chat_history")
def history(thread_id: str, caller: CallerDep, chat: ChatDep) -> dict[str, Any]:
    """The thread's messages, oldest first. Each reply carries your rating (if any) and its
    alternatives: other replies written to the same point (regenerated, or on another branch)."""
    messages = chat.history(caller, thread_id)
    if not messages:
        raise NotFoundError(f"thread_id: you have no thread {thread_id!r}")
    alternatives = chat.alternatives(caller, thread_id)
    rated = chat.ratings(caller, thread_id)
    rows = []
    for m in messages:
        if m.type not in ("human", "ai"):
            continue
        row = _message(m)
        if m.type == "ai":
            row["alternatives"] = alternatives.get(str(m.id), [])
            row["rating"] = rated.get(str(m.id))
        rows.append(row)
    return {"thread_id": thread_id, "messages": rows}


def _message(message: Any) -> dict[str, Any]:
    row = {"role": _role(message.type), "content": str(message.content), "id": message.id}
    if message.type == "ai" and (message.response_metadata or {}).get("stopped"):
        row["stopped"] = True
    return row


def _role(message_type: str) -> str:
    return "user" if message_type == "human" else "assistant"


@router.get("/profile/{persona_id}", name="chat_profile")
def profile(persona_id: str, caller: CallerDep, chat: ChatDep) -> dict[str, Any]:
    """What the persona remembers about you: your profile and the things you said, newest first."""
    return {
        "persona_id": persona_id,
        "profile": chat.get_profile(caller, persona_id),
        "memories": chat.memories(caller, persona_id),
    }


@router.put("/profile/{persona_id}", name="chat_profile_update")
def update_profile(persona_id: str, body: ProfileBody, caller: CallerDep, chat: ChatDep) -> dict[str, Any]:
    """Replace your profile for this persona with an edited one (validated)."""
    return {"persona_id": persona_id, "profile": chat.update_profile(caller, persona_id, body.profile)}


@router.delete("/profile/{persona_id}", name="chat_forget")
def forget(persona_id: str, caller: CallerDep, chat: ChatDep, threads: bool = False) -> dict[str, Any]:
    """Forget you: profile, memories and summaries; with `?threads=true` your threads with the persona too."""
    return {"persona_id": persona_id, "deleted": chat.forget(caller, persona_id, threads=threads)}
