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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from langchain_core.load import load
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
from personagraph.memory.feedback import (
    MAX_REASON_CHARS,
    RATINGS,
    RatedReply,
    delete_rating,
    forget_ratings,
    preference_pairs,
    put_rating,
    ratings,
)
from personagraph.memory.persistence import make_checkpointer, make_store
from personagraph.nodes.context import ChatContext
from personagraph.nodes.draft import next_turn_prefix
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
from personagraph.services.turn_stats import TurnRecorder
from personagraph.serving.metrics import observe_first_token
from personagraph.serving.models import ModelError, prewarm_enabled, warm_prompt
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


MAX_REPLY_TOKENS = 4096  # the embedded server's context is 4096 tokens; a longer reply cannot fit
# The allowed values of each generation setting, as error messages name them.
GENERATION_RANGES = {
    "temperature": "0 to 2",
    "top_p": "above 0, up to 1",
    "max_tokens": f"a whole number from 1 to {MAX_REPLY_TOKENS}",
}


class GenerationSettings(BaseModel):
    """Sampling settings of one reply (None: the chat role's configured value)."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(default=None, ge=0.0, le=2.0, allow_inf_nan=False)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0, allow_inf_nan=False)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_REPLY_TOKENS)

    @field_validator("temperature", "top_p", "max_tokens", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if isinstance(value, bool):  # pydantic would read True as 1
            raise ValueError("must be a number, not true/false")
        return value

    def overrides(self) -> dict[str, Any]:
        """The settings given, as ChatContext fields."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class ChatRequest(GenerationSettings):
    """One fan message. There is no user id: the fan is the signed-in caller."""

    model_config = ConfigDict(extra="forbid")

    message: str
    thread_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    persona_id: str = DEFAULT_PERSONA

    def generation(self) -> GenerationSettings:
        return GenerationSettings(temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens)

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
    """A ChatRequest from outside input; InvalidRequestError naming each bad field and what is allowed.
    Generation settings left out or None keep the chat role's configured values."""
    try:
        return ChatRequest(**fields)
    except ValidationError as exc:
        raise InvalidRequestError(_problems(exc, ChatRequest)) from exc


def validate_settings(**fields: Any) -> GenerationSettings:
    """Generation settings (temperature, top_p, max_tokens) from outside input, checked the same way."""
    try:
        return GenerationSettings(**fields)
    except ValidationError as exc:
        raise InvalidRequestError(_problems(exc, GenerationSettings)) from exc


def _problems(exc: ValidationError, model: type[BaseModel]) -> str:
    problems = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            allowed = ", ".join(model.model_fields)
            problems.append(
                f"{where}: not a request field (allowed: {allowed}); the fan is the signed-in account"
            )
            continue
        problem = f"{where}: {str(e['msg']).removeprefix('Value error, ')}"
        if where in GENERATION_RANGES:
            problem += f" (got {e.get('input')!r}; allowed: {GENERATION_RANGES[where]}, or leave it empty)"
        problems.append(problem)
    return "; ".join(problems)


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


class _StopSignal(threading.Event):
    """Set by Stop; `keep_partial` says whether the fan keeps the part of the reply already shown."""

    keep_partial = False


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
    message_id: str = ""  # the reply's id (to rate it, or to find its alternatives)
    turn_id: str = ""  # the fan message's id (to edit it)
    stopped: bool = False  # Stop with the partial reply kept: `reply` is what was shown
    # {"total_s", "first_token_s", "nodes": {node: seconds}} and {"input_tokens", "output_tokens",
    # "model_calls", "calls": [...]} (services/turn_stats.py)
    timings: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)


def _warm_prompt_start(values: Mapping[str, Any], context: ChatContext) -> threading.Thread | None:
    """Start reading the thread's next stable prompt start on the chat model's server: after a turn
    while the fan reads the reply and types, and at a turn's start when nothing may be warm yet
    (CHAT_PREWARM; a background call whose failure costs nothing but speed)."""

    def warm() -> None:
        try:
            warm_prompt(context.chat_role, next_turn_prefix(dict(values), context))  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - a warm-up must never disturb the service
            log.warning("next-turn warm-up failed", exc_info=True)

    if not prewarm_enabled(context.chat_role):  # no thread and no prompt built on every turn
        return None
    thread = threading.Thread(target=warm, name="chat-prewarm", daemon=True)
    thread.start()
    return thread


class ChatService:
    """persona_chat compiled with a checkpointer and a store, plus the turn runner."""

    def __init__(
        self,
        checkpointer: BaseCheckpointSaver[Any] | None = None,
        store: BaseStore | None = None,
        *,
        warm_after_turn: bool = True,
    ):
        """`warm_after_turn=False` for a process that runs one turn and exits (the CLI): the next
        turn, in another process, warms its own prompt start."""
        self.warm_after_turn = warm_after_turn
        self._warm_ups: list[threading.Thread] = []
        self.checkpointer = checkpointer or make_checkpointer()
        self.store = store or make_store()
        self.graph: CompiledStateGraph[Any, Any, Any, Any] = build(self.checkpointer, self.store)
        # Turns being written, by owner-scoped thread key: Stop sets the event, the stream loop reads it.
        self._running: dict[str, _StopSignal] = {}
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
        # The request's generation settings (validated with it), then the caller's overrides.
        return replace(ctx, **{**request.generation().overrides(), **overrides})

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

    def _claim(self, key: str) -> _StopSignal | None:
        """Mark the thread busy with a turn of this process; None when one is running already."""
        stop = _StopSignal()
        with self._running_lock:
            if key in self._running:
                return None
            self._running[key] = stop
        return stop

    def _release(self, key: str, stop: _StopSignal) -> None:
        with self._running_lock:
            if self._running.get(key) is stop:
                del self._running[key]

    @staticmethod
    def _busy_event(thread_id: str) -> TurnEvent:
        message = f"thread_id: a reply is still being written in thread {thread_id!r}"
        return TurnEvent("error", message, TurnResult(reply="", thread_id=thread_id, error=message))

    def _stream(
        self,
        owner: str,
        request: ChatRequest,
        key: str,
        context: ChatContext,
        message_id: str | None = None,
    ) -> Iterator[TurnEvent]:
        stop = self._claim(key)
        if stop is None:
            yield self._busy_event(request.thread_id)
            return
        try:
            yield from self._run_turn(owner, request, key, context, stop, message_id)
        finally:
            self._release(key, stop)

    def _run_turn(
        self,
        owner: str,
        request: ChatRequest,
        key: str,
        context: ChatContext,
        stop: _StopSignal,
        message_id: str | None = None,
    ) -> Iterator[TurnEvent]:
        recorder = TurnRecorder()  # this turn's node timings and token usage (TurnResult)
        config = run_config(self._config(key), "persona_chat", owner, request.persona_id)
        config["callbacks"] = [recorder]
        # The message id is the turn's id: it keys what the turn stores, so a re-run overwrites.
        human = HumanMessage(content=request.message, id=message_id or uuid.uuid4().hex)
        start = self._discard_unfinished(config)
        messages = _messages(start)
        # A new thread, or one whose last turn ran in another process (a CLI call, another replica),
        # has nothing warmed: the server reads the stable prompt start while the nodes before the
        # draft run. Already read, it is a prompt-cache hit and a one-token call.
        self._track(_warm_prompt_start({**start, "messages": messages}, context))
        # What a rolled-back turn returns to: the thread's messages and the turn's store items.
        before = _Snapshot(
            messages={str(m.id) for m in messages},
            items=turn_items(self.store, owner, request.persona_id, str(human.id)),
        )
        started: float | None = time.perf_counter()  # until the first checked text is sent (metrics)
        first_token_s: float | None = None
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
                        first_token_s = time.perf_counter() - started
                        observe_first_token("persona_chat", "reply", first_token_s)
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
            if isinstance(exc, _Stopped) and stop.keep_partial and shown.strip():
                # The fan keeps what they saw: the turn is undone, then the thread gets the fan's
                # message and the checked text shown so far as the reply (marked as stopped).
                self._roll_back(config, before, STOPPED)
                partial = AIMessage(content=shown, id=uuid.uuid4().hex, response_metadata={"stopped": True})
                self.graph.update_state(
                    config, {"messages": [human, partial], "last_error": None}, as_node="memory_write"
                )
                self._register_thread(owner, request)
                kept = TurnResult(reply=shown, thread_id=request.thread_id, message_id=str(partial.id),
                                  turn_id=str(human.id), stopped=True, timings=recorder.timings(first_token_s),
                                  usage=recorder.usage())  # fmt: skip
                yield TurnEvent("final", shown, kept)
                return
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
        messages = _messages(values)
        reply = _last_ai_text(messages)
        last_ai = next((m for m in reversed(messages) if isinstance(m, AIMessage)), None)
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
            message_id=str(last_ai.id) if last_ai is not None else "",
            turn_id=str(human.id),
            timings=recorder.timings(first_token_s),
            usage=recorder.usage(),
        )
        # Every model call of the turn is done: the server may read the next turn's prompt start now.
        if self.warm_after_turn:
            self._track(_warm_prompt_start(values, context))
        yield TurnEvent("final", reply, result)

    def _track(self, warm_up: threading.Thread | None) -> None:
        self._warm_ups = [t for t in self._warm_ups if t.is_alive()]
        if warm_up is not None:
            self._warm_ups.append(warm_up)

    def settle_warm_ups(self, timeout_s: float = 120.0) -> None:
        """Wait for the prompt warm-ups still running (a process about to exit: a thread cut off in
        the middle of its HTTP call can abort the interpreter at shutdown)."""
        deadline = time.monotonic() + timeout_s
        for warm_up in self._warm_ups:
            warm_up.join(max(0.0, deadline - time.monotonic()))

    def send(self, caller: Caller, request: ChatRequest, **context_overrides: Any) -> TurnResult:
        for event in self.stream_turn(caller, request, **context_overrides):
            if event.kind in ("final", "error") and event.result is not None:
                return event.result
        raise RuntimeError("turn ended without a result")

    def stop(self, caller: Caller, thread_id: str, keep_partial: bool = False) -> bool:
        """Stop the reply being written in the caller's thread; False when none is running.

        By default the turn ends with an error event "stopped" and is rolled back like a failed
        one (the fan's message is returned to be sent again). With `keep_partial` the thread keeps
        the fan's message and the checked part of the reply shown so far (a "final" event with
        `stopped=True`; nothing of the turn goes to long-term memory); when nothing was shown yet
        it is rolled back all the same. Either way the thread stays usable. NotFoundError for a
        thread the caller does not have.
        """
        owner = _owner(caller)
        thread_id = _thread(thread_id)
        key = thread_key(owner, thread_id)
        with self._running_lock:
            running = self._running.get(key)
        if running is not None:
            running.keep_partial = bool(keep_partial)
            running.set()
            return True
        if not self._has_thread(owner, thread_id):
            raise NotFoundError(f"thread_id: no thread {thread_id!r}")
        return False

    def regenerate(
        self,
        caller: Caller,
        thread_id: str,
        persona_id: str | None = None,
        settings: GenerationSettings | None = None,
        **context_overrides: Any,
    ) -> Iterator[TurnEvent]:
        """Write a new reply to the thread's last fan message; the previous reply stays as an alternative.

        The thread goes back to the checkpoint before that message (LangGraph checkpoint history)
        and the same message, with its own id, is run again from there, so the new exchange is a
        branch beside the old one: `branches()` lists both and `switch_branch()` goes back. The
        re-run overwrites what the first run stored under the message's id (no second memory).
        Yields the same events as `stream_turn`. If the new run fails or is stopped, the thread is
        put back as it was. NotFoundError for a thread the caller does not have, InvalidRequestError
        when there is nothing to redo.
        """
        messages = self.history(caller, thread_id)
        index = next(
            (i for i in range(len(messages) - 1, -1, -1) if isinstance(messages[i], HumanMessage)), None
        )
        if index is None:
            raise InvalidRequestError(f"thread_id: thread {thread_id!r} has no fan message to regenerate")
        return self._rerun_from(
            caller, thread_id, messages, index, str(messages[index].content), str(messages[index].id),
            persona_id, settings, context_overrides,
        )  # fmt: skip

    def edit(
        self,
        caller: Caller,
        thread_id: str,
        message_id: str,
        message: str,
        persona_id: str | None = None,
        settings: GenerationSettings | None = None,
        **context_overrides: Any,
    ) -> Iterator[TurnEvent]:
        """Replace an earlier fan message with `message` and continue the conversation from there.

        The thread forks at the checkpoint before that message (its later turns are not lost: they
        stay a branch of their own, listed by `branches()`). The edited message is a new message
        (a new id), so what the earlier one stored stays with its branch. Yields the same events as
        `stream_turn`; a failed or stopped edit puts the thread back as it was. NotFoundError for a
        thread or message the caller does not have; InvalidRequestError for a bad message.
        """
        messages = self.history(caller, thread_id)
        try:
            message_id = check_id(message_id, "message_id")
        except UnsafeIdError as exc:
            raise InvalidRequestError(str(exc)) from exc
        index = next(
            (i for i, m in enumerate(messages) if isinstance(m, HumanMessage) and str(m.id) == message_id),
            None,
        )
        if index is None:
            raise NotFoundError(f"message_id: thread {thread_id!r} has no fan message {message_id!r}")
        return self._rerun_from(
            caller, thread_id, messages, index, message, None, persona_id, settings, context_overrides
        )

    def _rerun_from(
        self,
        caller: Caller,
        thread_id: str,
        messages: list[AnyMessage],
        index: int,
        text: str,
        message_id: str | None,
        persona_id: str | None,
        settings: GenerationSettings | None,
        context_overrides: dict[str, Any],
    ) -> Iterator[TurnEvent]:
        """Checks first (persona, message, busy thread), then the fork-and-run generator."""
        owner = _owner(caller)
        if persona_id is None:
            registered = self.store.get(threads_namespace(owner), thread_id)
            persona_id = registered.value.get("persona_id") if registered else None
        fields = settings.overrides() if settings is not None else {}
        request = validate_request(
            message=text, thread_id=thread_id, persona_id=persona_id or DEFAULT_PERSONA, **fields
        )
        persona_for(caller, request.persona_id)
        key = thread_key(owner, thread_id)
        context = self.context_for(caller, request, **context_overrides)
        self._check_idle(key, thread_id)
        keep = [str(m.id) for m in messages[:index]]
        return self._rerun(owner, request, key, context, keep, message_id)

    def _rerun(
        self,
        owner: str,
        request: ChatRequest,
        key: str,
        context: ChatContext,
        keep: list[str],
        message_id: str | None,
    ) -> Iterator[TurnEvent]:
        """Fork the thread at the checkpoint whose messages are `keep`, run the turn there, and put
        the previous head back (as the newest checkpoint) if the turn fails or is stopped."""
        stop = self._claim(key)
        if stop is None:
            yield self._busy_event(request.thread_id)
            return
        settled = False
        config = self._config(key)
        try:
            self._discard_unfinished(config)
            head = self.graph.get_state(config)
            self._fork(config, head, keep)
            try:
                for event in self._run_turn(owner, request, key, context, stop, message_id):
                    if event.kind == "error":
                        self._make_head(head.config, event.text)
                        settled = True
                    elif event.kind == "final":
                        settled = True  # the new branch stands
                    yield event
            finally:
                if not settled:  # the consumer went away before the turn ended
                    self._make_head(head.config, STOPPED)
        finally:
            self._release(key, stop)

    def _fork(self, config: RunnableConfig, head: Any, keep: list[str]) -> None:
        """Make the thread's newest checkpoint one whose messages are exactly `keep`: a child of the
        newest earlier checkpoint with those messages (its summary and other state come back too),
        else (history pruned) the head with the later messages removed."""
        for snapshot in self.graph.get_state_history(config):
            ids = [str(m.id) for m in _messages(snapshot.values)]
            source = (snapshot.metadata or {}).get("source")
            if ids == keep and (not snapshot.next or source == "input"):
                self.graph.update_state(snapshot.config, {"last_error": None}, as_node="memory_write")
                return
        later = [RemoveMessage(id=str(m.id)) for m in _messages(head.values) if str(m.id) not in keep]
        self.graph.update_state(head.config, {"messages": later, "last_error": None}, as_node="memory_write")

    def _make_head(self, checkpoint: RunnableConfig, error: str | None) -> None:
        """Make a copy of this checkpoint the thread's newest (what `get_state` reads)."""
        self.graph.update_state(checkpoint, {"last_error": error}, as_node="memory_write")

    # --- branches: earlier versions of the conversation, from the checkpoint history ---------------

    def _tips(self, key: str) -> list[tuple[Any, list[AnyMessage]]]:
        """Every distinct finished conversation of the thread that is not the start of another one
        (the ends of its branches), newest first, as (checkpoint, messages)."""
        seen: dict[tuple[str, ...], tuple[Any, list[AnyMessage]]] = {}
        for snapshot in self.graph.get_state_history(self._config(key)):
            messages: list[AnyMessage] = [m for m in _messages(snapshot.values) if m.type in ("human", "ai")]
            if snapshot.next or not messages or not isinstance(messages[-1], AIMessage):
                continue
            seen.setdefault(tuple(str(m.id) for m in messages), (snapshot, messages))
        sequences = list(seen)
        tips = [
            seen[seq]
            for seq in sequences
            if not any(len(other) > len(seq) and other[: len(seq)] == seq for other in sequences)
        ]
        return tips

    def branches(self, caller: Caller, thread_id: str) -> list[dict[str, Any]]:
        """The thread's branches, newest first: [{"branch_id", "current", "messages", "fan_message",
        "reply", "updated_at"}]. A regenerated reply or an edited message starts a new branch; the
        earlier ones stay here. NotFoundError for a thread the caller does not have."""
        messages = self.history(caller, thread_id)  # the ownership check
        key = thread_key(_owner(caller), _thread(thread_id))
        current = tuple(str(m.id) for m in messages if m.type in ("human", "ai"))
        rows = []
        for snapshot, branch in self._tips(key):
            fan = next((m for m in reversed(branch) if isinstance(m, HumanMessage)), None)
            rows.append({
                "branch_id": str(snapshot.config["configurable"]["checkpoint_id"]),
                "current": tuple(str(m.id) for m in branch) == current,
                "messages": len(branch),
                "fan_message": str(fan.content)[:200] if fan is not None else "",
                "reply": str(branch[-1].content)[:200],
                "updated_at": snapshot.created_at or "",
            })  # fmt: skip
        return rows

    def alternatives(self, caller: Caller, thread_id: str) -> dict[str, list[dict[str, str]]]:
        """For each reply of the thread as it is now, the other replies written to the same point of
        the conversation (regenerated or from another branch): {reply id: [{"branch_id", "content"}]}."""
        messages = [m for m in self.history(caller, thread_id) if m.type in ("human", "ai")]
        key = thread_key(_owner(caller), _thread(thread_id))
        ids = [str(m.id) for m in messages]
        found: dict[str, list[dict[str, str]]] = {}
        for snapshot, branch in self._tips(key):
            branch_ids = [str(m.id) for m in branch]
            for i, message in enumerate(messages):
                if not isinstance(message, AIMessage) or i >= len(branch):
                    continue
                if branch_ids[:i] == ids[:i] and branch_ids[i] != ids[i] and isinstance(branch[i], AIMessage):
                    rows = found.setdefault(ids[i], [])
                    if all(r["message_id"] != branch_ids[i] for r in rows):
                        rows.append({
                            "branch_id": str(snapshot.config["configurable"]["checkpoint_id"]),
                            "message_id": branch_ids[i],
                            "content": str(branch[i].content),
                        })  # fmt: skip
        return found

    def switch_branch(self, caller: Caller, thread_id: str, branch_id: str) -> list[AnyMessage]:
        """Make one of the thread's branches current again (the others stay listed); returns its
        messages. NotFoundError for a branch that is not one of this thread's (or not the caller's)."""
        owner = _owner(caller)
        thread_id = _thread(thread_id)
        self.history(caller, thread_id)  # the ownership check
        try:
            branch_id = check_id(branch_id, "branch_id")
        except UnsafeIdError as exc:
            raise InvalidRequestError(str(exc)) from exc
        key = thread_key(owner, thread_id)
        self._check_idle(key, thread_id)
        for snapshot, branch in self._tips(key):
            if str(snapshot.config["configurable"]["checkpoint_id"]) == branch_id:
                self._make_head(snapshot.config, None)
                return list(branch)
        raise NotFoundError(f"branch_id: thread {thread_id!r} has no branch {branch_id!r}")

    # --- feedback: thumbs up/down on replies, exported as DPO preference pairs ---------------------

    def rate(
        self, caller: Caller, thread_id: str, message_id: str, rating: str, reason: str = ""
    ) -> dict[str, Any]:
        """Rate one of the persona's replies in the caller's thread: "up" or "down" with an optional
        reason, or "none" to take a rating back. Any reply of the thread can be rated, also one on
        another branch (a regenerated alternative). A new rating replaces the old one. Returns
        {"message_id", "rating", "reason"}. NotFoundError for a thread or reply not the caller's."""
        owner = _owner(caller)
        thread_id = _thread(thread_id)
        if rating not in (*RATINGS, "none"):
            raise InvalidRequestError(f"rating: {rating!r} is not allowed; use one of up, down, none")
        reason = (reason or "").strip()
        check_text(reason, "reason", InvalidRequestError)
        if len(reason) > MAX_REASON_CHARS:
            raise InvalidRequestError(
                f"reason: is {len(reason)} characters; the maximum is {MAX_REASON_CHARS}"
            )
        current = self.history(caller, thread_id)  # the ownership check
        if not isinstance(message_id, str) or not message_id:
            raise InvalidRequestError("message_id: give the id of the reply to rate")
        conversation = self._conversation_of(owner, thread_id, current, message_id)
        if conversation is None:
            raise NotFoundError(f"message_id: thread {thread_id!r} has no reply {message_id!r}")
        registered = self.store.get(threads_namespace(owner), thread_id)
        persona_id = str(registered.value.get("persona_id")) if registered else DEFAULT_PERSONA
        if rating == "none":
            delete_rating(self.store, owner, persona_id, message_id)
            return {"message_id": message_id, "rating": "none", "reason": ""}
        *before, reply = conversation
        turn = next((m for m in reversed(before) if isinstance(m, HumanMessage)), None)
        stored = put_rating(
            self.store,
            owner,
            RatedReply(
                message_id=message_id,
                turn_id=str(turn.id) if turn is not None else "",
                thread_id=thread_id,
                persona_id=persona_id,
                rating="up" if rating == "up" else "down",
                reason=reason,
                prompt=[{"role": _role(m), "content": str(m.content)} for m in before],
                reply=str(reply.content),
            ),
        )
        return {"message_id": stored.message_id, "rating": stored.rating, "reason": stored.reason}

    def _conversation_of(
        self, owner: str, thread_id: str, current: list[AnyMessage], message_id: str
    ) -> list[AnyMessage] | None:
        """The fan/persona messages up to and including the reply `message_id`, on the current
        branch or any other of the thread; None when the thread has no such reply."""
        candidates: list[list[AnyMessage]] = [[m for m in current if m.type in ("human", "ai")]]
        if all(str(m.id) != message_id for m in candidates[0]):
            candidates = [branch for _, branch in self._tips(thread_key(owner, thread_id))]
        for messages in candidates:
            for i, message in enumerate(messages):
                if str(message.id) == message_id and isinstance(message, AIMessage):
                    return messages[: i + 1]
        return None

    def ratings(self, caller: Caller, thread_id: str | None = None) -> dict[str, dict[str, str]]:
        """The caller's ratings, by reply id: {"rating", "reason"} (one thread's, or all)."""
        rows = ratings(self.store, _owner(caller))
        if thread_id is not None:
            thread_id = _thread(thread_id)
            rows = [r for r in rows if r.thread_id == thread_id]
        return {r.message_id: {"rating": r.rating, "reason": r.reason} for r in rows}

    def export_preferences(
        self, caller: Caller, persona_id: str | None = None, all_accounts: bool = False
    ) -> list[dict[str, Any]]:
        """DPO preference pairs (TRL: prompt/chosen/rejected, conversational) from ratings: the
        caller's own, or with `all_accounts` every account's, which only the operator at this
        machine's terminal may export (chat data is private; remote admins get no override)."""
        owner = _owner(caller)
        if all_accounts and not caller.local:
            raise ForbiddenError(
                "all_accounts: only the operator at the server's terminal (the CLI) may export every account's ratings"
            )
        persona = _persona_id(persona_id) if persona_id is not None else None
        return preference_pairs(ratings(self.store, None if all_accounts else owner, persona))

    def _roll_back(self, config: RunnableConfig, before: _Snapshot, error: str) -> None:
        """Undo a failed or stopped turn so the thread stays usable: drop every message the turn
        added (the fan's, and a reply if one was already written) and its pending work, and put the
        store items the turn may have written (memory, summary, profile) back as they were."""
        state = self.graph.get_state(config)
        if state.values:
            added = [m for m in _messages(state.values) if str(m.id) not in before.messages]
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
        messages = list(_messages(state.values)) if state.values else []
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
                return {str(m.id) for m in _messages(snapshot.values)}
        return set()

    def _discard_unfinished(self, config: RunnableConfig) -> dict[str, Any]:
        """Roll back what a turn that never finished left in the thread: its process was killed mid-turn
        (a replica SIGKILLed), so the checkpoint still waits for a node and holds the fan's message
        without a reply. No turn runs in this thread in this process (checked before), so the thread
        goes back to its last finished state. Two replicas running turns in one thread at the same
        time is not supported (the running-turn check is per process). Returns the thread's values
        as the new turn starts from them (one state read per turn, as before)."""
        state = self.graph.get_state(config)
        messages: list[AnyMessage] = list(_messages(state.values))
        if not state.next:
            return dict(state.values)
        finished = self._finished_messages(config)
        removals = [RemoveMessage(id=str(m.id)) for m in messages if str(m.id) not in finished]
        log.warning("persona_chat: rolling back a turn left unfinished (%d messages)", len(removals))
        self.graph.update_state(
            config, {"messages": removals, "last_error": "interrupted"}, as_node="memory_write"
        )
        return {**state.values, "messages": [m for m in messages if str(m.id) in finished]}

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
        Ratings of the persona's replies go too. Returns how many items of each kind were deleted.
        The persona need not exist any more.
        """
        owner, persona_id = _owner(caller), _persona_id(persona_id)
        counts = {**forget_fan(self.store, owner, persona_id), "threads": 0}
        counts["feedback"] = forget_ratings(self.store, owner, persona_id)
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


def _messages(values: Mapping[str, Any] | None) -> list[AnyMessage]:
    """A checkpoint's messages as message objects. The Redis checkpointer returns older checkpoints'
    messages (`get_state_history`) in LangChain's serialised form (dicts with "lc"): revive them."""
    revived: list[AnyMessage] = []
    for message in (values or {}).get("messages", []):
        revived.append(load(message, allowed_objects="messages") if isinstance(message, dict) else message)
    return revived


def _last_ai_text(messages: list[AnyMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, AIMessage):
            return str(message.content)
    return ""


def _role(message: AnyMessage) -> str:
    return "user" if isinstance(message, HumanMessage) else "assistant"
