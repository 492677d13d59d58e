"""Per-channel slots of a CRM draft: headline, body points and call to action, sized from channels.yaml.

The drafter's JSON schema carries the lengths (`draft_model`), so constrained decoding (llama.cpp
grammars, vLLM guided decoding) cannot write a headline longer than the channel has room for, and the
number of points shown is what fits: a 90-byte SMS (about 45 Korean characters) gets the headline and
the call to action only; the drafter still writes one cited point, which grounds the facts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated

from pydantic import BaseModel, Field, create_model

from personagraph.crm.catalog import Channel

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
    # A point not shown (points == 0) still grounds the draft: it keeps a useful length.
    point_max = max(10, min(POINT_MAX_CHARS, room)) if points else 60
    return Slots(budget=budget, headline_max=headline, points=points, point_max=point_max, cta_max=cta)


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
