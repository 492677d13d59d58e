"""Input and output safety nodes, and the in-character refusal.

Input: the layered filter of safety/input_filter.py (normalised rules, then a trained classifier, then
optionally the judge role when `ChatContext.safety_judge` is on).
Output: the draft is checked against the persona's speech rules and forbidden topics, and for leaked
personal data or system prompt (nodes/output_checks.py, the same checks that release streamed text
sentence by sentence). Every block is recorded in `state["blocks"]` with its category.
"""

from __future__ import annotations

import random
import re
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.runtime import Runtime

from personagraph.memory.fan_memory import read_profile
from personagraph.nodes.context import ChatContext
from personagraph.nodes.output_checks import TurnFacts, check_output, show, turn_facts
from personagraph.nodes.state import ConversationState
from personagraph.personas import drift
from personagraph.personas.model import Persona, load_persona
from personagraph.personas.rules import check_speech, count_sentences, hard_problems, split_sentences
from personagraph.personas.speech_style import conform_speech_level
from personagraph.safety.categories import CRIME_CATEGORIES, CRIME_REFUSAL
from personagraph.safety.input_filter import screen_input
from personagraph.serving.language import detect_language

REFUSAL_FALLBACK = {
    "ko": "음, 그 얘기는 내가 하기 좀 어려워. 우리 다른 얘기 하자!",
    "en": "Hmm, that's something I can't talk about. Let's talk about something else!",
}
# Said when a safe message got only drafts that drift (see CUT_NOT_REFUSED) and none of their sentences
# passes: a neutral line in character, not a refusal of a harmless message.
NEUTRAL_FALLBACK = {
    "ko": ["음, 그 얘기 조금만 더 해 줄래?", "헤헤, 잠깐 생각이 엉켰어. 한 번만 더 말해 줄래?"],
    "en": [
        "Hmm, tell me a little more about that?",
        "Oops, my thoughts got tangled for a second. Say that again?",
    ],
}
# What a fan notices in the persona's voice, not harm, and a repeated instruction (the sentences
# that repeat it are not shown): a last draft with only these problems is cut to its sentences that
# pass the checks (or a neutral line), never answered with a refusal of a harmless message.
CUT_NOT_REFUSED = frozenset(drift.CATEGORIES) | {"role_break", "empty", "prompt_leak"}
SELF_HARM_REPLY = {
    "ko": "{address}, 지금 많이 힘들구나. 네 마음이 정말 소중해. 혼자 견디지 말고 꼭 도움을 받아 줘: "
    "자살예방상담전화 109 (24시간), 또는 가까운 사람에게 지금 이야기해 줘. 나도 여기서 응원할게.",
    "en": "{address}, I'm really sorry you're feeling this way, and you matter so much. Please reach out now "
    "to someone you trust or a crisis line (in Korea call 109; in the US call or text 988; elsewhere your "
    "local emergency number). You don't have to carry this alone.",
}


def last_human(state: ConversationState) -> HumanMessage | None:
    for message in reversed(state.get("messages", [])):
        if isinstance(message, HumanMessage):
            return message
    return None


def last_human_text(state: ConversationState) -> str:
    message = last_human(state)
    return str(message.content) if message is not None else ""


def block_record(state: ConversationState, stage: str, **details: Any) -> dict[str, Any]:
    """A safety block, tied to the fan message it concerns."""
    message = last_human(state)
    return {"stage": stage, "message_id": message.id if message is not None else None, **details}


def input_safety(state: ConversationState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """Check the fan's message with the layered input filter and detect its language.

    Empty and over-long messages are rejected here (layer "validation"); anything else gets
    `screen_input`'s verdict (layer "rules", "classifier" or "judge").
    """
    text = last_human_text(state)
    lang = detect_language(text)
    base: dict[str, Any] = {
        "lang": lang,
        "revisions": 0,
        "revision_reason": "",
        "style_original": "",
        "draft": "",
        "last_error": None,
        # Per-turn fields start empty: a small-talk turn must not reuse the last turn's documents.
        "retrieved": [],
        "sources": [],
        "intent": "",
    }
    if not text.strip():
        verdict = {
            "safe": False,
            "category": "invalid_input",
            "reason": "empty message",
            "layer": "validation",
        }
    elif len(text) > runtime.context.max_message_chars:
        verdict = {
            "safe": False,
            "category": "invalid_input",
            "reason": f"message longer than {runtime.context.max_message_chars} characters",
            "layer": "validation",
        }
    else:
        verdict = screen_input(text, use_judge=runtime.context.safety_judge)
    update = {**base, "shown": "", "safety": verdict}
    if not verdict["safe"]:
        update["blocks"] = [block_record(state, "input", **verdict)]
    return update


def refusal_text(persona: Persona, category: str, lang: str, seed: str = "") -> str:
    address = persona.fan_address(lang) or ("별빛" if lang == "ko" else "friend")
    if category == "self_harm":
        return SELF_HARM_REPLY[lang].format(address=address)
    if category in CRIME_CATEGORIES:  # harm to others or crime: a firm no, and who to call
        return CRIME_REFUSAL[lang].format(address=address)
    # A persona's lines come from its (possibly imported) card: only lines that pass the output checks.
    lines = [line for line in persona.refusal_lines.get(lang, []) if not check_output(line, persona)]
    return random.Random(seed).choice(lines or [REFUSAL_FALLBACK[lang]])


def refuse(state: ConversationState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """Answer an unsafe message with an in-character refusal (no retrieval, no draft)."""
    persona = load_persona(runtime.context.persona_id)
    category = state.get("safety", {}).get("category", "unsafe")
    lang = state.get("lang", "en")
    reply = refusal_text(persona, category, lang, seed=last_human_text(state))
    shown = show(runtime.stream_writer, state.get("shown", ""), reply)
    return {"messages": [AIMessage(content=reply)], "intent": "refused", "sources": [], "shown": shown}


def output_safety(state: ConversationState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """Check the draft; ask for one regeneration with the reason, then fall back to a safe reply.

    A safe Korean draft first gets its sentence endings changed to the persona's speech level when
    it is off (personas/speech_style.py): no second model call for what a few morphemes fix.
    """
    from personagraph.nodes.draft import (
        instruction_text,  # the instructions the draft saw, for leak detection
    )

    persona = load_persona(runtime.context.persona_id)
    draft = state.get("draft", "")
    instructions = instruction_text(persona, state.get("lang", "en"))
    # The same drift checks as the draft's sentence gate: the fan's facts, language, documents.
    facts = turn_facts(state, persona, _stored_profile(runtime))
    problems = check_output(draft, persona, instructions, facts)
    adjusted: dict[str, Any] = {}
    if not problems:
        fitted = conform_speech_level(draft, persona, state.get("lang", "en"))
        # The rewritten endings are new text: they are used only if they pass the same checks.
        if fitted != draft and not check_output(fitted, persona, instructions, facts):
            reason = "sentence endings changed to the persona's speech level"
            block = block_record(
                state,
                "output",
                safe=True,
                layer="speech_rules",
                category="speech_level_adjusted",
                reason=reason,
            )
            adjusted, draft = {"draft": fitted, "blocks": [block]}, fitted
    original = state.get("style_original", "")
    if original:  # this draft is the style rewrite of a safe one
        return _merged(adjusted, _accept_style_rewrite(state, persona, original, draft, problems))
    if not problems:
        return _merged(adjusted, _style_review(state, runtime, persona, draft))
    reason = "; ".join(p["reason"] for p in problems)
    blocks = [block_record(state, "output", safe=False, layer="output_check", **p) for p in problems]
    if state.get("revisions", 0) < runtime.context.max_revisions:
        return {"revision_reason": reason, "revisions": state.get("revisions", 0) + 1, "blocks": blocks}
    lang = state.get("lang", "en")
    if all(p["category"] in CUT_NOT_REFUSED for p in problems):
        kept = passing_sentences(draft, persona, instructions, facts)
        reply = kept or neutral_line(persona, lang, draft, instructions, facts)
        how = "its sentences that pass the checks" if kept else "a neutral line"
        blocks.append(
            block_record(
                state, "output", safe=True, layer="output_check", category="drift_fallback", reason=how
            )
        )
        return {"draft": reply, "revision_reason": "", "blocks": blocks}
    safe_reply = refusal_text(persona, problems[0]["category"], lang, seed=draft)
    return {"draft": safe_reply, "revision_reason": "", "blocks": blocks}


def passing_sentences(draft: str, persona: Persona, instructions: str, facts: TurnFacts) -> str:
    """The draft without the sentences that fail the output checks (each kept sentence checked with
    everything kept before it); empty when nothing but a greeting would be left."""
    kept = ""
    for sentence in split_sentences(draft):
        candidate = f"{kept} {sentence}".strip()
        if not check_output(candidate, persona, instructions, facts):
            kept = candidate
    return kept if count_sentences(kept) else ""


def neutral_line(persona: Persona, lang: str, seed: str, instructions: str, facts: TurnFacts) -> str:
    """A neutral line in the persona's speech level that passes the checks (else the refusal line)."""
    lang = lang if lang in NEUTRAL_FALLBACK else "en"
    lines = [conform_speech_level(line, persona, lang) for line in NEUTRAL_FALLBACK[lang]]
    lines = [line for line in lines if not check_output(line, persona, instructions, facts)]
    return random.Random(seed).choice(lines) if lines else REFUSAL_FALLBACK[lang]


def _stored_profile(runtime: Runtime[ChatContext]) -> dict[str, Any]:
    if runtime.store is None:
        return {}
    return read_profile(runtime.store, runtime.context.user_id, runtime.context.persona_id)


def _merged(first: dict[str, Any], then: dict[str, Any]) -> dict[str, Any]:
    """Two state updates as one: `then` wins, except that their blocks add up."""
    blocks = first.get("blocks", []) + then.get("blocks", [])
    return {**first, **then, **({"blocks": blocks} if blocks else {})}


# Speech rules worth one rewrite; a reply that still misses them is sent (style, not safety).
STYLE_RULES = ("speech_level", "emoji_set", "length")


def style_problems(text: str, persona: Persona, lang: str) -> list[dict[str, Any]]:
    """The speech-rule misses worth a rewrite (STYLE_RULES) in a text."""
    return [p for p in hard_problems(check_speech(text, persona, lang)) if p["rule"] in STYLE_RULES]


def _style_review(
    state: ConversationState, runtime: Runtime[ChatContext], persona: Persona, draft: str
) -> dict[str, Any]:
    """A safe draft that breaks the persona's speech rules is rewritten once with the reason."""
    style = style_problems(draft, persona, state.get("lang", "en"))
    if not style or state.get("revisions", 0) >= runtime.context.max_revisions:
        return {"revision_reason": ""}
    blocks = [
        block_record(state, "output", safe=True, layer="speech_rules", category=p["rule"], reason=p["reason"])
        for p in style
    ]
    reason = "it breaks the persona's speech rules: " + "; ".join(p["reason"] for p in style)
    return {
        "revision_reason": reason,
        "revisions": state.get("revisions", 0) + 1,
        "blocks": blocks,
        "style_original": draft,
    }


# Words about the rules themselves: a rewrite that starts talking about speech levels or rules
# (small models echo the feedback: "반말은 0.5를 넘기면...") is worse than the draft it replaces.
_RULE_TALK = re.compile(
    r"반말|존댓말|높임말|말투\s*규칙|speech (?:level|rule)|banmal|jondaetmal|honorific|"
    r"previous (?:draft|reply|message)|rewrite|이전 (?:메시지|답변|초안)|다시 작성",
    re.IGNORECASE,
)


def _accept_style_rewrite(
    state: ConversationState, persona: Persona, original: str, rewrite: str, problems: list[dict[str, str]]
) -> dict[str, Any]:
    """Send the rewrite only if it is safe, does not talk about the rules, and breaks fewer of them;
    otherwise the original (safe) draft is sent as it was."""
    lang = state.get("lang", "en")
    echoes = bool(_RULE_TALK.search(rewrite)) and not _RULE_TALK.search(
        f"{original} {last_human_text(state)}"
    )
    worse = len(style_problems(rewrite, persona, lang)) >= len(style_problems(original, persona, lang))
    if problems or echoes or worse:
        why = "; ".join(p["reason"] for p in problems) or (
            "talks about the rules" if echoes else "breaks as many speech rules"
        )
        block = block_record(
            state, "output", safe=True, layer="speech_rules", category="rewrite_rejected", reason=why
        )
        return {"draft": original, "style_original": "", "revision_reason": "", "blocks": [block]}
    return {"style_original": "", "revision_reason": ""}
