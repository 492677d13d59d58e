"""Stream consumer: XREADGROUP -> check each entry -> apply each order once -> re-score -> XACK.

Exactly-once effect on the customer state with at-least-once delivery: the order id goes into the
processed set in the same Lua script that changes the RFM values. A consumer that crashes after the
update but before the ack gets the entry again (its own pending list is read first on restart, and
entries idle in a dead consumer's list are taken over with XAUTOCLAIM); the second application is a
no-op that still re-scores and acknowledges.

Bad events never stop a consumer. Each entry is checked on its own (size, UTF-8, JSON, the Order's
bounds); one that fails, or that Redis refuses, goes to the dead-letter stream (capped, with the
reason and the raw entry, truncated) and is acknowledged with the good ones of its batch, which are
applied. Entries a restarted consumer finds pending are retried one at a time; one that keeps
stopping the consumer is dead-lettered after `max_deliveries` attempts. `SupervisedConsumer` runs a
consumer and restarts it with backoff when it dies, and reports restarts and the last error.

Refits: every `refit_interval_s` one consumer (a Redis lock decides which) refits the GMM in a
background thread, publishes it and re-scores everyone; the others pick the new model up by version.
Scoring goes on with the old model during a refit. A refit is warm (started from the current model,
anchored to its reference, names kept); one that would move the segments more than the drift policy
allows is held and reported as drift (`{p}:drift`, `{p}:model:held`) until `accept_held()`, and the
customers' own movement beyond the policy is reported as mix drift. Every `rescore_interval_s` one
consumer re-scores every customer (recency grows while a customer does not buy, so segments change
a little at a time, not all at the next refit) and records the sizes (`{p}:sizes`). Times are the
store's clock (`InsightStore.now`: a simulated clock when one is set).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import redis
from pydantic import ValidationError
from redis.client import NEVER_DECODE

from personagraph.insight.orders import Order, validation_problems
from personagraph.insight.segments import (
    DEFAULT_COMPONENTS,
    DriftPolicy,
    Refit,
    SegmentModel,
    SegmentScorer,
    rfm_raw,
)
from personagraph.insight.settings import InsightSettings, get_insight_settings
from personagraph.insight.store import Applied, InsightStore
from personagraph.serving.redact import log_error, redact_text

log = logging.getLogger(__name__)

Fields = Mapping[Any, Any]  # an entry's fields: bytes as read from the stream (str in hand-made tests)
Entry = tuple[str, Fields]

# Redis refusals that say the server is not ready, not that the entry is bad: retried, never dead-lettered.
_SERVER_STATES = ("OOM", "READONLY", "LOADING", "BUSY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "NOREPLICAS",
                  "NOSCRIPT", "NOPERM", "NOAUTH", "WRONGPASS")  # fmt: skip


class EntryRejected(ValueError):
    """An entry that can never be applied; the message is the reason kept in the dead-letter stream."""


@dataclass
class ConsumerStats:
    read: int = 0
    applied: int = 0
    duplicates: int = 0
    invalid: int = 0  # dead-lettered by this consumer
    batches: int = 0
    score_errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Rejected:
    entry_id: str
    reason: str
    fields: Fields


def _text(value: Any) -> str:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


def raw_entry(fields: Fields, limit: int) -> str:
    """The entry as JSON text, bytes that are not UTF-8 shown as \\xNN, at most `limit` characters."""
    shown = {_text(k)[:100]: _text(v)[:limit] for k, v in list(fields.items())[:20]}
    text = json.dumps(shown, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _decode(value: Any, name: str) -> str:
    if isinstance(value, str):
        return value
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EntryRejected(
            f"not UTF-8: field {name!r} has byte 0x{value[exc.start]:02x} at {exc.start}"
        ) from exc


def decode_entry(fields: Fields, max_bytes: int, now: float | None = None) -> tuple[Order, float]:
    """(the order, its publish time or 0) of one stream entry; EntryRejected says why it cannot be used.

    `now` is the reader's clock (a simulated one) for the order-time bound; None: the wall clock."""
    size = sum(len(k) + len(v) for k, v in fields.items())
    if size > max_bytes:
        raise EntryRejected(f"too large: {size:,} bytes (INSIGHT_ORDER_MAX_ENTRY_BYTES is {max_bytes:,})")
    text = {_decode(k, "(name)"): _decode(v, _text(k)[:40]) for k, v in fields.items()}
    if "order" not in text:
        raise EntryRejected(f"missing field 'order' (fields: {', '.join(sorted(text))[:200]})")
    try:
        order = Order.model_validate_json(text["order"], context=None if now is None else {"now": now})
    except ValidationError as exc:
        if any(err["type"] == "json_invalid" for err in exc.errors()):
            raise EntryRejected(f"malformed JSON: {exc.errors()[0]['msg']}") from exc
        raise EntryRejected(f"invalid order: {validation_problems(exc)}") from exc
    try:
        published = float(text.get("published_at", 0) or 0)
    except ValueError:
        published = 0.0  # metadata only: a bad publish time costs the latency sample, not the order
    return order, published if math.isfinite(published) and published > 0 else 0.0


def _server_state(exc: redis.ResponseError) -> bool:
    return str(exc).split(" ", 1)[0].upper() in _SERVER_STATES


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
        settings: InsightSettings | None = None,
        dead_letter_stream: str | None = None,
    ):
        self.store = store
        self.r: redis.Redis = store.r
        self.stream, self.group, self.name = stream, group, name
        self.limits = settings or get_insight_settings()
        lim = self.limits
        self.scorer = scorer or SegmentScorer(
            components=components, prior_strength=lim.refit_prior_strength,
            policy=DriftPolicy(min_ari=lim.drift_min_ari, max_size_change=lim.drift_max_size_change,
                               mix_window=lim.drift_mix_window, max_mix_change=lim.drift_max_mix_change),
        )  # fmt: skip
        self.batch, self.block_ms, self.claim_idle_ms = batch, block_ms, claim_idle_ms
        self.refit_interval_s = refit_interval_s
        self.record_latency = record_latency
        self.dead_letter_stream = dead_letter_stream or self.limits.dead_letter_stream or f"{stream}:dead"
        self.stats = ConsumerStats()
        self.last_score_error: str | None = None
        self._stop = threading.Event()
        self._last_model_check = 0.0
        self._last_rescore = time.monotonic()

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
        """Refit on every customer's current RFM, publish, re-score all (skipped if another holds the lock).

        Returns the model in use afterwards (the old one when the refit was held as drift)."""
        ttl = max(1, int(self.refit_interval_s or 30))
        if not force and not self.r.set(self.store.key("refit-lock"), self.name, nx=True, ex=ttl):
            return None
        ids, raw, freq = self.store.rfm_rows()
        if len(ids) == 0:
            return None
        refit = self.scorer.refit(raw)
        self.publish_refit(refit)
        return self.scorer.model

    def publish_refit(self, refit: Refit) -> None:
        """Save a swapped-in model, record the refit (drift, held candidate) and re-score everyone."""
        if refit.accepted:
            self.store.save_model(refit.candidate)
        report = refit.as_dict()
        report["sim_at"] = self.store.now()
        self.store.record_refit(report, None if refit.accepted else refit.candidate)
        event = f"refit v{refit.candidate.version}" + ("" if refit.accepted else " held (drift)")
        if refit.mix_reasons:
            event += " · mix drift"
        self.rescore_all(event)
        if refit.drift:
            log.warning("consumer %s: segment drift at refit v%s (%s): %s", self.name, refit.candidate.version,
                        "held" if not refit.accepted else "reported", "; ".join(report["reasons"])[:500])  # fmt: skip

    def rescore_all(self, event: str = "rescore") -> int:
        """Score every customer (label and memberships) with the model in use and record the sizes."""
        ids, raw, freq = self.store.rfm_rows()
        if not ids:
            return 0
        model = self.scorer.model
        changed = self.store.set_assignments(ids, model, raw, freq)
        self.store.record_sizes(event)
        self._last_rescore = time.monotonic()
        return changed

    def accept_held(self) -> SegmentModel | None:
        """Swap in the refit held as drift (a person looked at it) as the new reference; None if none."""
        held = self.store.held_model()
        if held is None:
            return None
        self.ensure_model()
        held.prior = None
        held.version = max(held.version, self.store.model_version() + 1)
        self.scorer.swap(held)
        self.scorer.held = None
        self.store.save_model(held)
        self.store.record_refit({"version": held.version, "accepted": True, "drift": False, "kind": "accepted",
                                 "reasons": [], "at": time.time(), "sim_at": self.store.now()}, None)  # fmt: skip
        self.rescore_all(f"drift accepted: v{held.version}")
        return held

    def maybe_rescore(self) -> None:
        """Re-score everyone every `rescore_interval_s` (one consumer at a time, by a short lock)."""
        every = self.limits.rescore_interval_s
        if time.monotonic() - self._last_rescore < every:
            return
        self._last_rescore = time.monotonic()
        if self.r.set(self.store.key("rescore-lock"), self.name, nx=True, px=max(1, int(every * 900))):
            self.rescore_all()

    # --- processing ---------------------------------------------------------------------------
    def check(self, entries: Sequence[Entry]) -> tuple[list[tuple[Entry, Order, float]], list[Rejected]]:
        """Split a batch into usable orders and rejected entries, each entry on its own."""
        good: list[tuple[Entry, Order, float]] = []
        rejected: list[Rejected] = []
        now = self.store.now()
        for entry in entries:
            entry_id, fields = entry
            try:
                order, published = decode_entry(fields, self.limits.order_max_entry_bytes, now)
            except EntryRejected as exc:
                rejected.append(Rejected(entry_id, str(exc), fields))
                continue
            except Exception as exc:  # noqa: BLE001 - whatever an entry does, it holds no other entry
                log_error(log, f"consumer {self.name}: entry {entry_id} could not be checked", exc)
                rejected.append(
                    Rejected(entry_id, f"could not be checked: {redact_text(str(exc))[:200]}", fields)
                )
                continue
            good.append((entry, order, published))
        return good, rejected

    def process(self, entries: Sequence[Entry], *, ack: bool = True) -> list[Applied]:
        """Apply a batch's good orders, dead-letter the rest, re-score touched customers, acknowledge all."""
        if not entries:
            return []
        good, rejected = self.check(entries)
        results = self.store.apply_orders([o for _, o, _ in good], consumer=self.name) if good else []
        applied: list[Applied] = []
        published: list[float] = []
        for (entry, _, sent_at), result in zip(good, results, strict=True):
            if isinstance(result, redis.ResponseError):
                if _server_state(result):
                    raise result  # the server, not the entry: retried after a restart
                rejected.append(
                    Rejected(entry[0], f"refused by Redis: {redact_text(str(result))[:200]}", entry[1])
                )
                continue
            applied.append(result)
            published.append(sent_at)
        self.score(applied)
        visible_at = time.time()
        self.stats.read += len(entries)
        self.stats.applied += sum(a.fresh for a in applied)
        self.stats.duplicates += sum(not a.fresh for a in applied)
        self.stats.batches += 1
        if not ack:
            return applied
        pipe = self.r.pipeline(transaction=True)  # dead letters and acks together: none lost, none twice
        self._dead_letter(pipe, rejected)
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
        self.stats.invalid += len(rejected)
        for r in rejected:
            log.warning("consumer %s: entry %s dead-lettered to %s: %s", self.name, r.entry_id,
                        self.dead_letter_stream, r.reason)  # fmt: skip
        return applied

    def score(self, applied: Sequence[Applied]) -> None:
        """Re-score each touched customer with the current model (its latest state only)."""
        latest: dict[str, Applied] = {}
        for a in applied:
            if a.customer_id not in latest or a.frequency >= latest[a.customer_id].frequency:
                latest[a.customer_id] = a
        rows = list(latest.values())
        if not rows:
            return
        try:
            raw = rfm_raw(
                np.array([a.last_ts for a in rows]), np.array([a.frequency for a in rows]),
                np.array([a.monetary for a in rows]), self.store.now(),
            )  # fmt: skip
            model = self.scorer.model
            segments, probs = model.assign(raw)
        except Exception as exc:  # noqa: BLE001 - the orders are applied; the next refit re-scores everyone
            self.stats.score_errors += 1
            self.last_score_error = redact_text(str(exc))[:200]
            log_error(log, f"consumer {self.name}: scoring {len(rows)} customers failed", exc)
            return
        self.store.set_segments(
            (
                (a.customer_id, s, a.frequency, dict(zip(model.names, p.tolist(), strict=True)))
                for a, s, p in zip(rows, segments, probs, strict=True)
            ),
            model.version,
        )

    def _dead_letter(self, pipe: Any, rejected: Sequence[Rejected]) -> None:
        for r in rejected:
            fields = {"entry_id": r.entry_id, "reason": r.reason[:500], "consumer": self.name,
                      "stream": self.stream, "at": repr(time.time()),
                      "raw": raw_entry(r.fields, self.limits.dead_letter_raw_chars)}  # fmt: skip
            pipe.xadd(
                self.dead_letter_stream, fields, maxlen=self.limits.dead_letter_maxlen, approximate=True
            )

    def process_one_at_a_time(self, entries: Sequence[Entry]) -> None:
        """Entries delivered before without an ack (a crash): each alone, counting attempts, so one
        that keeps stopping the consumer is dead-lettered after `max_deliveries` and holds no other."""
        for entry in entries:
            key = self.store.key("attempts", entry[0])
            pipe = self.r.pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, 7 * 86_400)
            attempts = int(pipe.execute()[0])
            if attempts > self.limits.max_deliveries:
                reason = (f"processing failed {attempts - 1} times (the consumer stopped on it each time; "
                          "see the consumer's log)")  # fmt: skip
                pipe = self.r.pipeline(transaction=True)
                self._dead_letter(pipe, [Rejected(entry[0], reason, entry[1])])
                pipe.xack(self.stream, self.group, entry[0])
                pipe.execute()
                self.stats.invalid += 1
                log.warning("consumer %s: entry %s dead-lettered: %s", self.name, entry[0], reason)
            else:
                self.process([entry])
            self.r.delete(key)

    def read(self, entry_id: str = ">", block_ms: int | None = None) -> list[Entry]:
        """Up to `batch` entries, their fields as bytes (decoded per entry: one bad byte spoils one entry).

        Entries that were deleted while pending (nil fields) are acknowledged here: nothing to apply.
        """
        block = self.block_ms if block_ms is None else block_ms
        args: list[Any] = ["XREADGROUP", "GROUP", self.group, self.name, "COUNT", self.batch]
        if block is not None:
            args += ["BLOCK", block]
        reply: Any = self.r.execute_command(*args, "STREAMS", self.stream, entry_id, **{NEVER_DECODE: True})
        if not reply:
            return []
        rows = reply[0][1]
        gone = [_text(eid) for eid, fields in rows if not fields]
        if gone:
            self.r.xack(self.stream, self.group, *gone)
        return [(_text(eid), fields) for eid, fields in rows if fields]

    def recover(self) -> int:
        """Re-process this consumer's own pending entries, then take over idle ones of dead consumers;
        both were delivered before without an ack, so they go one at a time."""
        done = 0
        while True:
            pending = self.read("0", block_ms=None)
            if not pending:
                break
            self.process_one_at_a_time(pending)
            done += len(pending)
        start = "0-0"
        while True:
            reply: Any = self.r.execute_command(
                "XAUTOCLAIM", self.stream, self.group, self.name, self.claim_idle_ms, start, "COUNT", self.batch,
                **{NEVER_DECODE: True},
            )  # fmt: skip
            start, claimed = _text(reply[0]), [(_text(eid), f) for eid, f in reply[1] if f]
            if claimed:
                self.process_one_at_a_time(claimed)
                done += len(claimed)
            if start == "0-0" or not claimed:
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

            self.scorer.start_refitting(load, self.refit_interval_s, self.publish_refit)
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        try:
            while not self._stop.is_set() and (deadline is None or time.monotonic() < deadline):
                self.sync_model()
                entries = self.read()
                if entries:
                    self.process(entries)
                self.maybe_rescore()
        finally:
            self.scorer.stop()
        return self.stats

    def stop(self) -> None:
        self._stop.set()


def consumer_error_text(exc: BaseException) -> str:
    """What a status line says about a consumer's error: its kind, never addresses or credentials."""
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return "lost the connection to Redis"
    if isinstance(exc, redis.ResponseError):
        code = str(exc).split(" ", 1)[0]
        return (
            f"Redis refused a command ({code})"
            if code.isupper() and code.isalpha()
            else "Redis refused a command"
        )
    if isinstance(exc, redis.RedisError):
        return "Redis error"
    return "unexpected error in the consumer"


@dataclass
class ConsumerHealth:
    """A supervised consumer's state, for the insight tab and the API status."""

    name: str
    state: str = "starting"  # starting | running | restarting | stopped | dead
    restarts: int = 0
    last_error: str | None = None  # short: its kind (details in the server log)
    last_error_at: float | None = None
    applied: int = 0
    dead_lettered: int = 0
    updated_at: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "state": self.state, "restarts": self.restarts, "last_error": self.last_error,
            "last_error_at": self.last_error_at, "applied": self.applied, "dead_lettered": self.dead_lettered,
            "updated_at": self.updated_at,
        }  # fmt: skip


class SupervisedConsumer:
    """Runs an OrderConsumer and restarts it when it dies, waiting `backoff_s`, doubled per failure in a
    row up to `backoff_max_s` (a run that lasted `healthy_after_s` starts the doubling over).

    `start()` runs it in a daemon thread (the app's live demo); `run(max_seconds)` in the calling
    thread (the CLI). Each state change is kept in `health` and reported to Redis ({p}:health), so any
    process reading the same Redis shows it.
    """

    def __init__(
        self,
        consumer: OrderConsumer,
        *,
        backoff_s: float | None = None,
        backoff_max_s: float | None = None,
        healthy_after_s: float = 60.0,
    ):
        self.consumer = consumer
        limits = consumer.limits
        self.backoff_s = backoff_s if backoff_s is not None else limits.restart_backoff_s
        self.backoff_max_s = max(
            self.backoff_s, backoff_max_s if backoff_max_s is not None else limits.restart_backoff_max_s
        )
        self.healthy_after_s = healthy_after_s
        self.health = ConsumerHealth(consumer.name)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> SupervisedConsumer:
        self._thread = threading.Thread(
            target=self.run, name=f"insight-consumer-{self.consumer.name}", daemon=True
        )
        self._thread.start()
        return self

    def run(self, max_seconds: float | None = None) -> ConsumerStats:
        """Run the consumer until stopped (or for max_seconds), restarting it after each failure."""
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        delay = self.backoff_s
        while not self._stop.is_set():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            started = time.monotonic()
            self._report("running")
            try:
                self.consumer.run(max_seconds=left)
                break  # stopped, or its time is up
            except Exception as exc:  # noqa: BLE001 - any failure: log it, wait, restart
                if time.monotonic() - started >= self.healthy_after_s:
                    delay = self.backoff_s
                wait = delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic()))
                log_error(
                    log, f"insight consumer {self.consumer.name} stopped; restarting in {wait:.1f} s", exc
                )
                with self._lock:
                    self.health.restarts += 1
                    self.health.last_error = consumer_error_text(exc)
                    self.health.last_error_at = time.time()
                self._report("restarting")
                if self._stop.wait(wait):
                    break
                delay = min(delay * 2, self.backoff_max_s)
        self._report("stopped")
        return self.consumer.stats

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self.consumer.stop()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def status(self) -> dict[str, Any]:
        """The health now; a thread that died without saying so shows as `dead`."""
        with self._lock:
            health = self.health.as_dict()
        alive = self._thread is None or self._thread.is_alive()
        if not alive and health["state"] not in ("stopped",):
            health["state"] = "dead"
        health["applied"], health["dead_lettered"] = self.consumer.stats.applied, self.consumer.stats.invalid
        return health

    def _report(self, state: str) -> None:
        with self._lock:
            self.health.state = state
            self.health.applied = self.consumer.stats.applied
            self.health.dead_lettered = self.consumer.stats.invalid
            self.health.updated_at = time.time()
            status = self.health.as_dict()
        try:
            self.consumer.store.set_health(self.consumer.name, status)
        except redis.RedisError as exc:  # Redis down: the in-process status still says so
            log.debug("consumer %s: health not reported: %s", self.consumer.name, redact_text(str(exc)))
