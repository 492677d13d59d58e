"""Prometheus metrics of every graph run and model call, gathered by one LangChain callback handler.

    install_observer()                 # once per process (create_app does it): every run is observed
    generate_latest(REGISTRY)          # the text GET /metrics serves (api/metrics.py)

Why a callback handler: every graph run and every model call already reports its start, end, error
and streamed tokens to LangChain callbacks, with `metadata` saying which graph node it belongs to.
`install_observer` hangs one `Observer` on LangChain's configure hook (the way LangSmith's tracer is
attached), so services and nodes need no per-call wiring and every run, from any caller, is counted.
Model calls are labelled by role because serving/models.py passes `{"role": role}` as run metadata.

Labels never carry personal data: only graph, node, role, kind, category and stage, each from a
fixed vocabulary (anything else is reported as "other"). No account, thread, persona or text.

The same handler writes one log line per node (DEBUG at its start, INFO at its end with its
duration) and tells serving/logs.py which graph and node a log line is written in.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult
from langchain_core.runnables.config import var_child_runnable_config
from langchain_core.tracers.context import register_configure_hook
from prometheus_client import CollectorRegistry, Counter, GCCollector, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from personagraph.serving.logs import set_run_labels
from personagraph.serving.settings import ROLES

log = logging.getLogger("personagraph.runs")

REGISTRY = CollectorRegistry()  # the one registry /metrics serves (not the global default one)
ProcessCollector(registry=REGISTRY)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
GCCollector(registry=REGISTRY)

GRAPHS = frozenset({"persona_chat", "twin_interview", "crm_message", "insight_qa"})
OTHER = "other"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")  # node names and categories: code identifiers only

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)
_NODE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)

TURN_SECONDS = Histogram(
    "personagraph_turn_seconds", "Duration of a whole graph run (one chat turn, one answer), by graph.",
    ["graph"], buckets=_LATENCY_BUCKETS, registry=REGISTRY,
)  # fmt: skip
TURN_ERRORS = Counter(
    "personagraph_turn_errors_total", "Graph runs that ended in an error, by graph and kind "
    "(model: the model server failed; stopped: the reader stopped or left; internal: anything else).",
    ["graph", "kind"], registry=REGISTRY,
)  # fmt: skip
FIRST_TOKEN_SECONDS = Histogram(
    "personagraph_time_to_first_token_seconds", "From the start of a graph run to its first token, by graph and "
    "stage (model: the first token a model streamed; reply: the first checked text a reader was sent).",
    ["graph", "stage"], buckets=_LATENCY_BUCKETS, registry=REGISTRY,
)  # fmt: skip
NODE_SECONDS = Histogram(
    "personagraph_node_seconds", "Duration of one node run, by graph and node.",
    ["graph", "node"], buckets=_NODE_BUCKETS, registry=REGISTRY,
)  # fmt: skip
MODEL_CALLS = Counter(
    "personagraph_model_calls_total", "Model calls that answered, by role.", ["role"], registry=REGISTRY
)
MODEL_ERRORS = Counter(
    "personagraph_model_errors_total", "Model calls that failed, by role and kind (timeout, connection, "
    "http_4xx, http_5xx, invalid_output, cancelled, other).", ["role", "kind"], registry=REGISTRY,
)  # fmt: skip
MODEL_SECONDS = Histogram(
    "personagraph_model_call_seconds", "Duration of one model call (request to last token), by role.",
    ["role"], buckets=_LATENCY_BUCKETS, registry=REGISTRY,
)  # fmt: skip
MODEL_TOKENS = Counter(
    "personagraph_model_tokens_total", "Model tokens by role and kind: input and output from the server's "
    "usage report; a streamed reply without one counts its chunks as output.",
    ["role", "kind"], registry=REGISTRY,
)  # fmt: skip
SAFETY_BLOCKS = Counter(
    "personagraph_safety_blocks_total", "Messages and drafts the safety checks blocked, by stage (input, "
    "output) and category.", ["stage", "category"], registry=REGISTRY,
)  # fmt: skip
API_ERRORS = Counter(
    "personagraph_api_errors_total", "HTTP responses with an error status, by kind and status.",
    ["kind", "status"], registry=REGISTRY,
)  # fmt: skip


def label(value: object, allowed: Iterable[str] | None = None) -> str:
    """A label value from a fixed vocabulary: `value` if allowed (or a code identifier), else "other"."""
    text = str(value) if value is not None else ""
    if allowed is not None:
        return text if text in allowed else OTHER
    return text if _NAME.match(text) else OTHER


def role_label(role: object) -> str:
    return label(role, ROLES)


# --- errors by kind ---------------------------------------------------------------------------------

_STATUS_KINDS = {400: "invalid", 401: "unauthenticated", 403: "forbidden", 404: "not_found", 405: "method",
                 409: "conflict", 413: "too_large", 422: "invalid", 429: "rate_limited", 500: "internal",
                 502: "upstream", 503: "unavailable", 504: "upstream"}  # fmt: skip


def api_error_kind(status: int) -> str:
    return _STATUS_KINDS.get(status, "client" if status < 500 else "server")


def record_api_error(status: int) -> None:
    """Count one HTTP error response (status >= 400; the middleware in api/metrics.py calls this)."""
    if status >= 400:
        API_ERRORS.labels(kind=api_error_kind(status), status=str(status)).inc()


def model_error_kind(error: BaseException) -> str:
    """A short, fixed name for why a model call failed (the client's exception classes, by name)."""
    names = {cls.__name__ for cls in type(error).__mro__}
    if "APITimeoutError" in names or isinstance(error, TimeoutError):
        return "timeout"
    if "APIConnectionError" in names or isinstance(error, ConnectionError):
        return "connection"
    status = getattr(error, "status_code", None)
    if isinstance(status, int):
        return "http_5xx" if status >= 500 else "http_4xx"
    if names & {"CancelledError", "GeneratorExit", "KeyboardInterrupt"}:
        return "cancelled"
    return OTHER


def record_model_error(role: str, kind: str) -> None:
    """Count a failed model call; serving/models.structured calls it for output that stays invalid."""
    MODEL_ERRORS.labels(role=role_label(role), kind=label(kind)).inc()


def observe_first_token(graph: str, stage: str, seconds: float) -> None:
    """Time to the first text of a run; services call it for what a reader is first sent (stage reply)."""
    FIRST_TOKEN_SECONDS.labels(graph=label(graph, GRAPHS), stage=label(stage, ("model", "reply"))).observe(
        seconds
    )


def _turn_error_kind(error: BaseException) -> str:
    names = {cls.__name__ for cls in type(error).__mro__}
    if names & {"GeneratorExit", "CancelledError", "GraphInterrupt", "_Stopped"}:
        return "stopped"
    return "model" if "ModelError" in names else "internal"


# --- the callback handler ---------------------------------------------------------------------------


@dataclass
class _Run:
    """What the observer remembers about a run until it ends."""

    kind: str  # "graph", "node", "model" or "chain" (anything else inside a graph)
    graph: str | None
    node: str | None
    started: float
    root: UUID | None = None  # the graph run this run belongs to
    role: str = OTHER
    chunks: int = 0
    first_token: bool = False  # graph runs: a model token was seen already


class Observer(BaseCallbackHandler):
    """Turns run events into the metrics above and per-node log lines. Thread-safe, never raises."""

    run_inline = True  # called in the node's own thread (async runs too), so logs keep its context
    raise_error = False

    MAX_RUNS = 10_000  # runs remembered at once; a run that never reports its end is forgotten first

    def __init__(self) -> None:
        super().__init__()
        self._runs: dict[UUID, _Run] = {}
        self._lock = threading.Lock()

    def _remember(self, run_id: UUID, run: _Run) -> None:
        """Keep a run until it ends (call with the lock held)."""
        if len(self._runs) >= self.MAX_RUNS:
            self._runs.pop(next(iter(self._runs)))
        self._runs[run_id] = run

    # -- what a log line is inside

    def labels_of(self, run_id: UUID | None) -> tuple[str | None, str | None]:
        with self._lock:
            run = self._runs.get(run_id) if run_id is not None else None
        return (run.graph, run.node) if run is not None else (None, None)

    def current_labels(self) -> tuple[str | None, str | None]:
        """(graph, node) of the run the calling code runs in: LangChain's current run config names its
        callback manager, whose parent run is the node (or a run inside it)."""
        config = var_child_runnable_config.get()
        if not config:
            return None, None
        manager = config.get("callbacks")
        graph, node = self.labels_of(getattr(manager, "parent_run_id", None))
        if node is None:
            node_name = (config.get("metadata") or {}).get("langgraph_node")
            node = label(node_name) if node_name else None
        return graph, node

    # -- chains: graphs and nodes

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        name = kwargs.get("name") or ""
        now = time.perf_counter()
        with self._lock:
            parent = self._runs.get(parent_run_id) if parent_run_id is not None else None
            if parent is None:
                if name in GRAPHS:
                    self._remember(run_id, _Run("graph", name, None, now, root=run_id))
                return  # a run outside any graph (a bare model chain): not a turn
            node_name = (metadata or {}).get("langgraph_node")
            if parent.kind == "graph" and node_name == name:
                run = _Run("node", parent.graph, label(name), now, root=parent.root)
            else:
                run = _Run("chain", parent.graph, parent.node, now, root=parent.root)
            self._remember(run_id, run)
        if run.kind == "node":
            log.debug(
                "node %s started", run.node, extra={"graph": run.graph, "node": run.node, "event": "start"}
            )

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            run = self._runs.pop(run_id, None)
        if run is None:
            return
        seconds = time.perf_counter() - run.started
        if run.kind == "graph":
            graph = str(run.graph)
            TURN_SECONDS.labels(graph=graph).observe(seconds)
            log.info("graph %s finished in %.3f s", graph, seconds,
                     extra={"graph": graph, "duration_s": round(seconds, 4), "event": "end"})  # fmt: skip
        elif run.kind == "node":
            NODE_SECONDS.labels(graph=str(run.graph), node=str(run.node)).observe(seconds)
            self._count_blocks(outputs)
            log.info("node %s finished in %.3f s", run.node, seconds,
                     extra={"graph": run.graph, "node": run.node, "duration_s": round(seconds, 4), "event": "end"})  # fmt: skip

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            run = self._runs.pop(run_id, None)
        if run is None:
            return
        seconds = time.perf_counter() - run.started
        kind = _turn_error_kind(error)
        if run.kind == "graph":
            TURN_ERRORS.labels(graph=str(run.graph), kind=kind).inc()
            log.warning("graph %s ended (%s) after %.3f s: %s", run.graph, kind, seconds, type(error).__name__,
                        extra={"graph": run.graph, "kind": kind, "duration_s": round(seconds, 4), "event": "error"})  # fmt: skip
        elif run.kind == "node":
            level = logging.INFO if kind == "stopped" else logging.WARNING
            log.log(level, "node %s ended (%s) after %.3f s: %s", run.node, kind, seconds, type(error).__name__,
                    extra={"graph": run.graph, "node": run.node, "kind": kind, "duration_s": round(seconds, 4),
                           "event": "error"})  # fmt: skip

    @staticmethod
    def _count_blocks(outputs: Any) -> None:
        """Safety blocks a node recorded in its update: `{"blocks": [{"stage", "category", "safe"}]}`."""
        blocks = outputs.get("blocks") if isinstance(outputs, Mapping) else None
        if not isinstance(blocks, list):
            return
        for block in blocks:
            if isinstance(block, Mapping) and block.get("safe") is False:
                stage = label(block.get("stage"), ("input", "output"))
                SAFETY_BLOCKS.labels(stage=stage, category=label(block.get("category"))).inc()

    # -- models

    def _model_start(self, run_id: UUID, parent_run_id: UUID | None, metadata: dict[str, Any] | None) -> None:
        role = role_label((metadata or {}).get("role"))
        with self._lock:
            parent = self._runs.get(parent_run_id) if parent_run_id is not None else None
            graph, node, root = (parent.graph, parent.node, parent.root) if parent else (None, None, None)
            self._remember(run_id, _Run("model", graph, node, time.perf_counter(), root=root, role=role))

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._model_start(run_id, parent_run_id, metadata)

    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._model_start(run_id, parent_run_id, metadata)

    def on_llm_new_token(
        self, token: str | list[str | dict[str, Any]], *, run_id: UUID, **kwargs: Any
    ) -> None:
        first: tuple[str, float] | None = None
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return
            run.chunks += 1
            graph_run = self._runs.get(run.root) if run.root is not None else None
            if graph_run is not None and not graph_run.first_token:
                graph_run.first_token = True
                first = (str(graph_run.graph), time.perf_counter() - graph_run.started)
        if first is not None:
            FIRST_TOKEN_SECONDS.labels(graph=first[0], stage="model").observe(first[1])

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            run = self._runs.pop(run_id, None)
        if run is None:
            return
        MODEL_CALLS.labels(role=run.role).inc()
        MODEL_SECONDS.labels(role=run.role).observe(time.perf_counter() - run.started)
        tokens_in, tokens_out = reported_usage(response)
        if tokens_out is None and run.chunks:
            tokens_out = run.chunks  # no usage report (a stream without include_usage): chunks
        if tokens_in:
            MODEL_TOKENS.labels(role=run.role, kind="input").inc(tokens_in)
        if tokens_out:
            MODEL_TOKENS.labels(role=run.role, kind="output").inc(tokens_out)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            run = self._runs.pop(run_id, None)
        if run is not None:
            MODEL_ERRORS.labels(role=run.role, kind=model_error_kind(error)).inc()


def reported_usage(response: LLMResult) -> tuple[int | None, int | None]:
    """(input, output) tokens the server reported: the message's usage_metadata, else `token_usage`."""
    for generations in response.generations:
        for generation in generations:
            usage = getattr(getattr(generation, "message", None), "usage_metadata", None)
            if usage:
                return int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
    token_usage = (response.llm_output or {}).get("token_usage") or {}
    if token_usage:
        return int(token_usage.get("prompt_tokens") or 0), int(token_usage.get("completion_tokens") or 0)
    return None, None


# --- values read at scrape time ---------------------------------------------------------------------

QueueSource = Callable[[], Mapping[str, float]]  # stage ("queued", "running") -> how many
LagSource = Callable[[], Mapping[str, float] | None]  # {"lag", "pending"}, None when there is no stream


class _LiveCollector(Collector):
    """Gauges read when /metrics is scraped: queue depths and the insight stream's consumer lag.

    The sources are set by the app (api/metrics.py); one that fails is left out of that scrape.
    """

    def __init__(self) -> None:
        self.queues: dict[str, QueueSource] = {}
        self.lag: LagSource | None = None

    def describe(self) -> list[Metric]:
        return []  # families vary with the sources; nothing to check at registration

    def collect(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily(
            "personagraph_queue_depth", "Work waiting or running, by kind (gradio: app events; twin_run: twin "
            "runs; crm_batch: CRM batches) and stage (queued, running).", labels=["kind", "stage"],
        )  # fmt: skip
        for kind, source in list(self.queues.items()):
            try:
                values = dict(source())
            except Exception as exc:  # noqa: BLE001 - a scrape never fails for one source
                log.debug("queue depth of %s not read: %s", kind, type(exc).__name__)
                continue
            for stage, value in values.items():
                depth.add_metric([kind, label(stage, ("queued", "running"))], float(value))
        yield depth
        lag = self.lag() if self.lag is not None else None
        if lag is not None:
            yield GaugeMetricFamily(
                "personagraph_insight_stream_lag",
                "Orders in the insight stream not yet delivered to the consumer group (XINFO GROUPS lag).",
                value=float(lag.get("lag") or 0),
            )
            yield GaugeMetricFamily(
                "personagraph_insight_stream_pending",
                "Orders delivered to a consumer but not yet acknowledged (XINFO GROUPS pending).",
                value=float(lag.get("pending") or 0),
            )


LIVE = _LiveCollector()
REGISTRY.register(LIVE)


def set_queue_source(kind: str, source: QueueSource | None) -> None:
    """Report `source()`'s {stage: count} as personagraph_queue_depth{kind=...} (None removes it)."""
    if source is None:
        LIVE.queues.pop(kind, None)
    else:
        LIVE.queues[label(kind)] = source


def set_lag_source(source: LagSource | None) -> None:
    LIVE.lag = source


# --- installing the observer ------------------------------------------------------------------------

OBSERVER = Observer()
_observer_var: ContextVar[Observer | None] | None = None
_install_lock = threading.Lock()


def install_observer() -> Observer:
    """Add the observer to every LangChain run in this process, from any thread (idempotent).

    The hook's ContextVar has the observer as its default, so threads that never set it (LangGraph's
    pool, Starlette's workers, background runs) see it too.
    """
    global _observer_var
    with _install_lock:
        if _observer_var is None:
            _observer_var = ContextVar("personagraph_observer", default=OBSERVER)
            register_configure_hook(_observer_var, inheritable=True)
            set_run_labels(OBSERVER.current_labels)
    return OBSERVER
