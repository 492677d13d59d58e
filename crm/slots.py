"""Per-channel slots of a CRM draft: headline, body points and call to action, sized from channels.yaml.

The drafter's JSON schema carries the lengths (`draft_model`), so constrained decoding (llama.cpp
grammars, vLLM guided decoding) cannot write a headline longer than the channel has room for, and the
number of points shown is what fits: a 90-byte SMS (about 45 Korean characters) gets the headline and
the call to action only, the headline taking all the room the call to action leaves (an 18-character
headline held the product's name and half a word); the drafter still writes one cited point, which
grounds the facts. A slot the model filled to its limit was cut there, often mid-word: `uncut_draft`
ends it at its last whole word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any

from pydantic import BaseModel, Field, create_model

from personagraph.crm.catalog import Channel
from personagraph.crm.readable import hanging_ending

_HANGUL = re.compile(r"[가-힣]")
MAX_POINTS = 3
POINT_MAX_CHARS = 120
HEADLINE_MAX_CHARS = 40
CTA_MAX_CHARS = 30
HIDDEN_POINTS = 2  # points a headline-only channel lets the drafter cite (grounding, not shown)


@dataclass(frozen=True)
class Slots:
    budget: int  # characters the whole message may have (bytes channels: Korean counts 2)
    headline_max: int
    points: int  # points shown in the message (0 = headline and call to action only)
    point_max: int
    cta_max: int


def slots_for(channel: Channel, lang: str = "ko") -> Slots:
    """The slots of a channel: a Korean character is 2 bytes in EUC-KR, an ASCII letter 1."""
    budget = channel.max // 2 if channel.measure == "bytes" and lang == "ko" else channel.max
    headline = min(
        channel.title_max_chars or HEADLINE_MAX_CHARS, HEADLINE_MAX_CHARS, max(10, budget * 2 // 5)
    )
    cta = min(CTA_MAX_CHARS, max(8, budget * 3 // 10))
    room = budget - headline - cta - 4  # line breaks and a little slack
    points = 0 if room < 20 else min(MAX_POINTS, max(1, room // 60))
    if not points:  # headline and call to action only: the headline is the message, give it the room
        headline = min(channel.title_max_chars or budget, budget - cta - 2)
    # A point not shown (points == 0) still grounds the draft: it keeps a useful length.
    point_max = max(10, min(POINT_MAX_CHARS, room)) if points else 60
    return Slots(budget=budget, headline_max=headline, points=points, point_max=point_max, cta_max=cta)


def stated(max_chars: int) -> int:
    """The length the prompt asks for: three quarters of the slot. The model cannot count characters;
    asked for the slot's full length it ran into the grammar's limit and was cut mid-phrase."""
    return max(8, max_chars * 3 // 4)


def _dangling(text: str) -> bool:
    """A Korean text whose last word ends in a particle or an adnominal ending ("...위한 향과",
    "...피부를", "...맞는"): the phrase goes on after it."""
    if not _HANGUL.search(text.split()[-1] if text.split() else ""):
        return False
    return hanging_ending(text) is not None


def _uncut(text: str, max_chars: int) -> str:
    """A text that filled its slot was cut there by constrained decoding, often inside a word ("펩타"
    for 펩타이드): it ends at its last whole word instead (when it has more than one), and without
    the words left hanging ("...건성 피부를 위한 향과" -> "...건성"), as a headline may end on a noun."""
    text = text.strip()
    if len(text) < max_chars or not re.search(r"\s", text):
        return text
    text = text[: re.search(r"\s\S*$", text).start()]  # type: ignore[union-attr]
    while re.search(r"\s", text.strip()) and _dangling(text):
        text = text[: re.search(r"\s\S*$", text.rstrip()).start()]  # type: ignore[union-attr]
    return text.rstrip(" ,:;·/-–—(")


def uncut_draft(draft: dict[str, Any], slots: Slots) -> dict[str, Any]:
    """The draft with each slot that hit its length limit ended at its last whole word."""
    points = [{**p, "text": _uncut(str(p["text"]), slots.point_max)} for p in draft.get("points") or []]
    # A call to action cut short ("...더 저렴한 가격을 얻을") is left out: repair adds a plain one.
    cta = str(draft["call_to_action"]).strip()
    return {**draft, "headline": _uncut(str(draft["headline"]), slots.headline_max), "points": points,
            "call_to_action": "" if len(cta) >= slots.cta_max else cta}  # fmt: skip


EvidenceId = Annotated[str, Field(pattern=r"^[FRE][0-9]{1,2}$")]


@lru_cache(maxsize=32)
def draft_model(slots: Slots) -> type[BaseModel]:
    """The draft's pydantic model with the slot lengths in its JSON schema (cached per slot size)."""
    point = create_model(
        "DraftPoint",
        text=(str, Field(min_length=1, max_length=slots.point_max, description="One factual selling point.")),
        evidence_ids=(list[EvidenceId], Field(min_length=1, max_length=4,
                                              description='Ids of product facts, reviews or the event, e.g. ["F1", "R2"].')),
    )  # fmt: skip
    return create_model(
        "CrmDraft",
        __doc__="The factual draft: every point cites its evidence.",
        headline=(str, Field(min_length=1, max_length=slots.headline_max)),
        points=(list[point], Field(min_length=1, max_length=slots.points or HIDDEN_POINTS)),  # type: ignore[valid-type]
        call_to_action=(str, Field(min_length=1, max_length=slots.cta_max)),
    )
