"""Order simulator: publishes orders to a Redis Stream (XADD) at a configurable rate, seedable.

Existing customers buy with their archetype's rate, basket size, price level and channel mix; a
share of orders comes from brand-new customers. Each entry carries the order as JSON and the
publish time, from which the consumer measures order -> visible-in-segment latency. A few orders
carry a customer's note (delivery requests, gift wrapping, a word on a product), in Korean or English.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence

import numpy as np
import redis

from personagraph.insight.orders import (
    ARCHETYPE_INDEX,
    ARCHETYPES,
    CATALOGUE,
    CHANNELS,
    PRICES,
    Order,
    OrderItem,
    product_weights,
)

# Notes customers leave on orders (a small fixed list; the simulator picks one now and then).
CUSTOMER_NOTES: tuple[str, ...] = (
    "부재 시 경비실에 맡겨 주세요.",
    "선물용이라 예쁘게 포장 부탁드려요.",
    "지난번 세럼이 잘 맞아서 재구매합니다.",
    "배송 전에 문자 한 번 주세요.",
    "민감성 피부라 샘플은 순한 제품으로 부탁드려요.",
    "향이 너무 강하지 않았으면 좋겠어요.",
    "빠른 배송 항상 감사합니다!",
    "문 앞에 놓아 주세요.",
    "Please leave the parcel at the front door.",
    "It's a gift, please don't include the receipt.",
    "Loved the toner last time, reordering!",
    "Could you add a sample for sensitive skin?",
    "Please deliver after 6 pm if possible.",
    "The last box arrived dented, please pack carefully.",
)


class OrderFactory:
    """Seeded stream of realistic orders for a known set of customers (plus new ones)."""

    def __init__(
        self,
        customers: Sequence[str],
        archetypes: Sequence[str] | None = None,
        *,
        seed: int = 1,
        new_customer_share: float = 0.03,
        run_id: str | None = None,
        note_share: float = 0.05,
    ):
        if not customers:
            raise ValueError("customers: need at least one existing customer id")
        if not 0.0 <= new_customer_share <= 1.0:
            raise ValueError("new_customer_share must be between 0 and 1")
        if not 0.0 <= note_share <= 1.0:
            raise ValueError("note_share must be between 0 and 1")
        self.rng = np.random.default_rng(seed)
        self.customers = list(customers)
        names = list(archetypes) if archetypes is not None else ["regular"] * len(self.customers)
        unknown = sorted({a for a in names if a not in ARCHETYPE_INDEX})
        if unknown:
            raise ValueError(f"unknown archetype(s) {unknown}; allowed: {', '.join(ARCHETYPE_INDEX)}")
        self.arche = np.array([ARCHETYPE_INDEX[a] for a in names])
        # Live buyers: active archetypes buy much more often than dormant ones.
        live_rate = {"vip": 12.0, "loyal": 5.0, "regular": 2.0, "at_risk": 0.6, "dormant": 0.15, "new": 1.5}
        w = np.array([live_rate[ARCHETYPES[a].name] for a in self.arche])
        self.p = w / w.sum()
        self.new_share = new_customer_share
        self.note_share = note_share
        # A stream of its own, so notes do not change the orders a seed gives.
        self.note_rng = np.random.default_rng([seed, 1])
        self.run_id = run_id or uuid.uuid4().hex[:8]
        self.count = 0
        self._weights = [product_weights(a.premium) for a in ARCHETYPES]

    def next_order(self, ts: float | None = None) -> Order:
        self.count += 1
        if self.rng.random() < self.new_share:
            customer = f"N{self.run_id}-{self.count:06d}"
            arche = ARCHETYPE_INDEX["new"]
        else:
            i = int(self.rng.choice(len(self.customers), p=self.p))
            customer, arche = self.customers[i], int(self.arche[i])
        a = ARCHETYPES[arche]
        n_items = 1 + int(self.rng.poisson(a.basket - 1))
        skus = self.rng.choice(len(CATALOGUE), size=n_items, p=self._weights[arche])
        items = [
            OrderItem(sku=CATALOGUE[s].sku, qty=1 + int(self.rng.random() < 0.12), price=int(PRICES[s]))
            for s in skus
        ]
        channel = CHANNELS[int(self.rng.choice(3, p=np.array(a.channels) / sum(a.channels)))]
        return Order(
            order_id=f"L{self.run_id}-{self.count:08d}",
            customer_id=customer,
            items=items,
            amount=sum(i.qty * i.price for i in items),
            channel=channel,
            ts=ts if ts is not None else time.time(),
            note=self.next_note(),
        )

    def next_note(self) -> str | None:
        if self.note_rng.random() >= self.note_share:
            return None
        return CUSTOMER_NOTES[int(self.note_rng.integers(len(CUSTOMER_NOTES)))]


def publish(
    client: redis.Redis, stream: str, orders: Sequence[Order], maxlen: int | None = 200_000
) -> list[str]:
    """XADD orders (one pipeline); each entry gets the publish time."""
    pipe = client.pipeline(transaction=False)
    for order in orders:
        fields = {"order": order.model_dump_json(exclude_none=True), "published_at": repr(time.time())}
        pipe.xadd(stream, fields, maxlen=maxlen, approximate=True)  # type: ignore[arg-type]
    return [str(x) for x in pipe.execute()]


def simulate(
    client: redis.Redis,
    stream: str,
    factory: OrderFactory,
    *,
    rate: float = 200.0,
    count: int | None = None,
    seconds: float | None = None,
    stop: threading.Event | None = None,
    tick_s: float = 0.01,
) -> int:
    """Publish at `rate` orders/s until `count` orders, `seconds` elapsed or `stop` is set."""
    if rate <= 0:
        raise ValueError("rate must be > 0 orders per second")
    if count is None and seconds is None and stop is None:
        raise ValueError("give count, seconds or a stop event, or the simulator never ends")
    start = time.monotonic()
    sent = 0
    while True:
        elapsed = time.monotonic() - start
        if (count is not None and sent >= count) or (seconds is not None and elapsed >= seconds):
            break
        if stop is not None and stop.is_set():
            break
        due = int(elapsed * rate) + 1 - sent
        if count is not None:
            due = min(due, count - sent)
        if due > 0:
            publish(client, stream, [factory.next_order() for _ in range(due)])
            sent += due
        time.sleep(tick_s)
    return sent
