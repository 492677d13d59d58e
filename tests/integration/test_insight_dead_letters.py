"""Bad events never stop a consumer (real Redis): each bad entry is dead-lettered with its reason, the
good orders of its batch are applied, and a consumer that dies is restarted and says so."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import redis

from personagraph.insight.consumer import Entry, OrderConsumer, SupervisedConsumer
from personagraph.insight.orders import Order, OrderItem, generate_history
from personagraph.insight.profiles import NOTES_HEADER, profile_document
from personagraph.insight.settings import InsightSettings
from personagraph.insight.simulator import publish
from personagraph.insight.store import InsightStore
from personagraph.memory.redis_server import LocalRedis

pytestmark = pytest.mark.integration

NOW = time.time()
ANCHOR = float(int(NOW // 86400) * 86400)


@pytest.fixture
def store(redis_server: LocalRedis) -> Iterator[InsightStore]:
    prefix = f"d{uuid.uuid4().hex[:8]}"
    s = InsightStore.from_url(redis_server.url, prefix)
    s.load_history(generate_history(120, 1000, seed=5, anchor=ANCHOR))
    yield s
    s.clear()
    s.r.delete(f"{prefix}:orders", f"{prefix}:orders:dead")


def consumer(
    store: InsightStore, name: str = "c1", cls: type[OrderConsumer] = OrderConsumer, **kwargs: Any
) -> Any:
    settings = kwargs.pop("settings", None) or InsightSettings()
    c = cls(store, stream=f"{store.p}:orders", group="g", name=name, settings=settings, **kwargs)
    c.ensure_group()
    c.ensure_model()
    return c


def good(order_id: str, customer: str = "C00010", amount: int = 30000, note: str | None = None) -> Order:
    return Order(order_id=order_id, customer_id=customer, items=[OrderItem(sku="SK02", qty=1, price=amount)],
                 amount=amount, channel="app", ts=NOW - 60, note=note)  # fmt: skip


def order_json(**changes: Any) -> str:
    base = json.loads(good("B0").model_dump_json(exclude_none=True))
    return json.dumps({**base, **changes})


def add_raw(store: InsightStore, fields: dict[Any, Any]) -> str:
    return str(store.r.xadd(f"{store.p}:orders", fields))


def test_each_bad_entry_is_dead_lettered_and_the_good_ones_of_its_batch_are_applied(
    store: InsightStore,
) -> None:
    before = {c: int(store.customer(c)["frequency"]) for c in ("C00010", "C00011")}
    stream = f"{store.p}:orders"
    publish(store.r, stream, [good("G1", "C00010")])
    bad_ids = {
        "ts": add_raw(store, {"order": order_json(order_id="B1", ts=1e300)}),
        "amount": add_raw(store, {"order": order_json(order_id="B2", amount=10**20)}),
        "json": add_raw(store, {"order": '{"order_id": "B3", "items": [', "published_at": "1"}),
        "items": add_raw(store, {"order": order_json(order_id="B4", items=[{"sku": "SK01", "qty": 1, "price": 1}] * 200)}),
        "huge": add_raw(store, {"order": order_json(order_id="B5", items=[{"sku": "SK01", "qty": 1, "price": 1}] * 5000)}),
        "utf8": add_raw(store, {"order": b'{"order_id": "B6", "note": "\xff\xfe"}'}),
        "missing": add_raw(store, {"something": "else"}),
    }  # fmt: skip
    publish(store.r, stream, [good("G2", "C00011")])

    c = consumer(store, batch=50)
    assert c.drain() == 9
    # The good orders on both sides of the bad ones were applied, once.
    assert int(store.customer("C00010")["frequency"]) == before["C00010"] + 1
    assert int(store.customer("C00011")["frequency"]) == before["C00011"] + 1
    assert (c.stats.applied, c.stats.invalid) == (2, 7)
    assert store.r.xpending(stream, "g")["pending"] == 0  # everything acknowledged

    dead = {d["entry_id"]: d for d in store.dead_letters(c.dead_letter_stream, 20)}
    assert set(dead) == set(bad_ids.values())
    reasons = {name: dead[entry_id]["reason"] for name, entry_id in bad_ids.items()}
    assert reasons["ts"].startswith("invalid order: ts:") and "INSIGHT_ORDER_MAX_FUTURE_S" in reasons["ts"]
    assert (
        reasons["amount"].startswith("invalid order: amount:")
        and "INSIGHT_ORDER_MAX_AMOUNT" in reasons["amount"]
    )
    assert reasons["json"].startswith("malformed JSON")
    assert "INSIGHT_ORDER_MAX_ITEMS" in reasons["items"]
    assert reasons["huge"].startswith("too large") and "INSIGHT_ORDER_MAX_ENTRY_BYTES" in reasons["huge"]
    assert reasons["utf8"].startswith("not UTF-8")
    assert reasons["missing"].startswith("missing field 'order'")
    # The raw entry is kept (truncated), bytes that are not UTF-8 escaped.
    assert "\\\\xff" in dead[bad_ids["utf8"]]["raw"] or "\\xff" in dead[bad_ids["utf8"]]["raw"]
    assert len(dead[bad_ids["huge"]]["raw"]) <= InsightSettings().dead_letter_raw_chars
    assert all(d["consumer"] == "c1" for d in dead.values())
    assert store.dead_letter_count(c.dead_letter_stream) == 7


def test_the_dead_letter_stream_is_capped(store: InsightStore) -> None:
    c = consumer(store, batch=100, settings=InsightSettings(dead_letter_maxlen=10))
    for i in range(300):
        add_raw(store, {"order": order_json(order_id=f"X{i}", amount=-1)})
    c.drain()
    assert store.r.xpending(c.stream, "g")["pending"] == 0
    assert store.r.xlen(c.dead_letter_stream) < 300  # trimmed (MAXLEN ~: in whole nodes of entries)
    assert store.dead_letter_count(c.dead_letter_stream) == 300  # counted across trimming


def test_notes_are_kept_per_customer_and_quoted_in_the_segment_profile(store: InsightStore) -> None:
    c = consumer(store)
    notes = ["선물용이라 포장 부탁드려요.", "first", "second", "third\nline two"]
    publish(
        store.r,
        c.stream,
        [good(f"N{i}", "C00012", note=n) for i, n in enumerate(notes)] + [good("N9", "C00013")],
    )
    c.drain()
    kept = store.notes()
    mine = kept[kept["customer_id"] == "C00012"]
    assert len(mine) == 3  # the last few (INSIGHT_NOTES_PER_CUSTOMER)
    assert set(mine["note"]) <= set(notes[1:3]) | {"third line two"}
    assert "C00013" not in set(kept["customer_id"])
    snap = store.snapshot()
    segment = snap.customers.loc["C00012", "segment"]
    text = profile_document(snap, str(segment)).text
    assert NOTES_HEADER in text
    assert json.dumps(str(mine.iloc[0]["note"]), ensure_ascii=False) in text


class CrashingOnce(OrderConsumer):
    """Its loop raises once, after the first read."""

    crashes = 0

    def read(self, entry_id: str = ">", block_ms: int | None = None) -> list[Entry]:
        if entry_id == ">" and self.crashes == 0:
            self.crashes += 1
            raise RuntimeError("boom at redis://:s3cret@10.0.0.5:6379/0")
        return super().read(entry_id, block_ms)


def wait_for(check: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_consumer_that_raises_in_its_loop_is_restarted_and_says_so(store: InsightStore) -> None:
    before = int(store.customer("C00014")["frequency"])
    c = consumer(store, "sup", cls=CrashingOnce)
    supervisor = SupervisedConsumer(c, backoff_s=0.05).start()
    try:
        publish(store.r, c.stream, [good("R1", "C00014")])
        wait_for(lambda: int(store.customer("C00014")["frequency"]) == before + 1)
        status = supervisor.status()
        assert status["state"] == "running" and status["restarts"] == 1
        assert status["last_error"] == "unexpected error in the consumer"  # short; no address, no secret
        reported = store.health()["sup"]
        assert reported["restarts"] == 1 and "s3cret" not in json.dumps(reported)
    finally:
        supervisor.stop()
    assert supervisor.status()["state"] == "stopped"


class PoisonedBy(OrderConsumer):
    """A bug that stops the consumer whenever a batch holds order P1 (not a data check: a crash)."""

    def process(self, entries: Sequence[Entry], *, ack: bool = True) -> Any:
        if any(b'"P1"' in bytes(f.get(b"order", b"")) for _, f in entries):
            raise RuntimeError("bug")
        return super().process(entries, ack=ack)


def test_an_entry_that_keeps_stopping_the_consumer_is_dead_lettered_and_holds_no_other(
    store: InsightStore,
) -> None:
    before = int(store.customer("C00015")["frequency"])
    c = consumer(store, "poisoned", cls=PoisonedBy, settings=InsightSettings(max_deliveries=2))
    publish(store.r, c.stream, [good("P0", "C00015"), good("P1", "C00015"), good("P2", "C00015")])
    supervisor = SupervisedConsumer(c, backoff_s=0.05, backoff_max_s=0.1).start()
    try:
        wait_for(lambda: store.dead_letter_count(c.dead_letter_stream) == 1)
        wait_for(lambda: int(store.customer("C00015")["frequency"]) == before + 2)
        wait_for(lambda: store.r.xpending(c.stream, "g")["pending"] == 0)
    finally:
        supervisor.stop()
    (dead,) = store.dead_letters(c.dead_letter_stream)
    assert "P1" in dead["raw"] and dead["reason"].startswith("processing failed 2 times")
    assert supervisor.status()["restarts"] >= 2


def test_redis_refusing_one_order_holds_no_other(store: InsightStore) -> None:
    """A customer key of the wrong type makes Redis refuse that order's script; the rest apply."""
    store.r.set(store.key("c", "WRONGTYPE1"), "x")
    before = int(store.customer("C00016")["frequency"])
    c = consumer(store)
    publish(store.r, c.stream, [good("W1", "WRONGTYPE1"), good("W2", "C00016")])
    c.drain()
    assert int(store.customer("C00016")["frequency"]) == before + 1
    (dead,) = store.dead_letters(c.dead_letter_stream)
    assert dead["reason"].startswith("refused by Redis") and "W1" in dead["raw"]
    assert store.r.xpending(c.stream, "g")["pending"] == 0


def test_an_entry_deleted_while_pending_is_acknowledged(store: InsightStore) -> None:
    c = consumer(store, batch=10)
    publish(store.r, c.stream, [good("D1", "C00017")])
    c.read()  # delivered, never acknowledged (the consumer died)
    store.r.xtrim(c.stream, maxlen=0)
    again = consumer(store, batch=10)
    again.drain()
    assert store.r.xpending(c.stream, "g")["pending"] == 0


def test_a_lost_connection_is_not_blamed_on_the_entry(store: InsightStore, redis_server: LocalRedis) -> None:
    c = consumer(store)
    publish(store.r, c.stream, [good("L1", "C00018")])
    entries = c.read()
    dead_store = InsightStore(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5), store.p)
    c.store, c.r = dead_store, dead_store.r
    with pytest.raises(redis.ConnectionError):
        c.process(entries)
    c.store, c.r = store, store.r
    assert store.dead_letter_count(c.dead_letter_stream) == 0
    assert store.r.xpending(c.stream, "g")["pending"] == 1  # retried after a restart


def test_a_redis_restart_under_a_running_consumer_loses_and_repeats_no_order(tmp_path: Any) -> None:
    """Redis stopped and started again (its data kept on disk, the same port) while the live consumer
    runs: the consumer reconnects (restarted by its supervisor if it has to), every order published
    before and after is applied exactly once, and the status says running again."""
    server = LocalRedis(data_dir=tmp_path / "redis", password="restart-" + uuid.uuid4().hex[:8])
    with server:
        s = InsightStore.from_url(server.url, "rr")
        s.load_history(generate_history(120, 1000, seed=5, anchor=ANCHOR))
        before = int(s.customer("C00016")["frequency"])
        c = consumer(s, "live")
        supervisor = SupervisedConsumer(c, backoff_s=0.05, backoff_max_s=0.2).start()
        try:
            publish(s.r, c.stream, [good("RS1", "C00016")])
            wait_for(lambda: int(s.customer("C00016")["frequency"]) == before + 1)

            server.stop()
            time.sleep(0.5)  # the consumer's reads fail meanwhile
            server.start()

            publish(s.r, c.stream, [good("RS2", "C00016"), good("RS3", "C00016")])
            wait_for(lambda: int(s.customer("C00016")["frequency"]) == before + 3, timeout_s=60)
            wait_for(lambda: s.r.xpending(c.stream, "g")["pending"] == 0)
            time.sleep(0.5)  # a repeated order would show up here
            assert int(s.customer("C00016")["frequency"]) == before + 3
            assert supervisor.status()["state"] == "running"
            assert server.password not in json.dumps(supervisor.status())
        finally:
            supervisor.stop()
