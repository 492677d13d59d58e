"""The live data path on a real Redis: idempotence, restart, segment updates, two consumers."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from personagraph.insight.consumer import OrderConsumer
from personagraph.insight.orders import Order, OrderItem, generate_history
from personagraph.insight.simulator import OrderFactory, publish
from personagraph.insight.store import InsightStore
from personagraph.memory.redis_server import LocalRedis

pytestmark = pytest.mark.integration

ANCHOR = float(int(time.time() // 86400) * 86400)  # the history ends today, like a real one


@pytest.fixture
def store(redis_server: LocalRedis) -> Iterator[InsightStore]:
    """A fresh key prefix per test on the shared Redis, loaded with a small history."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    s = InsightStore.from_url(redis_server.url, prefix)
    s.load_history(generate_history(300, 4000, seed=4, anchor=ANCHOR))
    yield s
    s.clear()
    s.r.delete(f"{prefix}:orders")


def consumer(store: InsightStore, name: str, **kwargs: object) -> OrderConsumer:
    kwargs.setdefault("claim_idle_ms", 30_000)
    c = OrderConsumer(store, stream=f"{store.p}:orders", group="g", name=name, **kwargs)  # type: ignore[arg-type]
    c.ensure_group()
    c.ensure_model()
    return c


def order(order_id: str, customer: str, amount: int = 30000, ts: float = ANCHOR + 3600) -> Order:
    return Order(order_id=order_id, customer_id=customer, items=[OrderItem(sku="SK02", qty=1, price=amount)],
                 amount=amount, channel="app", ts=ts)  # fmt: skip


def test_same_order_twice_counts_once(store: InsightStore) -> None:
    before = store.customer("C00010")
    c = consumer(store, "c1")
    publish(store.r, c.stream, [order("X1", "C00010"), order("X1", "C00010")])
    assert c.drain() == 2
    after = store.customer("C00010")
    assert int(after["frequency"]) == int(before["frequency"]) + 1
    assert int(after["monetary"]) == int(before["monetary"]) + 30000
    assert (c.stats.applied, c.stats.duplicates) == (1, 1)
    assert store.r.xpending(c.stream, "g")["pending"] == 0


def test_new_order_updates_the_customers_segment(store: InsightStore) -> None:
    c = consumer(store, "c1")
    ids, raw, freq = store.rfm_rows()
    dormant = [i for i, s in zip(ids, c.scorer.model.predict(raw), strict=True) if s == "dormant"][0]
    assert store.customer(dormant)["segment"] == "dormant"
    sizes = store.segment_sizes()
    # A burst of big recent orders turns a dormant customer into a valuable, recent one.
    now = time.time()
    publish(store.r, c.stream, [order(f"B{i}", dormant, amount=400_000, ts=now) for i in range(40)])
    c.drain()
    state = store.customer(dormant)
    assert state["segment"] != "dormant" and int(state["model_version"]) == c.scorer.model.version
    new_sizes = store.segment_sizes()
    assert new_sizes["dormant"] == sizes["dormant"] - 1 and sum(new_sizes.values()) == sum(sizes.values())


def test_restart_resumes_from_the_last_acknowledged_entry(store: InsightStore) -> None:
    factory = OrderFactory(store.customer_ids(), seed=2, run_id="rs")
    orders = [factory.next_order(ts=ANCHOR + 60) for _ in range(300)]
    stream = f"{store.p}:orders"
    publish(store.r, stream, orders)
    expected = {o.customer_id: 0 for o in orders}
    for o in orders:
        expected[o.customer_id] += 1
    before = {cid: int(store.customer(cid).get("frequency", 0)) for cid in expected}

    first = consumer(store, "c1", batch=50)
    first.process(first.read())  # one batch acknowledged
    first.process(first.read(), ack=False)  # crash: applied but never acknowledged
    assert store.r.xpending(stream, "g")["pending"] == 50

    again = consumer(store, "c1", batch=50)  # restarted under the same name
    again.drain()
    assert again.stats.duplicates == 50  # the unacknowledged batch came back and was not re-counted
    assert store.r.xpending(stream, "g")["pending"] == 0
    for cid, n in expected.items():
        assert int(store.customer(cid)["frequency"]) == before[cid] + n
    assert store.processed_count() == 300


def test_dead_consumers_pending_entries_are_claimed(store: InsightStore) -> None:
    publish(store.r, f"{store.p}:orders", [order(f"D{i}", "C00020") for i in range(20)])
    before = int(store.customer("C00020")["frequency"])
    dead = consumer(store, "dead", batch=20)
    dead.process(dead.read(), ack=False)
    other = consumer(store, "other", claim_idle_ms=0)  # "dead" is idle long enough for this test
    other.drain()
    assert int(store.customer("C00020")["frequency"]) == before + 20
    assert store.r.xpending(f"{store.p}:orders", "g")["pending"] == 0


def test_two_consumers_split_the_stream_without_double_counting(store: InsightStore) -> None:
    factory = OrderFactory(store.customer_ids(), seed=3, run_id="two")
    orders = [factory.next_order(ts=ANCHOR + 60) for _ in range(1200)]
    before_total = sum(int(store.customer(c).get("frequency", 0)) for c in store.customer_ids())
    a, b = consumer(store, "a", batch=20), consumer(store, "b", batch=20)
    threads = [threading.Thread(target=x.run, kwargs={"max_seconds": 30}) for x in (a, b)]
    for t in threads:
        t.start()
    publish(store.r, f"{store.p}:orders", orders)
    deadline = time.monotonic() + 30
    while store.processed_count() < 1200 and time.monotonic() < deadline:
        time.sleep(0.05)
    for x in (a, b):
        x.stop()
    for t in threads:
        t.join()
    counts = store.consumer_counts()
    assert counts.get("a", 0) > 0 and counts.get("b", 0) > 0
    assert counts["a"] + counts["b"] == 1200
    assert a.stats.read + b.stats.read == 1200
    after_total = sum(int(store.customer(c).get("frequency", 0)) for c in store.customer_ids())
    assert after_total == before_total + 1200
    assert sum(store.segment_sizes().values()) == len(store.customer_ids())


def test_refit_in_the_background_swaps_the_model(store: InsightStore) -> None:
    c = consumer(store, "r1", refit_interval_s=0.3)
    version = c.scorer.model.version
    publish(store.r, c.stream, [order(f"R{i}", "C00030") for i in range(5)])
    c.run(max_seconds=1.5)
    assert store.model_version() > version
    assert int(store.customer("C00030")["frequency"]) >= 5
