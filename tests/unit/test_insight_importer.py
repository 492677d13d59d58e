"""Real orders in: a shop's order export (CSV, English or Korean headers, UTF-8 or CP949) becomes a named,
segmented insight dataset; bad rows are refused by row and column (or left out and listed when
asked); only admins import; anyone signed in asks about a dataset, answered from its figures only."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from langgraph.store.memory import InMemoryStore

from personagraph.accounts.identity import Caller, ForbiddenError, NotFoundError
from personagraph.accounts.store import AccountStore
from personagraph.api.app import create_app
from personagraph.insight.importer import (
    DatasetExistsError,
    DatasetSource,
    OrdersFileError,
    list_datasets,
    read_orders,
    template_path,
)
from personagraph.insight.source import FixedSource
from personagraph.nodes.insight import InsightContext
from personagraph.services.insight import InsightService
from personagraph.serving.models import use_models
from tests.fakes import scripted
from tests.unit.insight_support import small_history, small_snapshot

BOSS = Caller("boss", "admin")
MINA = Caller("mina")
HEADER = "order_id,customer_id,ordered_at,sku,qty,unit_price,channel\n"
PASSWORD = "a long enough password"


def service() -> InsightService:
    return InsightService.for_source(
        FixedSource(small_snapshot()), InsightContext(use_profiles=False), InMemoryStore()
    )


def export_of_small_history() -> bytes:
    """The seeded test history written as a shop would export it: one row per order line."""
    h = small_history()
    lines = h.items.merge(h.orders[["order_id", "customer_id", "ts", "channel"]], on="order_id")
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["order_id", "customer_id", "ordered_at", "sku", "qty", "unit_price", "channel", "memo"])
    for r in lines.itertuples():
        when = __import__("datetime").datetime.fromtimestamp(r.ts, __import__("datetime").UTC).isoformat()
        writer.writerow([r.order_id, r.customer_id, when, r.sku, r.qty, r.price, r.channel, "x"])
    return out.getvalue().encode()


def test_an_export_becomes_a_segmented_dataset_with_the_same_customers_and_revenue() -> None:
    h = small_history()
    imported = service().import_orders(BOSS, export_of_small_history(), "seeded", filename="export.csv")
    assert (imported.customers, imported.orders) == (h.orders["customer_id"].nunique(), len(h.orders))
    assert sum(imported.segments.values()) == imported.customers and len(imported.segments) >= 5
    assert imported.ignored_columns == ["memo"] and imported.skipped == []
    snap = DatasetSource("seeded").read()
    assert int(snap.customers["monetary"].sum()) == int(h.orders["amount"].sum())
    assert snap.as_of == pytest.approx(float(h.orders["ts"].max()))  # recency counts from the last order
    assert [d["name"] for d in list_datasets()] == ["seeded"] and list_datasets()[0]["orders"] == len(
        h.orders
    )


def test_the_shipped_template_imports() -> None:
    imported = service().import_orders(BOSS, template_path().read_bytes(), "template")
    assert imported.customers >= 10 and sum(imported.segments.values()) == imported.customers


def test_korean_headers_cp949_prices_with_won_and_korean_channels() -> None:
    rows = ["주문번호,회원ID,주문일시,상품코드,수량,판매가,채널"]
    for c in range(12):
        rows.append(f'K{c}-1,M{c:03d},2025-03-{c + 1:02d} 10:00,SK02,1,"32,000원",앱')
        rows.append(f"K{c}-2,M{c:03d},2025.04.{c + 1:02d},FR01,{1 + c % 3},89000,매장")
    imported = read_orders("\n".join(rows).encode("cp949"), "주문내역.csv")
    orders = imported.history.orders
    assert len(orders) == 24 and set(orders["channel"]) == {"app", "store"}
    assert int(orders["amount"].sum()) == 12 * 32000 + sum(1 + c % 3 for c in range(12)) * 89000


def test_bad_rows_are_named_by_row_and_column_and_nothing_is_imported() -> None:
    text = HEADER + (
        "A1,M1,2025-03-01,SK02,1,32000,app\n"
        "A2,M2,2025-13-01,SK02,1,32000,app\n"  # row 3: no 13th month
        "A3,,2025-03-01,SK02,1,32000,app\n"  # row 4: no customer
        "A4,M4,2025-03-01,SK02,0,32000,app\n"  # row 5: quantity 0
        "A5,M5,2025-03-01,SK02,1,abc,app\n"  # row 6: not a price
        "A6,M6,2025-03-01,SK02,1,32000,fax\n"  # row 7: not a channel
        "A1,M9,2025-03-01,MU02,1,14000,app\n"  # row 8: order A1 is M1's
    )
    svc = service()
    with pytest.raises(OrdersFileError) as caught:
        svc.import_orders(BOSS, text.encode(), "bad", filename="orders.csv")
    message = str(caught.value)
    for where in ("row 3, column ordered_at", "row 4, column customer_id", "row 5, column qty",
                  "row 6, column unit_price", "row 7, column channel", "row 8, column customer_id"):  # fmt: skip
        assert where in message, message
    assert "differs from row 2" in message and "app, web, store" in message
    assert list_datasets() == []


def test_skip_bad_rows_leaves_them_out_with_the_rest_of_their_order_and_lists_them() -> None:
    good = "".join(f"B{c},M{c:02d},2025-03-{c + 1:02d},SK02,1,32000,web\n" for c in range(12))
    text = HEADER + good + "B0,M00,2025-03-01,MU02,1,-5,web\n"  # a bad line of order B0
    imported = read_orders(text.encode(), skip_bad_rows=True)
    assert imported.skipped == ["row 14, column unit_price: a whole number is needed; got '-5'"]
    assert "B0" not in set(imported.history.orders["order_id"]) and len(imported.history.orders) == 11


def test_order_bounds_of_the_live_stream_apply() -> None:
    lines = "".join(f"C1,M1,2025-03-01,SK{i:02d},1,9000000,app\n" for i in range(20))  # 180,000,000 KRW
    with pytest.raises(OrdersFileError, match="row 2, column unit_price: order total at most 100,000,000"):
        read_orders((HEADER + lines).encode())


def test_file_level_problems_name_the_file_or_the_header() -> None:
    with pytest.raises(OrdersFileError, match="missing column.*sku.*상품코드"):
        read_orders(b"order_id,customer_id,ordered_at,qty,unit_price\nA,M,2025-01-01,1,100\n")
    with pytest.raises(OrdersFileError, match="empty"):
        read_orders(b"")
    with pytest.raises(OrdersFileError, match="segmenting needs at least 10"):
        service().import_orders(BOSS, (HEADER + "A,M,2025-01-01,SK02,1,100,app\n").encode(), "tiny")
    with pytest.raises(OrdersFileError, match="timezone"):
        read_orders(HEADER.encode(), timezone="Mars/Olympus")


def test_importing_is_for_admins_names_are_checked_and_not_overwritten_by_accident() -> None:
    svc, data = service(), template_path().read_bytes()
    with pytest.raises(ForbiddenError):
        svc.import_orders(MINA, data, "mine")
    with pytest.raises(ValueError, match="dataset"):
        svc.import_orders(BOSS, data, "../etc")
    svc.import_orders(BOSS, data, "shop")
    with pytest.raises(DatasetExistsError, match="dataset"):
        svc.import_orders(BOSS, data, "shop")
    assert svc.import_orders(BOSS, data, "shop", replace=True).dataset == "shop"


def test_questions_about_a_dataset_use_its_figures_only() -> None:
    svc = service()
    svc.import_orders(BOSS, export_of_small_history(), "seeded")
    live_vip = int((small_snapshot().customers["segment"] == "vip").sum())
    imported = DatasetSource("seeded").read()
    with use_models({"drafter": scripted("Here is what the data says.")}):
        out = svc.ask(MINA, "What are our VIP customers like?", router_mode="keywords", dataset="seeded")
        with pytest.raises(NotFoundError, match="dataset"):
            svc.ask(MINA, "VIP?", router_mode="keywords", dataset="nope")
        own = svc.ask(MINA, "VIP customers?", router_mode="keywords")
    vip = out.tool_results["segment_stats[vip]"]
    assert vip["customers"] == int((imported.customers["segment"] == "vip").sum())
    assert out.dataset == "seeded" and out.retrieved == []  # no profile documents of other data
    assert svc.thread(MINA, out.thread_id)[0]["dataset"] == "seeded"
    assert own.dataset is None and own.tool_results["segment_stats[vip]"]["customers"] == live_vip


def test_the_http_api_imports_lists_and_asks_by_dataset(tmp_path: Path) -> None:
    accounts = AccountStore(tmp_path / "accounts.sqlite", bcrypt_rounds=4)
    accounts.add("alice", PASSWORD)
    accounts.add("boss", PASSWORD, role="admin")
    client = TestClient(create_app(accounts, None, service(), ready_checks={}), raise_server_exceptions=False)  # type: ignore[arg-type]

    def token(user: str) -> dict[str, str]:
        signed = client.post("/api/session", json={"user_id": user, "password": PASSWORD})
        return {"Authorization": f"Bearer {signed.json()['token']}"}

    alice, boss = token("alice"), token("boss")
    files = {"file": ("orders.csv", template_path().read_bytes(), "text/csv")}
    assert (
        client.post("/api/insight/datasets", files=files, data={"dataset": "web"}, headers=alice).status_code
        == 403
    )
    made = client.post("/api/insight/datasets", files=files, data={"dataset": "web"}, headers=boss)
    assert made.status_code == 201, made.text
    assert made.json()["customers"] >= 10 and "path" not in made.json()
    bad = client.post("/api/insight/datasets", files={"file": ("o.csv", (HEADER + "A,M,x,SK02,1,1,app\n").encode())},
                      data={"dataset": "bad"}, headers=boss)  # fmt: skip
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "file"
    assert "row 2, column ordered_at" in bad.json()["error"]["reason"]
    assert [d["name"] for d in client.get("/api/insight/datasets", headers=alice).json()["datasets"]] == [
        "web"
    ]
    template = client.get("/api/insight/orders-template.csv", headers=alice)
    assert template.status_code == 200 and template.text.startswith("order_id,customer_id")
    with use_models({"drafter": scripted("대부분의 고객은 가끔 구매해요. 가까이 챙겨 주세요.")}):
        streamed = client.post("/api/insight/ask/stream", headers=alice, json={
            "question": "고객 세그먼트 전체 요약해줘", "router_mode": "keywords", "dataset": "web"})  # fmt: skip
        unknown = client.post("/api/insight/ask", headers=alice, json={"question": "VIP?", "dataset": "nope"})
    assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
    events = [
        (b.split("\n")[0][7:], json.loads(b.split("\n")[1][6:])) for b in streamed.text.strip().split("\n\n")
    ]
    kinds = [k for k, _ in events]
    assert kinds[0] == "figures" and kinds[-1] == "final" and "token" in kinds
    first: dict[str, Any] = events[0][1]
    assert first["template"].startswith("데이터 기준") and first["dataset"] == "web"
    assert events[-1][1]["answer"] == "대부분의 고객은 가끔 구매해요. 가까이 챙겨 주세요."
    assert unknown.status_code == 404 and unknown.json()["error"]["field"] == "dataset"
