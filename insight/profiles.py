"""Segment profile documents, rebuilt from live stats and indexed in Chroma (`insight_segments`).

One document per segment (English and Korean text together, so either language retrieves it),
with metadata `segment`, so retrieval can be limited to the segments in a question's scope.

A document ends with what the segment's customers wrote on their latest orders (a few notes, one per
customer, newest first; `NOTES_HEADER`). Those are the customers' own words, untrusted text kept as
plain data: each is one JSON-quoted line, and a prompt that takes the document fences it as data.
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

from chromadb.api import ClientAPI

from personagraph.insight import stats
from personagraph.insight.settings import get_insight_settings
from personagraph.insight.store import Snapshot
from personagraph.memory.vectors import Document, get_collection, index_documents, search

COLLECTION = "insight_segments"
# The figures as they were when the document was built: for search and for reading the document
# alone; an answer prompt leaves them out (`prompt_text`), since its FIGURES are live and exact.
FIGURES_HEADER = "Figures when built / 작성 시점 수치:"
NOTES_HEADER = "What customers wrote (recent order notes, quoted as written) / 고객이 남긴 메모:"
# Where a description paragraph's live details begin (left out of answer prompts, see prompt_text).
FAVOURITES = {"en": " Favourite products: ", "ko": " 즐겨 찾는 상품: "}
_ENGLISH = re.compile(r"Segment [^\n]{1,40} \([^\n]{1,40}\)\. ")
_KOREAN = re.compile(r"\S[^\n]{0,40} 세그먼트\. ")
_BUILT_FIGURES = re.compile(r"[\d,]+ customers \([\d.]+% of customers")
# Profiles are short (two sentences a language, the figures, a few notes): each is indexed whole, so a
# search returns a segment's whole profile, never a piece cut off its paragraph.
PROFILE_MAX_TOKENS = 512

# What each segment means for a marketer, independent of the numbers (which come from the stats).
DESCRIPTIONS: dict[str, tuple[str, str]] = {
    "vip": ("Top customers: buy often, spend the most, bought recently. Protect them with early access, "
            "gifts and premium lines; avoid heavy discounts.",
            "가장 자주, 가장 많이 구매하고 최근에도 구매한 최상위 고객. 선공개·사은품·프리미엄 라인으로 관리하고 과도한 할인은 피한다."),
    "loyal": ("Regular buyers with solid spend who bought recently. Grow them with bundles, refills and "
              "membership benefits.",
              "꾸준히 구매하며 최근에도 구매한 충성 고객. 번들·리필·멤버십 혜택으로 객단가를 키운다."),
    "new": ("Recently acquired customers with few orders so far. Onboard them toward a second purchase "
            "with samples and how-to content.",
            "최근 유입되어 구매 횟수가 적은 신규 고객. 샘플과 사용법 콘텐츠로 두 번째 구매를 유도한다."),
    "at_risk": ("Used to buy often and spend well, but have not ordered for months. Win them back with "
                "personal reminders and replenishment offers before they go dormant.",
                "예전엔 자주 구매했지만 몇 달째 구매가 없는 이탈 위험 고객. 휴면 전에 개인화 리마인드와 재구매 혜택으로 되찾는다."),
    "dormant": ("Few orders, long ago. Low-cost reactivation campaigns; many will not return.",
                "오래전에 몇 번 구매하고 끊긴 휴면 고객. 저비용 재활성화 캠페인을 하되 상당수는 돌아오지 않는다."),
    "regular": ("Average customers: moderate frequency and spend.", "구매 빈도와 금액이 중간인 일반 고객."),
    "occasional": ("Buy now and then with small baskets.", "가끔 적은 금액으로 구매하는 고객."),
}  # fmt: skip


def segment_notes(snap: Snapshot, segment: str, k: int) -> list[dict[str, Any]]:
    """The `k` newest notes of the segment's customers, one per customer: {customer_id, ts, note}."""
    notes = snap.notes
    if k <= 0 or notes.empty:
        return []
    members = snap.customers.index[snap.customers["segment"] == segment]
    rows = notes[notes["customer_id"].isin(members)].sort_values("ts", ascending=False)
    rows = rows.drop_duplicates("customer_id").head(k)
    return [
        {"customer_id": str(r.customer_id), "ts": float(r.ts), "note": str(r.note)} for r in rows.itertuples()
    ]


def notes_section(notes: list[dict[str, Any]]) -> str:
    """The document's notes section: the header, then one JSON-quoted note per line ("" when none)."""
    if not notes:
        return ""
    lines = [f"- {json.dumps(n['note'], ensure_ascii=False)} ({time.strftime('%Y-%m-%d', time.gmtime(n['ts']))})"
             for n in notes]  # fmt: skip
    return "\n\n" + NOTES_HEADER + "\n" + "\n".join(lines)


def profile_document(snap: Snapshot, segment: str, notes_per_segment: int | None = None) -> Document:
    s = stats.segment_stats(snap, segment)
    top = stats.top_products(snap, segment, n=3)["products"]
    en, ko = DESCRIPTIONS.get(segment, ("", ""))
    names_en = ", ".join(p["name_en"] for p in top)
    names_ko = ", ".join(p["name_ko"] for p in top)
    channel = max(s["channel_mix_pct"].items(), key=lambda kv: kv[1])[0] if s["channel_mix_pct"] else "-"
    text = (
        f"Segment {s['label_en']} ({s['label_ko']}). {en}{FAVOURITES['en']}{names_en}. Main channel: {channel}."
        f"\n\n{s['label_ko']} 세그먼트. {ko}{FAVOURITES['ko']}{names_ko}. 주 채널: {channel}."
        f"\n\n{FIGURES_HEADER} {s['customers']:,} customers ({s['share_of_customers_pct']}% of customers, "
        f"{s['share_of_revenue_pct']}% of revenue); last order {s['avg_recency_days']} days ago on average; "
        f"{s['avg_orders_per_customer']} orders per customer; average order value {s['avg_order_value_krw']:,} KRW."
    )
    k = get_insight_settings().notes_per_segment if notes_per_segment is None else notes_per_segment
    notes = segment_notes(snap, segment, k)
    text += notes_section(notes)
    return Document(text=text, metadata={"segment": segment, "source": f"segment_profile:{segment}",
                                         "model_version": snap.model_version, "built_at": time.time(),
                                         "notes": len(notes)})  # fmt: skip


def prompt_text(text: str, lang: str) -> str:
    """What an answer prompt needs of a profile document: what the segment means, in the answer's
    language, and the customers' notes. Left out: the other language's paragraph, and what the
    prompt's live FIGURES give exactly (the build-time figures, the favourite products and the main
    channel). Every token here is read before the model writes (about 40-60 tokens/s on two cores).
    A paragraph of no shape this module writes is kept as it is ("" when nothing is left)."""
    body, notes_header, notes = text.partition(NOTES_HEADER)
    kept: list[str] = []
    for paragraph in (p.strip() for p in body.split("\n\n")):
        if not paragraph or paragraph.startswith(FIGURES_HEADER) or _BUILT_FIGURES.match(paragraph):
            continue
        language = "en" if _ENGLISH.match(paragraph) else "ko" if _KOREAN.match(paragraph) else None
        if language is None:
            kept.append(paragraph)
        elif language == ("ko" if lang == "ko" else "en"):
            kept.append(paragraph.split(FAVOURITES[language], 1)[0].rstrip())
    if notes_header:
        kept.append(notes_header + notes)
    return "\n\n".join(kept)


_built: dict[str, float] = {}
_build_lock = threading.Lock()


def rebuild_profiles(client: ClientAPI, snap: Snapshot) -> int:
    """Replace every segment's profile document with one built from this snapshot."""
    collection = get_collection(client, COLLECTION)
    docs = [profile_document(snap, s) for s in stats.known_segments(snap)]
    for doc in docs:
        collection.delete(where={"segment": str(doc.metadata["segment"])})
    return index_documents(collection, docs, max_tokens=PROFILE_MAX_TOKENS)


def ensure_profiles(client: ClientAPI, snap: Snapshot, max_age_s: float) -> None:
    """Rebuild the profiles when they are older than max_age_s (once per process at least)."""
    key = str(id(client))
    with _build_lock:
        if time.monotonic() - _built.get(key, -1e18) > max_age_s:
            rebuild_profiles(client, snap)
            _built[key] = time.monotonic()


def search_profiles(client: ClientAPI, query: str, segments: list[str], k: int = 2) -> list[dict[str, Any]]:
    """Profile chunks of the given segments only (nothing when no segment is in scope)."""
    if not segments:
        return []
    collection = get_collection(client, COLLECTION)
    where = {"segment": segments[0]} if len(segments) == 1 else {"segment": {"$in": list(segments)}}
    return [
        {"text": h.text, "segment": str(h.metadata.get("segment", "")), "source": str(h.metadata.get("source", "")),
         "score": round(h.score, 4)}
        for h in search(collection, query, k=k, where=where)
    ]  # fmt: skip
