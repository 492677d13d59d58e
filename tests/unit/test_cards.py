"""Character Card V2 import/export (personas/cards.py) and the import-card / export-card commands."""

from __future__ import annotations

import base64
import copy
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from personagraph.cli.main import main as cli_main
from personagraph.personas.cards import CardError, export_card, import_card, load_card, slugify
from personagraph.personas.index import knowledge_documents
from personagraph.personas.model import list_personas, load_knowledge, load_persona

EXAMPLE = Path(__file__).resolve().parents[2] / "data" / "cards" / "example_card_v2.json"


def card_json(**data: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "Mira Vale",
        "description": "Mira runs a lighthouse bakery in the fictional port of Sallow Bay.",
        "personality": "cheerful, stubborn, early riser",
        "scenario": "{{user}} visits the bakery at dawn.",
        "first_mes": "Morning, {{user}}! Bread's still warm.",
        "mes_example": "<START>\n{{user}}: Hi\n{{char}}: Hello there!",
        "character_book": {
            "name": "Sallow Bay",
            "entries": [
                {"keys": ["lighthouse", "bakery"], "content": "The bakery is inside an old lighthouse.",
                 "enabled": True, "insertion_order": 1, "name": "Bakery"},
                {"keys": ["등대빵", "bread"], "content": "등대빵은 미라의 대표 빵이다.", "enabled": True,
                 "insertion_order": 2},
                {"keys": ["secret"], "content": "Disabled entry.", "enabled": False, "insertion_order": 3},
            ],
        },
    }  # fmt: skip
    base.update(data)
    return {"spec": "chara_card_v2", "spec_version": "2.0", "data": base}


def test_example_card_imports_as_persona_with_knowledge(data_dir: Path) -> None:
    card = load_card(EXAMPLE)
    persona_id = import_card(card)
    assert persona_id == "seren_moss"
    assert persona_id in list_personas()
    persona = load_persona(persona_id)
    assert persona.kind == "card" and persona.name == "Seren Moss"
    assert persona.biography.startswith("Seren Moss (세렌 모스)")
    assert "warm" in persona.personality and "loves maps and old stories" in persona.personality
    assert persona.scenario.startswith("the fan has just stepped")
    assert persona.example_dialogue.startswith("<START>")
    assert persona.greeting["en"] == persona.greeting["ko"] and "friend" in persona.greeting["en"]
    assert "{{user}}" not in persona.greeting["en"]
    assert persona.refusal_lines["ko"] and persona.refusal_lines["en"]
    assert persona.forbidden_topics == []
    docs = {d.source.rsplit("/", 1)[-1]: d for d in load_knowledge(persona_id)}
    assert len(docs) == 5  # 4 enabled entries + description/scenario; the disabled entry is left out
    assert docs["card_description.md"].category == "card_description"
    assert "Scenario:" in docs["card_description.md"].text
    book = [d for d in docs.values() if d.category == "card_book"]
    assert {d.lang for d in book} == {"en", "ko"}
    moonleaf = next(d for d in book if "Moonleaf" in d.title)
    assert "달잎차" in moonleaf.title and moonleaf.lang == "ko"
    assert all("plum cake recipe" not in d.text for d in docs.values())
    # The index picks the documents up like any persona's.
    assert len(knowledge_documents(persona_id)) == 5


def test_round_trip_keeps_name_description_and_entries(data_dir: Path) -> None:
    first = load_card(card_json())
    persona_id = import_card(first)
    exported = export_card(persona_id)
    assert exported["spec"] == "chara_card_v2"
    again = load_card(exported)
    assert again.data.name == first.data.name
    assert again.data.description == first.data.description
    assert again.data.first_mes == first.data.first_mes
    assert again.data.mes_example == first.data.mes_example
    assert again.data.personality == first.data.personality
    assert first.data.character_book is not None and again.data.character_book is not None
    before = [(e.keys, e.content, e.enabled) for e in first.data.character_book.entries]
    after = [(e.keys, e.content, e.enabled) for e in again.data.character_book.entries]
    assert sorted(after, key=str) == sorted(before, key=str)
    # ... and importing the export again gives the same knowledge.
    second_id = import_card(again, persona_id="mira_again")
    texts = lambda pid: sorted(d.text for d in load_knowledge(pid))  # noqa: E731
    assert texts(second_id) == texts(persona_id)


def test_export_of_a_shipped_style_persona(data_dir: Path) -> None:
    card = export_card("tiny")
    assert card["data"]["name"] == "Tiny"
    entries = card["data"]["character_book"]["entries"]
    assert len(entries) == 3 and all(e["keys"] and e["content"] for e in entries)
    assert load_card(card).data.first_mes == "Hi Pebbler!"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c["data"].pop("name"), "data.name: field required"),
        (lambda c: c["data"].update(name="   "), "data.name: must not be empty"),
        (lambda c: c.update(spec="chara_card_v3"), "spec: must be 'chara_card_v2'; got 'chara_card_v3'"),
        (lambda c: c.pop("spec"), "spec: field required"),
        (lambda c: c["data"]["character_book"]["entries"][2].pop("content"),
         "data.character_book.entries[2].content: field required"),
        (lambda c: c["data"]["character_book"]["entries"][0].update(keys="lighthouse"),
         "data.character_book.entries[0].keys: must be a list"),
        (lambda c: c["data"]["character_book"]["entries"][1].update(position="top"),
         "data.character_book.entries[1].position: must be 'before_char' or 'after_char'"),
        (lambda c: c["data"].update(description=42), "data.description: must be a string; got int"),
        (lambda c: c["data"].pop("mes_example"), "data.mes_example: field required"),
    ],
)  # fmt: skip
def test_invalid_cards_name_the_field(data_dir: Path, mutate: Any, expected: str) -> None:
    card = card_json()
    mutate(card)
    with pytest.raises(CardError) as err:
        load_card(card)
    assert expected in str(err.value)


def test_every_bad_field_is_reported(data_dir: Path) -> None:
    card = card_json()
    del card["data"]["name"]
    del card["data"]["character_book"]["entries"][0]["content"]
    with pytest.raises(CardError) as err:
        load_card(card)
    assert "data.name: field required" in str(err.value)
    assert "data.character_book.entries[0].content: field required" in str(err.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"{not json", "card: not valid JSON (line 1"),
        (b"[1, 2]", "card: must be a JSON object; got list"),
        (b'{"name": "Old", "description": "v1"}', "this looks like a V1 card"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 12, "no 'chara' text chunk"),
    ],
)
def test_unreadable_cards(raw: bytes, expected: str) -> None:
    with pytest.raises(CardError) as err:
        load_card(raw)
    assert expected in str(err.value)


def _png_with_text(keyword: bytes, text: bytes) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x00")
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"tEXt", keyword + b"\x00" + text)
            + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))  # fmt: skip


def test_png_card_with_chara_chunk(data_dir: Path, tmp_path: Path) -> None:
    encoded = base64.b64encode(json.dumps(card_json()).encode("utf-8"))
    path = tmp_path / "mira.png"
    path.write_bytes(_png_with_text(b"chara", encoded))
    assert load_card(path).data.name == "Mira Vale"


def test_id_collision_is_refused_without_overwrite(data_dir: Path) -> None:
    card = load_card(card_json())
    assert import_card(card) == "mira_vale"
    with pytest.raises(CardError, match=r"id: persona 'mira_vale' already exists"):
        import_card(card)
    with pytest.raises(CardError, match="shipped persona"):
        import_card(card, persona_id="tiny", overwrite=True)
    assert load_persona("tiny").kind == "artist"  # untouched

    changed = copy.deepcopy(card_json())
    changed["data"]["description"] = "Mira moved her bakery to a windmill."
    assert import_card(load_card(changed), overwrite=True) == "mira_vale"
    assert load_persona("mira_vale").biography == "Mira moved her bakery to a windmill."  # cache cleared


def test_ids_from_names() -> None:
    assert slugify("Seren Moss") == "seren_moss"
    assert slugify("Élodie d'Arc!") == "elodie_d_arc"
    korean = slugify("한서린")
    assert korean.startswith("card_") and len(korean) == len("card_") + 8
    assert korean == slugify("한서린") != slugify("김하늘")


def test_bad_explicit_id_is_refused(data_dir: Path) -> None:
    for bad in ("../evil", "..", "a\n", "a/b", "-x"):
        with pytest.raises(CardError, match=r"^id: .* is not a valid id; use 1-64 characters"):
            import_card(load_card(card_json()), persona_id=bad)


def test_cli_import_and_export(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["import-card", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out.strip() == "seren_moss"

    assert cli_main(["import-card", str(EXAMPLE)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert cli_main(["import-card", str(EXAMPLE), "--id", "seren2"]) == 0
    assert capsys.readouterr().out.strip() == "seren2"

    bad = tmp_path / "bad.json"
    broken = card_json()
    del broken["data"]["character_book"]["entries"][1]["content"]
    bad.write_text(json.dumps(broken), encoding="utf-8")
    assert cli_main(["import-card", str(bad)]) == 2
    assert "data.character_book.entries[1].content: field required" in capsys.readouterr().err

    out = tmp_path / "out.json"
    assert cli_main(["export-card", "seren_moss", "--out", str(out)]) == 0
    exported = json.loads(out.read_text(encoding="utf-8"))
    assert exported["data"]["name"] == "Seren Moss"
    assert len(exported["data"]["character_book"]["entries"]) == 5  # 4 enabled + the disabled one
    assert cli_main(["export-card", "nobody"]) == 2
    assert "persona_id: unknown persona 'nobody'" in capsys.readouterr().err


def test_cli_imports_as_the_local_operator(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI is the `local` operator: its cards are `local`'s unless --public; shipped ones stay."""
    assert cli_main(["import-card", str(EXAMPLE)]) == 0
    assert load_persona("seren_moss").owner == "local"
    assert cli_main(["import-card", str(EXAMPLE), "--id", "seren_all", "--public"]) == 0
    assert load_persona("seren_all").owner is None
    capsys.readouterr()
    tiny_card = tmp_path / "tiny.json"
    tiny_card.write_text(json.dumps(card_json(name="Tiny")), encoding="utf-8")
    assert cli_main(["import-card", str(tiny_card), "--overwrite"]) == 2
    assert "'tiny' is a built-in persona and cannot be replaced" in capsys.readouterr().err
    assert load_persona("tiny").kind == "artist"
    assert cli_main(["import-card", str(EXAMPLE), "--id", "../x"]) == 2
    assert "persona_id: '../x' is not a valid id" in capsys.readouterr().err


def test_imported_card_records_its_owner(data_dir: Path) -> None:
    assert import_card(load_card(card_json()), owner="mina") == "mira_vale"
    assert load_persona("mira_vale").owner == "mina"
    assert "owner" not in json.dumps(export_card("mira_vale"))
    assert import_card(load_card(card_json()), persona_id="mira_public") == "mira_public"
    assert load_persona("mira_public").owner is None
