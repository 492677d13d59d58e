"""The insight tab: live segment sizes, RFM scatter, K-Means vs GMM report, Q&A with the figures used.

    with gr.Tab("Insight"):
        build_insight_tab()

Data: with INSIGHT_REDIS_URL / REDIS_URL set, the live state in that Redis (run `personagraph insight
simulate` and `consume` against it). With nothing set, the first refresh of the tab starts an
in-process Redis (LocalRedis) loaded with the generated history, a consumer (refitting on schedule)
and a simulator at 20 orders/s, so the charts move with no setup; if no Redis can be started, the
static history is shown and the tab says so.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from typing import Any

import gradio as gr
import numpy as np
import plotly.graph_objects as go

from personagraph.insight.segments import SEGMENT_LABELS, label, model_report, report_markdown
from personagraph.insight.source import InsightSource, RedisSource, start_live_demo

COLOURS = {"vip": "#d62728", "loyal": "#1f77b4", "new": "#2ca02c", "at_risk": "#ff7f0e", "dormant": "#7f7f7f",
           "regular": "#9467bd", "occasional": "#8c564b", "unscored": "#cccccc"}  # fmt: skip
ChatHistory = list[dict[str, Any]]

_sizes: deque[tuple[float, dict[str, int]]] = deque(maxlen=600)
_report: dict[str, Any] = {"version": None, "markdown": "_Model report: computing..._", "running": False}
_report_lock = threading.Lock()


def current_sizes(source: InsightSource) -> dict[str, int]:
    if isinstance(source, RedisSource):
        source.bootstrap()
        return source.store.segment_sizes()
    counts = source.snapshot().customers["segment"].value_counts()
    return {str(k): int(v) for k, v in counts.items()}


def sizes_figure(samples: list[tuple[float, dict[str, int]]]) -> go.Figure:
    fig = go.Figure()
    segments = [s for s in SEGMENT_LABELS if any(s in sizes for _, sizes in samples)]
    times = [time.strftime("%H:%M:%S", time.localtime(t)) for t, _ in samples]
    for s in segments:
        fig.add_trace(go.Scatter(x=times, y=[sizes.get(s, 0) for _, sizes in samples], mode="lines+markers",
                                 name=label(s), line={"color": COLOURS.get(s)}))  # fmt: skip
    fig.update_layout(
        title="Segment sizes (customers)", height=320, margin={"l": 40, "r": 10, "t": 40, "b": 30}
    )
    return fig


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


def _report_worker(source: InsightSource, version: Any) -> None:
    try:
        markdown = report_markdown(model_report(source.snapshot().raw()))
    except Exception as exc:  # noqa: BLE001 - shown in the tab instead of the report
        markdown = f"_Model report failed: {type(exc).__name__}: {exc}_"
    with _report_lock:
        _report.update(version=version, markdown=markdown, running=False)


def report_text(source: InsightSource) -> str:
    """The cached K-Means vs GMM report; recomputed in the background when the model version changes."""
    model = source.model()
    version = model.version if model is not None else None
    with _report_lock:
        if _report["version"] != version and not _report["running"]:
            _report["running"] = True
            threading.Thread(target=_report_worker, args=(source, version), daemon=True).start()
        text = str(_report["markdown"])
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


def refresh() -> tuple[str, go.Figure, go.Figure, str]:
    """One timer tick: status, sizes over time, RFM scatter, model report."""
    try:
        source = start_live_demo()
        sizes = current_sizes(source)
        _sizes.append((time.time(), sizes))
        snap = source.snapshot()
        raw, segments = snap.raw(), snap.customers["segment"].tolist()
        status = f"**Data:** {source.describe()} · customers: {sum(sizes.values()):,}"
        if isinstance(source, RedisSource):
            status += f" · live orders applied: {source.store.processed_count():,}"
        return status, sizes_figure(list(_sizes)), scatter_figure(raw, segments), report_text(source)
    except Exception as exc:  # noqa: BLE001 - the tab shows the problem instead of breaking
        empty = go.Figure()
        return f"**Data unavailable:** {type(exc).__name__}: {exc}", empty, empty, ""


def answer_question(
    question: str, history: ChatHistory | None, router_mode: str = "hybrid"
) -> tuple[ChatHistory, str, str]:
    """Run insight_qa; returns the chat, the figures it used (JSON) and the cleared textbox."""
    from personagraph.graphs.insight_qa import graph
    from personagraph.nodes.insight import InsightContext, InvalidQuestionError

    history = list(history or [])
    if not (question or "").strip():
        return history, "", ""
    start_live_demo()
    history.append({"role": "user", "content": question})
    try:
        out = graph.invoke({"question": question}, context=InsightContext(router_mode=router_mode))  # type: ignore[call-overload, arg-type]
    except InvalidQuestionError as exc:
        history.append({"role": "assistant", "content": f"⚠ {exc}"})
        return history, "", ""
    details = {
        "intent": out.get("intent"), "router": out.get("router"), "scope": out.get("scope"),
        "figures_used": out.get("tool_results"), "numeric_check": out.get("check"), "flagged": out.get("flagged"),
        "profiles": [d.get("source") for d in out.get("retrieved") or []],
    }  # fmt: skip
    history.append({"role": "assistant", "content": out.get("answer", "")})
    return history, json.dumps(details, ensure_ascii=False, indent=1, default=str), ""


def build_insight_tab() -> gr.Timer:
    """Create the tab's components inside an open Blocks/Tab context.

    Returns the refresh timer, inactive until the caller activates it (when the tab is opened), so
    the live demo data starts only for someone who looks at it.
    """
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
                router = gr.Radio(["hybrid", "model", "keywords"], value="hybrid", label="Intent router")
        with gr.Column(scale=2):
            figures = gr.Code(label="Figures used (tool results) and the numeric check", language="json")
    with gr.Accordion("Model report: K-Means vs GMM", open=False):
        report = gr.Markdown("_Model report: computing..._")
    live = gr.Checkbox(value=True, label="Live updates (every 3 s)")
    timer = gr.Timer(3.0, active=False)
    timer.tick(refresh, None, [status, sizes_plot, scatter_plot, report], api_name="insight_refresh")
    live.input(lambda on: gr.Timer(active=bool(on)), [live], [timer], api_visibility="private")
    ask_button.click(
        answer_question, [question, chat, router], [chat, figures, question], api_name="insight_ask"
    )
    question.submit(
        answer_question, [question, chat, router], [chat, figures, question], api_visibility="private"
    )
    return timer
