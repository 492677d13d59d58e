"""Insight tools: exact figures from the live customer data, limited to the question's scope.

Each tool takes the scope explicitly (the segments or customer ids the question is about) and
refuses a target outside it, so a tool call can never return another segment's data.
"""

from __future__ import annotations

from typing import Any

from langchain_core.tools import tool

from personagraph.insight import stats
from personagraph.insight.source import get_source


def _outside(kind: str, value: str, scope: list[str]) -> dict[str, Any]:
    return {"error": f"{kind} {value!r} is outside the question's scope {scope}"}


@tool
def segment_stats(segment: str, scope: list[str]) -> dict[str, Any]:
    """Size, value, recency, frequency and channel mix of one segment (must be in scope)."""
    if segment not in scope:
        return _outside("segment", segment, scope)
    return stats.segment_stats(get_source().snapshot(), segment)


@tool
def segment_overview(scope: list[str]) -> dict[str, Any]:
    """Size and value of every segment in scope (the summary of the whole customer base)."""
    overview = stats.overview(get_source().snapshot())
    overview["segments"] = [s for s in overview["segments"] if s["segment"] in scope]
    return overview


@tool
def top_products(segment: str, scope: list[str], n: int = 5) -> dict[str, Any]:
    """The segment's best-selling products by units (must be in scope)."""
    if segment not in scope:
        return _outside("segment", segment, scope)
    return stats.top_products(get_source().snapshot(), segment, n=max(1, min(int(n), 10)))


@tool
def trend(segment: str, scope: list[str], months: int = 6) -> dict[str, Any]:
    """Orders and revenue per month for the segment, with the last full month's change (must be in scope)."""
    if segment not in scope:
        return _outside("segment", segment, scope)
    return stats.trend(get_source().snapshot(), segment, months=max(2, min(int(months), 24)))


@tool
def customer_lookup(customer_id: str, scope: list[str]) -> dict[str, Any]:
    """One customer's segment, recency, orders, spend and favourite products (must be in scope)."""
    if customer_id not in scope:
        return _outside("customer", customer_id, scope)
    return stats.customer_lookup(get_source().snapshot(), customer_id)


@tool
def compare_segments(segments: list[str], scope: list[str]) -> dict[str, Any]:
    """Side-by-side figures of two or more segments, with ratios of the first to the second (all in scope)."""
    outside = [s for s in segments if s not in scope]
    if outside:
        return _outside("segments", ",".join(outside), scope)
    return stats.compare_segments(get_source().snapshot(), segments)


INSIGHT_TOOLS = [segment_stats, segment_overview, top_products, trend, customer_lookup, compare_segments]
