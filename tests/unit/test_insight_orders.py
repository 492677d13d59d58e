"""Orders are bounded (times, amounts, quantities, item counts, ids by full match, notes), customer
notes are cleaned and end up, a few per segment, in the segment profiles; the simulator writes some."""

from __future__ import annotations

import json
import time
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError

from personagraph.insight.orders import Order, validation_problems
from personagraph.insight.profiles import NOTES_HEADER, profile_document, segment_notes
from personagraph.insight.settings import get_insight_settings
from personagraph.insight.simulator import CUSTOMER_NOTES, OrderFactory
from personagraph.insight.store import NOTE_COLUMNS
from personagraph.services.insight import InvalidOrderError, parse_order
from tests.unit.insight_support import small_snapshot

NOW = time.time()
BASE: dict[str, Any] = {
    "order_id": "shop-1", "customer_id": "C00001", "items": [{"sku": "SK01", "qty": 1, "price": 18000}],
    "amount": 18000, "channel": "app", "ts": NOW - 60,
}  # fmt: skip


def problem(**changes: Any) -> str:
    with pytest.raises(ValidationError) as info:
        Order.model_validate({**BASE, **changes})
    return validation_problems(info.value)


def test_a_valid_order_passes() -> None:
    assert Order.model_validate(BASE).order_id == "shop-1"


@pytest.mark.parametrize(
    ("changes", "field", "setting"),
    [
        ({"ts": 1e300}, "ts", "INSIGHT_ORDER_MAX_FUTURE_S"),
        ({"ts": NOW + 10 * 86_400}, "ts", "INSIGHT_ORDER_MAX_FUTURE_S"),
        ({"ts": 86_400.0}, "ts", "INSIGHT_ORDER_MIN_TS"),
        ({"amount": 10**20}, "amount", "INSIGHT_ORDER_MAX_AMOUNT"),
        ({"items": [{"sku": "SK01", "qty": 1, "price": 10**12}]}, "items.0.price", "INSIGHT_ORDER_MAX_PRICE"),
        ({"items": [{"sku": "SK01", "qty": 10**6, "price": 1}]}, "items.0.qty", "INSIGHT_ORDER_MAX_QTY"),
        ({"items": [{"sku": "SK01", "qty": 1, "price": 1}] * 101}, "items", "INSIGHT_ORDER_MAX_ITEMS"),
        ({"note": "가" * 301}, "note", "INSIGHT_NOTE_MAX_CHARS"),
    ],
)
def test_bounds_name_the_field_and_the_setting(changes: dict[str, Any], field: str, setting: str) -> None:
    text = problem(**changes)
    assert text.startswith(f"{field}:") and setting in text


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_times_are_finite(bad: float) -> None:
    assert problem(ts=bad).startswith("ts:")


@pytest.mark.parametrize(
    ("field", "value"),
    [("order_id", "o1\n"), ("order_id", "a:b"), ("order_id", "../x"), ("customer_id", "C 1"),
     ("customer_id", "-C1"), ("customer_id", "c" * 41), ("customer_id", "C1\n")],
)  # fmt: skip
def test_ids_must_match_in_full(field: str, value: str) -> None:
    assert problem(**{field: value}).startswith(f"{field}:")


def test_a_sku_must_match_in_full() -> None:
    assert problem(items=[{"sku": "SK01\n", "qty": 1, "price": 1}]).startswith("items.0.sku:")


def test_the_bounds_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSIGHT_ORDER_MAX_AMOUNT", "1000")
    get_insight_settings.cache_clear()
    try:
        assert "1,000 KRW" in problem(amount=18000)
    finally:
        monkeypatch.delenv("INSIGHT_ORDER_MAX_AMOUNT")
        get_insight_settings.cache_clear()


def test_a_note_is_cleaned_and_an_empty_one_is_none() -> None:
    note = Order.model_validate({**BASE, "note": "  선물용\n포장 \u202e부탁\x00해요  "}).note
    assert note == "선물용 포장 부탁해요"
    assert Order.model_validate({**BASE, "note": " \n\t "}).note is None
    assert Order.model_validate({**BASE, "note": "👩‍👩‍👧 gift"}).note == "👩‍👩‍👧 gift"  # joiners kept


def test_an_ingested_order_may_carry_a_note_and_a_bad_one_names_the_field() -> None:
    assert parse_order({**BASE, "note": "문 앞에 놓아 주세요."}).note == "문 앞에 놓아 주세요."
    with pytest.raises(InvalidOrderError, match=r"^note: at most 300 characters"):
        parse_order({**BASE, "note": "x" * 301})
    with pytest.raises(InvalidOrderError, match=r"^amount: at most"):
        parse_order({**BASE, "amount": 10**20})


def test_the_simulator_writes_some_notes_without_changing_the_orders_a_seed_gives() -> None:
    customers = [f"C{i:05d}" for i in range(50)]
    plain = OrderFactory(customers, seed=3, run_id="r", note_share=0.0)
    noted = OrderFactory(customers, seed=3, run_id="r", note_share=0.2)
    a = [plain.next_order(ts=NOW) for _ in range(300)]
    b = [noted.next_order(ts=NOW) for _ in range(300)]
    assert [(o.customer_id, o.amount) for o in a] == [(o.customer_id, o.amount) for o in b]
    notes = [o.note for o in b if o.note]
    assert 20 <= len(notes) <= 100 and set(notes) <= set(CUSTOMER_NOTES)
    assert any(n.isascii() for n in CUSTOMER_NOTES) and any(not n.isascii() for n in CUSTOMER_NOTES)
    assert all(o.note is None for o in a)


def test_segment_profiles_quote_a_few_recent_notes_of_their_own_customers() -> None:
    snap = small_snapshot()
    vips = snap.customers.index[snap.customers["segment"] == "vip"].tolist()
    dormant = snap.customers.index[snap.customers["segment"] == "dormant"][0]
    rows = [(vips[0], "o1", NOW - 10, "older note of vip 0"), (vips[0], "o2", NOW - 5, 'newest "vip" note'),
            (vips[1], "o3", NOW - 7, "vip 1 says hi"), (vips[2], "o4", NOW - 900, "vip 2, long ago"),
            (dormant, "o5", NOW, "a dormant customer's note")]  # fmt: skip
    snap.notes = pd.DataFrame(rows, columns=NOTE_COLUMNS)
    picked = segment_notes(snap, "vip", 2)
    assert [n["note"] for n in picked] == ['newest "vip" note', "vip 1 says hi"]  # one per customer, newest
    text = profile_document(snap, "vip", notes_per_segment=2).text
    assert NOTES_HEADER in text and json.dumps('newest "vip" note') in text
    assert "dormant customer's note" not in text and "older note" not in text
    assert NOTES_HEADER not in profile_document(snap, "vip", notes_per_segment=0).text
    assert NOTES_HEADER not in profile_document(small_snapshot(), "vip").text  # no notes: no section
