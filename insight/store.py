"""Live customer state in Redis.

Why Redis (not SQLite): the stream is already in Redis, several consumer processes and the UI share
the state, and a Lua script makes "mark the order processed + update the customer's RFM" one atomic
step, so a crash between the update and the XACK cannot double count (the redelivered order finds
its id in the processed set and only re-scores). SQLite keeps the generated history archive.

Keys (prefix `insight`):
    {p}:c:{customer}   hash  first_ts, last_ts, frequency, monetary, segment, model_version,
                             visible_at, last_order_id
    {p}:k:{customer}   hash  counters: p:{sku} units, ch:{channel} orders, m:{YYYY-MM}:n / :a
    {p}:customers      set   every customer id
    {p}:processed      set   order ids applied from the stream
    {p}:segsize        hash  segment -> customers
    {p}:model          str   the current SegmentModel as JSON ({p}:model:version its version)
    {p}:latency        list  order -> visible latencies in ms (only when a consumer records them)
    {p}:consumers      hash  consumer name -> orders applied
    {p}:n:{customer}   list  the customer's latest notes, newest first (JSON: order_id, ts, note)
    {p}:noted          set   customers with at least one note
    {p}:health         hash  consumer name -> its supervisor's status (JSON)
    {p}:clock          hash  the simulated clock (origin_real, origin_sim, speed); absent: wall clock
    {p}:drift          str   the last refit that reported drift (JSON; deleted when a refit is clean)
    {p}:model:held     str   a refit candidate held as drift (SegmentModel JSON), until accepted
    {p}:refits         list  the latest refit reports, newest first (JSON)
    {p}:sizes          list  segment sizes after each full re-score or refit (JSON: sim/real time, event)
Each customer hash also keeps `probs`: its probability per segment (JSON), from the model that scored it.
The dead-letter stream (the order stream + ':dead' by default) keeps rejected entries with the reason.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import redis

from personagraph.insight.orders import History, Order
from personagraph.insight.segments import SEGMENTS, SegmentModel, rfm_raw
from personagraph.insight.simulator import SimClock

APPLY_ORDER = """
-- KEYS: processed, customer hash, counters hash, customers set, consumers hash, notes list, noted set
-- ARGV: order_id, customer_id, ts, amount, channel, month, consumer, note JSON ('' = none),
--       notes kept, sku1, qty1, sku2, qty2, ...
-- Every number is checked before the first write: a script that fails half way is not undone.
if not tonumber(ARGV[3]) or not string.match(ARGV[4], '^%d+$') or not string.match(ARGV[9], '^%d+$') then
  return redis.error_reply('ERR bad order numbers')
end
for i = 11, #ARGV, 2 do
  if not string.match(ARGV[i], '^%d+$') then return redis.error_reply('ERR bad item quantity') end
end
local fresh = redis.call('SADD', KEYS[1], ARGV[1])
if fresh == 1 then
  local ts = tonumber(ARGV[3])
  redis.call('SADD', KEYS[4], ARGV[2])
  redis.call('HSETNX', KEYS[2], 'first_ts', ARGV[3])
  local first = tonumber(redis.call('HGET', KEYS[2], 'first_ts'))
  if ts < first then redis.call('HSET', KEYS[2], 'first_ts', ARGV[3]) end
  local last = tonumber(redis.call('HGET', KEYS[2], 'last_ts') or '0')
  if ts > last then redis.call('HSET', KEYS[2], 'last_ts', ARGV[3]) end
  redis.call('HINCRBY', KEYS[2], 'frequency', 1)
  redis.call('HINCRBY', KEYS[2], 'monetary', ARGV[4])
  redis.call('HSET', KEYS[2], 'last_order_id', ARGV[1])
  redis.call('HINCRBY', KEYS[3], 'ch:' .. ARGV[5], 1)
  redis.call('HINCRBY', KEYS[3], 'm:' .. ARGV[6] .. ':n', 1)
  redis.call('HINCRBY', KEYS[3], 'm:' .. ARGV[6] .. ':a', ARGV[4])
  for i = 10, #ARGV, 2 do
    redis.call('HINCRBY', KEYS[3], 'p:' .. ARGV[i], ARGV[i + 1])
  end
  local keep = tonumber(ARGV[9])
  if ARGV[8] ~= '' and keep > 0 then
    redis.call('LPUSH', KEYS[6], ARGV[8])
    redis.call('LTRIM', KEYS[6], 0, keep - 1)
    redis.call('SADD', KEYS[7], ARGV[2])
  end
  if ARGV[7] ~= '' then redis.call('HINCRBY', KEYS[5], ARGV[7], 1) end
end
local v = redis.call('HMGET', KEYS[2], 'last_ts', 'frequency', 'monetary')
return {fresh, v[1], v[2], v[3]}
"""

SET_SEGMENT = """
-- KEYS: customer hash, segsize hash
-- ARGV: expected frequency ('' = any), segment, model version, visible_at, memberships JSON ('' = none)
local freq = redis.call('HGET', KEYS[1], 'frequency')
if ARGV[1] ~= '' and freq ~= ARGV[1] then return 0 end
local old = redis.call('HGET', KEYS[1], 'segment')
if old ~= ARGV[2] then
  if old then redis.call('HINCRBY', KEYS[2], old, -1) end
  redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
  redis.call('HSET', KEYS[1], 'segment', ARGV[2])
end
redis.call('HSET', KEYS[1], 'model_version', ARGV[3], 'visible_at', ARGV[4])
if ARGV[5] and ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'probs', ARGV[5]) end
return 1
"""


NOTE_COLUMNS = ["customer_id", "order_id", "ts", "note"]
PROB_COLUMNS = [f"p_{s}" for s in SEGMENTS]  # a snapshot's soft memberships, one column per segment
SegmentRow = tuple[str, str, int | None] | tuple[str, str, int | None, dict[str, float] | None]


def month_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m")


@dataclass
class Applied:
    """What applying one order did: `fresh` is False for an order id seen before."""

    order_id: str
    customer_id: str
    fresh: bool
    last_ts: float
    frequency: int
    monetary: int


@dataclass
class Snapshot:
    """A read of the whole live state (or of the history), as tables the stats are computed from."""

    # index customer_id: first_ts, last_ts, frequency, monetary, segment, and p_<segment> (the
    # probability of each segment; NaN for a customer scored before memberships were kept)
    customers: pd.DataFrame
    products: pd.DataFrame  # customer_id, sku, units
    channels: pd.DataFrame  # customer_id, channel, orders
    months: pd.DataFrame  # customer_id, month, orders, revenue
    as_of: float
    model_version: int = 0
    source: str = "redis"
    # customer_id, order_id, ts, note: the customers' own words (untrusted text, kept as data)
    notes: pd.DataFrame = dataclasses.field(default_factory=lambda: pd.DataFrame(columns=NOTE_COLUMNS))

    def raw(self) -> np.ndarray:
        c = self.customers
        return rfm_raw(
            c["last_ts"].to_numpy(), c["frequency"].to_numpy(), c["monetary"].to_numpy(), self.as_of
        )


class InsightStore:
    """Customer state and segment bookkeeping in one Redis database."""

    def __init__(self, client: redis.Redis, prefix: str = "insight", notes_per_customer: int = 3):
        self.r = client
        self.p = prefix
        self.notes_per_customer = notes_per_customer
        self._apply = client.register_script(APPLY_ORDER)
        self._set_segment = client.register_script(SET_SEGMENT)

    @classmethod
    def from_url(cls, url: str, prefix: str = "insight", notes_per_customer: int = 3) -> InsightStore:
        return cls(redis.Redis.from_url(url, decode_responses=True), prefix, notes_per_customer)

    def key(self, *parts: str) -> str:
        return ":".join((self.p, *parts))

    # --- writes -------------------------------------------------------------------------------
    def apply_orders(
        self, orders: Sequence[Order], consumer: str = ""
    ) -> list[Applied | redis.ResponseError]:
        """Apply orders atomically each (idempotent by order id); one round trip for the batch.

        Each order's result is its own: an order Redis refuses comes back as its ResponseError in
        its place, and the others are applied. A lost connection raises.
        """
        pipe = self.r.pipeline(transaction=False)
        for o in orders:
            note = "" if not o.note else json.dumps({"order_id": o.order_id, "ts": o.ts, "note": o.note},
                                                    ensure_ascii=False)  # fmt: skip
            args: list[Any] = [o.order_id, o.customer_id, repr(o.ts), o.amount, o.channel, month_of(o.ts),
                               consumer, note, self.notes_per_customer]  # fmt: skip
            for item in o.items:
                args += [item.sku, item.qty]
            keys = [self.key("processed"), self.key("c", o.customer_id), self.key("k", o.customer_id),
                    self.key("customers"), self.key("consumers"), self.key("n", o.customer_id),
                    self.key("noted")]  # fmt: skip
            self._apply(keys=keys, args=args, client=pipe)
        out: list[Applied | redis.ResponseError] = []
        for o, reply in zip(orders, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(reply, redis.ResponseError):
                out.append(reply)
                continue
            if isinstance(reply, Exception):  # anything but a refusal of this one order
                raise reply
            fresh, last_ts, freq, money = reply
            out.append(Applied(o.order_id, o.customer_id, bool(fresh), float(last_ts), int(freq), int(money)))
        return out

    def set_segments(
        self, rows: Iterable[SegmentRow], model_version: int, visible_at: float | None = None
    ) -> int:
        """Set (customer, segment, expected frequency or None[, memberships]); a row whose customer
        changed meanwhile is skipped (the consumer that changed it scores it). Keeps the segment sizes
        in step. Memberships are {segment: probability}."""
        pipe = self.r.pipeline(transaction=False)
        now = repr(visible_at if visible_at is not None else time.time())
        n = 0
        for row in rows:
            customer, segment, freq = row[0], row[1], row[2]
            probs = row[3] if len(row) > 3 else None  # type: ignore[misc]
            keys = [self.key("c", customer), self.key("segsize")]
            memberships = "" if not probs else json.dumps({k: round(float(v), 3) for k, v in probs.items()})
            self._set_segment(
                keys=keys, args=["" if freq is None else freq, segment, model_version, now, memberships],
                client=pipe,
            )  # fmt: skip
            n += 1
        return sum(int(x) for x in pipe.execute()) if n else 0

    def set_assignments(
        self, ids: Sequence[str], model: SegmentModel, raw: np.ndarray, freq: Sequence[int | None]
    ) -> int:
        """Score rows with `model` (label and memberships) and set them (see set_segments)."""
        labels, probs = model.assign(raw)
        rows = [
            (c, s, f, dict(zip(model.names, p.tolist(), strict=True)))
            for c, s, f, p in zip(ids, labels, freq, probs, strict=True)
        ]
        return self.set_segments(rows, model.version)

    # --- simulated clock, drift reports, recorded sizes ------------------------------------------
    def set_clock(self, clock: SimClock | None) -> None:
        """Use a simulated clock for every reader of this state (None: back to the wall clock)."""
        if clock is None:
            self.r.delete(self.key("clock"))
        else:
            self.r.hset(self.key("clock"), mapping={k: repr(v) for k, v in clock.as_dict().items()})

    def clock(self) -> SimClock | None:
        values: dict[str, str] = self.r.hgetall(self.key("clock"))  # type: ignore[assignment]
        if not values:
            return None
        try:
            return SimClock.from_dict(values)
        except (KeyError, ValueError):
            return None  # written by this module only; a damaged key means the wall clock

    def now(self) -> float:
        """The state's "now": the simulated clock's when one is set, else the wall clock."""
        clock = self.clock()
        return clock.now() if clock is not None else time.time()

    def record_refit(self, report: dict[str, Any], held: SegmentModel | None, keep: int = 50) -> None:
        """Keep a refit's report; a drift report also as the current drift, a held candidate as such."""
        text = json.dumps(report, ensure_ascii=False, default=str)
        pipe = self.r.pipeline(transaction=True)
        pipe.lpush(self.key("refits"), text)
        pipe.ltrim(self.key("refits"), 0, keep - 1)
        if report.get("drift"):
            pipe.set(self.key("drift"), text)
        else:
            pipe.delete(self.key("drift"))
        if held is not None:
            pipe.set(self.key("model", "held"), held.to_json())
        else:
            pipe.delete(self.key("model", "held"))
        pipe.execute()

    def drift(self) -> dict[str, Any] | None:
        text = self.r.get(self.key("drift"))
        return json.loads(text) if text else None  # type: ignore[arg-type]

    def refits(self, count: int = 10) -> list[dict[str, Any]]:
        return [json.loads(t) for t in self.r.lrange(self.key("refits"), 0, count - 1)]  # type: ignore[union-attr]

    def held_model(self) -> SegmentModel | None:
        text = self.r.get(self.key("model", "held"))
        return SegmentModel.from_json(text) if text else None  # type: ignore[arg-type]

    def record_sizes(self, event: str, sim_ts: float | None = None, keep: int = 5000) -> None:
        """Append the segment sizes now, stamped with the simulated and the real time and what caused them."""
        entry = {"sim_ts": sim_ts if sim_ts is not None else self.now(), "real_ts": time.time(),
                 "event": event, "sizes": self.segment_sizes()}  # fmt: skip
        pipe = self.r.pipeline(transaction=False)
        pipe.rpush(self.key("sizes"), json.dumps(entry))
        pipe.ltrim(self.key("sizes"), -keep, -1)
        pipe.execute()

    def size_records(self) -> list[dict[str, Any]]:
        """The recorded segment sizes, oldest first: {"sim_ts", "real_ts", "event", "sizes"}."""
        return [json.loads(t) for t in self.r.lrange(self.key("sizes"), 0, -1)]  # type: ignore[union-attr]

    def save_model(self, model: SegmentModel) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.set(self.key("model"), model.to_json())
        pipe.set(self.key("model", "version"), model.version)
        pipe.execute()

    def load_model(self) -> SegmentModel | None:
        text = self.r.get(self.key("model"))
        return SegmentModel.from_json(text) if text else None  # type: ignore[arg-type]

    def model_version(self) -> int:
        return int(self.r.get(self.key("model", "version")) or 0)  # type: ignore[arg-type]

    def load_history(self, history: History, chunk: int = 500) -> int:
        """Replace the state with a history's customers (aggregated, pipelined); returns customers."""
        self.clear()
        o, it = history.orders, history.items
        agg = o.groupby("customer_id").agg(
            first_ts=("ts", "min"),
            last_ts=("ts", "max"),
            frequency=("ts", "size"),
            monetary=("amount", "sum"),
        )
        counters: dict[str, dict[str, int]] = {c: {} for c in agg.index}
        units = (
            it.merge(o[["order_id", "customer_id"]], on="order_id")
            .groupby(["customer_id", "sku"])["qty"]
            .sum()
        )
        for (c, sku), n in units.items():
            counters[str(c)][f"p:{sku}"] = int(n)
        for (c, ch), n in o.groupby(["customer_id", "channel"]).size().items():
            counters[str(c)][f"ch:{ch}"] = int(n)
        months = pd.to_datetime(o["ts"], unit="s", utc=True).dt.strftime("%Y-%m")
        by_month = o.assign(month=months).groupby(["customer_id", "month"])["amount"].agg(["size", "sum"])
        for (c, m), row in by_month.iterrows():  # type: ignore[misc]
            counters[str(c)][f"m:{m}:n"] = int(row["size"])
            counters[str(c)][f"m:{m}:a"] = int(row["sum"])
        ids = list(agg.index)
        for start in range(0, len(ids), chunk):
            pipe = self.r.pipeline(transaction=False)
            for c in ids[start : start + chunk]:
                row = agg.loc[c]
                pipe.hset(self.key("c", c), mapping={
                    "first_ts": repr(float(row["first_ts"])), "last_ts": repr(float(row["last_ts"])),
                    "frequency": int(row["frequency"]), "monetary": int(row["monetary"]),
                })  # fmt: skip
                pipe.hset(self.key("k", c), mapping=counters[c])  # type: ignore[arg-type]
            pipe.sadd(self.key("customers"), *ids[start : start + chunk])
            pipe.execute()
        return len(ids)

    def clear(self) -> None:
        """Delete every key of this prefix (not the stream, nor its dead letters)."""
        batch: list[str] = []
        for k in self.r.scan_iter(match=f"{self.p}:*", count=1000):
            if k in (f"{self.p}:orders", f"{self.p}:orders:dead"):
                continue
            batch.append(k)
            if len(batch) >= 1000:
                self.r.delete(*batch)
                batch = []
        if batch:
            self.r.delete(*batch)

    # --- reads --------------------------------------------------------------------------------
    def customer_ids(self) -> list[str]:
        return sorted(self.r.smembers(self.key("customers")))  # type: ignore[arg-type]

    def customer(self, customer_id: str) -> dict[str, str]:
        return self.r.hgetall(self.key("c", customer_id))  # type: ignore[return-value]

    def segment_sizes(self) -> dict[str, int]:
        values: dict[str, str] = self.r.hgetall(self.key("segsize"))  # type: ignore[assignment]
        return {k: int(v) for k, v in values.items() if int(v) > 0}

    def consumer_counts(self) -> dict[str, int]:
        values: dict[str, str] = self.r.hgetall(self.key("consumers"))  # type: ignore[assignment]
        return {k: int(v) for k, v in values.items()}

    def notes(self) -> pd.DataFrame:
        """Every kept customer note (customer_id, order_id, ts, note), newest first."""
        noted: list[str] = sorted(self.r.smembers(self.key("noted")))  # type: ignore[arg-type]
        pipe = self.r.pipeline(transaction=False)
        for c in noted:
            pipe.lrange(self.key("n", c), 0, -1)
        rows = []
        for c, values in zip(noted, pipe.execute() if noted else [], strict=True):
            for value in values:
                try:
                    kept = json.loads(value)
                    rows.append((c, str(kept["order_id"]), float(kept["ts"]), str(kept["note"])))
                except (ValueError, KeyError, TypeError):
                    continue  # written by this module only; skip anything else rather than fail a read
        frame = pd.DataFrame(rows, columns=NOTE_COLUMNS)
        return frame.sort_values("ts", ascending=False, ignore_index=True)

    def dead_letter_count(self, stream: str) -> int:
        """Entries ever dead-lettered to `stream` (Redis counts them across trimming)."""
        try:
            info: dict[str, Any] = self.r.xinfo_stream(stream)  # type: ignore[assignment]
        except redis.ResponseError:  # no such stream: nothing was rejected yet
            return 0
        return int(info.get("entries-added", info.get("length", 0)))

    def dead_letters(self, stream: str, count: int = 20) -> list[dict[str, str]]:
        """The latest dead-lettered entries, newest first: {"id", "reason", "entry_id", "raw", ...}."""
        rows: Any = self.r.xrevrange(stream, count=count)
        return [{"id": eid, **fields} for eid, fields in rows]

    def set_health(self, consumer: str, status: dict[str, Any]) -> None:
        self.r.hset(self.key("health"), consumer, json.dumps(status, ensure_ascii=False))

    def health(self) -> dict[str, dict[str, Any]]:
        """Each supervised consumer's last reported status, by name."""
        values: dict[str, str] = self.r.hgetall(self.key("health"))  # type: ignore[assignment]
        out: dict[str, dict[str, Any]] = {}
        for name, text in values.items():
            try:
                out[name] = json.loads(text)
            except ValueError:
                continue
        return out

    def processed_count(self) -> int:
        return int(self.r.scard(self.key("processed")))  # type: ignore[arg-type]

    def rfm_rows(self) -> tuple[list[str], np.ndarray, list[int]]:
        """(customer ids, raw RFM now, frequencies) of every customer, for scoring and refits."""
        ids = self.customer_ids()
        pipe = self.r.pipeline(transaction=False)
        for c in ids:
            pipe.hmget(self.key("c", c), "last_ts", "frequency", "monetary")
        values = pipe.execute()
        last = np.array([float(v[0] or 0) for v in values])
        freq = np.array([int(v[1] or 0) for v in values])
        money = np.array([int(v[2] or 0) for v in values])
        return ids, rfm_raw(last, freq, money, self.now()), freq.tolist()

    def snapshot(self, now: float | None = None) -> Snapshot:
        """Every customer's state and counters (a few pipelined round trips)."""
        ids = self.customer_ids()
        pipe = self.r.pipeline(transaction=False)
        for c in ids:
            pipe.hgetall(self.key("c", c))
            pipe.hgetall(self.key("k", c))
        values = pipe.execute()
        rows: list[dict[str, Any]] = []
        products: list[tuple[str, str, int]] = []
        channels: list[tuple[str, str, int]] = []
        months: dict[tuple[str, str], list[int]] = {}
        for i, c in enumerate(ids):
            state, counters = values[2 * i], values[2 * i + 1]
            rows.append({
                "customer_id": c, "first_ts": float(state.get("first_ts", 0)), "last_ts": float(state.get("last_ts", 0)),
                "frequency": int(state.get("frequency", 0)), "monetary": int(state.get("monetary", 0)),
                "segment": state.get("segment", "unscored"), **_memberships(state.get("probs")),
            })  # fmt: skip
            for field, value in counters.items():
                kind, _, rest = field.partition(":")
                if kind == "p":
                    products.append((c, rest, int(value)))
                elif kind == "ch":
                    channels.append((c, rest, int(value)))
                elif kind == "m":
                    month, _, what = rest.rpartition(":")
                    entry = months.setdefault((c, month), [0, 0])
                    entry[0 if what == "n" else 1] += int(value)
        customers = pd.DataFrame(
            rows,
            columns=["customer_id", "first_ts", "last_ts", "frequency", "monetary", "segment", *PROB_COLUMNS],
        )
        return Snapshot(
            customers=customers.set_index("customer_id"),
            notes=self.notes(),
            products=pd.DataFrame(products, columns=["customer_id", "sku", "units"]),
            channels=pd.DataFrame(channels, columns=["customer_id", "channel", "orders"]),
            months=pd.DataFrame(
                [(c, m, n, a) for (c, m), (n, a) in months.items()],
                columns=["customer_id", "month", "orders", "revenue"],
            ),
            as_of=now if now is not None else self.now(),
            model_version=self.model_version(),
            source="redis",
        )


def _memberships(text: str | None) -> dict[str, float]:
    """p_<segment> columns of one customer from its kept JSON (NaN where none was kept; 0 for a
    segment the scoring model did not have)."""
    if not text:
        return dict.fromkeys(PROB_COLUMNS, float("nan"))
    try:
        values = {f"p_{k}": float(v) for k, v in json.loads(text).items()}
    except (ValueError, AttributeError, TypeError):  # written by this module only: read as "not kept"
        return dict.fromkeys(PROB_COLUMNS, float("nan"))
    return {column: values.get(column, 0.0) for column in PROB_COLUMNS}


def snapshot_from_history(history: History, model: SegmentModel, now: float | None = None) -> Snapshot:
    """The same tables computed from a stored history (no Redis): the static view."""
    o, it = history.orders, history.items
    now = history.anchor if now is None else now
    agg = o.groupby("customer_id").agg(
        first_ts=("ts", "min"), last_ts=("ts", "max"), frequency=("ts", "size"), monetary=("amount", "sum")
    )
    raw = rfm_raw(agg["last_ts"].to_numpy(), agg["frequency"].to_numpy(), agg["monetary"].to_numpy(), now)
    labels, probs = model.assign(raw)
    agg["segment"] = labels
    for segment in SEGMENTS:
        agg[f"p_{segment}"] = probs[:, model.names.index(segment)] if segment in model.names else 0.0
    units = (
        it.merge(o[["order_id", "customer_id"]], on="order_id").groupby(["customer_id", "sku"])["qty"].sum()
    )
    months = o.assign(month=pd.to_datetime(o["ts"], unit="s", utc=True).dt.strftime("%Y-%m"))
    by_month = months.groupby(["customer_id", "month"])["amount"].agg(["size", "sum"]).reset_index()
    return Snapshot(
        customers=agg,
        products=units.rename("units").reset_index(),
        channels=o.groupby(["customer_id", "channel"]).size().rename("orders").reset_index(),
        months=by_month.rename(columns={"size": "orders", "sum": "revenue"}),
        as_of=now,
        model_version=model.version,
        source="history",
    )
