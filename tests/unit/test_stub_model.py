"""The stub model server's replies (minimal schema instances, marker echo) and its HTTP API, in process."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel, Field

from personagraph.serving.stub_model import (
    StubConfig,
    build_app,
    find_marker,
    minimal_instance,
    plan,
    requested_schema,
)


class Point(BaseModel):
    label: Literal["a", "b"]
    weight: int = Field(ge=3, le=9)


class Reply(BaseModel):
    intent: Literal["smalltalk", "knowledge"]
    query: str = ""
    name: str = Field(min_length=5, max_length=20)
    points: list[Point] = Field(min_length=2)
    maybe: Point | None
    score: float = Field(gt=1.5)
    code: Literal["x"]


def test_minimal_instance_is_valid_for_a_pydantic_schema() -> None:
    value = minimal_instance(Reply.model_json_schema())
    parsed = Reply.model_validate(value)
    assert parsed.intent == "smalltalk" and len(parsed.points) == 2 and parsed.points[0].weight == 3
    assert "query" not in value  # required properties only


def test_minimal_instance_meets_bounds_and_unique_items() -> None:
    assert minimal_instance({"type": "integer", "minimum": -5, "maximum": -2}) == -2
    assert minimal_instance({"type": "number", "exclusiveMaximum": -1}) == -1.5
    assert minimal_instance(
        {"type": "array", "minItems": 3, "uniqueItems": True, "items": {"enum": [1, 2, 3]}}
    ) == [1, 2, 3]
    assert minimal_instance({"type": ["null", "string"], "minLength": 4}) == "okkk"
    assert minimal_instance({"type": "string", "format": "date"}) == "2026-01-01"


def test_schema_found_in_response_format_or_system_message() -> None:
    schema = Point.model_json_schema()
    vllm = {"response_format": {"type": "json_schema", "json_schema": {"name": "P", "schema": schema}}}
    llamacpp = {"response_format": {"type": "json_object", "schema": schema}}
    message = {
        "messages": [
            {"role": "system", "content": f"Reply ... matching this JSON schema:\n{json.dumps(schema)}"}
        ]
    }
    assert requested_schema(vllm) == requested_schema(llamacpp) == requested_schema(message) == schema
    assert requested_schema({"messages": [{"role": "user", "content": "hi"}]}) is None


def test_text_reply_echoes_the_marker_of_the_last_user_message() -> None:
    messages = [
        {"role": "user", "content": "old pgm000000aa"},
        {"role": "assistant", "content": "pgm000000aa hello"},
        {"role": "user", "content": "new one pgm000000bb"},
        {"role": "system", "content": "instruction pgm000000cc"},
    ]
    assert find_marker(messages) == "pgm000000bb"
    kind, pieces, marker = plan({"messages": messages, "max_tokens": 10}, StubConfig(reply_tokens=40))
    text = "".join(pieces)
    assert kind == "text" and marker == "pgm000000bb" and len(pieces) == 10
    assert text.startswith("pgm000000bb ") and text.endswith(".") and "pgm000000aa" not in text
    _, korean, _ = plan({"messages": [{"role": "user", "content": "안녕"}]}, StubConfig(reply_tokens=5))
    assert "\uac00" <= "".join(korean)[0] <= "\ud7a3"


def test_timing_plan() -> None:
    assert StubConfig(first_token_delay_s=0.2, tokens_per_s=50).seconds_for(11) == 0.2 + 10 / 50
    assert StubConfig(first_token_delay_s=0, tokens_per_s=0).seconds_for(40) == 0


async def _exercise() -> dict[str, Any]:
    client = TestClient(
        TestServer(build_app(StubConfig(first_token_delay_s=0, tokens_per_s=0, reply_tokens=6)))
    )
    await client.start_server()
    try:
        models = await (await client.get("/v1/models")).json()
        body = {"model": "stub", "messages": [{"role": "user", "content": "hi pgm0000abcd"}]}
        plain = await (await client.post("/v1/chat/completions", json=body)).json()
        streamed = await client.post(
            "/v1/chat/completions", json={**body, "stream": True, "stream_options": {"include_usage": True}}
        )
        events = [line[6:] for line in (await streamed.text()).splitlines() if line.startswith("data: ")]
        schema = {"type": "json_schema", "json_schema": {"name": "P", "schema": Point.model_json_schema()}}
        structured = await (
            await client.post("/v1/chat/completions", json={**body, "response_format": schema})
        ).json()
        await client.post("/config", json={"fail_status": 503})
        failing = await client.post("/v1/chat/completions", json=body)
        stats = await (await client.get("/stats")).json()
        return {
            "models": models, "plain": plain, "events": events, "structured": structured,
            "failing": failing.status, "stats": stats,
        }  # fmt: skip
    finally:
        await client.close()


def test_http_api_stream_usage_structured_and_stats() -> None:
    result = asyncio.run(_exercise())
    assert result["models"]["data"][0]["id"] == "stub"
    plain = result["plain"]
    assert plain["choices"][0]["message"]["content"].startswith("pgm0000abcd")
    assert plain["usage"]["completion_tokens"] == 6
    events = result["events"]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == plain["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 6
    Point.model_validate_json(result["structured"]["choices"][0]["message"]["content"])
    assert result["failing"] == 503
    records = result["stats"]["records"]
    assert [r["kind"] for r in records] == ["text", "text", "structured"]
    assert records[1]["stream"] and records[0]["marker"] == "pgm0000abcd"
