"""Running persona_chat turns for the CLI, the UI, evals and benchmarks.

Adds what a caller needs around the graph: request validation with clear errors, persistence
(checkpointer + store from the factories), token streaming, a thread registry per fan, and a failed
turn that leaves the thread exactly as it was (the fan's message is returned to be retried).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from langchain_core.messages import AIMessage, AIMessageChunk, AnyMessage, HumanMessage, RemoveMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore
from pydantic import BaseModel, Field, ValidationError, field_validator

from graphs.persona_chat import builder
from memory.persistence import make_checkpointer, make_store
from nodes.context import ChatContext
from personas.model import list_personas, persona_dir
from serving.models import ModelError
from serving.settings import get_settings

_ID = re.compile(r"^[A-Za-z0-9_.:@\-]{1,128}$")


class InvalidRequestError(ValueError):
    """A chat request with a bad field; the message names the field and what is allowed."""


class ChatRequest(BaseModel):
    message: str
    user_id: str = "anonymous"
    thread_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    persona_id: str = "stella_yuna"

    @field_validator("message")
    @classmethod
    def _message(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty or whitespace")
        limit = get_settings().max_message_chars
        if len(value) > limit:
            raise ValueError(f"is {len(value)} characters; the maximum is {limit} (MAX_MESSAGE_CHARS)")
        return value

    @field_validator("user_id", "thread_id")
    @classmethod
    def _ident(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError("must be 1-128 characters of letters, digits, _ . : @ -")
        return value

    @field_validator("persona_id")
    @classmethod
    def _persona(cls, value: str) -> str:
        persona_dir(value)  # raises with the list of known personas
        return value


def validate_request(**fields: Any) -> ChatRequest:
    try:
        return ChatRequest(**fields)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InvalidRequestError(problems.replace("Value error, ", "")) from exc


@dataclass
class TurnEvent:
    """One streamed event: a token of the reply, a reset (the draft is being rewritten), or the end."""

    kind: Literal["token", "reset", "final", "error"]
    text: str = ""
    result: TurnResult | None = None


@dataclass
class TurnResult:
    reply: str
    thread_id: str
    intent: str = ""
    sources: list[str] = field(default_factory=list)
    blocks: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


class ChatService:
    """persona_chat compiled with a checkpointer and a store, plus the turn runner."""

    def __init__(self, checkpointer: BaseCheckpointSaver[Any] | None = None, store: BaseStore | None = None):
        self.checkpointer = checkpointer or make_checkpointer()
        self.store = store or make_store()
        self.graph: CompiledStateGraph[Any, Any, Any, Any] = builder.compile(
            checkpointer=self.checkpointer, store=self.store
        )

    def context_for(self, request: ChatRequest, **overrides: Any) -> ChatContext:
        ctx = ChatContext(persona_id=request.persona_id, user_id=request.user_id)
        ctx.max_message_chars = get_settings().max_message_chars
        return replace(ctx, **overrides)

    def stream_turn(self, request: ChatRequest, **context_overrides: Any) -> Iterator[TurnEvent]:
        """Run one turn, yielding reply tokens as the model writes them, then the final result."""
        config: RunnableConfig = {"configurable": {"thread_id": request.thread_id}}
        context = self.context_for(request, **context_overrides)
        human = HumanMessage(content=request.message, id=uuid.uuid4().hex)
        current_id = None
        try:
            for chunk, metadata in self.graph.stream(
                {"messages": [human]}, config, context=context, stream_mode="messages"
            ):
                if not isinstance(metadata, dict) or metadata.get("langgraph_node") != "draft":
                    continue
                if not isinstance(chunk, AIMessageChunk):
                    continue
                if chunk.id != current_id:  # a new model call (language retry or revision)
                    if current_id is not None:
                        yield TurnEvent("reset")
                    current_id = chunk.id
                if chunk.content:
                    yield TurnEvent("token", str(chunk.content))
        except Exception as exc:  # noqa: BLE001 - any failure must leave the thread usable
            message = (
                str(exc) if isinstance(exc, ModelError) else f"internal error: {type(exc).__name__}: {exc}"
            )
            self._roll_back(config, human, message)
            yield TurnEvent(
                "error", message, TurnResult(reply="", thread_id=request.thread_id, error=message)
            )
            return
        values = self.graph.get_state(config).values
        reply = _last_ai_text(values.get("messages", []))
        self._register_thread(request, reply)
        result = TurnResult(
            reply=reply,
            thread_id=request.thread_id,
            intent=values.get("intent", ""),
            sources=list(values.get("sources") or []),
            blocks=[b for b in values.get("blocks", []) if b.get("message_id") == human.id],
        )
        yield TurnEvent("final", reply, result)

    def send(self, request: ChatRequest, **context_overrides: Any) -> TurnResult:
        for event in self.stream_turn(request, **context_overrides):
            if event.kind in ("final", "error") and event.result is not None:
                return event.result
        raise RuntimeError("turn ended without a result")

    def _roll_back(self, config: RunnableConfig, human: HumanMessage, error: str) -> None:
        """Undo a failed turn: drop its message and pending work so the thread stays usable."""
        state = self.graph.get_state(config)
        if not state.values:
            return
        present = {m.id for m in state.values.get("messages", [])}
        removals = [RemoveMessage(id=human.id)] if human.id and human.id in present else []
        self.graph.update_state(config, {"messages": removals, "last_error": error}, as_node="memory_write")

    def history(self, thread_id: str) -> list[AnyMessage]:
        state = self.graph.get_state(RunnableConfig(configurable={"thread_id": thread_id}))
        return list(state.values.get("messages", [])) if state.values else []

    def _register_thread(self, request: ChatRequest, reply: str) -> None:
        namespace = ("threads", request.user_id)
        existing = self.store.get(namespace, request.thread_id)
        title = existing.value["title"] if existing else request.message[:40]
        self.store.put(
            namespace,
            request.thread_id,
            {"title": title, "persona_id": request.persona_id, "updated_at": datetime.now(UTC).isoformat()},
            index=False,
        )

    def threads(self, user_id: str) -> list[dict[str, Any]]:
        """The fan's threads, newest first: [{"thread_id", "title", "persona_id", "updated_at"}]."""
        items = self.store.search(("threads", user_id), limit=100)
        rows = [{"thread_id": item.key, **item.value} for item in items]
        return sorted(rows, key=lambda r: r.get("updated_at", ""), reverse=True)

    @staticmethod
    def personas() -> list[str]:
        return list_personas()


def _last_ai_text(messages: list[AnyMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, AIMessage):
            return str(message.content)
    return ""
