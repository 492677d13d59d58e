"""Stream consumer: XREADGROUP -> apply each order once -> re-score its customer -> XACK.

Exactly-once effect on the customer state with at-least-once delivery: the order id goes into the
processed set in the same Lua script that changes the RFM values. A consumer that crashes after the
update but before the ack gets the entry again (its own pending list is read first on restart, and
entries idle in a dead consumer's list are taken over with XAUTOCLAIM); the second application is a
no-op that still re-scores and acknowledges.

Refits: every `refit_interval_s` one consumer (a Redis lock decides which) refits the GMM in a
background thread, publishes it and re-scores everyone; the others pick the new model up by version.
Scoring goes on with the old model during a refit.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import redis
from pydantic import ValidationError

from personagraph.insight.orders import Order
from personagraph.insight.segments import DEFAULT_COMPONENTS, SegmentModel, SegmentScorer, rfm_raw
from personagraph.insight.store import Applied, InsightStore

Entry = tuple[str, dict[str, str]]


@dataclass
class ConsumerStats:
    read: int = 0
    applied: int = 0
    duplicates: int = 0
    invalid: int = 0
    batches: int = 0
    latencies_ms: list[float] = field(default_factory=list)


class OrderConsumer:
    """One member of the consumer group; `run()` until `stop()`, or `drain()` in tests."""

    def __init__(
        self,
        store: InsightStore,
        *,
        stream: str = "insight:orders",
        group: str = "insight-rfm",
        name: str = "c1",
        scorer: SegmentScorer | None = None,
        batch: int = 200,
        block_ms: int = 50,
        claim_idle_ms: int = 30_000,
        refit_interval_s: float | None = None,
        record_latency: bool = False,
        components: int = DEFAULT_COMPONENTS,
    ):
        self.store = store
        self.r: redis.Redis = store.r
        self.stream, self.group, self.name = stream, group, name
        self.scorer = scorer or SegmentScorer(components=components)
        self.batch, self.block_ms, self.claim_idle_ms = batch, block_ms, claim_idle_ms
        self.refit_interval_s = refit_interval_s
        self.record_latency = record_latency
        self.stats = ConsumerStats()
        self._stop = threading.Event()
        self._last_model_check = 0.0

    # --- setup --------------------------------------------------------------------------------
    def ensure_group(self) -> None:
        try:
            self.r.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def ensure_model(self) -> SegmentModel:
        """Use the published model; fit and publish one if there is none yet."""
        model = self.store.load_model()
        if model is None:
            self.refit_once(force=True)
            return self.scorer.model
        if not self.scorer.ready or self.scorer.model.version < model.version:
            self.scorer.swap(model)
        return self.scorer.model

    def sync_model(self, every_s: float = 1.0) -> None:
        now = time.monotonic()
        if now - self._last_model_check < every_s:
            return
        self._last_model_check = now
        if self.store.model_version() > self.scorer.model.version:
            model = self.store.load_model()
            if model is not None:
                self.scorer.swap(model)

    def refit_once(self, force: bool = False) -> SegmentModel | None:
        """Refit on every customer's current RFM, publish, re-score all (skipped if another holds the lock)."""
        ttl = max(1, int(self.refit_interval_s or 30))
        if not force and not self.r.set(self.store.key("refit-lock"), self.name, nx=True, ex=ttl):
            return None
        ids, raw, freq = self.store.rfm_rows()
        if len(ids) == 0:
            return None
        model = self.scorer.refit(raw)
        self.store.save_model(model)
        self.store.set_segments(zip(ids, model.predict(raw), freq, strict=True), model.version)
        return model

    # --- processing ---------------------------------------------------------------------------
    def parse(self, entries: Sequence[Entry]) -> tuple[list[Order], list[float], list[str]]:
        orders, published, bad = [], [], []
        for entry_id, fields in entries:
            try:
                orders.append(Order.model_validate_json(fields["order"]))
                published.append(float(fields.get("published_at", 0) or 0))
            except (KeyError, ValueError, ValidationError) as exc:
                bad.append(entry_id)
                self.r.rpush(self.store.key("invalid"), json.dumps({"id": entry_id, "error": str(exc)[:300]}))
        return orders, published, bad

    def process(self, entries: Sequence[Entry], *, ack: bool = True) -> list[Applied]:
        """Apply a batch, re-score each touched customer with the current model, then acknowledge."""
        if not entries:
            return []
        orders, published, bad = self.parse(entries)
        applied = self.store.apply_orders(orders, consumer=self.name) if orders else []
        latest: dict[str, Applied] = {}
        for a in applied:
            if a.customer_id not in latest or a.frequency >= latest[a.customer_id].frequency:
                latest[a.customer_id] = a
        rows = list(latest.values())
        if rows:
            raw = rfm_raw(
                np.array([a.last_ts for a in rows]), np.array([a.frequency for a in rows]),
                np.array([a.monetary for a in rows]), time.time(),
            )  # fmt: skip
            model = self.scorer.model
            segments = model.predict(raw)
            self.store.set_segments(
                ((a.customer_id, s, a.frequency) for a, s in zip(rows, segments, strict=True)), model.version
            )
        visible_at = time.time()
        self.stats.read += len(entries)
        self.stats.applied += sum(a.fresh for a in applied)
        self.stats.duplicates += sum(not a.fresh for a in applied)
        self.stats.invalid += len(bad)
        self.stats.batches += 1
        if not ack:
            return applied
        pipe = self.r.pipeline(transaction=False)
        pipe.xack(self.stream, self.group, *[entry_id for entry_id, _ in entries])
        if self.record_latency:
            lat = [
                (visible_at - p) * 1000.0
                for a, p in zip(applied, published, strict=True)
                if a.fresh and p > 0
            ]
            self.stats.latencies_ms += lat
            if lat:
                pipe.rpush(self.store.key("latency"), *[f"{x:.3f}" for x in lat])
        pipe.execute()
        return applied

    def read(self, entry_id: str = ">", block_ms: int | None = None) -> list[Entry]:
        reply: Any = self.r.xreadgroup(
            self.group, self.name, {self.stream: entry_id}, count=self.batch,
            block=self.block_ms if block_ms is None else block_ms,
        )  # fmt: skip
        if not reply:
            return []
        return [(eid, fields) for eid, fields in reply[0][1] if fields]

    def recover(self) -> int:
        """Re-process this consumer's own pending entries, then take over idle ones of dead consumers."""
        done = 0
        while True:
            pending = self.read("0", block_ms=None)
            if not pending:
                break
            self.process(pending)
            done += len(pending)
        start = "0-0"
        while True:
            reply: Any = self.r.xautoclaim(
                self.stream, self.group, self.name, self.claim_idle_ms, start_id=start, count=self.batch
            )
            start, claimed = reply[0], [(eid, f) for eid, f in reply[1] if f]
            if claimed:
                self.process(claimed)
                done += len(claimed)
            if start in ("0-0", b"0-0") or not claimed:
                break
        return done

    def drain(self, idle_reads: int = 2) -> int:
        """Process until `idle_reads` reads in a row find nothing (tests, batch use); returns entries read."""
        self.ensure_group()
        self.ensure_model()
        total = self.recover()
        empty = 0
        while empty < idle_reads:
            entries = self.read()
            if not entries:
                empty += 1
                continue
            empty = 0
            self.process(entries)
            total += len(entries)
        return total

    def run(self, max_seconds: float | None = None) -> ConsumerStats:
        """Consume until `stop()` (or for max_seconds); refits in the background when configured."""
        self.ensure_group()
        self.ensure_model()
        self.recover()
        if self.refit_interval_s:

            def load() -> np.ndarray | None:
                if not self.r.set(self.store.key("refit-lock"), self.name, nx=True,
                                  ex=max(1, int(self.refit_interval_s or 1))):  # fmt: skip
                    return None
                _, raw, _ = self.store.rfm_rows()
                return raw if len(raw) else None

            def publish(model: SegmentModel) -> None:
                self.store.save_model(model)
                ids, raw, freq = self.store.rfm_rows()  # fresh rows: customers may have changed meanwhile
                self.store.set_segments(zip(ids, model.predict(raw), freq, strict=True), model.version)

            self.scorer.start_refitting(load, self.refit_interval_s, publish)
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        try:
            while not self._stop.is_set() and (deadline is None or time.monotonic() < deadline):
                self.sync_model()
                entries = self.read()
                if entries:
                    self.process(entries)
        finally:
            self.scorer.stop()
        return self.stats

    def stop(self) -> None:
        self._stop.set()
