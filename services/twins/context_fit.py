"""Questionnaires of any length: split a person's questions into calls that fit the model's context.

The serving model is asked for its context size (vLLM: `max_model_len` in `/v1/models`; llama.cpp's
own server: `n_ctx` in `/props`; the embedded llama-cpp-python server: the context it was started
with) and prompts are counted with the model's own tokenizer (`/tokenize` on vLLM and llama.cpp,
`/extras/tokenize/count` on llama-cpp-python). A server that answers neither is assumed to have
`FALLBACK_CONTEXT` tokens and text is counted as one token per `FALLBACK_BYTES_PER_TOKEN` UTF-8
bytes (over-counting, so a chunk still fits). Each call leaves room for its answer (`max_tokens`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from functools import lru_cache

import httpx

from personagraph.serving import models
from personagraph.serving.local_server import ensure_local_server
from personagraph.serving.redact import redact_url
from personagraph.serving.settings import Role
from personagraph.twins.surveys import Question

log = logging.getLogger(__name__)

FALLBACK_CONTEXT = 4096
FALLBACK_BYTES_PER_TOKEN = 2.5  # Korean is ~2-3 UTF-8 bytes per token, English ~4: err towards more tokens
SAFETY_MARGIN = 0.08  # counted pieces are summed; chat-template tokens and joins are covered by this
TEMPLATE_TOKENS = 48
UNLIMITED_CONTEXT = 1 << 30  # the chat template's role markers for three messages

Counter = Callable[[str], int]


def _server_root(base_url: str) -> str:
    """`http://host:port` of an OpenAI-style base URL (`.../v1`)."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def context_window(role: Role) -> int:
    """The role's model context in tokens, asked from its server once per endpoint."""
    if role in models._overrides:
        return UNLIMITED_CONTEXT  # a test or notebook model has no context to fit
    if models.resolve_role(role).embedded:
        return ensure_local_server().n_ctx
    base_url, model = models.endpoint_of(role)
    return _remote_context(base_url, model, models.api_key_of(role))


@lru_cache(maxsize=32)
def _remote_context(base_url: str, model: str, api_key: str) -> int:
    headers = {"Authorization": f"Bearer {api_key}"}
    try:
        reply = httpx.get(f"{base_url.rstrip('/')}/models", headers=headers, timeout=10.0)
        for entry in reply.json().get("data", []) if reply.status_code == 200 else []:
            if entry.get("id") == model and entry.get("max_model_len"):  # vLLM
                return int(entry["max_model_len"])
        props = httpx.get(f"{_server_root(base_url)}/props", headers=headers, timeout=10.0)
        if props.status_code == 200:  # llama.cpp's llama-server
            n_ctx = props.json().get("default_generation_settings", {}).get("n_ctx")
            if n_ctx:
                return int(n_ctx)
    except (httpx.HTTPError, ValueError, TypeError) as exc:
        log.info("context size of %s not available (%s)", redact_url(base_url), type(exc).__name__)
    return FALLBACK_CONTEXT


def fallback_count(text: str) -> int:
    return math.ceil(len(text.encode("utf-8")) / FALLBACK_BYTES_PER_TOKEN)


def token_counter(role: Role) -> Counter:
    """A function counting a text's tokens with the role's model tokenizer (fallback: by bytes)."""
    if role in models._overrides:
        return fallback_count
    base_url, model = models.endpoint_of(role)
    key = models.api_key_of(role)
    embedded = models.resolve_role(role).embedded
    root = _server_root(base_url)

    @lru_cache(maxsize=4096)
    def count(text: str) -> int:
        headers = {"Authorization": f"Bearer {key}"}
        try:
            if embedded:  # llama-cpp-python
                reply = httpx.post(
                    f"{root}/extras/tokenize/count", json={"input": text}, headers=headers, timeout=30.0
                )
                if reply.status_code == 200:
                    return int(reply.json()["count"])
            else:
                reply = httpx.post(f"{root}/tokenize", json={"model": model, "prompt": text, "content": text},
                                   headers=headers, timeout=30.0)  # fmt: skip
                if reply.status_code == 200:
                    body = reply.json()
                    return int(body["count"]) if "count" in body else len(body["tokens"])
        except (httpx.HTTPError, KeyError, ValueError, TypeError) as exc:
            log.info("tokenizer of %s not available (%s)", redact_url(base_url), type(exc).__name__)
        return fallback_count(text)

    return count


class QuestionTooLongError(ValueError):
    """One question alone (with the person's profile) does not fit the model's context."""


def plan_chunks(
    questions: Sequence[Question],
    *,
    fixed_text: str,
    question_text: Callable[[Question], str],
    answer_tokens: Callable[[Question], int],
    context: int,
    count: Counter,
    most: int | None = None,
    reserve: int = 0,
) -> list[list[Question]]:
    """Split `questions` (in order) into calls whose prompt plus answer room fits `context`.

    `fixed_text` is what every call of this person carries (profile, rules, survey intro);
    `question_text(q)` is what one question adds (its wording and its part of the answer schema);
    `answer_tokens(q)` the answer room it needs. `most` caps the questions per call (`--chunk-size`); `reserve` tokens are kept free in every call.
    """
    fixed = count(fixed_text) + TEMPLATE_TOKENS + reserve
    budget = context / (1 + SAFETY_MARGIN) - fixed
    chunks: list[list[Question]] = []
    current: list[Question] = []
    used = 0.0
    for q in questions:
        cost = count(question_text(q)) + answer_tokens(q)
        if cost > budget:
            raise QuestionTooLongError(
                f"question {q.id}: with the profile and rules it needs about {int(fixed + cost)} tokens, more than "
                f"the model's context of {context}; shorten the profile or the question, or use a larger context"
            )
        if current and (used + cost > budget or (most is not None and len(current) >= most)):
            chunks.append(current)
            current, used = [], 0.0
        current.append(q)
        used += cost
    if current:
        chunks.append(current)
    return chunks


def schema_part(schema: dict[str, object], key: str) -> str:
    """The JSON text of one property of an answer schema (what a question adds to the schema prompt)."""
    props = schema.get("properties", {})
    part = props.get(key) if isinstance(props, dict) else None
    return json.dumps({key: part}, ensure_ascii=False)
