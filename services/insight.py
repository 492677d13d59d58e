"""The insight job's service: the one place the product runs the insight_qa graph.

    service = InsightService.live()          # the app: configured Redis, else the in-process demo
    service = InsightService.from_settings() # CLI `ask`, evals: configured Redis, else the history
    service = InsightService.redis(url)      # CLI load/simulate/consume: a Redis is required
    first = service.ask(caller, "VIP 고객은 어떤 특징이 있어?")
    more = service.ask(caller, "and in English?", thread_id=first.thread_id)   # a follow-up
    for event in service.ask_stream(caller, "VIP 고객은?"):   # figures at once, then the narrative
        ...   # AnswerEvent: figures | token | reset | final
    service.import_orders(admin, "orders.csv", "myshop")      # a shop's export -> dataset "myshop"
    service.ask(caller, "VIP 고객은?", dataset="myshop")        # questions about that dataset

Each service owns one data source (opened on first use, so the live demo starts only when someone
looks) and hands it to the graph in the run's context: two services never see each other's data.
It also gives the app's charts their live segment readings, caches the K-Means vs GMM report per
model version, and runs the Redis operations (load the history, simulate orders, consume).

Who may do what (every method takes the `Caller` first): the customer data is the shop's, shared
by every signed-in account, so reading it (questions, readings, segment stats, the model report)
is open to any caller; changing it (ingesting an order, loading the history, simulating or consuming
orders, generating the history, importing an order export as a dataset) is for admins; any caller
may ask about an imported dataset. The question threads are the asker's own: kept in the store under
("insight_threads", <user id>), so another account's thread id is simply not found.

An answer is built in steps (`ask_stream`): the figures and a template answer written from them come
first (no model: well under a second), then the model's narrative, released sentence by sentence only
after each passed the numeric and scope check, then the final answer. `ask` returns that final answer.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
from langgraph.store.base import BaseStore
from pydantic import ConfigDict, ValidationError

from personagraph.accounts.identity import Caller, ForbiddenError, NotFoundError
from personagraph.graphs.insight_qa import graph
from personagraph.insight.consumer import ConsumerStats, SupervisedConsumer
from personagraph.insight.followup import previous_turn
from personagraph.insight.importer import (
    DatasetExistsError,
    DatasetNotFoundError,
    DatasetSource,
    check_dataset_name,
    dataset_path,
    list_datasets,
    read_orders,
    save_dataset,
    segment_history,
)
from personagraph.insight.orders import DAY, Order, history_path, load_or_generate
from personagraph.insight.questions import validate_question, validate_router_mode
from personagraph.insight.segments import SegmentModel, model_report, report_markdown
from personagraph.insight.settings import InsightSettings, get_insight_settings
from personagraph.insight.simulator import (
    OrderFactory,
    SimClock,
    check_simulation_options,
    publish,
    shift_scenario,
    simulate,
)
from personagraph.insight.source import (
    HistorySource,
    InsightSource,
    RedisNotConfiguredError,
    RedisSource,
    configured_source,
    live_source,
    redis_source,
)
from personagraph.insight.stats import overview
from personagraph.insight.store import Snapshot
from personagraph.insight.template_answer import template_answer
from personagraph.nodes.insight import (
    SENTENCE_END,
    InsightContext,
    InsightInput,
    allowed_segments,
    passes_checks,
)
from personagraph.serving.redact import user_error
from personagraph.serving.safe_paths import check_id
from personagraph.serving.tracing import run_config

log = logging.getLogger(__name__)

REPORT_PENDING = "_Model report: computing..._"
NO_REPORT = object()  # no report started yet (a source without a model has version None)
THREADS_NAMESPACE = "insight_threads"
MAX_TURNS = 50  # turns kept per thread (the oldest go first)
TITLE_CHARS = 80


class InvalidOrderError(ValueError):
    """An order that cannot be ingested; the message names the field (`field`) and the problem."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field


def _require_admin(caller: Caller, action: str) -> None:
    if not caller.admin:
        raise ForbiddenError(f"{action}: only an admin may change the shop's customer data")


def _threads_namespace(caller: Caller) -> tuple[str, ...]:
    """The caller's own threads; a store label cannot hold '.', which account ids may ("%" never appears)."""
    return (THREADS_NAMESPACE, check_id(caller.user_id, "user_id").replace(".", "%2E"))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


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
    thread_id: str = ""  # the thread this turn was kept in
    follow_up: bool = False  # resolved against the thread's previous turn
    template: str = ""  # the figures as a short answer, written without a model ("" with no figures)
    dataset: str | None = None  # the imported dataset asked about (None: the service's own data)

    @classmethod
    def from_output(
        cls, out: Mapping[str, Any], thread_id: str = "", dataset: str | None = None
    ) -> InsightAnswer:
        """From the graph's output, whose keys depend on the path taken (refusals have no check)."""
        tool_results = out.get("tool_results") or {}
        return cls(
            question=out.get("question", ""), answer=out.get("answer", ""), lang=out.get("lang", "en"),
            intent=out.get("intent", ""), router=out.get("router", ""),
            scope=out.get("scope") or {"segments": [], "customers": []},
            tool_results=out.get("tool_results") or {}, figures=out.get("figures") or [],
            retrieved=out.get("retrieved") or [], check=out.get("check") or {},
            flagged=bool(out.get("flagged")), error=out.get("error"), thread_id=thread_id,
            follow_up=bool(out.get("follow_up")),
            template=template_answer(out.get("intent", ""), out.get("lang", "en"), tool_results),
            dataset=dataset,
        )  # fmt: skip

    def turn(self) -> dict[str, Any]:
        """What a thread keeps of this answer (the figures are gathered afresh on every question)."""
        return {
            "question": self.question, "answer": self.answer, "lang": self.lang, "intent": self.intent,
            "router": self.router, "scope": self.scope, "flagged": self.flagged, "error": self.error,
            "follow_up": self.follow_up, "dataset": self.dataset, "at": _now(),
        }  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AnswerEvent:
    """One step of an answer being built, as `ask_stream` yields it.

    - "figures": the gathered figures are ready (`data`: intent, scope, tool_results, figures, lang,
      router, follow_up, thread_id, dataset) and `text` is the template answer written from them;
    - "token": `text` is one or more sentences of the model's narrative to append, each already
      through the numeric and scope check (no raw model token is ever yielded);
    - "reset": withdraw the narrative shown so far (a rewrite follows);
    - "final": the finished answer (`answer`); its `answer.answer` is the narrative to keep, which
      replaces whatever was streamed (a flagged answer has a note or dropped sentences).
    A refusal or a question back has no "figures" event: its final answer comes at once.
    """

    kind: Literal["figures", "token", "reset", "final"]
    text: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    answer: InsightAnswer | None = None


def _figures_data(state: Mapping[str, Any], thread_id: str, dataset: str | None) -> dict[str, Any]:
    keys = ("intent", "router", "scope", "lang", "follow_up", "tool_results", "figures")
    return {**{k: state.get(k) for k in keys}, "thread_id": thread_id, "dataset": dataset}


class _NarrativeGate:
    """Releases the model's narrative one sentence at a time, each only when the text up to its end
    passes the checks the graph applies to the whole answer (every number is a gathered figure, no
    segment outside the scope is named). The first failing sentence closes the gate for this
    attempt: the graph's own check then rewrites or flags the answer, and the final event has it."""

    def __init__(self, state: Mapping[str, Any]):
        self.tool_results = state.get("tool_results") or {}
        self.question = str(state.get("question", ""))
        self.allowed = allowed_segments(state)  # type: ignore[arg-type]
        self.lang = str(state.get("lang", "en"))
        self.text = ""
        self.released = ""
        self.closed = False

    def _passes(self, prefix: str) -> bool:
        return passes_checks(prefix, self.tool_results, self.question, self.allowed, self.lang)

    def _release(self, end: int) -> Iterator[AnswerEvent]:
        prefix = self.text[:end]
        if self.closed or len(prefix.strip()) <= len(self.released):
            return
        if not self._passes(prefix):
            self.closed = True
            return
        piece = prefix.strip()[len(self.released) :]
        self.released = prefix.strip()
        yield AnswerEvent("token", piece)

    def feed(self, piece: str) -> Iterator[AnswerEvent]:
        self.text = (self.text + piece).lstrip()
        ends = [m.end() for m in SENTENCE_END.finditer(self.text, len(self.released))]
        if ends:
            yield from self._release(ends[-1])

    def finish(self, answer: str) -> Iterator[AnswerEvent]:
        """Release the rest of the answer the node kept (which may end before the streamed text: an
        answer cut at the token limit keeps its whole sentences only)."""
        kept = answer.strip()
        yield from self._release(len(kept) if kept and self.text.startswith(kept) else len(self.text))


@dataclass(frozen=True)
class SegmentReading:
    """The segments at one moment, for the app's charts."""

    taken_at: float  # time.time()
    description: str  # where the data comes from
    sizes: dict[str, int]  # customers per segment
    rfm: np.ndarray  # per customer: recency (days), frequency (orders), monetary (KRW)
    segments: list[str]  # per customer, in the rows' order of `rfm`
    orders_applied: int | None  # live orders applied so far (None: no live stream)
    consumer: dict[str, Any] | None = None  # InsightService.consumer_status (None: no live stream)


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
class ImportedDataset:
    """An imported order export: where it is kept and how it was segmented."""

    dataset: str
    path: Path
    rows: int  # data rows read
    orders: int
    customers: int
    segments: dict[str, int]  # customers per segment
    skipped: list[str]  # "row N, column C: ..." of the rows left out (with --skip-bad-rows)
    ignored_columns: list[str]
    as_of: float  # the export's last order (recency is counted from it)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path),
                "as_of": datetime.fromtimestamp(self.as_of, UTC).isoformat(timespec="seconds")}  # fmt: skip


@dataclass(frozen=True)
class SimulationRun:
    sent: int
    stream: str
    run_id: str


def generate_history(
    caller: Caller,
    customers: int | None = None,
    orders: int | None = None,
    seed: int | None = None,
    *,
    regenerate: bool = False,
) -> GeneratedHistory:
    """The stored seeded history (generated on first use); None takes the setting. Raises ValueError.

    Admins only (ForbiddenError): the history is the shop's data every account reads.
    """
    _require_admin(caller, "generate-history")
    s = get_insight_settings()
    customers, orders = customers or s.customers, orders or s.orders
    seed = s.seed if seed is None else seed
    h = load_or_generate(customers, orders, seed=seed, regenerate=regenerate)
    return GeneratedHistory(
        len(h.customers), len(h.orders), len(h.items), history_path(customers, orders, seed)
    )


class InsightService:
    """Questions (in threads), live segment readings and Redis operations over one data source."""

    def __init__(
        self,
        open_source: Callable[[], InsightSource],
        context: InsightContext | None = None,
        store: BaseStore | None = None,
    ):
        """`open_source` is called once, on first use; `context` holds the graph's knobs (its source is
        ignored); `store` keeps the question threads (default: the app's store, opened on first use)."""
        self._open_source = open_source
        self._source: InsightSource | None = None
        self._source_lock = threading.Lock()
        self.context = context or InsightContext()
        self._store = store
        self._threads_lock = threading.Lock()  # a thread's turns are read, extended and written back
        self._report_lock = threading.Lock()
        self._report_markdown = REPORT_PENDING
        self._report_version: object = NO_REPORT  # the model version the report is (being) computed for
        self._report_running = False
        self._datasets: dict[str, DatasetSource] = {}

    @classmethod
    def for_source(
        cls, source: InsightSource, context: InsightContext | None = None, store: BaseStore | None = None
    ) -> InsightService:
        return cls(lambda: source, context, store)

    @classmethod
    def from_settings(cls, redis_url: str | None = None, store: BaseStore | None = None) -> InsightService:
        """The given or configured Redis (INSIGHT_REDIS_URL, else REDIS_URL), else the static history."""
        return cls(lambda: configured_source(redis_url), store=store)

    @classmethod
    def history(cls, store: BaseStore | None = None) -> InsightService:
        """The stored history only, even when a Redis is configured."""
        return cls(HistorySource, store=store)

    @classmethod
    def live(cls, rate: float = 20.0, store: BaseStore | None = None) -> InsightService:
        """The configured Redis; else an in-process Redis with simulated orders at `rate`/s; else the history."""
        return cls(lambda: live_source(rate), store=store)

    @classmethod
    def redis(cls, redis_url: str | None = None, store: BaseStore | None = None) -> InsightService:
        """The given or configured Redis; raises RedisNotConfiguredError now when there is none."""
        return cls.for_source(redis_source(redis_url), store=store)

    @property
    def source(self) -> InsightSource:
        with self._source_lock:
            if self._source is None:
                self._source = self._open_source()
            return self._source

    @property
    def store(self) -> BaseStore:
        """Where the threads are kept: the given store, else the app's (SQLite, Redis or Postgres)."""
        with self._threads_lock:
            if self._store is None:
                from personagraph.memory.persistence import make_store

                self._store = make_store()
            return self._store

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

    def stream_lag(self) -> dict[str, int] | None:
        """The order stream's consumer-group lag and pending count when a live Redis source is already
        open (None otherwise: a scrape of /metrics never opens one); raises when Redis is down."""
        source = self._source
        return source.stream_lag() if isinstance(source, RedisSource) else None

    # Questions, in threads owned by the asker

    def ask(
        self,
        caller: Caller,
        question: str,
        thread_id: str | None = None,
        router_mode: str = "hybrid",
        dataset: str | None = None,
    ) -> InsightAnswer:
        """Answer a question from this service's data and keep it in the caller's thread.

        No `thread_id` starts a new thread (its id is in the answer); a given one must be the
        caller's own (NotFoundError otherwise, also for another account's), and its last turn is the
        context of a follow-up ("and in Korean?"). `dataset` asks about an imported dataset instead
        of this service's data (NotFoundError when there is none by that name). Raises
        InvalidQuestionError (or UnsafeIdError for a malformed thread id) before any work.
        """
        final: InsightAnswer | None = None
        for event in self.ask_stream(caller, question, thread_id, router_mode, dataset):
            final = event.answer if event.kind == "final" else final
        if final is None:  # pragma: no cover - the stream always ends with its final event
            raise RuntimeError("the insight run ended without an answer")
        return final

    def ask_stream(
        self,
        caller: Caller,
        question: str,
        thread_id: str | None = None,
        router_mode: str = "hybrid",
        dataset: str | None = None,
    ) -> Iterator[AnswerEvent]:
        """`ask`, as events while the answer is built (see AnswerEvent): the figures and a template
        answer as soon as they are gathered, then the model's narrative in checked sentences, then the
        final answer (kept in the thread). Everything `ask` refuses is refused here, before the first
        event: the checks run when this is called, not when the events are read."""
        mode = validate_router_mode(router_mode)
        question = validate_question(question, self.context.max_question_chars)
        previous = None
        if thread_id is not None:
            turns = self.thread(caller, thread_id)
            previous = previous_turn(turns[-1] if turns else None, turns[-2] if len(turns) > 1 else None)
        else:
            thread_id = uuid.uuid4().hex
        source = self.source if dataset is None else self.dataset_source(caller, dataset)
        # The profile documents are built from this service's own data: an imported dataset is
        # answered from its figures alone, so no other data's numbers reach its prompt.
        use_profiles = self.context.use_profiles and dataset is None
        context = replace(self.context, router_mode=mode, source=source, use_profiles=use_profiles)
        inputs = InsightInput(question=question)
        if previous is not None:
            inputs["previous"] = previous
        return self._stream(caller, inputs, context, thread_id, dataset)

    def _stream(
        self,
        caller: Caller,
        inputs: InsightInput,
        context: InsightContext,
        thread_id: str,
        dataset: str | None,
    ) -> Iterator[AnswerEvent]:
        state: dict[str, Any] = dict(inputs)
        gate: _NarrativeGate | None = None
        config = run_config({}, "insight_qa", caller.user_id)
        stream = graph.stream(inputs, config, context=context, stream_mode=["updates", "messages"])
        for mode, chunk in cast(Iterator[tuple[str, Any]], stream):
            if mode == "messages":
                message, meta = chunk
                if gate is not None and meta.get("langgraph_node") == "answer" and message.content:
                    yield from gate.feed(str(message.content))
                continue
            for node, update in cast(dict[str, Any], chunk).items():
                state.update(update or {})
                if node == "gather":
                    template = template_answer(state.get("intent", ""), state.get("lang", "en"),
                                               state.get("tool_results") or {})  # fmt: skip
                    yield AnswerEvent("figures", template, _figures_data(state, thread_id, dataset))
                    gate = _NarrativeGate(state)
                elif node == "answer" and gate is not None and not state.get("error"):
                    yield from gate.finish(str(state.get("answer", "")))
                elif node == "check_numbers" and state.get("revision_note") and gate is not None:
                    # The answer is rewritten: withdraw what was shown of this one.
                    if gate.released:
                        yield AnswerEvent("reset")
                    gate = _NarrativeGate(state)
        out = InsightAnswer.from_output(state, thread_id, dataset)
        self._keep_turn(caller, thread_id, out)
        yield AnswerEvent("final", out.answer, answer=out)

    def _keep_turn(self, caller: Caller, thread_id: str, out: InsightAnswer) -> None:
        store, namespace = self.store, _threads_namespace(caller)
        with self._threads_lock:
            item = store.get(namespace, thread_id)
            record: dict[str, Any] = dict(item.value) if item is not None else {}
            record.setdefault("title", out.question[:TITLE_CHARS])
            record.setdefault("created_at", _now())
            record["turns"] = [*record.get("turns", []), out.turn()][-MAX_TURNS:]
            record["updated_at"] = _now()
            store.put(namespace, thread_id, record, index=False)

    def threads(self, caller: Caller) -> list[dict[str, Any]]:
        """The caller's threads, newest first: [{"thread_id", "title", "turns", "created_at", "updated_at"}]."""
        store, namespace = self.store, _threads_namespace(caller)
        rows: list[dict[str, Any]] = []
        seen = 0
        while True:
            page = store.search(namespace, limit=100, offset=seen)
            seen += len(page)
            # A search is by namespace prefix, and some stores match text prefixes ("mina" in "mina2"):
            # only this exact namespace is the caller's.
            rows += [{"thread_id": item.key, "title": item.value.get("title", ""),
                      "turns": len(item.value.get("turns", [])), "created_at": item.value.get("created_at", ""),
                      "updated_at": item.value.get("updated_at", "")}
                     for item in page if tuple(item.namespace) == namespace]  # fmt: skip
            if len(page) < 100:
                break
        return sorted(rows, key=lambda row: row["updated_at"], reverse=True)

    def thread(self, caller: Caller, thread_id: str) -> list[dict[str, Any]]:
        """The turns of one of the caller's threads, oldest first; NotFoundError when it is not theirs."""
        check_id(thread_id, "thread_id")
        item = self.store.get(_threads_namespace(caller), thread_id)
        if item is None:
            raise NotFoundError(f"thread_id: no insight thread {thread_id!r}")
        return list(item.value.get("turns", []))

    # Imported datasets (a shop's order export): read by any signed-in caller, imported by admins

    def dataset_source(self, caller: Caller, name: str) -> DatasetSource:
        """An imported dataset's data (opened once per name); NotFoundError when there is none."""
        check_dataset_name(name)
        with self._source_lock:
            found = self._datasets.get(name)
            if found is None:
                try:
                    found = self._datasets[name] = DatasetSource(name)
                except DatasetNotFoundError as exc:
                    raise NotFoundError(str(exc)) from exc
            return found

    def datasets(self, caller: Caller) -> list[dict[str, Any]]:
        """The imported datasets: name, customers, orders, as_of, imported_at, source_file."""
        return list_datasets()

    def import_orders(
        self,
        caller: Caller,
        data: bytes,
        dataset: str,
        *,
        filename: str = "orders.csv",
        replace: bool = False,
        skip_bad_rows: bool = False,
        timezone: str = "Asia/Seoul",
    ) -> ImportedDataset:
        """A shop's order export (CSV bytes) as the new dataset `dataset`, segmented (admins only).

        OrdersFileError names the file or each bad row and column (nothing is written then);
        DatasetExistsError when the name is taken and not `replace`; ValueError for a bad name.
        """
        _require_admin(caller, "import-orders")
        check_dataset_name(dataset)
        if dataset_path(dataset).exists() and not replace:  # before reading a large file
            raise DatasetExistsError(f"dataset: {dataset!r} exists; choose another name or replace it")
        imported = read_orders(data, filename, timezone=timezone, skip_bad_rows=skip_bad_rows)
        model = segment_history(imported.history, components=self.settings.components)
        path = save_dataset(dataset, imported, model, source_file=filename, replace=replace)
        with self._source_lock:
            self._datasets.pop(dataset, None)  # a replaced dataset is read afresh
        source = self.dataset_source(caller, dataset)
        return ImportedDataset(
            dataset=dataset, path=path, rows=imported.rows, orders=len(imported.history.orders),
            customers=len(imported.history.customers), segments=source.segment_sizes(),
            skipped=imported.skipped, ignored_columns=imported.ignored_columns, as_of=source.read().as_of,
        )  # fmt: skip

    # Reading the data (the shop's, shared by every signed-in caller)

    def snapshot(self, caller: Caller) -> Snapshot:
        return self.source.snapshot()

    def segment_model(self, caller: Caller) -> SegmentModel | None:
        return self.source.model()

    def segment_reading(self, caller: Caller) -> SegmentReading:
        source = self.source
        sizes = source.segment_sizes()
        snap = source.snapshot()
        return SegmentReading(
            taken_at=time.time(), description=source.describe(), sizes=sizes, rfm=snap.raw(),
            segments=snap.customers["segment"].tolist(), orders_applied=source.orders_applied(),
            consumer=self.consumer_status(caller),
        )  # fmt: skip

    def consumer_status(self, caller: Caller) -> dict[str, Any] | None:
        """The live consumers and the dead letters: {"consumers": [{"name", "state", "restarts",
        "last_error", ...}], "dead_letters": n, "dead_letter_stream"}; None without a live stream.
        Errors are short kinds ("lost the connection to Redis"); the details are in the server log."""
        return self.source.consumer_status()

    def status(self, caller: Caller) -> dict[str, Any]:
        """Where the data comes from (no credentials), the live orders applied, and the consumers."""
        source = self.source
        return {"source": source.describe(), "mode": source.mode, "orders_applied": source.orders_applied(),
                "consumer": source.consumer_status()}  # fmt: skip

    def segment_stats(self, caller: Caller) -> dict[str, Any]:
        """Counts and the RFM/GMM segment summary, as plain JSON: customers, revenue, each segment's
        size, shares, spend and recency, the live orders applied, and the segment model's centroids."""
        source = self.source
        model = source.model()
        return {
            "source": source.describe(),
            "taken_at": time.time(),
            "orders_applied": source.orders_applied(),
            "consumer": source.consumer_status(),
            **overview(source.snapshot()),
            "model": None if model is None else {
                "version": int(model.version), "n_fit": int(model.n_fit), "fitted_at": float(model.fitted_at),
                "centroids": {name: {k: float(v) for k, v in c.items()} for name, c in model.centroids().items()},
            },
        }  # fmt: skip

    def model_report(self, caller: Caller) -> dict[str, Any]:
        """K-Means vs GMM on the current customers (BIC, silhouette, bootstrap stability): seconds."""
        return model_report(self.snapshot(caller).raw())

    def latest_report_markdown(self, caller: Caller) -> str:
        """The model report as markdown, recomputed in the background when the model version changes.

        Returns at once: the last finished report (or a placeholder) while a new one is computed.
        """
        model = self.segment_model(caller)
        version = model.version if model is not None else None
        with self._report_lock:
            if self._report_version != version and not self._report_running:
                self._report_version, self._report_running = version, True
                threading.Thread(
                    target=self._compute_report, args=(caller,), name="insight-report", daemon=True
                ).start()
            return self._report_markdown

    def _compute_report(self, caller: Caller) -> None:
        try:
            markdown = report_markdown(self.model_report(caller))
        except Exception as exc:  # noqa: BLE001 - shown in place of the report
            markdown = f"_{user_error(log, exc, 'the model report could not be computed')}_"
        with self._report_lock:
            self._report_markdown, self._report_running = markdown, False

    # Changing the data: admins only

    def _redis_source(self) -> RedisSource:
        source = self.source
        if not isinstance(source, RedisSource):
            raise RedisNotConfiguredError(f"this needs the live state in Redis, not {source.describe()}")
        return source

    def ingest_order(self, caller: Caller, order: Mapping[str, Any]) -> dict[str, Any]:
        """Publish one shop order to the live stream, where the consumers apply it (once per order id).

        Admins only (ForbiddenError). The order is checked first (InvalidOrderError names the field,
        unknown fields included); RedisNotConfiguredError when the data is not a live Redis.
        """
        _require_admin(caller, "ingest_order")
        valid = parse_order(order)
        source = self._redis_source()
        source.bootstrap()
        entry = publish(source.store.r, source.settings.stream, [valid])[0]
        return {"order_id": valid.order_id, "customer_id": valid.customer_id, "stream": source.settings.stream,
                "entry_id": entry}  # fmt: skip

    def dead_letters(self, caller: Caller, count: int = 20) -> list[dict[str, str]]:
        """The latest dead-lettered stream entries, newest first, with the reason and the raw entry
        (truncated). Admins only: a raw entry is the shop's data as it arrived."""
        _require_admin(caller, "dead_letters")
        if not 1 <= count <= 1000:
            raise ValueError(f"count: between 1 and 1000; got {count}")
        source = self._redis_source()
        return source.store.dead_letters(source.dead_letter_stream, count)

    def accept_drift(self, caller: Caller) -> dict[str, Any]:
        """Swap in the refit held as drift (a person looked at the change and accepts it) as the new
        reference, and re-score every customer with it. Admins only; NotFoundError when no refit is
        held; RedisNotConfiguredError when the data is not a live Redis (no live refits)."""
        _require_admin(caller, "accept_drift")
        source = self._redis_source()
        model = source.accept_drift()
        if model is None:
            raise NotFoundError("no refit is held as drift: nothing to accept")
        return {
            "accepted": True,
            "model_version": int(model.version),
            "segments": source.store.segment_sizes(),
        }

    def load_history(self, caller: Caller) -> LoadedHistory:
        """Replace the live state with the history, refit the model and score every customer (admins)."""
        _require_admin(caller, "load")
        source = self._redis_source()
        loaded = source.reload_history()
        return LoadedHistory(customers=loaded, segments=source.store.segment_sizes())

    def simulate(
        self,
        caller: Caller,
        *,
        rate: float,
        seed: int,
        count: int | None = None,
        seconds: float | None = None,
        speed: float | None = None,
        scenario: str = "steady",
        shift_after_days: float = 3.0,
    ) -> SimulationRun:
        """Publish live orders until `count` orders or `seconds` (ValueError without either).

        Without `speed`: `rate` orders per real second, stamped with the wall clock. With `speed`
        (simulated seconds per real second): the shop's simulated clock runs at that speed from where
        it stands (the history's end when none is set), every reader of the state (consumers, the
        tab) uses it, and the customers buy at the history's rates; `scenario` "shift" changes the
        order mix `shift_after_days` simulated days from the start (the drift report must catch it).
        """
        _require_admin(caller, "simulate")
        check_simulation_options(speed, scenario, shift_after_days)
        source = self._redis_source()
        source.bootstrap()
        stream = source.settings.stream
        if speed is None:
            factory = source.order_factory(seed)
            sent = simulate(source.store.r, stream, factory, rate=rate, count=count, seconds=seconds)
            return SimulationRun(sent=sent, stream=stream, run_id=factory.run_id)
        history = source.history()
        current = source.store.clock()
        start = current.now() if current is not None else history.anchor
        clock = SimClock.starting_at(start, speed)
        shift = shift_scenario(start + shift_after_days * DAY) if scenario == "shift" else None
        factory = OrderFactory.from_history(history, seed=seed, shift=shift)
        source.store.set_clock(clock)
        sent = simulate(source.store.r, stream, factory, rate=rate, count=count, seconds=seconds, clock=clock)
        return SimulationRun(sent=sent, stream=stream, run_id=factory.run_id)

    def consume(
        self, caller: Caller, name: str, *, seconds: float | None = None, refit_interval_s: float | None = None,
        record_latency: bool = False,
    ) -> ConsumerStats:  # fmt: skip
        """Run one supervised consumer of the group for `seconds`, or until Ctrl-C; its counts (admins).

        A failure (Redis gone, an unexpected error) restarts it with backoff; bad entries are
        dead-lettered and never stop it.
        """
        _require_admin(caller, "consume")
        source = self._redis_source()
        source.bootstrap()
        consumer = source.consumer(name, record_latency=record_latency,
                                   refit_interval_s=refit_interval_s or source.settings.refit_interval_s)  # fmt: skip
        supervisor = SupervisedConsumer(consumer)
        try:
            return supervisor.run(max_seconds=seconds)
        except KeyboardInterrupt:  # Ctrl-C is how an endless consumer is stopped: report what it did
            return consumer.stats


class _IngestedOrder(Order):
    """An order from outside: no unknown fields, ids safe for the store's keys."""

    model_config = ConfigDict(extra="forbid")


def parse_order(order: Mapping[str, Any]) -> Order:
    """A valid Order, or InvalidOrderError naming the first bad field (e.g. `items.0.qty`)."""
    if not isinstance(order, Mapping):
        raise InvalidOrderError("order", "must be a JSON object")
    try:
        valid = _IngestedOrder.model_validate(dict(order))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "order"
        raise InvalidOrderError(field, str(first["msg"]).removeprefix("Value error, ")) from exc
    for name in ("order_id", "customer_id"):
        try:
            check_id(getattr(valid, name), name)
        except ValueError as exc:
            raise InvalidOrderError(name, str(exc).split(": ", 1)[-1]) from exc
    return valid
