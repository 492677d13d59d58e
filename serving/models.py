"""One factory for every LLM call: `chat_model(role)` and `structured(role, Schema)`.

Both the embedded llama.cpp server and vLLM are reached through `langchain-openai`'s `ChatOpenAI`,
so they share one code path. Structured output is constrained per backend (llama.cpp rejects
`json_schema`, vLLM wants it), validated by pydantic, retried with the validation error, and
reported clearly when it still fails. Tests swap in fake models with `use_models(...)`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, ValidationError

from personagraph.serving.local_server import ensure_local_server
from personagraph.serving.metrics import record_model_error
from personagraph.serving.redact import redact_text, redact_url
from personagraph.serving.settings import ResolvedRole, Role, get_settings
from personagraph.serving.tracing import ensure_tracing

T = TypeVar("T", bound=BaseModel)
log = logging.getLogger(__name__)

_overrides: dict[str, BaseChatModel] = {}

# Batch callers (twin runs) limit the model client itself: a gate run before every request (a rate
# limiter: `--rate` counts model calls, not batch units) and the SDK's transport retries (0 when the
# caller retries itself: one retry layer). Context variables, so each worker thread sets its own.
_before_call: ContextVar[Callable[[], None] | None] = ContextVar("before_model_call", default=None)
_sdk_retries: ContextVar[int | None] = ContextVar("sdk_max_retries", default=None)


@contextmanager
def call_limits(
    before_call: Callable[[], None] | None = None, sdk_retries: int | None = None
) -> Iterator[None]:
    """Within this block (this thread), run `before_call` before every model request and give the
    OpenAI client `sdk_retries` transport retries (None: the LLM_MAX_RETRIES setting)."""
    gate, retries = _before_call.set(before_call), _sdk_retries.set(sdk_retries)
    try:
        yield
    finally:
        _before_call.reset(gate)
        _sdk_retries.reset(retries)


def before_model_call() -> None:
    """Wait at the caller's gate (see `call_limits`), if any; every request path calls this."""
    gate = _before_call.get()
    if gate is not None:
        gate()


class ModelError(RuntimeError):
    """A model call failed in a way the user can act on; `str()` says what happened and what to do.

    `str()` is what a user sees: short, no server address, no exception class. `detail` is for the
    server log (the address without credentials, the client's error, what to configure).
    """

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = redact_text(detail) if detail else message


class ModelUnavailableError(ModelError):
    """The model server could not be reached or answered with a server error."""


class StructuredOutputError(ModelError):
    """The model did not produce valid structured output after all attempts."""

    def __init__(self, message: str, raw: str = ""):
        super().__init__(message, detail=message)
        self.raw = raw


@contextmanager
def use_models(models: Mapping[str, BaseChatModel]) -> Iterator[None]:
    """Serve the given role -> model instances instead of real servers (tests, notebooks)."""
    previous = dict(_overrides)
    _overrides.update(models)
    try:
        yield
    finally:
        _overrides.clear()
        _overrides.update(previous)


def resolve_role(role: Role) -> ResolvedRole:
    return get_settings().role(role)


def endpoint_of(role: Role, *, logprobs: bool = False) -> tuple[str, str]:
    """(base URL, model name) that a role's calls go to, starting the embedded server if needed
    (`logprobs`: the embedded server that returns token log-probabilities, see local_server.py)."""
    resolved = resolve_role(role)
    if resolved.embedded:
        server = ensure_local_server(logprobs=logprobs)
        return server.base_url, server.alias
    assert resolved.base_url is not None
    return resolved.base_url, resolved.model


def api_key_of(role: Role, *, logprobs: bool = False) -> str:
    """The key a role's requests carry: the embedded server's own (generated) key, else the role's
    configured key (LLM_<ROLE>_API_KEY / LLM_API_KEY)."""
    resolved = resolve_role(role)
    if resolved.embedded:
        return ensure_local_server(logprobs=logprobs).api_key
    return resolved.api_key


def chat_model(
    role: Role,
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    top_logprobs: int | None = None,
    grammar: str | None = None,
) -> BaseChatModel:
    """The chat model for a role: an override if one is set, else ChatOpenAI on the role's server.
    `max_tokens`, `temperature` and `top_p` override the role's settings for this model (None: keep).
    `top_logprobs`: replies carry the top token log-probabilities (`response_metadata["logprobs"]`),
    from the embedded logprob server when the role has no base URL (twin answer distributions).
    `grammar`: a GBNF grammar the reply is decoded under, on a llama.cpp server (the embedded one);
    other backends get the call without it, so a prompt must still ask for the same form."""
    if role in _overrides:
        return _overrides[role]
    settings = get_settings()
    resolved = resolve_role(role)
    logprobs = top_logprobs is not None
    base_url, model = endpoint_of(role, logprobs=logprobs)
    limit = max_tokens or settings.llm_max_tokens
    ensure_tracing()
    return ChatOpenAI(
        model=model,
        base_url=base_url,
        api_key=api_key_of(role, logprobs=logprobs),  # type: ignore[arg-type]
        temperature=resolved.temperature if temperature is None else temperature,
        logprobs=logprobs or None,
        top_logprobs=top_logprobs,
        top_p=top_p,
        max_tokens=limit,  # type: ignore[call-arg]
        # ChatOpenAI sends `max_completion_tokens`, which llama-cpp-python's server ignores.
        extra_body=(
            {"max_tokens": limit, **({"grammar": grammar} if grammar else {})}
            if resolved.backend == "llamacpp"
            else None
        ),
        timeout=settings.llm_timeout_s,
        max_retries=settings.llm_max_retries if _sdk_retries.get() is None else _sdk_retries.get(),
        # Token usage in streamed replies (vLLM, the stub server); llama-cpp-python ignores the option.
        stream_usage=True,
        metadata={"role": role},  # traces name the role of each model call (serving/tracing.py)
    )


def response_format_for(role: Role, schema: type[BaseModel]) -> dict[str, Any] | None:
    """JSON-schema constrained decoding in the form the role's backend accepts (None for overrides)."""
    if role in _overrides:
        return None
    json_schema = schema.model_json_schema()
    if resolve_role(role).backend == "llamacpp":
        # llama-cpp-python turns the schema into a grammar; it answers HTTP 500 to `json_schema`.
        return {"type": "json_object", "schema": json_schema}
    return {"type": "json_schema", "json_schema": {"name": schema.__name__, "schema": json_schema}}


def describe_failure(role: Role, exc: Exception) -> ModelError:
    """Turn a client exception into a short error for users; the details (server, cause, what to
    configure) go to the log and to the error's `detail`, with credentials removed."""
    try:
        base_url, _ = endpoint_of(role) if role not in _overrides else ("(test model)", "")
    except Exception as inner:  # the embedded server itself failed to start
        error = ModelUnavailableError(
            f"the model server for role '{role}' could not start; try again later",
            f"the embedded model server for role '{role}' failed to start: {type(inner).__name__}: {inner}",
        )
        return _logged(error)
    where = redact_url(base_url)
    if isinstance(exc, openai.APIConnectionError | openai.APITimeoutError):
        return _logged(ModelUnavailableError(
            f"the model server for role '{role}' did not answer; try again in a moment",
            f"model server for role '{role}' at {where} is unreachable ({type(exc).__name__}: {exc}). "
            f"Start it, or point LLM_BASE_URL / LLM_{role.upper()}_BASE_URL at a running "
            "OpenAI-compatible server (unset both to use the embedded local model), then retry.",
        ))  # fmt: skip
    if isinstance(exc, openai.APIStatusError):
        return _logged(ModelUnavailableError(
            f"the model server for role '{role}' answered with an error (HTTP {exc.status_code}); "
            "try again in a moment",
            f"model server for role '{role}' at {where} answered HTTP {exc.status_code}: {str(exc)[:300]}. "
            f"Check the model name (LLM_{role.upper()}_MODEL) and the server log, then retry.",
        ))  # fmt: skip
    return _logged(ModelError(
        f"the model call for role '{role}' failed; try again in a moment",
        f"model call for role '{role}' at {where} failed: {type(exc).__name__}: {exc}",
    ))  # fmt: skip


def _logged(error: ModelError) -> ModelError:
    log.warning("%s", error.detail)
    return error


def invoke_text(role: Role, messages: Sequence[BaseMessage], **model_kwargs: Any) -> AIMessage:
    """Plain text call with errors mapped to `ModelError` (streams when run under stream_mode='messages')."""
    model = chat_model(role, **model_kwargs)
    try:
        before_model_call()
        reply = model.invoke(list(messages))
    except ModelError:
        raise
    except (openai.OpenAIError, OSError) as exc:
        raise describe_failure(role, exc) from exc
    return reply if isinstance(reply, AIMessage) else AIMessage(content=str(reply.content))


def prewarm_enabled(role: Role) -> bool:
    """Whether CHAT_PREWARM has the role's server warmed (auto: the embedded server only)."""
    setting = get_settings().chat_prewarm
    return setting == "on" or (setting == "auto" and resolve_role(role).embedded)


def warm_prompt(role: Role, messages: Sequence[BaseMessage]) -> bool:
    """Have the role's server read `messages` into its prompt cache (a one-token call, reply
    discarded), so a later call that starts with them reads only what follows. Done when
    `prewarm_enabled`; never for test models. Returns whether a call was made; a failure is logged,
    not raised (the later call just reads the whole prompt)."""
    if role in _overrides or not prewarm_enabled(role):
        return False
    try:
        chat_model(role, max_tokens=1, temperature=0.0).invoke(
            list(messages), config={"metadata": {"prewarm": True}}
        )
    except (openai.OpenAIError, OSError, ModelError) as exc:
        log.warning("prompt warm-up for %s failed: %s", role, type(exc).__name__)
    return True


def stream_text(
    role: Role,
    messages: Sequence[BaseMessage],
    *,
    reply_metadata: dict[str, Any] | None = None,
    **model_kwargs: Any,
) -> Generator[str, None, None]:
    """A plain text reply piece by piece as the model writes it, with errors mapped to `ModelError`.

    The caller decides what of it anyone sees (persona_chat releases checked sentences only);
    closing the iterator early stops reading the model. `reply_metadata` is updated with the
    reply's response metadata as it arrives (`finish_reason` comes with the last piece).
    """
    model = chat_model(role, **model_kwargs)
    # A test model stands in for the server: it gets the per-request settings as call arguments.
    call_kwargs = {k: v for k, v in model_kwargs.items() if v is not None} if role in _overrides else {}
    try:
        for chunk in model.stream(list(messages), **call_kwargs):
            if reply_metadata is not None and chunk.response_metadata:
                reply_metadata.update(chunk.response_metadata)
            if chunk.content:
                yield str(chunk.content)
    except ModelError:
        raise
    except (openai.OpenAIError, OSError) as exc:
        raise describe_failure(role, exc) from exc


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.MULTILINE)


def extract_json(text: str) -> str:
    """The JSON object in a reply, tolerating code fences and chatter around it."""
    cleaned = _FENCE.sub("", text.strip())
    start, end = cleaned.find("{"), cleaned.rfind("}")
    return cleaned[start : end + 1] if start != -1 and end > start else cleaned


def structured(
    role: Role,
    schema: type[T],
    messages: Sequence[BaseMessage],
    *,
    attempts: int | None = None,
    max_tokens: int | None = None,
) -> T:
    """Ask a role for an instance of `schema`: constrained decoding, pydantic validation, retries.

    Each failed attempt is retried with the validation error shown to the model; after the last
    one a `StructuredOutputError` names the role, the schema and the problem. Values are never
    coerced into range silently: bounds live in the pydantic schema and are enforced there.
    """
    attempts = attempts or get_settings().llm_structured_attempts
    schema_text = json.dumps(schema.model_json_schema(), ensure_ascii=False)
    instruction = SystemMessage(
        content=f"Reply with one JSON object only, no prose, matching this JSON schema:\n{schema_text}"
    )
    conversation: list[BaseMessage] = [*messages, instruction]
    model: Any = chat_model(role, max_tokens=max_tokens, temperature=0.0)
    response_format = response_format_for(role, schema)
    if response_format is not None:
        model = model.bind(response_format=response_format)
    raw, problem = "", ""
    for _ in range(attempts):
        try:
            before_model_call()
            reply = model.invoke(conversation)
        except (openai.OpenAIError, OSError) as exc:
            raise describe_failure(role, exc) from exc
        raw = str(reply.content)
        try:
            return schema.model_validate_json(extract_json(raw))
        except ValidationError as exc:
            problem = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
            )
        conversation = [
            *conversation,
            AIMessage(content=raw),
            HumanMessage(
                content=f"That reply was invalid ({problem}). Reply again with corrected JSON only."
            ),
        ]
    record_model_error(role, "invalid_output")
    raise StructuredOutputError(
        f"role '{role}' gave no valid {schema.__name__} after {attempts} attempts: {problem}", raw=raw
    )
