"""The insight tab: live segment sizes, RFM scatter, K-Means vs GMM report, Q&A with the figures used.

    with gr.Tab("Insight"):
        build_insight_tab(accounts)       # or build_insight_tab(accounts, InsightService.for_source(...))

Every handler takes the signed-in Caller from the request (`caller_of`), never from a form field.
The customer data is the shop's (any signed-in account sees it); the questions are kept in a
follow-up thread of the asker's own, one per browser session (a gr.State holding the thread id,
kept on the server), until "New question thread" starts another.

Everything goes through one InsightService (services/insight.py). Data: with INSIGHT_REDIS_URL /
REDIS_URL set, the live state in that Redis (run `personagraph insight simulate` and `consume`
against it). With nothing set, the first refresh of the tab starts an in-process Redis (LocalRedis)
loaded with the generated history, a consumer (refitting on schedule) and a simulator at 20
orders/s, so the charts move with no setup; if no Redis can be started, the static history is shown
and the tab says so.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import plotly.graph_objects as go

from personagraph.accounts.identity import Caller, ForbiddenError, NotFoundError
from personagraph.accounts.store import AccountStore
from personagraph.insight.importer import list_datasets
from personagraph.insight.questions import ROUTER_MODES, InvalidQuestionError
from personagraph.insight.segments import SEGMENT_LABELS, label
from personagraph.insight.source import RedisNotConfiguredError
from personagraph.services.insight import REPORT_PENDING, InsightService
from personagraph.serving.redact import user_error
from personagraph.ui.identity import caller_of

log = logging.getLogger(__name__)

COLOURS = {"vip": "#d62728", "loyal": "#1f77b4", "new": "#2ca02c", "at_risk": "#ff7f0e", "dormant": "#7f7f7f",
           "regular": "#9467bd", "occasional": "#8c564b", "unscored": "#cccccc"}  # fmt: skip
ChatHistory = list[dict[str, Any]]
SizeSample = tuple[float, dict[str, int]]


def sizes_figure(samples: list[SizeSample], simulated: bool = False) -> go.Figure:
    """Segment sizes over the data's time: the simulated clock's in the live demo, so a day on the axis
    is a day of shopping, not a few seconds of the demo."""
    fig = go.Figure()
    segments = [s for s in SEGMENT_LABELS if any(s in sizes for _, sizes in samples)]
    times = [datetime.fromtimestamp(t, tz=UTC) for t, _ in samples]
    for s in segments:
        fig.add_trace(go.Scatter(x=times, y=[sizes.get(s, 0) for _, sizes in samples], mode="lines+markers",
                                 name=label(s), line={"color": COLOURS.get(s)}))  # fmt: skip
    fig.update_layout(
        title="Segment sizes (customers)" + (" · simulated time (UTC)" if simulated else ""), height=320,
        margin={"l": 40, "r": 10, "t": 40, "b": 30}, xaxis={"type": "date"},
    )  # fmt: skip
    return fig


def boundary_markdown(customers: Any, threshold: float, limit: int = 8) -> str:
    """Soft memberships: how many customers of each segment are at least `threshold` likely to belong
    to another one (the boundary customers a marketer can target), largest pairs first."""
    if customers is None or "segment" not in customers or "p_vip" not in customers:
        return ""
    pairs: list[tuple[int, str, str]] = []
    for target in SEGMENT_LABELS:
        column = f"p_{target}"
        if column not in customers:
            continue
        near = customers[(customers["segment"] != target) & (customers[column].fillna(0.0) >= threshold)]
        for segment, n in near["segment"].value_counts().items():
            pairs.append((int(n), str(segment), target))
    if not pairs:
        return f"\n\n**Boundary customers** (probability ≥ {threshold:.0%} of another segment): none."
    lines = ["", "", f"**Boundary customers** (probability ≥ {threshold:.0%} of another segment; ask e.g. "
             "\"VIP에 가까운 충성 고객\" or \"customers about to become at-risk\")", "",
             "| customers | now in | close to |", "|---|---|---|"]  # fmt: skip
    for n, segment, target in sorted(pairs, reverse=True)[:limit]:
        lines.append(
            f"| {n:,} | {label(segment)} / {label(segment, 'ko')} | {label(target)} / {label(target, 'ko')} |"
        )
    return "\n".join(lines)


def segments_line(segments: dict[str, Any] | None) -> str:
    """The segment model's state for the status: version, simulated time, drift (held or reported)."""
    if not segments:
        return ""
    parts = [f"model v{int(segments.get('model_version') or 0)}"]
    clock = segments.get("clock")
    if clock:
        now = datetime.fromtimestamp(float(clock["now"]), tz=UTC).strftime("%Y-%m-%d %H:%M")
        parts.append(f"simulated time {now} UTC ({float(clock['speed']):g}× real time)")
    drift = segments.get("drift")
    if drift:
        reasons = "; ".join(str(r) for r in drift.get("reasons") or [])[:400]
        if segments.get("held"):
            parts.append(f"⚠ **drift: refit v{drift.get('version')} held** (segments kept): {reasons}")
        else:
            parts.append(f"⚠ **drift reported** at refit v{drift.get('version')}: {reasons}")
    else:
        parts.append("no drift")
    return " · ".join(parts)


def scatter_figure(raw: np.ndarray, segments: list[str], limit: int = 2000, seed: int = 0) -> go.Figure:
    """Recency vs frequency (log axes), marker size by spend, coloured by segment (a sample of customers)."""
    idx = np.arange(len(raw))
    if len(idx) > limit:
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=limit, replace=False))
    seg = np.array(segments)[idx] if len(segments) else np.array([], dtype=str)
    fig = go.Figure()
    for s in [s for s in COLOURS if s in set(seg.tolist())]:
        rows = raw[idx][seg == s]
        fig.add_trace(go.Scattergl(
            x=rows[:, 0] + 1, y=rows[:, 1], mode="markers", name=label(s),
            marker={"color": COLOURS[s], "size": 4 + 3 * np.log10(1 + rows[:, 2] / 1e5), "opacity": 0.6},
            hovertemplate="recency %{x:.0f} d<br>orders %{y}<extra>" + label(s) + "</extra>",
        ))  # fmt: skip
    fig.update_layout(title="RFM: recency vs frequency (size = spend)", height=380,
                      xaxis={"title": "days since last order + 1", "type": "log"},
                      yaxis={"title": "orders", "type": "log"}, margin={"l": 40, "r": 10, "t": 40, "b": 40})  # fmt: skip
    return fig


def report_text(service: InsightService, caller: Caller) -> str:
    """The K-Means vs GMM report (recomputed in the background per model version) and the GMM centroids."""
    text = service.latest_report_markdown(caller)
    model = service.segment_model(caller)
    if model is not None:
        centres = model.centroids()
        lines = ["", "**Current GMM segments (centroids)**", "", "| segment | recency (days) | orders | spend (KRW) |",
                 "|---|---|---|---|"]  # fmt: skip
        for name, c in centres.items():
            lines.append(f"| {label(name)} / {label(name, 'ko')} | {c['recency_days']:.0f} | {c['frequency']:.1f} | "
                         f"{c['monetary']:,.0f} |")  # fmt: skip
        text += (
            "\n"
            + "\n".join(lines)
            + f"\n\nModel version {model.version}, fitted on {model.n_fit:,} customers."
        )
    return text


def consumer_line(status: dict[str, Any] | None) -> str:
    """The consumers' health for the status line: state, restarts, last error (short), dead letters."""
    if status is None:
        return ""
    parts = []
    for health in status.get("consumers") or []:
        text = f"consumer {health.get('name', '?')}: {health.get('state', '?')}"
        if health.get("restarts"):
            text += f", restarted {int(health['restarts'])}×"
        if health.get("last_error"):
            at = health.get("last_error_at")
            when = f" at {time.strftime('%H:%M:%S', time.localtime(at))}" if at else ""
            text += f", last error{when}: {health['last_error']}"
        parts.append(text)
    if not parts:
        parts.append("no consumer has reported")
    dead = status.get("dead_letters")
    parts.append(f"dead-lettered: {dead:,}" if isinstance(dead, int) else "dead-lettered: unknown")
    return " · ".join(parts)


class InsightPanel:
    """The tab's callbacks over one service, and the segment sizes read so far (the sizes chart: the
    shop's data, the same for every account)."""

    def __init__(self, service: InsightService):
        self.service = service
        self.sizes: deque[SizeSample] = deque(maxlen=600)

    def refresh(self, caller: Caller) -> tuple[str, go.Figure, go.Figure, str]:
        """One timer tick: status, sizes over time, RFM scatter, model report."""
        try:
            reading = self.service.segment_reading(caller)
            snap = self.service.snapshot(caller)  # the reading's (cached): its time is the data's clock
            segments = (reading.consumer or {}).get("segments")
            simulated = bool(segments and segments.get("clock"))
            self.sizes.append((snap.as_of, reading.sizes))
            status = f"**Data:** {reading.description} · customers: {sum(reading.sizes.values()):,}"
            if reading.orders_applied is not None:
                status += f" · live orders applied: {reading.orders_applied:,}"
            if reading.consumer is not None:
                status += f"\n\n**Live stream:** {consumer_line(reading.consumer)}"
            if segments:
                status += f"\n\n**Segments:** {segments_line(segments)}"
            threshold = self.service.settings.boundary_threshold
            return (status, sizes_figure(sorted(self.sizes, key=lambda x: x[0]), simulated),
                    scatter_figure(reading.rfm, reading.segments),
                    report_text(self.service, caller) + boundary_markdown(snap.customers, threshold))  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - the tab shows the problem instead of breaking
            empty = go.Figure()
            return (
                f"**Data unavailable:** {user_error(log, exc, 'the customer data could not be read')}",
                empty,
                empty,
                "",
            )

    def answer_question(
        self,
        caller: Caller,
        question: str,
        history: ChatHistory | None,
        router_mode: str = "hybrid",
        thread_id: str | None = None,
    ) -> tuple[ChatHistory, str, str, str | None]:
        """Ask the service in the session's thread; returns the chat, the figures it used (JSON), the
        cleared textbox and the thread id (new on the first question of a thread)."""
        history = list(history or [])
        if not (question or "").strip():
            return history, "", "", thread_id
        history.append({"role": "user", "content": question})
        try:
            out = self.service.ask(caller, question, thread_id, router_mode)
        except InvalidQuestionError as exc:
            history.append({"role": "assistant", "content": f"⚠ {exc}"})
            return history, "", "", thread_id
        except NotFoundError:  # the thread is gone (its store was reset): the next question starts one
            history.append({"role": "assistant", "content": "⚠ This question thread is gone; ask again to "
                            "start a new one."})  # fmt: skip
            return history, "", question, None
        details = {
            "intent": out.intent, "router": out.router, "scope": out.scope, "figures_used": out.tool_results,
            "numeric_check": out.check, "flagged": out.flagged, "follow_up": out.follow_up,
            "thread_id": out.thread_id, "profiles": [d.get("source") for d in out.retrieved],
        }  # fmt: skip
        history.append({"role": "assistant", "content": out.answer})
        return history, json.dumps(details, ensure_ascii=False, indent=1, default=str), "", out.thread_id

    def stream_answer(
        self,
        caller: Caller,
        question: str,
        history: ChatHistory | None,
        router_mode: str = "hybrid",
        thread_id: str | None = None,
        dataset: str | None = None,
    ) -> Iterator[tuple[ChatHistory, str, str, str | None]]:
        """`answer_question`, shown as it is built (issue 21): the figures and a template answer at
        once, then the model's narrative in checked sentences below them; the final answer replaces
        the narrative (a rewritten or flagged one). `dataset`: an imported dataset ("" = this data)."""
        history = list(history or [])
        if not (question or "").strip():
            yield history, "", "", thread_id
            return
        history.append({"role": "user", "content": question})
        try:
            events = self.service.ask_stream(caller, question, thread_id, router_mode, dataset or None)
        except InvalidQuestionError as exc:
            yield [*history, {"role": "assistant", "content": f"⚠ {exc}"}], "", "", thread_id
            return
        except NotFoundError as exc:  # the thread is gone (its store was reset), or no such dataset
            if "dataset" in str(exc):
                yield [*history, {"role": "assistant", "content": f"⚠ {exc}"}], "", question, thread_id
            else:
                yield [*history, {"role": "assistant", "content": "⚠ This question thread is gone; ask again "
                                  "to start a new one."}], "", question, None  # fmt: skip
            return
        template, narrative, details, pending = "", "", "", True
        try:
            for event in events:
                if event.kind == "figures":
                    template, thread_id = event.text, event.data.get("thread_id") or thread_id
                    details = json.dumps({k: event.data.get(k) for k in ("intent", "router", "scope", "follow_up",
                                          "dataset", "thread_id", "tool_results")}, ensure_ascii=False, indent=1,
                                         default=str)  # fmt: skip
                elif event.kind == "token":
                    narrative += event.text
                elif event.kind == "reset":
                    narrative = ""
                elif event.kind == "final" and event.answer is not None:
                    out, pending = event.answer, False
                    narrative, thread_id = out.answer, out.thread_id
                    details = json.dumps({
                        "intent": out.intent, "router": out.router, "scope": out.scope, "dataset": out.dataset,
                        "figures_used": out.tool_results, "numeric_check": out.check, "flagged": out.flagged,
                        "follow_up": out.follow_up, "thread_id": out.thread_id,
                        "profiles": [d.get("source") for d in out.retrieved],
                    }, ensure_ascii=False, indent=1, default=str)  # fmt: skip
                yield [*history, {"role": "assistant", "content": _composed(template, narrative, pending)}], \
                    details, "", thread_id  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - the chat shows the problem; the figures stay
            problem = user_error(log, exc, "the answer could not be finished")
            yield [*history, {"role": "assistant", "content": _composed(template, f"⚠ {problem}", False)}], \
                details, "", thread_id  # fmt: skip

    def import_orders(
        self, caller: Caller, path: str | None, name: str, replace: bool, skip_bad_rows: bool
    ) -> tuple[str, Any]:
        """Import an uploaded order export as a dataset (admins); the result (or the problems, by row
        and column) as markdown, and the data picker's choices with the new dataset chosen."""
        if not path:
            return "⚠ file: choose the order export (CSV) first", gr.update()
        try:
            data = Path(path).read_bytes()
            out = self.service.import_orders(caller, data, (name or "").strip(), filename=Path(path).name,
                                             replace=bool(replace), skip_bad_rows=bool(skip_bad_rows))  # fmt: skip
        except (ValueError, ForbiddenError) as exc:  # OrdersFileError names rows and columns
            return f"⚠ {exc}".replace("\n", "  \n"), gr.update()
        sizes = ", ".join(f"{label(k)} {v:,}" for k, v in sorted(out.segments.items(), key=lambda kv: -kv[1]))
        text = (f"**Imported {out.dataset}:** {out.customers:,} customers, {out.orders:,} orders ({out.rows:,} rows), "
                f"as of {out.as_dict()['as_of'][:10]}.  \nSegments: {sizes}.")  # fmt: skip
        if out.skipped:
            text += f"  \nLeft out {len(out.skipped)} bad row(s): " + "; ".join(out.skipped[:10])
        if out.ignored_columns:
            text += f"  \nIgnored columns: {', '.join(out.ignored_columns)}."
        return text, gr.update(choices=self.data_choices(caller), value=out.dataset)

    def accept_drift(self, caller: Caller) -> str:
        """Accept the refit held as drift (admins): the new model's version and sizes, or why not."""
        try:
            out = self.service.accept_drift(caller)
        except (ForbiddenError, NotFoundError, RedisNotConfiguredError) as exc:
            return f"⚠ {exc}"
        except Exception as exc:  # noqa: BLE001 - Redis down: said, not raised
            return f"⚠ {user_error(log, exc, 'the held refit could not be accepted')}"
        sizes = ", ".join(
            f"{label(k)} {v:,}" for k, v in sorted(out["segments"].items(), key=lambda kv: -kv[1])
        )
        return f"**Accepted:** segment model v{out['model_version']}, every customer re-scored.  \nSegments: {sizes}."

    def data_choices(self, caller: Caller) -> list[tuple[str, str]]:
        """The Q&A's data: this tab's (live) data, then each imported dataset."""
        return [("Shop data (live)", "")] + [
            (f"{d['name']} ({d['customers']:,} customers, imported)", d["name"])
            for d in self.service.datasets(caller)
        ]


def _composed(template: str, narrative: str, pending: bool) -> str:
    """The chat bubble: the template answer, then the narrative (or a note that it is being written)."""
    if not template:
        return narrative or ("…" if pending else "")
    note = "_Writing the analysis…_" if pending and not narrative else ""
    return f"{template}\n\n---\n\n{narrative or note}".rstrip()


def build_insight_tab(accounts: AccountStore, service: InsightService | None = None) -> gr.Timer:
    """Create the tab's components inside an open Blocks/Tab context (default: `InsightService.live()`).

    Returns the refresh timer, inactive until the caller activates it (when the tab is opened), so
    the live demo data starts only for someone who looks at it.
    """
    panel = InsightPanel(service or InsightService.live())

    def refresh(request: gr.Request) -> tuple[str, go.Figure, go.Figure, str]:
        return panel.refresh(caller_of(accounts, request))

    def ask(
        question: str,
        history: ChatHistory | None,
        router_mode: str,
        thread_id: str | None,
        dataset: str | None,
        request: gr.Request,
    ) -> Iterator[tuple[ChatHistory, str, str, str | None]]:
        caller = caller_of(accounts, request)
        yield from panel.stream_answer(caller, question, history, router_mode, thread_id, dataset)

    def import_orders(
        path: str | None, name: str, replace: bool, skip_bad_rows: bool, request: gr.Request
    ) -> tuple[str, Any]:
        return panel.import_orders(caller_of(accounts, request), path, name, replace, skip_bad_rows)

    def accept_drift(request: gr.Request) -> str:
        return panel.accept_drift(caller_of(accounts, request))

    def new_thread(request: gr.Request) -> tuple[ChatHistory, str, None]:
        caller_of(accounts, request)  # signed in; nothing is read
        return [], "", None

    def set_live(on: bool, request: gr.Request) -> gr.Timer:
        caller_of(accounts, request)
        return gr.Timer(active=bool(on))

    status = gr.Markdown("**Data:** starting... (first refresh loads the history and starts live orders)")
    with gr.Row(equal_height=False):
        sizes_plot = gr.Plot(label="Segment sizes over time")
        scatter_plot = gr.Plot(label="RFM scatter")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            chat = gr.Chatbot(label="Ask about your customers (한국어 / English)", height=420)
            question = gr.Textbox(placeholder="e.g. What are our VIP customers like? / 이탈 위험 고객 전략은?",
                                  show_label=False)  # fmt: skip
            with gr.Row():
                ask_button = gr.Button("Ask", variant="primary")
                new_button = gr.Button("New question thread")
                router = gr.Radio(list(ROUTER_MODES), value="hybrid", label="Intent router")
            imported = [
                (f"{d['name']} ({d['customers']:,} customers, imported)", d["name"]) for d in list_datasets()
            ]
            data = gr.Dropdown([("Shop data (live)", ""), *imported], value="", label="Data",
                               info="Imported order exports appear here")  # fmt: skip
            thread = gr.State(None)  # this session's thread id (server side; follow-ups continue it)
        with gr.Column(scale=2):
            figures = gr.Code(label="Figures used (tool results) and the numeric check", language="json")
    with gr.Accordion("Model report: K-Means vs GMM", open=False):
        report = gr.Markdown(REPORT_PENDING)
    with gr.Accordion("Import orders (CSV export of your shop; admins)", open=False):
        gr.Markdown("One row per order line with the columns `order_id, customer_id, ordered_at, sku, qty, "
                    "unit_price` and optionally `channel` (app/web/store); Korean headers (주문번호, 회원ID, 주문일시, "
                    "상품코드, 수량, 판매가, 채널) work too. Example: `personagraph insight orders-template`.")  # fmt: skip
        with gr.Row():
            orders_file = gr.File(label="Order export (.csv)", file_types=[".csv"], type="filepath")
            with gr.Column():
                dataset_name = gr.Textbox(label="Dataset name", placeholder="e.g. myshop-2025")
                replace_dataset = gr.Checkbox(label="Replace a dataset of that name", value=False)
                skip_rows = gr.Checkbox(
                    label="Leave bad rows out (listed) instead of refusing the file", value=False
                )
                import_button = gr.Button("Import and segment")
        import_result = gr.Markdown()
    with gr.Accordion("Segment drift (admins)", open=False):
        gr.Markdown("A refit that would move the segments more than the drift policy allows is held, not "
                    "swapped in (the status line says why). Accept it once you have looked at the change.")  # fmt: skip
        accept_button = gr.Button("Accept the held refit")
        accept_result = gr.Markdown()
    live = gr.Checkbox(value=True, label="Live updates (every 3 s)")
    timer = gr.Timer(3.0, active=False)
    timer.tick(refresh, None, [status, sizes_plot, scatter_plot, report], api_name="insight_refresh")
    live.input(set_live, [live], [timer], api_visibility="private")
    asked = [question, chat, router, thread, data]
    answered = [chat, figures, question, thread]
    ask_button.click(ask, asked, answered, api_name="insight_ask")
    question.submit(ask, asked, answered, api_visibility="private")
    new_button.click(new_thread, None, [chat, figures, thread], api_name="insight_new_thread")
    import_button.click(import_orders, [orders_file, dataset_name, replace_dataset, skip_rows], [import_result, data],
                        api_name="insight_import_orders")  # fmt: skip
    accept_button.click(accept_drift, None, [accept_result], api_name="insight_accept_drift")
    return timer
