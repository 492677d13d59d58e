"""File and data parsers with random and hostile input: character cards (JSON and PNG, hostile
chunks), surveys and interview guides (YAML/JSON text and data: aliases, deep nesting, huge numbers,
wrong types), respondent files (CSV/JSON/JSONL), CRM requests, batch files and the catalog, insight
orders (as ingested and as read from the stream), and `--select` specs.

Each parser either returns its object or raises its own error type with a message; anything else
(TypeError, OverflowError, a bare ValueError from a library, ...) is a crash and fails the test.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from personagraph.accounts.identity import Caller
from personagraph.crm.catalog import CatalogError, load_catalog
from personagraph.crm.inputs import CrmInputError, CrmRequest, parse_request
from personagraph.insight.orders import Order
from personagraph.personas.cards import CardError, CharacterCard, load_card
from personagraph.services.crm import BatchFileError, parse_rows
from personagraph.services.insight import InvalidOrderError, parse_order
from personagraph.services.twins.selections import parse_selection
from personagraph.serving.safe_paths import PathOutsideError, UnsafeIdError
from personagraph.serving.settings import get_settings
from personagraph.twins.guides import GuideError, InterviewGuide, guide_from_data, guide_from_text, load_guide
from personagraph.twins.respondents import RespondentError, RespondentPool, Selection, load_user_personas
from personagraph.twins.surveys import Survey, SurveyError, load_survey, survey_from_data, survey_from_text
from tests.fuzz.inputs import (
    CRM_REQUEST,
    CRM_VALUES,
    DATA,
    GUIDE,
    ORDER,
    ORDER_VALUES,
    PNG,
    TAM,
    YAML_TRAP_CASES,
    batch_files,
    card_payloads,
    chunk,
    dump_yaml,
    inflate_bomb,
    png_cards,
    questionnaire,
    questionnaire_texts,
    respondent_files,
    select_specs,
)
from tests.fuzz.strategies import assert_clear, examples, hostile_ids, mutated, to_json_bytes, yaml_values

pytestmark = pytest.mark.timeout(120)
# Open findings in files other parts own (strict: a fix makes these tests pass, then drop the mark).
_names = itertools.count()


def unique(folder: Path, suffix: str) -> Path:
    """A new file name per example (loaders cache by path and mtime)."""
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"f{next(_names)}{suffix}"


# --- character cards ----------------------------------------------------------------------------------


def check_card(source: bytes) -> None:
    try:
        card = load_card(source)
    except Exception as exc:  # noqa: BLE001 - the assertion says what escaped
        assert_clear(exc, (CardError,))
        return
    assert isinstance(card, CharacterCard)
    # A card that loads also writes back out (its JSON is what an export gives).
    json.dumps(card.to_json(), ensure_ascii=False).encode("utf-8")


@settings(max_examples=examples(120))
@given(card_payloads())
def test_card_json(payload: Any) -> None:
    check_card(to_json_bytes(payload))


@settings(max_examples=examples(60))
@given(
    st.one_of(
        st.binary(max_size=300), st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))
    )
)
def test_card_random_bytes(data: bytes) -> None:
    check_card(data)


@settings(max_examples=examples(100))
@given(png_cards())
def test_card_png_chunks(data: bytes) -> None:
    check_card(data)


def test_a_png_inflate_bomb_is_refused() -> None:
    bomb = PNG + chunk(b"zTXt", b"chara\x00\x00" + inflate_bomb()) + chunk(b"IEND", b"")
    assert len(bomb) < get_settings().card_max_bytes
    with pytest.raises(CardError, match="CARD_MAX_TEXT_BYTES"):
        load_card(bomb)


# --- surveys and interview guides ---------------------------------------------------------------------


def attempt(parse: Any, allowed: tuple[type[BaseException], ...], expected: type, *args: Any) -> None:
    try:
        result = parse(*args)
    except Exception as exc:  # noqa: BLE001 - the assertion says what escaped
        assert_clear(exc, allowed)
        return
    assert isinstance(result, expected)


@settings(max_examples=examples(150))
@given(questionnaire(TAM))
def test_survey_data(data: Any) -> None:
    attempt(survey_from_data, (SurveyError,), Survey, data)


@settings(max_examples=examples(100))
@given(questionnaire(GUIDE))
def test_guide_data(data: Any) -> None:
    attempt(guide_from_data, (GuideError,), InterviewGuide, data)


@settings(max_examples=examples(120))
@given(questionnaire_texts(TAM))
def test_survey_text(text: str) -> None:
    attempt(survey_from_text, (SurveyError,), Survey, text)


@settings(max_examples=examples(80))
@given(questionnaire_texts(GUIDE))
def test_guide_text(text: str) -> None:
    attempt(guide_from_text, (GuideError,), InterviewGuide, text)


@pytest.mark.parametrize("name", sorted(YAML_TRAP_CASES))
def test_yaml_traps(name: str) -> None:
    """Every trap, not a sample of them, as a survey and as an interview guide."""
    text = YAML_TRAP_CASES[name]
    attempt(survey_from_text, (SurveyError,), Survey, text)
    attempt(guide_from_text, (GuideError,), InterviewGuide, text)


@settings(max_examples=examples(40))
@given(questionnaire_texts(TAM), st.sampled_from([".yaml", ".yml", ".json", ".txt"]), st.booleans())
def test_survey_and_guide_files(tmp_path: Path, text: str, suffix: str, raw_bytes: bool) -> None:
    path = unique(tmp_path / "surveys", suffix)
    if raw_bytes:
        path.write_bytes(text.encode("utf-8", "surrogatepass")[:200] + b"\xff\xfe")
    else:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    attempt(load_survey, (SurveyError,), Survey, path)
    attempt(load_guide, (GuideError,), InterviewGuide, path)


# --- respondent files ---------------------------------------------------------------------------------


@settings(max_examples=examples(120))
@given(respondent_files())
def test_respondent_files(tmp_path: Path, file: tuple[str, bytes]) -> None:
    suffix, content = file
    path = unique(tmp_path / "respondents", suffix)
    path.write_bytes(content)
    attempt(load_user_personas, (RespondentError,), RespondentPool, path)


# --- --select specs -------------------------------------------------------------------------------------


@settings(max_examples=examples(150))
@given(select_specs())
def test_select_specs(specs: list[str]) -> None:
    """An account's `--select` specs (as the app and the API pass them): files confined to its folders."""
    allowed = (RespondentError, UnsafeIdError, PathOutsideError)
    attempt(parse_selection, allowed, Selection, Caller("mina"), specs)


# --- CRM requests, batch files and the catalog -------------------------------------------------------


@settings(max_examples=examples(200))
@given(mutated(CRM_REQUEST, CRM_VALUES))
def test_crm_request(raw: dict[str, Any]) -> None:
    attempt(parse_request, (CrmInputError,), CrmRequest, raw)


@settings(max_examples=examples(100))
@given(batch_files())
def test_crm_batch_file(file: tuple[str, str]) -> None:
    name, text = file
    try:
        rows = parse_rows(text, name)
    except Exception as exc:  # noqa: BLE001
        assert_clear(exc, (BatchFileError,))
        return
    assert isinstance(rows, list)
    for row in rows:
        attempt(parse_request, (CrmInputError,), CrmRequest, row)


CATALOG_FILES = ["brands.yaml", "products.json", "reviews.jsonl", "promotions.json", "ingredients.yaml",
                 "channels.yaml"]  # fmt: skip


@settings(max_examples=examples(40))
@given(st.sampled_from(CATALOG_FILES), st.integers(0, 3), st.data())
def test_crm_catalog_files(tmp_path: Path, name: str, style: int, data: st.DataObject) -> None:
    """A CRM_DATA_DIR with one file broken: the catalog loads or CatalogError names the folder."""
    folder = unique(tmp_path / "catalogs", "")
    shutil.copytree(DATA / "crm", folder)
    target = folder / name
    if style == 0:
        target.unlink()
    elif style == 1:
        target.write_bytes(data.draw(st.binary(max_size=100)))
    elif style == 2:
        target.write_text(
            dump_yaml(data.draw(yaml_values(max_leaves=8))), encoding="utf-8", errors="surrogatepass"
        )
    else:
        original = target.read_text(encoding="utf-8")
        cut = data.draw(st.integers(0, len(original)))
        target.write_text(original[:cut], encoding="utf-8")
    try:
        load_catalog(folder)
    except Exception as exc:  # noqa: BLE001
        assert_clear(exc, (CatalogError,))


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("products.json", "[{"),  # JSONDecodeError escaped the first read
        ("brands.yaml", "brands: [a: b"),  # a YAML scanner error
        ("channels.yaml", "- sms\n- lms\n"),  # a list where a mapping belongs: TypeError
        ("brands.yaml", "other: 1\n"),  # KeyError 'brands'
        ("ingredients.yaml", "ingredients: {x: {since: 2001-13-45}}\n"),  # an impossible date
        ("reviews.jsonl", "\udcff"),  # not UTF-8 (written with surrogateescape)
    ],
)
def test_a_broken_catalog_file_is_a_catalog_error(tmp_path: Path, name: str, content: str) -> None:
    folder = tmp_path / "crm"
    shutil.copytree(DATA / "crm", folder)
    (folder / name).write_text(content, encoding="utf-8", errors="surrogateescape")
    with pytest.raises(CatalogError, match="CRM catalog"):
        load_catalog(folder)


# --- insight orders ----------------------------------------------------------------------------------


def _check_valid_order(order: Order) -> None:
    """What the live store relies on: 64-bit counters, a finite time, bounded lines."""
    assert 0 <= order.amount < 2**63 and all(0 <= i.price < 2**63 and 0 < i.qty < 2**31 for i in order.items)
    assert 0 < order.ts < 2**40 and order.ts == order.ts


@settings(max_examples=examples(200))
@given(mutated(ORDER, ORDER_VALUES))
def test_order_ingest(raw: dict[str, Any]) -> None:
    try:
        order = parse_order(raw)
    except Exception as exc:  # noqa: BLE001
        assert_clear(exc, (InvalidOrderError,))
        return
    _check_valid_order(order)


@settings(max_examples=examples(150))
@given(st.one_of(mutated(ORDER, ORDER_VALUES).map(to_json_bytes), st.binary(max_size=200)))
def test_order_stream_entry(entry: bytes) -> None:
    """A stream entry as a consumer reads it: valid, or a ValueError it files as invalid."""
    try:
        order = Order.model_validate_json(entry)
    except ValueError:
        return  # the consumer catches ValueError (pydantic's ValidationError is one) per entry
    _check_valid_order(order)


@settings(max_examples=examples(60))
@given(hostile_ids(), hostile_ids())
def test_order_ids(order_id: str, customer_id: str) -> None:
    attempt(
        parse_order, (InvalidOrderError,), Order, {**ORDER, "order_id": order_id, "customer_id": customer_id}
    )
