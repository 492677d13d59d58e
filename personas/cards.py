"""Character Card V2 (`chara_card_v2`) import and export.

    personagraph import-card FILE [--id ID] [--overwrite]     (JSON, or a PNG card with a "chara" chunk)
    personagraph export-card PERSONA_ID [--out FILE]

An imported card becomes an ordinary persona folder `PERSONAGRAPH_HOME/personas/<id>/`: `persona.yaml`
(kind: card; `owner`: the importing account, absent for a public card) and `knowledge/*.md`, one
document per enabled character-book entry plus one for the description and scenario. The
knowledge is indexed on first use like any other persona's. Who may import, see or replace which
persona is decided in services/chat.py (`ChatService.import_card`).

Card text is untrusted: it fills the persona and knowledge blocks of the prompt, never the system
rules. The card's own `system_prompt` and `post_history_instructions` are kept for export only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import shutil
import struct
import tempfile
import unicodedata
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from personagraph.personas.model import (
    check_persona_id,
    load_persona,
    load_story,
    load_world,
    persona_dir,
    personas_dir,
    shipped_personas_dir,
)
from personagraph.serving.language import detect_language
from personagraph.serving.safe_paths import child_path
from personagraph.serving.settings import get_settings
from personagraph.serving.text import check_text, is_text

SPEC = "chara_card_v2"
# Deeper JSON than this is refused before validation (real cards nest 4-5 levels).
MAX_CARD_DEPTH = 32
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.DOTALL)

DESCRIPTION_DOC = "card_description.md"
REFUSAL_LINES = {
    "ko": [
        "음, 그 얘기는 내가 하기 어려워. 대신 다른 이야기 해볼까?",
        "그건 대답하기 곤란해, 미안! 요즘 어떻게 지내는지 들려줄래?",
    ],
    "en": [
        "Hmm, that's not something I can talk about. Shall we talk about something else?",
        "I'd rather not go there, sorry! Tell me how you've been instead?",
    ],
}
RETURNING_GREETING = {
    "ko": "{name}, 다시 왔구나! 그동안 잘 지냈어?",
    "en": "{name}, you're back! How have you been?",
}
FAN_ADDRESS = {"ko": "친구", "en": "friend"}
THE_FAN = {"ko": "팬", "en": "the fan"}


class CardError(ValueError):
    """An unreadable or invalid card, or a refused import; the message names the field."""


class CardBookEntry(BaseModel):
    model_config = ConfigDict(extra="allow")

    keys: list[str]
    content: str
    extensions: dict[str, Any] = {}
    enabled: bool = True
    insertion_order: int | float = 0
    case_sensitive: bool | None = None
    name: str | None = None
    priority: int | float | None = None
    id: int | str | None = None
    comment: str | None = None
    selective: bool | None = None
    secondary_keys: list[str] | None = None
    constant: bool | None = None
    position: Literal["before_char", "after_char"] | None = None


class CharacterBook(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str | None = None
    description: str | None = None
    scan_depth: int | None = None
    token_budget: int | None = None
    recursive_scanning: bool | None = None
    extensions: dict[str, Any] = {}
    entries: list[CardBookEntry]


class CardData(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    description: str
    personality: str
    scenario: str
    first_mes: str
    mes_example: str
    creator_notes: str = ""
    system_prompt: str = ""
    post_history_instructions: str = ""
    alternate_greetings: list[str] = []
    tags: list[str] = []
    creator: str = ""
    character_version: str = ""
    extensions: dict[str, Any] = {}
    character_book: CharacterBook | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        if any(unicodedata.category(ch) == "Cc" for ch in value):
            # It heads persona.yaml as a comment: a NUL or a line break there breaks the file.
            raise ValueError("must not hold control characters (NUL, line breaks, tabs, ...)")
        if len(value) > 100:
            raise ValueError(f"is {len(value)} characters; the maximum is 100")
        return value


class CharacterCard(BaseModel):
    model_config = ConfigDict(extra="allow")

    spec: Literal["chara_card_v2"]
    spec_version: str = "2.0"
    data: CardData

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


# --- reading -------------------------------------------------------------------------------------


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "card"


def _describe(error: Any) -> str:
    kind = error["type"]
    given = error.get("input")
    if kind == "missing":
        return "field required"
    if kind == "literal_error":
        allowed = error.get("ctx", {}).get("expected", "")
        return f"must be {allowed}; got {given!r}"
    if kind in ("string_type", "list_type", "bool_type", "dict_type", "int_type", "model_type"):
        expected = {"string_type": "a string", "list_type": "a list", "bool_type": "true or false",
                    "dict_type": "an object", "int_type": "an integer", "model_type": "an object"}[kind]  # fmt: skip
        return f"must be {expected}; got {type(given).__name__}"
    return str(error["msg"]).removeprefix("Value error, ")


def format_validation_error(exc: ValidationError) -> str:
    """`data.character_book.entries[2].content: field required; spec: must be 'chara_card_v2'; ...`"""
    return "; ".join(f"{_field_path(tuple(e['loc']))}: {_describe(e)}" for e in exc.errors())


def max_card_bytes() -> int:
    """The largest card file accepted (CARD_MAX_BYTES)."""
    return get_settings().card_max_bytes


def check_card_size(size: int) -> None:
    """CardError naming the limit when a card file of `size` bytes is too large to read."""
    limit = max_card_bytes()
    if size > limit:
        raise CardError(f"card: file is {size} bytes; the maximum is {limit} (CARD_MAX_BYTES)")


def _inflate(data: bytes, limit: int) -> bytes:
    """zlib data decompressed, refusing output over `limit` bytes without ever making more (no bomb)."""
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, limit + 1)
    if len(out) > limit or inflater.unconsumed_tail:
        raise CardError(
            f"card: the PNG 'chara' text is over {limit} bytes when decompressed (CARD_MAX_TEXT_BYTES)"
        )
    if not inflater.eof:
        raise CardError("card: unreadable 'chara' chunk in the PNG (truncated compressed data)")
    return out


def _chara_text(kind: bytes, rest: bytes, limit: int) -> str:
    """The text of a `chara` tEXt/zTXt/iTXt chunk body (after its keyword), at most `limit` bytes."""
    if kind == b"tEXt":
        raw = rest
    elif kind == b"zTXt":
        raw = _inflate(rest[1:], limit)  # rest[0] is the compression method
    else:
        compressed, rest = rest[0], rest[2:]  # flag, method
        _, _, rest = rest.partition(b"\x00")  # language tag
        _, _, text = rest.partition(b"\x00")  # translated keyword
        raw = _inflate(text, limit) if compressed else text
    if len(raw) > limit:
        raise CardError(f"card: the PNG 'chara' text is over {limit} bytes (CARD_MAX_TEXT_BYTES)")
    return raw.decode("latin-1" if kind != b"iTXt" else "utf-8")


def png_card_text(data: bytes) -> str:
    """The base64 JSON of a PNG card's `chara` text chunk (tEXt, zTXt or iTXt), stdlib only.

    Compressed text is inflated at most to CARD_MAX_TEXT_BYTES: a small file cannot expand into a
    large one in memory.
    """
    limit = get_settings().card_max_text_bytes
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind not in (b"tEXt", b"zTXt", b"iTXt"):
            if kind == b"IEND":
                break
            continue
        keyword, _, rest = body.partition(b"\x00")
        if keyword != b"chara":
            continue
        try:
            return _chara_text(kind, rest, limit)
        except (zlib.error, UnicodeDecodeError, IndexError) as exc:
            raise CardError(f"card: unreadable 'chara' chunk in the PNG ({exc})") from exc
    raise CardError("card: the PNG has no 'chara' text chunk, so it is not a character card")


def _parse_bytes(raw: bytes) -> Any:
    check_card_size(len(raw))
    if raw.startswith(_PNG_SIGNATURE):
        text = png_card_text(raw)
        try:
            raw = base64.b64decode(text, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise CardError(f"card: the PNG 'chara' chunk is not base64 ({exc})") from exc
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise CardError(f"card: not UTF-8 text or a PNG card ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise CardError(f"card: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
    except RecursionError:
        raise CardError(f"card: nested more than {MAX_CARD_DEPTH} levels deep") from None


def _child_label(path: str, key: int | str) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else str(key))


def check_card_limits(payload: Any) -> None:
    """CardError naming the first field over a limit: a string over CARD_MAX_FIELD_CHARS characters,
    a list or object over CARD_MAX_ITEMS items, or nesting deeper than MAX_CARD_DEPTH.

    Walks the parsed JSON (extensions included) without recursion, before any validation.
    """
    settings = get_settings()
    max_chars, max_items = settings.card_max_field_chars, settings.card_max_items
    stack: list[tuple[str, Any, int]] = [("", payload, 0)]
    while stack:
        path, value, depth = stack.pop()
        where = path or "card"
        if isinstance(value, str) and len(value) > max_chars:
            raise CardError(
                f"{where}: is {len(value)} characters; the maximum is {max_chars} (CARD_MAX_FIELD_CHARS)"
            )
        if isinstance(value, str):
            check_text(value, where, CardError)  # an unpaired surrogate cannot be written as UTF-8
        if not isinstance(value, dict | list):
            continue
        if depth >= MAX_CARD_DEPTH:
            raise CardError(f"{where}: nested more than {MAX_CARD_DEPTH} levels deep")
        if len(value) > max_items:
            raise CardError(f"{where}: has {len(value)} items; the maximum is {max_items} (CARD_MAX_ITEMS)")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in items:
            if isinstance(key, str) and len(key) > max_chars:
                raise CardError(f"{where}: a key is {len(key)} characters; the maximum is {max_chars}")
            if isinstance(key, str) and not is_text(key):
                raise CardError(f"{where}: a key is not valid text (it holds an unpaired UTF-16 surrogate)")
            stack.append((_child_label(path, key), child, depth + 1))


def load_card(source: str | os.PathLike[str] | bytes | dict[str, Any]) -> CharacterCard:
    """Read and validate a card from a path, the file's bytes (JSON or PNG) or parsed JSON."""
    if isinstance(source, dict):
        payload: Any = source
    elif isinstance(source, bytes):
        payload = _parse_bytes(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise CardError(f"card: no such file {str(path)!r}")
        check_card_size(path.stat().st_size)
        payload = _parse_bytes(path.read_bytes())
    if not isinstance(payload, dict):
        raise CardError(f"card: must be a JSON object; got {type(payload).__name__}")
    check_card_limits(payload)
    if "spec" not in payload and "name" in payload and "data" not in payload:
        raise CardError(
            "spec: field required (allowed: 'chara_card_v2'); this looks like a V1 card: "
            'wrap its fields in {"spec": "chara_card_v2", "spec_version": "2.0", "data": {...}}'
        )
    try:
        return CharacterCard.model_validate(payload)
    except ValidationError as exc:
        raise CardError(format_validation_error(exc)) from exc


# --- import --------------------------------------------------------------------------------------


def slugify(text: str, fallback_prefix: str = "card") -> str:
    """ASCII id from a name; names with no ASCII letters (e.g. Korean) get `card_<hash8>`."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")[:48].strip("_")
    if slug:
        return slug
    return f"{fallback_prefix}_{hashlib.sha256(text.encode('utf-8')).hexdigest()[:8]}"


def split_personality(text: str) -> list[str]:
    """Lines or `;`-separated traits; a single line of short comma-separated traits is split too."""
    parts = [p.strip(" -•\t") for p in re.split(r"[\n;]+", text)]
    parts = [p for p in parts if p]
    if len(parts) == 1 and "," in parts[0]:
        pieces = [p.strip() for p in parts[0].split(",") if p.strip()]
        if all(len(p) <= 40 for p in pieces):
            return pieces
    return parts


def join_personality(traits: list[str]) -> str:
    if traits and all("," not in t and len(t) <= 40 for t in traits):
        return ", ".join(traits)
    return "\n".join(traits)


def _fill(text: str, name: str, user: dict[str, str] | None = None) -> str:
    """Replace the card macros {{char}} and {{user}} (any case); {{user}} is "the fan" by default."""
    fan = (user or THE_FAN)[detect_language(text)]
    text = re.sub(r"\{\{\s*char\s*\}\}", name, text, flags=re.IGNORECASE)
    return re.sub(r"\{\{\s*user\s*\}\}", fan, text, flags=re.IGNORECASE)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as readable `|` blocks."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value and not any(ch in value for ch in "\t\r") else None
    if style:
        value = "\n".join(line.rstrip() for line in value.split("\n"))
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def dump_yaml(value: Any) -> str:
    return yaml.dump(value, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=1000)


def _entry_title(entry: CardBookEntry, index: int) -> str:
    label = (entry.name or entry.comment or "").strip()
    keys = ", ".join(k.strip() for k in entry.keys if k.strip())
    if label and keys:
        return f"{label} ({keys})"
    return label or keys or f"Entry {index + 1}"


def _front_matter(meta: dict[str, Any], body: str) -> str:
    head = dump_yaml(meta).strip()
    return f"---\n{head}\n---\n\n{body.strip()}\n"


def card_documents(card: CharacterCard) -> dict[str, str]:
    """File name -> markdown text of the knowledge documents for a card."""
    data = card.data
    docs: dict[str, str] = {}
    about = "\n\n".join(
        part for part in (_fill(data.description, data.name).strip(),
                          f"Scenario: {_fill(data.scenario, data.name).strip()}" if data.scenario.strip() else "")
        if part
    )  # fmt: skip
    if about:
        docs[DESCRIPTION_DOC] = _front_matter(
            {"title": f"About {data.name}", "category": "card_description", "lang": detect_language(about)},
            about,
        )
    book = data.character_book
    for index, entry in enumerate(book.entries if book else []):
        if not entry.enabled or not entry.content.strip():
            continue
        title = _entry_title(entry, index)
        content = _fill(entry.content, data.name)
        meta: dict[str, Any] = {
            "title": title,
            "category": "card_book",
            "lang": detect_language(f"{title}\n{content}"),
            "keys": list(entry.keys),
        }
        extra = entry.model_dump(exclude={"keys", "content", "enabled"}, exclude_none=True)
        meta.update({k: v for k, v in extra.items() if v not in ({}, [])})
        label = entry.name or entry.comment or (entry.keys[0] if entry.keys else "")
        docs[f"book_{index + 1:03d}_{slugify(label, 'entry')[:40]}.md"] = _front_matter(meta, content)
    return docs


def persona_yaml(card: CharacterCard, persona_id: str, owner: str | None = None) -> dict[str, Any]:
    data = card.data
    greeting = _fill(data.first_mes, data.name, FAN_ADDRESS).strip() or f"Hi, I'm {data.name}!"
    book = data.character_book
    card_meta: dict[str, Any] = {
        "spec_version": card.spec_version,
        "creator_notes": data.creator_notes,
        "system_prompt": data.system_prompt,
        "post_history_instructions": data.post_history_instructions,
        "alternate_greetings": list(data.alternate_greetings),
        "tags": list(data.tags),
        "creator": data.creator,
        "character_version": data.character_version,
        "extensions": data.extensions,
        "first_mes": data.first_mes,
        "imported_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if book is not None:
        card_meta["book"] = book.model_dump(mode="json", exclude={"entries"}, exclude_none=True)
        card_meta["disabled_entries"] = [
            e.model_dump(mode="json", exclude_none=True) for e in book.entries if not e.enabled
        ]
    owned = {"owner": owner} if owner else {}
    return {
        "id": persona_id,
        "kind": "card",
        **owned,
        "name": data.name,
        "position": "the character described below",
        "personality": split_personality(_fill(data.personality, data.name)),
        "biography": _fill(data.description, data.name).strip(),
        "scenario": _fill(data.scenario, data.name).strip(),
        "example_dialogue": data.mes_example.strip(),
        "speech": {
            "languages": ["ko", "en"],
            "banmal_ratio": 0.5,
            "emoji_per_message": 1,
            "emoji_set": [],
            "fan_address_ko": FAN_ADDRESS["ko"],
            "fan_address_en": FAN_ADDRESS["en"],
            "signature_expressions": [],
            "rules": [
                "Replies in the same language the fan writes in (Korean or English)",
                "Keeps replies under 4 sentences",
                f"Never claims or admits to being an AI, a bot or a program; always speaks as {data.name}",
            ],
        },
        "forbidden_topics": [],
        "refusal_lines": REFUSAL_LINES,
        "greeting": {"en": greeting, "ko": greeting},
        "returning_greeting": RETURNING_GREETING,
        "card": card_meta,
    }


def clear_persona_caches() -> None:
    """Make a new or replaced persona folder visible to the cached loaders."""
    load_persona.cache_clear()
    load_world.cache_clear()
    load_story.cache_clear()


def import_card(
    card: CharacterCard, persona_id: str | None = None, overwrite: bool = False, owner: str | None = None
) -> str:
    """Write the card as `PERSONAGRAPH_HOME/personas/<id>/`, owned by `owner` (None: public); returns the id.

    Who may import, replace or see what is decided by the caller (services/chat.py); this only
    refuses a bad id and replacing without `overwrite`.
    """
    persona_id = persona_id or slugify(card.data.name)
    try:
        check_persona_id(persona_id, "id")
    except ValueError as exc:
        raise CardError(str(exc)) from exc
    root = personas_dir()
    target = child_path(root, persona_id)
    if (shipped_personas_dir() / persona_id).exists():
        raise CardError(f"id: {persona_id!r} is a shipped persona and cannot be replaced; choose another id")
    if target.exists() and not overwrite:
        raise CardError(
            f"id: persona {persona_id!r} already exists; choose another id (--id) or replace it (--overwrite)"
        )
    root.mkdir(parents=True, exist_ok=True)
    # Staged next to the personas folder (same file system), so a half-written persona is never listed.
    staging = Path(tempfile.mkdtemp(prefix=f".import-{persona_id}-", dir=root.parent))
    try:
        header = f"# Imported from a Character Card V2 ({SPEC}): {card.data.name}\n"
        body = dump_yaml(persona_yaml(card, persona_id, owner))
        (staging / "persona.yaml").write_text(header + body, encoding="utf-8")
        knowledge = staging / "knowledge"
        knowledge.mkdir()
        for name, text in card_documents(card).items():
            (knowledge / name).write_text(text, encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    clear_persona_caches()
    return persona_id


# --- export --------------------------------------------------------------------------------------


def _read_doc(path: Path) -> tuple[dict[str, Any], str]:
    raw = path.read_text(encoding="utf-8")
    match = _FRONT_MATTER.match(raw)
    if not match:
        return {}, raw.strip()
    return (yaml.safe_load(match.group(1)) or {}), raw[match.end() :].strip()


def export_card(persona_id: str) -> dict[str, Any]:
    """Any persona as `chara_card_v2` JSON; its knowledge documents become character-book entries."""
    folder = persona_dir(persona_id)
    persona = load_persona(persona_id)
    meta: dict[str, Any] = dict(getattr(persona, "card", None) or {})
    entries: list[dict[str, Any]] = []
    knowledge = folder / "knowledge"
    for order, path in enumerate(sorted(knowledge.glob("*.md")) if knowledge.is_dir() else []):
        front, body = _read_doc(path)
        if front.get("category") == "card_description":
            continue  # derived from description + scenario
        title = str(front.get("title") or path.stem)
        entry: dict[str, Any] = {
            "keys": [str(k) for k in front.get("keys") or [title]],
            "content": body,
            "extensions": front.get("extensions") or {},
            "enabled": True,
            "insertion_order": front.get("insertion_order", order),
        }
        for key in ("case_sensitive", "name", "priority", "id", "comment", "selective", "secondary_keys",
                    "constant", "position"):  # fmt: skip
            if front.get(key) is not None:
                entry[key] = front[key]
        if "name" not in entry and "keys" not in front:
            entry["name"] = title
        entries.append(entry)
    entries += list(meta.get("disabled_entries") or [])
    first_mes = meta.get("first_mes") or persona.greeting.get("en") or persona.greeting.get("ko") or ""
    description = persona.biography
    if persona.kind != "card":
        facts = [f"{persona.name} ({persona.name_ko})" if persona.name_ko else persona.name]
        facts += [x for x in (persona.position, persona.group and f"group: {persona.group}") if x]
        description = "; ".join(facts) + "\n\n" + persona.biography
    data: dict[str, Any] = {
        "name": persona.name,
        "description": description.strip(),
        "personality": join_personality(persona.personality),
        "scenario": persona.scenario,
        "first_mes": first_mes,
        "mes_example": persona.example_dialogue,
        "creator_notes": meta.get("creator_notes") or f"Exported from PersonaGraph persona {persona_id!r}.",
        "system_prompt": meta.get("system_prompt", ""),
        "post_history_instructions": meta.get("post_history_instructions", ""),
        "alternate_greetings": list(meta.get("alternate_greetings") or []),
        "tags": list(meta.get("tags") or [persona.kind]),
        "creator": meta.get("creator", ""),
        "character_version": meta.get("character_version", ""),
        "extensions": {**(meta.get("extensions") or {}), "personagraph": {"persona_id": persona_id}},
    }
    if entries:
        book = dict(meta.get("book") or {"name": f"{persona.name} knowledge"})
        book.setdefault("extensions", {})
        data["character_book"] = {**book, "entries": entries}
    card = {"spec": SPEC, "spec_version": str(meta.get("spec_version") or "2.0"), "data": data}
    # Always emit a card that this module itself accepts.
    return load_card(card).to_json()
