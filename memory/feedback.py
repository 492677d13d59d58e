"""Fans' ratings of persona replies, kept per account, and their export as DPO preference pairs.

A rating is thumbs up or down on one reply, with an optional reason. It is stored in the LangGraph
store beside the fan's other memory, one item per rated reply (a new rating replaces the old):

    ("feedback", user_id, persona_id)   key: the reply's message id

The item keeps the exchange as it was rated (the conversation before the reply and the reply), so
an export needs no checkpoint and still works after the thread moved on to another branch.

Preference pairs: two replies to the same fan message in the same thread (Regenerate keeps the
earlier reply as an alternative, so both exist), one rated up and one down, make one pair in TRL's
conversational preference format with an explicit prompt:

    {"prompt": [{"role": "user", "content": ...}, ...],
     "chosen": [{"role": "assistant", "content": ...}], "rejected": [{"role": "assistant", ...}]}

Replies rated without a differently rated sibling make no pair (a DPO pair needs both sides).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from langgraph.store.base import BaseStore

from personagraph.memory.fan_memory import all_items, fan_label, now_iso

Rating = Literal["up", "down"]
RATINGS: tuple[Rating, ...] = ("up", "down")
MAX_REASON_CHARS = 500
FEEDBACK = "feedback"


def feedback_namespace(user_id: str, persona_id: str) -> tuple[str, ...]:
    return (FEEDBACK, fan_label(user_id), persona_id)


@dataclass(frozen=True)
class RatedReply:
    """One rated reply and the exchange it belongs to."""

    message_id: str  # the reply's id
    turn_id: str  # the id of the fan message it answers (shared by regenerated alternatives)
    thread_id: str
    persona_id: str
    rating: Rating
    reason: str
    prompt: list[dict[str, str]]  # the conversation before the reply: {"role": "user"|"assistant", "content"}
    reply: str
    at: str = ""
    account: str = ""  # the store label of the account (set when read back)

    def value(self) -> dict[str, Any]:
        return {
            "turn_id": self.turn_id,
            "thread_id": self.thread_id,
            "rating": self.rating,
            "reason": self.reason,
            "prompt": self.prompt,
            "reply": self.reply,
            "at": self.at or now_iso(),
        }


def put_rating(store: BaseStore, user_id: str, rated: RatedReply) -> RatedReply:
    """Store (or replace) the fan's rating of one reply; returns it as stored."""
    value = rated.value()
    store.put(feedback_namespace(user_id, rated.persona_id), rated.message_id, value, index=False)
    return _rated(feedback_namespace(user_id, rated.persona_id), rated.message_id, value)


def delete_rating(store: BaseStore, user_id: str, persona_id: str, message_id: str) -> bool:
    """Remove the fan's rating of a reply; False when there was none."""
    namespace = feedback_namespace(user_id, persona_id)
    if store.get(namespace, message_id) is None:
        return False
    store.delete(namespace, message_id)
    return True


def ratings(store: BaseStore, user_id: str | None = None, persona_id: str | None = None) -> list[RatedReply]:
    """Stored ratings, oldest first: one account's (`user_id`) or every account's (None), for one
    persona or all. The caller decides who may read whose (services/chat.py)."""
    prefix: tuple[str, ...] = (FEEDBACK,) if user_id is None else (FEEDBACK, fan_label(user_id))
    rows = []
    for item in all_items(store, prefix):
        if persona_id is not None and item.namespace[-1] != persona_id:
            continue
        rows.append(_rated(tuple(item.namespace), item.key, item.value))
    return sorted(rows, key=lambda r: r.at)


def forget_ratings(store: BaseStore, user_id: str, persona_id: str) -> int:
    """Delete the fan's ratings of this persona's replies ("Forget me"); returns how many."""
    items = all_items(store, feedback_namespace(user_id, persona_id))
    for item in items:
        store.delete(item.namespace, item.key)
    return len(items)


def preference_pairs(rows: Iterable[RatedReply]) -> list[dict[str, Any]]:
    """TRL DPO pairs: every up-rated x down-rated reply to the same fan message (same account,
    thread and turn). The prompt is the conversation before the replies (the up-rated one's).
    Only TRL's three keys, so the file loads with `datasets.load_dataset("json", ...)` as is."""
    groups: dict[tuple[str, str, str], list[RatedReply]] = defaultdict(list)
    for row in rows:
        groups[(row.account, row.thread_id, row.turn_id)].append(row)
    pairs = []
    for group in groups.values():
        ups = [r for r in group if r.rating == "up"]
        downs = [r for r in group if r.rating == "down"]
        for chosen in ups:
            for rejected in downs:
                pairs.append({
                    "prompt": chosen.prompt,
                    "chosen": [{"role": "assistant", "content": chosen.reply}],
                    "rejected": [{"role": "assistant", "content": rejected.reply}],
                })  # fmt: skip
    return pairs


def feedback_counts(store: BaseStore, persona_id: str | None = None) -> dict[str, int]:
    """Counts over every account, no text (for the persona eval report): ratings up and down, how
    many carry a reason, the preference pairs they make, and how many accounts rated."""
    rows = ratings(store, None, persona_id)
    return {
        "up": sum(r.rating == "up" for r in rows),
        "down": sum(r.rating == "down" for r in rows),
        "with_reason": sum(bool(r.reason) for r in rows),
        "pairs": len(preference_pairs(rows)),
        "accounts": len({r.account for r in rows}),
    }


def _rated(namespace: tuple[str, ...], key: str, value: dict[str, Any]) -> RatedReply:
    rating: Rating = "up" if value.get("rating") == "up" else "down"
    return RatedReply(
        message_id=key,
        turn_id=str(value.get("turn_id", "")),
        thread_id=str(value.get("thread_id", "")),
        persona_id=namespace[-1],
        rating=rating,
        reason=str(value.get("reason", "")),
        prompt=list(value.get("prompt") or []),
        reply=str(value.get("reply", "")),
        at=str(value.get("at", "")),
        account=namespace[1] if len(namespace) > 2 else "",
    )
