"""Product-shaped inputs for the fuzz tests: valid objects to start from (a card, a survey, a guide,
a CRM request, an order) and strategies that break them: hostile character cards (JSON and PNG),
survey and guide data and text (YAML traps included), respondent files, `--select` specs and CRM
batch files. Generic hostile values are in strategies.py.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import struct
import zlib
from functools import lru_cache
from typing import Any

import yaml
from hypothesis import strategies as st

from personagraph.serving.settings import REPO_ROOT
from tests.fuzz.strategies import (
    hostile_ids,
    hostile_numbers,
    hostile_text,
    json_values,
    mutated,
    scalars,
    to_json_bytes,
    yaml_values,
)

DATA = REPO_ROOT / "data"
CRM_REQUEST = {"persona": 0, "brand": "lumiere", "product": "lum-01", "stage_index": 1, "style_index": 2,
               "is_event": 1, "channel": "sms", "top_k": 3, "lang": "ko"}  # fmt: skip
ORDER = {"order_id": "o-1", "customer_id": "C00001", "items": [{"sku": "SK02", "qty": 1, "price": 32000}],
         "amount": 32000, "channel": "app", "ts": 1764900000.0, "note": "gift wrap please"}  # fmt: skip
CARD = json.loads((DATA / "cards" / "example_card_v2.json").read_text(encoding="utf-8"))
CARD_DATA_FIELDS = ["name", "description", "personality", "scenario", "first_mes", "mes_example",
                    "creator_notes", "system_prompt", "tags", "alternate_greetings", "character_book",
                    "extensions"]  # fmt: skip


@st.composite
def card_payloads(draw: st.DrawFn) -> Any:
    """Mostly near-valid cards (fields replaced by junk), sometimes any JSON at all."""
    if draw(st.integers(0, 4)) == 0:
        return draw(json_values())
    card = json.loads(json.dumps(CARD))
    data = card["data"]
    # Text fields get hostile text (still a valid card) or junk of any type.
    for field in draw(st.lists(st.sampled_from(CARD_DATA_FIELDS), max_size=3, unique=True)):
        data[field] = draw(st.one_of(hostile_text(), json_values()))
    book = data.get("character_book")
    if isinstance(book, dict) and isinstance(book.get("entries"), list) and draw(st.booleans()):
        entry = {"keys": ["k"], "content": "c", "enabled": True}
        book["entries"].append(draw(mutated(entry, st.one_of(hostile_text(), json_values()))))
    if draw(st.integers(0, 3)) == 0:
        card["spec"] = draw(st.sampled_from(["chara_card_v2", "chara_card_v3", None, 2, ""]))
    return card


PNG = b"\x89PNG\r\n\x1a\n"


def chunk(kind: bytes, body: bytes, length: int | None = None) -> bytes:
    """A PNG chunk; `length` may lie about the body's size."""
    size = len(body) if length is None else length
    return struct.pack(">I", size & 0xFFFFFFFF) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@lru_cache(maxsize=1)
def inflate_bomb() -> bytes:
    """64 MiB of one byte, compressed to about 64 KB."""
    return zlib.compress(b"A" * (64 * 1024 * 1024), 9)


@st.composite
def png_cards(draw: st.DrawFn) -> bytes:
    """A PNG with hostile text chunks: bad lengths, bad zlib, bombs, bad base64, missing parts."""
    good = base64.b64encode(json.dumps(CARD).encode())
    text = draw(st.one_of(st.just(good), st.binary(max_size=64), st.just(b"!!notbase64!!"),
                          st.just(base64.b64encode(draw(st.binary(max_size=40)))),
                          st.just(base64.b64encode(to_json_bytes(draw(card_payloads())))),
                          st.just(b"\xff\xfe" + good)))  # fmt: skip
    kind = draw(st.sampled_from([b"tEXt", b"zTXt", b"iTXt", b"IHDR", b"IEND", b"abcd", b"\x00\x00\x00\x00"]))
    keyword = draw(st.sampled_from([b"chara", b"Chara", b"", b"chara\x00", b"x" * 80]))
    style = draw(st.sampled_from(["plain", "zlib", "bomb", "broken", "empty", "itxt-plain", "itxt-zlib"]))
    if style == "zlib":
        body = keyword + b"\x00\x00" + zlib.compress(text)
    elif style == "bomb":
        body = keyword + b"\x00\x00" + inflate_bomb()
    elif style == "broken":
        body = keyword + b"\x00\x00" + zlib.compress(text)[: draw(st.integers(0, 8))]
    elif style == "empty":
        body = keyword
    elif style == "itxt-plain":
        body = keyword + b"\x00\x00\x00en\x00chara\x00" + text
    elif style == "itxt-zlib":
        body = keyword + b"\x00\x01\x00\x00\x00" + zlib.compress(text)
    else:
        body = keyword + b"\x00" + text
    lie = draw(st.one_of(st.none(), st.sampled_from([0, 1, 2**31, 2**32 - 1]), st.integers(0, 400)))
    chunks = [chunk(b"IHDR", b"\x00" * 13)] if draw(st.booleans()) else []
    chunks.append(chunk(kind, body, lie))
    if draw(st.booleans()):
        chunks.append(chunk(b"IEND", b""))
    data = PNG + b"".join(chunks)
    cut = draw(st.one_of(st.none(), st.integers(len(PNG), len(data))))
    return data if cut is None else data[:cut]


# --- surveys and interview guides ------------------------------------------------------------------

TAM = yaml.safe_load((DATA / "surveys" / "tam_en.yaml").read_text(encoding="utf-8"))
GUIDE = yaml.safe_load((DATA / "interviews" / "ai_at_work_en.yaml").read_text(encoding="utf-8"))
QUESTION_KEYS = ["id", "type", "text", "options", "points", "labels", "min", "max", "scale_min", "scale_max",
                 "answer_type", "design", "condition_group", "condition_arm", "integer", "ordinal",
                 "question_text", "max_followups", "goal"]  # fmt: skip


@st.composite
def questionnaire(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    """A shipped survey or guide with questions, fields and top-level keys replaced by junk
    (keys of any YAML type), or any YAML value at all."""
    if draw(st.integers(0, 5)) == 0:
        return draw(yaml_values())
    data = json.loads(json.dumps(base))
    questions = data["questions"]
    for _ in range(draw(st.integers(0, 3))):
        index = draw(st.integers(0, len(questions) - 1))
        question = questions[index]
        if isinstance(question, dict):
            key = draw(st.sampled_from(QUESTION_KEYS))
            question[key] = draw(yaml_values(max_leaves=6))
        else:
            questions[index] = draw(yaml_values(max_leaves=6))
    if draw(st.booleans()):
        questions.append(draw(yaml_values(max_leaves=6)))
    if draw(st.integers(0, 3)) == 0:
        key = draw(st.one_of(st.sampled_from(["id", "title", "language", "instructions", "meta", "items",
                                              "max_followups"]), scalars()))  # fmt: skip
        data[key] = draw(yaml_values(max_leaves=6))
    if draw(st.integers(0, 3)) == 0:
        data["type_on_top"] = draw(st.sampled_from([["likert"], {"a": 1}, None]))
    return data


def dump_yaml(value: Any) -> str:
    try:
        return yaml.safe_dump(value, allow_unicode=True)
    except yaml.YAMLError:
        return json.dumps(value, allow_nan=True)


BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(9)
)
YAML_TRAP_CASES = {
    "billion-laughs": BILLION_LAUGHS,
    "alias": "questions: &q [{id: a, type: open, text: t}]\nmore: *q\n",
    "merge-alias": "base: &b {type: open, text: t}\nquestions: [{id: a, <<: *b}]\n",
    "deep-block": "questions:\n" + "  - " * 200 + "x\n",
    "deep-flow-list": "[" * 5000 + "]" * 5000,
    "deep-flow-map": "{a: " * 3000 + "1" + "}" * 3000,
    "python-tag": "!!python/object/apply:os.system ['echo pwned']",
    "binary-tag": "questions: [{id: a, type: open, text: !!binary AAAA}]",
    "bad-date": "questions: [{id: a, type: open, text: 2001-13-45}]",
    "bad-timestamp": "questions: [{id: a, type: open, text: 2001-02-30 25:61:61}]",
    "huge-points": "questions: [{id: a, type: likert, text: t, points: 1000000000000}]",
    "huge-max": "questions: [{id: a, type: likert, text: t, min: 0, max: 99999999999999999999}]",
    "inf-label-key": "questions: [{id: a, type: likert, text: t, labels: {.inf: x}}]",
    "nan-label-key": "questions: [{id: a, type: likert, text: t, labels: {.nan: x}}]",
    "list-type": "questions: [{id: a, type: [likert], text: t}]",
    "map-min": "questions: [{id: a, type: likert, text: t, min: {}}]",
    "map-answer-type": "items: [{id: a, answer_type: {x: 1}, question_text: t}]",
    "mixed-key-types": "questions: [{id: a, type: open, text: t}]\n1: x\nb: y\n",
    "complex-key": "questions: [{id: a, type: open, text: t}]\n? [a, b]\n: c\n",
    "set": "questions: !!set {a, b}",
    "omap": "questions: !!omap [a: 1]",
    "nan-inf-range": "questions: [{id: a, type: numeric, text: t, min: .nan, max: .inf}]",
    "huge-code": "questions: [{id: a, type: single_choice, text: t, options: [{code: 99999999999999999999999, label: a}, b]}]",
    "bom": "\ufeffquestions: [{id: a, type: open, text: t}]",
    "surrogate-escape": "questions: [{id: a, type: open, text: \"\\ud800\"}]",
    "yaml-9.9": "%YAML 9.9\n---\na: 1",
    "two-documents": "--- a\n--- b\n",
    "nul": "\x00",
    "empty": "",
}  # fmt: skip
YAML_TRAPS = list(YAML_TRAP_CASES.values())


@st.composite
def questionnaire_texts(draw: st.DrawFn, base: dict[str, Any]) -> str:
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(st.sampled_from(YAML_TRAPS))
    if choice == 1:
        return draw(st.text(max_size=300))
    text = dump_yaml(draw(questionnaire(base)))
    if choice == 3 and text:  # cut or splice a few characters: broken YAML
        at = draw(st.integers(0, len(text)))
        text = (
            text[:at]
            + draw(st.sampled_from(["&x ", "*x", ": ", "- ", "\t", "'", '"', "{", "[", "!!str "]))
            + text[at:]
        )
    return text


# --- respondent files and --select specs ------------------------------------------------------------

RESPONDENT_COLUMNS = [
    "id",
    "twin_id",
    "pid",
    "profile",
    "age",
    "sex",
    "",
    "id ",
    "Profile",
    "a,b",
    "\ufeffid",
]


@st.composite
def respondent_rows(draw: st.DrawFn) -> list[dict[str, Any]]:
    columns = draw(st.lists(st.one_of(st.sampled_from(RESPONDENT_COLUMNS), hostile_text()), max_size=5))
    if draw(st.booleans()):
        columns = ["id", "profile", *columns]
    rows = draw(st.lists(st.fixed_dictionaries({c: scalars() for c in columns}), max_size=5))
    return rows


@st.composite
def respondent_files(draw: st.DrawFn) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from([".csv", ".json", ".jsonl", ".txt", ".parquet"]))
    style = draw(st.integers(0, 4))
    if style == 0:
        return suffix, draw(st.binary(max_size=200))
    if style == 1:
        return suffix, draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")
    rows = draw(respondent_rows())
    if suffix == ".csv":
        out = io.StringIO()
        columns = list(dict.fromkeys(k for row in rows for k in row)) or ["id"]
        writer = csv.writer(out, quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_NONNUMERIC])))
        writer.writerow(columns)
        for row in rows:
            writer.writerow([row.get(c, "") for c in columns])
        return suffix, out.getvalue().encode("utf-8", "surrogatepass")
    if suffix == ".jsonl":
        lines = [to_json_bytes(draw(st.one_of(st.just(row), json_values()))) for row in rows]
        return suffix, b"\n".join(lines)
    wrapped: Any = (
        rows if draw(st.booleans()) else {draw(st.sampled_from(["personas", "respondents", "x"])): rows}
    )
    return suffix, to_json_bytes(wrapped)


SPEC_KINDS = ["all", "random", "ids", "where", "saved", "file", "source", "hf", "RANDOM", " where", "x", ""]


@st.composite
def select_specs(draw: st.DrawFn) -> list[str]:
    specs = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(SPEC_KINDS))
        value = draw(st.one_of(
            hostile_text(),
            hostile_numbers().map(str),
            st.lists(hostile_numbers().map(str), min_size=1, max_size=3).map(":".join),
            st.builds(lambda k, v: f"{k}={v}", hostile_ids(["age", "sex", "age_band"]), hostile_text()),
            st.builds(lambda k, a, b: f"{k}={a}..{b}", hostile_ids(["age"]), hostile_numbers(), hostile_numbers()),
        ))  # fmt: skip
        specs.append(f"{kind}:{value}")
    return specs


# --- CRM and orders -------------------------------------------------------------------------------

CRM_VALUES = st.one_of(
    scalars(["Budget Seeker", "lumiere", "lum-01", "retention", "²", "٣", "-0", "+1", " 1 ", "1.0", "0x1"]),
    json_values(max_leaves=4),
)


@st.composite
def batch_files(draw: st.DrawFn) -> tuple[str, str]:
    name = draw(st.sampled_from(["rows.csv", "rows.json", "rows.jsonl", "rows", "rows.CSV", "rows.txt"]))
    style = draw(st.integers(0, 2))
    if style == 0:
        return name, draw(
            st.one_of(st.text(max_size=300), st.sampled_from(["", "\x00", "[" * 5000, '"' * 3]))
        )
    rows = draw(st.lists(mutated(CRM_REQUEST, CRM_VALUES), max_size=4))
    if name.lower().endswith(".csv"):
        out = io.StringIO()
        columns = list(dict.fromkeys(k for row in rows for k in row)) or ["persona"]
        writer = csv.writer(out)
        writer.writerow(columns)
        for row in rows:
            cells = [row.get(c, "") for c in columns]
            writer.writerow(cells + (["extra"] if draw(st.booleans()) else []))
        return name, out.getvalue()
    if name.endswith(".jsonl"):
        return name, "\n".join(to_json_bytes(r).decode() for r in rows)
    return name, to_json_bytes(rows if style == 1 else {"rows": rows}).decode()


ORDER_VALUES = st.one_of(
    scalars(["C00001", "SK02", "app", "web", "store", "o-2", "C:1", "o 1", "1764900000"]),
    json_values(max_leaves=6),
    st.lists(mutated(ORDER["items"][0], st.one_of(scalars(), hostile_numbers())), max_size=3),  # type: ignore[index]
)
