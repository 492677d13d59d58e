"""Nodes of the insight_qa graph: intent -> scope -> figures + profile retrieval -> answer -> numeric check.

extract_intent  keyword pre-router (Korean/English); the router role decides when the cues are not
                unambiguous (structured output), with the keyword guess as fallback on a model error
scope           the segments / customer ids the question is about, per intent; nothing else is read
gather          exact figures (insight.facts), each limited to the scope, from one snapshot
retrieve_profiles  segment profile documents of the scope's segments only
answer          a prompt specialised for the intent, in the question's language
check_numbers   every number must match a gathered figure and no other segment may be named; a failing
                answer keeps its sentences before the first failing one; one failing from its first
                sentence is regenerated once, then replaced by a short note (flagged)

A run may carry the thread's last turn (`previous`, from the insight service): a question that reads
as a follow-up ("and in Korean?", "그 중 VIP는?") takes its intent and scope from it
(insight.followup) and the answer prompt shows that earlier turn; its figures are gathered afresh.
"""

from __future__ import annotations

import json
import re
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langgraph.runtime import Runtime
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema
from typing_extensions import TypedDict

from personagraph.insight import facts
from personagraph.insight import profiles as profile_docs
from personagraph.insight.comparisons import borrowed_descriptions, wrong_comparisons
from personagraph.insight.followup import PreviousTurn, requested_language, resolve_follow_up
from personagraph.insight.intent_classifier import combine
from personagraph.insight.lexicon import find_customers, keyword_intent, mentioned_segments
from personagraph.insight.numbers import NumericCheck
from personagraph.insight.numbers import check_numbers as numeric_check
from personagraph.insight.questions import (
    MAX_QUESTION_CHARS,
    RouterMode,
    validate_question,
    validate_router_mode,
)
from personagraph.insight.segments import SEGMENT_LABELS, boundary_customers, label
from personagraph.insight.source import InsightSource, default_source
from personagraph.insight.stats import figures, known_segments, records
from personagraph.insight.template_answer import comparison_sentences
from personagraph.memory.vectors import vector_client
from personagraph.prompts import insight as prompts
from personagraph.prompts import untrusted
from personagraph.serving.language import Lang, detect_language, script_drift
from personagraph.serving.models import ModelError, stream_text, structured
from personagraph.serving.settings import Role

Intent = Literal[
    "summary", "segment_profile", "strategy", "message_drafting", "customer_lookup", "segment_comparison",
    "out_of_scope",
]  # fmt: skip
SegmentId = Literal["vip", "loyal", "new", "at_risk", "dormant", "regular", "occasional"]
BOUNDARY_INTENTS = ("segment_profile", "strategy", "message_drafting")


@dataclass(kw_only=True)
class InsightContext:
    """Knobs of one insight_qa run; every field but the data source is visible in LangGraph Studio."""

    # Lets pydantic (Studio's schema) accept the `source` field's plain class.
    __pydantic_config__ = ConfigDict(arbitrary_types_allowed=True)

    router_role: Role = field(default="router", metadata={"description": "Model role for intent extraction."})
    drafter_role: Role = field(default="drafter", metadata={"description": "Model role that writes answers."})
    router_mode: RouterMode = field(
        default="hybrid",
        metadata={"description": "hybrid: keywords decide when unambiguous, else the router model; "
                  "model: always the router model; keywords: never a model."},
    )  # fmt: skip
    top_k: int = field(default=2, metadata={"description": "Segment profile chunks retrieved."})
    use_profiles: bool = field(default=True, metadata={"description": "Retrieve segment profile documents."})
    top_products: int = field(default=5, metadata={"description": "Products per top-products figure."})
    trend_months: int = field(default=6, metadata={"description": "Months in the trend figure."})
    max_revisions: int = field(
        default=1, metadata={"description": "Regenerations after a failed numeric check."}
    )
    max_question_chars: int = field(
        default=MAX_QUESTION_CHARS, metadata={"description": "Longest question accepted."}
    )
    answer_max_tokens: int = field(
        default=150,
        metadata={"description": "Longest answer, in tokens (the prompts ask for 2-4 sentences; an answer "
                  "cut at this length ends at its last whole sentence)."},
    )  # fmt: skip
    # Set in-process by the insight service; Studio runs leave it empty and read default_source().
    # An object, not JSON: left out of the schema Studio shows.
    source: SkipJsonSchema[InsightSource | None] = None


class InsightInput(TypedDict):
    question: str
    previous: NotRequired[PreviousTurn]  # the thread's last turn, for a follow-up question


class InsightOutput(TypedDict, total=False):
    question: str
    answer: str
    lang: str
    intent: str
    router: str  # keywords | model | keywords (model error: ...)
    scope: dict[str, list[str]]  # {"segments": [...], "customers": [...]}
    tool_results: dict[str, Any]
    figures: list[dict[str, Any]]  # {"tool", "path", "value"}
    retrieved: list[dict[str, Any]]
    check: dict[str, Any]
    flagged: bool
    error: str | None
    follow_up: bool  # resolved against the thread's previous turn


class InsightState(InsightOutput, total=False):
    previous: PreviousTurn
    clarify: str  # what to ask for when the scope is missing: segment | segments | customer
    revisions: int
    revision_note: str


class IntentDecision(BaseModel):
    """The router's reading of a question."""

    intent: Intent = Field(description="What the marketer wants.")
    segments: list[SegmentId] = Field(
        default_factory=list, max_length=7, description="Segments the question is about."
    )
    customers: list[str] = Field(default_factory=list, max_length=5, description="Customer ids it names.")


def data_source(runtime: Runtime[InsightContext]) -> InsightSource:
    """The run's customer data: the service's source, else the one the settings name."""
    return runtime.context.source or default_source()


def extract_intent(state: InsightState, runtime: Runtime[InsightContext]) -> dict[str, Any]:
    """Intent and named segments/customers: keywords when unambiguous, else the router model."""
    ctx = runtime.context
    router_mode = validate_router_mode(ctx.router_mode)
    question = validate_question(state.get("question"), ctx.max_question_chars)
    lang = requested_language(question) or detect_language(question)
    previous = state.get("previous")
    words = keyword_intent(question)
    follow = resolve_follow_up(question, words, previous)
    guess = follow or combine(question, words)
    boundary = {"boundary": [guess.boundary]} if guess.boundary else {}
    base = {"question": question, "lang": lang, "revisions": 0, "error": None, "flagged": False,
            "follow_up": follow is not None}  # fmt: skip
    if router_mode == "keywords" or (router_mode == "hybrid" and guess.confident):
        return {**base, "intent": guess.intent, "router": "keywords",
                "scope": {"segments": guess.segments, "customers": guess.customers, **boundary}}  # fmt: skip
    asked = question
    if follow is not None and previous is not None:
        asked = prompts.ROUTER_EARLIER.format(question=previous.get("question", "")) + question
    try:
        decision = structured(
            ctx.router_role,
            IntentDecision,
            [
                SystemMessage(
                    content=prompts.ROUTER_SYSTEM.format(
                        segments=", ".join(SEGMENT_LABELS),
                        hint_intent=guess.intent,
                        hint_segments=guess.segments,
                    )
                ),
                HumanMessage(content=asked),
            ],  # fmt: skip
            max_tokens=120,
        )
    except ModelError as exc:
        return {**base, "intent": guess.intent, "router": f"keywords (model error: {str(exc)[:200]})",
                "scope": {"segments": guess.segments, "customers": guess.customers, **boundary}}  # fmt: skip
    # Segments the question names explicitly win over the model's; customer ids must be in the text.
    segments = guess.segments or list(dict.fromkeys(decision.segments))
    named = find_customers(question)
    customers = named or [c for c in decision.customers if c in question]
    if follow is not None and not (segments or customers):  # "why?": the earlier turn's scope
        segments, customers = list(follow.segments), list(follow.customers)
    if guess.boundary and guess.boundary not in segments:
        segments.append(guess.boundary)
    return {**base, "intent": decision.intent, "router": "model",
            "scope": {"segments": segments, "customers": customers, **boundary}}  # fmt: skip


def scope(state: InsightState, runtime: Runtime[InsightContext]) -> dict[str, Any]:
    """Limit the data the answer may use to what the intent and the question name."""
    intent = state.get("intent", "out_of_scope")
    named = state.get("scope") or {}
    available = known_segments(data_source(runtime).snapshot())
    segments = [s for s in named.get("segments", []) if s in available]
    customers = list(named.get("customers", []))
    clarify = ""
    if intent == "out_of_scope":
        segments, customers = [], []
    elif intent == "summary":
        segments, customers = available, []
    elif intent == "customer_lookup":
        segments = []
        clarify = "" if customers else "customer"
    elif intent == "segment_comparison":
        customers = []
        clarify = "" if len(segments) >= 2 else "segments"
    else:
        customers = []
        clarify = "" if segments else "segment"
    # Boundary customers (issue 21): kept for a segment intent whose scope holds the target segment.
    toward = [s for s in named.get("boundary", []) if s in segments and intent in BOUNDARY_INTENTS]
    return {"scope": {"segments": segments, "customers": customers, **({"boundary": toward} if toward else {})},
            "clarify": clarify}  # fmt: skip


def refuse(state: InsightState) -> dict[str, Any]:
    """Out of scope: a polite refusal, no figures."""
    return {"answer": prompts.REFUSAL[state.get("lang", "en")], "tool_results": {}, "figures": []}


def clarify(state: InsightState, runtime: Runtime[InsightContext]) -> dict[str, Any]:
    """The scope is missing: ask which segment(s) or customer."""
    lang = state.get("lang", "en")
    names = ", ".join(label(s, lang) for s in known_segments(data_source(runtime).snapshot()))
    what = prompts.CLARIFY_WHAT[state.get("clarify") or "segment"][lang]
    return {
        "answer": prompts.CLARIFY[lang].format(what=what, segments=names),
        "tool_results": {},
        "figures": [],
    }


def gather(state: InsightState, runtime: Runtime[InsightContext]) -> dict[str, Any]:
    """Collect the figures the intent needs, each limited to the scope, from one snapshot."""
    ctx = runtime.context
    snap = data_source(runtime).snapshot()
    intent = state.get("intent")
    sc = state.get("scope") or {}
    segs, custs = list(sc.get("segments", [])), list(sc.get("customers", []))
    results: dict[str, Any] = {}
    toward = [s for s in sc.get("boundary", []) if s in segs]
    if toward:  # customers close to a segment, from their memberships; the group's own figures after
        among = [s for s in segs if s != toward[0]]
        results[f"boundary_customers[{toward[0]}]"] = boundary_customers(
            snap.customers, toward[0], among, threshold=data_source(runtime).settings.boundary_threshold
        )
        segs = among
    if intent == "summary":
        results["segment_overview"] = facts.segment_overview(snap, segs)
    elif intent == "customer_lookup":
        for c in custs:
            results[f"customer_lookup[{c}]"] = facts.customer_lookup(snap, c, custs)
    elif intent == "segment_comparison":
        results["compare_segments"] = facts.compare_segments(snap, segs, segs)
    else:
        for s in segs:
            results[f"segment_stats[{s}]"] = facts.segment_stats(snap, s, segs)
            results[f"top_products[{s}]"] = facts.top_products(snap, s, segs, n=ctx.top_products)
            if intent in ("segment_profile", "strategy"):
                results[f"trend[{s}]"] = facts.trend(snap, s, segs, months=ctx.trend_months)
    return {
        "tool_results": results,
        "figures": [
            {"tool": name, "path": path, "value": value}
            for name, result in results.items()
            for path, value in figures(result)
        ],  # fmt: skip
    }


def retrieve_profiles(state: InsightState, runtime: Runtime[InsightContext]) -> dict[str, Any]:
    """Segment profile documents of the in-scope segments (rebuilt from live stats when stale)."""
    ctx = runtime.context
    segs = list((state.get("scope") or {}).get("segments", []))
    # A summary's figures cover every segment: their seven documents would double the prompt.
    if not ctx.use_profiles or not segs or state.get("intent") in ("customer_lookup", "summary"):
        return {"retrieved": []}
    source = data_source(runtime)
    client = vector_client()
    profile_docs.ensure_profiles(client, source.snapshot(), source.settings.profile_max_age_s)
    query = state.get("question", "")
    if state.get("follow_up"):  # "and in Korean?" says little: search with the earlier question too
        query = f"{(state.get('previous') or {}).get('question', '')} {query}".strip()
    hits = profile_docs.search_profiles(client, query, segs, k=max(ctx.top_k, len(segs)))
    return {"retrieved": [h for h in hits if h["segment"] in segs]}


def allowed_segments(state: InsightState) -> list[str]:
    """Segments an answer may name: the scope's, plus the segment of each looked-up customer."""
    allowed = list((state.get("scope") or {}).get("segments", []))
    for name, result in (state.get("tool_results") or {}).items():
        if name.startswith("customer_lookup") and isinstance(result, dict) and result.get("segment"):
            allowed.append(str(result["segment"]))
    return allowed


def _scope_names(state: InsightState, lang: str) -> str:
    sc = state.get("scope") or {}
    names = [f"{label(s, 'en')} ({label(s, 'ko')})" for s in allowed_segments(state)]
    names += [f"customer {c}" for c in sc.get("customers", [])]
    return ", ".join(names) or "-"


# What the answer prompt leaves out of the figures: segment display names (the TASK names the scope
# in both languages), product codes, product names in the other language, and the trend's monthly
# rows (the reader sees them in the chart; the last month's change stands for them in the prompt,
# and they were a sixth of a segment question's prompt, read at about 40-60 tokens/s).
_LEFT_OUT = {"en": frozenset({"label_en", "label_ko", "sku", "name_ko", "months", "rank"}),
             "ko": frozenset({"label_en", "label_ko", "sku", "name_en", "months", "rank"})}  # fmt: skip
# Products per top-products table in the prompt: the answers name two or three (the reader sees all
# `top_products` of them); each Korean row is about 25 tokens.
PROMPT_PRODUCTS = 3


def prompt_figures(value: Any, lang: str) -> Any:
    """The figures as the answer prompt shows them (the checks compare the answer with all of them):
    no display names, codes, other-language names, ranks (the rows are in rank order) or monthly rows,
    and the first `PROMPT_PRODUCTS` products of a table."""
    left_out = _LEFT_OUT["ko" if lang == "ko" else "en"]
    if isinstance(value, dict) and "first_vs_second" in value:
        # A comparison's ratios in words, both segments named in each line (with the ratios' key
        # names the model wrote "an avg_orders_ratio of 3.37", and "0.05" for a 21x difference).
        words = comparison_sentences(value, lang)
        rest = {k: v for k, v in value.items() if k != "first_vs_second"}
        return {**({"side_by_side": words} if words else {}), **prompt_figures(rest, lang)}
    if isinstance(value, dict):
        return {
            k: prompt_figures(v[:PROMPT_PRODUCTS] if k == "products" and isinstance(v, list) else v, lang)
            for k, v in value.items()
            if k not in left_out
        }
    if isinstance(value, list):
        return [prompt_figures(v, lang) for v in value]
    return value


def figures_text(results: dict[str, Any]) -> str:
    """The figures as short lines, one per tool result and one per record of its lists, every value
    next to its name (`key=value`; a table with its columns named once made the 1.5B model give one
    segment's customers to another). About a quarter fewer tokens than compact JSON (every token is
    read before the model writes: about 60 tokens/s on 2 cores); numbers as JSON writes them."""
    lines: list[str] = []
    for name, result in results.items():
        lines += _result_lines(name, result)
    return "\n".join(lines)


# Each result's title in the prompt, in words: with the tool's name and argument as the title
# ("segment_stats[loyal]") the model cited them in its answers, "(segment_stats[loyal])".
_TITLES = {
    "segment_stats": "{} figures", "top_products": "{} top products", "trend": "{} trend",
    "boundary_customers": "customers close to {}", "customer_lookup": "customer {}",
    "compare_segments": "comparison", "segment_overview": "overview",
}  # fmt: skip
_RESULT_NAME = re.compile(r"(\w+)(?:\[([^\]]*)\])?")


def _tool_and_argument(name: str) -> tuple[str, str | None]:
    """ "segment_stats[at_risk]" -> ("segment_stats", "at_risk"); "compare_segments" -> (it, None)."""
    match = _RESULT_NAME.fullmatch(name)
    return (match[1], match[2]) if match else (name, None)


def figure_title(name: str) -> str:
    """ "segment_stats[at_risk]" -> "At-risk figures" (a tool without a title keeps its name)."""
    tool, argument = _tool_and_argument(name)
    if tool not in _TITLES:
        return name
    return _TITLES[tool].format(argument or "" if tool == "customer_lookup" else label(argument or "", "en"))


def _result_lines(name: str, value: Any) -> list[str]:
    title = figure_title(name)
    if not isinstance(value, dict):
        return [f"{title}: {_inline(value)}"]
    argument = _tool_and_argument(name)[1]
    # A segment's own result names its segment in the title: its `segment=` would repeat it.
    scalars = {
        k: v
        for k, v in value.items()
        if not _is_table(v) and not _is_text_lines(v) and not (k == "segment" and v == argument)
    }
    lines = [f"{title}: " + "; ".join(f"{k}={_inline(v)}" for k, v in scalars.items())] if scalars else []
    for key, rows in value.items():
        if _is_text_lines(rows):
            lines += [f"{title}, {key.replace('_', ' ')}:", *(f"- {row}" for row in rows)]
        if _is_table(rows):
            implied = title.endswith(key.replace("_", " "))  # "VIP top products" heads its products
            if not (lines and implied):
                lines.append(f"{title}:" if implied else f"{title}, {key.replace('_', ' ')}:")
            lines += ["- " + "; ".join(f"{k}={_inline(v)}" for k, v in row.items()) for row in rows]
    return lines


def _is_text_lines(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def _is_table(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_inline(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    if isinstance(value, str):
        return " ".join(value.split())
    return json.dumps(value, ensure_ascii=False)


_LAST_SENTENCE_END = re.compile(r"[.!?。]+[\"')\]]*(?=\s|$)|\n")


def whole_sentences(text: str) -> str:
    """The text up to its last sentence end (an answer cut at the token limit ends mid-sentence);
    all of it when it has no sentence end."""
    ends = [m.end() for m in _LAST_SENTENCE_END.finditer(text)]
    return text[: ends[-1]].rstrip() if ends else text


def answer_messages(state: InsightState) -> list[BaseMessage]:
    """The answer prompt: the constant rules (system message, kept by the server between calls), the
    data (figures; segment documents with the customers' own notes, fenced as data; the earlier turn),
    the question, and the task, read last."""
    lang = state.get("lang", "en")
    intent = state.get("intent", "summary")
    # The note fencing the profiles as data is in the system message (it never changes).
    blocks = [
        untrusted.data_block(text, str(d.get("source") or d.get("segment") or "segment profile"))
        for d in state.get("retrieved") or []
        if (text := profile_docs.prompt_text(d["text"], lang))
    ]
    parts = [
        prompts.CONTEXT.format(
            figures=figures_text(prompt_figures(state.get("tool_results") or {}, lang)),
            profiles="\n".join(blocks) or untrusted.NONE,
        )
    ]
    previous = state.get("previous")
    if state.get("follow_up") and previous:
        turn = prompts.EARLIER_TURN.format(
            question=previous.get("question", ""), answer=previous.get("answer", "")
        )
        parts.append(prompts.EARLIER.format(turn=untrusted.fence(turn, "earlier turn", prompts.WHAT_EARLIER)))
    parts.append(prompts.QUESTION.format(question=state.get("question", "")))
    parts.append(
        prompts.TASK.format(
            scope_names=_scope_names(state, lang),
            language_name=prompts.LANGUAGE_NAMES[lang],
            intent_instruction=prompts.INTENT_INSTRUCTIONS.get(intent, ""),
        )  # fmt: skip
    )
    if state.get("revision_note"):
        parts.append(state["revision_note"])
    return [SystemMessage(content=prompts.SYSTEM), HumanMessage(content="\n\n".join(parts))]


def answer(state: InsightState, runtime: Runtime[InsightContext]) -> dict[str, Any]:
    """Write the answer from the figures with the intent's prompt, in the question's language. The
    reply is read sentence by sentence and no further than its first sentence that fails the checks:
    check_numbers keeps only what comes before it, so the rest would be written for nothing (a
    failing second sentence used to leave 10-15 s of text to be cut on two cores)."""
    ctx = runtime.context
    lang = state.get("lang", "en")
    message = state.get("intent") == "message_drafting"  # a message has lines; every other answer is prose
    grammar = prompts.MESSAGE_GRAMMAR if message else prompts.PROSE_GRAMMAR
    tool_results, question = state.get("tool_results") or {}, state.get("question", "")
    allowed = allowed_segments(state)
    metadata: dict[str, Any] = {}
    text, passed = "", 0  # passed: where the sentences that passed the checks end
    try:
        pieces = stream_text(ctx.drafter_role, answer_messages(state), reply_metadata=metadata,
                             max_tokens=ctx.answer_max_tokens, grammar=grammar)  # fmt: skip
        with closing(pieces):
            for piece in pieces:
                text += piece
                ends = [m.end() for m in SENTENCE_END.finditer(text, passed)]
                if not ends:
                    continue
                if not passes_checks(text[: ends[-1]], tool_results, question, allowed, lang):
                    break
                passed = ends[-1]
    except ModelError as exc:
        return {
            "answer": prompts.ERROR[lang].format(error=str(exc)[:300]),
            "error": str(exc),
            "flagged": True,
        }
    text = text.strip()
    if metadata.get("finish_reason") == "length":
        text = whole_sentences(text)
    return {"answer": text, "error": None}


# Where a sentence of the narrative ends; the stream releases it there once the text so far passes.
# A list marker's period ("1. ", "12. " at a line's start) ends no sentence: the bench showed "1."
# alone as the checked part of an answer whose first item failed.
SENTENCE_END = re.compile(r"(?<!\n\d)(?<!\n\d\d)(?<!^\d)(?<!^\d\d)[.!?。](?=\s)|\n")


@dataclass(frozen=True)
class AnswerFindings:
    """What the checks found in an answer: numbers not among the figures, segments outside the
    question, prompt markup copied from the prompt (an echoed `<data>` block), FIGURES lines pasted,
    a language other than the one asked for, comparisons the figures contradict, and a segment given
    another segment's profile description."""

    numbers: NumericCheck
    leaked_segments: list[str]
    prompt_markup: list[str]
    copied_figures: list[str] = field(default_factory=list)
    wrong_language: bool = False
    wrong_comparisons: list[str] = field(default_factory=list)
    borrowed_descriptions: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.numbers.ok
            and not self.leaked_segments
            and not self.prompt_markup
            and not self.copied_figures
            and not self.wrong_language
            and not self.wrong_comparisons
            and not self.borrowed_descriptions
        )


# A FIGURES line pasted as it is ("share_of_customers_pct=4.7", "segment=vip"): a lowercase key
# written against "=" and its value. Nobody reads that as an answer, in English or Korean.
_FIGURE_KEY_VALUE = re.compile(r"\b[a-z][a-z0-9_]*=[^\s=]")
# A figure's key name written into prose ("an avg_orders_ratio of 3.37 times", the bench's VIP
# comparison): a snake_case word that is a key of the figures.
_SNAKE_CASE = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")


def copied_figures(text: str, tool_results: Any) -> list[str]:
    """FIGURES pasted into the answer: key=value lines and the figures' key names."""
    keys = {str(key) for record in records(tool_results) for key in record}
    pasted = [m.group(0) for m in _FIGURE_KEY_VALUE.finditer(text)]
    return pasted + [
        m.group(0)
        for m in _SNAKE_CASE.finditer(text)
        if m.group(0) in keys and "=" not in text[m.end() : m.end() + 1]
    ]


def wrong_language(text: str, lang: str) -> bool:
    """A Korean answer without Hangul (or drifting into Chinese or Japanese), an English one mostly
    in Hangul ("" for `lang`: not checked). The bench saw "신규 고객과 충성 고객을 비교해줘" answered
    in English."""
    if lang not in ("ko", "en") or not text.strip():
        return False
    expected: Lang = "ko" if lang == "ko" else "en"
    return script_drift(text, expected) or (expected == "en" and detect_language(text) == "ko")


def answer_findings(
    text: str, tool_results: Any, question: str, allowed: list[str], lang: str = ""
) -> AnswerFindings:
    return AnswerFindings(
        numbers=numeric_check(text, tool_results, question),
        leaked_segments=[s for s in mentioned_segments(text) if s not in allowed],
        prompt_markup=untrusted.prompt_markup(text),
        copied_figures=copied_figures(text, tool_results),
        wrong_language=wrong_language(text, lang),
        wrong_comparisons=wrong_comparisons(text, tool_results),
        borrowed_descriptions=borrowed_descriptions(text),
    )


def passes_checks(text: str, tool_results: Any, question: str, allowed: list[str], lang: str = "") -> bool:
    """Every number is a gathered figure, no segment outside `allowed` is named, no prompt markup or
    FIGURES line is copied, and the text is in `lang` ("": any language)."""
    return answer_findings(text, tool_results, question, allowed, lang).ok


def checked_prefix(text: str, tool_results: Any, question: str, allowed: list[str], lang: str = "") -> str:
    """The answer's whole sentences up to the first one that fails the checks: what the stream has
    shown of it ("" when the first sentence fails)."""
    kept = ""
    for end in [*(m.end() for m in SENTENCE_END.finditer(text)), len(text)]:
        prefix = text[:end].strip()
        if len(prefix) <= len(kept):
            continue
        if not passes_checks(prefix, tool_results, question, allowed, lang):
            # A heading whose content failed ("1. **New Segment:**") stands for nothing.
            return _TRAILING_HEADING.sub("", kept).rstrip()
        kept = prefix
    return kept


_TRAILING_HEADING = re.compile(r"\n[^\n]*:[*_ ]*$")


def check_numbers(state: InsightState, runtime: Runtime[InsightContext]) -> dict[str, Any]:
    """Numbers must come from the tool results and only in-scope segments may be named. A failing
    answer keeps its sentences before the first failing one (what the reader has already seen
    streamed), so no unchecked text is ever shown and no second model call is made; only an answer
    whose first sentence fails is regenerated (once), then replaced by a short note."""
    text = state.get("answer", "")
    tool_results = state.get("tool_results") or {}
    question = state.get("question", "")
    allowed = allowed_segments(state)
    lang = state.get("lang", "en")
    found = answer_findings(text, tool_results, question, allowed, lang)
    result, leaks, markup = found.numbers, found.leaked_segments, found.prompt_markup
    check = {**result.as_dict(), "leaked_segments": leaks, "prompt_markup": markup,
             "copied_figures": found.copied_figures, "wrong_language": found.wrong_language,
             "wrong_comparisons": found.wrong_comparisons,
             "borrowed_descriptions": found.borrowed_descriptions}  # fmt: skip
    if found.ok:
        return {"check": check, "revision_note": ""}
    kept = checked_prefix(text, tool_results, question, allowed, lang)
    if kept:
        return {"check": {**check, "dropped_from": len(kept)}, "answer": kept, "revision_note": ""}
    revisions = state.get("revisions", 0)
    if revisions < runtime.context.max_revisions:
        leak = prompts.LEAK.format(segments=", ".join(leaks)) if leaks else ""
        leak += prompts.MARKUP if markup else ""
        leak += prompts.COPIED_FIGURES if found.copied_figures else ""
        leak += prompts.WRONG_COMPARISON if found.wrong_comparisons else ""
        leak += prompts.BORROWED_DESCRIPTION if found.borrowed_descriptions else ""
        leak += (
            prompts.WRONG_LANGUAGE.format(language_name=prompts.LANGUAGE_NAMES[lang])
            if found.wrong_language
            else ""
        )
        note = prompts.REVISION.format(unsupported=", ".join(result.unsupported) or "none", leak=leak)
        return {"check": check, "revisions": revisions + 1, "revision_note": note}
    return {"check": check, "answer": prompts.UNCHECKED[lang], "flagged": True,
            "revision_note": ""}  # fmt: skip
