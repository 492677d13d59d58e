"""Persona schema and loading from `data/personas/<id>/` (persona.yaml, world.yaml, story.yaml, knowledge/*.md).

Who may use a persona: shipped personas (no `owner` in persona.yaml) are public; a persona
imported from a card records the account that imported it (`owner`) and is visible only to that
account and to admins. Someone else's persona and a missing one look the same (UnknownPersonaError,
a 404), so persona ids cannot be probed.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from personagraph.accounts.identity import Caller, NotFoundError
from personagraph.serving.safe_paths import check_id
from personagraph.serving.settings import get_settings

# Persona ids name folders and Chroma collections: letters, digits, _ and - only.
PERSONA_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]{0,63}")
PERSONA_ID_RULE = "1-64 characters of letters, digits, _ or - (not starting with -)"


class UnknownPersonaError(NotFoundError, ValueError):
    """A persona id with no folder, or one the caller may not use; the message lists the ones they may.

    A NotFoundError (404) first, so someone else's persona looks missing; still a ValueError for
    callers that treat it as a bad field.
    """


class SpeechRules(BaseModel):
    model_config = ConfigDict(extra="allow")

    languages: list[str] = ["ko", "en"]
    banmal_ratio: float = Field(default=0.5, ge=0.0, le=1.0, description="Share of 반말 in Korean replies.")
    emoji_per_message: int = Field(default=1, ge=0, le=5)
    emoji_set: list[str] = []
    fan_address_ko: str = ""
    fan_address_en: str = ""
    signature_expressions: list[str] = []
    rules: list[str] = []


class ForbiddenTopic(BaseModel):
    topic: str
    keywords: list[str] = []


class Persona(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    kind: Literal["artist", "story_character", "card"] = "artist"
    name: str
    name_ko: str = ""
    age: int | str | None = None
    position: str = ""
    group: str = ""
    personality: list[str] = []
    biography: str = ""
    habits: list[str] = []
    opinions: list[str] = []
    speech: SpeechRules = SpeechRules()
    forbidden_topics: list[ForbiddenTopic] = []
    refusal_lines: dict[str, list[str]] = {}
    greeting: dict[str, str] = {}
    returning_greeting: dict[str, str] = {}
    # Character-card fields (imported personas).
    owner: str | None = None  # the account that imported the card; None = public (shipped)
    scenario: str = ""
    example_dialogue: str = ""

    def display_name(self, lang: str) -> str:
        return self.name_ko if lang == "ko" and self.name_ko else self.name

    def fan_address(self, lang: str) -> str:
        return self.speech.fan_address_ko if lang == "ko" else self.speech.fan_address_en


class StoryEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    index: int
    date: str = ""
    chapter: str = ""
    title: str
    title_ko: str = ""
    summary: str
    summary_ko: str = ""


class Story(BaseModel):
    events: list[StoryEvent] = []
    current_index: int | None = Field(
        default=None, description="The persona knows events up to this index; None = the whole story."
    )


class KnowledgeDoc(BaseModel):
    source: str
    title: str
    category: str = "general"
    lang: str = "en"
    text: str


_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.DOTALL)


def shipped_personas_dir() -> Path:
    """The personas that ship with the product (read-only; in a wheel they are package data)."""
    return get_settings().data_dir / "personas"


def personas_dir() -> Path:
    """Where imported cards become personas: PERSONAGRAPH_HOME/personas, never the shipped data."""
    return get_settings().personagraph_home / "personas"


def _ids_in(root: Path) -> set[str]:
    return {p.name for p in root.iterdir() if (p / "persona.yaml").is_file()} if root.is_dir() else set()


def list_personas() -> list[str]:
    """Every persona id: shipped and imported (a shipped id always wins; an import cannot take one)."""
    return sorted(_ids_in(shipped_personas_dir()) | _ids_in(personas_dir()))


def check_persona_id(persona_id: object, field: str = "persona_id") -> str:
    """`persona_id` if it is a well-formed id (full match, no `..`); else UnsafeIdError naming `field`."""
    return check_id(persona_id, field, PERSONA_ID, PERSONA_ID_RULE)


def persona_dir(persona_id: str) -> Path:
    """The persona's folder. The error names no other persona: callers list what a caller may see."""
    if not isinstance(persona_id, str) or not PERSONA_ID.fullmatch(persona_id) or ".." in persona_id:
        raise UnknownPersonaError(f"unknown persona_id {persona_id!r}")
    for root in (shipped_personas_dir(), personas_dir()):
        path = root / persona_id
        if (path / "persona.yaml").is_file():
            return path
    raise UnknownPersonaError(f"unknown persona_id {persona_id!r}")


def _read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None


@lru_cache(maxsize=32)
def load_persona(persona_id: str) -> Persona:
    return Persona.model_validate(_read_yaml(persona_dir(persona_id) / "persona.yaml"))


@lru_cache(maxsize=32)
def load_world(persona_id: str) -> dict[str, Any]:
    return _read_yaml(persona_dir(persona_id) / "world.yaml") or {}


@lru_cache(maxsize=32)
def load_story(persona_id: str) -> Story:
    return Story.model_validate(_read_yaml(persona_dir(persona_id) / "story.yaml") or {})


def persona_owner(persona_id: str) -> str | None:
    """The account that imported the persona; None for a public (shipped) one.

    Read from the raw YAML so that a persona whose file no longer validates still has its owner.
    """
    try:
        return load_persona(persona_id).owner
    except (ValueError, OSError, yaml.YAMLError):
        raw = _read_yaml(persona_dir(persona_id) / "persona.yaml")
        owner = raw.get("owner") if isinstance(raw, dict) else None
        return str(owner) if owner else None


def may_use(caller: Caller, persona_id: str) -> bool:
    """Public personas are everyone's; an imported one is its owner's (and every admin's)."""
    owner = persona_owner(persona_id)
    return owner is None or caller.may_manage(owner)


def visible_personas(caller: Caller) -> list[str]:
    """The persona ids the caller may chat with, export or see listed."""
    visible = []
    for persona_id in list_personas():
        try:
            if may_use(caller, persona_id):
                visible.append(persona_id)
        except (ValueError, OSError, yaml.YAMLError):  # an unreadable folder: admins still see its id
            if caller.admin:
                visible.append(persona_id)
    return visible


def public_personas() -> list[str]:
    """Shipped personas and cards imported as public: what every account sees."""
    return [p for p in list_personas() if _owner_or_unreadable(p) is None]


def _owner_or_unreadable(persona_id: str) -> str | None:
    try:
        return persona_owner(persona_id)
    except (ValueError, OSError, yaml.YAMLError):
        return "?"


def persona_for(caller: Caller, persona_id: object, field: str = "persona_id") -> str:
    """The persona id if the caller may use it; UnknownPersonaError (404) listing theirs otherwise."""
    persona_id = check_persona_id(persona_id, field)
    try:
        allowed = may_use(caller, persona_id)
    except (ValueError, OSError, yaml.YAMLError):
        allowed = False
    if not allowed:
        known = ", ".join(visible_personas(caller)) or "(none)"
        raise UnknownPersonaError(f"{field}: unknown persona {persona_id!r}; known personas: {known}")
    return persona_id


def parse_markdown(path: Path, source: str) -> KnowledgeDoc:
    raw = path.read_text(encoding="utf-8")
    meta: dict[str, Any] = {}
    match = _FRONT_MATTER.match(raw)
    if match:
        meta = yaml.safe_load(match.group(1)) or {}
        raw = raw[match.end() :]
    return KnowledgeDoc(
        source=source,
        title=str(meta.get("title") or path.stem),
        category=str(meta.get("category") or "general"),
        lang=str(meta.get("lang") or "en"),
        text=raw.strip(),
    )


def load_knowledge(persona_id: str) -> list[KnowledgeDoc]:
    folder = persona_dir(persona_id) / "knowledge"
    if not folder.is_dir():
        return []
    return [parse_markdown(p, f"{persona_id}/knowledge/{p.name}") for p in sorted(folder.glob("*.md"))]
