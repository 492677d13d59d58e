"""Fan memory: the one place that knows what a persona remembers about a fan and where it is stored.

Everything long-term about a fan lives in the LangGraph store under namespaces built here, so the
graph's memory write, the chat service and "Forget me" can never disagree about a name:

    ("fans", user_id, persona_id)       key "profile"    the fan's profile (FanProfile)
    ("memories", user_id, persona_id)   key turn id      the fan's own words, searchable
    ("summaries", user_id, persona_id)  key turn id      running summaries of older turns
    ("threads", user_id)                key thread_id    the fan's chat sessions (title, persona)

A turn's items are keyed by its id (the fan message's id), so a retried or regenerated turn
overwrites its own items instead of adding copies, and `turn_items` / `restore_turn` put exactly
the items one turn may write back as they were when the turn fails.

`user_id` is the signed-in account's id, written with `fan_label` (the store refuses '.' in a
label, and account ids such as "mina.kim@shop" may have one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from langgraph.store.base import BaseStore, Item
from pydantic import BaseModel, ConfigDict, Field, field_validator

PROFILE_KEY = "profile"
MAX_FACTS = 30  # facts kept per fan and persona, newest last
MAX_FACT_CHARS = 300
PROFILE_FIELDS = ("name", "nickname", "birthday", "favourite_member", "favourite_song")


def fan_label(user_id: str) -> str:
    """The user id as a store namespace label: '.' becomes "%2E" ('%' itself "%25", so two ids never
    share a label). Ids without '.' or '%' are unchanged, so existing memories stay where they are."""
    return user_id.replace("%", "%25").replace(".", "%2E")


def profile_namespace(user_id: str, persona_id: str) -> tuple[str, ...]:
    return ("fans", fan_label(user_id), persona_id)


def memories_namespace(user_id: str, persona_id: str) -> tuple[str, ...]:
    return ("memories", fan_label(user_id), persona_id)


def summaries_namespace(user_id: str, persona_id: str) -> tuple[str, ...]:
    return ("summaries", fan_label(user_id), persona_id)


def threads_namespace(user_id: str) -> tuple[str, ...]:
    return ("threads", fan_label(user_id))


class _ProfileFields(BaseModel):
    name: str | None = Field(default=None, max_length=60)
    nickname: str | None = Field(default=None, max_length=60)
    birthday: str | None = Field(default=None, max_length=40)
    favourite_member: str | None = Field(default=None, max_length=60)
    favourite_song: str | None = Field(default=None, max_length=80)


class FanProfile(_ProfileFields):
    """What a persona remembers about a fan, in the form the fan may read and edit."""

    model_config = ConfigDict(extra="forbid")

    facts: list[str] = Field(default_factory=list, max_length=MAX_FACTS)
    updated_at: str | None = None  # kept by the store; ignored on input

    @field_validator("facts")
    @classmethod
    def _facts(cls, value: list[str]) -> list[str]:
        for fact in value:
            if len(fact) > MAX_FACT_CHARS:
                raise ValueError(
                    f"each fact must be at most {MAX_FACT_CHARS} characters; one has {len(fact)}"
                )
        return value


class ProfileUpdate(_ProfileFields):
    """Facts the fan stated about themselves in one message (what the extraction model returns)."""

    facts: list[str] = Field(default_factory=list, max_length=5)


# Placeholders small models write instead of leaving a field null ("name": "None"): not facts.
_NO_VALUE = {"", "none", "null", "n/a", "na", "unknown", "not provided", "not mentioned", "없음", "모름"}


def _stated(value: str | None) -> str | None:
    text = (value or "").strip()
    return None if text.lower().strip(".") in _NO_VALUE else text


def merge_profile(profile: dict[str, Any], update: ProfileUpdate) -> dict[str, Any]:
    """The stored profile with the update's stated values; placeholders stored by an earlier
    version ("name": "None") are dropped on the way; the newest MAX_FACTS facts are kept."""
    merged = {
        key: value
        for key, value in profile.items()
        if not (key in PROFILE_FIELDS and isinstance(value, str) and _stated(value) is None)
    }
    facts = [f for f in profile.get("facts", []) if _stated(f)]
    for field in PROFILE_FIELDS:
        value = _stated(getattr(update, field))
        if value:
            merged[field] = value
    for fact in update.facts:
        fact = _stated(fact) or ""
        if fact and fact not in facts:
            facts.append(fact)
    merged["facts"] = facts[-MAX_FACTS:]
    return merged


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def read_profile(store: BaseStore, user_id: str, persona_id: str) -> dict[str, Any]:
    item = store.get(profile_namespace(user_id, persona_id), PROFILE_KEY)
    return dict(item.value) if item else {}


def write_profile(store: BaseStore, user_id: str, persona_id: str, profile: dict[str, Any]) -> dict[str, Any]:
    """Store the profile stamped with `updated_at`; an empty profile deletes it."""
    namespace = profile_namespace(user_id, persona_id)
    if not profile:
        store.delete(namespace, PROFILE_KEY)
        return {}
    stamped = {**profile, "updated_at": now_iso()}
    store.put(namespace, PROFILE_KEY, stamped, index=False)
    return stamped


def add_memory(store: BaseStore, user_id: str, persona_id: str, text: str, turn_id: str) -> str:
    """Keep the fan's own words, searchable later ("what did I tell you about ..."), under the turn's
    id; returns the key."""
    store.put(
        memories_namespace(user_id, persona_id),
        turn_id,
        {"text": text, "at": now_iso(), "kind": "fan_message"},
    )
    return turn_id


def add_summary(store: BaseStore, user_id: str, persona_id: str, text: str, turn_id: str) -> None:
    store.put(summaries_namespace(user_id, persona_id), turn_id, {"text": text, "at": now_iso()})


@dataclass(frozen=True)
class TurnItems:
    """The store items one turn may write, each with its value before the turn (None: absent)."""

    before: dict[tuple[tuple[str, ...], str], dict[str, Any] | None]


def _turn_keys(user_id: str, persona_id: str, turn_id: str) -> list[tuple[tuple[str, ...], str]]:
    return [
        (memories_namespace(user_id, persona_id), turn_id),
        (summaries_namespace(user_id, persona_id), turn_id),
        (profile_namespace(user_id, persona_id), PROFILE_KEY),
    ]


def turn_items(store: BaseStore, user_id: str, persona_id: str, turn_id: str) -> TurnItems:
    """What the turn `turn_id` may change in the store, as it is now (taken before the turn runs)."""
    before: dict[tuple[tuple[str, ...], str], dict[str, Any] | None] = {}
    for namespace, key in _turn_keys(user_id, persona_id, turn_id):
        item = store.get(namespace, key)
        before[(namespace, key)] = dict(item.value) if item is not None else None
    return TurnItems(before)


def restore_turn(store: BaseStore, items: TurnItems) -> None:
    """Put the turn's items back as they were: the ones it added deleted, the ones it changed restored."""
    for (namespace, key), value in items.before.items():
        if value is None:
            store.delete(namespace, key)
        else:  # the profile is read by key only; memories and summaries are searched
            store.put(namespace, key, value, index=False if namespace[0] == "fans" else None)


def all_items(store: BaseStore, namespace: tuple[str, ...]) -> list[Item]:
    """Every item under a namespace prefix (the store pages its searches)."""
    items: list[Item] = []
    while True:
        page = store.search(namespace, limit=100, offset=len(items))
        items += page
        if len(page) < 100:
            return items


def forget_fan(store: BaseStore, user_id: str, persona_id: str) -> dict[str, int]:
    """Delete the fan's profile, memories and summaries for this persona; returns the counts."""
    counts = {"profile": 0, "memories": 0, "summaries": 0}
    if store.get(profile_namespace(user_id, persona_id), PROFILE_KEY) is not None:
        store.delete(profile_namespace(user_id, persona_id), PROFILE_KEY)
        counts["profile"] = 1
    for kind, namespace in (
        ("memories", memories_namespace(user_id, persona_id)),
        ("summaries", summaries_namespace(user_id, persona_id)),
    ):
        for item in all_items(store, namespace):
            store.delete(item.namespace, item.key)
            counts[kind] += 1
    return counts
