"""tone_refine: rewrite a text in a target voice (any graph can use it).

The node reads the `ToneState` keys: `tone_text` (what to rewrite), `tone_guide` (the voice),
`tone_exemplars` (examples of the voice, imitated for style only), `tone_constraints` (extra rules,
e.g. a channel's length), `tone_lang`, and, after a failed check, `tone_feedback` (reasons) with the
rejected `tone_output`. It writes `tone_output`, increments `tone_rounds`, adds its time to
`timings["refine"]`, and sets `tone_error` (instead of raising) when the model fails. The model role
is the context's `stylist_role` (default "stylist"; in production a LoRA adapter on vLLM).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langgraph.runtime import Runtime
from typing_extensions import TypedDict

from personagraph.prompts import crm as prompts
from personagraph.prompts import untrusted
from personagraph.serving.models import ModelError, invoke_text
from personagraph.serving.settings import Role


def add_timings(left: Mapping[str, float] | None, right: Mapping[str, float] | None) -> dict[str, float]:
    """Reducer: per-step seconds add up (a step that runs twice counts twice)."""
    merged = dict(left or {})
    for key, value in (right or {}).items():
        merged[key] = round(merged.get(key, 0.0) + float(value), 4)
    return merged


class ToneState(TypedDict, total=False):
    tone_text: str
    tone_guide: str
    tone_exemplars: list[str]
    tone_constraints: list[str]
    tone_lang: str
    tone_feedback: list[str]
    tone_output: str
    tone_rounds: int
    tone_error: str | None
    timings: Annotated[dict[str, float], add_timings]


_LABEL = re.compile(
    r"^\s*(?:final (?:text|message)|message|rewritten text|최종\s*(?:문구|메시지))\s*[:：]\s*", re.I
)


_PREFACE = re.compile(r"^\s*(?:here(?: is|'s)|sure|certainly|다음은|아래는|수정된)[^\n]*[:：]\s*\n", re.I)


def clean_output(text: str) -> str:
    """Strip what small models wrap around the answer: quotes, code fences, a preface line, a label."""
    text = text.strip().strip("`").strip()
    text = _PREFACE.sub("", text, count=1).strip()
    text = _LABEL.sub("", text)
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'“”":
        text = text[1:-1].strip()
    return text


def tone_messages(state: Mapping[str, Any]) -> list[BaseMessage]:
    """Voice and examples first (stable per brand and style), then the text to rewrite, fenced as data
    (the draft was written from customer reviews), then the rules."""
    exemplars: Sequence[str] = state.get("tone_exemplars") or []
    system = prompts.TONE_SYSTEM.format(
        guide=state.get("tone_guide") or "-",
        exemplars=untrusted.fence_lines(
            [("-", e) for e in exemplars], "tone exemplars", prompts.WHAT_EXEMPLARS
        )
        if exemplars
        else prompts.NO_EXEMPLARS,
    )
    user = prompts.TONE_USER.format(
        text=untrusted.fence(state.get("tone_text") or "", "text to rewrite", prompts.WHAT_TEXT),
        constraints="\n".join(state.get("tone_constraints") or []),
        data_rule=untrusted.DATA_RULE,
        language_name=prompts.LANGUAGE_NAMES.get(state.get("tone_lang") or "ko", "Korean"),
    )
    messages: list[BaseMessage] = [SystemMessage(content=system), HumanMessage(content=user)]
    feedback = state.get("tone_feedback") or []
    if feedback and state.get("tone_output"):
        messages.append(
            HumanMessage(
                content=prompts.TONE_FEEDBACK.format(
                    previous=state["tone_output"], reasons="\n".join(f"- {r}" for r in feedback)
                )
            )
        )
    return messages


def tone_refine(state: ToneState, runtime: Runtime[Any]) -> dict[str, Any]:
    """Rewrite `tone_text` in the target voice (fixing `tone_feedback` when a check sent it back)."""
    role: Role = getattr(runtime.context, "stylist_role", "stylist")
    started = time.perf_counter()
    rounds = int(state.get("tone_rounds") or 0) + 1
    try:
        reply = invoke_text(role, tone_messages(state))
    except ModelError as exc:
        return {"tone_error": str(exc), "tone_rounds": rounds,
                "timings": {"refine": time.perf_counter() - started}}  # fmt: skip
    return {
        "tone_output": clean_output(str(reply.content)),
        "tone_rounds": rounds,
        "tone_error": None,
        "timings": {"refine": time.perf_counter() - started},
    }
