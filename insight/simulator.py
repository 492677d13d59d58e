"""Order simulator: publishes orders to a Redis Stream (XADD), seedable, on a simulated clock.

Existing customers buy with their archetype's rate, basket size, price level and channel mix; a
share of orders comes from brand-new customers. Each entry carries the order as JSON and the
publish time, from which the consumer measures order -> visible-in-segment latency. A few orders
carry a customer's note (delivery requests, gift wrapping, a word on a product), in Korean or English.

Simulated clock (issue 21): stamping live orders with the wall clock at tens of orders a second
over a few thousand customers compresses years of shopping into minutes, so every buyer looks like
a daily shopper. With a `SimClock` the orders carry simulated times that advance `speed` times
faster than real time (3,600 = one simulated hour per real second), and each customer buys at the
rate its archetype bought at over the history's last 30 days (`history_rates`): the number of
orders follows from the clock, not from an orders-per-second setting. A `MixShift` changes the
order mix from a set simulated day (the scenario the drift report must catch).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import redis

from personagraph.insight.orders import (
    ARCHETYPE_INDEX,
    ARCHETYPES,
    CATALOGUE,
    CHANNELS,
    DAY,
    PRICES,
    History,
    Order,
    OrderItem,
    product_weights,
)

# Relative live rates of the archetypes when no history rates are given (the old default).
DEFAULT_LIVE_RATE = {"vip": 12.0, "loyal": 5.0, "regular": 2.0, "at_risk": 0.6, "dormant": 0.15, "new": 1.5}


SIM_SCENARIOS = ("steady", "shift")


def check_simulation_options(speed: float | None, scenario: str, shift_after_days: float) -> None:
    """ValueError naming the field when a simulation's options do not go together."""
    if scenario not in SIM_SCENARIOS:
        raise ValueError(f"scenario: {scenario!r} is not allowed; allowed: {', '.join(SIM_SCENARIOS)}")
    if speed is None and scenario != "steady":
        raise ValueError("scenario: a scenario runs on the simulated clock; give speed too")
    if speed is not None and not speed > 0:
        raise ValueError(f"speed: {speed} is not allowed; give simulated seconds per real second > 0")
    if shift_after_days < 0:
        raise ValueError(f"shift_after_days: {shift_after_days} is not allowed; give 0 or more")


@dataclass(frozen=True)
class SimClock:
    """Simulated time: `origin_sim + (real now - origin_real) * speed` (speed 1 = the wall clock).

    Shared through Redis (InsightStore.set_clock), so the simulator, every consumer and the app
    read the same simulated "now"."""

    origin_real: float
    origin_sim: float
    speed: float = 1.0

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ValueError(f"speed must be > 0 simulated seconds per real second, got {self.speed}")

    @classmethod
    def starting_at(cls, sim_start: float, speed: float) -> SimClock:
        return cls(origin_real=time.time(), origin_sim=sim_start, speed=speed)

    def at(self, real: float) -> float:
        return self.origin_sim + (real - self.origin_real) * self.speed

    def now(self) -> float:
        return self.at(time.time())

    def as_dict(self) -> dict[str, float]:
        return {"origin_real": self.origin_real, "origin_sim": self.origin_sim, "speed": self.speed}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SimClock:
        return cls(float(data["origin_real"]), float(data["origin_sim"]), float(data["speed"]))


@dataclass(frozen=True)
class MixShift:
    """From `at` (simulated Unix seconds) the order mix changes: customers of an archetype in `rates`
    buy that many orders a day, each archetype buys `factors[archetype]` times as often, and new
    customers arrive `new_factor` times as often. `shift_scenario` is the set one."""

    at: float
    factors: Mapping[str, float] = field(default_factory=dict)
    new_factor: float = 1.0
    rates: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted((set(self.factors) | set(self.rates)) - set(ARCHETYPE_INDEX))
        if unknown:
            raise ValueError(
                f"factors/rates: unknown archetype(s) {unknown}; allowed: {', '.join(ARCHETYPE_INDEX)}"
            )
        if any(f < 0 for f in [*self.factors.values(), *self.rates.values()]) or self.new_factor < 0:
            raise ValueError("factors, rates and new_factor must be >= 0")


def shift_scenario(at: float) -> MixShift:
    """The set scenario: a win-back campaign brings at-risk customers back (0.1 orders a day each, like
    a loyal customer) while VIP and loyal customers almost stop buying (a competitor's offer). Recency
    falls the moment a customer buys, so the returning customers move between segments within days:
    the drift report must say so within a few refits."""
    return MixShift(at=at, factors={"vip": 0.05, "loyal": 0.1}, rates={"at_risk": 0.1})


@dataclass(frozen=True)
class HistoryRates:
    """Orders per simulated day: per existing customer (its archetype's recent rate) and new-customer
    arrivals."""

    customer_ids: list[str]
    archetypes: list[str]
    per_customer: np.ndarray  # orders per simulated day, per customer (its archetype's rate)
    new_per_day: float  # first orders of new customers per simulated day
    new_customer_rate: float  # orders per day of a customer who arrived during the run
    by_archetype: dict[str, float]  # mean orders per customer per day, per archetype

    @property
    def orders_per_day(self) -> float:
        return float(self.per_customer.sum()) + self.new_per_day


def history_rates(history: History, window_days: float = 30.0) -> HistoryRates:
    """Each archetype's orders per customer per day over the history's last `window_days`, the rate of
    each of its customers (not scaled by their own past: the history's last-order times do not depend
    on how much a customer bought, so scaling would move heavy buyers' recency towards zero in the
    first simulated days, a drift of the simulation rather than of the shop); new customers arrive
    as often as first orders did in the window."""
    if window_days <= 0:
        raise ValueError(f"window_days must be > 0, got {window_days}")
    o = history.orders
    start = history.anchor - window_days * DAY
    customers = history.customers.set_index("customer_id")
    recent = o[o["ts"] >= start].merge(customers, left_on="customer_id", right_index=True)
    recent_by_arche = recent.groupby("archetype").size()
    by_archetype: dict[str, float] = {}
    per_customer = np.zeros(len(customers))
    arche = customers["archetype"].to_numpy()
    for name in ARCHETYPE_INDEX:
        mask = arche == name
        if not mask.any():
            by_archetype[name] = 0.0
            continue
        rate = float(recent_by_arche.get(name, 0)) / float(mask.sum()) / window_days
        by_archetype[name] = rate
        per_customer[mask] = rate
    first = o.groupby("customer_id")["ts"].min()
    new_per_day = float((first >= start).sum()) / window_days
    return HistoryRates(
        customer_ids=[str(c) for c in customers.index], archetypes=[str(a) for a in arche],
        per_customer=per_customer, new_per_day=new_per_day,
        new_customer_rate=by_archetype.get("new", 0.0), by_archetype=by_archetype,
    )  # fmt: skip


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
    """Seeded stream of realistic orders for a known set of customers (plus new ones).

    Without `rates` each order picks a customer by fixed relative archetype rates and a share
    `new_customer_share` of orders comes from brand-new customers (the order count is the caller's).
    With `rates` (`from_history`) the customers buy at their per-day rates, new customers arrive at the
    history's rate and then buy like new customers, and `orders_between(t0, t1)` gives the orders a
    simulated interval holds (Poisson), each stamped inside it; `shift` changes the mix from its time.
    """

    def __init__(
        self,
        customers: Sequence[str],
        archetypes: Sequence[str] | None = None,
        *,
        seed: int = 1,
        new_customer_share: float = 0.03,
        run_id: str | None = None,
        note_share: float = 0.05,
        rates: HistoryRates | None = None,
        shift: MixShift | None = None,
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
        if rates is not None and len(rates.per_customer) != len(self.customers):
            raise ValueError(
                f"rates: {len(rates.per_customer)} customer rates for {len(self.customers)} customers"
            )
        self.arche = np.array([ARCHETYPE_INDEX[a] for a in names])
        self.rates = rates
        self.shift = shift
        if rates is None:
            # Live buyers: active archetypes buy much more often than dormant ones.
            w = np.array([DEFAULT_LIVE_RATE[ARCHETYPES[a].name] for a in self.arche])
        else:
            w = np.asarray(rates.per_customer, dtype=float)
        self.daily = w  # relative weights (fixed rates) or orders per simulated day (history rates)
        self.p = w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / len(w))
        self._p_cache: dict[bool, np.ndarray] = {}
        self.new_share = new_customer_share
        self.note_share = note_share
        # A stream of its own, so notes do not change the orders a seed gives.
        self.note_rng = np.random.default_rng([seed, 1])
        self.run_id = run_id or uuid.uuid4().hex[:8]
        self.count = 0
        self.new_customers = 0
        self._weights = [product_weights(a.premium) for a in ARCHETYPES]

    @classmethod
    def from_history(
        cls, history: History, *, seed: int = 1, shift: MixShift | None = None, run_id: str | None = None,
        note_share: float = 0.05, window_days: float = 30.0,
    ) -> OrderFactory:  # fmt: skip
        """Customers of a history buying at the history's recent per-archetype rates (simulated clock)."""
        rates = history_rates(history, window_days)
        return cls(rates.customer_ids, rates.archetypes, seed=seed, rates=rates, shift=shift, run_id=run_id,
                   note_share=note_share)  # fmt: skip

    # --- rates on the simulated clock ------------------------------------------------------------
    def _shifted(self, ts: float) -> bool:
        return self.shift is not None and ts >= self.shift.at

    def _customer_rates(self, shifted: bool) -> np.ndarray:
        if not shifted or self.shift is None:
            return self.daily
        base = self.daily.copy()
        for name, rate in self.shift.rates.items():
            base[self.arche == ARCHETYPE_INDEX[name]] = rate
        factor = np.array([self.shift.factors.get(a.name, 1.0) for a in ARCHETYPES])[self.arche]
        return base * factor

    def _new_per_day(self, shifted: bool) -> float:
        base = self.rates.new_per_day if self.rates is not None else 0.0
        return base * (self.shift.new_factor if shifted and self.shift is not None else 1.0)

    def orders_per_day(self, ts: float) -> float:
        """Expected orders per simulated day at simulated time `ts` (history rates only)."""
        shifted = self._shifted(ts)
        return float(self._customer_rates(shifted).sum()) + self._new_per_day(shifted)

    def _choice_p(self, shifted: bool) -> np.ndarray:
        if shifted not in self._p_cache:
            w = self._customer_rates(shifted)
            self._p_cache[shifted] = w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / len(w))
        return self._p_cache[shifted]

    def orders_between(self, t0: float, t1: float) -> list[Order]:
        """The orders placed in simulated [t0, t1): a Poisson count at the rates then, times inside it."""
        if self.rates is None:
            raise ValueError("orders_between needs history rates (OrderFactory.from_history)")
        if t1 <= t0:
            return []
        spans = [(t0, t1)]
        if self.shift is not None and t0 < self.shift.at < t1:
            spans = [(t0, self.shift.at), (self.shift.at, t1)]
        out: list[Order] = []
        for a, b in spans:
            n = int(self.rng.poisson(self.orders_per_day(a) * (b - a) / DAY))
            for ts in np.sort(self.rng.uniform(a, b, n)):
                out.append(self.next_order(float(ts)))
        return out

    def _add_customer(self, customer: str) -> None:
        """A new customer joins the pool and buys again at the new-customer rate."""
        assert self.rates is not None
        self.customers.append(customer)
        self.arche = np.append(self.arche, ARCHETYPE_INDEX["new"])
        self.daily = np.append(self.daily, self.rates.new_customer_rate)
        self._p_cache.clear()

    def next_order(self, ts: float | None = None) -> Order:
        self.count += 1
        if self.rates is not None:
            when = ts if ts is not None else time.time()
            shifted = self._shifted(when)
            new_rate = self._new_per_day(shifted)
            is_new = self.rng.random() < new_rate / max(
                new_rate + float(self._customer_rates(shifted).sum()), 1e-12
            )
        else:
            is_new = bool(self.rng.random() < self.new_share)
        if is_new:
            self.new_customers += 1
            customer = f"N{self.run_id}-{self.count:06d}"
            arche = ARCHETYPE_INDEX["new"]
            if self.rates is not None:
                self._add_customer(customer)
        else:
            p = self._choice_p(self._shifted(ts if ts is not None else time.time())) if self.rates else self.p
            i = int(self.rng.choice(len(self.customers), p=p))
            customer, arche = self.customers[i], int(self.arche[i])
        a = ARCHETYPES[arche]
        n_items = 1 + int(self.rng.poisson(a.basket - 1))
        skus = self.rng.choice(len(CATALOGUE), size=n_items, p=self._weights[arche])
        items = [
            OrderItem(sku=CATALOGUE[s].sku, qty=1 + int(self.rng.random() < 0.12), price=int(PRICES[s]))
            for s in skus
        ]
        channel = CHANNELS[int(self.rng.choice(3, p=np.array(a.channels) / sum(a.channels)))]
        return Order.model_validate(
            {"order_id": f"L{self.run_id}-{self.count:08d}", "customer_id": customer, "items": items,
             "amount": sum(i.qty * i.price for i in items), "channel": channel,
             "ts": ts if ts is not None else time.time(), "note": self.next_note()},
            context={"now": ts} if ts is not None else None,
        )  # fmt: skip

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
    clock: SimClock | None = None,
) -> int:
    """Publish until `count` orders, `seconds` elapsed or `stop` is set.

    Without a clock: `rate` orders per real second, stamped with the wall clock. With a clock (and a
    factory with history rates): each tick publishes the orders of the simulated time that passed
    since the last one (`factory.orders_between`), so the rate follows the clock's speed.
    """
    if rate <= 0:
        raise ValueError("rate must be > 0 orders per second")
    if count is None and seconds is None and stop is None:
        raise ValueError("give count, seconds or a stop event, or the simulator never ends")
    if clock is not None and factory.rates is None:
        raise ValueError("a simulated clock needs a factory with history rates (OrderFactory.from_history)")
    start = time.monotonic()
    sent = 0
    sim_last = clock.now() if clock is not None else 0.0
    while True:
        elapsed = time.monotonic() - start
        if (count is not None and sent >= count) or (seconds is not None and elapsed >= seconds):
            break
        if stop is not None and stop.is_set():
            break
        if clock is not None:
            sim_now = clock.now()
            orders = factory.orders_between(sim_last, sim_now)
            sim_last = sim_now
            if count is not None:
                orders = orders[: count - sent]
            if orders:
                publish(client, stream, orders)
                sent += len(orders)
        else:
            due = int(elapsed * rate) + 1 - sent
            if count is not None:
                due = min(due, count - sent)
            if due > 0:
                publish(client, stream, [factory.next_order() for _ in range(due)])
                sent += due
        time.sleep(tick_s)
    return sent
