"""Where live customer data is read from: one source object per owner, never a process global.

- RedisSource: the live state in a Redis (loaded from the generated history on first use when it
  is empty; consumers started with `personagraph insight consume`).
- HistorySource: the generated history, read statically.
- LiveDemoSource: an in-process Redis (LocalRedis) with a consumer and a simulator on a simulated
  clock (INSIGHT_SIM_SPEED; the history is followed by INSIGHT_SIM_WARMUP_DAYS of simulated orders
  first, so the live part starts from the simulator's steady state), so the app's insight tab is
  live with no setup. INSIGHT_SIM_SCENARIO=shift runs the order-mix shift the drift report catches.
- FixedSource: one given snapshot (tests).

The insight service owns one source and hands it to the insight_qa graph in the run's context.
`configured_source()` picks one from the settings (INSIGHT_REDIS_URL, else REDIS_URL, else the
history); `default_source()` is the one a run without a source reads (Studio, `langgraph dev`).
"""

from __future__ import annotations

import atexit
import threading
import time
from functools import cache
from typing import Any

import redis

from personagraph.insight.consumer import OrderConsumer, SupervisedConsumer
from personagraph.insight.orders import DAY, History, load_or_generate
from personagraph.insight.segments import SegmentModel, fit_segment_model, rfm_raw
from personagraph.insight.settings import InsightSettings, get_insight_settings
from personagraph.insight.simulator import MixShift, OrderFactory, SimClock, shift_scenario, simulate
from personagraph.insight.store import InsightStore, Snapshot, snapshot_from_history
from personagraph.serving.redact import redact_url
from personagraph.serving.settings import get_settings


class RedisNotConfiguredError(LookupError):
    """An operation needs Redis and no URL was given or configured."""


class InsightSource:
    """Snapshots of the customer state, cached for `ttl_s` seconds."""

    mode = "history"

    def __init__(self, settings: InsightSettings | None = None):
        self.settings = settings or get_insight_settings()
        self._cached: tuple[float, Snapshot] | None = None
        self._lock = threading.Lock()

    def read(self) -> Snapshot:  # pragma: no cover - overridden
        raise NotImplementedError

    def snapshot(self, fresh: bool = False) -> Snapshot:
        with self._lock:
            now = time.monotonic()
            if not fresh and self._cached and now - self._cached[0] <= self.settings.snapshot_ttl_s:
                return self._cached[1]
            snap = self.read()
            self._cached = (now, snap)
            return snap

    def segment_sizes(self) -> dict[str, int]:
        """Customers per segment."""
        counts = self.snapshot().customers["segment"].value_counts()
        return {str(k): int(v) for k, v in counts.items()}

    def orders_applied(self) -> int | None:
        """Live orders applied so far; None for a source without a live stream."""
        return None

    def history(self) -> History:
        s = self.settings
        return load_or_generate(s.customers, s.orders, seed=s.seed)

    def model(self) -> SegmentModel | None:
        return None

    def consumer_status(self) -> dict[str, Any] | None:
        """The live consumers' health and the dead-letter count; None for a source without a stream."""
        return None

    def segment_status(self) -> dict[str, Any] | None:
        """The segment model's state: version, the clock, the last drift and whether a refit is held,
        the latest refits; None for a source without live refits."""
        return None

    def size_history(self) -> list[dict[str, Any]]:
        """Recorded segment sizes, oldest first ({"sim_ts", "real_ts", "event", "sizes"})."""
        return []

    def accept_drift(self) -> SegmentModel | None:
        """Swap in the refit held as drift; None when none is held (or no live refits)."""
        return None

    def describe(self) -> str:
        return self.mode

    def close(self) -> None:
        pass


class FixedSource(InsightSource):
    mode = "fixed"

    def __init__(self, snap: Snapshot):
        super().__init__()
        self._snap = snap

    def read(self) -> Snapshot:
        return self._snap


class HistorySource(InsightSource):
    """The generated history, segmented once with a GMM fitted on it (as of the history's end)."""

    mode = "history"

    def __init__(self, settings: InsightSettings | None = None):
        super().__init__(settings)
        self._snap: Snapshot | None = None
        self._model: SegmentModel | None = None

    def read(self) -> Snapshot:
        if self._snap is None:
            h = self.history()
            agg = h.orders.groupby("customer_id").agg(
                last=("ts", "max"), f=("ts", "size"), m=("amount", "sum")
            )
            raw = rfm_raw(agg["last"].to_numpy(), agg["f"].to_numpy(), agg["m"].to_numpy(), h.anchor)
            self._model = fit_segment_model(raw, components=self.settings.components, seed=self.settings.seed)
            self._snap = snapshot_from_history(h, self._model)
        return self._snap

    def model(self) -> SegmentModel | None:
        self.read()
        return self._model

    def describe(self) -> str:
        s = self.settings
        return (
            f"static history ({s.customers:,} customers, {s.orders:,} orders, seed {s.seed}); no live orders"
        )


class RedisSource(InsightSource):
    """The live state in Redis; an empty Redis is loaded from the history and segmented first."""

    mode = "redis"

    def __init__(self, url: str, settings: InsightSettings | None = None):
        super().__init__(settings)
        self.url = url  # may hold a password: show `redact_url(url)`, never the URL itself
        self.store = InsightStore.from_url(url, self.settings.prefix, self.settings.notes_per_customer)
        self._bootstrapped = False

    def bootstrap(self) -> None:
        if self._bootstrapped:
            return
        if not self.store.r.scard(self.store.key("customers")):
            self.store.load_history(self.history())
        consumer = self.consumer("bootstrap")
        consumer.ensure_group()
        consumer.ensure_model()
        self._bootstrapped = True

    def reload_history(self) -> int:
        """Replace the live state with the history, refit the model and score every customer."""
        clock = self.store.clock()  # a simulated clock keeps running: the simulator stamps by it
        loaded = self.store.load_history(self.history())
        self.store.set_clock(clock)
        self.store.r.delete(self.store.key("model"), self.store.key("model", "version"))
        self._bootstrapped = False
        self.bootstrap()
        return loaded

    def consumer(self, name: str, **kwargs: Any) -> OrderConsumer:
        s = self.settings
        return OrderConsumer(
            self.store,
            stream=s.stream,
            group=s.group,
            name=name,
            components=s.components,
            settings=s,
            **kwargs,
        )

    @property
    def dead_letter_stream(self) -> str:
        return self.settings.dead_letter_stream or f"{self.settings.stream}:dead"

    def consumer_status(self) -> dict[str, Any] | None:
        """Every supervised consumer that reported to this Redis, the entries dead-lettered so far and
        the segments' state (`segments`: see segment_status)."""
        return {
            "consumers": sorted(self.store.health().values(), key=lambda h: str(h.get("name", ""))),
            "dead_letters": self.store.dead_letter_count(self.dead_letter_stream),
            "dead_letter_stream": self.dead_letter_stream,
            "segments": self.segment_status(),
        }

    def segment_status(self) -> dict[str, Any] | None:
        clock = self.store.clock()
        return {
            "model_version": self.store.model_version(),
            "clock": None if clock is None else {**clock.as_dict(), "now": clock.now()},
            "now": self.store.now(),
            "drift": self.store.drift(),
            "held": self.store.r.exists(self.store.key("model", "held")) > 0,  # type: ignore[operator]
            "refits": self.store.refits(5),
        }

    def size_history(self) -> list[dict[str, Any]]:
        return self.store.size_records()

    def accept_drift(self) -> SegmentModel | None:
        self.bootstrap()
        return self.consumer("accept-drift").accept_held()

    def stream_lag(self) -> dict[str, int] | None:
        """The consumer group's backlog (XINFO GROUPS): `lag`, entries not yet delivered to it, and
        `pending`, delivered but not acknowledged; None while the group does not exist (for /metrics)."""
        try:
            groups = self.store.r.xinfo_groups(self.settings.stream)
        except redis.ResponseError:  # no such stream yet
            return None
        for group in groups:  # type: ignore[union-attr]
            if str(group.get("name")) == self.settings.group:
                return {"lag": int(group.get("lag") or 0), "pending": int(group.get("pending") or 0)}
        return None

    def order_factory(self, seed: int) -> OrderFactory:
        """Simulated orders from the history's customers, each buying like its archetype."""
        h = self.history()
        return OrderFactory(h.customers["customer_id"].tolist(), h.customers["archetype"].tolist(), seed=seed)

    def read(self) -> Snapshot:
        self.bootstrap()
        return self.store.snapshot()

    def segment_sizes(self) -> dict[str, int]:
        # Kept up to date by the consumers: no snapshot needed.
        self.bootstrap()
        return self.store.segment_sizes()

    def orders_applied(self) -> int | None:
        return self.store.processed_count()

    def model(self) -> SegmentModel | None:
        return self.store.load_model()

    def describe(self) -> str:
        return f"live Redis at {redact_url(self.url)} (stream {self.settings.stream})"


class LiveDemoSource(RedisSource):
    """An in-process Redis with one consumer (refitting every simulated day) and a simulator on a
    simulated clock, starting from the history plus a warm-up of simulated orders."""

    mode = "live-demo"

    def __init__(self, rate: float = 20.0, settings: InsightSettings | None = None):
        from personagraph.memory.redis_server import LocalRedis

        self.server = LocalRedis().start()
        # The demo's redis-server is a child process: stop it when the app exits.
        atexit.register(self.server.stop)
        super().__init__(self.server.url, settings)
        self.rate = rate  # kept for callers; with the simulated clock the rate follows the clock's speed
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._supervisor: SupervisedConsumer | None = None
        self.factory: OrderFactory | None = None
        self._resume_at: float | None = None  # the warm-up's end: the paused clock starts there

    def live_factory(self) -> OrderFactory:
        """The simulator's customers at the history's rates (and the shift scenario when set)."""
        if self.factory is None:
            s = self.settings
            h = self.history()
            start = h.anchor + s.sim_warmup_days * DAY
            shift: MixShift | None = None
            if s.sim_scenario == "shift":
                shift = shift_scenario(start + s.sim_shift_after_days * DAY)
            self.factory = OrderFactory.from_history(h, seed=1, shift=shift)
        return self.factory

    def bootstrap(self) -> None:
        """Load the history, apply the warm-up orders, start the simulated clock, then fit the model."""
        if self._bootstrapped:
            return
        if not self.store.r.scard(self.store.key("customers")):
            h = self.history()
            self.store.load_history(h)
            start = h.anchor + self.settings.sim_warmup_days * DAY
            warmup = self.live_factory().orders_between(h.anchor, start)
            for i in range(0, len(warmup), 500):
                self.store.apply_orders(warmup[i : i + 500], consumer="warm-up")
            # Paused while the model is fitted (seconds, i.e. simulated days at a high speed, with no
            # orders: everyone would age at once); `start` runs it from the warm-up's end.
            self.store.set_clock(SimClock(origin_real=time.time(), origin_sim=start, speed=1e-9))
            self._resume_at = start
        super().bootstrap()

    def start(self) -> LiveDemoSource:
        self.bootstrap()
        factory = self.live_factory()
        if self._resume_at is not None:
            self.store.set_clock(SimClock.starting_at(self._resume_at, self.settings.sim_speed))
            self._resume_at = None
        clock = self.store.clock() or SimClock.starting_at(self.history().anchor, self.settings.sim_speed)
        # Supervised: a consumer that dies is restarted (with backoff) and the tab says so.
        refit_s = self.settings.sim_refit_days * DAY / clock.speed
        consumer = self.consumer("demo", refit_interval_s=refit_s)
        self._supervisor = SupervisedConsumer(consumer).start()
        self._threads = [
            threading.Thread(target=simulate, args=(self.store.r, self.settings.stream, factory),
                             kwargs={"stop": self._stop, "clock": clock}, name="insight-simulator",
                             daemon=True),
        ]  # fmt: skip
        for t in self._threads:
            t.start()
        return self

    def consumer_status(self) -> dict[str, Any] | None:
        """The in-process consumer's own view (it knows when its thread died), with Redis' counts."""
        try:
            status = super().consumer_status() or {}
        except redis.RedisError:  # the demo's Redis is down: the supervisor still knows its state
            status = {"consumers": [], "dead_letters": None, "dead_letter_stream": self.dead_letter_stream}
        if self._supervisor is not None:
            mine = self._supervisor.status()
            others = [h for h in status.get("consumers", []) if h.get("name") != mine["name"]]
            status["consumers"] = [mine, *others]
        return status

    def describe(self) -> str:
        s = getattr(self, "settings", None) or get_insight_settings()
        scenario = "" if s.sim_scenario == "steady" else f", scenario {s.sim_scenario}"
        return (f"in-process demo Redis ({redact_url(self.url)}): simulated orders on a simulated clock "
                f"({s.sim_speed:g}× real time{scenario}), live consumer")  # fmt: skip

    def close(self) -> None:
        self._stop.set()
        if self._supervisor is not None:
            self._supervisor.stop()
        for t in self._threads:
            t.join(timeout=5)
        self.server.stop()


def configured_redis_url(redis_url: str | None = None) -> str | None:
    """The given URL, else INSIGHT_REDIS_URL, else REDIS_URL (None: no Redis)."""
    return redis_url or get_insight_settings().redis_url or get_settings().redis_url


def redis_source(redis_url: str | None = None) -> RedisSource:
    """The live state in the given or configured Redis; raises when there is none."""
    url = configured_redis_url(redis_url)
    if not url:
        raise RedisNotConfiguredError("no Redis configured: pass --redis-url, or set INSIGHT_REDIS_URL or "
                                      "REDIS_URL (`personagraph redis` runs a local one)")  # fmt: skip
    return RedisSource(url)


def configured_source(redis_url: str | None = None) -> InsightSource:
    """The given or configured Redis, else the static history."""
    url = configured_redis_url(redis_url)
    return RedisSource(url) if url else HistorySource()


def live_source(rate: float = 20.0) -> InsightSource:
    """The configured Redis; else the in-process demo at `rate` orders/s; else the static history."""
    url = configured_redis_url()
    if url:
        return RedisSource(url)
    try:
        return LiveDemoSource(rate=rate).start()
    except Exception:  # noqa: BLE001 - no Redis binary: the static history still answers questions
        return HistorySource()


@cache
def default_source() -> InsightSource:
    """The source of a run whose context names none (Studio, `langgraph dev`).

    Built from the settings once per process and never replaced, so the history's segment model is
    fitted once, not on every run.
    """
    return configured_source()
