"""Persona chat over HTTP: send (JSON or Server-Sent Events), regenerate, stop, threads, history, and what
the persona remembers about you (read, edit, forget). Every call is the signed-in caller's own:
the service refuses someone else's thread with 404.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from personagraph.accounts.identity import NotFoundError
from personagraph.api.deps import CallerDep, ChatDep
from personagraph.api.streaming import turn_response, wants_stream
from personagraph.services.chat import validate_request

router = APIRouter(prefix="/api/chat", tags=["chat"])
DEFAULT_PERSONA = "stella_yuna"


class SendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a `user_id` in the body is refused: you are who signed in
    message: str = Field(description="The fan's message.")
    persona_id: str = Field(default=DEFAULT_PERSONA)
    thread_id: str | None = Field(default=None, description="Continue this thread; none starts a new one.")
    stream: bool = Field(
        default=False,
        description="Answer with Server-Sent Events: token (checked sentences), reset, final, error.",
    )


class RegenerateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    persona_id: str | None = Field(default=None, description="Default: the thread's persona.")
    stream: bool = False


class ProfileBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profile: dict[str, Any] = Field(description="The whole edited profile; {} deletes it.")


@router.post("/send", name="chat_send")
def send(body: SendBody, request: Request, caller: CallerDep, chat: ChatDep) -> Response:
    """One turn. With `stream` (or `Accept: text/event-stream`) the reply streams as Server-Sent Events."""
    fields: dict[str, Any] = {"message": body.message, "persona_id": body.persona_id}
    if body.thread_id is not None:
        fields["thread_id"] = body.thread_id
    chat_request = validate_request(**fields)
    events = chat.stream_turn(caller, chat_request)
    return turn_response(events, stream=wants_stream(request, body.stream), thread_id=chat_request.thread_id)


@router.post("/threads/{thread_id}/regenerate", name="chat_regenerate")
def regenerate(
    thread_id: str, request: Request, caller: CallerDep, chat: ChatDep, body: RegenerateBody | None = None
) -> Response:
    """Re-run the thread's last message and replace its reply (SSE or JSON, as for send)."""
    body = body or RegenerateBody()
    events = chat.regenerate(caller, thread_id, persona_id=body.persona_id)
    return turn_response(iter(events), stream=wants_stream(request, body.stream), thread_id=thread_id)


@router.post("/threads/{thread_id}/stop", name="chat_stop")
def stop(thread_id: str, caller: CallerDep, chat: ChatDep) -> dict[str, Any]:
    """Stop the thread's running turn (its partial reply is not kept)."""
    return {"thread_id": thread_id, "stopped": bool(chat.stop(caller, thread_id))}


@router.get("/threads", name="chat_threads")
def threads(caller: CallerDep, chat: ChatDep) -> dict[str, Any]:
    """Your threads, newest first."""
    return {"threads": chat.threads(caller)}


@router.get("/threads/{thread_id}", name="chat_history")
def history(thread_id: str, caller: CallerDep, chat: ChatDep) -> dict[str, Any]:
    """The thread's messages, oldest first."""
    messages = chat.history(caller, thread_id)
    if not messages:
        raise NotFoundError(f"thread_id: you have no thread {thread_id!r}")
    return {
        "thread_id": thread_id,
        "messages": [
            {"role": _role(m.type), "content": str(m.content), "id": m.id}
            for m in messages
            if m.type in ("human", "ai")
        ],
    }


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
