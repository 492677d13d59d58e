"""Running persona_chat turns for the UI, the HTTP API, the CLI, evals and benchmarks.

Adds what a caller needs around the graph: request validation with clear errors, persistence
(checkpointer + store from the factories), streaming of checked text only, a thread registry per
fan, Stop, and a failed or stopped turn that leaves the thread and the fan's memory exactly as they
were (the fan's message is returned to be retried).

Streaming: the graph's custom events only (see nodes/output_checks.py): sentences released after the
output checks, and resets when a revision, refusal or rewrite replaces them. No model token is ever
read here, so none can reach a reader; what is streamed after the last reset is the final reply.

Every method takes the `Caller` first. The fan is always `caller.user_id` (never a form field):
memories, profile and summaries are kept under it, and a thread's checkpoint is stored under
`"<user_id>/<thread_id>"`, so one account's thread id can never reach another account's
conversation. Chat data is private: admins get no override here. Someone else's thread looks
missing (NotFoundError); imported personas follow `personas.model.persona_for`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, RemoveMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from personagraph.accounts.identity import Caller, ConflictError, ForbiddenError, NotFoundError
from personagraph.graphs.persona_chat import build
from personagraph.memory.fan_memory import (
    FanProfile,
    TurnItems,
    all_items,
    forget_fan,
    memories_namespace,
    read_profile,
    restore_turn,
    threads_namespace,
    turn_items,
    write_profile,
)
from personagraph.memory.persistence import make_checkpointer, make_store
from personagraph.nodes.context import ChatContext
from personagraph.personas.cards import CardError, check_card_size, load_card, slugify
from personagraph.personas.cards import export_card as card_of_persona
from personagraph.personas.cards import import_card as write_card_persona
from personagraph.personas.model import (
    PERSONA_ID_RULE,
    Persona,
    check_persona_id,
    list_personas,
    load_persona,
    persona_for,
    persona_owner,
    public_personas,
    visible_personas,
)
from personagraph.serving.metrics import observe_first_token
from personagraph.serving.models import ModelError
from personagraph.serving.redact import user_error
from personagraph.serving.safe_paths import SAFE_ID_RULE, UnsafeIdError, check_id, child_path, confined_path
from personagraph.serving.settings import get_settings
from personagraph.serving.text import check_text, is_text, text_problem
from personagraph.serving.tracing import run_config

log = logging.getLogger(__name__)

DEFAULT_PERSONA = "stella_yuna"
STOPPED = "stopped"
CardSource = str | os.PathLike[str] | bytes | dict[str, Any]


class InvalidRequestError(ValueError):
    """A chat request with a bad field; the message names the field and what is allowed."""


class ChatRequest(BaseModel):
    """One fan message. There is no user id: the fan is the signed-in caller."""

    model_config = ConfigDict(extra="forbid")

    message: str
    thread_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    persona_id: str = DEFAULT_PERSONA

    @field_validator("message")
    @classmethod
    def _message(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty or whitespace")
        if not is_text(value):
            raise ValueError(text_problem("message").removeprefix("message: "))
        limit = get_settings().max_message_chars
        if len(value) > limit:
            raise ValueError(f"is {len(value)} characters; the maximum is {limit} (MAX_MESSAGE_CHARS)")
        return value

    @field_validator("thread_id")
    @classmethod
    def _ident(cls, value: str) -> str:
        if not isinstance(value, str) or not _valid(check_id, value):
            raise ValueError(f"{value!r} is not a valid id; use {SAFE_ID_RULE}")
        return value

    @field_validator("persona_id")
    @classmethod
    def _persona(cls, value: str) -> str:
        # Only the form here; whether the caller may use the persona is checked with the caller.
        if not isinstance(value, str) or not _valid(check_persona_id, value):
            raise ValueError(f"{value!r} is not a valid id; use {PERSONA_ID_RULE}")
        return value


def _valid(check: Any, value: str) -> bool:
    try:
        check(value, "id")
    except UnsafeIdError:
        return False
    return True


def validate_request(**fields: Any) -> ChatRequest:
    try:
        return ChatRequest(**fields)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"])
            if e["type"] == "extra_forbidden":
                allowed = ", ".join(ChatRequest.model_fields)
                problems.append(
                    f"{where}: not a request field (allowed: {allowed}); the fan is the signed-in account"
                )
            else:
                problems.append(f"{where}: {str(e['msg']).removeprefix('Value error, ')}")
        raise InvalidRequestError("; ".join(problems)) from exc


def validate_profile(profile: dict[str, Any] | str) -> dict[str, Any]:
    """A fan-edited profile (dict or JSON text), cleaned: empty fields dropped, facts de-duplicated."""
    if isinstance(profile, str):
        try:
            profile = json.loads(profile) if profile.strip() else {}
        except json.JSONDecodeError as exc:
            raise InvalidRequestError(f"profile: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    if not isinstance(profile, dict):
        raise InvalidRequestError(f"profile: must be a JSON object; got {type(profile).__name__}")
    try:
        parsed = FanProfile.model_validate(profile)
    except ValidationError as exc:
        allowed = ", ".join(f for f in FanProfile.model_fields if f != "updated_at")
        problems = []
        for e in exc.errors():
            path = ".".join(str(p) for p in ("profile", *e["loc"]))
            message = f"unknown field; allowed: {allowed}" if e["type"] == "extra_forbidden" else e["msg"]
            message = message.removeprefix("Value error, ")
            problems.append(f"{path}: {message}")
        raise InvalidRequestError("; ".join(problems)) from exc
    cleaned: dict[str, Any] = {}
    for key, value in parsed.model_dump(exclude={"facts", "updated_at"}).items():
        if value and value.strip():
            cleaned[key] = value.strip()
    facts: list[str] = []
    for fact in parsed.facts:
        if fact.strip() and fact.strip() not in facts:
            facts.append(fact.strip())
    if facts:
        cleaned["facts"] = facts
    _check_profile_text(cleaned)
    return cleaned


def _check_profile_text(profile: dict[str, Any]) -> None:
    """InvalidRequestError naming the field when a value cannot be stored (an unpaired surrogate)."""
    for key, value in profile.items():
        values = value if isinstance(value, list) else [value]
        for index, text in enumerate(values):
            field = f"profile.{key}.{index}" if isinstance(value, list) else f"profile.{key}"
            check_text(text, field, InvalidRequestError)


def _owner(caller: Caller) -> str:
    """The caller's user id, checked: it names store namespaces and prefixes checkpoint keys."""
    try:
        return check_id(caller.user_id, "user_id")
    except UnsafeIdError as exc:
        raise InvalidRequestError(str(exc)) from exc


def _thread(thread_id: object) -> str:
    try:
        return check_id(thread_id, "thread_id")
    except UnsafeIdError as exc:
        raise InvalidRequestError(str(exc)) from exc


def _persona_id(persona_id: object) -> str:
    try:
        return check_persona_id(persona_id)
    except UnsafeIdError as exc:
        raise InvalidRequestError(str(exc)) from exc


def thread_key(user_id: str, thread_id: str) -> str:
    """The checkpointer's thread id: owner-scoped. Ids cannot contain '/', so keys never collide."""
    return f"{user_id}/{thread_id}"


@dataclass
class _Snapshot:
    """A thread before a turn: its message ids, and the store items the turn may write as they were."""

    messages: set[str]
    items: TurnItems


class _Stopped(Exception):
    """Raised inside a turn's stream loop when the fan pressed Stop."""


@dataclass
class TurnEvent:
    """One streamed event: checked text of the reply ("token": one or more sentences that passed the
    output checks, to append), a reset (what was shown is withdrawn; a replacement follows), or the
    end ("final" with the result, or "error"). The reply is what was streamed after the last reset."""

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
    retrieved: list[dict[str, Any]] = field(default_factory=list)  # {"source", "category", "score", "text"}


class ChatService:
    """persona_chat compiled with a checkpointer and a store, plus the turn runner."""

    def __init__(self, checkpointer: BaseCheckpointSaver[Any] | None = None, store: BaseStore | None = None):
        self.checkpointer = checkpointer or make_checkpointer()
        self.store = store or make_store()
        self.graph: CompiledStateGraph[Any, Any, Any, Any] = build(self.checkpointer, self.store)
        # Turns being written, by owner-scoped thread key: Stop sets the event, the stream loop reads it.
        self._running: dict[str, threading.Event] = {}
        self._running_lock = threading.Lock()

    @staticmethod
    def _config(key: str) -> RunnableConfig:
        return {"configurable": {"thread_id": key}}

    def context_for(self, caller: Caller, request: ChatRequest, **overrides: Any) -> ChatContext:
        fixed = {"user_id", "persona_id"} & set(overrides)
        if fixed:
            raise InvalidRequestError(f"{', '.join(sorted(fixed))}: set by the caller and the request")
        ctx = ChatContext(persona_id=request.persona_id, user_id=_owner(caller))
        ctx.max_message_chars = get_settings().max_message_chars
        return replace(ctx, **overrides)

    def _check_idle(self, key: str, thread_id: str) -> None:
        with self._running_lock:
            busy = key in self._running
        if busy:
            raise ConflictError(
                f"thread_id: a reply is still being written in thread {thread_id!r}; wait for it or stop it"
            )

    def stream_turn(
        self, caller: Caller, request: ChatRequest, **context_overrides: Any
    ) -> Iterator[TurnEvent]:
        """Run one turn, yielding reply tokens as the model writes them, then the final result.

        Checks come first, before anything streams: the persona must be one the caller may use
        (else UnknownPersonaError, a 404) and no other turn may be running in the thread (409).
        """
        owner = _owner(caller)
        persona_for(caller, request.persona_id)
        key = thread_key(owner, request.thread_id)
        context = self.context_for(caller, request, **context_overrides)
        self._check_idle(key, request.thread_id)
        return self._stream(owner, request, key, context)

    def _stream(
        self,
        owner: str,
        request: ChatRequest,
        key: str,
        context: ChatContext,
        message_id: str | None = None,
    ) -> Iterator[TurnEvent]:
        stop = threading.Event()
        with self._running_lock:
            busy = key in self._running
            if not busy:
                self._running[key] = stop
        if busy:
            message = f"thread_id: a reply is still being written in thread {request.thread_id!r}"
            yield TurnEvent(
                "error", message, TurnResult(reply="", thread_id=request.thread_id, error=message)
            )
            return
        try:
            yield from self._run_turn(owner, request, key, context, stop, message_id)
        finally:
            with self._running_lock:
                if self._running.get(key) is stop:
                    del self._running[key]

    def _run_turn(
        self,
        owner: str,
        request: ChatRequest,
        key: str,
        context: ChatContext,
        stop: threading.Event,
        message_id: str | None = None,
    ) -> Iterator[TurnEvent]:
        config = run_config(self._config(key), "persona_chat", owner, request.persona_id)
        # The message id is the turn's id: it keys what the turn stores, so a re-run overwrites.
        human = HumanMessage(content=request.message, id=message_id or uuid.uuid4().hex)
        messages = self._discard_unfinished(config)
        # What a rolled-back turn returns to: the thread's messages and the turn's store items.
        before = _Snapshot(
            messages={str(m.id) for m in messages},
            items=turn_items(self.store, owner, request.persona_id, str(human.id)),
        )
        started: float | None = time.perf_counter()  # until the first checked text is sent (metrics)
        # Custom events carry checked text only; node updates just pace the Stop check between steps.
        stream = self.graph.stream(
            {"messages": [human]}, config, context=context, stream_mode=["custom", "updates"]
        )
        shown = ""
        try:
            for mode, payload in stream:
                if stop.is_set():
                    raise _Stopped
                for event in _checked_events(mode, payload):
                    if event.kind == "token" and started is not None:
                        observe_first_token("persona_chat", "reply", time.perf_counter() - started)
                        started = None
                    shown = "" if event.kind == "reset" else shown + event.text
                    yield event
        except GeneratorExit:
            # The consumer went away mid-turn (closed tab, dropped SSE connection): undo the turn.
            _close(stream)
            self._roll_back(config, before, STOPPED)
            raise
        except Exception as exc:  # noqa: BLE001 - any failure must leave the thread usable
            _close(stream)
            if isinstance(exc, _Stopped):
                message = STOPPED
            elif isinstance(exc, ModelError):
                message = str(exc)
            else:
                message = user_error(log, exc, "internal error", "try again")
            self._roll_back(config, before, message)
            yield TurnEvent(
                "error", message, TurnResult(reply="", thread_id=request.thread_id, error=message)
            )
            return
        values = self.graph.get_state(config).values
        reply = _last_ai_text(values.get("messages", []))
        if reply != shown:  # the graph publishes only what it showed; never expected
            log.error("persona_chat streamed %d characters but published %d", len(shown), len(reply))
            yield TurnEvent("reset")
            yield TurnEvent("token", reply)  # published only after its checks
        self._register_thread(owner, request)
        result = TurnResult(
            reply=reply,
            thread_id=request.thread_id,
            intent=values.get("intent", ""),
            sources=list(values.get("sources") or []),
            blocks=[b for b in values.get("blocks", []) if b.get("message_id") == human.id],
            retrieved=[dict(d) for d in values.get("retrieved") or []] if values.get("sources") else [],
        )
        yield TurnEvent("final", reply, result)

    def send(self, caller: Caller, request: ChatRequest, **context_overrides: Any) -> TurnResult:
        for event in self.stream_turn(caller, request, **context_overrides):
            if event.kind in ("final", "error") and event.result is not None:
                return event.result
        raise RuntimeError("turn ended without a result")

    def stop(self, caller: Caller, thread_id: str) -> bool:
        """Stop the reply being written in the caller's thread; False when none is running.

        The turn ends with an error event "stopped" and is rolled back like a failed one, so the
        thread stays usable. NotFoundError for a thread the caller does not have.
        """
        owner = _owner(caller)
        thread_id = _thread(thread_id)
        key = thread_key(owner, thread_id)
        with self._running_lock:
            running = self._running.get(key)
        if running is not None:
            running.set()
            return True
        if not self._has_thread(owner, thread_id):
            raise NotFoundError(f"thread_id: no thread {thread_id!r}")
        return False

    def regenerate(
        self, caller: Caller, thread_id: str, persona_id: str | None = None, **context_overrides: Any
    ) -> Iterator[TurnEvent]:
        """Re-run the thread's last fan message: its exchange is removed, then the same text is sent again.

        Yields the same events as `stream_turn`. If the new run fails or is stopped, the previous
        exchange is put back, so the thread is as it was. Raises NotFoundError for a thread the
        caller does not have and InvalidRequestError when there is nothing to redo.
        """
        owner = _owner(caller)
        messages = self.history(caller, thread_id)
        index = next(
            (i for i in range(len(messages) - 1, -1, -1) if isinstance(messages[i], HumanMessage)), None
        )
        if index is None:
            raise InvalidRequestError(f"thread_id: thread {thread_id!r} has no fan message to regenerate")
        if persona_id is None:
            registered = self.store.get(threads_namespace(owner), thread_id)
            persona_id = registered.value.get("persona_id") if registered else None
        request = validate_request(
            message=str(messages[index].content),
            thread_id=thread_id,
            persona_id=persona_id or DEFAULT_PERSONA,
        )
        persona_for(caller, request.persona_id)
        key = thread_key(owner, thread_id)
        context = self.context_for(caller, request, **context_overrides)
        self._check_idle(key, thread_id)
        return self._regenerate(owner, request, key, context, messages[index:])

    def _regenerate(
        self, owner: str, request: ChatRequest, key: str, context: ChatContext, removed: list[AnyMessage]
    ) -> Iterator[TurnEvent]:
        config = self._config(key)
        self.graph.update_state(
            config, {"messages": [RemoveMessage(id=str(m.id)) for m in removed]}, as_node="memory_write"
        )
        restored = False

        def restore(error: str) -> None:
            # Put the previous exchange back: a failed or stopped regeneration changes nothing.
            nonlocal restored
            restored = True
            self.graph.update_state(
                config, {"messages": list(removed), "last_error": error}, as_node="memory_write"
            )

        try:
            # The fan's message is re-sent with its own id: the re-run overwrites what the first run
            # stored under it (no second memory), and a failed re-run puts those items back.
            for event in self._stream(owner, request, key, context, message_id=str(removed[0].id)):
                if event.kind == "error":
                    restore(event.text)
                elif event.kind == "final":
                    restored = True  # the new exchange stands
                yield event
        finally:
            if not restored:  # closed before the turn ended (the consumer went away)
                restore(STOPPED)

    def _roll_back(self, config: RunnableConfig, before: _Snapshot, error: str) -> None:
        """Undo a failed or stopped turn so the thread stays usable: drop every message the turn
        added (the fan's, and a reply if one was already written) and its pending work, and put the
        store items the turn may have written (memory, summary, profile) back as they were."""
        state = self.graph.get_state(config)
        if state.values:
            added = [m for m in state.values.get("messages", []) if str(m.id) not in before.messages]
            removals = [RemoveMessage(id=str(m.id)) for m in added]
            self.graph.update_state(
                config, {"messages": removals, "last_error": error}, as_node="memory_write"
            )
        restore_turn(self.store, before.items)

    # --- threads ----------------------------------------------------------------------------------

    def _has_thread(self, owner: str, thread_id: str) -> bool:
        if self.store.get(threads_namespace(owner), thread_id) is not None:
            return True
        return bool(self.graph.get_state(self._config(thread_key(owner, thread_id))).values)

    def history(self, caller: Caller, thread_id: str) -> list[AnyMessage]:
        """The messages of one of the caller's threads; NotFoundError for any other thread id.

        A turn left unfinished by a process that died (another replica) is not shown: the thread
        reads as it was after its last finished turn (the next turn removes the rest)."""
        owner = _owner(caller)
        thread_id = _thread(thread_id)
        key = thread_key(owner, thread_id)
        state = self.graph.get_state(self._config(key))
        if not state.values and self.store.get(threads_namespace(owner), thread_id) is None:
            raise NotFoundError(f"thread_id: no thread {thread_id!r}")
        messages = list(state.values.get("messages", [])) if state.values else []
        with self._running_lock:
            running_here = key in self._running
        if state.next and not running_here:
            finished = self._finished_messages(self._config(key))
            messages = [m for m in messages if str(m.id) in finished]
        return messages

    def _finished_messages(self, config: RunnableConfig) -> set[str]:
        """The message ids of the thread's latest checkpoint that waits for no node (a finished turn)."""
        for snapshot in self.graph.get_state_history(config):
            if not snapshot.next:
                return {str(m.id) for m in snapshot.values.get("messages", [])}
        return set()

    def _discard_unfinished(self, config: RunnableConfig) -> list[AnyMessage]:
        """Roll back what a turn that never finished left in the thread: its process was killed mid-turn
        (a replica SIGKILLed), so the checkpoint still waits for a node and holds the fan's message
        without a reply. No turn runs in this thread in this process (checked before), so the thread
        goes back to its last finished state. Two replicas running turns in one thread at the same
        time is not supported (the running-turn check is per process). Returns the thread's messages
        as the new turn starts from them (one state read per turn, as before)."""
        state = self.graph.get_state(config)
        messages: list[AnyMessage] = list(state.values.get("messages", []))
        if not state.next:
            return messages
        finished = self._finished_messages(config)
        removals = [RemoveMessage(id=str(m.id)) for m in messages if str(m.id) not in finished]
        log.warning("persona_chat: rolling back a turn left unfinished (%d messages)", len(removals))
        self.graph.update_state(
            config, {"messages": removals, "last_error": "interrupted"}, as_node="memory_write"
        )
        return [m for m in messages if str(m.id) in finished]

    def _register_thread(self, owner: str, request: ChatRequest) -> None:
        namespace = threads_namespace(owner)
        existing = self.store.get(namespace, request.thread_id)
        title = existing.value["title"] if existing else request.message[:40]
        self.store.put(
            namespace,
            request.thread_id,
            {"title": title, "persona_id": request.persona_id, "updated_at": datetime.now(UTC).isoformat()},
            index=False,
        )

    def threads(self, caller: Caller) -> list[dict[str, Any]]:
        """The caller's threads, newest first: [{"thread_id", "title", "persona_id", "updated_at"}]."""
        items = all_items(self.store, threads_namespace(_owner(caller)))
        rows = [{"thread_id": item.key, **item.value} for item in items]
        return sorted(rows, key=lambda r: r.get("updated_at", ""), reverse=True)

    # --- what the persona remembers about the caller ----------------------------------------------
    # Always the caller's own data (their user id names the namespace): nobody, admins included,
    # reads or changes another account's profile here.

    def get_profile(self, caller: Caller, persona_id: str) -> dict[str, Any]:
        """The caller's profile for this persona (name, nickname, ..., facts, updated_at); {} if none."""
        return read_profile(self.store, _owner(caller), _persona_id(persona_id))

    def memories(self, caller: Caller, persona_id: str) -> list[dict[str, Any]]:
        """The caller's stored messages for this persona, newest first: [{"key", "text", "at"}]."""
        namespace = memories_namespace(_owner(caller), _persona_id(persona_id))
        rows = [{"key": item.key, "text": item.value.get("text", ""), "at": item.value.get("at", "")}
                for item in all_items(self.store, namespace)]  # fmt: skip
        return sorted(rows, key=lambda r: r["at"], reverse=True)

    def update_profile(
        self, caller: Caller, persona_id: str, profile: dict[str, Any] | str
    ) -> dict[str, Any]:
        """Replace the caller's profile with an edited one (validated); an empty profile deletes it."""
        owner, persona_id = _owner(caller), _persona_id(persona_id)
        return write_profile(self.store, owner, persona_id, validate_profile(profile))

    def forget(self, caller: Caller, persona_id: str, threads: bool = False) -> dict[str, int]:
        """Delete what the persona remembers about the caller: profile, memories and summaries.

        With `threads=True` the caller's chat sessions with this persona are deleted too.
        Returns how many items of each kind were deleted. The persona need not exist any more.
        """
        owner, persona_id = _owner(caller), _persona_id(persona_id)
        counts = {**forget_fan(self.store, owner, persona_id), "threads": 0}
        if threads:
            for row in self.threads(caller):
                if row.get("persona_id") == persona_id:
                    self.checkpointer.delete_thread(thread_key(owner, row["thread_id"]))
                    self.store.delete(threads_namespace(owner), row["thread_id"])
                    counts["threads"] += 1
        return counts

    # --- personas and character cards -------------------------------------------------------------

    @staticmethod
    def personas(caller: Caller) -> list[str]:
        """Shipped personas plus the caller's imported ones (admins: every persona)."""
        return visible_personas(caller)

    @staticmethod
    def shared_personas() -> list[str]:
        """The personas every account sees (shipped and public cards), for a page before sign-in."""
        return public_personas()

    @staticmethod
    def persona(caller: Caller, persona_id: str) -> Persona:
        """A persona the caller may use; UnknownPersonaError (404) otherwise."""
        return load_persona(persona_for(caller, persona_id))

    @staticmethod
    def import_card(
        caller: Caller,
        source: CardSource,
        overwrite: bool = False,
        persona_id: str | None = None,
        public: bool = False,
    ) -> str:
        """Import a Character Card V2 (the file's bytes, parsed JSON, or a path) as a persona the caller owns.

        Paths: the CLI operator (`caller.local`) may name any file; everyone else only files in
        their upload folder (the app hands in the uploaded file's bytes). Without `persona_id`
        the id comes from the card's name; when that id is another account's persona the card
        gets a distinct id of its own (`<slug>_<6 hex>`), so nothing about the other persona is
        revealed. An explicit `persona_id` held by another account: ConflictError (409), or
        NotFoundError (404) with `overwrite`. A shipped persona cannot be replaced (403); an
        existing persona of the caller's needs `overwrite` (else 409). `public` (admins only)
        makes the persona visible to every account. Returns the persona id.
        """
        owner = _owner(caller)
        if public and not caller.admin:
            raise ForbiddenError("public: only an admin can import a card for every account")
        card = load_card(_card_source(caller, source))
        explicit = persona_id is not None
        target = _persona_id(persona_id) if explicit else slugify(card.data.name)
        new_owner: str | None = None if public else owner
        for attempt in range(4):
            if target not in list_personas():
                break
            current = load_persona(target)
            current_owner = persona_owner(target)
            if current.kind != "card":
                if overwrite:
                    raise ForbiddenError(
                        f"persona_id: {target!r} is a built-in persona and cannot be replaced"
                    )
                raise ConflictError(
                    f"persona_id: a built-in persona {target!r} already exists; choose another id"
                )
            if current_owner is None and not caller.admin:
                if overwrite:
                    raise ForbiddenError(
                        f"persona_id: {target!r} is shared with every account; only an admin can replace it"
                    )
                raise ConflictError(f"persona_id: persona {target!r} already exists; choose another id")
            if current_owner is not None and not caller.may_manage(current_owner):
                if explicit:
                    if overwrite:
                        raise NotFoundError(f"persona_id: no persona {target!r} of yours to replace")
                    raise ConflictError(f"persona_id: {target!r} is taken; choose another id")
                target = _distinct_id(target, owner, attempt)
                continue
            if not overwrite:
                raise ConflictError(
                    f"persona_id: persona {target!r} already exists; choose another id or replace it (overwrite)"
                )
            if not public and current_owner is not None:
                new_owner = current_owner  # an admin replacing a user's card leaves it theirs
            break
        else:
            raise ConflictError(f"persona_id: no free id for {card.data.name!r}; choose one")
        return write_card_persona(card, persona_id=target, overwrite=overwrite, owner=new_owner)

    @staticmethod
    def export_card(caller: Caller, persona_id: str) -> dict[str, Any]:
        """A persona the caller may use, as Character Card V2 JSON (the owner is not included)."""
        return card_of_persona(persona_for(caller, persona_id))


def _card_source(caller: Caller, source: CardSource) -> bytes | dict[str, Any]:
    if isinstance(source, (bytes, dict)):
        return source
    if caller.local:
        path = Path(source).expanduser()
    else:
        uploads = child_path(get_settings().uploads_dir, _owner(caller))
        path = confined_path(os.fspath(source), [uploads], "file")
    if not path.is_file():
        raise CardError(f"file: no such card file {str(source)!r}")
    check_card_size(path.stat().st_size)
    return path.read_bytes()


def _checked_events(mode: str, payload: Any) -> list[TurnEvent]:
    """The reader's events in one graph stream item: custom {"reset"} / {"checked"} events only."""
    if mode != "custom" or not isinstance(payload, dict):
        return []
    events = [TurnEvent("reset")] if payload.get("reset") else []
    if payload.get("checked"):
        events.append(TurnEvent("token", str(payload["checked"])))
    return events


def _close(stream: Iterator[Any]) -> None:
    """Close the graph's stream so it stops running the turn (a generator has `close`)."""
    close = getattr(stream, "close", None)
    if close is not None:
        close()


def _distinct_id(slug: str, owner: str, attempt: int) -> str:
    """An id for `owner`'s card when the name's id is someone else's: stable first, random after."""
    base = slug[:48].rstrip("_-") or "card"
    suffix = hashlib.sha256(owner.encode("utf-8")).hexdigest()[:6] if attempt == 0 else uuid.uuid4().hex[:8]
    return f"{base}_{suffix}"


def _last_ai_text(messages: list[AnyMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, AIMessage):
            return str(message.content)
    return ""
