"""Persona schema and loading from `data/personas/<id>/` (persona.yaml, world.yaml, story.yaml, knowledge/*.md)."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from personagraph.serving.settings import get_settings


class UnknownPersonaError(ValueError):
    """Raised for a persona id that has no folder; the message lists the known ids."""


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


def personas_dir() -> Path:
    return get_settings().data_dir / "personas"


def list_personas() -> list[str]:
    root = personas_dir()
    return sorted(p.name for p in root.iterdir() if (p / "persona.yaml").is_file()) if root.is_dir() else []


def persona_dir(persona_id: str) -> Path:
    path = personas_dir() / persona_id
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", persona_id) or not (path / "persona.yaml").is_file():
        known = ", ".join(list_personas()) or "(none)"
        raise UnknownPersonaError(f"unknown persona_id {persona_id!r}; known personas: {known}")
    return path


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
