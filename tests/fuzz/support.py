"""Fakes for the fuzz tests: one chat model for every role that answers any structured request with
a minimal valid instance of the asked schema (read from the request) and any other call with a
short reply; and a stand-in for the CRM graph (its retrieval needs an embedded index)."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from langchain_core.messages import BaseMessage
from langgraph.store.base import BaseStore

from personagraph.insight.source import FixedSource
from personagraph.insight.store import Snapshot
from personagraph.nodes.insight import InsightContext
from personagraph.services.insight import InsightService
from tests.fakes import ScriptedChatModel

ROLES = ("router", "drafter", "stylist", "twin", "judge", "chat")
TEXT_REPLY = "Thanks for the message! It is lovely to hear from you."
_SCHEMA_AT = re.compile(r"matching this JSON schema:\s*(\{.*\})\s*$", re.DOTALL)


def _instance(schema: dict[str, Any], defs: dict[str, Any]) -> Any:
    """A minimal value that satisfies `schema` (the subset pydantic emits for the product's models)."""
    if "$ref" in schema:
        return _instance(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return _instance(options[0], defs)
    kind = schema.get("type", "object")
    if kind == "object":
        required = schema.get("required", [])
        props = schema.get("properties", {})
        return {name: _instance(props.get(name, {}), defs) for name in required}
    if kind == "array":
        return [_instance(schema.get("items", {}), defs) for _ in range(schema.get("minItems", 0))]
    if kind == "string":
        return "x" * max(1, schema.get("minLength", 1))
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        return int(low) + (1 if "exclusiveMinimum" in schema else 0)
    if kind == "boolean":
        return False
    return None


def schema_reply(messages: list[BaseMessage]) -> str:
    """The reply to a call: a minimal instance of the schema a structured call asks for, else text."""
    match = _SCHEMA_AT.search(str(messages[-1].content)) if messages else None
    if match is None:
        return TEXT_REPLY
    schema = json.loads(match.group(1))
    return json.dumps(_instance(schema, schema.get("$defs", {})))


def fake_models() -> dict[str, ScriptedChatModel]:
    return {role: ScriptedChatModel(script=[schema_reply]) for role in ROLES}


class CrmGraphStub:
    """The crm_message graph's result for a valid request, without retrieval or a model."""

    def invoke(
        self, request: dict[str, Any], config: Any = None, *, context: Any = None, **_: Any
    ) -> dict[str, Any]:
        return {"result": {"status": "passed", "message": "msg", "draft": "msg", "request": request,
                           "evidence": [], "checks": {}, "reasons": [], "timings": {"total": 0.0}}}  # fmt: skip


@lru_cache(maxsize=1)
def insight_snapshot() -> Snapshot:
    """A small segmented customer base, made once per session (fitting the segments takes seconds)."""
    from tests.unit.insight_support import small_snapshot

    return small_snapshot()


def insight_source() -> FixedSource:
    return FixedSource(insight_snapshot())


def insight_service(store: BaseStore) -> InsightService:
    """The insight service over the small customer base, without segment-profile retrieval (its
    vector index would be built for every test's new home; the fuzz tests drive validation and
    thread ownership, the insight tests cover retrieval)."""
    return InsightService.for_source(insight_source(), InsightContext(use_profiles=False), store=store)
