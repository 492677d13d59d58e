"""Nodes of the crm_message graph: validate -> retrieve_evidence -> draft_message -> (tone_refine) ->
repair_message -> check_message -> finalize. The tone rewrite itself is the shared `nodes.tone.tone_refine`.
"""

from __future__ import annotations

import operator
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langgraph.runtime import Runtime
from typing_extensions import TypedDict

from personagraph.crm.catalog import Catalog, CatalogError, brand_copy, load_catalog, promotion_text
from personagraph.crm.checks import check_grounding, run_checks, subject_terms
from personagraph.crm.definitions import HOOKS, PERSONAS, STAGES, STYLES
from personagraph.crm.index import ensure_crm_index
from personagraph.crm.inputs import CrmInputError, CrmRequest, parse_request
from personagraph.crm.repair import repair_message as repair_text
from personagraph.crm.slots import draft_model, slots_for, stated, uncut_draft
from personagraph.memory.vectors import search, vector_client
from personagraph.nodes.tone import ToneState
from personagraph.prompts import crm as prompts
from personagraph.prompts import untrusted
from personagraph.serving.models import ModelError, structured
from personagraph.serving.settings import Role, get_settings


@dataclass(kw_only=True)
class CrmContext:
    """Knobs of one CRM message run; every field is visible in LangGraph Studio."""

    drafter_role: Role = field(
        default="drafter", metadata={"description": "Model role for the factual draft."}
    )
    stylist_role: Role = field(
        default="stylist", metadata={"description": "Model role for the brand-tone rewrite (a LoRA adapter)."}
    )
    top_k: int = field(
        default=3, metadata={"description": "Reviews and tone exemplars retrieved (a request's top_k wins)."}
    )
    max_refine_rounds: int = field(
        default=2,
        metadata={"description": "Rewrites after a failed check before the result is marked failed."},
    )
    draft_max_tokens: int = field(
        default=400, metadata={"description": "Token budget of the structured draft."}
    )
    repair: bool = field(
        default=True,
        metadata={
            "description": "Fix what rules can fix (claims, prices, call to action, length) before the checks."
        },
    )


class CrmInput(TypedDict, total=False):
    """A request: indices or names (see crm.inputs)."""

    persona: int | str
    brand: str
    product: str
    stage_index: int | str
    style_index: int | str
    is_event: int | str
    channel: str
    top_k: int | str
    lang: str
    hook: int | str
    catalog: str


class CrmOutput(TypedDict, total=False):
    status: str  # passed | failed | error | invalid
    error: str | None
    result: dict[str, Any]


class CrmState(CrmInput, CrmOutput, ToneState, total=False):
    request: dict[str, Any]
    started: float
    evidence: list[dict[str, Any]]  # {"id", "kind": product|review|tone|event, "text", "source", "score"}
    event: dict[str, Any] | None
    draft: dict[str, Any]
    checks: dict[str, Any]
    stylist_output: str  # the stylist's text before the repair step
    repairs: list[dict[str, str]]  # this round's fixes (rule, before, after, reason)
    passed: bool
    attempts: Annotated[list[dict[str, Any]], operator.add]


def _request(state: CrmState) -> CrmRequest:
    return CrmRequest.model_validate(state["request"])


def validate(state: CrmState, runtime: Runtime[CrmContext]) -> dict[str, Any]:
    """Load the catalog and resolve the request (names or indices); an invalid value ends the run."""
    started = time.perf_counter()
    raw = {key: state[key] for key in CrmInput.__annotations__ if state.get(key) not in (None, "")}  # type: ignore[literal-required]
    raw.setdefault("top_k", runtime.context.top_k)
    update: dict[str, Any] = {"started": time.time(), "attempts": []}
    try:
        catalog = load_catalog()
        update["request"] = parse_request(raw, catalog).model_dump()
        update["error"] = None
    except (CrmInputError, CatalogError) as exc:
        update.update(status="invalid", error=str(exc))
    update["timings"] = {"load": time.perf_counter() - started}
    return update


def _event(catalog: Catalog, request: CrmRequest) -> dict[str, Any] | None:
    if not request.is_event:
        return None
    promotion = catalog.promotion_for(catalog.products[request.product])
    if promotion is None:
        return None
    names = [catalog.products[p].name for p in promotion.product_ids if p in catalog.products]
    return {**promotion.model_dump(mode="json"), "text": promotion_text(promotion, names)}


def retrieve_evidence(state: CrmState, runtime: Runtime[CrmContext]) -> dict[str, Any]:
    """Product facts, reviews that speak to the persona's concerns, brand-tone exemplars, the event."""
    started = time.perf_counter()
    request = _request(state)
    catalog = load_catalog()
    index = ensure_crm_index(vector_client(), catalog)
    persona, stage, style = (
        PERSONAS[request.persona],
        STAGES[request.stage_index],
        STYLES[request.style_index],
    )
    product = catalog.products[request.product]
    evidence: list[dict[str, Any]] = []
    facts = search(
        index.products, f"{persona.concerns} {product.name}", k=8, where={"product_id": product.id}
    )
    order = {"info": 0, "ingredients": 1, "benefits": 2, "usage": 3}
    facts.sort(key=lambda h: order.get(str(h.metadata.get("fact")), 9))  # price and volume first
    for i, hit in enumerate(facts, start=1):
        evidence.append({"id": f"F{i}", "kind": "product", "text": hit.text,
                         "source": str(hit.metadata.get("source", "")), "score": round(hit.score, 4)})  # fmt: skip
    reviews = search(
        index.reviews, persona.concerns, k=request.top_k,
        where={"$and": [{"product_id": product.id}, {"rating": {"$gte": 4}}]},
    )  # fmt: skip
    for i, hit in enumerate(reviews, start=1):
        evidence.append({"id": f"R{i}", "kind": "review", "text": hit.text, "rating": hit.metadata.get("rating"),
                         "source": str(hit.metadata.get("source", "")), "score": round(hit.score, 4)})  # fmt: skip
    tone = search(
        index.tone, f"{stage.objective} {style.instruction}", k=request.top_k,
        where={"$and": [{"brand_id": request.brand}, {"part": "copy"}]},
    )  # fmt: skip
    for i, hit in enumerate(tone, start=1):
        evidence.append({"id": f"T{i}", "kind": "tone", "text": hit.text,
                         "source": str(hit.metadata.get("source", "")), "score": round(hit.score, 4)})  # fmt: skip
    event = _event(catalog, request)
    if event is not None:
        evidence.append({"id": "E1", "kind": "event", "text": event["text"], "source": f"promotion:{event['id']}",
                         "score": 1.0})  # fmt: skip
    return {"evidence": evidence, "event": event, "timings": {"retrieval": time.perf_counter() - started}}


def evidence_block(evidence: list[dict[str, Any]]) -> str:
    """The evidence as one fenced data block, a line per item: the id and kind are ours, the text is
    data (a review can carry anything), cleaned and kept on its line."""
    lines = []
    for item in evidence:
        if item["kind"] == "tone":
            continue  # tone exemplars go to the stylist, not into the facts
        label = {"product": "product fact", "review": "customer review", "event": "event"}[item["kind"]]
        extra = f", rating {item['rating']}/5" if item.get("rating") else ""
        lines.append((f"[{item['id']}] ({label}{extra})", item["text"]))
    return untrusted.fence_lines(lines, "crm evidence", prompts.WHAT_EVIDENCE)


def draft_messages(state: CrmState) -> list[BaseMessage]:
    request = _request(state)
    catalog = load_catalog()
    brand, product = catalog.brands[request.brand], catalog.products[request.product]
    persona, stage = PERSONAS[request.persona], STAGES[request.stage_index]
    event = state.get("event")
    channel = catalog.channels[request.channel]
    slots = slots_for(channel, request.lang)
    # The voice is catalog text (an imported catalog is anyone's file): fenced as data like the evidence.
    voice = untrusted.fence_lines(
        [("Tone:", brand.tone), ("Uses:", ", ".join(brand.words_used)), ("Never uses:", ", ".join(brand.words_avoided)),
         *(("-", line) for line in brand_copy(brand, request.lang))],
        "brand voice", prompts.WHAT_VOICE,
    )  # fmt: skip
    system = prompts.DRAFT_SYSTEM.format(brand_name=brand.name, brand_name_en=brand.name_en, voice=voice)
    user = prompts.DRAFT_USER.format(
        stage_name=stage.name, stage_name_ko=stage.name_ko, stage_objective=stage.objective,
        stage_target=stage.target_state, persona_name=persona.name, persona_name_ko=persona.name_ko,
        persona_concerns=persona.concerns, persona_sensitivities=persona.sensitivities,
        product_name=product.name,
        event_line=prompts.EVENT_LINE.format(event_id="E1") if event else prompts.NO_EVENT_LINE,
        evidence=evidence_block(state.get("evidence") or []), data_rule=untrusted.DATA_RULE,
        language_name=prompts.LANGUAGE_NAMES[request.lang], channel_label=channel.label,
        headline_max=stated(slots.headline_max), cta_max=stated(slots.cta_max),
        points_line=(prompts.SLOT_POINTS if slots.points else prompts.SLOT_POINTS_HIDDEN).format(
            points=slots.points, point_max=stated(slots.point_max)),
    )  # fmt: skip
    return [SystemMessage(content=system), HumanMessage(content=user)]


def render_draft(draft: dict[str, Any], max_points: int | None = None) -> str:
    """The draft as plain text for the stylist (no evidence ids), with at most `max_points` points."""
    points = draft["points"] if max_points is None else draft["points"][:max_points]
    lines = [draft["headline"], *(f"- {p['text']}" for p in points), draft["call_to_action"]]
    return "\n".join(line.strip() for line in lines if line.strip())


def tone_inputs(state: CrmState, draft: dict[str, Any]) -> dict[str, Any]:
    """What the generic tone node needs: text, voice guide, exemplars, channel constraints."""
    request = _request(state)
    catalog = load_catalog()
    brand = catalog.brands[request.brand]
    persona, stage, style = (
        PERSONAS[request.persona],
        STAGES[request.stage_index],
        STYLES[request.style_index],
    )
    channel = catalog.channels[request.channel]
    if channel.measure == "bytes":
        rule = prompts.CHANNEL_RULE_BYTES.format(max=channel.max, chars=channel.max // 2)
    else:
        rule = prompts.CHANNEL_RULE_CHARS.format(max=channel.max)
    if channel.title_max_chars:
        rule += prompts.CHANNEL_RULE_TITLE.format(title=channel.title_max_chars)
    guide = prompts.CRM_TONE_GUIDE.format(
        brand_name=brand.name, brand_name_en=brand.name_en, introduction=brand.introduction, tone=brand.tone,
        words_used=", ".join(brand.words_used), words_avoided=", ".join(brand.words_avoided),
        style_name=style.name, style_name_ko=style.name_ko, style_instruction=style.instruction,
        stage_name=stage.name, stage_objective=stage.objective, persona_name=persona.name,
        persona_name_ko=persona.name_ko, persona_concerns=persona.concerns,
    )  # fmt: skip
    if request.hook:
        guide += "\n" + prompts.HOOK_LINE.format(hook=HOOKS[request.hook].instruction)
    return {
        "tone_text": render_draft(draft, slots_for(channel, request.lang).points),
        "tone_guide": guide,
        "tone_exemplars": [e["text"] for e in state.get("evidence") or [] if e["kind"] == "tone"],
        "tone_constraints": [prompts.CRM_CONSTRAINTS.format(channel_label=channel.label, channel_rule=rule)],
        "tone_lang": request.lang,
        "tone_feedback": [],
        "tone_rounds": 0,
        "tone_output": "",
    }


def draft_message(state: CrmState, runtime: Runtime[CrmContext]) -> dict[str, Any]:
    """The drafter's structured, evidence-citing draft; a model failure ends the run with status=error."""
    started = time.perf_counter()
    try:
        channel = load_catalog().channels[_request(state).channel]
        slots = slots_for(channel, _request(state).lang)
        draft = structured(
            runtime.context.drafter_role,
            draft_model(slots),
            draft_messages(state),
            max_tokens=runtime.context.draft_max_tokens,
        ).model_dump()
        draft = uncut_draft(draft, slots)
    except ModelError as exc:
        return {
            "status": "error",
            "error": f"draft failed: {exc}",
            "timings": {"draft": time.perf_counter() - started},
        }
    return {"draft": draft, **tone_inputs(state, draft), "timings": {"draft": time.perf_counter() - started}}


def repair_message(state: CrmState, runtime: Runtime[CrmContext]) -> dict[str, Any]:
    """Deterministic fixes to the stylist's text (crm/repair.py), each with its reason; the checks
    that follow are unchanged."""
    started = time.perf_counter()
    message = state.get("tone_output") or ""
    if not runtime.context.repair:
        return {"stylist_output": message, "repairs": []}
    request = _request(state)
    catalog = load_catalog()
    product = catalog.products[request.product]
    repaired, fixes = repair_text(
        message, lang=request.lang, channel=request.channel, catalog=catalog,
        evidence=state.get("evidence") or [], draft=state.get("draft"), brand_id=request.brand,
        subject=product.name if request.lang == "ko" else product.name_en,
        names=subject_terms(catalog, request.product),
    )  # fmt: skip
    return {
        "tone_output": repaired,
        "stylist_output": message,
        "repairs": fixes,
        "timings": {"repair": time.perf_counter() - started},
    }


def check_message(state: CrmState, runtime: Runtime[CrmContext]) -> dict[str, Any]:
    """Output safety on the stylist's message; failures become the reasons for the next rewrite."""
    started = time.perf_counter()
    request = _request(state)
    message = state.get("tone_output") or ""
    report = run_checks(
        message, evidence=state.get("evidence") or [], catalog=load_catalog(), channel=request.channel,
        lang=request.lang, draft=state.get("draft"), subject=subject_terms(load_catalog(), request.product),
        instructions=prompts.INSTRUCTIONS,
    )  # fmt: skip
    attempt = {"round": state.get("tone_rounds", 0), "message": message, "passed": report["passed"],
               "reasons": report["reasons"], "stylist_message": state.get("stylist_output", message),
               "repairs": state.get("repairs") or []}  # fmt: skip
    return {
        "checks": report["checks"],
        "passed": report["passed"],
        "tone_feedback": report["reasons"],
        "attempts": [attempt],
        "timings": {"checks": time.perf_counter() - started},
    }


def model_names(context: CrmContext) -> dict[str, str]:
    settings = get_settings()
    names: dict[str, str] = {}
    for role in (context.drafter_role, context.stylist_role):
        resolved = settings.role(role)
        names[role] = f"{resolved.model}@{resolved.base_url or 'embedded:' + settings.local_model}"
    return names


def build_result(state: CrmState, context: CrmContext) -> dict[str, Any]:
    """The JSON result: request, stage, style, event, draft, message, evidence, checks, timings."""
    timings = dict(state.get("timings") or {})
    for key in ("load", "retrieval", "draft", "refine", "repair", "checks"):
        timings.setdefault(key, 0.0)
    timings["total"] = round(time.time() - state.get("started", time.time()), 4)
    timings = {k: round(v, 4) for k, v in timings.items()}
    if state.get("status") == "invalid":
        return {"status": "invalid", "error": state.get("error"), "timings": timings}
    request = _request(state)
    catalog = load_catalog()
    stage, style, persona = (
        STAGES[request.stage_index],
        STYLES[request.style_index],
        PERSONAS[request.persona],
    )
    channel = catalog.channels[request.channel]
    draft = state.get("draft")
    cited = {i for p in (draft or {}).get("points", []) for i in p.get("evidence_ids", [])}
    checks = state.get("checks") or {}
    supported = {i for fact in checks.get("grounding", {}).get("supported", []) for i in fact["evidence_ids"]}
    evidence = [{**e, "cited": e["id"] in cited, "supports_message": e["id"] in supported}
                for e in state.get("evidence") or []]  # fmt: skip
    error: str | None
    if state.get("tone_error"):
        status, error = "error", f"tone refine failed: {state['tone_error']}"
    elif state.get("error"):
        status, error = "error", state["error"]
    else:
        status, error = ("passed" if state.get("passed") else "failed"), None
    attempts = state.get("attempts") or []
    return {
        "status": status,
        "error": error,
        "request": request.model_dump(),
        "persona": {"index": persona.index, "name": persona.name, "name_ko": persona.name_ko},
        "brand": {"id": request.brand, "name": catalog.brands[request.brand].name},
        "product": {"id": request.product, "name": catalog.products[request.product].name},
        "stage": {"index": stage.index, "name": stage.name, "name_ko": stage.name_ko,
                  "objective": stage.objective, "target_state": stage.target_state},
        "style": {"index": style.index, "name": style.name, "name_ko": style.name_ko,
                  "instruction": style.instruction},
        "channel": {"name": request.channel, **channel.model_dump()},
        "event": state.get("event"),
        "draft": draft,
        "draft_checks": check_grounding(render_draft(draft), state.get("evidence") or [], catalog) if draft else None,
        "message": state.get("tone_output") or "",
        "checks": checks,
        "reasons": attempts[-1]["reasons"] if attempts and status == "failed" else [],
        "rounds": int(state.get("tone_rounds") or 0),
        "attempts": attempts,
        "evidence": evidence,
        "models": model_names(context),
        "timings": timings,
    }  # fmt: skip


def finalize(state: CrmState, runtime: Runtime[CrmContext]) -> dict[str, Any]:
    """Assemble the result JSON and the final status."""
    result = build_result(state, runtime.context)
    return {"result": result, "status": result["status"], "error": result.get("error")}
