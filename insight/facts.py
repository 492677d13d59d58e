"""Exact figures for one question, limited to its scope.

Each function takes the snapshot and the scope explicitly (the segments or customer ids the
question is about) and refuses a target outside it, so a question can never be answered with
another segment's data. The insight_qa graph calls them from one snapshot per question, so every
figure of an answer comes from the same read of the data.
"""

from __future__ import annotations

from typing import Any

from personagraph.insight import stats
from personagraph.insight.store import Snapshot


def _outside(kind: str, value: str, scope: list[str]) -> dict[str, Any]:
    return {"error": f"{kind} {value!r} is outside the question's scope {scope}"}


def segment_stats(snap: Snapshot, segment: str, scope: list[str]) -> dict[str, Any]:
    """Size, value, recency, frequency and channel mix of one segment (must be in scope)."""
    if segment not in scope:
        return _outside("segment", segment, scope)
    return stats.segment_stats(snap, segment)


def segment_overview(snap: Snapshot, scope: list[str]) -> dict[str, Any]:
    """Size and value of every segment in scope (the summary of the whole customer base)."""
    overview = stats.overview(snap)
    overview["segments"] = [s for s in overview["segments"] if s["segment"] in scope]
    return overview


def top_products(snap: Snapshot, segment: str, scope: list[str], n: int = 5) -> dict[str, Any]:
    """The segment's best-selling products by units (must be in scope)."""
    if segment not in scope:
        return _outside("segment", segment, scope)
    return stats.top_products(snap, segment, n=max(1, min(n, 10)))


def trend(snap: Snapshot, segment: str, scope: list[str], months: int = 6) -> dict[str, Any]:
    """Orders and revenue per month for the segment, with the last full month's change (must be in scope)."""
    if segment not in scope:
        return _outside("segment", segment, scope)
    return stats.trend(snap, segment, months=max(2, min(months, 24)))


def customer_lookup(snap: Snapshot, customer_id: str, scope: list[str]) -> dict[str, Any]:
    """One customer's segment, recency, orders, spend and favourite products (must be in scope)."""
    if customer_id not in scope:
        return _outside("customer", customer_id, scope)
    return stats.customer_lookup(snap, customer_id)


def compare_segments(snap: Snapshot, segments: list[str], scope: list[str]) -> dict[str, Any]:
    """Side-by-side figures of two or more segments, with ratios of the first to the second (all in scope)."""
    outside = [s for s in segments if s not in scope]
    if outside:
        return _outside("segments", ",".join(outside), scope)
    return stats.compare_segments(snap, segments)
