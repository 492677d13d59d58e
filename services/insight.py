"""The insight job's service: the one place the product runs the insight_qa graph.

    service = InsightService.live()          # the app: configured Redis, else the in-process demo
    service = InsightService.from_settings() # CLI `ask`, evals: configured Redis, else the history
    service = InsightService.redis(url)      # CLI load/simulate/consume: a Redis is required
    answer = service.ask("VIP 고객은 어떤 특징이 있어?")

Each service owns one data source (opened on first use, so the live demo starts only when someone
looks) and hands it to the graph in the run's context: two services never see each other's data.
It also gives the app's charts their live segment readings, caches the K-Means vs GMM report per
model version, and runs the Redis operations (load the history, simulate orders, consume).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from personagraph.graphs.insight_qa import graph
from personagraph.insight.consumer import ConsumerStats
from personagraph.insight.orders import history_path, load_or_generate
from personagraph.insight.questions import validate_router_mode
from personagraph.insight.segments import SegmentModel, model_report, report_markdown
from personagraph.insight.settings import InsightSettings, get_insight_settings
from personagraph.insight.simulator import simulate
from personagraph.insight.source import (
    HistorySource,
    InsightSource,
    RedisNotConfiguredError,
    RedisSource,
    configured_source,
    live_source,
    redis_source,
)
from personagraph.insight.store import Snapshot
from personagraph.nodes.insight import InsightContext

REPORT_PENDING = "_Model report: computing..._"
NO_REPORT = object()  # no report started yet (a source without a model has version None)


@dataclass(frozen=True)
class InsightAnswer:
    """One answered question: the answer and everything it was built from."""

    question: str
    answer: str
    lang: str
    intent: str
    router: str  # keywords | model | keywords (model error: ...)
    scope: dict[str, list[str]]  # {"segments": [...], "customers": [...]}
    tool_results: dict[str, Any]  # the exact figures, by name ("segment_stats[vip]", ...)
    figures: list[dict[str, Any]]  # {"tool", "path", "value"}
    retrieved: list[dict[str, Any]]  # segment profile chunks
    check: dict[str, Any]  # the numeric check ({} when the answer needed none)
    flagged: bool
    error: str | None

    @classmethod
    def from_output(cls, out: Mapping[str, Any]) -> InsightAnswer:
        """From the graph's output, whose keys depend on the path taken (refusals have no check)."""
        return cls(
            question=out.get("question", ""), answer=out.get("answer", ""), lang=out.get("lang", "en"),
            intent=out.get("intent", ""), router=out.get("router", ""),
            scope=out.get("scope") or {"segments": [], "customers": []},
            tool_results=out.get("tool_results") or {}, figures=out.get("figures") or [],
            retrieved=out.get("retrieved") or [], check=out.get("check") or {},
            flagged=bool(out.get("flagged")), error=out.get("error"),
        )  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SegmentReading:
    """The segments at one moment, for the app's charts."""

    taken_at: float  # time.time()
    description: str  # where the data comes from
    sizes: dict[str, int]  # customers per segment
    rfm: np.ndarray  # per customer: recency (days), frequency (orders), monetary (KRW)
    segments: list[str]  # per customer, in the rows' order of `rfm`
    orders_applied: int | None  # live orders applied so far (None: no live stream)


@dataclass(frozen=True)
class GeneratedHistory:
    customers: int
    orders: int
    items: int
    path: Path


@dataclass(frozen=True)
class LoadedHistory:
    customers: int
    segments: dict[str, int]  # customers per segment


@dataclass(frozen=True)
class SimulationRun:
    sent: int
    stream: str
    run_id: str


def generate_history(
    customers: int | None = None,
    orders: int | None = None,
    seed: int | None = None,
    *,
    regenerate: bool = False,
) -> GeneratedHistory:
    """The stored seeded history (generated on first use); None takes the setting. Raises ValueError."""
    s = get_insight_settings()
    customers, orders = customers or s.customers, orders or s.orders
    seed = s.seed if seed is None else seed
    h = load_or_generate(customers, orders, seed=seed, regenerate=regenerate)
    return GeneratedHistory(
        len(h.customers), len(h.orders), len(h.items), history_path(customers, orders, seed)
    )


class InsightService:
    """Questions, live segment readings and Redis operations over one data source."""

    def __init__(self, open_source: Callable[[], InsightSource], context: InsightContext | None = None):
        """`open_source` is called once, on first use; `context` holds the graph's knobs (its source is ignored)."""
        self._open_source = open_source
        self._source: InsightSource | None = None
        self._source_lock = threading.Lock()
        self.context = context or InsightContext()
        self._report_lock = threading.Lock()
        self._report_markdown = REPORT_PENDING
        self._report_version: object = NO_REPORT  # the model version the report is (being) computed for
        self._report_running = False

    @classmethod
    def for_source(cls, source: InsightSource, context: InsightContext | None = None) -> InsightService:
        return cls(lambda: source, context)

    @classmethod
    def from_settings(cls, redis_url: str | None = None) -> InsightService:
        """The given or configured Redis (INSIGHT_REDIS_URL, else REDIS_URL), else the static history."""
        return cls(lambda: configured_source(redis_url))

    @classmethod
    def history(cls) -> InsightService:
        """The stored history only, even when a Redis is configured."""
        return cls(HistorySource)

    @classmethod
    def live(cls, rate: float = 20.0) -> InsightService:
        """The configured Redis; else an in-process Redis with simulated orders at `rate`/s; else the history."""
        return cls(lambda: live_source(rate))

    @classmethod
    def redis(cls, redis_url: str | None = None) -> InsightService:
        """The given or configured Redis; raises RedisNotConfiguredError now when there is none."""
        return cls.for_source(redis_source(redis_url))

    @property
    def source(self) -> InsightSource:
        with self._source_lock:
            if self._source is None:
                self._source = self._open_source()
            return self._source

    @property
    def settings(self) -> InsightSettings:
        return self.source.settings

    def describe(self) -> str:
        return self.source.describe()

    def close(self) -> None:
        """Stop the source (the live demo's Redis, consumer and simulator); a later use opens it again."""
        with self._source_lock:
            source, self._source = self._source, None
        if source is not None:
            source.close()

    # Questions

    def ask(self, question: str, router_mode: str = "hybrid") -> InsightAnswer:
        """Answer one question from this service's data; raises InvalidQuestionError for a bad input."""
        context = replace(self.context, router_mode=validate_router_mode(router_mode), source=self.source)
        return InsightAnswer.from_output(graph.invoke({"question": question}, context=context))

    # Reading the data

    def snapshot(self) -> Snapshot:
        return self.source.snapshot()

    def segment_model(self) -> SegmentModel | None:
        return self.source.model()

    def segment_reading(self) -> SegmentReading:
        source = self.source
        sizes = source.segment_sizes()
        snap = source.snapshot()
        return SegmentReading(
            taken_at=time.time(), description=source.describe(), sizes=sizes, rfm=snap.raw(),
            segments=snap.customers["segment"].tolist(), orders_applied=source.orders_applied(),
        )  # fmt: skip

    def model_report(self) -> dict[str, Any]:
        """K-Means vs GMM on the current customers (BIC, silhouette, bootstrap stability): seconds."""
        return model_report(self.snapshot().raw())

    def latest_report_markdown(self) -> str:
        """The model report as markdown, recomputed in the background when the model version changes.

        Returns at once: the last finished report (or a placeholder) while a new one is computed.
        """
        model = self.segment_model()
        version = model.version if model is not None else None
        with self._report_lock:
            if self._report_version != version and not self._report_running:
                self._report_version, self._report_running = version, True
                threading.Thread(target=self._compute_report, name="insight-report", daemon=True).start()
            return self._report_markdown

    def _compute_report(self) -> None:
        try:
            markdown = report_markdown(self.model_report())
        except Exception as exc:  # noqa: BLE001 - shown in place of the report
            markdown = f"_Model report failed: {type(exc).__name__}: {exc}_"
        with self._report_lock:
            self._report_markdown, self._report_running = markdown, False

    # Redis operations

    def _redis_source(self) -> RedisSource:
        source = self.source
        if not isinstance(source, RedisSource):
            raise RedisNotConfiguredError(f"this needs the live state in Redis, not {source.describe()}")
        return source

    def load_history(self) -> LoadedHistory:
        """Replace the live state with the history, refit the model and score every customer."""
        source = self._redis_source()
        loaded = source.reload_history()
        return LoadedHistory(customers=loaded, segments=source.store.segment_sizes())

    def simulate(
        self, *, rate: float, seed: int, count: int | None = None, seconds: float | None = None
    ) -> SimulationRun:
        """Publish live orders at `rate`/s until `count` orders or `seconds` (ValueError without either)."""
        source = self._redis_source()
        source.bootstrap()
        factory = source.order_factory(seed)
        stream = source.settings.stream
        sent = simulate(source.store.r, stream, factory, rate=rate, count=count, seconds=seconds)
        return SimulationRun(sent=sent, stream=stream, run_id=factory.run_id)

    def consume(
        self, name: str, *, seconds: float | None = None, refit_interval_s: float | None = None,
        record_latency: bool = False,
    ) -> ConsumerStats:  # fmt: skip
        """Run one consumer of the group for `seconds`, or until Ctrl-C; its counts."""
        source = self._redis_source()
        source.bootstrap()
        consumer = source.consumer(name, record_latency=record_latency,
                                   refit_interval_s=refit_interval_s or source.settings.refit_interval_s)  # fmt: skip
        try:
            return consumer.run(max_seconds=seconds)
        except KeyboardInterrupt:  # Ctrl-C is how an endless consumer is stopped: report what it did
            return consumer.stats
